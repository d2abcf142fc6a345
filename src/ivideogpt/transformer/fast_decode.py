"""The single-token decode step, built for speed: what `sampling.step` runs 1 + n times per frame.

`Transformer.forward` is general (any T, masks, dropout, every head, logits over the padded vocabulary);
one generated token needs none of that, and at batch 1 its cost is per-op overhead plus reading the
weights once (METHOD 4c). `DecodeEngine` repacks the weights of an eval-mode transformer once:

- matrices transposed to (in, out): x @ W runs MKL's fast GEMV path (2.3x faster than F.linear at
  batch 1 on this CPU, measured in bench/rollout.py's machine);
- RMSNorm gains folded into the matrix that follows (norm(x) * g @ W == norm(x) @ (g[:, None] * W));
- Q, K, V in one matrix and SwiGLU's gate and up in one, so a layer is 4 matmuls;
- the LM head cut to the future codebook, the only tokens that are ever sampled;
- RoPE as one (hd, hd) rotation per position, precomputed per frame, so q and k rotate in one matmul;
- with `action_modulation`, every layer's norm scales and shifts computed once per frame (`modulation`).

A step writes its key and value into the preallocated `KVCache` buffers in place and attends over the
filled part only (`step`); `step_static` attends over the whole buffer with a mask and takes the position
as a tensor, so its shapes never change: that is the variant to `torch.compile` (CUDA graphs with
`mode="reduce-overhead"`). Both produce the same numbers as `Transformer.forward` to float rounding.

The engine is cached per model and rebuilt when any parameter changed (its version counter moved, as an
optimizer step or `load_state_dict` does), so a model trained between rollouts is never decoded stale.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ivideogpt.tokenizer.compressive import STILL_CODE
from ivideogpt.transformer.blocks import rope_cos_sin
from ivideogpt.transformer.kv_cache import KVCache
from ivideogpt.transformer.model import Transformer

_ENGINES: weakref.WeakKeyDictionary[Transformer, DecodeEngine] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class DecodeOptions:
    """How the decode step runs; the defaults suit a CPU (float32, eager, attention over the filled part)."""

    dtype: torch.dtype | None = None  # weights and KV cache; None: the model's (bfloat16 is for GPUs)
    kv_dtype: torch.dtype | None = None  # KV cache alone; None: `dtype`. bfloat16 on a CPU halves the
    # cache reads that are most of a step at batch >= 32 (bench/rollout.py), weights stay float32
    compile: bool = False  # torch.compile the static step (CUDA graphs on a GPU: mode="reduce-overhead")
    compile_mode: str | None = "reduce-overhead"  # passed to torch.compile
    compile_backend: str = "inductor"  # "eager" only checks that the step captures in one graph (tests)


# The decode settings of each `Precision` (ivideogpt/precision.py), `WorldModel.precision`'s reading
PRECISIONS: dict[str, DecodeOptions] = {
    "float32": DecodeOptions(),
    "bfloat16-cache": DecodeOptions(kv_dtype=torch.bfloat16),
    "bfloat16": DecodeOptions(dtype=torch.bfloat16),
}


def decode_engine(model: Transformer, options: DecodeOptions | None = None) -> DecodeEngine:
    """The model's engine, (re)built if its weights or the options changed since the last call."""
    options = options or DecodeOptions()
    engine = _ENGINES.get(model)
    if engine is None or engine.options != options or engine.fingerprint != _fingerprint(model):
        engine = DecodeEngine(model, options)
        _ENGINES[model] = engine
    return engine


