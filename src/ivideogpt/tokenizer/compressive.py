"""Video tokenizers: the compressive conditional tokenizer of iVideoGPT and a per-frame baseline.

    context frames ──E_c──▶ 16x16 latent ──codebook 1──▶ 256 tokens/frame ──D_c──▶ context frames
         │ E_c features                                       │ D_c features (from the codes)
         ▼ (cross-attention)                                  ▼ (cross-attention)
    future frames ──E_p──▶ 16x16 latent ─4x4 patches─codebook 2─▶ 16 tokens/frame ──D_p──▶ future frames

Each future frame is coded relative to the context frames only, so all future frames of a clip are
coded and decoded in parallel (time folded into the batch), and a rollout decodes frame by frame from a
`ContextState` that caches the D_c features of the context codes. Both classes share one interface;
the per-frame baseline sends every frame through E_c/D_c.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ivideogpt.data.motion import moving_patches
from ivideogpt.tokenizer.config import TokenizerConfig
from ivideogpt.tokenizer.losses import TokenizerLoss
from ivideogpt.tokenizer.output import TokenizerOutput
from ivideogpt.tokenizer.quantizer import QuantizerOutput, check_codes
from ivideogpt.tokenizer.vqgan import VQGAN, Features

# Tolerance on the [-1, 1] range check: catches frames in [0, 255] without rejecting rounding noise.
RANGE_TOLERANCE = 1e-3
# `future_blend`: the mask starts at sigmoid(2) = 0.88 on the last context frame, so a fresh tokenizer
# already scores about as well as copying that frame while D_p's own image still gets gradients.
BLEND_INIT_LOGIT = 2.0
STILL_CODE = 0  # the future code of a still patch, with `TokenizerConfig.still_threshold`


@dataclass
class ContextState:
    """What decoding future frames needs from the context: its codes and cached D_c features."""

    codes: Tensor  # int64 (B, Tc, hc, wc)
    frames: Tensor  # (B, Tc, 3, H, W) context frames decoded from the codes
    features: Features  # {side: (B, Tc, C, side, side)} D_c features that D_p attends to (empty: per-frame)
    # (B, 3, H, W) the last context frame future frames are blended with (`future_blend`): the real
    # pixels when the state was encoded from frames, else the decoded frame
    last_frame: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.codes.shape[0]

    def map(self, fn: Callable[[Tensor], Tensor]) -> ContextState:
        """The state with `fn` applied to every tensor (moving, repeating or selecting batch rows)."""
        return ContextState(fn(self.codes), fn(self.frames), {s: fn(f) for s, f in self.features.items()},
                            None if self.last_frame is None else fn(self.last_frame))

    def to(self, device: torch.device | str) -> ContextState:
        return self.map(lambda x: x.to(device))

    def repeat_interleave(self, repeats: int) -> ContextState:
        """Each clip's context `repeats` times in a row (e.g. many sampled futures of one context)."""
        return self.map(lambda x: x.repeat_interleave(repeats, dim=0))

    def select(self, index: Tensor) -> ContextState:
        """The contexts of batch rows `index` (int (B',), repeats allowed)."""
        return self.map(lambda x: x.index_select(0, index.to(x.device)))


