// The int8/int4 weight formats: packing, their use in the forward pass, and the quality
// guard against f32 weights. The kernels themselves: ops_test.cpp.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>

#include "gemma4/testing/logit_agreement.hpp"
#include "gemma4/model/session.hpp"
#include "gemma4/tiny.hpp"
#include "gemma4/weights/synthetic_checkpoint.hpp"
#include "gemma4/weights/convert.hpp"
#include "gemma4/weights/packed_store.hpp"
#include "session_support.hpp"
#include "support.hpp"

using namespace gemma4;
using namespace gemma4::test;
using Catch::Matchers::Contains;

namespace {

std::vector<int> uniform_tokens(std::size_t n, int vocab, unsigned seed) {  // no <bos>
  std::mt19937 rng(seed);
  std::vector<int> tokens(n);
  for (int& t : tokens) t = static_cast<int>(rng() % static_cast<unsigned>(vocab));
  return tokens;
}

}  // namespace

TEST_CASE("weight formats have names", "[quantized]") {
  CHECK(parse_weight_format("int8") == WeightFormat::kInt8);
  CHECK(parse_weight_format("int4") == WeightFormat::kInt4);
  CHECK(parse_weight_format("bf16") == WeightFormat::kBF16);
  CHECK_FALSE(parse_weight_format("q4_0"));
  CHECK_THROWS_WITH(QuantizedMatrix(WeightFormat::kInt8, 24, 64), Contains("cannot pack a [24, 64] matrix as int8"));
  CHECK_THROWS_WITH(QuantizedMatrix(WeightFormat::kInt4, 16, 48), Contains("as int4"));
}

// int8: one scale per row, the largest magnitude at 127 levels. int4: a scale per group
// of 32 searched for the least squared error (quant/quantized_matrix.hpp).
TEST_CASE("packing keeps every weight near its value; int4 searches each group's scale", "[quantized]") {
  const std::size_t rows = 48, cols = 96;
  auto w = normal_values(rows * cols, 1, 0.05f);
  w[5] = 0.0f;
  std::fill_n(w.begin() + cols, cols, 0.0f);  // an all-zero row: scale 0, no division by zero
  for (WeightFormat f : {WeightFormat::kInt8, WeightFormat::kInt4}) {
    QuantizedMatrix q(f, rows, cols);
    q.quantize_blocks(w.data(), 0, rows / kRowBlock);
    std::vector<float> row(cols);
    double total = 0, q4_0_total = 0;
    for (std::size_t r = 0; r < rows; ++r) {
      q.dequantize_rows(r, 1, row.data());
      const std::size_t group = f == WeightFormat::kInt8 ? cols : kInt4Group;
      for (std::size_t g = 0; g < cols; g += group) {
        const float* values = &w[r * cols + g];
        float extreme = 0;
        for (std::size_t c = 0; c < group; ++c) extreme = std::fabs(values[c]) > std::fabs(extreme) ? values[c] : extreme;
        // int4 as llama.cpp's Q4_0 rounds: the extreme at -8 levels, a bf16 scale.
        const float q4_0_scale = bf16_to_f32(f32_to_bf16(extreme / -8.0f));
        double group_error = 0, q4_0_error = 0;
        for (std::size_t c = 0; c < group; ++c) {
          INFO(weight_format_name(f) << " row " << r << " col " << g + c);
          const float deviation = std::fabs(row[g + c] - values[c]);
          if (f == WeightFormat::kInt8) {
            REQUIRE(deviation <= std::fabs(extreme) / 127 / 2 * 1.0001f + 1e-9f);
          } else {
            // At most a Q4_0 step: the search may clamp an outlier for finer steps elsewhere.
            REQUIRE(deviation <= std::fabs(extreme) / 8);
            const float level = q4_0_scale == 0 ? 0 : std::clamp(std::round(values[c] / q4_0_scale), -8.0f, 7.0f);
            group_error += deviation * deviation;
            q4_0_error += std::pow(values[c] - level * q4_0_scale, 2);
          }
        }
        // The search keeps Q4_0's rounding unless it finds a better one (each scale rounded to bf16).
        REQUIRE(group_error <= q4_0_error * 1.01 + 1e-12);
        total += group_error;
        q4_0_total += q4_0_error;
      }
    }
    if (f == WeightFormat::kInt4) CHECK(total <= 0.95 * q4_0_total);  // 0.89 measured
    q.dequantize_rows(1, 1, row.data());
    CHECK(row[7] == 0.0f);
  }
}

