#pragma once
// One assistant draft step in double precision, written directly from spec
// gemma4-assistant.md section 3 over a reference run of the target (reference_model.hpp):
// the oracle the drafter is held to. Dense head; no code shared with the library's.

#include <cmath>
#include <vector>

#include "gemma4/weights/assistant_weights.hpp"
#include "reference_model.hpp"

namespace gemma4::test {

struct ReferenceDraft {
  Vec logits;  // [vocab], dense head
  Vec g;       // [backbone]: the next step's state
};

// The step at round position p (keys 0..p-1 of `run`) from `token` and state `g`.
template <AssistantVariant A>
ReferenceDraft reference_draft_step(const Assistant<A>& a, const Weights<typename A::Target>& target, const ReferenceRun& run, int p,
                                    int token, const Vec& g) {
  const ModelConfig& c = A::config;
  const ModelConfig& tc = A::Target::config;
  const int B = tc.hidden_size, hidden = c.hidden_size, H = c.num_attention_heads, K = c.num_key_value_heads;
  const double eps = c.rms_norm_eps;

  Vec u(2 * static_cast<std::size_t>(B));
  for (int i = 0; i < B; ++i) {
    u[i] = target.global.embed_tokens.at(static_cast<std::size_t>(token) * B + i) * static_cast<double>(target.embedding_scale);
    u[B + i] = g[i];
  }
  Vec x = linear(a.pre_projection, {u})[0];
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& w = a.layers[l];
    const bool full = is_full_attention(c, l);
    const int D = full ? c.global_head_dim : c.head_dim;
    int donor = tc.num_hidden_layers - tc.num_kv_shared_layers - 1;  // the target's last own-cache layer of this type
    while (is_full_attention(tc, donor) != full) --donor;
    Vec n = x;
    rms_norm(n, 0, hidden, &w.input_layernorm, eps);
    Vec q = linear(w.q_proj, {n})[0];
    Vec attn(static_cast<std::size_t>(H) * D, 0.0);
    for (int h = 0; h < H; ++h) {
      rms_norm(q, static_cast<std::size_t>(h) * D, D, &w.q_norm, eps);
      rope(c, q, static_cast<std::size_t>(h) * D, D, full, p);
      const int kv = h / (H / K);
      std::vector<double> score;
      std::vector<int> position;
      for (int j = 0; j < p; ++j) {
        if (!full && j <= p - c.sliding_window) continue;
        double s = 0;
        for (int i = 0; i < D; ++i) s += q[h * D + i] * run.keys[donor][j][kv * D + i];
        score.push_back(s);
        position.push_back(j);
      }
      double max = -INFINITY, sum = 0;
      for (double s : score) max = std::max(max, s);
      for (double s : score) sum += std::exp(s - max);
      for (std::size_t k = 0; k < score.size(); ++k) {
        for (int i = 0; i < D; ++i) attn[h * D + i] += std::exp(score[k] - max) / sum * run.values[donor][position[k]][kv * D + i];
      }
    }
    Vec o = linear(w.o_proj, {attn})[0];
    rms_norm(o, 0, hidden, &w.post_attention_layernorm, eps);
    for (int i = 0; i < hidden; ++i) x[i] += o[i];
    Vec m = x;
    rms_norm(m, 0, hidden, &w.pre_feedforward_layernorm, eps);
    Vec gate = linear(w.gate_proj, {m})[0];
    const Vec up = linear(w.up_proj, {m})[0];
    for (std::size_t i = 0; i < gate.size(); ++i) gate[i] = gelu(gate[i]) * up[i];
    m = linear(w.down_proj, {gate})[0];
    rms_norm(m, 0, hidden, &w.post_feedforward_layernorm, eps);
    for (int i = 0; i < hidden; ++i) x[i] = (x[i] + m[i]) * w.layer_scalar.at(0);
  }
  rms_norm(x, 0, hidden, &a.global.norm, eps);
  return {linear(a.global.embed_tokens, {x})[0], linear(a.post_projection, {x})[0]};
}

}  // namespace gemma4::test