class VideoTokenizer(nn.Module):
    """Shared interface and logic; subclasses choose the context and future autoencoders."""

    context_vqgan: VQGAN
    future_vqgan: VQGAN

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg

    # ---- sizes -------------------------------------------------------------------------------------
    @property
    def resolution(self) -> int:
        return self.cfg.resolution

    @property
    def context_grid(self) -> tuple[int, int]:
        return (self.context_vqgan.grid, self.context_vqgan.grid)

    @property
    def future_grid(self) -> tuple[int, int]:
        return (self.future_vqgan.grid, self.future_vqgan.grid)

    @property
    def tokens_per_context_frame(self) -> int:
        return self.context_vqgan.grid**2

    @property
    def tokens_per_future_frame(self) -> int:
        return self.future_vqgan.grid**2

    @property
    def context_vocab_size(self) -> int:
        return self.context_vqgan.vocab_size

    @property
    def future_vocab_size(self) -> int:
        return self.future_vqgan.vocab_size

    @property
    def last_layer_weights(self) -> list[nn.Parameter]:
        """Output conv weights of the decoders (for the adaptive GAN weight), each once."""
        layers = {id(v.decoder.conv_out.weight): v.decoder.conv_out.weight
                  for v in (self.context_vqgan, self.future_vqgan)}
        return list(layers.values())

    # ---- training ----------------------------------------------------------------------------------
    def forward(self, clip: Tensor, num_context: int) -> TokenizerOutput:
        """Encode, quantize and reconstruct a clip (differentiable, straight-through).

        Args:
            clip: float `(B, T, 3, H, W)` in [-1, 1].
            num_context: Tc, the first Tc frames are context (1 <= Tc < T).
        """
        b, tc = clip.shape[0], num_context
        ctx_q, fut_q = self._encode(clip, num_context)
        ctx_recon, dec_features = self.context_vqgan.decode(ctx_q.quantized)  # (B*Tc, 3, H, W)
        fut_recon, _ = self.future_vqgan.decode(fut_q.quantized, self._per_clip(dec_features, b))
        decoded = fut_recon.unflatten(0, (b, -1))  # (B, Tf, C, H, W); C = 4 with future_blend
        last = clip[:, tc - 1] if self.cfg.future_blend else None  # the real last context frame
        stats = {"context_perplexity": ctx_q.perplexity, "context_usage": ctx_q.usage,
                 "future_perplexity": fut_q.perplexity, "future_usage": fut_q.usage}
        return TokenizerOutput(
            recon=torch.cat([ctx_recon.unflatten(0, (b, tc)), self._compose(decoded, last)], dim=1),
            quant_loss=ctx_q.loss + fut_q.loss,
            context_codes=ctx_q.codes.unflatten(0, (b, tc)),
            future_codes=fut_q.codes.unflatten(0, (b, -1)),
            stats=stats,
            future_raw=decoded[:, :, :3] if self.cfg.future_blend else None,
            future_mask_logits=decoded[:, :, 3:] if self.cfg.future_blend else None,
        )

    def compute_loss(
        self, clip: Tensor, num_context: int, loss_fn: TokenizerLoss, step: int = 0
    ) -> tuple[Tensor, dict[str, float], TokenizerOutput]:
        """Generator-side training loss of a clip (`TokenizerLoss.generator_loss` on this forward).

        The training job runs this method as the forward of its DDP / compile wrapper
        (`Runtime.wrap(tokenizer, method="compute_loss")`).

        Returns:
            The scalar loss, float metrics, and the forward's output (whose reconstructions the
            discriminator step reuses).
        """
        out = self(clip, num_context)
        loss, metrics = loss_fn.generator_loss(clip, out, self.last_layer_weights, step)
        return loss, metrics, out

    # ---- inference ---------------------------------------------------------------------------------
    @torch.no_grad()
    def tokenize(self, clip: Tensor, num_context: int) -> tuple[Tensor, Tensor]:
        """Clip `(B, T, 3, H, W)` in [-1, 1] -> codes: context `(B, Tc, hc, wc)`, future `(B, Tf, hf, wf)`."""
        ctx_q, fut_q = self._encode(clip, num_context)
        b = clip.shape[0]
        return ctx_q.codes.unflatten(0, (b, num_context)), fut_q.codes.unflatten(0, (b, -1))

    @torch.no_grad()
    def detokenize(self, context_codes: Tensor, future_codes: Tensor) -> Tensor:
        """Codes `(B, Tc, hc, wc)` and `(B, Tf, hf, wf)` -> frames `(B, Tc + Tf, 3, H, W)`, about [-1, 1]."""
        state = self.context_from_codes(context_codes)
        return torch.cat([state.frames, self.decode_future(future_codes, state)], dim=1)

    @torch.no_grad()
    def encode_context(self, context_frames: Tensor) -> ContextState:
        """Context frames `(B, Tc, 3, H, W)` in [-1, 1] -> `ContextState` (codes, frames, features)."""
        self._check_frames(context_frames, "context_frames")
        b = context_frames.shape[0]
        q, _ = self.context_vqgan.encode(context_frames.flatten(0, 1))
        state = self.context_from_codes(q.codes.unflatten(0, (b, -1)))
        if self.cfg.future_blend:
            state.last_frame = context_frames[:, -1]  # real pixels beat the decoded ones
        return state

    @torch.no_grad()
    def context_from_codes(self, context_codes: Tensor) -> ContextState:
        """Context codes `(B, Tc, hc, wc)` -> `ContextState`; decoding needs only codes."""
        self._check_codes(context_codes, self.context_grid, self.context_vocab_size, "context_codes")
        b = context_codes.shape[0]
        frames, features = self.context_vqgan.decode_codes(context_codes.flatten(0, 1))
        features = self._per_clip(features, b) or {}
        frames = frames.unflatten(0, (b, -1))
        last = frames[:, -1] if self.cfg.future_blend else None
        return ContextState(context_codes.long(), frames, features, last)

    @torch.no_grad()
    def decode_context(self, state: ContextState) -> Tensor:
        """The context frames `(B, Tc, 3, H, W)` of a state (decoded when the state was made)."""
        return state.frames

    @torch.no_grad()
    def decode_future(self, future_codes: Tensor, state: ContextState) -> Tensor:
        """Decode future frames against a cached context.

        Args:
            future_codes: `(B, hf, wf)` one frame per clip, or `(B, F, hf, wf)` F frames per clip.
            state: from `encode_context` / `context_from_codes`, batch size B.

        Returns:
            `(B, 3, H, W)` or `(B, F, 3, H, W)`, matching the codes' rank.
        """
        single = future_codes.ndim == 3
        codes = future_codes.unsqueeze(1) if single else future_codes
        self._check_codes(codes, self.future_grid, self.future_vocab_size, "future_codes")
        if codes.shape[0] != state.batch_size:
            raise ValueError(f"future_codes: batch size {codes.shape[0]} does not match the context state's "
                             f"{state.batch_size}")
        context = state.features if self.future_vqgan.conditional else None
        frames, _ = self.future_vqgan.decode_codes(codes.flatten(0, 1), context)  # (B*F, 3, H, W)
        if self.cfg.future_blend and state.last_frame is None:
            raise ValueError("decode_future: this tokenizer blends future frames with the last context "
                             "frame, but the context state has none (make it with encode_context or "
                             "context_from_codes)")
        frames = self._compose(frames.unflatten(0, codes.shape[:2]), state.last_frame)
        return frames[:, 0] if single else frames

    # ---- helpers -----------------------------------------------------------------------------------
    def _compose(self, decoded: Tensor, last_frame: Tensor | None) -> Tensor:
        """D_p output `(B, F, C, H, W)` -> frames `(B, F, 3, H, W)`; with `future_blend` (C = 4) the 4th
        channel is a mask logit: mask * last context frame `(B, 3, H, W)` + (1 - mask) * D_p's frame."""
        if not self.cfg.future_blend:
            return decoded
        mask = torch.sigmoid(decoded[:, :, 3:])
        return mask * last_frame[:, None] + (1 - mask) * decoded[:, :, :3]

    def _encode(self, clip: Tensor, num_context: int) -> tuple[QuantizerOutput, QuantizerOutput]:
        """Quantize context frames `(B*Tc, ...)`, then future frames `(B*Tf, ...)` against their context."""
        self._check_clip(clip, num_context)
        ctx_q, enc_features = self.context_vqgan.encode(clip[:, :num_context].flatten(0, 1))
        context = self._per_clip(enc_features, clip.shape[0])
        fut_q, _ = self.future_vqgan.encode(clip[:, num_context:].flatten(0, 1), context)
        if self.cfg.still_threshold:
            fut_q = self._code_still_patches(fut_q, clip, num_context)
        return ctx_q, fut_q

    def _code_still_patches(self, q: QuantizerOutput, clip: Tensor, num_context: int) -> QuantizerOutput:
        """Future codes (B*Tf, hf, wf) with every still patch's (`cfg.still_threshold`) set to STILL_CODE, and
        its vector to that code's, so that gradients through the decoder shape the one vector."""
        change = (clip[:, num_context:] - clip[:, num_context - 1 : num_context]).abs().mean(2) * 127.5
        still = ~moving_patches(change, self.future_grid, self.cfg.still_threshold)  # (B, Tf, hf * wf)
        still = still.view(q.codes.shape)  # (B*Tf, hf, wf)
        quantizer = self.future_vqgan.quantizer
        quantizer.add_uses(STILL_CODE, still.sum())  # the lookup seldom picks it: keep restarts off it
        vector = quantizer.embeddings()[STILL_CODE].to(q.quantized.dtype)  # (D,)
        return dataclasses.replace(
            q, codes=q.codes.masked_fill(still, STILL_CODE),
            quantized=torch.where(still[:, None], vector[None, :, None, None], q.quantized))

    def _per_clip(self, features: Features, batch: int) -> Features | None:
        """Per-frame features `(B*Tc, C, s, s)` -> `(B, Tc, C, s, s)` at the sizes E_p/D_p attend to."""
        if not self.future_vqgan.conditional:
            return None
        return {s: features[s].unflatten(0, (batch, -1)) for s in self.cfg.conditioned_sizes}

    def _check_frames(self, frames: Tensor, name: str) -> None:
        if not isinstance(frames, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(frames).__name__}")
        r = self.resolution
        channels_last = frames.ndim == 5 and frames.shape[-1] == 3 and frames.shape[2] != 3
        if frames.dtype == torch.uint8 or channels_last:
            raise ValueError(f"{name}: got {frames.dtype} {tuple(frames.shape)}; expected float "
                             f"(B, T, 3, {r}, {r}) in [-1, 1]. Convert uint8 (B, T, H, W, 3) frames with "
                             "ivideogpt.data.frames.to_model")
        if not frames.is_floating_point():
            raise TypeError(f"{name}: expected a floating tensor in [-1, 1], got dtype {frames.dtype}")
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"{name}: expected shape (B, T, 3, H, W), got {tuple(frames.shape)}")
        if frames.shape[-2:] != (r, r):
            raise ValueError(f"{name}: frames are {frames.shape[-2]}x{frames.shape[-1]}, this tokenizer "
                             f"expects {r}x{r} (TokenizerConfig.resolution)")
        lo, hi = torch.stack(torch.aminmax(frames.detach())).tolist()  # one device sync
        if lo < -1 - RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            raise ValueError(f"{name}: values in [{lo:.3g}, {hi:.3g}], expected [-1, 1] "
                             "(see ivideogpt.data.frames.to_model)")

    def _check_clip(self, clip: Tensor, num_context: int) -> None:
        self._check_frames(clip, "clip")
        t = clip.shape[1]
        integral = isinstance(num_context, numbers.Integral) and not isinstance(num_context, bool)
        if not integral or not 1 <= num_context < t:
            raise ValueError(f"num_context must be an int in [1, {t - 1}] for a clip of {t} frames, "
                             f"got {num_context!r}")

    @staticmethod
    def _check_codes(codes: Tensor, grid: tuple[int, int], vocab: int, name: str) -> None:
        if codes.ndim != 4 or tuple(codes.shape[-2:]) != grid:
            raise ValueError(f"{name}: expected shape (B, T, {grid[0]}, {grid[1]}), got {tuple(codes.shape)}")
        check_codes(codes, vocab, name)