TEST_CASE("a matrix packed a slice at a time, as a packed model is written, has the bytes of the whole", "[quantized]") {
  const std::size_t rows = 112, cols = 64;  // 7 row blocks: three int4 panels and a block alone
  const auto w = normal_values(rows * cols, 4, 0.05f);
  const TensorView elements{reinterpret_cast<const std::byte*>(w.data()), DType::kF32,
                            {static_cast<std::int64_t>(rows), static_cast<std::int64_t>(cols)}};
  ThreadPool pool(2);
  for (WeightFormat f : {WeightFormat::kInt8, WeightFormat::kInt4}) {
    QuantizedMatrix whole(f, rows, cols);
    PackedMatrices::quantize_blocks(whole, elements, 0, rows / kRowBlock, pool);
    // About 3 blocks' elements per slice: rounded to whole panels.
    std::vector<std::size_t> firsts;
    std::vector<std::byte> int4_bytes;
    PackedMatrices::for_each_slice(rows, elements, false, [&](std::size_t first, std::size_t end, const TensorView& part) {
      firsts.push_back(first);
      REQUIRE(part.data == elements.data + first * kRowBlock * cols * sizeof(float));
      REQUIRE(part.size() == (end - first) * kRowBlock * cols);
      QuantizedMatrix slice(f, (end - first) * kRowBlock, cols);
      PackedMatrices::quantize_blocks(slice, part, 0, end - first, pool);
      if (f == WeightFormat::kInt4) int4_bytes.insert(int4_bytes.end(), slice.packed().begin(), slice.packed().end());
      std::vector<float> slice_rows(slice.rows() * cols), whole_rows(slice_rows.size());
      slice.dequantize_rows(0, slice.rows(), slice_rows.data());
      whole.dequantize_rows(first * kRowBlock, slice.rows(), whole_rows.data());
      REQUIRE(slice_rows == whole_rows);
    }, 3 * kRowBlock * cols * sizeof(float));
    INFO(weight_format_name(f));
    CHECK(firsts == std::vector<std::size_t>{0, 2, 4, 6});
    if (f == WeightFormat::kInt4) CHECK(std::ranges::equal(int4_bytes, whole.packed()));
  }
}

TEMPLATE_TEST_CASE("int8 and int4 forward passes: prefill and decode agree, threads do not matter", "[quantized][forward]",
                   TinyE2B, TinyE4B) {
  TempDir dir;
  write_synthetic_checkpoint(TestType::config, dir.path(), {.seed = 9});
  const auto tokens = uniform_tokens(50, TestType::config.vocab_size, 9);
  const auto format = GENERATE(WeightFormat::kInt8, WeightFormat::kInt4);
  ThreadPool one(1), two(2), three(3);
  const Weights<TestType> w(dir.path(), {.format = format, .pool = &two});
  INFO(weight_format_name(format));
  const auto prefill = all_logits(w, tokens, {.max_context = 64, .prefill_chunk = 16, .pool = &one});
  CHECK(first_difference(all_logits(w, tokens, {.max_context = 64, .prefill_chunk = 16, .pool = &three}), prefill) == "");
  CHECK(first_difference(all_logits(w, tokens, {.max_context = 64, .prefill_chunk = 7, .pool = &two}), prefill) == "");
  CHECK(first_difference(logits_in_pieces(w, tokens, {1}, {.max_context = 64, .pool = &two}), prefill) == "");
  // Weights converted by 1 or by several threads are the same weights.
  const Weights<TestType> one_thread(dir.path(), {.format = format, .pool = &one});
  CHECK(first_difference(all_logits(one_thread, tokens, {.max_context = 64, .prefill_chunk = 16, .pool = &one}), prefill) == "");
}

