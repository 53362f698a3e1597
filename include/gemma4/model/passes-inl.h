// What model/passes.hpp compiles per SIMD target: the forward pass and an assistant's
// draft step, which runs on the same target as the forward pass it drafts for.
// Highway's foreach_target includes this file once per target.

#include "gemma4/model/forward-inl.h"
#include "gemma4/model/draft-inl.h"
