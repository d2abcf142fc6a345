"""The speed anchor: the official iVideoGPT code's rollout scheme on a Hugging Face `LlamaForCausalLM`.

The official code (github.com/thuml/iVideoGPT, `ivideogpt/transformer/action_model.py`,
`HeadModelWithAction.generate`) imagines a clip frame by frame. For each frame it adds the projected action
(a `Linear(action_dim, d)` with bias) to the input embedding of the frame's slot token, then calls
`llm.generate(inputs_embeds=<the whole prefix>, do_sample=True, temperature, top_k, use_cache=True,
max_new_tokens=n)`: the prefix is re-run once per frame, the frame's n tokens are cached. It appends the n
new tokens and the next slot token, embeds them, and loops. With reward prediction on it asks `generate`
for hidden states, a path its authors mark as broken ("bug fix, currently not used"), so the anchor runs
the plain path, as the official rollouts do; ours computes the reward head as well (one more step a frame).

`transformers` is optional (the `bench` extra); `available()` says whether it is installed.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
from torch import Tensor, nn

from ivideogpt.transformer import Transformer


def available() -> bool:
    """Whether `transformers` can be imported."""
    return importlib.util.find_spec("transformers") is not None


class OfficialScheme:
    """A random `LlamaForCausalLM` of our transformer's shape and the official per-frame `generate` loop."""

    def __init__(self, model: Transformer, device: str, dtype: torch.dtype = torch.float32) -> None:
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = model.cfg
        config = LlamaConfig(
            vocab_size=cfg.padded_vocab_size, hidden_size=cfg.n_embd, intermediate_size=cfg.hidden_size,
            num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_head,
            max_position_embeddings=8192, rms_norm_eps=model.norm.eps, tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
            pad_token_id=cfg.sep_id, bos_token_id=None, eos_token_id=None,
        )
        config._attn_implementation = "sdpa"
        torch.manual_seed(0)
        self.llm = LlamaForCausalLM(config).to(device, dtype).eval()
        self.action_linear = nn.Linear(cfg.action_dim, cfg.n_embd).to(device, dtype)  # with bias, as there
        self.layout = model.layout
        self.slot_id = cfg.slot_id
        self.dtype = dtype

    def num_params(self) -> int:
        return sum(p.numel() for p in self.llm.parameters()) + sum(
            p.numel() for p in self.action_linear.parameters()
        )

    @torch.no_grad()
    def frame(self, prefix: Tensor, action: Tensor, top_k: int | None = 100) -> Tensor:
        """One imagined frame, as the official loop's body does it.

        Args:
            prefix: int64 (B, L) tokens so far, ending with this frame's slot token.
            action: float (B, A) the action producing the frame.

        Returns:
            int64 (B, n) the frame's new tokens (ids of the padded vocabulary, as `generate` samples them).
        """
        embeds = self.llm.get_input_embeddings()(prefix)  # (B, L, d): the official loop keeps these
        embeds[:, -1] += self.action_linear(action.to(self.dtype))
        return self.llm.generate(
            inputs_embeds=embeds, attention_mask=torch.ones_like(prefix), do_sample=True, temperature=1.0,
            top_k=top_k, use_cache=True, max_new_tokens=self.layout.future_tokens,
            pad_token_id=self.slot_id - 1,
        )

    @torch.no_grad()
    def rollout(self, context_tokens: Tensor, actions: Tensor, top_k: int | None = 100) -> Tensor:
        """The whole official loop: int64 (B, Lc) context tokens, actions (B, F, A) -> tokens (B, F, n)."""
        b = context_tokens.shape[0]
        slot = context_tokens.new_full((b, 1), self.slot_id)
        prefix, frames = torch.cat([context_tokens, slot], dim=1), []
        for t in range(actions.shape[1]):
            codes = self.frame(prefix, actions[:, t], top_k)  # (B, n)
            frames.append(codes)
            prefix = torch.cat([prefix, codes, slot], dim=1)
        return torch.stack(frames, dim=1)

    def describe(self) -> dict[str, Any]:
        import transformers

        return {
            "name": "hf_generate_per_frame",
            "what": ("official iVideoGPT scheme (HeadModelWithAction.generate): one "
                     "LlamaForCausalLM.generate(inputs_embeds=prefix, use_cache=True, do_sample=True, "
                     "top_k=100, max_new_tokens=n) per imagined frame, action added to the slot embedding"),
            "transformers": transformers.__version__,
            "params": self.num_params(),
        }
