"""The train (transformer) job on tiny token shards: learning, validation, export, resume, accumulation,
fine-tuning from an action-free parent, DDP, and bad inputs."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from ivideogpt.artifacts import load_tokenizer, tokenizer_fingerprint, tokenizer_lineage
from ivideogpt.config import load_yaml, merge
from ivideogpt.export import ExportConfig, export_world_model
from ivideogpt.train.checkpoint import CheckpointError, load_checkpoint
from ivideogpt.train.distributed import init_runtime, shutdown
from ivideogpt.train.loop import run_training, seed_everything
from ivideogpt.train.monitor import read_log
from ivideogpt.train.tokenize import TokenizeConfig, tokenize_dataset
from ivideogpt.train.tokenizer import TokenizerTrainConfig, train_tokenizer
from ivideogpt.train.transformer import TransformerJob, TransformerTrainConfig, train_transformer
from ivideogpt.transformer import generate_frames
from ivideogpt.world_model import WorldModel

from .test_ddp import _free_port
from .test_tokenize import write_squares, write_tokenizer


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Token shards (train + val) of the sliding-square dataset with actions and rewards."""
    root = tmp_path_factory.mktemp("transformer")
    return tokenize_dataset(
        TokenizeConfig(
            tokenizer=write_tokenizer(root / "tokenizer"),
            data=[write_squares(root / "data")],
            out=root / "tokens",
            device="cpu",
        )
    )


def _cfg(tokens: Path, out: Path, **overrides: Any) -> TransformerTrainConfig:
    """The tiny preset on CPU, plus nested overrides."""
    base = merge(TransformerTrainConfig(), load_yaml("transformer_tiny"))
    return merge(base, {"tokens": str(tokens), "out": str(out), "train": {"device": "cpu"}, **overrides})


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return WorldModel.load(path).transformer.state_dict()


def test_loss_falls_validates_samples_and_exports(tokens: Path, tmp_path: Path) -> None:
    export = train_transformer(_cfg(tokens, tmp_path / "run"))
    log = read_log(tmp_path / "run" / "log.jsonl")
    losses = [r["transformer/train/loss"] for r in log if "transformer/train/loss" in r]
    assert losses[-1] < 0.75 * losses[0]
    val = [r for r in log if "transformer/val/loss" in r]
    assert [r["step"] for r in val] == [10, 20, 30]
    assert val[-1]["transformer/val/ce"] < val[0]["transformer/val/ce"]
    for key in ("accuracy", "reward_mse", "reward_corr", "first_accuracy", "greedy_accuracy"):
        assert f"transformer/val/{key}" in val[-1]
    assert {"transformer/train/tokens_per_s", "transformer/train/grad_norm"} <= set(log[0])
    assert (tmp_path / "run" / "samples" / "step_000000030.gif").stat().st_size > 0

    wm = WorldModel.load(export)
    assert (wm.action_dim, wm.spec.context_frames, wm.spec.future_frames, wm.image_size) == (2, 2, 4, 16)
    assert wm.transformer.cfg.reward_head and not wm.transformer.cfg.done_head  # no episode ever ends
    assert wm.spec.provenance["val"]["reward_corr"] == pytest.approx(val[-1]["transformer/val/reward_corr"])
    out = wm.rollout(np.zeros((2, 2, 16, 16, 3), np.uint8), np.zeros((2, 5, 2), np.float32), seed=0)
    assert out.frames.shape == (2, 5, 16, 16, 3) and out.rewards.shape == (2, 5)


def test_greedy_accuracy_scores_the_models_own_rollout_of_the_first_frame(tokens: Path, tmp_path: Path
                                                                          ) -> None:
    job = TransformerJob(_cfg(tokens, tmp_path / "run"), init_runtime("cpu", "off"))
    job.model.eval()
    batch = job.val_data.batch(job.val_ids()[0])
    actions = batch.actions[:, 2:3]
    own = generate_frames(job.model, batch.context_codes, actions, 1, temperature=0.0, top_k=None)[0]
    # clips whose first frame is the model's own greedy choice: both ways hit every code
    mine = dataclasses.replace(batch, future_codes=torch.cat([own, batch.future_codes[:, 1:]], dim=1))
    with torch.no_grad():
        scores = job._first_frame_accuracy(mine, job.model.compute_loss(mine)[2].logits)
    assert scores == {"first_accuracy": 1.0, "greedy_accuracy": 1.0}
    with torch.no_grad():
        scores = job._first_frame_accuracy(batch, job.model.compute_loss(batch)[2].logits)
    hit = (own[:, 0] == batch.future_codes[:, 0]).float().mean()
    assert scores["greedy_accuracy"] == pytest.approx(float(hit))
    assert scores["first_accuracy"] < 1.0  # an untrained model misses true codes