TEST_CASE("the stored-format forward pass gives the same bits on 1 and 3 threads", "[forward]") {
  TempDir dir;
  write_synthetic_checkpoint(TinyE4B::config, dir.path(), {.seed = 5});
  const Weights<TinyE4B> w(dir.path());
  const auto tokens = uniform_tokens(40, 1024, 5);
  ThreadPool one(1), three(3);
  CHECK(first_difference(all_logits(w, tokens, {.max_context = 40, .pool = &one}), all_logits(w, tokens, {.max_context = 40, .pool = &three})) == "");
}

// A long chunk splits its norms, activation quantization and GELU rows between the
// threads (a short one leaves them to the caller): the bits stay those of decoding
// token by token.
TEST_CASE("a 300-token chunk on 3 threads gives the bits of token-by-token decode", "[quantized][forward][threads]") {
  TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.seed = 4});
  const auto tokens = uniform_tokens(300, TinyE2B::config.vocab_size, 4);
  const auto format = GENERATE(WeightFormat::kBF16, WeightFormat::kInt8);
  INFO(weight_format_name(format));
  const Weights<TinyE2B> w(dir.path(), {.format = format});
  ThreadPool one(1), three(3);
  const auto chunk = all_logits(w, tokens, {.max_context = 300, .prefill_chunk = 300, .pool = &three});
  CHECK(first_difference(logits_in_pieces(w, tokens, {1}, {.max_context = 300, .pool = &one}), chunk) == "");
}

namespace {
// tiny-e2b with per-layer inputs 16 wide: too narrow for a 32-column int4 group.
struct NarrowPle {
  static constexpr std::string_view name = "tiny-e2b-narrow-ple";
  static constexpr ModelConfig config = [] {
    ModelConfig c = TinyE2B::config;
    c.hidden_size_per_layer_input.value = 16;
    return c;
  }();
};
}  // namespace

TEST_CASE("loading reports what was converted", "[quantized][host-only]") {
  TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.seed = 1});
  const Weights<TinyE2B> bf16(dir.path());
  const Weights<TinyE2B> int8(dir.path(), {.format = WeightFormat::kInt8});
  const Weights<TinyE2B> int4(dir.path(), {.format = WeightFormat::kInt4});
  CHECK(bf16.report().quantized_bytes == 0);
  CHECK(quantized_matrix(bf16.global.embed_tokens.linear) == nullptr);
  REQUIRE(quantized_matrix(int8.global.embed_tokens.linear) != nullptr);  // the tied LM head
  CHECK(quantized_matrix(int8.global.embed_tokens.linear)->format() == WeightFormat::kInt8);
  STATIC_REQUIRE_FALSE(std::is_base_of_v<MatrixView, decltype(int8.layers[0].input_layernorm)>);  // vectors stay as stored
  CHECK(int8.report().bytes_per_token < bf16.report().bytes_per_token * 0.55);
  CHECK(int4.report().bytes_per_token < int8.report().bytes_per_token * 0.65);
  // The LM head stays int8 unless an int4 head is asked for (weights/packed_model.hpp).
  CHECK(int4.report().kept_int8 == std::vector<std::string>{"embed_tokens.weight"});
  CHECK(quantized_matrix(int4.layers[0].gate_proj.linear)->format() == WeightFormat::kInt4);
  const Weights<TinyE2B> int4_head(dir.path(), {.format = WeightFormat::kInt4, .head_format = WeightFormat::kInt4});
  CHECK(int4_head.report().kept_int8.empty());
  CHECK(quantized_matrix(int4_head.global.embed_tokens.linear)->format() == WeightFormat::kInt4);

  TempDir narrow;
  write_synthetic_checkpoint(NarrowPle::config, narrow.path(), {.seed = 1});
  const Weights<NarrowPle> narrow_int4(narrow.path(), {.format = WeightFormat::kInt4, .head_format = WeightFormat::kInt4});
  REQUIRE(narrow_int4.report().kept_int8.size() == kNumLayers<NarrowPle>);
  CHECK(narrow_int4.report().kept_int8[0] == "layers.0.per_layer_projection.weight");
  CHECK(quantized_matrix(narrow_int4.layers[0].per_layer_projection.linear)->format() == WeightFormat::kInt8);
}