class CompressiveTokenizer(VideoTokenizer):
    """iVideoGPT's tokenizer: E_c/D_c for context frames, conditional E_p/D_p for future frames."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__(cfg)
        if cfg.kind != "compressive":
            raise ValueError(f"CompressiveTokenizer needs TokenizerConfig.kind='compressive', "
                             f"got {cfg.kind!r}")
        self.context_vqgan = VQGAN(cfg, cfg.context_codebook, patch_size=1, conditional=False)
        self.future_vqgan = VQGAN(cfg, cfg.future_codebook, patch_size=cfg.patch_size, conditional=True,
                                  out_channels=4 if cfg.future_blend else 3)
        self.init_conditional_from_plain()

    @torch.no_grad()
    def init_conditional_from_plain(self) -> None:
        """Copy E_c into E_p and D_c into D_p wherever they share a parameter (all but cross-attention).

        As in the paper (docs/method.md §1), the conditional pair starts from copies of the plain one.
        Called at construction; call it again after loading plain (per-frame) weights into `context_vqgan`.
        """
        for plain, cond in ((self.context_vqgan.encoder, self.future_vqgan.encoder),
                            (self.context_vqgan.decoder, self.future_vqgan.decoder)):
            source = plain.state_dict()
            for name, tensor in cond.state_dict().items():
                if name in source:  # the blend mask's output channel (future_blend) has no plain twin
                    tensor[: len(source[name])].copy_(source[name])
        if self.cfg.future_blend:
            # Not "exactly the last frame" (a zero D_p output): the L1 gradient then vanishes on static pixels
            # and D_p never learns; measured, its output layer shrank to ~1e-5 and stayed there.
            out = self.future_vqgan.decoder.conv_out
            nn.init.zeros_(out.weight[3:])
            nn.init.constant_(out.bias[3:], BLEND_INIT_LOGIT)


class PerFrameTokenizer(VideoTokenizer):
    """Baseline: every frame through the same E_c/D_c and codebook; the future grid is the latent grid."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__(cfg)
        if cfg.kind != "per_frame":
            raise ValueError(f"PerFrameTokenizer needs TokenizerConfig.kind='per_frame', got {cfg.kind!r}")
        self.vqgan = VQGAN(cfg, cfg.context_codebook, patch_size=1, conditional=False)

    @property
    def context_vqgan(self) -> VQGAN:  # type: ignore[override]
        return self.vqgan

    @property
    def future_vqgan(self) -> VQGAN:  # type: ignore[override]
        return self.vqgan


def build_tokenizer(cfg: TokenizerConfig) -> VideoTokenizer:
    """The tokenizer of `cfg.kind`: `CompressiveTokenizer` or `PerFrameTokenizer`."""
    return CompressiveTokenizer(cfg) if cfg.kind == "compressive" else PerFrameTokenizer(cfg)


def check_state_dict(model: nn.Module, state_dict: dict[str, Tensor], source: str = "checkpoint") -> None:
    """Raise a clear error when `state_dict` does not fit `model` (another config's checkpoint).

    Lists up to five missing, unexpected and wrongly shaped keys with their shapes.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [f"{k}: {tuple(state_dict[k].shape)} in {source}, {tuple(v.shape)} in the model"
             for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing (e.g. {missing[:5]})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[:5]})" if unexpected else "",
                 f"{len(wrong)} with other shapes (e.g. {wrong[:5]})" if wrong else ""]
        raise ValueError(f"{source} does not fit this {type(model).__name__} (was it saved with another "
                         f"tokenizer config?): " + "; ".join(p for p in parts if p))
