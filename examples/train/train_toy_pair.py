"""Trains the toy Gemma 4 pair shipped in examples/data: a tiny-e2b target and its tiny assistant.

The target has the real E2B topology at tiny-e2b's dims (35 layers, 4 sliding + 1 full, the
last 20 layers reading layers 13/14's caches, double-wide MLP in those, per-layer inputs,
proportional RoPE, softcap); the assistant is tiny-e2b-assistant (4 query-only layers, the
centroid head). Both follow docs/spec/gemma4-text.md and gemma4-assistant.md; shapes,
tensor names and config.json come from `gemma4 synth`, so the checkpoints have exactly the
layout the library loads. Run by hand with Debian's torch (the build never needs Python):

    OPENBLAS_CORETYPE= OPENBLAS_L2_SIZE= /usr/bin/python3 examples/train/train_toy_pair.py --gemma4 build/gemma4

(Debian's python3 with python3-torch and libopenblas0-pthread; about 80 minutes on 2 cores.)
It writes examples/data/toy-e2b{,-assistant}/ (bf16 safetensors, config, tokenizer) and
tests/data/toy_pair_logits.bin, the trainer's own logits that the C++ test must reproduce.
The target learns the corpus (examples/train/corpus.py, seed 1) by next-token cross
entropy; then, with the target frozen, the assistant learns to draft 3 tokens ahead from
the target's hidden row and caches: cross entropy against the target's own distribution
at each draft step, plus its centroid scores against the centroid holding the target's
choice, the token ordering being balanced k-means groups of the target's embedding rows.
The same seed and thread count give the same weights.
"""
import argparse
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402


# ---------------------------------------------------------------------------------------
# Safetensors in and out (the format is a JSON header and raw little-endian data).

def read_safetensors_header(path):
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(size))


def read_safetensors(path):
    """name -> f32 tensor, for the bf16 tensors this tool writes."""
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "BF16":
            continue
        begin, end = info["data_offsets"]
        raw = torch.frombuffer(bytearray(data[begin:end]), dtype=torch.int16)
        out[name] = raw.view(torch.bfloat16).float().view(info["shape"])
    return out


