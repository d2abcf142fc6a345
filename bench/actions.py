"""Does a world model respond to its actions? Counterfactual and ordinary held-out figures, side by side.

For each world model given (e.g. the shipped one and a retrained one), on data recorded fresh in MuJoCo
with seeds no training run used:

    cf_default   counterfactual scenes of the default tasks: the scripted expert for T ~ U{10..60} steps,
                 then 4 branches from that state (the expert's continuation, smooth random, uniform random,
                 smooth random), 2 context + 8 imagined frames under each branch's own actions
    ordinary     ordinary episodes of the default tasks (the expert with small noise), 2 + 8 frames
    cf_unseen /  the same on tasks outside the training set (no target: what happens there)
    unseen

and writes `bench/results/actions.json` with, per model and set: action discrimination per step and
averaged over steps 5-8, PSNR/SSIM of the model (own actions), copy-last and the tokenizer's
reconstruction, each on whole frames and on moving pixels, Genie's Delta-PSNR, the branches' own
distance, the reward correlation under own vs other actions, and the issue's targets as pass/fail.
Anchors: `copy_last` (repeat the last context frame) and `tokenizer_recon` (the model's ceiling). Each
model is scored on sets recorded at its own control rate (the action repeat its training data recorded).

    python bench/actions.py --models src/ivideogpt/pretrained/metaworld64 runs/actions/transformer \
        --work runs/bench_actions                  # ~15 min per model on 2 CPU cores
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tyro
from record import command_line, write_result

from ivideogpt.data.collect import MetaworldCollectConfig, collect_episodes
from ivideogpt.data.store import read_meta
from ivideogpt.demo import recorded_collection
from ivideogpt.eval.predict import EvalConfig, evaluate_predictions
from ivideogpt.eval.report import read_metrics_json
from ivideogpt.sim.metaworld import DEFAULT_TASKS
from ivideogpt.world_model_io import read_spec, resolve_world_model_dir

UNSEEN_TASKS = ("drawer-open", "button-press", "door-close", "window-close")  # not in DEFAULT_TASKS
LATE_STEPS = slice(4, 8)  # steps 5-8, where the context alone no longer tells where the arm goes
SEEDS = {"cf_default": 20_000, "ordinary": 21_000, "cf_unseen": 22_000, "unseen": 23_000}  # never trained on


@dataclass
class BenchConfig:
    models: list[Path] = field(default_factory=list)  # world-model folders to compare
    work: Path = Path("runs/bench_actions")  # test data and eval reports (reused when present)
    json: Path = Path("bench/results/actions.json")  # result file
    scenes_per_task: int = 6  # counterfactual scenes per default task
    episodes_per_task: int = 3  # ordinary episodes per default task
    unseen_per_task: int = 4  # scenes and episodes per unseen task
    branches: int = 4  # branches per scene
    clips: int = 128  # ordinary clips scored (spread over the episodes)
    horizon: int = 8  # imagined frames
    workers: int = 2  # recording processes
    samples: int = 1  # sampled futures per branch and ordinary clip; > 1 scores their pixel mean
    temperature: float | None = None  # sampling temperature; None: each model's default
    still_split: bool | None = None  # greedy decides still-or-moved first; None: each model's default
    reuse: bool = False  # take finished evals in <work> (their metrics.json) instead of rerunning them
    scenes: int | None = None  # counterfactual scenes scored per set (spread evenly); None: all
    unseen: bool = True  # also score the unseen tasks


def collect_sets(cfg: BenchConfig, action_repeat: int = 2) -> dict[str, Path]:
    """Record the four test sets under `cfg.work` (each once: a finished set is reused), at a model's
    control rate (`action_repeat` simulator steps per frame; sets of other repeats get their own folder)."""
    default, unseen = list(DEFAULT_TASKS), list(UNSEEN_TASKS)
    plans = {
        "cf_default": (default, cfg.scenes_per_task, {"branches": cfg.branches, "policy": "expert"}),
        "ordinary": (default, cfg.episodes_per_task, {"policy": "expert"}),
        "cf_unseen": (unseen, cfg.unseen_per_task, {"branches": cfg.branches, "policy": "expert"}),
        "unseen": (unseen, cfg.unseen_per_task, {"policy": "expert"}),
    }
    paths = {}
    for name, (tasks, episodes, extra) in plans.items():
        out = cfg.work / "data" / (name if action_repeat == 2 else f"{name}-r{action_repeat}")
        if not (out / "meta.json").is_file() or not _complete(out, len(tasks) * episodes):
            collect_episodes(MetaworldCollectConfig(out=out, tasks=tasks, episodes=episodes,
                                                     seed=SEEDS[name], workers=cfg.workers, overwrite=True,
                                                     action_repeat=action_repeat, **extra))
        paths[name] = out
    return paths


def _complete(root: Path, jobs: int) -> bool:
    meta = read_meta(root)
    return meta.num_episodes == jobs * meta.extra.get("branches", 1)


def evaluate(model: Path, data: Path, counterfactual: Path, out: Path, cfg: BenchConfig) -> dict[str, Any]:
    # the same prediction on ordinary clips as on the branches: one sample, or the pixel mean of several
    aggregate = "pixel_mean" if cfg.samples > 1 else "mean"
    if cfg.reuse and (out / "metrics.json").is_file():  # written last: only a finished eval has it
        metrics = read_metrics_json(out / "metrics.json")
        made = metrics["protocol"]
        if (made["model"], made["samples"], made["aggregate"]) == (str(model), cfg.samples, aggregate):
            print(f"reusing {out / 'metrics.json'}")
            return metrics
    return evaluate_predictions(EvalConfig(
        model=model, data=[data], counterfactual=counterfactual, out=out, split="all", clips=cfg.clips,
        horizon=cfg.horizon, counterfactual_scenes=cfg.scenes or 10_000, counterfactual_samples=cfg.samples,
        samples=cfg.samples, aggregate=aggregate, temperature=cfg.temperature, still_split=cfg.still_split,
        overwrite=True, note="bench/actions.py: fresh episodes, seeds no training run used"))


def summarize(metrics: dict[str, Any]) -> dict[str, Any]:
    """The figures the issue asks for, from one eval's metrics."""
    methods, cf = metrics["methods"], metrics["counterfactual"]
    late = cf["per_step"]["action_discrimination"][LATE_STEPS]
    recon_late = cf["per_step"]["tokenizer_recon_discrimination"][LATE_STEPS]
    mean = cf["mean"]
    out = {
        "ordinary": {m: {k: methods[m].get(k) for k in ("psnr", "ssim", "psnr_moving")} for m in methods}
        | {"reward_pearson": methods["model"].get("reward_pearson")},
        "counterfactual": {
            "scenes": cf["protocol"]["scenes"], "branches": cf["protocol"]["branches"],
            "action_discrimination_steps_5_8": sum(late) / len(late),
            "tokenizer_recon_discrimination_steps_5_8": sum(recon_late) / len(recon_late),
            # teacher-forced, no sampling: up to the last trained future frame (counterfactual.py)
            "likelihood_discrimination_last_step":
                cf["per_step"].get("likelihood_discrimination", [None])[-1],
            "delta_psnr_own_minus_other_actions": mean["model_psnr"] - mean["model_psnr_other_actions"],
            **mean, **{k: cf[k] for k in cf if k.startswith("reward_")},
            "per_step": cf["per_step"],
        },
    }
    c = out["counterfactual"]
    out["targets"] = {
        "action_discrimination_steps_5_8 >= 0.90": c["action_discrimination_steps_5_8"] >= 0.90,
        "moving-pixel PSNR own actions >= copy_last + 4 dB":
            c["model_psnr_moving"] >= c["copy_last_psnr_moving"] + 4.0,
        "moving-pixel PSNR tokenizer >= copy_last + 6 dB":
            c["tokenizer_recon_psnr_moving"] >= c["copy_last_psnr_moving"] + 6.0,
        "ordinary PSNR and SSIM above copy_last":
            methods["model"]["psnr"] > methods["copy_last"]["psnr"]
            and methods["model"]["ssim"] > methods["copy_last"]["ssim"],
        "reward Pearson own > other actions":
            (c.get("reward_pearson_own") or -1.0) > (c.get("reward_pearson_other") or -1.0),
    }
    return out


