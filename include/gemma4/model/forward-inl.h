// The forward pass (spec sections 3-4) over the rows of one pass, written once with
// Highway and compiled per SIMD target: for the one target of the compiler's flags, or,
// with GEMMA4_DYNAMIC_DISPATCH, for each target model/passes.hpp builds in (Highway's
// foreach_target over model/passes-inl.h), the best of which a Session chooses at run time. What it works on,
// the sequences' caches and the pass's scratch, is target-independent
// (model/pass_state.hpp). Prompts run as matrix-matrix products; decoding is the
// same path with one token, and a batch (model/batch.hpp) one token of each sequence:
// the matmuls see rows, only the cache writes and attention see the sequences.

#ifndef GEMMA4_MODEL_FORWARD_INL_H_
#define GEMMA4_MODEL_FORWARD_INL_H_
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <span>
#include <utility>

#include "gemma4/model/pass_state.hpp"
#endif  // GEMMA4_MODEL_FORWARD_INL_H_

#if defined(GEMMA4_MODEL_FORWARD_TOGGLE) == defined(HWY_TARGET_TOGGLE)
#ifdef GEMMA4_MODEL_FORWARD_TOGGLE
#undef GEMMA4_MODEL_FORWARD_TOGGLE
#else
#define GEMMA4_MODEL_FORWARD_TOGGLE
#endif

#include "gemma4/model/decoder_layer-inl.h"
#include "gemma4/ops/attention-inl.h"
#include "gemma4/ops/int_dot-inl.h"
#include "gemma4/ops/matmul-inl.h"
#include "gemma4/ops/ops-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace gemma4 {
namespace HWY_NAMESPACE {

// out = table[token] * scale, a row of `width` floats: the dense elements, or in a
// packed model the rows of its packed matrix that make up the token's row.
inline void LookupRow(const MatrixView& table, int token, std::size_t width, float scale, float* out) {
  if (table.data != nullptr) return ScaledRow(table, static_cast<std::size_t>(token) * width, width, scale, out);
  const QuantizedMatrix& quantized = *quantized_matrix(table.linear);
  const std::size_t rows = width / quantized.cols();
  quantized.dequantize_rows(static_cast<std::size_t>(token) * rows, rows, out);
  Scale(out, width, scale);
}

// The forward pass of variant V whose integer kernels multiply with dot product kDot.
template <Variant V, IntDot kDot>
class Forward {
  using State = PassState<V>;
  using Runs = std::span<const SequenceRun<V>>;
  static constexpr const ModelConfig& kC = V::config;
  static constexpr int kHidden = State::kHidden, kHeads = State::kHeads, kKvHeads = State::kKvHeads, kPle = State::kPle,
                       kNumLayers = State::kNumLayers, kWindow = State::kWindow;

 public:
  // ForwardPass's functions for this target.
  static void Run(State& state, std::span<const int> tokens, Runs runs) {
    std::size_t rows = 0;
    for (const SequenceRun<V>& run : runs) rows += static_cast<std::size_t>(run.rows);
    if (rows != tokens.size() || rows > static_cast<std::size_t>(state.rows)) {
      fail(ErrorKind::kInvalidArgument, "forward pass: {} tokens for runs of {} rows in a pass of at most {}", tokens.size(), rows, state.rows);
    }
    Forward(state, runs).run(tokens);
  }
  static void FinalLogits(State& state, std::size_t first, std::size_t count, std::span<float> out, float* hidden) {
    Forward(state, {}).final_logits(first, count, out, hidden);
  }

 private:
  Forward(State& state, Runs runs) : s_(state), runs_(runs) {}

  // f(run, first_row) for each run, first_row being where its rows start in the pass.
  template <typename F>
  void for_each_run(const F& f) const {
    int first_row = 0;
    for (const SequenceRun<V>& run : runs_) {
      f(run, first_row);
      first_row += run.rows;
    }
  }

  void run(std::span<const int> tokens) {
    const int n = static_cast<int>(tokens.size());
    embed(tokens);
    per_layer_inputs(tokens);
    s_.row_release.looked_up(n);
    for_each_run([&](const SequenceRun<V>& run, int first_row) {
      for (int t = 0; t < run.rows; ++t) {
        for (RopeTable& r : s_.rope) r.set_row(static_cast<std::size_t>(first_row + t), run.sequence->position() + t);
      }
    });
    run_layers(n, std::make_index_sequence<kNumLayers>{});
  }

  // h = E[token] * embed_scale
  void embed(std::span<const int> tokens) {
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      LookupRow(s_.weights.global.embed_tokens, tokens[t], kHidden, s_.weights.embedding_scale, s_.x.data() + t * kHidden);
    }
  }