def test_a_checkpoint_exports_as_the_world_model_of_its_step(tokens: Path, tmp_path: Path) -> None:
    train_transformer(_cfg(tokens, tmp_path / "run", train={"steps": 20, "ckpt_every": 10}))
    step10 = tmp_path / "run" / "ckpt" / "step_000000010"
    with pytest.raises(FileNotFoundError, match="it is a training checkpoint: `ivideogpt export --model"):
        WorldModel.load(step10)
    out = export_world_model(ExportConfig(model=step10, out=tmp_path / "wm10", dtype="float32"))
    exported, final = _weights(out), _weights(tmp_path / "run")
    saved = load_checkpoint(step10).weights["transformer"]
    assert all(torch.equal(exported[k], saved[k]) for k in saved)
    assert any(not torch.equal(exported[k], final[k]) for k in saved)  # step 10's weights, not the last
    assert WorldModel.load(out).spec.provenance["steps"] == 10
    tokenizer_run = tmp_path / "tokenizer-run"
    shutil.copytree(step10, tokenizer_run)  # a step folder whose config is not a transformer run's
    (tokenizer_run / "config.json").write_text(json.dumps({"data": []}))
    with pytest.raises(CheckpointError, match="not a checkpoint of `ivideogpt train`"):
        export_world_model(ExportConfig(model=tokenizer_run, out=tmp_path / "bad"))


def test_a_checkpoint_older_than_a_new_option_resumes_while_the_option_keeps_its_default(
    tokens: Path, tmp_path: Path
) -> None:
    train_transformer(_cfg(tokens, tmp_path / "run", train={"steps": 2}))
    config = tmp_path / "run" / "ckpt" / "step_000000002" / "config.json"
    saved = json.loads(config.read_text())
    del saved["model"]["learned_positions"]  # written before the option existed
    config.write_text(json.dumps(saved))
    train_transformer(_cfg(tokens, tmp_path / "run", train={"steps": 3}, resume=True))
    assert (tmp_path / "run" / "ckpt" / "last.txt").read_text().strip() == "step_000000003"
    config = tmp_path / "run" / "ckpt" / "step_000000003" / "config.json"
    saved = json.loads(config.read_text())
    del saved["model"]["learned_positions"]
    config.write_text(json.dumps(saved))
    with pytest.raises(CheckpointError, match="model.learned_positions: not in the checkpoint"):
        train_transformer(_cfg(tokens, tmp_path / "run", train={"steps": 4}, resume=True,
                               model={"learned_positions": True}))  # a real change of architecture


