"""`longstm report RUN_DIR`: one self-contained HTML page (and a Markdown twin) for a run.

The report is built from whatever files the run directory holds, read generically, so the
same code serves `longstm eval hft --out DIR`, `eval lobster --out DIR` and the trainer's
run directories:

- configuration: `*.toml`, `*.yaml`/`*.yml` (verbatim), `config*.json` and the `config`
  entry of any JSON file (as `key = value` lines);
- data summary: `data*.json` and the `data` entry of any JSON file;
- metric tables: every CSV (a training log, i.e. a CSV with `loss` columns or with a
  step/epoch column and `mse`/`mae` columns, is drawn as learning curves and summarised by
  its first, last and best rows), every list of records in a JSON file unless the CSV of
  the same name beside it has as many rows, and JSON entries of scalars (`{"val": {...},
  "test": {...}}` becomes one table with a row per entry);
- figures: every PNG, grouped by name into learning curves (`loss`, `learning`, `curve`),
  predictions vs actual (`pred`, `forecast`), equity curves (`equity`, `backtest`, `pnl`),
  attention heatmaps (`attention`, `attn`, `heatmap`), and the rest.

HTML embeds images as base64 data URIs, so the file can be mailed or archived alone; the
Markdown file links the images by relative path and lives in the run directory.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.figure
import pandas as pd

from longstm.atomic import save_figure
from longstm.errors import DataValidationError
from longstm.train import rundir

FIGURE_GROUPS = (
    ("learning", "Learning curves", ("loss", "learning", "curve")),
    ("predictions", "Predictions vs actual", ("pred", "forecast", "actual")),
    ("equity", "Equity curves", ("equity", "backtest", "pnl")),
    ("attention", "Attention", ("attention", "attn", "heatmap")),
    ("other", "Other figures", ()),
)
CONFIG_SUFFIXES = (".toml", ".yaml", ".yml")
REPORT_NAMES = ("report.html", "report.md")
LEARNING_CURVE_PREFIX = "report_learning_curves"
MAX_TABLE_ROWS = 60
# A run directory's checkpoints and TensorBoard logs are binary; other tools' names for the same.
SKIP_DIRS = {rundir.CHECKPOINTS, "checkpoint", "ckpt", rundir.TENSORBOARD, "logs", "__pycache__"}


@dataclass
class Table:
    title: str
    rows: list[dict]
    note: str = ""


@dataclass
class Figure:
    group: str
    path: Path
    caption: str


@dataclass
class RunContents:
    """What `collect` found in a run directory."""

    run_dir: Path
    configs: list[tuple[str, str]] = field(default_factory=list)  # (name, text)
    data_summary: list[tuple[str, dict]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.configs or self.data_summary or self.tables or self.figures)


def _files(run_dir: Path, pattern: str) -> list[Path]:
    found = []
    for path in sorted(run_dir.rglob(pattern)):
        relative = path.relative_to(run_dir)
        if len(relative.parts) > 3 or SKIP_DIRS.intersection(part.lower() for part in relative.parts[:-1]):
            continue
        if path.name in REPORT_NAMES or not path.is_file():
            continue
        found.append(path)
    return found


def _flatten(mapping: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
            shown = ", ".join(str(v) for v in value[:12])
            flat[name] = shown + (f", ... ({len(value)} values)" if len(value) > 12 else "")
        elif not isinstance(value, list):
            flat[name] = value
    return flat


def _settings_text(mapping: dict) -> str:
    """`key = value` lines (nested keys dotted), compact where JSON's indent would sprawl."""
    return "\n".join(
        f"{key} = {value if isinstance(value, str) else json.dumps(value)}" for key, value in _flatten(mapping).items()
    )


