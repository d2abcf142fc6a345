"""A world where only the action moves anything: a tiny world model trained for seconds must follow it.

A white 8x8 square sits at one of 3x3 places (4 pixels apart) on a black 16x16 canvas and moves one place
per step in the direction of the action (or stays, for a zero action). The first frame tells nothing about
where it goes next, so a model that ignores its actions can at best guess; one that uses them predicts the
right cell.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ivideogpt.config import load_yaml, merge
from ivideogpt.data.episode import Episode
from ivideogpt.data.store import DatasetWriter
from ivideogpt.train.tokenize import TokenizeConfig, tokenize_dataset
from ivideogpt.train.tokenizer import TokenizerTrainConfig, train_tokenizer
from ivideogpt.train.transformer import TransformerTrainConfig, train_transformer
from ivideogpt.world_model import WorldModel

SIZE, SQUARE, PITCH, GRID = 16, 8, 4, 3  # canvas, square side, pixels between places, places per axis
MOVES = np.array([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]], np.float32)  # stay, down, up, right, left


def draw(cell: tuple[int, int]) -> np.ndarray:
    frame = np.zeros((SIZE, SIZE, 3), np.uint8)
    r, c = cell[0] * PITCH, cell[1] * PITCH
    frame[r : r + SQUARE, c : c + SQUARE] = 255
    return frame


def step(cell: tuple[int, int], action: np.ndarray) -> tuple[int, int]:
    r, c = cell
    return int(np.clip(r + action[0], 0, GRID - 1)), int(np.clip(c + action[1], 0, GRID - 1))


def write_toy_world(root: Path, episodes: int = 48, length: int = 12) -> Path:
    rng = np.random.default_rng(0)
    with DatasetWriter(root, "toy-control", SIZE, 2, fps=10.0) as writer:
        for _ in range(episodes):
            cell = (int(rng.integers(GRID)), int(rng.integers(GRID)))
            frames, actions = [draw(cell)], [np.zeros(2, np.float32)]
            for _ in range(length - 1):
                action = MOVES[rng.integers(len(MOVES))]
                cell = step(cell, action)
                frames.append(draw(cell))
                actions.append(action)
            writer.add(Episode(frames=np.stack(frames), actions=np.stack(actions),
                               rewards=np.zeros(length, np.float32)))
    return root


def square_cell(frame: np.ndarray) -> tuple[int, int]:
    """The place whose square area is brightest in a frame: where the square is drawn."""
    gray = frame.astype(np.float64).mean(-1)
    places = [(r, c) for r in range(GRID) for c in range(GRID)]
    return max(places, key=lambda p: gray[p[0] * PITCH : p[0] * PITCH + SQUARE,
                                          p[1] * PITCH : p[1] * PITCH + SQUARE].mean())


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The transformer run folder (log.jsonl, world_model/) of a tiny world model of the toy world."""
    root = tmp_path_factory.mktemp("toy")
    data = write_toy_world(root / "data")
    loop = {"device": "cpu", "ckpt_every": 0, "sample_every": 0, "eval_every": 0, "num_workers": 0, "seed": 0}
    tok_cfg = merge(merge(TokenizerTrainConfig(), load_yaml("tokenizer_tiny")), {
        "data": [str(data)], "out": str(root / "tok"),
        "tokenizer": {"resolution": SIZE, "patch_size": 1},
        "clips": {"context_frames": 1, "future_frames": 3, "val_fraction": 0.1},
        "train": {**loop, "steps": 150, "batch_size": 8, "lr": 3e-3, "warmup_steps": 10}})
    train_tokenizer(tok_cfg)
    tokens = tokenize_dataset(TokenizeConfig(tokenizer=root / "tok", data=[data], out=root / "tokens",
                                             device="cpu"))
    tf_cfg = merge(merge(TransformerTrainConfig(), load_yaml("transformer_tiny")), {
        "tokens": str(tokens), "out": str(root / "tf"),
        "model": {"n_embd": 64, "mlp_hidden": 128},
        "train": {**loop, "steps": 150, "batch_size": 16, "lr": 3e-3, "warmup_steps": 10}})
    train_transformer(tf_cfg)
    return root / "tf"


def test_validation_measures_how_much_the_actions_inform_the_prediction(toy_run: Path) -> None:
    last = [json.loads(line) for line in (toy_run / "log.jsonl").read_text().splitlines()][-1]
    # another clip's actions send the square elsewhere: the cross-entropy must rise well above the clip's own
    assert last["transformer/val/action_gain"] > 0.1, last  # measured 0.23; an action-blind model: 0


def test_a_tiny_model_follows_its_actions_in_a_world_only_actions_move(toy_run: Path) -> None:
    toy_model = WorldModel.load(toy_run)
    starts = [(1, 1), (0, 0), (2, 2), (0, 2), (1, 0)]
    context = np.stack([draw(cell)[None] for cell in starts])  # (S, 1, H, W, 3)
    moves = MOVES[1:]  # four actions, four different next cells from an inner start
    right, differ, total = 0, 0, 0
    predicted = {}
    for a, action in enumerate(moves):
        out = toy_model.rollout(context, np.broadcast_to(action, (len(starts), 1, 2)).copy(), seed=0,
                                temperature=0.0)
        for s, cell in enumerate(starts):
            predicted[s, a] = square_cell(out.frames[s, 0])
            right += predicted[s, a] == step(cell, action)
            total += 1
    for s, cell in enumerate(starts):
        for a in range(len(moves)):
            for b in range(a + 1, len(moves)):
                if step(cell, moves[a]) != step(cell, moves[b]):  # actions that really lead apart
                    differ += predicted[s, a] != predicted[s, b]
    pairs = sum(step(c, moves[a]) != step(c, moves[b])
                for c in starts for a in range(4) for b in range(a + 1, 4))
    # an action-blind model predicts one place per start: at most 1 of 4 right from the centre
    assert right / total >= 0.75, f"the square went to the action's cell in {right} of {total} rollouts"
    assert differ / pairs >= 0.75, f"different actions gave different frames in {differ} of {pairs} pairs"
