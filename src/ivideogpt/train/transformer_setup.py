"""What the transformer job builds before training: the token shards, the tokenizer that made them, the
model config the data fixes, and the weights of a parent world model (`init_from`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ivideogpt.artifacts import load_any_tokenizer, tokenizer_fingerprint
from ivideogpt.data.tokens import TokenShardError, TokenShardMeta, TokenShards
from ivideogpt.tokenizer import VideoTokenizer
from ivideogpt.transformer import Transformer, TransformerConfig
from ivideogpt.transformer.pretrained import is_action_parameter, load_pretrained
from ivideogpt.world_model import WorldModel

# fields a parent model (`init_from`) must share with `cfg.model` for its weights to mean the same thing
ARCH_FIELDS = ("n_layer", "n_head", "n_embd", "hidden_size", "rope_theta", "tie_embeddings")
CODE_LAYERS = ("tok_emb.", "lm_head.")  # what maps codes in and out: tied to one tokenizer's codebooks



def open_token_shards(tokens: Path) -> tuple[TokenShards, TokenShards | None]:
    """The train shards and (when present) the val shards of a `tokenize` output folder."""
    tokens = Path(tokens)
    if not (tokens / "train").is_dir():
        hint = " (it is a shard folder itself: pass its parent)" if (tokens / "meta.json").exists() else ""
        raise FileNotFoundError(f"no token shards at {tokens}: expected {tokens / 'train'}/ written by "
                                f"`ivideogpt tokenize --out {tokens}`{hint}")
    train = TokenShards(tokens / "train")
    val = TokenShards(tokens / "val") if (tokens / "val").is_dir() else None
    if val is not None:
        fields = ("context_frames", "future_frames", "context_tokens", "future_tokens", "context_vocab_size",
                  "future_vocab_size", "action_dim")
        diff = [f for f in fields if getattr(train.meta, f) != getattr(val.meta, f)]
        fingerprints = {m.extra.get("tokenizer_fingerprint") for m in (train.meta, val.meta)}
        if diff or len(fingerprints) > 1:
            raise TokenShardError(f"{tokens}: train and val shards were not made together (they differ in "
                                  f"{diff or ['tokenizer weights']}); re-run `ivideogpt tokenize`")
    return train, val


def shard_tokenizer(meta: TokenShardMeta, where: Path) -> VideoTokenizer:
    """The tokenizer recorded in the shards' meta, checked to be the one that made them (on the CPU)."""
    path, fingerprint = meta.extra.get("tokenizer_path"), meta.extra.get("tokenizer_fingerprint")
    if not path or not fingerprint:
        raise TokenShardError(f"{where}: the shards do not record their tokenizer (tokenizer_path, "
                              "tokenizer_fingerprint); re-run `ivideogpt tokenize`")
    relpath = meta.extra.get("tokenizer_relpath")
    if not Path(path).exists() and relpath is not None and (Path(where) / relpath).exists():
        path = str(Path(where) / relpath)  # moved together with the shards; the fingerprint still decides
    try:
        tokenizer = load_any_tokenizer(path)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{where} was tokenized with {path}, which cannot be loaded any more ({e}); "
                                "the world model needs that tokenizer") from e
    if tokenizer_fingerprint(tokenizer) != fingerprint:
        raise TokenShardError(f"{where}: the tokenizer at {path} has changed since these shards were made "
                              "(its weights differ); re-run `ivideogpt tokenize`")
    return tokenizer


def data_heads(shards: TokenShards) -> dict[str, bool]:
    """Reward head when some clip has rewards; done head when some labelled clip ever terminates."""
    labelled = np.asarray(shards.arrays["flags"][:, 1])  # (N,) has_rewards
    dones = np.asarray(shards.arrays["dones"])[labelled, shards.meta.context_frames :]
    return {"reward_head": bool(labelled.any()), "done_head": bool(dones.any())}