def _is_records(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


STEP_COLUMNS = ("step", "epoch", "iteration", "update")


def _learning_curve_columns(columns) -> list[str]:
    """Loss-like columns of a training log: any `*loss*` column, and `*mse*`/`*mae*` columns
    when the table also has a step/epoch column (so an evaluation table by horizon is not one)."""
    lowered = {column: str(column).lower() for column in columns}
    has_step = any(name in STEP_COLUMNS for name in lowered.values())
    return [
        column
        for column, name in lowered.items()
        if "loss" in name or (has_step and ("mse" in name or "mae" in name))
    ]


def _scalar_dict(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(not isinstance(v, (dict, list)) for v in value.values())


def collect(run_dir) -> RunContents:
    """Find configuration, data summaries, metric tables and figures in `run_dir`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataValidationError(f"{run_dir}: no such run directory")
    contents = RunContents(run_dir)

    for path in _files(run_dir, "*"):
        if path.suffix.lower() in CONFIG_SUFFIXES:
            contents.configs.append((str(path.relative_to(run_dir)), path.read_text(errors="replace")))

    csv_rows: dict[Path, int] = {}  # stem -> rows, to skip JSON copies of the same table
    for path in _files(run_dir, "*.csv"):
        name = str(path.relative_to(run_dir))
        try:
            frame = pd.read_csv(path)
        except (ValueError, OSError, pd.errors.ParserError) as error:
            contents.tables.append(Table(name, [], f"could not be read: {error}"))
            continue
        csv_rows[path.with_suffix("")] = len(frame)
        loss_columns = _learning_curve_columns(frame.columns)
        if loss_columns and len(frame) > 1:
            figure_path = _draw_learning_curves(frame, loss_columns, run_dir, path)
            contents.figures.append(Figure("learning", figure_path, f"learning curves from {name}"))
            picks = {"first": 0, "last": len(frame) - 1}
            best_column = next((c for c in loss_columns if str(c).lower().startswith("val")), loss_columns[0])
            if frame[best_column].notna().any():
                picks[f"best {best_column}"] = int(frame[best_column].to_numpy().argmin())
            rows = [{"row": label, **frame.iloc[index].to_dict()} for label, index in picks.items()]
            contents.tables.append(Table(f"Training log {name}", rows, f"{len(frame)} rows; first, last and best shown"))
        else:
            rows = frame.head(MAX_TABLE_ROWS).to_dict("records")
            note = f"first {MAX_TABLE_ROWS} of {len(frame)} rows" if len(frame) > MAX_TABLE_ROWS else ""
            contents.tables.append(Table(name, rows, note))

    for path in _files(run_dir, "*.json"):
        name = str(path.relative_to(run_dir))
        try:
            document = json.loads(path.read_text())
        except (ValueError, OSError) as error:
            contents.tables.append(Table(name, [], f"could not be read: {error}"))
            continue
        same_as_csv = csv_rows.get(path.with_suffix(""))
        if not isinstance(document, dict):
            if _is_records(document) and len(document) != same_as_csv:
                contents.tables.append(Table(name, document[:MAX_TABLE_ROWS]))
            continue
        if path.name.startswith("config"):
            contents.configs.append((name, _settings_text(document)))
            continue
        if path.name.startswith("data"):
            contents.data_summary.append((name, _flatten(document)))
            continue
        if isinstance(document.get("config"), dict):
            contents.configs.append((f"{name}: config", _settings_text(document["config"])))
        if isinstance(document.get("data"), dict):
            contents.data_summary.append((name, _flatten(document["data"])))
        summary_rows = []  # {"val": {...}, "test": {...}} -> one table, a row per entry
        for key, value in document.items():
            if key in ("config", "data"):
                continue
            if _is_records(value):
                if len(value) != same_as_csv:  # else the CSV beside it holds the same table
                    contents.tables.append(Table(f"{name}: {key}", value[:MAX_TABLE_ROWS]))
            elif _scalar_dict(value):
                summary_rows.append({"": key, **value})
            elif isinstance(value, dict) and value:
                contents.tables.append(Table(f"{name}: {key}", [{"key": k, "value": v} for k, v in _flatten(value).items()]))
        if summary_rows:
            contents.tables.append(Table(f"{name}: " + ", ".join(row[""] for row in summary_rows), summary_rows))
        scalars = {k: v for k, v in document.items() if not isinstance(v, (dict, list))}
        if scalars:
            contents.tables.append(Table(name, [{"key": k, "value": v} for k, v in scalars.items()]))

    for path in _files(run_dir, "*.png"):
        if path.name.startswith(LEARNING_CURVE_PREFIX):
            continue
        contents.figures.append(Figure(_figure_group(path.name), path, str(path.relative_to(run_dir))))
    return contents


def _figure_group(name: str) -> str:
    lower = name.lower()
    for group, _, keywords in FIGURE_GROUPS:
        if any(keyword in lower for keyword in keywords):
            return group
    return "other"


def _draw_learning_curves(frame, loss_columns, run_dir: Path, source: Path) -> Path:
    axis_column = next((c for c in frame.columns if str(c).lower() in STEP_COLUMNS), None)
    x = frame[axis_column] if axis_column is not None else range(len(frame))
    figure = matplotlib.figure.Figure(figsize=(8, 4))
    axis = figure.subplots()
    for column in loss_columns:
        axis.plot(x, frame[column], label=str(column))
    axis.set_xlabel(str(axis_column or "row"))
    axis.set_ylabel("loss")
    positive = all((frame[c].dropna() > 0).all() for c in loss_columns)
    if positive and len(frame) > 1:
        axis.set_yscale("log")
    axis.legend()
    axis.grid(alpha=0.3)
    axis.set_title(f"Learning curves ({source.name})")
    figure.tight_layout()
    path = run_dir / f"{LEARNING_CURVE_PREFIX}_{source.stem}.png"
    return save_figure(figure, path, dpi=100)


def _cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.4g}"
        return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 1e5 else f"{value:.0f}"
    return str(value)


def _columns(rows: list[dict]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    return columns


def _markdown_table(rows: list[dict]) -> str:
    columns = _columns(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines)


def _html_table(rows: list[dict]) -> str:
    columns = _columns(rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in columns) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .85rem; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
pre { background: #f7f7f7; padding: .75rem; overflow-x: auto; font-size: .8rem; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .note { color: #666; font-size: .8rem; }
"""


def render(contents: RunContents, title: str | None = None) -> tuple[str, str]:
    """The report as (HTML, Markdown) text."""
    title = title or f"longstm run report: {contents.run_dir.name}"
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = [f"# {title}", "", f"Run directory `{contents.run_dir}`, report generated {stamp}.", ""]
    page = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>Run directory <code>{html.escape(str(contents.run_dir))}</code>, report generated {stamp}.</p>",
    ]

    def section(name: str) -> None:
        md.extend([f"## {name}", ""])
        page.append(f"<h2>{html.escape(name)}</h2>")

    if contents.configs:
        section("Configuration")
        for name, text in contents.configs:
            md.extend([f"`{name}`", "", "```", text.rstrip(), "```", ""])
            page.append(f"<p><code>{html.escape(name)}</code></p><pre>{html.escape(text.rstrip())}</pre>")
    if contents.data_summary:
        section("Data")
        for name, summary in contents.data_summary:
            rows = [{"key": key, "value": value} for key, value in summary.items()]
            md.extend([f"From `{name}`:", "", _markdown_table(rows), ""])
            page.append(f"<p class='note'>From <code>{html.escape(name)}</code></p>{_html_table(rows)}")
    if contents.tables:
        section("Metrics")
        for table in contents.tables:
            md.extend([f"### {table.title}", ""])
            page.append(f"<h3>{html.escape(table.title)}</h3>")
            if table.rows:
                md.extend([_markdown_table(table.rows), ""])
                page.append(_html_table(table.rows))
            if table.note:
                md.extend([f"*{table.note}*", ""])
                page.append(f"<p class='note'>{html.escape(table.note)}</p>")
    for group, heading, _ in FIGURE_GROUPS:
        figures = [figure for figure in contents.figures if figure.group == group]
        if not figures:
            continue
        section(heading)
        for figure in figures:
            relative = figure.path.relative_to(contents.run_dir).as_posix()
            md.extend([f"![{figure.caption}]({relative})", ""])
            page.append(
                f"<figure><img src='{_data_uri(figure.path)}' alt='{html.escape(figure.caption)}'>"
                f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>"
            )
    page.append("</body></html>")
    return "\n".join(page), "\n".join(md) + "\n"


def build_report(run_dir, out_dir=None, title: str | None = None) -> tuple[Path, Path]:
    """Write `report.html` (self-contained) and `report.md` for `run_dir`.

    Args:
        run_dir: the run directory to read.
        out_dir: where to write; default `run_dir`. The Markdown file links images relative
            to `run_dir`, so it is only fully viewable there.
        title: page title; default from the directory name.

    Returns:
        The paths of the HTML and Markdown files.

    Raises:
        DataValidationError: when `run_dir` does not exist or holds nothing to report.
    """
    contents = collect(run_dir)
    if contents.empty:
        raise DataValidationError(
            f"{run_dir}: nothing to report (no config *.toml/*.json, metrics *.csv/*.json or *.png plots found)"
        )
    page, markdown = render(contents, title)
    out_dir = Path(out_dir) if out_dir is not None else Path(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    rundir.write_atomic(html_path, page)  # a full disk leaves the previous report, never half a page
    rundir.write_atomic(md_path, markdown)
    return html_path, md_path