def sampling_tag(cfg: BenchConfig) -> str:
    """Eval folder suffix, so that `--reuse` never takes an eval made with other sampling settings."""
    return (f"-T{cfg.temperature:g}" if cfg.temperature is not None else "") + \
        {None: "", True: "-split", False: "-nosplit"}[cfg.still_split] + \
        (f"-k{cfg.samples}" if cfg.samples > 1 else "") + (f"-s{cfg.scenes}" if cfg.scenes else "")


def sampling_protocol(cfg: BenchConfig) -> str:
    temperature = ("each model's default temperature" if cfg.temperature is None
                   else f"temperature {cfg.temperature:g}")
    if cfg.still_split is not None:
        temperature += f", still split {cfg.still_split}"
    if cfg.samples == 1:
        return f"one rollout per branch, {temperature}"
    return f"pixel mean of {cfg.samples} sampled rollouts per branch and ordinary clip, {temperature}"


def run(cfg: BenchConfig) -> dict[str, Any]:
    if not cfg.models:
        raise ValueError("give the world models to compare with --models DIR [DIR ...]")
    start = time.perf_counter()
    results: dict[str, Any] = {}
    for model in cfg.models:
        # the whole path: two runs' `transformer-frame` folders must not share (or --reuse) one eval
        tag = model.as_posix().strip("/").replace("/", "-") + sampling_tag(cfg)
        # a run folder (the recipe passes <work>/transformer) holds its export in world_model/
        action_repeat = recorded_collection(read_spec(resolve_world_model_dir(model))).get("action_repeat", 2)
        sets = collect_sets(cfg, action_repeat)
        wheres = [("default", "ordinary", "cf_default")] + [("unseen", "unseen", "cf_unseen")] * cfg.unseen
        results[str(model)] = {"action_repeat": action_repeat} | {
            f"{where}_tasks": summarize(evaluate(model, sets[ordinary], sets[scenes],
                                                 cfg.work / f"eval-{tag}-{where}", cfg))
            for where, ordinary, scenes in wheres}
    out = {
        "command": command_line(),
        "anchors": {"copy_last": "repeat the last context frame",
                    "tokenizer_recon":
                        "the model's tokenizer encoding and decoding the true future (ceiling)"},
        "protocol": {"context": 2, "horizon": cfg.horizon, "sampling": sampling_protocol(cfg),
                     "default_tasks": list(DEFAULT_TASKS), "unseen_tasks": list(UNSEEN_TASKS), "seeds": SEEDS,
                     "branch_policies": "expert, smooth_random, random, expert (cycled); prefix: expert",
                     "moving_pixels": "pixels where the true frame differs from the last context frame"},
        "wall_time_s": time.perf_counter() - start,
        "models": results,
    }
    write_result(cfg.json, out)
    for model, r in results.items():
        for where, s in r.items():
            if where == "action_repeat":
                continue
            c = s["counterfactual"]
            print(f"{model} [{where}]: discrimination (steps 5-8) "
                  f"{c['action_discrimination_steps_5_8']:.3f} (tokenizer ceiling "
                  f"{c['tokenizer_recon_discrimination_steps_5_8']:.3f}); moving-pixel PSNR model "
                  f"{c['model_psnr_moving']:.2f} / copy {c['copy_last_psnr_moving']:.2f} / "
                  f"tokenizer {c['tokenizer_recon_psnr_moving']:.2f}; ordinary PSNR model "
                  f"{s['ordinary']['model']['psnr']:.2f} vs copy {s['ordinary']['copy_last']['psnr']:.2f}")
    return out


if __name__ == "__main__":
    run(tyro.cli(BenchConfig, description=__doc__.split("\n\n")[0]))
