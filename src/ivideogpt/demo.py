"""`ivideogpt demo`: show what the project does in one command, offline, in a few minutes on a CPU.

By default it loads the small pretrained Meta-World world model shipped inside the package, records fresh
Meta-World episodes on the spot (seeds disjoint from any training data), lets the model imagine each
clip's future from its real context frames and real actions, and writes the evaluation report
(`ivideogpt.eval.predict`): metrics beside the copy-last-frame and tokenizer baselines, per-step plots and
a truth | model | copy-last video grid.

With `--train` it first runs the whole pipeline from scratch on a small config, each stage through the
same library function as its command, its output in a sub-folder of `out`:

    out/data/         collect       Meta-World training episodes
    out/tokenizer/    train-tokenizer   tiny compressive tokenizer
    out/tokens/       tokenize      token shards
    out/transformer/  train         transformer; the world model is out/transformer/world_model/
    out/episodes/     collect       fresh test episodes (also without --train)
    out/report.html   eval          with metrics.json, plots and videos beside it
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivideogpt import pretrained_path
from ivideogpt.config import load_yaml, merge, to_dict
from ivideogpt.data.collect import MetaworldCollectConfig, collect_episodes
from ivideogpt.data.store import read_meta
from ivideogpt.eval.predict import EvalConfig, evaluate_predictions
from ivideogpt.eval.report import format_metric
from ivideogpt.sim.metaworld import ACTION_DIM, DEFAULT_TASKS
from ivideogpt.world_model import WorldModelSpec, read_spec, resolve_world_model_dir

PRETRAINED = "metaworld64"  # folder of the shipped model under ivideogpt/pretrained/
EVAL_SEED_OFFSET = 10_000  # fresh episodes use seed + this: never the episodes a model was trained on
DEMO_FILE = "demo.json"  # marks a folder as a demo's, so a re-run may replace its stage folders
STAGES = ("data", "tokenizer", "tokens", "transformer", "episodes", "scenes")  # sub-folders a demo owns
BRANCHES = 4  # counterfactual branches per scene: the expert's continuation and three random ones
TOKENIZER_PRESET, TRANSFORMER_PRESET = "tokenizer_tiny", "transformer_tiny"  # --train architectures
TOKENIZE_START_STRIDE = 4  # --train: a clip starts every 4th frame (overlapping clips add little here)


@dataclass
class DemoConfig:
    """Everything `ivideogpt demo` needs; the defaults run the shipped model."""

    out: Path = Path("demo")  # output folder: report.html, metrics.json, videos, stage sub-folders
    model: Path | None = None  # world-model folder; None: the pretrained model shipped in the package
    train: bool = False  # first train a small world model from scratch (collect, tokenize, train)
    tasks: tuple[str, ...] = ()  # test tasks; empty: the model's training tasks, else the defaults
    episodes: int = 1  # fresh test episodes per task
    clips: int = 32  # test clips, spread evenly over the fresh episodes
    samples: int = 1  # sampled futures per clip
    scenes: int = 1  # counterfactual scenes per task (one context, 4 action sequences); 0: none
    train_tasks: tuple[str, ...] = ("reach", "push", "button-press-topdown")  # --train: training data tasks
    train_episodes: int = 8  # --train: training episodes per task
    tokenizer_steps: int = 300  # --train: tokenizer optimizer steps
    transformer_steps: int = 300  # --train: transformer optimizer steps
    workers: int = 2  # Meta-World recording processes
    seed: int = 0  # seeds training, the training data, the sampling; test episodes use seed + 10000
    device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda", "cuda:N"

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.model is not None and self.train:
            raise ValueError("DemoConfig: give either model (evaluate it) or train (train one), not both")
        if self.scenes < 0:
            raise ValueError(f"DemoConfig.scenes must be >= 0, got {self.scenes}")
        for name in ("episodes", "clips", "samples", "train_episodes", "tokenizer_steps", "transformer_steps",
                     "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"DemoConfig.{name} must be >= 1, got {getattr(self, name)}")


def run_demo(cfg: DemoConfig) -> Path:
    """Evaluate the shipped (or given, or freshly trained) world model on fresh Meta-World episodes.

    Returns:
        The path of report.html.

    Raises:
        FileNotFoundError: no model at `cfg.model`, or no shipped model (then run with `--train`).
        FileExistsError: `cfg.out` is a non-empty folder that a demo did not write.
        ValueError: the model does not take Meta-World's 4-dim actions.
    """
    model = None if cfg.train else resolve_model(cfg.model)  # fail before any work
    _prepare_out(cfg)
    if cfg.train:
        model = train_pipeline(cfg)
    spec = read_spec(resolve_world_model_dir(model))
    if spec.action_dim != ACTION_DIM:
        raise ValueError(f"{model}: the world model takes {spec.action_dim}-dim actions, but the demo runs "
                         f"Meta-World ({ACTION_DIM}-dim actions); evaluate it with `ivideogpt eval` instead")
    fresh = fresh_episodes_config(cfg, spec)
    episodes = collect_episodes(fresh)
    scenes = None
    if cfg.scenes:  # one context, several action sequences: does the model follow them?
        steps = spec.future_frames
        latest = max(1, fresh.max_steps - steps)  # branch points that leave room for the branches
        scenes = collect_episodes(dataclasses.replace(
            fresh, out=cfg.out / "scenes", episodes=cfg.scenes, branches=BRANCHES, policy="expert",
            seed=fresh.seed + 1, branch_steps=steps, branch_at=(min(10, latest), min(60, latest))))
    seed = cfg.seed + EVAL_SEED_OFFSET
    metrics = evaluate_predictions(EvalConfig(
        model=model, data=[episodes], counterfactual=scenes, out=cfg.out, split="all", clips=cfg.clips,
        samples=cfg.samples, seed=cfg.seed, device=cfg.device,
        overwrite=True,  # the demo's folder: its earlier report goes
        note=f"fresh Meta-World episodes recorded by the demo (collection seed {seed}), unseen in training"))
    report = cfg.out / "report.html"
    _print_headline(metrics, report)
    return report


def resolve_model(model: Path | None) -> Path:
    """The world-model folder to use: `model`, or the pretrained one shipped in the package."""
    if model is not None:
        return resolve_world_model_dir(model)  # raises FileNotFoundError naming the path
    shipped = pretrained_path(PRETRAINED)
    try:
        return resolve_world_model_dir(shipped)
    except FileNotFoundError:
        raise FileNotFoundError(f"no pretrained world model is shipped in this install ({shipped} is missing "
                                "or incomplete); run `ivideogpt demo --train` to train a small one from "
                                "scratch in a few minutes, or pass --model DIR") from None


def recorded_collection(spec: WorldModelSpec) -> dict[str, Any]:
    """How the model's training data was recorded: tasks, camera, action_repeat, max_steps, seed and the
    behaviour policy (the known ones).

    Read from the provenance's "collect" entry, else from the meta.json of its training datasets (the
    provenance's "sources") where they still exist on this machine. A recorded policy mixture
    (`{name: weight}`) is returned as the `--policy` string that draws it.
    """
    keys = ("tasks", "camera", "action_repeat", "max_steps", "seed", "policy")
    recorded = spec.provenance.get("collect")
    if isinstance(recorded, dict):
        return _policy_string({k: recorded[k] for k in keys if k in recorded})
    found: dict[str, Any] = {}
    for source in spec.provenance.get("sources") or []:
        try:
            extra = read_meta(source).extra
        except (OSError, ValueError):  # gone or moved since training: nothing to learn from it
            continue
        tasks = found.get("tasks", [])
        tasks += [t for t in extra.get("tasks", []) if t not in tasks]  # the union over the sources
        found |= {k: extra[k] for k in keys if k in extra} | ({"tasks": tasks} if tasks else {})
    return _policy_string(found)


def _policy_string(recorded: dict[str, Any]) -> dict[str, Any]:
    policy = recorded.get("policy")
    if isinstance(policy, dict):
        recorded["policy"] = ",".join(f"{name}:{weight}" for name, weight in policy.items())
    return recorded


def fresh_episodes_config(cfg: DemoConfig, spec: WorldModelSpec) -> MetaworldCollectConfig:
    """Test episodes like the training data (tasks, camera, repeat, policy) but with seeds it never used.

    Data recorded before collection drew policies from a mixture had no policy entry: it was the expert's.
    """
    recorded = recorded_collection(spec)
    seed = cfg.seed + EVAL_SEED_OFFSET
    if recorded.get("seed") == seed:
        raise ValueError(f"the model's training data was collected with seed {seed}, the seed of the demo's "
                         f"test episodes; pass another --seed")
    tasks = cfg.tasks or tuple(recorded.get("tasks") or DEFAULT_TASKS)
    settings = {k: recorded[k] for k in ("camera", "action_repeat", "max_steps") if k in recorded}
    settings["policy"] = recorded.get("policy", "expert")
    return MetaworldCollectConfig(out=cfg.out / "episodes", tasks=tasks, episodes=cfg.episodes,
                                  size=spec.image_size, workers=cfg.workers, seed=seed, overwrite=True,
                                  **settings)


def train_pipeline(cfg: DemoConfig) -> Path:
    """collect -> train-tokenizer -> tokenize -> train on the tiny presets; returns the world-model folder."""
    # imported here: the trainers pull in the training loop, which evaluating a model never needs
    from ivideogpt.train.tokenize import TokenizeConfig, tokenize_dataset
    from ivideogpt.train.tokenizer import TokenizerTrainConfig, train_tokenizer
    from ivideogpt.train.transformer import TransformerTrainConfig, train_transformer

    out = cfg.out
    print(f"demo: [1/5] collecting {cfg.train_episodes} training episodes per task "
          f"({', '.join(cfg.train_tasks)})")
    data = collect_episodes(MetaworldCollectConfig(out=out / "data", tasks=cfg.train_tasks,
                                                    episodes=cfg.train_episodes, workers=cfg.workers,
                                                    seed=cfg.seed, overwrite=True))
    print(f"demo: [2/5] training the tokenizer ({TOKENIZER_PRESET}, {cfg.tokenizer_steps} steps)")
    paths = {"data": [str(data)], "out": str(out / "tokenizer")}
    tok_cfg = _preset(TokenizerTrainConfig, TOKENIZER_PRESET, paths, cfg.tokenizer_steps, cfg)
    train_tokenizer(tok_cfg)
    print("demo: [3/5] tokenizing the episodes")
    tokens = tokenize_dataset(TokenizeConfig(tokenizer=out / "tokenizer", data=[data], out=out / "tokens",
                                             start_stride=TOKENIZE_START_STRIDE, device=cfg.device,
                                             overwrite=True))
    print(f"demo: [4/5] training the transformer ({TRANSFORMER_PRESET}, {cfg.transformer_steps} steps)")
    paths = {"tokens": str(tokens), "out": str(out / "transformer")}
    tf_cfg = _preset(TransformerTrainConfig, TRANSFORMER_PRESET, paths, cfg.transformer_steps, cfg)
    model = train_transformer(tf_cfg)
    print("demo: [5/5] evaluating on fresh episodes")
    return model


def _preset(cls: type, preset: str, paths: dict[str, Any], steps: int, cfg: DemoConfig) -> Any:
    """A trainer config: the YAML preset, the demo's paths, a short run that checkpoints only at the end."""
    loop = {"steps": steps, "seed": cfg.seed, "device": cfg.device, "ckpt_every": 0, "sample_every": 0,
            "eval_every": 0, "num_workers": 0}
    return merge(merge(cls(), load_yaml(preset)), {**paths, "config": preset, "train": loop})


