#pragma once
// The tiny test variants (config/tiny.hpp) with everything that runs them.

#include "gemma4/config/tiny.hpp"
#include "gemma4/e2b.hpp"
#include "gemma4/e4b.hpp"
