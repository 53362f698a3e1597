// The forward pass of one variant and the draft step of its assistant, compiled once for
// a program whose other files see only their declarations (GEMMA4_EXTERN_PASSES=1).
// CMake's gemma4_add_passes compiles this file once per variant, naming the pair in
// GEMMA4_PASSES_VARIANT and GEMMA4_PASSES_ASSISTANT (e.g. E2B and E2BAssistant).

#include "gemma4/model/passes.hpp"

#include <type_traits>

#include "gemma4/config/assistant.hpp"
#include "gemma4/config/e2b.hpp"
#include "gemma4/config/e4b.hpp"
#include "gemma4/config/tiny.hpp"

#if !defined(GEMMA4_PASSES_VARIANT) || !defined(GEMMA4_PASSES_ASSISTANT)
#error "gemma4: compile src/passes.cpp with -DGEMMA4_PASSES_VARIANT=<variant> -DGEMMA4_PASSES_ASSISTANT=<its assistant>"
#endif

namespace gemma4 {
static_assert(std::is_same_v<GEMMA4_PASSES_ASSISTANT::Target, GEMMA4_PASSES_VARIANT>, "gemma4: the assistant must draft for the variant");
template ForwardPass<GEMMA4_PASSES_VARIANT> choose_forward_pass();
template DraftPass<GEMMA4_PASSES_ASSISTANT> choose_draft_pass();
}  // namespace gemma4
