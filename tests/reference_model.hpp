#pragma once
// A plain double-precision Gemma 4 forward pass, written directly from spec sections
// 3-4 and sharing no code with the library's forward pass: the oracle the optimised
// path is held to. It recomputes attention over the whole sequence with explicit masks
// instead of keeping caches, and reads weights one element at a time. Each linear layer
// runs on all tokens at once so that a weight is read once per layer, not once per token:
// the test also runs under sanitizers and qemu.

#include <algorithm>
#include <cmath>
#include <vector>

#include "gemma4/weights/load.hpp"

namespace gemma4::test {

using Vec = std::vector<double>;
using Rows = std::vector<Vec>;  // [t]: one vector per token

// What the reference computes for a token sequence: logits and, for an assistant's
// reference, the final-normed hidden rows and each layer's stored keys and values.
struct ReferenceRun {
  std::vector<double> logits;      // [T, vocab]
  Rows hidden;                     // [t]: final-normed hidden row
  std::vector<Rows> keys, values;  // [layer][t]: [kv_heads * D], normed and rotated, for layers with their own cache
};

// ys[t] = m xs[t]; every sum runs over the inputs in order.
inline Rows linear(const TensorView& m, const Rows& xs) {
  const auto rows = static_cast<std::size_t>(m.shape[0]), cols = static_cast<std::size_t>(m.shape[1]);
  const std::size_t T = xs.size();
  Vec by_input(cols * T);  // [i][t], so the innermost loop runs over contiguous tokens
  for (std::size_t t = 0; t < T; ++t) {
    for (std::size_t i = 0; i < cols; ++i) by_input[i * T + t] = xs[t][i];
  }
  Rows ys(T, Vec(rows));
  Vec sums(T);
  for (std::size_t r = 0; r < rows; ++r) {
    std::fill(sums.begin(), sums.end(), 0.0);
    for (std::size_t i = 0; i < cols; ++i) {
      const double weight = m.at(r * cols + i);
      for (std::size_t t = 0; t < T; ++t) sums[t] += weight * by_input[i * T + t];
    }
    for (std::size_t t = 0; t < T; ++t) ys[t][r] = sums[t];
  }
  return ys;
}

// RMSNorm of x[offset, offset + n), with weight (or none).
inline void rms_norm(Vec& x, std::size_t offset, std::size_t n, const TensorView* weight, double eps) {
  double ms = 0;
  for (std::size_t i = 0; i < n; ++i) ms += x[offset + i] * x[offset + i];
  const double inv = 1.0 / std::sqrt(ms / static_cast<double>(n) + eps);
  for (std::size_t i = 0; i < n; ++i) x[offset + i] *= inv * (weight ? static_cast<double>(weight->at(i)) : 1.0);
}

inline double gelu(double x) { return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }

// RoPE of one head x[offset, offset + D) at position pos.
inline void rope(const ModelConfig& c, Vec& x, std::size_t offset, int D, bool full, int pos) {
  const Rope& r = full ? c.rope_parameters.value.full_attention : c.rope_parameters.value.sliding_attention;
  const int rotated = static_cast<int>(std::lround(r.partial_rotary_factor * D / 2));
  for (int i = 0; i < D / 2; ++i) {
    const double f = i < rotated ? std::pow(r.rope_theta, -2.0 * i / D) : 0.0;
    const double a = x[offset + i], b = x[offset + i + D / 2], cs = std::cos(pos * f), sn = std::sin(pos * f);
    x[offset + i] = a * cs - b * sn;
    x[offset + i + D / 2] = b * cs + a * sn;
  }
}

template <Variant V>
ReferenceRun reference_run(const Weights<V>& w, const std::vector<int>& tokens) {
  const ModelConfig& c = V::config;
  const int T = static_cast<int>(tokens.size());
  const int hidden = c.hidden_size, H = c.num_attention_heads, K = c.num_key_value_heads, L = c.num_hidden_layers;
  const int P = c.hidden_size_per_layer_input;
  const double eps = c.rms_norm_eps;

  auto rms_norm = [eps](Vec& x, std::size_t offset, std::size_t n, const TensorView* weight) { test::rms_norm(x, offset, n, weight, eps); };
  auto rope = [](Vec& x, std::size_t offset, int D, bool full, int pos) { test::rope(V::config, x, offset, D, full, pos); };

  // Embedding, scaled by sqrt(hidden) rounded to the stored weight dtype.
  const TensorView& E = w.global.embed_tokens;
  const DType stored = *w.checkpoint().find(w.report().prefix + "embed_tokens.weight")->dtype;
  double scale = std::sqrt(static_cast<double>(hidden));
  if (stored == DType::kBF16) scale = bf16_to_f32(f32_to_bf16(static_cast<float>(scale)));
  if (stored == DType::kF16) scale = f16_to_f32(f32_to_f16(static_cast<float>(scale)));
  Rows x(T, Vec(hidden));
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < hidden; ++i) x[t][i] = E.at(static_cast<std::size_t>(tokens[t]) * hidden + i) * scale;
  }

  // Per-layer inputs.
  Rows ple = linear(w.global.per_layer_model_projection, x);
  for (int t = 0; t < T; ++t) {
    for (auto& v : ple[t]) v /= std::sqrt(static_cast<double>(hidden));
    for (int l = 0; l < L; ++l) rms_norm(ple[t], static_cast<std::size_t>(l) * P, P, &w.global.per_layer_projection_norm);
    for (int i = 0; i < L * P; ++i) {
      const double tok = w.global.embed_tokens_per_layer.at(static_cast<std::size_t>(tokens[t]) * L * P + i) * std::sqrt(double(P));
      ple[t][i] = (ple[t][i] + tok) / std::sqrt(2.0);
    }
  }

  std::vector<Rows> keys(L), values(L);  // [layer][t]: [K * D], for non-shared layers
  const int first_shared = L - c.num_kv_shared_layers;
  for (int l = 0; l < L; ++l) {
    const LayerWeights& lw = w.layers[l];
    const bool full = is_full_attention(c, l);
    const int D = full ? c.global_head_dim : c.head_dim;
    int donor = l;
    if (l >= first_shared) {
      for (donor = first_shared - 1; is_full_attention(c, donor) != full; --donor) {
      }
    }
    Rows a = x;
    for (auto& v : a) rms_norm(v, 0, hidden, &lw.input_layernorm);
    Rows q = linear(lw.q_proj, a);
    for (int t = 0; t < T; ++t) {
      for (int h = 0; h < H; ++h) {
        rms_norm(q[t], static_cast<std::size_t>(h) * D, D, &lw.q_norm);
        rope(q[t], static_cast<std::size_t>(h) * D, D, full, t);
      }
    }
    if (donor == l) {
      keys[l] = linear(lw.k_proj, a);
      values[l] = linear(lw.v_proj, a);
      for (int t = 0; t < T; ++t) {
        for (int h = 0; h < K; ++h) {
          rms_norm(keys[l][t], static_cast<std::size_t>(h) * D, D, &lw.k_norm);
          rope(keys[l][t], static_cast<std::size_t>(h) * D, D, full, t);
          rms_norm(values[l][t], static_cast<std::size_t>(h) * D, D, nullptr);
        }
      }
    }
    Rows attn(T, Vec(static_cast<std::size_t>(H) * D, 0.0));
    for (int t = 0; t < T; ++t) {
      for (int h = 0; h < H; ++h) {
        const int kv = h / (H / K);
        std::vector<double> score(T, -INFINITY);
        double max = -INFINITY;
        for (int j = 0; j <= t; ++j) {
          if (!full && j <= t - c.sliding_window) continue;
          double s = 0;
          for (int i = 0; i < D; ++i) s += q[t][h * D + i] * keys[donor][j][kv * D + i];
          score[j] = s;
          max = std::max(max, s);
        }
        double sum = 0;
        for (int j = 0; j <= t; ++j) sum += score[j] == -INFINITY ? 0.0 : std::exp(score[j] - max);
        for (int j = 0; j <= t; ++j) {
          if (score[j] == -INFINITY) continue;
          const double p = std::exp(score[j] - max) / sum;
          for (int i = 0; i < D; ++i) attn[t][h * D + i] += p * values[donor][j][kv * D + i];
        }
      }
    }
    Rows out = linear(lw.o_proj, attn);
    for (int t = 0; t < T; ++t) {
      rms_norm(out[t], 0, hidden, &lw.post_attention_layernorm);
      for (int i = 0; i < hidden; ++i) x[t][i] += out[t][i];
    }

    Rows m = x;
    for (auto& v : m) rms_norm(v, 0, hidden, &lw.pre_feedforward_layernorm);
    Rows gate = linear(lw.gate_proj, m);
    const Rows up = linear(lw.up_proj, m);
    for (int t = 0; t < T; ++t) {
      for (std::size_t i = 0; i < gate[t].size(); ++i) gate[t][i] = gelu(gate[t][i]) * up[t][i];
    }
    m = linear(lw.down_proj, gate);
    for (int t = 0; t < T; ++t) {
      rms_norm(m[t], 0, hidden, &lw.post_feedforward_layernorm);
      for (int i = 0; i < hidden; ++i) x[t][i] += m[t][i];
    }

    Rows g = linear(lw.per_layer_input_gate, x);
    for (int t = 0; t < T; ++t) {
      for (int i = 0; i < P; ++i) g[t][i] = gelu(g[t][i]) * ple[t][static_cast<std::size_t>(l) * P + i];
    }
    Rows proj = linear(lw.per_layer_projection, g);
    for (int t = 0; t < T; ++t) {
      rms_norm(proj[t], 0, hidden, &lw.post_per_layer_input_norm);
      for (int i = 0; i < hidden; ++i) x[t][i] = (x[t][i] + proj[t][i]) * lw.layer_scalar.at(0);
    }
  }

  ReferenceRun run;
  for (auto& v : x) rms_norm(v, 0, hidden, &w.global.norm);
  for (const Vec& row : linear(E, x)) {
    for (double v : row) {
      const double cap = c.final_logit_softcapping;
      run.logits.push_back(cap > 0 ? cap * std::tanh(v / cap) : v);
    }
  }
  run.hidden = std::move(x);
  run.keys = std::move(keys);
  run.values = std::move(values);
  return run;
}

template <Variant V>
std::vector<double> reference_logits(const Weights<V>& w, const std::vector<int>& tokens) {  // [T, vocab]
  return reference_run(w, tokens).logits;
}

}  // namespace gemma4::test
