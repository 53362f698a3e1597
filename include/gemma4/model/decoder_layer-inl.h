// One decoder layer (spec section 3), written once with Highway for both pipelines that
// run one: the target's forward pass (model/forward-inl.h), over the rows of a pass, for
// each of its layers; and an assistant's draft step (model/draft-inl.h), one row, for
// each of its query-only layers. A layer is specialised by its kind (sliding or full;
// own KV cache or another layer's) and whether it has a per-layer input, never by its
// index. What the two pipelines do differently is where keys and values live: the
// caller's `kv` stores an own-KV layer's new keys and values (store<D>) and attends
// each query row to the cached positions it sees (attend<type, D>).

#ifndef GEMMA4_MODEL_DECODER_LAYER_INL_H_
#define GEMMA4_MODEL_DECODER_LAYER_INL_H_
#include <algorithm>
#include <cstddef>

#include "gemma4/config/topology.hpp"
#include "gemma4/model/pass_state.hpp"
#include "gemma4/weights/model_weights.hpp"
#endif  // GEMMA4_MODEL_DECODER_LAYER_INL_H_

#if defined(GEMMA4_MODEL_DECODER_LAYER_TOGGLE) == defined(HWY_TARGET_TOGGLE)
#ifdef GEMMA4_MODEL_DECODER_LAYER_TOGGLE
#undef GEMMA4_MODEL_DECODER_LAYER_TOGGLE
#else
#define GEMMA4_MODEL_DECODER_LAYER_TOGGLE
#endif

#include "gemma4/ops/int_dot-inl.h"
#include "gemma4/ops/matmul-inl.h"
#include "gemma4/ops/ops-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace gemma4 {
namespace HWY_NAMESPACE {

// RMSNorm of `rows` rows of `width` floats, in place.
inline void NormRows(ThreadPool& pool, float* x, std::size_t rows, std::size_t width, const TensorView& w, float eps) {
  for_rows(pool, rows, width, [&](std::size_t first, std::size_t end) { RMSNormRows(x + first * width, end - first, width, w, eps); });
}

// Rotates `num_heads` heads of head dim D in each of n rows, row t at the table's row t.
template <int D>
void ApplyRope(float* heads, int n, int num_heads, const RopeTable& rope) {
  for (int t = 0; t < n; ++t) {
    for (int h = 0; h < num_heads; ++h) {
      Rope(heads + (static_cast<std::size_t>(t) * num_heads + h) * D, rope.cos.data() + t * D / 2, rope.sin.data() + t * D / 2, D / 2);
    }
  }
}

// The layer over s's first n rows (x: the residual stream, updated in place). Scratch
// holds the pass's buffers (x, normed, q, attn, gate, up; k and v for own-KV layers,
// ple_gate for per-layer inputs), its pool and quantized activations. per_layer_input:
// row t's input to this layer at per_layer_input + t * per_layer_stride.
template <const ModelConfig& kC, LayerKind kKind, bool kPerLayerInput, IntDot kDot, class Scratch, class Kv>
void DecoderLayer(Scratch& s, const LayerWeights& w, int n, const RopeTable& rope, Kv& kv, const float* per_layer_input = nullptr,
                  std::size_t per_layer_stride = 0) {
  constexpr int kHidden = kC.hidden_size, kHeads = kC.num_attention_heads, kKvHeads = kC.num_key_value_heads;
  constexpr int D = head_dim(kC, kKind.attention);
  constexpr int F = ffn_width(kC, kKind);
  const float eps = kC.rms_norm_eps;
  const std::size_t rows = static_cast<std::size_t>(n), hidden_floats = rows * kHidden;
  const auto matmul = [&](const WeightMatrix& m, const float* x, float* out) {
    ParallelMatMul<kDot, 1>(s.pool, {&m}, x, rows, {out}, s.activations);
  };

  // Attention.
  std::copy_n(s.x.data(), hidden_floats, s.normed.data());
  NormRows(s.pool, s.normed.data(), rows, kHidden, w.input_layernorm, eps);
  if constexpr (kKind.kv_shared) {
    matmul(w.q_proj.linear, s.normed.data(), s.q.data());
  } else {
    ParallelMatMul<kDot, 3>(s.pool, {&w.q_proj.linear, &w.k_proj.linear, &w.v_proj.linear}, s.normed.data(), rows,
                            {s.q.data(), s.k.data(), s.v.data()}, s.activations);
  }
  NormRows(s.pool, s.q.data(), rows * kHeads, D, w.q_norm, eps);
  ApplyRope<D>(s.q.data(), n, kHeads, rope);
  if constexpr (!kKind.kv_shared) {
    NormRows(s.pool, s.k.data(), rows * kKvHeads, D, w.k_norm, eps);
    ApplyRope<D>(s.k.data(), n, kKvHeads, rope);
    for (std::size_t r = 0; r < rows * kKvHeads; ++r) RMSNormPlain(s.v.data() + r * D, D, eps);
    kv.template store<D>(s.k.data(), s.v.data());
  }
  kv.template attend<kKind.attention, D>();
  matmul(w.o_proj.linear, s.attn.data(), s.normed.data());
  NormRows(s.pool, s.normed.data(), rows, kHidden, w.post_attention_layernorm, eps);
  AddTo(s.normed.data(), s.x.data(), hidden_floats);

  // MLP.
  std::copy_n(s.x.data(), hidden_floats, s.normed.data());
  NormRows(s.pool, s.normed.data(), rows, kHidden, w.pre_feedforward_layernorm, eps);
  ParallelMatMul<kDot, 2>(s.pool, {&w.gate_proj.linear, &w.up_proj.linear}, s.normed.data(), rows, {s.gate.data(), s.up.data()}, s.activations);
  for_rows(s.pool, rows, F, [&](std::size_t first, std::size_t end) {
    for (std::size_t t = first; t < end; ++t) GeluMul(s.gate.data() + t * F, s.up.data() + t * F, F);
  });
  matmul(w.down_proj.linear, s.gate.data(), s.normed.data());
  NormRows(s.pool, s.normed.data(), rows, kHidden, w.post_feedforward_layernorm, eps);
  AddTo(s.normed.data(), s.x.data(), hidden_floats);

  // Per-layer input.
  if constexpr (kPerLayerInput) {
    constexpr int kPle = kC.hidden_size_per_layer_input;
    matmul(w.per_layer_input_gate.linear, s.x.data(), s.ple_gate.data());
    for (std::size_t t = 0; t < rows; ++t) GeluMul(s.ple_gate.data() + t * kPle, per_layer_input + t * per_layer_stride, kPle);
    matmul(w.per_layer_projection.linear, s.ple_gate.data(), s.normed.data());
    NormRows(s.pool, s.normed.data(), rows, kHidden, w.post_per_layer_input_norm, eps);
    AddTo(s.normed.data(), s.x.data(), hidden_floats);
  }

  Scale(s.x.data(), hidden_floats, w.layer_scalar.at(0));
}

}  // namespace HWY_NAMESPACE
}  // namespace gemma4
HWY_AFTER_NAMESPACE();

#endif  // toggle
