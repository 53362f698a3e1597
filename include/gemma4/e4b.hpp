#pragma once
// Gemma 4 E4B: the one include an application needs. The variant's definition
// (config/e4b.hpp), loading and converting, the forward pass specialised for it, batches,
// generation and chat.

#include "gemma4/app/conversation.hpp"
#include "gemma4/config/e4b.hpp"
#include "gemma4/model/batch_generator.hpp"
#include "gemma4/app/model.hpp"
#include "gemma4/model/session.hpp"
#include "gemma4/weights/convert.hpp"
#include "gemma4/weights/load.hpp"
