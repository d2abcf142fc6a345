from __future__ import annotations

import base64
import copy
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ivideogpt.eval.report import (
    ReportConfig,
    format_metric,
    plot_curves,
    read_metrics_json,
    render_report,
    validate_metrics,
    write_metrics_json,
    write_report,
    write_report_html,
)

VOID_TAGS = {"meta", "img", "br", "hr", "link", "input", "source"}


def _metrics() -> dict[str, Any]:
    return {
        "protocol": {"context": 2, "horizon": 3, "clips": 4, "samples": 5, "aggregate": "best"},
        "methods": {
            "model": {"psnr": 24.513, "ssim": 0.90234, "lpips": None, "fvd": 61.27,
                      "psnr_per_step": [26.0, 24.5, 23.0], "ssim_per_step": [0.95, 0.9, 0.85]},
            "copy_last": {"psnr": 19.2, "ssim": 0.7, "lpips": None, "fvd": 180.0,
                          "psnr_per_step": [21.0, 19.0, 17.6], "ssim_per_step": [0.8, 0.7, 0.6]},
            "tokenizer_recon": {"psnr": 30.1, "ssim": 0.95, "lpips": None, "fvd": None,
                                "psnr_per_step": [30.0, 30.1, 30.2], "ssim_per_step": [0.95, 0.95, 0.95]},
        },
        "unavailable": {"lpips": "no LPIPS weights given", "fvd": "tokenizer_recon: not computed"},
    }


class _Page(HTMLParser):
    """Checks nesting while it parses and collects table cells and image sources."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.table: str | None = None
        self.cell: list[str] | None = None
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID_TAGS:
            self.stack.append(tag)
        attrs_d = dict(attrs)
        if tag == "table":
            self.table = attrs_d.get("id") or ""
            self.tables[self.table] = []
        elif tag == "tr" and self.table is not None:
            self.tables[self.table].append([])
        elif tag in ("td", "th") and self.table is not None:
            self.cell = []
        elif tag == "img":
            self.images.append(attrs_d["src"] or "")

    def handle_endtag(self, tag: str) -> None:
        open_tag = self.stack[-1] if self.stack else None
        assert open_tag == tag, f"</{tag}> closes <{open_tag}>"
        self.stack.pop()
        if tag in ("td", "th") and self.cell is not None and self.table is not None:
            self.tables[self.table][-1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "table":
            self.table = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    page.close()
    assert page.stack == [], f"unclosed tags {page.stack}"
    return page


def test_metrics_json_round_trip(tmp_path: Path) -> None:
    write_metrics_json(tmp_path / "metrics.json", _metrics())
    assert json.loads((tmp_path / "metrics.json").read_text()) == _metrics()
    assert read_metrics_json(tmp_path / "metrics.json") == _metrics()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m["protocol"].pop("horizon"), "protocol.horizon"),
    (lambda m: m["protocol"].update(aggregate="median"), "protocol.aggregate"),
    (lambda m: m["methods"]["model"].pop("fvd"), "methods.model.fvd"),
    (lambda m: m["methods"]["model"].update(psnr=float("nan")), "methods.model.psnr"),
    (lambda m: m["methods"]["copy_last"].update(ssim_per_step=[0.5]), "copy_last.ssim_per_step"),
    (lambda m: m["unavailable"].pop("lpips"), "lpips"),
    (lambda m: m.pop("unavailable"), "metrics.unavailable"),
])
def test_schema_violations_name_the_field(edit: Any, message: str) -> None:
    metrics = copy.deepcopy(_metrics())
    edit(metrics)
    with pytest.raises(ValueError, match=message):
        validate_metrics(metrics)


@pytest.mark.parametrize(("text", "message"), [("{bad", "not valid JSON"), ("[1, 2]", "top level")])
def test_reading_a_file_that_is_not_metrics_names_it(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "metrics.json").write_text(text)
    with pytest.raises(ValueError, match=f"metrics.json.*{message}"):
        read_metrics_json(tmp_path / "metrics.json")


def test_plot_curves_writes_a_png(tmp_path: Path) -> None:
    plot_curves(tmp_path / "psnr.png", {"model": [26.0, 24.0], "copy_last": [21.0, 19.0]}, "psnr")
    with Image.open(tmp_path / "psnr.png") as image:
        assert image.format == "PNG" and image.size == (500, 320)
    with pytest.raises(ValueError, match="unknown metric"):
        plot_curves(tmp_path / "x.png", {"model": [1.0]}, "accuracy")


def test_report_html_is_well_formed_and_shows_the_numbers(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((8, 16, 3), v, dtype=np.uint8)) for v in (0, 128, 255)]
    frames[0].save(tmp_path / "grid.gif", save_all=True, append_images=frames[1:])
    path = write_report_html(tmp_path, _metrics(), media={"truth | prediction": tmp_path / "grid.gif"})
    page = _parse(path)
    rows = page.tables["metrics"]
    assert rows[0][0] == "method" and rows[0][1].startswith("PSNR")
    by_method = {row[0]: row[1:] for row in rows[1:]}
    assert list(by_method) == ["model", "copy_last", "tokenizer_recon"]
    for method, values in _metrics()["methods"].items():
        assert by_method[method] == [format_metric(n, values[n]) for n in ("psnr", "ssim", "lpips", "fvd")]
    assert by_method["model"] == ["24.51", "0.9023", "n/a", "61.3"]
    protocol = {row[0]: row[1] for row in page.tables["protocol"]}
    assert protocol["context frames"] == "2" and protocol["samples per clip"] == "5"
    assert "no LPIPS weights given" in path.read_text()
    gif = [src for src in page.images if src.startswith("data:image/gif;base64,")]
    assert base64.b64decode(gif[0].split(",", 1)[1]) == (tmp_path / "grid.gif").read_bytes()
    assert sum(src.startswith("data:image/png;base64,") for src in page.images) == 2  # psnr, ssim curves


def test_report_media_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.gif"):
        write_report_html(tmp_path, _metrics(), media={"grid": tmp_path / "missing.gif"})
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="unsupported type"):
        write_report_html(tmp_path, _metrics(), media={"notes": tmp_path / "notes.txt"})


def test_write_report_and_render_from_json(tmp_path: Path) -> None:
    write_report(tmp_path / "run", _metrics())
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["metrics.json", "psnr_per_step.png", "report.html", "ssim_per_step.png"]
    out = render_report(ReportConfig(metrics=tmp_path / "run" / "metrics.json", out=tmp_path / "again"))
    assert _parse(out).tables["metrics"][1][0] == "model"
