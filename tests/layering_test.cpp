// What needs only a variant's config, the tokenizer, sampling, grammars, the chat template or the tool-call parser compiles
// without Highway or the forward pass: nothing in this file may pull them in. Nor may a
// session's target-independent state, which a runtime-dispatch build includes before
// Highway's foreach_target (model/session.hpp).

#include <catch2/catch.hpp>

#include "gemma4/chat/prompt_renderer.hpp"
#include "gemma4/chat/tool_call_grammar.hpp"
#include "gemma4/chat/tool_call_parser.hpp"
#include "gemma4/config/config_json.hpp"
#include "gemma4/config/e2b.hpp"
#include "gemma4/config/tiny.hpp"
#include "gemma4/grammar/gbnf.hpp"
#include "gemma4/grammar/grammar_constraint.hpp"
#include "gemma4/model/pass_state.hpp"
#include "gemma4/sampling/sampler.hpp"
#include "gemma4/tokenizer/stream_decoder.hpp"

#if defined(HWY_HIGHWAY_INCLUDED) || defined(HIGHWAY_HWY_BASE_H_)
#error "gemma4: the config, tokenizer, sampling, grammar, chat and forward-state headers must not include Highway"
#endif

TEST_CASE("a variant's config is usable without the forward pass", "[layering]") {
  STATIC_REQUIRE(gemma4::kv_donor(gemma4::E2B::config, 20) == 13);
  CHECK(gemma4::compare_config(gemma4::TinyE2B::config, gemma4::to_json(gemma4::TinyE2B::config)).empty());
}