class DecodeEngine:
    """Packed weights of one transformer and its single-token step (see the module docstring)."""

    def __init__(self, model: Transformer, options: DecodeOptions) -> None:
        cfg = model.cfg
        self.options = options
        self.fingerprint = _fingerprint(model)
        self.n_head, self.head_dim, self.hidden = cfg.n_head, cfg.head_dim, cfg.hidden_size
        self.eps = model.norm.eps
        self.model_dtype = model.tok_emb.weight.dtype
        self.dtype = options.dtype or self.model_dtype
        vc, vf = cfg.context_vocab_size, cfg.future_vocab_size
        with torch.no_grad():
            pack = lambda w: w.detach().to(self.dtype).contiguous()
            self.slot_embedding = pack(model.tok_emb.weight[cfg.slot_id])  # (d,)
            self.future_embedding = pack(model.tok_emb.weight[vc : vc + vf])  # (Vf, d) codes j -> rows
            self.action = None if model.action_proj is None else pack(model.action_weight())  # (A_in, d)
            self.action_every_token = cfg.action_to == "frame"
            self.positions = None if model.pos_emb is None else pack(model.pos_emb.weight)  # (L, d)
            self.layers = [
                (
                    pack(b.attn_norm.weight[:, None] * b.attn.qkv.weight.t()),  # (d, 3d)
                    pack(b.attn.proj.weight.t()),  # (d, d)
                    pack(b.mlp_norm.weight[:, None] * torch.cat([b.mlp.gate.weight, b.mlp.up.weight]).t()),
                    pack(b.mlp.down.weight.t()),  # (h, d)
                )
                for b in model.blocks
            ]  # (d, 2h) gate then up
            self.head = pack(model.norm.weight[:, None] * model.lm_head.weight[vc : vc + vf].t())  # (d, Vf)
            modulated = model.blocks[0].action_mod is not None  # every layer's (A_in, 4d), side by side
            self.modulation_weight = (pack(torch.cat([b.action_mod.weight for b in model.blocks]).t())
                                      if modulated else None)  # (A_in, n_layer * 4d)
            self.final_norm = pack(model.norm.weight)
        self.inv_freq = model.inv_freq
        self.heads = model.heads
        half = self.head_dim // 2
        eye = torch.eye(half)
        # rotate_half as a matrix: x @ P == cat(-x2, x1) for x = cat(x1, x2)
        self._rotate_half = torch.cat(
            [torch.cat([torch.zeros(half, half), eye], 1), torch.cat([-eye, torch.zeros(half, half)], 1)]
        ).to(model.inv_freq.device)
        self._static_step = None
        if options.compile:
            self._static_step = torch.compile(
                self.step_static, mode=options.compile_mode, backend=options.compile_backend,
                fullgraph=True, dynamic=False,
            )

    # ------------------------------------------------------------------------------------ per frame

    def rotations(self, start: int, count: int) -> Tensor:
        """RoPE rotations (count, hd, hd) of positions [start, start + count): rotated = x @ R[p]."""
        positions = torch.arange(start, start + count, device=self.inv_freq.device)
        cos, sin = rope_cos_sin(positions, self.inv_freq)  # (T, hd/2)
        cos, sin = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)  # (T, hd)
        return (torch.diag_embed(cos) + self._rotate_half * sin[:, None, :]).to(self.dtype)

    def slot_input(self, action: Tensor | None, b: int) -> Tensor:
        """Input (B, d) of a frame's SLOT step: the SLOT embedding plus the projected action (B, A)."""
        x = self.slot_embedding.expand(b, -1)
        return x if action is None or self.action is None else x + action.to(self.dtype) @ self.action

    def code_input(self, codes: Tensor, action: Tensor | None = None) -> Tensor:
        """Input (B, d) of a step that feeds future codes (B,) in [0, Vf); with `action_to="frame"` the
        frame's action (B, A) is added to its codes too."""
        x = self.future_embedding.index_select(0, codes)
        return x if action is None or not self.action_every_token else x + action.to(self.dtype) @ self.action

    def modulation(self, action: Tensor | None) -> Tensor | None:
        """Every layer's norm scales and shifts (n_layer, 4, B, d) for a frame's action inputs (B, A_in)
        (`Block`); None for a model without `action_modulation` or no action."""
        if action is None or self.modulation_weight is None:
            return None
        b, layers = len(action), len(self.layers)
        return (action.to(self.dtype) @ self.modulation_weight).view(b, layers, 4, -1).permute(1, 2, 0, 3)

    def token_modulation(self, modulation: Tensor | None) -> Tensor | None:
        """What a code step of the frame reads of its `modulation`: all of it with `action_to="frame"`,
        nothing with "slot" (the action reaches the SLOT step only)."""
        return modulation if self.action_every_token else None

    # ------------------------------------------------------------------------------------ per token

    def step(self, x: Tensor, cache: KVCache, rotation: Tensor, modulation: Tensor | None = None) -> Tensor:
        """One token at position `cache.length` through every layer; returns the residual stream (B, d).

        Args:
            x: (B, d) input embedding.
            cache: written in place at its current length (advanced here by one).
            rotation: (hd, hd) the RoPE rotation of that position (`rotations`).
            modulation: (n_layer, 4, B, d) the norms' scales and shifts (`modulation`); None: none.
        """
        b, pos = x.shape[0], cache.length - cache.prefix_length  # pos: this token's slot in the row buffers
        h, hd, hidden = self.n_head, self.head_dim, self.hidden
        if self.positions is not None:
            x = x + self.positions[cache.length]
        for i, (wqkv, wo, wgu, wd) in enumerate(self.layers):
            mod = None if modulation is None else modulation[i]
            keys, values = cache.buffers(i, b, h, hd, x)
            qkv = (_rms(x, self.eps, mod, 0) @ wqkv).view(b, 3, h, hd)
            qk = qkv[:, :2] @ rotation  # (B, 2, H, hd): rotated queries and keys
            keys[:, :, pos] = qk[:, 1]  # cast to the cache's dtype (`DecodeOptions.kv_dtype`) on write
            values[:, :, pos] = qkv[:, 2]
            q, keys, values = qk[:, 0, :, None].to(keys.dtype), keys[:, :, : pos + 1], values[:, :, : pos + 1]
            prefix = cache.prefix(i)
            if prefix is None:
                y = F.scaled_dot_product_attention(q, keys, values)  # (B, H, 1, hd)
            else:
                y = _attend_with_prefix(q, *prefix, keys, values)
            x = torch.addmm(x, y.reshape(b, h * hd).to(x.dtype), wo)
            gu = _rms(x, self.eps, mod, 2) @ wgu  # (B, 2h)
            x = torch.addmm(x, F.silu(gu[:, :hidden]) * gu[:, hidden:], wd)
        cache.advance(1)
        return x

    def step_static(self, x: Tensor, keys: list[Tensor], values: list[Tensor], pos: Tensor, rotation: Tensor,
                    modulation: Tensor | None = None) -> Tensor:
        """`step` with fixed shapes for `torch.compile`: position `pos` (int64 (1,)) as a tensor, attention
        over the whole buffers (B, H, capacity, hd) masked beyond `pos`, cache writes by `index_copy_`."""
        b = x.shape[0]
        h, hd, hidden = self.n_head, self.head_dim, self.hidden
        mask = (torch.arange(keys[0].shape[2], device=x.device) <= pos)[None]  # (1, capacity)
        if self.positions is not None:
            x = x + self.positions.index_select(0, pos)
        for i, ((wqkv, wo, wgu, wd), k_buf, v_buf) in enumerate(zip(self.layers, keys, values, strict=True)):
            mod = None if modulation is None else modulation[i]
            qkv = (_rms(x, self.eps, mod, 0) @ wqkv).view(b, 3, h, hd)
            qk = qkv[:, :2] @ rotation
            k_buf.index_copy_(2, pos, qk[:, 1, :, None].to(k_buf.dtype))
            v_buf.index_copy_(2, pos, qkv[:, 2, :, None].to(v_buf.dtype))
            q = qk[:, 0, :, None].to(k_buf.dtype)
            y = F.scaled_dot_product_attention(q, k_buf, v_buf, attn_mask=mask)
            x = torch.addmm(x, y.reshape(b, h * hd).to(x.dtype), wo)
            gu = _rms(x, self.eps, mod, 2) @ wgu
            x = torch.addmm(x, F.silu(gu[:, :hidden]) * gu[:, hidden:], wd)
        return x

    def run_step(self, x: Tensor, cache: KVCache, rotation: Tensor, modulation: Tensor | None = None
                 ) -> Tensor:
        """`step`, or the compiled static step when the options ask for it."""
        if self._static_step is None:
            return self.step(x, cache, rotation, modulation)
        cache.materialize()  # fixed shapes: every row holds its whole sequence
        b = x.shape[0]
        bufs = [cache.buffers(i, b, self.n_head, self.head_dim, x) for i in range(len(self.layers))]
        if x.is_cuda:  # CUDA graphs replay in-place writes only into buffers at fixed addresses
            for buf in (t for kv in bufs for t in kv):
                torch._dynamo.mark_static_address(buf)
        pos = torch.tensor([cache.length], device=x.device)
        x = self._static_step(x, [k for k, _ in bufs], [v for _, v in bufs], pos, rotation, modulation)
        cache.advance(1)
        return x

    def logits(self, x: Tensor) -> Tensor:
        """Future-codebook logits (B, Vf), float32, of residual stream x (B, d)."""
        return (_rms(x, self.eps) @ self.head).float()

    def read_heads(self, x: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """Reward and done probability (B,) float32 at residual stream x (B, d) (None without the head)."""
        hidden = (_rms(x, self.eps) * self.final_norm).to(self.model_dtype)  # (B, d), as the heads read it
        reward, done = self.heads(hidden)
        return self.heads.decode(None if reward is None else reward.float(),
                                 None if done is None else done.float())


def sample_from_logits(logits: Tensor, noise: Tensor | None, temperature: float, top_k: int | None,
                       still_split: bool = False) -> Tensor:
    """Codes (B,) from future-codebook logits (B, Vf): Gumbel-max over the top k, or argmax at T = 0.

    Args:
        logits: float (B, Vf).
        noise: Gumbel noise (B, Vf) (`gumbel_noise`); unused (may be None) at temperature 0.
        temperature: softmax temperature.
        top_k: keep the k largest logits (None: all).
        still_split: at temperature 0, take the still code (`STILL_CODE`, a tokenizer with
            `still_threshold`) only where it holds at least half the probability, else the likeliest other
            code: first the mode of "did this patch change", then of "into what". Plain argmax keeps the
            still code wherever the codes of what moved share the rest among them, so its rollouts stand
            still (docs/actions-log.md). Sampling (T > 0) is the same either way.
    """
    if temperature == 0:
        if not still_split:
            return logits.argmax(dim=-1)
        moved = logits.float().index_fill(1, torch.tensor([STILL_CODE], device=logits.device), -math.inf)
        still = logits[:, STILL_CODE].float() >= torch.logsumexp(moved, dim=-1)  # P(still) >= 1/2
        return torch.where(still, STILL_CODE, moved.argmax(dim=-1))
    scores = logits / temperature + noise
    if top_k is not None and top_k < logits.shape[1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        scores = scores.masked_fill(logits < kth, -math.inf)
    return scores.argmax(dim=-1)


def gumbel_noise(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Standard Gumbel noise -log(-log(u)), float32 `shape`, drawn in one call (a frame's tokens at once)."""
    u = torch.rand(shape, generator=generator, device=device)
    return -torch.log(-torch.log(u))


# --------------------------------------------------------------------------------------- helpers


def _attend_with_prefix(q: Tensor, prefix_keys: Tensor, prefix_values: Tensor, keys: Tensor, values: Tensor
                        ) -> Tensor:
    """Single-query attention over a prefix shared by all rows, then each row's own keys.

    q (B, H, 1, hd); prefix keys/values (1, H, P, hd); own keys/values (B, H, t, hd) -> (B, H, 1, hd). The
    prefix part is one (B, hd) x (hd, P) matmul per head, reading the prefix once for the whole batch; one
    softmax spans both parts, so this is exactly attention over their concatenation.
    """
    scale = q.shape[-1] ** -0.5
    q_heads = q[:, :, 0].transpose(0, 1)  # (H, B, hd)
    prefix_scores = q_heads @ prefix_keys[0].transpose(1, 2)  # (H, B, P)
    own_scores = (q @ keys.transpose(2, 3))[:, :, 0].transpose(0, 1)  # (H, B, t)
    weights = torch.softmax(torch.cat([prefix_scores, own_scores], -1).float() * scale, -1).to(q.dtype)
    p = prefix_scores.shape[-1]
    y = weights[..., :p] @ prefix_values[0]  # (H, B, hd)
    own = weights[..., p:].transpose(0, 1)[:, :, None] @ values  # (B, H, 1, hd)
    return y.transpose(0, 1)[:, :, None] + own


def _rms(x: Tensor, eps: float, modulation: Tensor | None = None, at: int = 0) -> Tensor:
    """x / rms(x) in x's dtype (the gain is folded into the next matrix); float32 statistics. With a layer's
    `modulation` (4, B, d), scaled by 1 + modulation[at] and shifted by modulation[at + 1] (`Block`)."""
    xf = x.float()
    normed = xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + eps)
    if modulation is not None:
        normed = normed * (1 + modulation[at].float()) + modulation[at + 1].float()
    return normed.to(x.dtype)


def _fingerprint(model: Transformer) -> tuple:
    """Identity and version of every parameter: changes when any weight is written or replaced."""
    return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in model.parameters())
