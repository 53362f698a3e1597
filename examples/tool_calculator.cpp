// Function calling with the library API: the model gets a calculator tool, and each call
// it makes is evaluated here and sent back until it answers in words.
//   tool_calculator MODEL_DIR ["question"]
// MODEL_DIR: an E2B model (or the tiny-e2b test model, which calls no tools on purpose).
#include <cctype>
#include <cstdlib>
#include <string_view>

#include <gemma4/e2b.hpp>
#include <gemma4/tiny.hpp>
#include <gemma4/variants.hpp>

namespace {

// + - * / and parentheses over decimal numbers; throws gemma4::Error on anything else.
class Arithmetic {
 public:
  static double evaluate(std::string_view text) {
    Arithmetic a{text};
    const double value = a.sum();
    a.skip_spaces();
    if (a.at_ != text.size()) a.fail_at("an operator");
    return value;
  }

 private:
  explicit Arithmetic(std::string_view text) : text_(text) {}

  double sum() {
    for (double value = product();;) {
      if (take('+')) {
        value += product();
      } else if (take('-')) {
        value -= product();
      } else {
        return value;
      }
    }
  }
  double product() {
    for (double value = factor();;) {
      if (take('*')) {
        value *= factor();
      } else if (take('/')) {
        value /= factor();
      } else {
        return value;
      }
    }
  }
  double factor() {
    if (take('-')) return -factor();
    if (take('(')) {
      const double value = sum();
      if (!take(')')) fail_at("')'");
      return value;
    }
    skip_spaces();
    const std::string number(text_.substr(at_, text_.find_first_not_of("0123456789.", at_) - at_));
    if (number.empty()) fail_at("a number");
    at_ += number.size();
    return std::strtod(number.c_str(), nullptr);
  }
  bool take(char c) {
    skip_spaces();
    if (at_ == text_.size() || text_[at_] != c) return false;
    ++at_;
    return true;
  }
  void skip_spaces() {
    while (at_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[at_]))) ++at_;
  }
  [[noreturn]] void fail_at(std::string_view expected) const {
    gemma4::fail(gemma4::ErrorKind::kInvalidArgument, "expected {} at position {} of \"{}\"", expected, at_, text_);
  }

  std::string_view text_;
  std::size_t at_ = 0;
};

const gemma4::Tool kCalculator{gemma4::parse_json(R"({"type": "function", "function": {
  "name": "calculate", "description": "Evaluates an arithmetic expression with + - * / and parentheses.",
  "parameters": {"type": "object", "properties": {"expression": {"type": "string", "description": "e.g. (2 + 3) * 4"}},
                 "required": ["expression"]}}})", "the calculator tool")};

// The tool's result: the value, or the reason it has none (the model reads either).
gemma4::JsonValue calculate(const gemma4::ToolCall& call) {
  try {
    const gemma4::JsonValue& expression = call.argument("expression");
    if (!expression.is_string()) return "error: the expression must be a string";
    return Arithmetic::evaluate(expression.get_ref<const std::string&>());
  } catch (const gemma4::Error& e) {
    return fmt::format("error: {}", e.what());
  }
}

}  // namespace

int main(int argc, char** argv) try {
  const std::filesystem::path dir = argc > 1 ? argv[1] : "e2b-it-int4";
  const std::string question = argc > 2 ? argv[2] : "What is 17.5 * (3 + 4)? Use the calculator.";
  gemma4::VariantSet<gemma4::E2B, gemma4::TinyE2B>::with_matching(gemma4::read_model_config(dir), [&]<typename V>() {
    const gemma4::Model<V> model(dir);
    gemma4::Session<V> session(model.weights, {.max_context = 4096});
    gemma4::Conversation<V> chat(session, model, {.max_new_tokens = 256, .tools = {kCalculator}});
    const auto show = [](std::string_view text, bool is_thought) {
      if (!is_thought) fmt::print("{}", text);
    };
    gemma4::Reply reply = chat.ask(question, show);
    for (int round = 0; round < 8 && !reply.tool_calls.empty(); ++round) {
      std::vector<gemma4::ToolResult> results;
      for (const gemma4::ToolCall& call : reply.tool_calls) {
        results.push_back({.call_id = call.id, .content = calculate(call)});
        fmt::print(stderr, "[{} {} -> {}]\n", call.name, call.arguments.dump(), results.back().content.dump());
      }
      reply = chat.send_tool_results(results, show);
    }
    for (const gemma4::MalformedToolCall& bad : reply.malformed_calls) fmt::print(stderr, "[malformed tool call: {}] {}\n", bad.reason, bad.raw);
    fmt::print("\n");
  });
} catch (const gemma4::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