def test_a_run_resumes_with_other_training_only_options_but_not_another_architecture(
    tokens: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train_transformer(_cfg(tokens, tmp_path / "run", train={"steps": 2}))
    capsys.readouterr()
    train_transformer(_cfg(tokens, tmp_path / "run", train={"steps": 3}, resume=True,
                           model={"code_noise": 0.5, "action_dropout": 0.1}))  # an A/B branch, say
    assert "model.code_noise: saved 0.0, now 0.5" in capsys.readouterr().out  # reported, not refused
    saved = json.loads((tmp_path / "run" / "ckpt" / "step_000000003" / "config.json").read_text())
    assert saved["model"]["code_noise"] == 0.5
    with pytest.raises(CheckpointError, match="model.n_layer: saved"):
        train_transformer(_cfg(tokens, tmp_path / "run", train={"steps": 4}, resume=True,
                               model={"n_layer": 3}))


def test_resumed_run_equals_uninterrupted(
    tokens: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dropout on: the RNG state in the checkpoint must be restored for the runs to agree; cosine schedule:
    # the cut run is interrupted (Ctrl-C), not shortened, so both runs share the schedule
    model, train = {"dropout": 0.1}, {"steps": 12}
    full = train_transformer(_cfg(tokens, tmp_path / "full", model=model, train=train))
    step_once = TransformerJob.train_step

    def interrupted(job: TransformerJob, batch: Any, step: int) -> dict[str, float]:
        metrics = step_once(job, batch, step)
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C during step 5
        return metrics

    monkeypatch.setattr(TransformerJob, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_transformer(_cfg(tokens, tmp_path / "cut", model=model, train=train))
    monkeypatch.undo()
    assert (tmp_path / "cut" / "ckpt" / "last.txt").read_text().strip() == "step_000000005"
    resumed = train_transformer(_cfg(tokens, tmp_path / "cut", model=model, train=train, resume=True))
    a, b = _weights(full), _weights(resumed)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    with pytest.raises(FileExistsError, match="already holds a run"):
        train_transformer(_cfg(tokens, tmp_path / "full", model=model, train={"steps": 12}))


def test_gradient_accumulation_matches_one_big_batch(tokens: Path, tmp_path: Path) -> None:
    runs = [
        train_transformer(_cfg(tokens, tmp_path / f"k{k}", train={"steps": 3, "grad_accum": k}))
        for k in (1, 4)
    ]
    a, b = (_weights(r) for r in runs)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


def test_action_free_parent_is_fine_tuned_with_actions(tmp_path: Path) -> None:
    tok_path = write_tokenizer(tmp_path / "tokenizer")
    video = tokenize_dataset(
        TokenizeConfig(
            tokenizer=tok_path,
            data=[write_squares(tmp_path / "video", None)],
            out=tmp_path / "video_tokens",
            device="cpu",
        )
    )
    parent = train_transformer(_cfg(video, tmp_path / "pretrain", train={"steps": 4}))
    assert WorldModel.load(parent).action_dim == 0
    # the fine-tuning data is tokenized with the parent world model's own tokenizer
    robot = tokenize_dataset(
        TokenizeConfig(
            tokenizer=parent,
            data=[write_squares(tmp_path / "robot")],
            out=tmp_path / "robot_tokens",
            device="cpu",
        )
    )
    cfg = _cfg(robot, tmp_path / "finetune", init_from=str(tmp_path / "pretrain"))
    job = TransformerJob(cfg, init_runtime("cpu"))
    theirs, mine = _weights(parent), job.model.state_dict()
    assert sorted(set(mine) - set(theirs)) == [
        "action_proj.weight",
        "heads.reward.bias",
        "heads.reward.weight",
    ]
    for key, value in theirs.items():
        torch.testing.assert_close(mine[key], value, rtol=0, atol=0, msg=key)
    assert not mine["action_proj.weight"].any()  # zero init: starts as the parent's predictions
    export = train_transformer(merge(cfg, {"train": {"steps": 4}}))
    assert WorldModel.load(export).action_dim == 2
    assert _weights(export)["action_proj.weight"].any()  # the action layer learned


def test_tokenizer_fine_tuned_from_the_parent_keeps_its_transformer_usable(
    tokens: Path, tmp_path: Path
) -> None:
    # docs/method.md §3: adapt the tokenizer to new data, re-tokenize, fine-tune the transformer on top
    parent = train_transformer(_cfg(tokens, tmp_path / "parent", train={"steps": 2}))
    base = merge(TokenizerTrainConfig(), load_yaml("tokenizer_tiny"))
    tok_cfg = merge(base, {"data": [str(write_squares(tmp_path / "new"))], "out": str(tmp_path / "tok"),
                           "init_from": str(parent), "clips": {"future_frames": 4, "val_fraction": 0.34},
                           "train": {"device": "cpu", "steps": 2, "eval_every": 0, "sample_every": 0}})
    parent_fingerprint = tokenizer_fingerprint(WorldModel.load(parent).tokenizer)
    tuned = train_tokenizer(tok_cfg)
    assert tokenizer_lineage(tuned) == [parent_fingerprint]
    assert tokenizer_fingerprint(load_tokenizer(tuned)) != parent_fingerprint  # it did train
    new_tokens = tokenize_dataset(TokenizeConfig(tokenizer=tuned, data=[tmp_path / "new"],
                                                 out=tmp_path / "new_tokens", device="cpu"))
    child = train_transformer(_cfg(new_tokens, tmp_path / "child", init_from=str(parent),
                                   train={"steps": 2}))
    assert WorldModel.load(child).spec.provenance["tokenizer_lineage"] == [parent_fingerprint]
    with pytest.raises(ValueError, match=r"architecture comes from the tokenizer being fine-tuned.*channels"):
        train_tokenizer(merge(tok_cfg, {"out": str(tmp_path / "tok2"), "tokenizer": {"channels": [8, 8, 8]}}))


def test_a_float16_export_continues_on_the_float32_tokenizers_codes(tokens: Path, tmp_path: Path) -> None:
    parent = train_transformer(_cfg(tokens, tmp_path / "parent", train={"steps": 2}))
    half = export_world_model(ExportConfig(model=parent, out=tmp_path / "half", dtype="float16"))
    assert tokenizer_fingerprint(WorldModel.load(half).tokenizer) != tokenizer_fingerprint(
        WorldModel.load(parent).tokenizer)  # rounded weights: the check goes by the codes it was trained on
    child = train_transformer(_cfg(tokens, tmp_path / "child", init_from=str(half), train={"steps": 1}))
    assert WorldModel.load(child).spec.provenance["init_from"] == str(half)


def test_bad_inputs_fail_clearly(tokens: Path, other_run: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no token shards"):
        train_transformer(_cfg(tmp_path / "missing", tmp_path / "a"))
    with pytest.raises(FileNotFoundError, match="pass its parent"):
        train_transformer(_cfg(tokens / "train", tmp_path / "b"))
    with pytest.raises(ValueError, match=r"model.action_dim=3 \(data: 2\)"):
        train_transformer(_cfg(tokens, tmp_path / "c", model={"action_dim": 3}))
    older = shutil.copytree(tokens, tmp_path / "older")  # shards from before moving.npy existed
    for split in ("train", "val"):
        (older / split / "moving.npy").unlink()
    with pytest.raises(ValueError, match="moving_weight needs token shards that mark the moving codes"):
        train_transformer(_cfg(older, tmp_path / "c2", model={"moving_weight": 2.0}))
    with pytest.raises(ValueError, match="neither the one that made the token shards"):
        train_transformer(_cfg(tokens, tmp_path / "d", init_from=str(other_run)))
    with pytest.raises(ValueError, match="architecture differs"):
        train_transformer(
            _cfg(other_run.parent / "tokens", tmp_path / "e", init_from=str(other_run), model={"n_layer": 3})
        )


def test_init_new_codes_takes_the_parents_body_only(tokens: Path, other_run: Path, tmp_path: Path) -> None:
    cfg = _cfg(tokens, tmp_path / "child", init_from=str(other_run), init_new_codes=True)
    job = TransformerJob(cfg, init_runtime("cpu", "off"))
    parent, child = _weights(other_run), job.model.state_dict()
    for key, value in parent.items():
        same = torch.equal(value, child[key])
        assert same != key.startswith(("tok_emb.", "lm_head.")), key  # body loaded, code layers fresh


@pytest.fixture(scope="module")
def other_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-step run on codes of another tokenizer than `tokens`' (its shards beside it in `tokens/`)."""
    other = tmp_path_factory.mktemp("other")
    other_tokens = tokenize_dataset(
        TokenizeConfig(
            tokenizer=write_tokenizer(other / "tokenizer", seed=1),
            data=[write_squares(other / "data")],
            out=other / "tokens",
            device="cpu",
        )
    )
    return train_transformer(_cfg(other_tokens, other / "run", train={"steps": 1})).parent


def _ddp_worker(rank: int, world_size: int, port: int, out: str, tokens: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    cfg = _cfg(
        Path(tokens),
        Path(out) / "run",
        model={"dropout": 0.1},
        train={"steps": 4, "batch_size": 4, "grad_accum": 2, "eval_every": 2, "sample_every": 4},
    )
    runtime = init_runtime("cpu")
    seed_everything(cfg.train.seed)
    job = TransformerJob(cfg, runtime)
    initial = {k: v.clone() for k, v in job.model.state_dict().items()}
    run_training(job, runtime, cfg.train, cfg.out, resume=False)
    torch.save({"initial": initial, "final": job.model.state_dict()}, Path(out) / f"rank{rank}.pt")
    shutdown(runtime)


def test_ddp_ranks_stay_identical(tokens: Path, tmp_path: Path) -> None:
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path), str(tokens)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key in r0["final"]:
        torch.testing.assert_close(r0["final"][key], r1["final"][key], rtol=0, atol=0, msg=key)
    assert any(not torch.equal(r0["initial"][k], r0["final"][k]) for k in r0["final"])  # it did train
    assert [r["step"] for r in read_log(tmp_path / "run" / "log.jsonl") if "transformer/val/loss" in r] == [
        2,
        4,
    ]


def test_compiled_training_on_cpu_matches_eager_and_checkpoints_the_plain_model(
    tokens: Path, tmp_path: Path
) -> None:
    """`--train.compile` on a CPU (bench/train_step.py): eager's losses, the plain model's checkpoint."""
    settings = {"model": {"attn_dropout": 0.0}, "train": {"steps": 6, "eval_every": 6, "sample_every": 0}}
    train_transformer(_cfg(tokens, tmp_path / "eager", **settings))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    settings["train"]["compile"] = True
    train_transformer(_cfg(tokens, tmp_path / "compiled", **settings))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # it did compile
    logs = [read_log(tmp_path / run / "log.jsonl") for run in ("eager", "compiled")]
    key = "transformer/train/loss"
    eager, compiled = ([r[key] for r in log if key in r] for log in logs)
    assert len(compiled) == len(eager) > 0
    torch.testing.assert_close(compiled, eager, rtol=1e-3, atol=1e-4)
    last = [load_checkpoint(tmp_path / run / "ckpt" / "step_000000006").weights["transformer"]
            for run in ("eager", "compiled")]
    assert set(last[1]) == set(last[0])  # the plain module's names, no compile wrapper in them


def test_init_new_actions_takes_a_parent_of_another_robot(tokens: Path, tmp_path: Path) -> None:
    """A parent trained on 3-d actions starts a model of the 2-d data: body loaded, action layers at zero."""
    three = tokenize_dataset(TokenizeConfig(tokenizer=tokens.parent / "tokenizer",  # the codes of `tokens`
                                            data=[write_squares(tmp_path / "sq3", action_dim=3)],
                                            out=tmp_path / "tokens3", device="cpu"))
    parent = train_transformer(_cfg(three, tmp_path / "parent3", train={"steps": 2}))
    with pytest.raises(ValueError, match="actions of size 3, the data has 2; pass --init-new-actions"):
        train_transformer(_cfg(tokens, tmp_path / "refused", init_from=str(parent)))
    job = TransformerJob(_cfg(tokens, tmp_path / "child", init_from=str(parent), init_new_actions=True),
                         init_runtime("cpu", "off"))
    child = job.model.state_dict()
    assert torch.count_nonzero(child["action_proj.weight"]) == 0 and child["action_proj.weight"].shape[1] == 2
    for key, value in _weights(parent).items():
        if not key.startswith("action_proj."):
            assert torch.equal(value, child[key]), key


def test_evaluation_and_samples_leave_the_model_training_also_after_an_error(
    tokens: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = init_runtime("cpu")
    job = TransformerJob(_cfg(tokens, tmp_path / "run", model={"dropout": 0.1}), runtime)
    job.model.train()
    assert "ce" in job.evaluate(0) and job.model.training
    job.write_samples(0, tmp_path)
    assert (tmp_path / "step_000000000.gif").is_file() and job.model.training
    seen_training: list[bool] = []

    def failing_loss(batch: Any) -> Any:
        seen_training.append(job.model.training)
        raise RuntimeError("a batch that breaks the model")

    monkeypatch.setattr(job.model, "compute_loss", failing_loss)
    with pytest.raises(RuntimeError, match="breaks the model"):
        job.evaluate(0)
    assert seen_training == [False]  # evaluated without dropout
    assert job.model.training  # and the trainer's mode is back, so training goes on with dropout