def write_safetensors(path, tensors):
    """tensors: name -> torch tensor (bf16 or int64), written in name order."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        if t.dtype == torch.bfloat16:
            data, dtype = t.view(torch.int16).numpy().tobytes(), "BF16"
        elif t.dtype == torch.int64:
            data, dtype = t.numpy().astype("<i8").tobytes(), "I64"
        else:
            raise ValueError(f"{name}: unexpected dtype {t.dtype}")
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------------------------------
# The small functions of the spec (section 4).

def rms_norm(x, w=None, eps=1e-6):
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * w if w is not None else y


def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))


def rope_tables(rope, head_dim, positions):
    """cos/sin [T, D/2] in f32 for rotate-half RoPE; proportional RoPE leaves the upper pairs unrotated."""
    rotated = round(rope.get("partial_rotary_factor", 1.0) * head_dim / 2)
    i = torch.arange(head_dim // 2, dtype=torch.float32)
    freq = torch.where(i < rotated, rope["rope_theta"] ** (-2 * i / head_dim), torch.zeros(()))
    angle = positions.float()[:, None] * freq[None, :]
    return torch.cos(angle), torch.sin(angle)


def apply_rope(x, cos, sin):
    """x [..., T, heads, D] rotated at the positions cos/sin [T, D/2] were built for."""
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.cat([a * c - b * s, b * c + a * s], dim=-1)


def attend(q, k, v, mask):
    """q [B, T, H, D], k/v [B, S, K, D], mask [T, S] bool (True = visible); scale 1, f32 softmax.
    The query heads sharing a kv head are stacked into one matrix, so each kv head is one bmm."""
    B, T, H, D = q.shape
    S, K = k.shape[1], k.shape[2]
    G = H // K
    q = q.view(B, T, K, G, D).permute(0, 2, 3, 1, 4).reshape(B * K, G * T, D)
    k = k.permute(0, 2, 1, 3).reshape(B * K, S, D)
    v = v.permute(0, 2, 1, 3).reshape(B * K, S, D)
    scores = torch.bmm(q, k.transpose(1, 2)).view(B * K, G, T, S).masked_fill(~mask, float("-inf"))
    o = torch.bmm(torch.softmax(scores, dim=-1).view(B * K, G * T, S), v)
    return o.view(B, K, G, T, D).permute(0, 3, 1, 2, 4).reshape(B, T, H, D)


def window_mask(T, window, strict):
    """Causal (key <= query, or key < query when strict) and, for a window, key > query - window."""
    q, k = torch.arange(T)[:, None], torch.arange(T)[None, :]
    visible = k < q if strict else k <= q
    if window:
        visible = visible & (k > q - window)
    return visible


# ---------------------------------------------------------------------------------------
# The target (gemma4-text.md section 3).

class Target(torch.nn.Module):
    def __init__(self, cfg, shapes):
        super().__init__()
        self.cfg = cfg
        self.L = cfg["num_hidden_layers"]
        self.full = [t == "full_attention" for t in cfg["layer_types"]]
        first_shared = self.L - cfg["num_kv_shared_layers"]
        self.donor = []
        for l in range(self.L):
            d = l
            if l >= first_shared:
                d = max(j for j in range(first_shared) if self.full[j] == self.full[l])
            self.donor.append(d)
        self.params = torch.nn.ParameterDict()
        for name, shape in shapes.items():
            self.params[name.replace(".", "__")] = torch.nn.Parameter(init_value(name, shape))

    def p(self, name):
        return self.params[name.replace(".", "__")]

    def embed_scale(self):
        return torch.tensor(math.sqrt(self.cfg["hidden_size"])).to(torch.bfloat16).float()

    def forward(self, tokens, keep=None):
        """tokens [B, T] -> logits [B, T, V]; with keep, also {'hidden', 'k<l>', 'v<l>'} for donor layers."""
        cfg, L = self.cfg, self.L
        B, T = tokens.shape
        hidden, P = cfg["hidden_size"], cfg["hidden_size_per_layer_input"]
        H, K = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        E = self.p("embed_tokens.weight")
        x = E[tokens] * self.embed_scale()
        ctx = (x @ self.p("per_layer_model_projection.weight").T) * hidden ** -0.5
        ctx = rms_norm(ctx.view(B, T, L, P), self.p("per_layer_projection_norm.weight"))
        tok = self.p("embed_tokens_per_layer.weight")[tokens].view(B, T, L, P) * math.sqrt(P)
        ple = (ctx + tok) * 2 ** -0.5
        positions = torch.arange(T)
        ropes = {full: rope_tables(cfg["rope_parameters"]["full_attention" if full else "sliding_attention"],
                                   cfg["global_head_dim" if full else "head_dim"], positions) for full in (False, True)}
        masks = {full: window_mask(T, 0 if full else cfg["sliding_window"], strict=False) for full in (False, True)}
        caches = {}
        for l in range(L):
            pre = f"layers.{l}."
            full = self.full[l]
            D = cfg["global_head_dim"] if full else cfg["head_dim"]
            a = rms_norm(x, self.p(pre + "input_layernorm.weight"))
            q = rms_norm((a @ self.p(pre + "self_attn.q_proj.weight").T).view(B, T, H, D), self.p(pre + "self_attn.q_norm.weight"))
            q = apply_rope(q, *ropes[full])
            if self.donor[l] == l:
                k = rms_norm((a @ self.p(pre + "self_attn.k_proj.weight").T).view(B, T, K, D), self.p(pre + "self_attn.k_norm.weight"))
                v = rms_norm((a @ self.p(pre + "self_attn.v_proj.weight").T).view(B, T, K, D))
                caches[l] = (apply_rope(k, *ropes[full]), v)
            k, v = caches[self.donor[l]]
            o = attend(q, k, v, masks[full]).reshape(B, T, H * D) @ self.p(pre + "self_attn.o_proj.weight").T
            x = x + rms_norm(o, self.p(pre + "post_attention_layernorm.weight"))
            m = rms_norm(x, self.p(pre + "pre_feedforward_layernorm.weight"))
            m = (gelu_tanh(m @ self.p(pre + "mlp.gate_proj.weight").T) * (m @ self.p(pre + "mlp.up_proj.weight").T))
            x = x + rms_norm(m @ self.p(pre + "mlp.down_proj.weight").T, self.p(pre + "post_feedforward_layernorm.weight"))
            g = gelu_tanh(x @ self.p(pre + "per_layer_input_gate.weight").T) * ple[:, :, l]
            g = rms_norm(g @ self.p(pre + "per_layer_projection.weight").T, self.p(pre + "post_per_layer_input_norm.weight"))
            x = (x + g) * self.p(pre + "layer_scalar")
        x = rms_norm(x, self.p("norm.weight"))
        cap = cfg["final_logit_softcapping"]
        logits = cap * torch.tanh((x @ E.T) / cap)
        if keep is None:
            return logits
        out = {"hidden": x}
        for l in keep:
            out[f"k{l}"], out[f"v{l}"] = caches[l]
        return logits, out


def init_value(name, shape):
    if name.endswith("norm.weight") or name.endswith("layer_scalar"):
        return torch.ones(shape)
    if name == "embed_tokens_per_layer.weight":
        return torch.randn(shape) * 0.02
    if len(shape) == 2:
        return torch.randn(shape) * shape[1] ** -0.5 * (0.5 if name.endswith(("o_proj.weight", "down_proj.weight")) else 1.0)
    return torch.randn(shape) * 0.02


# ---------------------------------------------------------------------------------------
# The assistant (gemma4-assistant.md section 3): all draft positions of a sequence at once.

class Assistant(torch.nn.Module):
    def __init__(self, cfg, head, shapes, target):
        super().__init__()
        self.cfg, self.head = cfg, head
        self.full = [t == "full_attention" for t in cfg["layer_types"]]
        self.sliding_donor = max(l for l in range(target.L - target.cfg["num_kv_shared_layers"]) if not target.full[l])
        self.full_donor = max(l for l in range(target.L - target.cfg["num_kv_shared_layers"]) if target.full[l])
        self.params = torch.nn.ParameterDict()
        for name, shape in shapes.items():
            if name != "masked_embedding.token_ordering":
                self.params[name.replace(".", "__")] = torch.nn.Parameter(init_value(name, shape))
        self.register_buffer("token_ordering", torch.arange(cfg["vocab_size"]))

    def p(self, name):
        return self.params[name.replace(".", "__")]

    def step(self, e, g, target_out, T):
        """One draft step for every round position p = 0..T-1 at once: e = the scaled target embedding
        of x_s [B, T, Bk], g = the carried state [B, T, Bk]. Returns (y [B, T, hidden], next g)."""
        cfg = self.cfg
        H = cfg["num_attention_heads"]
        x = torch.cat([e, g], dim=-1) @ self.p("pre_projection.weight").T
        B = x.shape[0]
        positions = torch.arange(T)
        for l in range(cfg["num_hidden_layers"]):
            pre = f"model.layers.{l}."
            full = self.full[l]
            D = cfg["global_head_dim" if full else "head_dim"]
            donor = self.full_donor if full else self.sliding_donor
            a = rms_norm(x, self.p(pre + "input_layernorm.weight"))
            q = rms_norm((a @ self.p(pre + "self_attn.q_proj.weight").T).view(B, T, H, D), self.p(pre + "self_attn.q_norm.weight"))
            rope = cfg["rope_parameters"]["full_attention" if full else "sliding_attention"]
            q = apply_rope(q, *rope_tables(rope, D, positions))
            mask = window_mask(T, 0 if full else cfg["sliding_window"], strict=True)
            mask[0, 0] = True  # position 0 has no committed keys: its row is never used, but must not be NaN
            o = attend(q, target_out[f"k{donor}"], target_out[f"v{donor}"], mask)
            o = o.reshape(B, T, H * D) @ self.p(pre + "self_attn.o_proj.weight").T
            x = x + rms_norm(o, self.p(pre + "post_attention_layernorm.weight"))
            m = rms_norm(x, self.p(pre + "pre_feedforward_layernorm.weight"))
            m = gelu_tanh(m @ self.p(pre + "mlp.gate_proj.weight").T) * (m @ self.p(pre + "mlp.up_proj.weight").T)
            x = x + rms_norm(m @ self.p(pre + "mlp.down_proj.weight").T, self.p(pre + "post_feedforward_layernorm.weight"))
            x = x * self.p(pre + "layer_scalar")
        y = rms_norm(x, self.p("model.norm.weight"))
        return y, y @ self.p("post_projection.weight").T

    def dense_logits(self, y):
        return y @ self.p("model.embed_tokens.weight").T

    def centroid_logits(self, y):
        """The centroid head: candidates of the top-k centroids keep their logits, the rest get min - 1."""
        n, top = self.head["num_centroids"], self.head["centroid_intermediate_top_k"]
        chosen = (y @ self.p("masked_embedding.centroids.weight").T).topk(top, dim=-1).indices
        groups = self.token_ordering.view(n, -1)
        candidates = groups[chosen].flatten(-2)
        dense = self.dense_logits(y)
        picked = dense.gather(-1, candidates)
        out = (picked.min(-1, keepdim=True).values - 1).expand_as(dense).clone()
        return out.scatter(-1, candidates, picked)


# ---------------------------------------------------------------------------------------
# Data.

def tokenize(gemma4, model_dir, text):
    out = subprocess.run([gemma4, "tokenize", "--model", model_dir, "--no-bos"], input=text.encode(),
                         capture_output=True, check=True).stdout
    return torch.tensor([int(t) for t in out.decode().strip().split(",")], dtype=torch.long)


def batches(ids, seq, batch, gen):
    """Random windows of `seq` tokens; a window starts at a <bos> half the time so first positions are seen."""
    starts_bos = (ids[:-seq] == 2).nonzero().flatten()
    while True:
        r = torch.randint(0, len(ids) - seq, (batch,), generator=gen)
        b = starts_bos[torch.randint(0, len(starts_bos), (batch,), generator=gen)]
        use_bos = torch.rand(batch, generator=gen) < 0.5
        start = torch.where(use_bos, b, r)
        yield torch.stack([ids[s:s + seq] for s in start.tolist()])


def schedule(step, steps, lr, warmup=100):
    return lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))


def train(name, params, loss_fn, data, steps, lr, log_every=50):
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    start = time.time()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = schedule(step, steps, lr)
        loss = loss_fn(next(data))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % log_every == 0 or step == steps - 1:
            print(f"{name} step {step}/{steps} loss {loss.item():.4f} ({time.time() - start:.0f} s)", flush=True)


def round_to_bf16_(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.to(torch.bfloat16).float())


def balanced_groups(E, n):
    """Token ids ordered into n equal groups of similar rows of E (k-means, then filled by affinity)."""
    V = E.shape[0]
    size = V // n
    X = F.normalize(E, dim=-1)
    centres = X[torch.randperm(V, generator=torch.Generator().manual_seed(0))[:n]].clone()
    for _ in range(20):
        assign = (X @ centres.T).argmax(-1)
        for c in range(n):
            members = X[assign == c]
            if len(members):
                centres[c] = F.normalize(members.mean(0), dim=0)
    affinity = X @ centres.T
    order = affinity.flatten().argsort(descending=True)
    fill, group_of = [0] * n, [-1] * V
    for flat in order.tolist():
        t, c = divmod(flat, n)
        if group_of[t] < 0 and fill[c] < size:
            group_of[t], fill[c] = c, fill[c] + 1
    return torch.tensor(sorted(range(V), key=lambda t: (group_of[t], t)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gemma4", default="build/gemma4", help="the gemma4 CLI (synth and tokenize)")
    parser.add_argument("--out", default="examples/data")
    parser.add_argument("--reference-out", default="tests/data/toy_pair_logits.bin")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dialogues", type=int, default=20000)
    parser.add_argument("--target-steps", type=int, default=700)
    parser.add_argument("--assistant-steps", type=int, default=600)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--target", help="a target this tool trained (its directory): train only the assistant for it")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    tmp = tempfile.mkdtemp()
    tokenizer = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "demo-tokenizer.json")
    subprocess.run([args.gemma4, "synth", "--variant", "tiny-e2b", "--tokenizer", tokenizer, f"{tmp}/t"], check=True)
    subprocess.run([args.gemma4, "synth", "--variant", "tiny-e2b-assistant", f"{tmp}/a"], check=True)
    t_json, a_json = json.load(open(f"{tmp}/t/config.json")), json.load(open(f"{tmp}/a/config.json"))
    prefix = "model.language_model."
    L = t_json["text_config"]["num_hidden_layers"]
    shared = set(range(L - t_json["text_config"]["num_kv_shared_layers"], L))
    t_shapes = {}
    for name, info in read_safetensors_header(f"{tmp}/t/model.safetensors").items():
        if not name.startswith(prefix):
            continue  # multimodal tensors: none in a text-only toy
        short = name[len(prefix):]
        parts = short.split(".")
        if parts[0] == "layers" and int(parts[1]) in shared and len(parts) > 3 and parts[3] in ("k_proj", "v_proj", "k_norm"):
            continue  # KV-shared layers have none (as newer transformers saves them)
        t_shapes[short] = info["shape"]
    a_shapes = {n: i["shape"] for n, i in read_safetensors_header(f"{tmp}/a/model.safetensors").items() if n != "__metadata__"}

    # Corpus: training text from the seed, held-out text from another seed.
    rng = random.Random(args.seed)
    text = "".join(corpus.dialogue(rng) for _ in range(args.dialogues))
    ids = tokenize(args.gemma4, f"{tmp}/t", text)
    print(f"corpus: {args.dialogues} dialogues, {len(text)} characters, {len(ids)} tokens", flush=True)
    gen = torch.Generator().manual_seed(args.seed)

    target = Target(t_json["text_config"], t_shapes)
    print(f"target: {sum(p.numel() for p in target.parameters()) / 1e6:.2f} M parameters", flush=True)

    def target_loss(tokens):
        logits = target(tokens[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))

    if args.target:
        with torch.no_grad():
            for name, value in read_safetensors(os.path.join(args.target, "model.safetensors")).items():
                target.p(name[len(prefix):]).copy_(value)
    else:
        train("target", list(target.parameters()), target_loss, batches(ids, args.seq + 1, args.batch, gen), args.target_steps, 3e-3)
    round_to_bf16_(target)
    for p in target.parameters():
        p.requires_grad_(False)

    # The assistant's phase depends only on the target's weights and the seed, so --target
    # with the trained target gives the same assistant as a full run.
    torch.manual_seed(args.seed + 1)
    gen = torch.Generator().manual_seed(args.seed + 1)

    head = {k: a_json[k] for k in ("num_centroids", "centroid_intermediate_top_k")}
    assistant = Assistant(a_json["text_config"], head, a_shapes, target)
    assistant.token_ordering.copy_(balanced_groups(target.p("embed_tokens.weight"), head["num_centroids"]))
    group_of = torch.empty_like(assistant.token_ordering)
    group_of[assistant.token_ordering] = torch.arange(len(group_of)) // (len(group_of) // head["num_centroids"])
    drafts = 3

    def assistant_loss(tokens):
        T = tokens.shape[1] - drafts
        with torch.no_grad():
            logits, out = target(tokens, keep=(assistant.sliding_donor, assistant.full_donor))
            aim = torch.softmax(logits.float(), dim=-1)
        g = torch.cat([torch.zeros_like(out["hidden"][:, :1]), out["hidden"][:, :T - 1]], dim=1)  # h = row p - 1
        kv = {k: v[:, :T] for k, v in out.items()}
        loss = 0
        greedy = logits.argmax(-1)
        for s in range(drafts):
            # Step 0 reads b (the corpus token at p); later steps the previous draft, which is
            # the target's greedy choice whenever the drafts are being accepted.
            x = tokens[:, :T] if s == 0 else greedy[:, s - 1:s - 1 + T]
            e = target.p("embed_tokens.weight")[x] * target.embed_scale()
            y, g = assistant.step(e, g, kv, T)
            wanted = aim[:, s:s + T][:, 1:]  # round position p >= 1 drafts what row p + s predicts
            y = y[:, 1:]
            loss = loss + F.cross_entropy(assistant.dense_logits(y).flatten(0, 1), wanted.flatten(0, 1))
            centroid_scores = y @ assistant.p("masked_embedding.centroids.weight").T
            loss = loss + F.cross_entropy(centroid_scores.flatten(0, 1), group_of[wanted.argmax(-1)].flatten())
        return loss / drafts

    train("assistant", list(assistant.parameters()), assistant_loss, batches(ids, args.seq + drafts, args.batch, gen),
          args.assistant_steps, 3e-3)
    round_to_bf16_(assistant)

    export(args, tmp, target, assistant, prefix)
    write_reference(args, target, assistant, tmp)


def export(args, tmp, target, assistant, prefix):
    for sub, model, pre in (("toy-e2b", target, prefix), ("toy-e2b-assistant", assistant, "")):
        out = os.path.join(args.out, sub)
        os.makedirs(out, exist_ok=True)
        tensors = {pre + n.replace("__", "."): p.detach().to(torch.bfloat16) for n, p in model.params.items()}
        if model is assistant:
            tensors["masked_embedding.token_ordering"] = assistant.token_ordering.clone()
        write_safetensors(os.path.join(out, "model.safetensors"), tensors)
        # Each directory its own config; both the target's generation config and tokenizer,
        # which the assistant shares (its vocabulary is the target's).
        for f, src in (("config.json", f"{tmp}/t" if model is target else f"{tmp}/a"),
                       ("generation_config.json", f"{tmp}/t"), ("tokenizer.json", f"{tmp}/t")):
            with open(os.path.join(src, f)) as i, open(os.path.join(out, f), "w") as o:
                o.write(i.read())
        print(f"wrote {out}", flush=True)


def write_reference(args, target, assistant, tmp):
    """A held-out dialogue's target logits [T, V] and, for i = 1..T-1, the assistant's first-step
    centroid-head logits with b = token i and h = hidden row i - 1 ([T - 1, V]), as
    `gemma4 logits` defines them; f32, after a header of the token count and the tokens."""
    text = corpus.dialogue(random.Random(args.seed + 1000))
    tokens = tokenize(args.gemma4, f"{tmp}/t", text)[None]
    T = tokens.shape[1]
    # In double precision: the f32 training graph drifts by ~2e-3 through the drafter, while
    # the bf16 weights themselves define the model exactly.
    target, assistant = target.double(), assistant.double()
    with torch.no_grad():
        logits, out = target(tokens, keep=(assistant.sliding_donor, assistant.full_donor))
        g = torch.cat([torch.zeros_like(out["hidden"][:, :1]), out["hidden"][:, :T - 1]], dim=1)
        e = target.p("embed_tokens.weight")[tokens] * target.embed_scale()
        y, _ = assistant.step(e, g, out, T)
        drafted = assistant.centroid_logits(y[:, 1:])
    with open(args.reference_out, "wb") as f:
        f.write(struct.pack("<i", T))
        f.write(tokens[0].numpy().astype("<i4").tobytes())
        f.write(logits[0].numpy().astype("<f4").tobytes())
        f.write(drafted[0].numpy().astype("<f4").tobytes())
    print(f"wrote {args.reference_out}: {T} tokens", flush=True)


if __name__ == "__main__":
    main()