def _prepare_out(cfg: DemoConfig) -> None:
    """Claim `cfg.out` for the demo; a folder a demo wrote before gets its stage folders replaced."""
    out = cfg.out
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"DemoConfig.out: {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / DEMO_FILE).is_file():
        raise FileExistsError(f"DemoConfig.out: {out} is a non-empty folder that a demo did not write; "
                              "choose another --out")
    if cfg.train:  # the trainers refuse to start over an earlier run's checkpoints
        for stage in STAGES:
            shutil.rmtree(out / stage, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    record = {"format": "ivideogpt-demo", "config": to_dict(cfg)}
    (out / DEMO_FILE).write_text(json.dumps(record, indent=2) + "\n")


def _print_headline(metrics: dict[str, Any], report: Path) -> None:
    methods = metrics["methods"]
    model, copy = methods["model"], methods["copy_last"]
    for name, values in (("model", model), ("copy-last", copy), ("tokenizer", methods["tokenizer_recon"])):
        print(f"demo: {name:<10} PSNR {format_metric('psnr', values['psnr'])}  "
              f"SSIM {format_metric('ssim', values['ssim'])}")
    beats = model["psnr"] > copy["psnr"] and model["ssim"] > copy["ssim"]
    print(f"demo: the model {'beats' if beats else 'does NOT beat'} copying the last frame on PSNR and SSIM")
    if "counterfactual" in metrics:
        discrimination = metrics["counterfactual"]["mean"]["action_discrimination"]
        print(f"demo: from one context and 4 action sequences, the model's future matches its own branch "
              f"better than another's in {discrimination:.0%} of pairs (50%: it ignores its actions)")
    print(f"demo: report written to {report.resolve()} (open it in a browser)")
