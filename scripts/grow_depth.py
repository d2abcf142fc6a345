"""Deepen a world model's transformer without changing what it computes: an identity block after every block.

Each new block starts with its output projections (attention's `proj`, the MLP's `down`) at zero, so it adds
nothing to the residual stream and the grown model's predictions are the parent's; training then gives the
new blocks their say (progressive stacking, as in Gong et al. 2019, with zero instead of copied outputs).
Used to ask whether the transformer's depth limits how much of the action it reads (docs/actions-log.md):

    python scripts/grow_depth.py --model runs/r8/transformer-frame/world_model --out runs/r8-deep/parent
    ivideogpt train --config transformer_metaworld64 --tokens runs/r8/tokens --out runs/ab-mod/deep \
        --init-from runs/r8-deep/parent --model.n-layer 8 --model.action-to frame ...
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

from ivideogpt.transformer import Transformer
from ivideogpt.world_model import WorldModel


@dataclass
class GrowConfig:
    model: Path  # the parent world-model folder
    out: Path  # the grown world-model folder (refused if it exists)


def grow(parent: Transformer) -> Transformer:
    """The parent with an identity block inserted after each of its blocks (2x depth)."""
    cfg = dataclasses.replace(parent.cfg, n_layer=2 * parent.cfg.n_layer)
    grown = Transformer(cfg).eval()
    state = {k: v for k, v in parent.state_dict().items() if not k.startswith("blocks.")}
    for i, block in enumerate(parent.blocks):
        state |= {f"blocks.{2 * i}.{k}": v for k, v in block.state_dict().items()}
        new = grown.blocks[2 * i + 1]
        torch.nn.init.zeros_(new.attn.proj.weight)
        torch.nn.init.zeros_(new.mlp.down.weight)
        state |= {f"blocks.{2 * i + 1}.{k}": v for k, v in new.state_dict().items()}
    grown.load_state_dict(state)
    return grown


def main(cfg: GrowConfig) -> None:
    if cfg.out.exists():
        raise SystemExit(f"grow_depth: {cfg.out} exists; choose another --out")
    parent = WorldModel.load(cfg.model)
    grown = grow(parent.transformer)
    provenance = {**parent.spec.provenance, "grown_from": str(cfg.model),
                  "grown": f"identity block after each of {parent.transformer.cfg.n_layer}"}
    spec = dataclasses.replace(parent.spec, transformer=grown.cfg, provenance=provenance)
    WorldModel(parent.tokenizer, grown, spec).save(cfg.out)
    print(f"grow_depth: {parent.transformer.cfg.n_layer} -> {grown.cfg.n_layer} blocks, written to {cfg.out}")


if __name__ == "__main__":
    main(tyro.cli(GrowConfig))
