// Each SIMD kernel against a plain scalar version, on lengths around the vector width
// ({1, 3, N-1, N, N+1, 8N+2}) and at misaligned addresses; the int8/int4 matmul's VNNI
// and portable integer dots against each other (exact) and against a scalar reference,
// and which of them a target uses. Written once per SIMD target
// (Highway's foreach_target): a static build holds one target, the runtime-dispatch
// test build all of them, and tests/main.cpp chooses which one runs.

#define HWY_TARGET_INCLUDE "ops_test.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gemma4/config/topology.hpp"
#include "gemma4/ops/attention-inl.h"
#include "gemma4/ops/kv_cache.hpp"
#include "gemma4/ops/ops-inl.h"
#include "gemma4/ops/quantized_matmul-inl.h"
#include "hwy/highway.h"
#include "support.hpp"

HWY_BEFORE_NAMESPACE();
namespace gemma4 {
namespace HWY_NAMESPACE {
namespace {

std::vector<std::size_t> lengths() {
  const std::size_t N = hwy::HWY_NAMESPACE::Lanes(DF());
  return {1, 3, N - 1 == 0 ? 2 : N - 1, N, N + 1, 8 * N + 2};
}

// Random values, starting one float past an aligned address so loads are misaligned.
struct Buffer {
  std::vector<float> storage;
  float* data;
  Buffer(std::size_t n, unsigned seed, float lo = -2.0f, float hi = 2.0f) : storage(n + 1) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(lo, hi);
    for (auto& v : storage) v = u(rng);
    data = storage.data() + 1;
  }
};

std::vector<hwy::bfloat16_t> to_bf16(const float* x, std::size_t n) {
  std::vector<hwy::bfloat16_t> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = hwy::BF16FromF32(x[i]);
  return out;
}

double scalar_gelu(double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }

void TestRmsNorm() {
  for (std::size_t n : lengths()) {
    Buffer x(n, 1), w(n, 2, 0.5f, 1.5f);
    double ms = 0;
    for (std::size_t i = 0; i < n; ++i) ms += double(x.data[i]) * x.data[i];
    const double inv = 1 / std::sqrt(ms / n + 1e-6);
    std::vector<float> out(n);
    RMSNorm(x.data, w.data, n, 1e-6f, out.data());
    const auto wb = to_bf16(w.data, n);
    std::vector<float> out_bf16(n);
    RMSNorm(x.data, wb.data(), n, 1e-6f, out_bf16.data());
    std::vector<float> plain(x.data, x.data + n);
    RMSNormPlain(plain.data(), n, 1e-6f);
    for (std::size_t i = 0; i < n; ++i) {
      INFO("n " << n << " i " << i);
      CHECK(out[i] == Approx(x.data[i] * inv * w.data[i]).epsilon(1e-5));
      CHECK(out_bf16[i] == Approx(x.data[i] * inv * hwy::F32FromBF16(wb[i])).epsilon(1e-5));
      CHECK(plain[i] == Approx(x.data[i] * inv).epsilon(1e-5));
    }
  }
}

void TestMatMul() {
  for (std::size_t cols : lengths()) {
    for (std::size_t tokens : {1, 3, 4, 5, 9}) {
      const std::size_t rows = 7;
      Buffer w(rows * cols, 3), x(tokens * cols, 4);
      const auto wb = to_bf16(w.data, rows * cols);
      std::vector<float> out(tokens * rows), out_bf16(tokens * rows);
      MatMul(w.data, rows, cols, 0, rows, x.data, tokens, out.data());
      MatMul(wb.data(), rows, cols, 0, rows, x.data, tokens, out_bf16.data());
      for (std::size_t t = 0; t < tokens; ++t) {
        for (std::size_t r = 0; r < rows; ++r) {
          double want = 0, want_bf16 = 0;
          for (std::size_t c = 0; c < cols; ++c) {
            want += double(w.data[r * cols + c]) * x.data[t * cols + c];
            want_bf16 += double(hwy::F32FromBF16(wb[r * cols + c])) * x.data[t * cols + c];
          }
          INFO("cols " << cols << " tokens " << tokens << " t " << t << " r " << r);
          CHECK(out[t * rows + r] == Approx(want).margin(1e-4));
          CHECK(out_bf16[t * rows + r] == Approx(want_bf16).margin(1e-4));
          // A token's result does not depend on the batch it runs in.
          std::vector<float> alone(rows);
          MatMul(w.data, rows, cols, r, r + 1, x.data + t * cols, 1, alone.data());
          CHECK(out[t * rows + r] == alone[r]);
        }
      }
    }
  }
}

void TestGeluAndSoftcap() {
  for (std::size_t n : lengths()) {
    Buffer gate(n, 5, -6.0f, 6.0f), up(n, 6), capped(n, 7, -100.0f, 100.0f);
    std::vector<float> g(gate.data, gate.data + n), c(capped.data, capped.data + n);
    GeluMul(g.data(), up.data, n);
    Softcap(c.data(), n, 30.0f);
    for (std::size_t i = 0; i < n; ++i) {
      CHECK(g[i] == Approx(scalar_gelu(gate.data[i]) * up.data[i]).margin(1e-5));
      CHECK(c[i] == Approx(30.0 * std::tanh(capped.data[i] / 30.0)).margin(1e-4));
    }
  }
}

void TestRope() {
  for (std::size_t half : lengths()) {
    Buffer x(2 * half, 8), angle(half, 9, -3.0f, 3.0f);
    std::vector<float> cos(half), sin(half);
    for (std::size_t i = 0; i < half; ++i) {
      // The proportional form leaves the upper pairs unrotated: frequency 0.
      const float a = i >= half / 2 + 1 ? 0.0f : angle.data[i];
      cos[i] = std::cos(a);
      sin[i] = std::sin(a);
    }
    std::vector<float> y(x.data, x.data + 2 * half);
    Rope(y.data(), cos.data(), sin.data(), half);
    for (std::size_t i = 0; i < half; ++i) {
      const double a = x.data[i], b = x.data[i + half];
      CHECK(y[i] == Approx(a * cos[i] - b * sin[i]).margin(1e-6));
      CHECK(y[i + half] == Approx(b * cos[i] + a * sin[i]).margin(1e-6));
      if (sin[i] == 0.0f) {
        CHECK(y[i] == x.data[i]);  // unrotated pairs stay exact
        CHECK(y[i + half] == x.data[i + half]);
      }
    }
  }
}

void TestSoftmax() {
  for (std::size_t n : lengths()) {
    Buffer x(n, 10, -20.0f, 20.0f);
    std::vector<float> p(x.data, x.data + n);
    Softmax(p.data(), n);
    double max = -INFINITY, sum = 0, total = 0;
    for (std::size_t i = 0; i < n; ++i) max = std::max<double>(max, x.data[i]);
    for (std::size_t i = 0; i < n; ++i) sum += std::exp(x.data[i] - max);
    for (std::size_t i = 0; i < n; ++i) {
      CHECK(p[i] == Approx(std::exp(x.data[i] - max) / sum).margin(1e-6));
      total += p[i];
    }
    CHECK(total == Approx(1.0).margin(1e-5));
  }
}

constexpr KvFormat kKvFormats[] = {KvFormat::kF32, KvFormat::kBF16, KvFormat::kInt8};

// What a cache of `format` holds for `rows` rows of D values: each row rounded to bf16,
// or to int8 steps of max|row| / 127.
std::vector<float> as_stored(KvFormat format, const float* x, std::size_t rows, int D) {
  std::vector<float> out(x, x + rows * D);
  for (std::size_t r = 0; r < rows; ++r) {
    float* row = out.data() + r * D;
    const float step = *std::max_element(row, row + D, [](float a, float b) { return std::fabs(a) < std::fabs(b); });
    for (int i = 0; i < D; ++i) {
      if (format == KvFormat::kBF16) row[i] = bf16_to_f32(f32_to_bf16(row[i]));
      if (format == KvFormat::kInt8) row[i] = std::nearbyint(row[i] / (std::fabs(step) / 127)) * (std::fabs(step) / 127);
    }
  }
  return out;
}

// One head's attention in double precision: query q [D] over positions [first, last] of
// keys and values [positions, kv_heads, D] as the cache stores them.
std::vector<double> reference_attention(const float* q, int first, int last, const std::vector<float>& keys,
                                        const std::vector<float>& values, int kv_heads, int kv_head, int D) {
  const auto row = [&](int p) { return (std::size_t(p) * kv_heads + kv_head) * D; };
  std::vector<double> s, out(D);
  double max = -INFINITY, sum = 0;
  for (int p = first; p <= last; ++p) {
    double dot = 0;
    for (int i = 0; i < D; ++i) dot += double(q[i]) * keys[row(p) + i];
    s.push_back(dot);
    max = std::max(max, dot);
  }
  for (double x : s) sum += std::exp(x - max);
  for (int p = first; p <= last; ++p) {
    for (int i = 0; i < D; ++i) out[i] += std::exp(s[p - first] - max) / sum * values[row(p) + i];
  }
  return out;
}

// The attention of `block` (its out unused) for kHeads heads, its tokens together; checks
// they are the bits of each token alone.
template <int kHeads>
std::vector<float> attend_together_and_alone(QueryBlock block, const KvCache& cache, int kv_head, AttentionScratch& scratch) {
  std::vector<float> together(kQueryBlock * block.stride), alone(together.size());
  block.out = together.data();
  AttendHeads<kHeads>(kHeads, block, cache, kv_head, scratch, 0);
  for (int t = 0; t < block.tokens; ++t) {
    const QueryBlock one{.q = block.q + t * block.stride, .out = alone.data() + t * block.stride, .first = {block.first[t]}, .last = block.last + t};
    AttendHeads<kHeads>(kHeads, one, cache, kv_head, scratch, 0);
  }
  CHECK(together == alone);
  return together;
}

void GroupedAttention(KvFormat format) {
  INFO("KV format " << kv_format_name(format));
  const int D = 2 * kPositionTile, kv_heads = 2, heads_per_kv = 4;
  // A ring of 20 positions (rounded up to 32) holding positions 0..69: the newest
  // overwrite the oldest, and [first, last] may start and end inside a tile and wrap.
  KvCache cache(20, kv_heads, D, format);
  REQUIRE(cache.capacity() == 2 * kPositionTile);
  const int written = 70;
  Buffer keys(std::size_t(written) * kv_heads * D, 11), values(std::size_t(written) * kv_heads * D, 12);
  for (int p = 0; p < written; ++p) {
    cache.store(p, keys.data + std::size_t(p) * kv_heads * D, values.data + std::size_t(p) * kv_heads * D);
  }
  const std::vector<float> stored_keys = as_stored(format, keys.data, std::size_t(written) * kv_heads, D);
  const std::vector<float> stored_values = as_stored(format, values.data, std::size_t(written) * kv_heads, D);
  Buffer q(std::size_t(heads_per_kv) * D, 13, -1.0f, 1.0f);
  const int kv_head = 1;
  for (const std::pair<int, int>& positions : {std::pair{50, 69}, std::pair{64, 69}, std::pair{69, 69}, std::pair{41, 60}}) {
    const int first = positions.first, last = positions.second;  // the lambda below captures them: no structured binding (C++20 allows it, clang 14 does not)
    INFO("positions " << first << ".." << last);
    AttentionScratch scratch(1, heads_per_kv, D);
    std::vector<float> grouped(std::size_t(heads_per_kv) * D), alone(grouped.size()), pairs(grouped.size());
    const auto heads = [&](int h, std::vector<float>& out) {
      return QueryBlock{.q = q.data + h * D, .out = out.data() + h * D, .first = {first}, .last = last};
    };
    AttendHeads<4>(4, heads(0, grouped), cache, kv_head, scratch, 0);
    for (int h = 0; h < heads_per_kv; ++h) AttendHeads<4>(1, heads(h, alone), cache, kv_head, scratch, 0);
    for (int h = 0; h < heads_per_kv; h += 2) AttendHeads<4>(2, heads(h, pairs), cache, kv_head, scratch, 0);
    CHECK(grouped == alone);
    CHECK(grouped == pairs);
    for (int h = 0; h < heads_per_kv; ++h) {
      const std::vector<double> want = reference_attention(q.data + h * D, first, last, stored_keys, stored_values, kv_heads, kv_head, D);
      for (int i = 0; i < D; ++i) CHECK(grouped[h * D + i] == Approx(want[i]).margin(1e-5));
    }
  }
}

void TestGroupedAttention() {
  for (KvFormat format : kKvFormats) GroupedAttention(format);
}

// A block of consecutive query positions, each with its own sliding window, gives the
// same bits as the positions one at a time: while the windows start at 0, once they
// slide, and across the ring's wrap (a ring just big enough for the block).
void AttentionBlock(KvFormat format) {
  INFO("KV format " << kv_format_name(format));
  const int D = 2 * kPositionTile, kv_heads = 2, heads = 2, window = 12, positions = 60;
  const std::size_t stride = 3 * heads * D;  // rows of other heads lie between tokens
  KvCache cache(window + kQueryBlock - 1, kv_heads, D, format);
  Buffer keys(std::size_t(positions) * kv_heads * D, 15), values(std::size_t(positions) * kv_heads * D, 16);
  Buffer q(kQueryBlock * stride, 17, -1.0f, 1.0f);
  const int kv_head = 1;
  AttentionScratch scratch(1, heads * kQueryBlock, D);
  for (int newest = 0; newest < positions; ++newest) {
    cache.store(newest, keys.data + std::size_t(newest) * kv_heads * D, values.data + std::size_t(newest) * kv_heads * D);
    for (int tokens = 1; tokens <= std::min(kQueryBlock, newest + 1); ++tokens) {
      INFO("tokens " << tokens << " up to position " << newest);
      QueryBlock block{.q = q.data, .tokens = tokens, .stride = stride, .last = newest - tokens + 1};
      for (int t = 0; t < tokens; ++t) block.first[t] = first_visible_position(block.last + t, AttentionType::kSliding, window);
      attend_together_and_alone<heads>(block, cache, kv_head, scratch);
    }
  }
}

void TestAttentionBlock() {
  for (KvFormat format : kKvFormats) AttentionBlock(format);
}

// Attention over several segments (ops/attention_scratch.hpp), merged through their
// softmax sums: a token matches the double-precision reference, and a block of tokens
// whose positions end on either side of a segment's edge gives the bits of its tokens
// one at a time.
void SegmentedAttention(KvFormat format) {
  INFO("KV format " << kv_format_name(format));
  const int D = 2 * kPositionTile, kv_heads = 2, heads = 4, positions = 2 * kAttentionSegment + 70;
  const std::size_t stride = std::size_t(kv_heads) * heads * D;
  KvCache cache(positions, kv_heads, D, format);
  Buffer keys(std::size_t(positions) * kv_heads * D, 21), values(std::size_t(positions) * kv_heads * D, 22);
  for (int p = 0; p < positions; ++p) cache.store(p, keys.data + std::size_t(p) * kv_heads * D, values.data + std::size_t(p) * kv_heads * D);
  const std::vector<float> stored_keys = as_stored(format, keys.data, std::size_t(positions) * kv_heads, D);
  const std::vector<float> stored_values = as_stored(format, values.data, std::size_t(positions) * kv_heads, D);
  Buffer q(kQueryBlock * stride, 23, -2.0f, 2.0f);
  const int kv_head = 1;
  AttentionScratch scratch(1, heads * kQueryBlock, D);
  for (int newest : {kAttentionSegment - 2, kAttentionSegment, kAttentionSegment + 2, 2 * kAttentionSegment + 1, positions - 1}) {
    for (int tokens = 1; tokens <= kQueryBlock; ++tokens) {
      INFO("tokens " << tokens << " up to position " << newest);
      // Queries from the kv head's group onwards; the first token's positions start past
      // segment 0 when the window slides, so a block may see a partial first segment.
      const int window = 700;
      QueryBlock block{.q = q.data + kv_head * heads * D, .tokens = tokens, .stride = stride, .last = newest - tokens + 1};
      for (int t = 0; t < tokens; ++t) block.first[t] = first_visible_position(block.last + t, AttentionType::kSliding, window);
      const std::vector<float> together = attend_together_and_alone<heads>(block, cache, kv_head, scratch);
      const int t = tokens - 1;
      for (int h = 0; h < heads; ++h) {
        const float* query = block.q + t * stride + h * D;
        const std::vector<double> want = reference_attention(query, block.first[t], block.last + t, stored_keys, stored_values, kv_heads, kv_head, D);
        for (int i = 0; i < D; ++i) CHECK(together[t * stride + h * D + i] == Approx(want[i]).margin(1e-5));
      }
    }
  }
}

void TestSegmentedAttention() {
  for (KvFormat format : kKvFormats) SegmentedAttention(format);
}

// All heads of a layer over a long context on 1 and 3 threads: decode and a block of
// drafts spread their segments' partial results over the threads, a prefill chunk its
// blocks; the bits are those of one thread.
void TestSegmentedAttentionThreads() {
  constexpr int kHeads = 8, kKvHeads = 2, D = 2 * kPositionTile;
  const int positions = 3 * kAttentionSegment + 40;
  ThreadPool one(1), three(3);
  for (KvFormat format : kKvFormats) {
    INFO("KV format " << kv_format_name(format));
    KvCache cache(positions, kKvHeads, D, format);
    Buffer keys(std::size_t(positions) * kKvHeads * D, 31), values(std::size_t(positions) * kKvHeads * D, 32);
    for (int p = 0; p < positions; ++p) cache.store(p, keys.data + std::size_t(p) * kKvHeads * D, values.data + std::size_t(p) * kKvHeads * D);
    for (int tokens : {1, 3, 9}) {
      INFO(tokens << " tokens");
      Buffer q(std::size_t(tokens) * kHeads * D, 33, -2.0f, 2.0f);
      std::vector<float> outs[2];
      ThreadPool* pools[] = {&one, &three};
      for (int i = 0; i < 2; ++i) {
        outs[i].resize(std::size_t(tokens) * kHeads * D);
        const AttentionRun run{.cache = &cache, .q = q.data, .out = outs[i].data(), .tokens = tokens, .last = positions - tokens};
        AttentionScratch scratch(pools[i]->size(), std::size_t(kHeads / kKvHeads) * kQueryBlock, D);
        AttendAllHeads<kHeads, kKvHeads>(*pools[i], std::span(&run, 1), [](int) { return 0; }, scratch);
      }
      CHECK(outs[0] == outs[1]);
    }
  }
}

void TestScaledRow() {
  for (std::size_t n : lengths()) {
    Buffer x(2 * n, 14);
    std::vector<float> out(n);
    TensorView f32{reinterpret_cast<const std::byte*>(x.data), DType::kF32, {2, static_cast<std::int64_t>(n)}};
    ScaledRow(f32, n, n, 3.0f, out.data());
    for (std::size_t i = 0; i < n; ++i) CHECK(out[i] == x.data[n + i] * 3.0f);

    const auto bf16 = to_bf16(x.data, 2 * n);
    TensorView b{reinterpret_cast<const std::byte*>(bf16.data()), DType::kBF16, {2, static_cast<std::int64_t>(n)}};
    ScaledRow(b, n, n, 16.0f, out.data());
    for (std::size_t i = 0; i < n; ++i) CHECK(out[i] == hwy::F32FromBF16(bf16[n + i]) * 16.0f);

    // An F16 table at an odd address, as a mapped PLE table may be: the element-wise path.
    std::vector<std::byte> f16(4 * n + 1);
    for (std::size_t i = 0; i < 2 * n; ++i) {
      const std::uint16_t h = f32_to_f16(x.data[i]);
      std::memcpy(f16.data() + 1 + 2 * i, &h, 2);
    }
    TensorView h{f16.data() + 1, DType::kF16, {2, static_cast<std::int64_t>(n)}};
    ScaledRow(h, n, n, 2.0f, out.data());
    for (std::size_t i = 0; i < n; ++i) CHECK(out[i] == f16_to_f32(f32_to_f16(x.data[n + i])) * 2.0f);
  }
}

// Highway's target choice once left Zen 4's VNNI unused, prefill five times slower,
// with every other test passing.
void TestIntDotChoice() {
#if GEMMA4_ARM_DOT
  const ArmFeatures& arm = arm_features();
  CHECK(ChosenIntDot() == (arm.i8mm ? IntDot::kI8mm : arm.dotprod ? IntDot::kSdot : IntDot::kInt16));
#else
  CHECK(ChosenIntDot() == (HaveVnni() ? IntDot::kVnni : kInt16Target ? IntDot::kInt16 : IntDot::kPortable));
#endif
#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_SSE4
  CHECK(ChosenIntDot() == IntDot::kInt16);
#endif
  // The passes are compiled for the dot chosen here.
  CHECK(WithChosenIntDot([]<IntDot kDot>() { return kDot; }) == ChosenIntDot());
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  CHECK(HaveVnni() == static_cast<bool>(__builtin_cpu_supports("avx512vnni")));
#else
  CHECK_FALSE(HaveVnni());
#if HWY_ARCH_X86 && defined(GEMMA4_NATIVE_ARCH)
  CHECK_FALSE(__builtin_cpu_supports("avx512vnni"));  // -march=native with VNNI gives an AVX-512 target
#endif
#endif
}

// Every integer dot of an ARM CPU, not only its best (qemu's -cpu max has them all).
template <IntDot kDot>
void CheckArmIntDot(bool cpu_has_it, const QuantizedMatrix& q, const QuantizedActivations& a,
                    const std::vector<float>& portable) {
  if (!cpu_has_it) return;
  std::vector<float> out(portable.size(), -4.0f);
  QuantizedMatMul<kDot>(q, a, 0, q.rows() / kRowBlock, out.data());
  INFO(IntDotName(kDot));
  CHECK(test::first_difference(out, portable) == "");
}

// cols 100: an odd number of int8 quads, which ARM's matrix tiles leave to USDOT.
void TestQuantizedMatMul(std::size_t tokens, std::size_t cols) {
  using test::first_difference;
  const std::size_t rows = 80;  // 5 row blocks: the kernels' 3- and 2-block panels plus tails
  const auto w = test::normal_values(rows * cols, 2, 0.05f);
  auto x = test::normal_values(tokens * cols, 3);
  x[7] = 9.0f;  // an outlier sets the scale of token 0 (int4) or of its first group (int8)
  QuantizedActivations a;
  a.reserve(tokens, cols);
  for (WeightFormat f : {WeightFormat::kInt8, WeightFormat::kInt4}) {
    if (!packable(f, rows, cols)) continue;
    const std::size_t group = activation_group(f, cols);
    QuantizeActivations(x.data(), tokens, cols, f, a);
    REQUIRE(a.groups == (cols + group - 1) / group);
    for (std::size_t t = 0; t < tokens; ++t) {
      for (std::size_t g = 0; g < a.groups; ++g) {
        int sum = 0;
        float absmax = 0;
        for (std::size_t c = g * group; c < std::min(cols, (g + 1) * group); ++c) {
          REQUIRE(std::fabs(a.q[t * cols + c] * a.scale_of(t, g) - x[t * cols + c]) <= a.scale_of(t, g) / 2 * 1.0001f);
          sum += a.q[t * cols + c];
          absmax = std::max(absmax, std::fabs(x[t * cols + c]));
        }
        if (f == WeightFormat::kInt8) CHECK(a.sum_of(t, g) == sum);
        CHECK(a.scale_of(t, g) == absmax / 127.0f);
      }
      for (std::size_t g = 0; f == WeightFormat::kInt4 && g < cols / kInt4Group; ++g) {
        int sum = 0;
        for (std::size_t c = g * kInt4Group; c < (g + 1) * kInt4Group; ++c) sum += a.q[t * cols + c];
        CHECK(a.group_offset[t * (cols / kInt4Group) + g] == -8 * sum);
      }
    }
    QuantizedMatrix q(f, rows, cols);
    q.quantize_blocks(w.data(), 0, rows / kRowBlock);
    std::vector<float> chosen(tokens * rows, -1.0f), portable(tokens * rows, -2.0f), split(tokens * rows, -3.0f),
        odd_split(tokens * rows, -4.0f);
    // With the dot a session would choose: VNNI or 16-bit pairs where the target has them.
    const auto chosen_matmul = [&](std::size_t first_block, std::size_t end_block, float* out) {
      WithChosenIntDot([&]<IntDot kDot>() { QuantizedMatMul<kDot>(q, a, first_block, end_block, out); });
    };
    chosen_matmul(0, rows / kRowBlock, chosen.data());
    QuantizedMatMul<IntDot::kPortable>(q, a, 0, rows / kRowBlock, portable.data());
    for (std::size_t b = 0; b < rows / kRowBlock; ++b) chosen_matmul(b, b + 1, split.data());
    chosen_matmul(0, 1, odd_split.data());  // the rest starts inside an int4 panel
    chosen_matmul(1, rows / kRowBlock, odd_split.data());
    INFO(weight_format_name(f) << ", " << tokens << " tokens");
    CHECK(first_difference(chosen, portable) == "");
    CHECK(first_difference(chosen, split) == "");  // a row's result does not depend on how blocks are split
    CHECK(first_difference(chosen, odd_split) == "");
#if GEMMA4_ARM_DOT
    CheckArmIntDot<IntDot::kInt16>(true, q, a, portable);
    CheckArmIntDot<IntDot::kSdot>(arm_features().dotprod, q, a, portable);
    CheckArmIntDot<IntDot::kI8mm>(arm_features().i8mm, q, a, portable);
#endif
    std::vector<float> dequantized(rows * cols);
    q.dequantize_rows(0, rows, dequantized.data());
    for (std::size_t t = 0; t < tokens; ++t) {
      for (std::size_t r = 0; r < rows; ++r) {
        double expected = 0;
        for (std::size_t c = 0; c < cols; ++c) expected += double(dequantized[r * cols + c]) * a.q[t * cols + c] * a.scale_of(t, c / group);
        REQUIRE(std::fabs(chosen[t * rows + r] - expected) <= 1e-4 * (1 + std::fabs(expected)));
      }
    }
    // Activations quantized for the other format are refused, not misread.
    QuantizeActivations(x.data(), tokens, cols, f == WeightFormat::kInt8 ? WeightFormat::kInt4 : WeightFormat::kInt8, a);
    CHECK_THROWS_WITH(QuantizedMatMul<IntDot::kPortable>(q, a, 0, 1, portable.data()), Catch::Matchers::Contains("quantized for"));
  }
}

// int4 sums at their widest: 31 weights of each group at the top nibble (15), the last
// at 0 (the group's 7s and its -8 at levels 7 and -8), every activation +-127. The 16-bit
// pair sums of x86's int4 dot then hold up to 8 * 2 * 15 * 127 = 30480 of a group, which
// must not saturate (2^15 - 1).
void TestInt4Extremes() {
  using test::first_difference;
  constexpr std::size_t rows = 32, cols = 256, tokens = 6;
  std::vector<float> w(rows * cols), x(tokens * cols);
  for (std::size_t r = 0; r < rows; ++r) {
    const float sign = r % 2 == 0 ? 1.0f : -1.0f;
    for (std::size_t c = 0; c < cols; ++c) w[r * cols + c] = sign * (c % kInt4Group == kInt4Group - 1 ? -8.0f : 7.0f);
  }
  for (std::size_t t = 0; t < tokens; ++t) {
    for (std::size_t c = 0; c < cols; ++c) x[t * cols + c] = t % 2 == 0 ? 1.0f : -1.0f;
  }
  QuantizedMatrix q(WeightFormat::kInt4, rows, cols);
  q.quantize_blocks(w.data(), 0, rows / kRowBlock);
  std::vector<float> dequantized(rows * cols);
  q.dequantize_rows(0, rows, dequantized.data());
  REQUIRE(std::fabs(dequantized[0] - 7.0f) < 0.01f);  // a scale of 1 (or -1): the levels are the weights
  QuantizedActivations a;
  a.reserve(tokens, cols);
  QuantizeActivations(x.data(), tokens, cols, WeightFormat::kInt4, a);
  REQUIRE(a.q[0] == 127);
  for (std::size_t n : {std::size_t{1}, tokens}) {
    a.tokens = n;
    std::vector<float> chosen(n * rows, -1.0f), portable(n * rows, -2.0f);
    WithChosenIntDot([&]<IntDot kDot>() { QuantizedMatMul<kDot>(q, a, 0, rows / kRowBlock, chosen.data()); });
    QuantizedMatMul<IntDot::kPortable>(q, a, 0, rows / kRowBlock, portable.data());
    INFO(n << " tokens");
    CHECK(first_difference(chosen, portable) == "");
    for (std::size_t t = 0; t < n; ++t) {
      for (std::size_t r = 0; r < rows; ++r) {
        double expected = 0;
        for (std::size_t c = 0; c < cols; ++c) expected += double(dequantized[r * cols + c]) * a.q[t * cols + c] * a.scale_of(t, 0);
        CHECK(std::fabs(chosen[t * rows + r] - expected) <= 1e-4 * (1 + std::fabs(expected)));
      }
    }
  }
}

}  // namespace
}  // namespace HWY_NAMESPACE
}  // namespace gemma4
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace gemma4 {

// A test case running `test` on the SIMD target tests/main.cpp chose.
#define GEMMA4_TARGET_TEST(test, name, tags) \
  HWY_EXPORT(test);                          \
  TEST_CASE(name, tags) { HWY_DYNAMIC_DISPATCH(test)(); }

GEMMA4_TARGET_TEST(TestRmsNorm, "RMSNorm with and without weight matches scalar", "[ops]")
GEMMA4_TARGET_TEST(TestMatMul, "MatMul of f32 and bf16 weights matches scalar for any token count", "[ops]")
GEMMA4_TARGET_TEST(TestGeluAndSoftcap, "gelu_tanh and softcap match scalar", "[ops]")
GEMMA4_TARGET_TEST(TestRope, "rotate-half RoPE, including unrotated pairs, matches scalar", "[ops]")
GEMMA4_TARGET_TEST(TestSoftmax, "softmax matches scalar and sums to 1", "[ops]")
GEMMA4_TARGET_TEST(TestGroupedAttention, "grouped attention over a ring of cached positions matches scalar, for any head grouping", "[ops]")
GEMMA4_TARGET_TEST(TestAttentionBlock, "attention of a block of positions gives the bits of one position at a time", "[ops]")
GEMMA4_TARGET_TEST(TestSegmentedAttention, "attention over several segments matches the reference, a block the bits of its tokens alone", "[ops]")
GEMMA4_TARGET_TEST(TestSegmentedAttentionThreads, "attention over several segments gives the same bits on 1 and 3 threads", "[ops][threads]")
GEMMA4_TARGET_TEST(TestScaledRow, "embedding rows widen to f32 from every stored layout", "[ops]")
GEMMA4_TARGET_TEST(TestIntDotChoice, "a target uses the best integer dot it and the CPU have (VNNI, SDOT, i8mm)", "[ops][quantized]")

GEMMA4_TARGET_TEST(TestInt4Extremes, "int4 sums at the extreme nibbles and activations agree exactly with the portable path", "[ops][quantized]")

HWY_EXPORT(TestQuantizedMatMul);
TEST_CASE("quantized matmul: every integer dot agrees exactly with the portable path and matches the reference", "[ops][quantized]") {
  HWY_DYNAMIC_DISPATCH(TestQuantizedMatMul)(GENERATE(1u, 2u, 3u, 4u, 5u, 6u, 7u, 11u, 13u), GENERATE(160u, 100u));
}

TEST_CASE("a KV cache needs head dims in whole value chunks", "[ops]") {
  CHECK(KvCache(16, 1, kValueChunk).head_dim() == kValueChunk);
  CHECK_THROWS_WITH(KvCache(16, 1, kValueChunk + 16), Catch::Contains("head dim 48 is not a multiple of 32"));
  CHECK_THROWS_WITH(KvCache(16, 1, 0), Catch::Contains("head dim 0"));
}

TEST_CASE("the sliding-window edge and the GQA head mapping", "[ops]") {
  // A key exactly `window` positions back is excluded, `window - 1` back included.
  CHECK(first_visible_position(600, AttentionType::kSliding, 512) == 600 - 511);
  CHECK(first_visible_position(511, AttentionType::kSliding, 512) == 0);
  CHECK(first_visible_position(512, AttentionType::kSliding, 512) == 1);
  CHECK(first_visible_position(600, AttentionType::kFull, 512) == 0);
  // E2B: 8 query heads share 1 kv head; E4B: heads 0-3 read kv head 0, 4-7 kv head 1.
  for (int h = 0; h < 8; ++h) {
    CHECK(kv_head_of(h, 8, 1) == 0);
    CHECK(kv_head_of(h, 8, 2) == h / 4);
  }
}

}  // namespace gemma4
#endif  // HWY_ONCE
