"""Evaluation outputs: metrics.json, per-step plots and a self-contained report.html.

metrics.json schema (checked by `validate_metrics` before anything is written):

    {"protocol": {"context": int, "horizon": int, "clips": int, "samples": int,
                  "aggregate": "mean"|"best"|"pixel_mean",
                  ...other entries allowed, shown as extra rows (dataset, checkpoint, a note)},
     "methods": {"model": {"psnr": float, "ssim": float, "lpips": float|None, "fvd": float|None,
                           "psnr_per_step": [horizon floats], "ssim_per_step": [...],
                           "lpips_per_step": [...]|None (optional), ...other numbers allowed},
                 "copy_last": {...}, "tokenizer_recon": {...}},
     "unavailable": {"lpips": "reason", "fvd": "reason"}}

A metric that is None for some method must have its reason in "unavailable", so a missing number is never
silent. The HTML embeds the plots and the media (PNG/GIF/JPEG images, MP4/WebM videos) as base64, so the
one file can be mailed or attached to an issue.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ivideogpt.atomic import atomic_path
from ivideogpt.config import read_json

# how K samples per clip are reduced (eval/metrics.py `reduce_samples`); here, where metrics.json is checked
Aggregate = Literal["mean", "best", "pixel_mean"]
AGGREGATES: tuple[str, ...] = get_args(Aggregate)
PROTOCOL_TYPES = {"context": int, "horizon": int, "clips": int, "samples": int, "aggregate": str}
METHOD_ORDER = ("model", "copy_last", "tokenizer_recon")  # table and legend order; other methods follow
# name -> (label, direction, number format) for the table and the plots
METRICS = {"psnr": ("PSNR", "↑", "{:.2f}"), "ssim": ("SSIM", "↑", "{:.4f}"),
           "lpips": ("LPIPS", "↓", "{:.4f}"), "fvd": ("FVD", "↓", "{:.1f}"),
           "psnr_moving": ("PSNR moving px", "↑", "{:.2f}")}
OPTIONAL_METRICS = ("psnr_moving",)  # absent from metrics.json files written before it existed
REQUIRED_CURVES = ("psnr", "ssim")  # per-step curves every method has; lpips_per_step is optional
MEDIA_TYPES = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".mp4": "video/mp4", ".webm": "video/webm"}


@dataclass
class ReportConfig:
    metrics: Path  # metrics.json written by an evaluation
    out: Path | None = None  # folder for the plots and report.html; None: next to metrics.json
    media: list[Path] = field(default_factory=list)  # truth|prediction grids (GIF/PNG/MP4) to embed

    def __post_init__(self) -> None:
        if Path(self.metrics).suffix != ".json":
            raise ValueError(f"ReportConfig.metrics: expected a .json file, got {self.metrics}")


def render_report(config: ReportConfig) -> Path:
    """Re-render the plots and report.html from an existing metrics.json (the `eval report` command)."""
    metrics = read_metrics_json(config.metrics)
    out_dir = Path(config.out) if config.out is not None else Path(config.metrics).parent
    media = {Path(p).name: Path(p) for p in config.media}
    path = write_report(out_dir, metrics, media, write_json=False)
    print(f"wrote {path}")
    return path


def validate_metrics(metrics: Mapping[str, Any]) -> None:
    """Raise ValueError naming the first field of `metrics` that breaks the metrics.json schema."""
    if not isinstance(metrics, Mapping):
        raise ValueError(  # noqa: TRY004 (bad file content)
            f"metrics: expected a mapping at the top level, got {type(metrics).__name__}")
    for key in ("protocol", "methods", "unavailable"):
        if not isinstance(metrics.get(key), Mapping):
            raise ValueError(  # noqa: TRY004 (bad file content)
                f"metrics.{key}: expected a mapping, got {metrics.get(key)!r}")
    protocol = metrics["protocol"]
    for key, kind in PROTOCOL_TYPES.items():
        value = protocol.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(  # noqa: TRY004 (bad file content)
                f"metrics.protocol.{key}: expected {kind.__name__}, got {value!r}")
    if protocol["aggregate"] not in AGGREGATES:
        raise ValueError(f"metrics.protocol.aggregate: expected one of {AGGREGATES}, "
                         f"got {protocol['aggregate']!r}")
    if not metrics["methods"]:
        raise ValueError("metrics.methods: no methods")
    for method, values in metrics["methods"].items():
        _validate_method(f"metrics.methods.{method}", values, protocol["horizon"])
        for name in METRICS:
            if name in values and values[name] is None and name not in metrics["unavailable"]:
                raise ValueError(f"metrics.methods.{method}.{name} is None but metrics.unavailable "
                                 f"gives no reason for {name!r}")
    cf = metrics.get("counterfactual")
    if cf is not None and not (isinstance(cf, Mapping) and isinstance(cf.get("mean"), Mapping)
                               and isinstance(cf.get("per_step"), Mapping)):
        raise ValueError("metrics.counterfactual: expected a mapping with 'mean' and 'per_step' mappings")
    for name, reason in metrics["unavailable"].items():
        if not isinstance(reason, str) or not reason:
            raise ValueError(f"metrics.unavailable.{name}: expected a reason string, got {reason!r}")


def write_metrics_json(path: str | Path, metrics: Mapping[str, Any]) -> None:
    """Validate and write metrics.json atomically (strict JSON: NaN or inf is an error)."""
    validate_metrics(metrics)
    _atomic_write(Path(path), json.dumps(metrics, indent=2, allow_nan=False).encode() + b"\n")


def read_metrics_json(path: str | Path) -> dict[str, Any]:
    """Read and validate a metrics.json; a file that is not one gets a ValueError naming it."""
    metrics = read_json(path)
    try:
        validate_metrics(metrics)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    return metrics


def plot_curves(path_png: str | Path, curves: Mapping[str, list[float]], metric: str) -> None:
    """Write a PNG of one metric per predicted step, one line per method.

    Args:
        path_png: output file.
        curves: method -> per-step values (step 1 is the first predicted frame).
        metric: "psnr", "ssim" or "lpips" (sets the axis label and direction in the title).
    """
    _atomic_write(Path(path_png), _curves_png(curves, metric))


def write_report_html(out_dir: str | Path, metrics: Mapping[str, Any],
                      media: Mapping[str, str | Path] | None = None,
                      title: str = "ivideogpt video prediction") -> Path:
    """Write `out_dir/report.html`: protocol, metrics table, per-step plots and media, all embedded.

    Args:
        out_dir: folder for report.html (created if needed).
        metrics: a dict in the metrics.json schema.
        media: caption -> image or video file (e.g. the truth|prediction grid GIF).
        title: page heading.

    Returns:
        The path of report.html.
    """
    validate_metrics(metrics)
    sections = [f"<h1>{_esc(title)}</h1>", _protocol_section(metrics["protocol"]), _metrics_section(metrics)]
    sections.append(_plots_section(metrics))
    if "counterfactual" in metrics:
        sections.append(_counterfactual_section(metrics["counterfactual"]))
    if media:
        sections.append(media_section(media))
    path = Path(out_dir) / "report.html"
    _atomic_write(path, html_page(title, sections).encode())
    return path


def html_page(title: str, sections: list[str]) -> str:
    """A self-contained HTML page of `sections` (HTML fragments) in the reports' style."""
    head = f'<meta charset="utf-8">\n<title>{_esc(title)}</title>\n<style>{_CSS}</style>'
    body = "\n".join(sections)
    return f'<!DOCTYPE html>\n<html lang="en">\n<head>\n{head}\n</head>\n<body>\n{body}\n</body>\n</html>\n'