  // ple[t][l] = (RMSNorm(W_plp h * hidden^-0.5) + E_ple[token][l] * sqrt(P)) * 2^-0.5
  void per_layer_inputs(std::span<const int> tokens) {
    const GlobalWeights& g = s_.weights.global;
    const std::size_t n = tokens.size(), width = static_cast<std::size_t>(kNumLayers) * kPle;
    matmul(g.per_layer_model_projection.linear, s_.x.data(), n, s_.ple.data());
    Scale(s_.ple.data(), n * width, 1.0f / std::sqrt(static_cast<float>(kHidden)));
    norm_rows(s_.ple.data(), n * kNumLayers, kPle, g.per_layer_projection_norm);
    const float token_scale = std::sqrt(static_cast<float>(kPle));
    const float mix = 1.0f / std::sqrt(2.0f);
    for (std::size_t t = 0; t < n; ++t) {
      float* ple = s_.ple.data() + t * width;
      LookupRow(g.embed_tokens_per_layer, tokens[t], width, token_scale, s_.ple_row.data());  // mapped; only these rows are read
      AddTo(s_.ple_row.data(), ple, width);
      Scale(ple, width, mix);
    }
  }

  template <std::size_t... kLayer>
  void run_layers(int n, std::index_sequence<kLayer...>) {
    (run_layer<kLayers<V>[kLayer].kind, kLayers<V>[kLayer].per_layer_input>(static_cast<int>(kLayer), n), ...);
  }

  // Decoder layer `layer` (of kind kKind) over the pass's n rows.
  template <LayerKind kKind, bool kPerLayerInput>
  void run_layer(int layer, int n) {
    SequenceCaches kv{*this, kLayers<V>[layer].kv_cache_slot};
    DecoderLayer<kC, kKind, kPerLayerInput, kDot>(s_, s_.weights.layers[layer], n, s_.rope[static_cast<int>(kKind.attention)], kv,
                                                  s_.ple.data() + static_cast<std::size_t>(layer) * kPle,
                                                  static_cast<std::size_t>(kNumLayers) * kPle);
  }

  // A layer's caches, one per sequence of the pass, as DecoderLayer reads and writes them.
  struct SequenceCaches {
    Forward& f;
    int slot;  // the layer's kv_cache_slot

    // Each run's new keys and values [rows, kv_heads, D] at its next positions.
    template <int D>
    void store(const float* k, const float* v) {
      const std::size_t row = static_cast<std::size_t>(kKvHeads) * D;
      f.for_each_run([&](const SequenceRun<V>& run, int first_row) {
        KvCache& cache = run.sequence->caches[slot];
        for (int t = first_row; t < first_row + run.rows; ++t) {
          cache.store(run.sequence->position() + t - first_row, k + t * row, v + t * row);
        }
      });
    }
    template <AttentionType kType, int D>
    void attend() {
      f.template attend<kType, D>(slot);
    }
  };

  void matmul(const WeightMatrix& w, const float* x, std::size_t n, float* out) {
    ParallelMatMul<kDot, 1>(s_.pool, {&w}, x, n, {out}, s_.activations);
  }
  void norm_rows(float* x, std::size_t rows, std::size_t width, const TensorView& w) { NormRows(s_.pool, x, rows, width, w, kC.rms_norm_eps); }

  // attn[t, h] = softmax(q[t, h] . K) V over the positions query t may see in the cache
  // of its sequence.
  template <AttentionType kType, int D>
  void attend(int cache_slot) {
    std::size_t count = 0;
    for_each_run([&](const SequenceRun<V>& run, int first_row) {
      const std::size_t offset = static_cast<std::size_t>(first_row) * kHeads * D;
      s_.attention_runs[count++] = {.cache = &run.sequence->caches[cache_slot], .q = s_.q.data() + offset, .out = s_.attn.data() + offset,
                                    .tokens = run.rows, .last = run.sequence->position()};
    });
    AttendAllHeads<kHeads, kKvHeads>(s_.pool, std::span(s_.attention_runs).first(count),
                                     [](int position) { return first_visible_position(position, kType, kWindow); },
                                     s_.attention);
  }

  // logits of `count` chunk tokens from `first`: softcap(E . RMSNorm(x, norm)).
  void final_logits(std::size_t first, std::size_t count, std::span<float> out, float* hidden) {
    std::copy_n(s_.x.data() + first * kHidden, count * kHidden, s_.normed.data());
    RMSNormRows(s_.normed.data(), count, kHidden, s_.weights.global.norm, kC.rms_norm_eps);
    if (hidden != nullptr) std::copy_n(s_.normed.data(), count * kHidden, hidden);
    matmul(s_.weights.global.embed_tokens.linear, s_.normed.data(), count, out.data());
    if (kC.final_logit_softcapping > 0) {
      // A tanh per logit, 0.1 ms per token of E2B's vocabulary on one core: the threads split it.
      for_rows(s_.pool, out.size(), 1, [&](std::size_t first, std::size_t end) {
        Softcap(out.data() + first, end - first, static_cast<float>(kC.final_logit_softcapping));
      });
    }
  }

  State& s_;
  Runs runs_;
};

// The forward pass of this target, with the dot product the CPU does best.
template <Variant V>
ForwardPass<V> SimdTargetForwardPass() {
  return WithChosenIntDot([]<IntDot kDot>() {
    return ForwardPass<V>{&Forward<V, kDot>::Run, &Forward<V, kDot>::FinalLogits, hwy::TargetName(HWY_TARGET), IntDotName(kDot)};
  });
}

}  // namespace HWY_NAMESPACE
}  // namespace gemma4
HWY_AFTER_NAMESPACE();

#endif  // toggle