// The quality guard. Random synthetic models have flat output distributions: their
// top-1 token is often a near tie, so the measure floor is what rounding the f32
// weights to bf16 (lossless for published checkpoints) already costs. The
// thresholds sit under what the formats reach with some margin; README gives the
// numbers and why the 99% / 95% top-1 of issue 6 are out of reach on these models.
// A packed model (weights/convert.hpp) also rounds the embedding lookup and the PLE
// table to its format: that may add at most a quarter to the KL of the matrices alone.
// An int4 LM head (`--head int4`), whose table's rows are then looked up in int4 too,
// may add at most half.
TEMPLATE_TEST_CASE("quality guard: int8 and int4 against f32 weights over 512 positions", "[quantized][quality][slow-emulated]",
                   TinyE2B, TinyE4B) {
  TempDir dir, bf16_dir, int8_dir, int4_dir, int4_head_dir;
  write_synthetic_checkpoint(TestType::config, dir.path(), {.dtype = DType::kF32, .seed = 3, .trained_like = true});
  write_synthetic_checkpoint(TestType::config, bf16_dir.path(), {.dtype = DType::kBF16, .seed = 3, .trained_like = true});
  convert_checkpoint<TestType>(dir.path(), int8_dir.path(), {.format = WeightFormat::kInt8});
  convert_checkpoint<TestType>(dir.path(), int4_dir.path(), {.format = WeightFormat::kInt4});
  convert_checkpoint<TestType>(dir.path(), int4_head_dir.path(), {.format = WeightFormat::kInt4, .head_format = WeightFormat::kInt4});
  const auto tokens = uniform_tokens(512, TestType::config.vocab_size, 5);
  const std::size_t vocab = TestType::config.vocab_size;
  const auto reference = all_logits(Weights<TestType>(dir.path()), tokens);
  const auto measure = [&](const std::filesystem::path& model, LoadOptions options) {
    return compare_logits(reference, all_logits(Weights<TestType>(model, options), tokens), vocab);
  };
  const auto floor = measure(bf16_dir.path(), {});
  const auto int8 = measure(dir.path(), {.format = WeightFormat::kInt8});
  const auto int4 = measure(dir.path(), {.format = WeightFormat::kInt4});
  const auto packed8 = measure(int8_dir.path(), {});
  const auto packed4 = measure(int4_dir.path(), {});
  const auto packed4_head4 = measure(int4_head_dir.path(), {});
  const auto line = [](const char* name, const LogitAgreement& r) {
    return fmt::format("{} top-1 {:.4f} KL {:.2e} rms {:.3f} largest flipped lead {:.3f}", name, r.top1, r.mean_kl, r.rms_error,
                       r.largest_flipped_lead);
  };
  WARN(TestType::name << " vs f32 over 512 positions (median lead " << floor.median_lead << "): " << line("bf16", floor) << "; "
                      << line("int8", int8) << "; " << line("int4", int4) << "; " << line("packed int8", packed8) << "; "
                      << line("packed int4", packed4) << "; " << line("packed int4 with an int4 head", packed4_head4));
  CHECK(floor.mean_kl < 3e-4);  // the model is not chaotic: rounding alone barely moves it
  CHECK(int8.top1 >= 0.90);
  CHECK(int8.mean_kl <= 2e-3);
  CHECK(int4.top1 >= 0.50);
  CHECK(int4.mean_kl <= 0.06);
  // Where top-1 moves, it was a near tie (the median lead is about 0.2 logits; int8 has
  // moved it at leads up to 0.12, int4 up to 0.76): a broken format moves clear winners.
  CHECK(int8.largest_flipped_lead <= 0.25);
  CHECK(int4.largest_flipped_lead <= 1.5);
  CHECK(packed8.mean_kl <= 1.25 * int8.mean_kl);
  CHECK(packed4.mean_kl <= 1.25 * int4.mean_kl);
  CHECK(packed4_head4.mean_kl <= 1.5 * int4.mean_kl);
}