def write_report(out_dir: str | Path, metrics: Mapping[str, Any],
                 media: Mapping[str, str | Path] | None = None, write_json: bool = True) -> Path:
    """metrics.json (optional), `<metric>_per_step.png` for each curve, and report.html in `out_dir`."""
    out_dir = Path(out_dir)
    if write_json:
        write_metrics_json(out_dir / "metrics.json", metrics)
    for metric, curves in _curves(metrics).items():
        plot_curves(out_dir / f"{metric}_per_step.png", curves, metric)
    if "counterfactual" in metrics:
        _atomic_write(out_dir / "counterfactual_per_step.png", _counterfactual_png(metrics["counterfactual"]))
    return write_report_html(out_dir, metrics, media)


def format_metric(name: str, value: float | None) -> str:
    """How the report prints a metric value: fixed decimals per metric, "n/a" for None."""
    return "n/a" if value is None else METRICS[name][2].format(value)


def _validate_method(where: str, values: Any, horizon: int) -> None:
    if not isinstance(values, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {values!r}")  # noqa: TRY004 (bad file content)
    for name in METRICS:
        if name not in values and name in OPTIONAL_METRICS:
            continue
        if name not in values:
            raise ValueError(f"{where}.{name}: missing (use null when unavailable)")
        value = values[name]
        if value is not None and not (_is_number(value) and math.isfinite(value)):
            raise ValueError(f"{where}.{name}: expected a finite number or null, got {value!r}")
    for name in METRICS:
        key = f"{name}_per_step"
        curve = values.get(key)
        if curve is None and name not in REQUIRED_CURVES:
            continue
        # a step where no pixel moved in any clip has no psnr_moving: null there
        allowed = (lambda v: _is_number(v) or v is None) if name in OPTIONAL_METRICS else _is_number
        if not isinstance(curve, list) or len(curve) != horizon or not all(allowed(v) for v in curve):
            raise ValueError(f"{where}.{key}: expected a list of {horizon} numbers (the horizon), "
                             f"got {curve!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ordered(methods: Mapping[str, Any]) -> list[str]:
    known = [m for m in METHOD_ORDER if m in methods]
    return known + sorted(m for m in methods if m not in METHOD_ORDER)


def _curves(metrics: Mapping[str, Any]) -> dict[str, dict[str, list[float]]]:
    """metric -> method -> per-step values, for every metric some method has a curve of."""
    out: dict[str, dict[str, list[float]]] = {}
    for name in METRICS:
        for method in _ordered(metrics["methods"]):
            curve = metrics["methods"][method].get(f"{name}_per_step")
            if curve is not None:
                out.setdefault(name, {})[method] = curve
    return out


def _curves_png(curves: Mapping[str, list[float]], metric: str) -> bytes:
    if metric not in METRICS:
        raise ValueError(f"plot_curves: unknown metric {metric!r}; expected one of {sorted(METRICS)}")
    label, direction, _ = METRICS[metric]
    fig = Figure(figsize=(5.0, 3.2), dpi=100)  # a bare Figure: no pyplot state, no global backend switch
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for method, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=method)
    ax.set_xlabel("predicted step")
    ax.set_ylabel(label)
    ax.set_title(f"{label} per predicted step ({direction} better)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def _png(fig: Figure) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _protocol_section(protocol: Mapping[str, Any]) -> str:
    reduce = {"best": "best sample per clip by each metric", "mean": "mean of the samples' scores",
              "pixel_mean": "the samples' pixel mean scored as one prediction"}[protocol["aggregate"]]
    rows = [("context frames", protocol["context"]), ("predicted frames (horizon)", protocol["horizon"]),
            ("test clips", protocol["clips"]), ("samples per clip", protocol["samples"]),
            ("sample reduction", f"{protocol['aggregate']} ({reduce})")]
    rows += [(k, v) for k, v in protocol.items() if k not in PROTOCOL_TYPES]  # e.g. dataset, checkpoint, note
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)
    return f'<h2>Protocol</h2>\n<table id="protocol">{body}</table>'


def _metrics_section(metrics: Mapping[str, Any]) -> str:
    methods = metrics["methods"]
    shown = [name for name in METRICS  # an optional metric gets a column only where it was scored
             if name not in OPTIONAL_METRICS or any(name in values for values in methods.values())]
    head = "".join(f"<th>{METRICS[name][0]} {METRICS[name][1]}</th>" for name in shown)
    rows = []
    for method in _ordered(methods):
        values = methods[method]
        cells = "".join(f"<td>{format_metric(name, values.get(name))}</td>" for name in shown)
        rows.append(f"<tr><th>{_esc(method)}</th>{cells}</tr>")
    table = (f'<table id="metrics"><thead><tr><th>method</th>{head}</tr></thead>'
             f"<tbody>{''.join(rows)}</tbody></table>")
    reasons = "".join(f"<li><b>{_esc(name)}</b>: {_esc(reason)}</li>"
                      for name, reason in metrics["unavailable"].items())
    unavailable = f'\n<ul class="unavailable">{reasons}</ul>' if reasons else ""
    return f"<h2>Metrics</h2>\n{table}{unavailable}"


def _plots_section(metrics: Mapping[str, Any]) -> str:
    figures = [f'<figure><img alt="{name} per step" src="{_data_uri(_curves_png(curves, name), ".png")}">'
               f"</figure>" for name, curves in _curves(metrics).items()]
    return "<h2>Per-step metrics</h2>\n" + "\n".join(figures)


# counterfactual figures in the report: key in metrics["counterfactual"]["mean"] -> label
COUNTERFACTUAL_ROWS = {
    "action_discrimination": "action discrimination (0.5 = actions ignored, 1 = always the right branch)",
    "tokenizer_recon_discrimination": "action discrimination of the tokenizer's reconstructions (ceiling)",
    "likelihood_discrimination": "likelihood discrimination (teacher-forced, no sampling; 0.5 = ignored)",
    "action_nll_gain": "nats per step the own actions save over another branch's (teacher-forced)",
    "model_psnr": "PSNR, model under the branch's own actions",
    "model_psnr_other_actions": "PSNR, model under another branch's actions",
    "copy_last_psnr": "PSNR, copy last frame",
    "model_psnr_moving": "PSNR on moving pixels, model (own actions)",
    "copy_last_psnr_moving": "PSNR on moving pixels, copy last frame",
    "tokenizer_recon_psnr_moving": "PSNR on moving pixels, tokenizer reconstruction (ceiling)",
    "model_ssim": "SSIM, model (own actions)",
    "copy_last_ssim": "SSIM, copy last frame",
    "branch_psnr": "PSNR between the real branches (how different the futures are)",
    "model_branch_psnr": "PSNR between the model's branches (how different it imagines them)",
}


def _counterfactual_section(cf: Mapping[str, Any]) -> str:
    mean, protocol = cf["mean"], cf.get("protocol", {})
    rows = "".join(f"<tr><th>{_esc(label)}</th><td>{_fmt(mean.get(key))}</td></tr>"
                   for key, label in COUNTERFACTUAL_ROWS.items())
    for key in ("reward_pearson_own", "reward_pearson_other"):
        if key in cf:
            rows += f"<tr><th>{_esc(key.replace('_', ' '))}</th><td>{_fmt(cf[key])}</td></tr>"
    what = ", ".join(f"{k} {v}" for k, v in protocol.items())
    png = _data_uri(_counterfactual_png(cf), ".png")
    figure = f'<figure><img alt="counterfactual per step" src="{png}"></figure>'
    return (f'<h2>Counterfactual: do the actions count?</h2>\n<p>{_esc(what)}</p>\n'
            f'<table id="counterfactual">{rows}</table>\n{figure}')


def _counterfactual_png(cf: Mapping[str, Any]) -> bytes:
    per_step = cf["per_step"]
    fig = Figure(figsize=(9.0, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    steps = range(1, len(per_step["action_discrimination"]) + 1)
    left.plot(steps, per_step["action_discrimination"], marker="o", markersize=3, label="model")
    for key, label in (("tokenizer_recon_discrimination", "tokenizer (ceiling)"),
                       ("likelihood_discrimination", "likelihood (no sampling)")):
        if key in per_step:  # absent from reports written before they were measured
            left.plot(range(1, len(per_step[key]) + 1), per_step[key], marker="o", markersize=3, label=label)
    left.axhline(0.5, color="gray", linestyle="--", label="actions ignored")
    left.set_ylim(0.0, 1.02)
    left.set_title("action discrimination per step (↑)")
    for key, label in (("model_psnr_moving", "model"), ("copy_last_psnr_moving", "copy_last"),
                       ("tokenizer_recon_psnr_moving", "tokenizer_recon")):
        right.plot(steps, [float("nan") if v is None else v for v in per_step[key]], marker="o",
                   markersize=3, label=label)
    right.set_title("PSNR on moving pixels per step (↑)")
    for ax in (left, right):
        ax.set_xlabel("predicted step")
        ax.grid(alpha=0.3)
        ax.legend()
    return _png(fig)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def media_section(media: Mapping[str, str | Path]) -> str:
    """An HTML section embedding each file of `media` (caption -> image or video file) as base64."""
    figures = []
    for caption, path in media.items():
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in MEDIA_TYPES:
            raise ValueError(f"report media {path}: unsupported type {suffix!r}; "
                             f"expected one of {sorted(MEDIA_TYPES)}")
        if not path.is_file():
            raise FileNotFoundError(f"report media not found: {path}")
        uri = _data_uri(path.read_bytes(), suffix)
        if MEDIA_TYPES[suffix].startswith("video"):
            tag = f'<video src="{uri}" autoplay loop muted controls></video>'
        else:
            tag = f'<img alt="{_esc(caption)}" src="{uri}">'
        figures.append(f"<figure>{tag}<figcaption>{_esc(caption)}</figcaption></figure>")
    return "<h2>Videos</h2>\n" + "\n".join(figures)


def _data_uri(data: bytes, suffix: str) -> str:
    return f"data:{MEDIA_TYPES[suffix]};base64,{base64.b64encode(data).decode('ascii')}"


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _atomic_write(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:  # a failed write leaves no partial file and names `path`
        tmp.write_bytes(data)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 960px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: right; }
th:first-child { text-align: left; }
thead th { background: #f2f2f2; }
.note, .unavailable { color: #555; font-size: 0.9em; }
figure { display: inline-block; margin: 0.5em; }
figure img, figure video { image-rendering: pixelated; max-width: 100%; }
figcaption { font-size: 0.9em; color: #555; text-align: center; }
"""