def resolve_model_config(
    model: TransformerConfig, meta: TokenShardMeta, heads: dict[str, bool]
) -> TransformerConfig:
    """`model` with the fields the data fixes: its layout, action size and heads.

    Raises:
        ValueError: when `model` sets one of those fields (away from its default) to another value than the
            data's: a silent override would train something other than what was asked for.
    """
    data = {
        "context_vocab_size": meta.context_vocab_size,
        "future_vocab_size": meta.future_vocab_size,
        "tokens_per_context_frame": meta.context_tokens,
        "tokens_per_future_frame": meta.future_tokens,
        "max_context_frames": meta.context_frames,
        "max_future_frames": meta.future_frames,
        "action_dim": meta.action_dim,
        **heads,
    }
    defaults = {f.name: f.default for f in dataclasses.fields(TransformerConfig)}
    clash = [
        f"model.{k}={getattr(model, k)!r} (data: {v!r})"
        for k, v in data.items()
        if getattr(model, k) not in (defaults[k], v)
    ]
    if clash:
        raise ValueError(f"{', '.join(clash)}: these fields come from the token shards; leave them unset")
    return dataclasses.replace(model, **data)


def load_parent(
    model: Transformer, parent: WorldModel, meta: TokenShardMeta, where: Path, new_codes: bool = False,
    new_actions: bool = False,
) -> None:
    """Load `parent`'s transformer into `model`; new parts (action layer, heads) keep their zero init.

    With `new_codes` the shards' codes come from an unrelated tokenizer: the parent's body (attention, MLPs,
    action and reward layers) loads, while what reads and writes codes (the token embedding and the logits
    head) keeps `model`'s fresh init, as the parent's would map each code to another code's meaning. With
    `new_actions` the data's actions are another robot's (RoboDesk's 5-d after Meta-World's 4-d): the
    parent's action layers are left out and `model`'s start at zero, as for an action-free parent.
    """
    # the shards' tokenizer, or one it was fine-tuned from: the codes keep their meaning (docs/method.md §3)
    compatible = {meta.extra.get("tokenizer_fingerprint"), *(meta.extra.get("tokenizer_lineage") or [])}
    # the parent's own tokenizer, or the one whose codes its transformer was trained on (a float16 export's
    # tokenizer is that one rounded, with another fingerprint but the same codes' meaning)
    parents = {tokenizer_fingerprint(parent.tokenizer), parent.spec.provenance.get("tokenizer_fingerprint")}
    if not new_codes and not (parents & compatible) - {None}:
        raise ValueError(
            f"init_from {where}: its tokenizer is neither the one that made the token shards "
            f"({meta.extra.get('tokenizer_path')}) nor one that tokenizer was fine-tuned from; tokenize the "
            f"data with --tokenizer {where}, or fine-tune that tokenizer first "
            f"(train-tokenizer --init-from {where}), or pass --init-new-codes to take only its body"
        )
    mine, theirs = model.cfg, parent.transformer.cfg
    diff = [
        f"{k}: {getattr(theirs, k)} vs {getattr(mine, k)}"
        for k in ARCH_FIELDS
        if getattr(theirs, k) != getattr(mine, k)
    ]
    if diff:
        raise ValueError(
            f"init_from {where}: its architecture differs from model (init_from vs model): "
            f"{'; '.join(diff)}; set the model fields (or --config) to match"
        )
    if theirs.action_dim not in (0, mine.action_dim) and not new_actions:
        raise ValueError(
            f"init_from {where}: it takes actions of size {theirs.action_dim}, the data has "
            f"{mine.action_dim}; pass --init-new-actions to start the action layers afresh (another robot's)"
        )
    weights = parent.transformer.state_dict()
    if new_actions:
        weights = {k: v for k, v in weights.items() if not is_action_parameter(k)}
    if new_codes:
        weights.update({k: v for k, v in model.state_dict().items() if k.startswith(CODE_LAYERS)})
    try:
        added = load_pretrained(model, weights)
    except ValueError as e:
        raise ValueError(f"init_from {where}: {e}") from e
    fresh = [*added, *(layer.rstrip(".") for layer in CODE_LAYERS if new_codes)]
    print(f"transformer: initialised from {where}" + (f"; fresh: {fresh}" if fresh else ""))