// The KV cache's formats against f32 on the same weights (f32, trained-like).
TEMPLATE_TEST_CASE("quality guard: bf16 and int8 KV caches against f32 over 512 positions", "[kv][quality][slow-emulated]", TinyE2B, TinyE4B) {
  TempDir dir;
  write_synthetic_checkpoint(TestType::config, dir.path(), {.dtype = DType::kF32, .seed = 3, .trained_like = true});
  const Weights<TestType> weights(dir.path());
  const auto tokens = uniform_tokens(512, TestType::config.vocab_size, 5);
  const auto logits = [&](KvFormat kv) { return all_logits(weights, tokens, {.max_context = 512, .kv_format = kv}); };
  const auto reference = logits(KvFormat::kF32);
  const LogitAgreement bf16 = compare_logits(reference, logits(KvFormat::kBF16), TestType::config.vocab_size);
  const LogitAgreement int8 = compare_logits(reference, logits(KvFormat::kInt8), TestType::config.vocab_size);
  WARN(TestType::name << " KV caches vs f32 over 512 positions: bf16 top-1 " << bf16.top1 << " KL " << bf16.mean_kl << " flipped lead "
                      << bf16.largest_flipped_lead << "; int8 top-1 " << int8.top1 << " KL " << int8.mean_kl << " flipped lead " << int8.largest_flipped_lead);
  // Measured: bf16 top-1 99.2-99.6%, KL 2.2-2.8e-6; int8 98.0-98.8%, KL 2.3-3.6e-5; top-1
  // moved only at leads below 0.04 (these models' median lead is about 0.2).
  CHECK(bf16.top1 >= 0.98);
  CHECK(bf16.mean_kl <= 1e-5);
  CHECK(int8.top1 >= 0.96);
  CHECK(int8.mean_kl <= 1e-4);
  CHECK(bf16.largest_flipped_lead <= 0.05);
  CHECK(int8.largest_flipped_lead <= 0.1);
}

TEST_CASE("compare_logits", "[quantized]") {
  const std::vector<float> a{0, 1, 2, 0, 5, 0}, b{0, 1, 2, 5, 0, 0};
  const auto same = compare_logits(a, a, 3);
  CHECK(same.top1 == 1.0);
  CHECK(same.mean_kl == Approx(0.0).margin(1e-12));
  CHECK(same.rms_error == 0.0);
  CHECK(same.largest_flipped_lead == 0.0);
  const auto different = compare_logits(a, b, 3);
  CHECK(different.positions == 2);
  CHECK(different.top1 == 0.5);
  CHECK(different.mean_kl > 1.0);
  CHECK(different.rms_error == Approx(std::sqrt(50.0 / 6)));
  CHECK(different.median_lead == 5.0);          // leads 1 and 5: the upper median
  CHECK(different.largest_flipped_lead == 5.0);  // the second position moved
  CHECK_THROWS_WITH(compare_logits(a, std::vector<float>(5), 3), Contains("whole rows of 3"));
  CHECK_THROWS_WITH(compare_logits({}, {}, 3), Contains("whole rows of 3"));
}
