"""The `ivideogpt` command line: a thin layer that parses a typed config and calls one library function.

Commands live in one registry. Training commands accept `--config PRESET_OR_YAML`: the preset fills the
dataclass first, then any other flag on the command line overrides it (`--train.steps 500`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import tyro

from ivideogpt.atomic import describe_os_error  # standard library only: --help stays fast
from ivideogpt.config import load_yaml, merge


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]  # words after `ivideogpt`, e.g. ("data", "info")
    help: str  # one line for `ivideogpt --help`
    config: type  # dataclass parsed from the command line
    run: Callable[[Any], Any]  # library function that does the work


def _commands() -> list[Command]:
    # Imported here so `ivideogpt --help` and each command pay only for what exists in this file's list.
    from ivideogpt.data.collect import MetaworldCollectConfig, RobodeskCollectConfig, collect_episodes
    from ivideogpt.data.preview import PreviewConfig, write_preview
    from ivideogpt.data.relabel import RelabelConfig, relabel_rewards
    from ivideogpt.data.store import InfoConfig, print_info
    from ivideogpt.data.videos import VideoImportConfig, import_videos
    from ivideogpt.demo import DemoConfig, run_demo
    from ivideogpt.eval.predict import EvalConfig, evaluate_predictions
    from ivideogpt.eval.report import ReportConfig, render_report
    from ivideogpt.export import ExportConfig, export_world_model
    from ivideogpt.planning.run import PlanConfig, run_plan
    from ivideogpt.train.frame_reward import RewardTrainConfig, train_reward_model
    from ivideogpt.train.tokenize import TokenizeConfig, tokenize_dataset
    from ivideogpt.train.tokenizer import TokenizerTrainConfig, train_tokenizer
    from ivideogpt.train.transformer import TransformerTrainConfig, train_transformer

    return [
        Command(("demo",), "Imagine futures of fresh Meta-World episodes with the shipped model (--train: "
                "train one first).", DemoConfig, run_demo),
        Command(("collect", "metaworld"), "Record Meta-World expert episodes rendered in MuJoCo.",
                MetaworldCollectConfig, collect_episodes),
        Command(("collect", "robodesk"), "Record RoboDesk (VP2's desk) episodes of random policies; needs "
                "ivideogpt[robodesk].", RobodeskCollectConfig, collect_episodes),
        Command(("import", "videos"), "Turn a folder of videos or frame folders into an action-free dataset.",
                VideoImportConfig, import_videos),
        Command(("data", "info"), "Print a summary of a dataset folder.", InfoConfig, print_info),
        Command(("data", "preview"), "Write a GIF/MP4 grid of a few episodes.", PreviewConfig, write_preview),
        Command(("train-tokenizer",),
                "Train a compressive (or per-frame) VQGAN tokenizer on dataset folders.",
                TokenizerTrainConfig, train_tokenizer),
        Command(("tokenize",), "Tokenize dataset folders into token shards (<out>/train, <out>/val).",
                TokenizeConfig, tokenize_dataset),
        Command(("relabel",), "Pay every clip of RoboDesk token shards with one task's reward (replayed "
                "episodes).", RelabelConfig, relabel_rewards),
        Command(("train",), "Train the transformer world model on token shards; exports <out>/world_model/.",
                TransformerTrainConfig, train_transformer),
        Command(("train-reward",), "Train a CNN that reads rewards from frames, an objective for `plan` "
                "(--objective.kind learned); exports <out>/reward_model/.",
                RewardTrainConfig, train_reward_model),
        Command(("eval",),
                "Score video prediction on held-out clips against copy-last and the tokenizer ceiling.",
                EvalConfig, evaluate_predictions),
        Command(("eval", "report"), "Re-render report.html and plots from a metrics.json.",
                ReportConfig, render_report),
        Command(("plan",), "Control Meta-World or RoboDesk with CEM/MPPI in the world model's imagination, "
                "beside baselines.", PlanConfig, run_plan),
        Command(("export",), "Copy a world model to share it: float16 weights, its default sampling set.",
                ExportConfig, export_world_model),
    ]


def _match(commands: list[Command], argv: Sequence[str]) -> Command | None:
    for command in sorted(commands, key=lambda c: -len(c.path)):
        if tuple(argv[: len(command.path)]) == command.path:
            return command
    return None


def _usage(commands: list[Command], prefix: tuple[str, ...] = ()) -> str:
    """The command list (all of it, or one group's), one line per command."""
    shown = [c for c in commands if c.path[: len(prefix)] == prefix] or commands
    width = max(len(" ".join(c.path)) for c in shown)
    lines = ["usage: ivideogpt COMMAND [--help] [options]", "",
             "Interactive video world models (iVideoGPT).", "", "commands:"]
    lines += [f"  {' '.join(c.path):<{width}}  {c.help}" for c in shown]
    lines += ["", "Run `ivideogpt COMMAND --help` for a command's options."]
    return "\n".join(lines)


def _preset_default(command: Command, args: Sequence[str]) -> Any:
    """The command's config with the `--config` preset applied, or None when none is given."""
    for i, arg in enumerate(args):
        name = None
        if arg == "--config" and i + 1 < len(args):
            name = args[i + 1]
        elif arg.startswith("--config="):
            name = arg.split("=", 1)[1]
        if name is not None:
            preset = load_yaml(name)
            preset["config"] = name
            return merge(command.config(), preset)
    return None


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = _commands()
    command = _match(commands, argv)
    if command is None:
        words = tuple(a for a in argv if not a.startswith("-"))
        asked_help = not words or words[0] in {c.path[0] for c in commands}
        if asked_help and ("-h" in argv or "--help" in argv or not argv):
            print(_usage(commands, words))
            raise SystemExit(0)
        print(_usage(commands, words[:1]), file=sys.stderr)
        given = " ".join(words) or " ".join(argv)
        print(f"\nivideogpt: error: incomplete or unknown command {given!r}", file=sys.stderr)
        raise SystemExit(2)
    rest = argv[len(command.path):]
    prog = "ivideogpt " + " ".join(command.path)
    try:
        default = _preset_default(command, rest)
        config = tyro.cli(command.config, args=rest, default=default, prog=prog, description=command.help)
        command.run(config)
    except (ValueError, OSError) as error:  # the library's errors (ConfigError, ...) are ValueErrors
        if os.environ.get("IVIDEOGPT_DEBUG"):
            raise
        # a read-only or full disk is one line naming the file and the cause, never a traceback
        message = describe_os_error(error) if isinstance(error, OSError) else str(error)
        print(f"ivideogpt {' '.join(command.path)}: error: {message}", file=sys.stderr)
        if not isinstance(error, OSError):
            print("(set IVIDEOGPT_DEBUG=1 for the full traceback)", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"ivideogpt {' '.join(command.path)}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
