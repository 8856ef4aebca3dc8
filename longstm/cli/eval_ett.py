"""`longstm eval ett`: score a baseline or a trained config on the ETT protocol, print, save.

The protocol lives in `longstm.evaluate.ett` (baselines) and `longstm.evaluate.ett_trained`
(a training config trained per horizon, scored window by window and with carried state);
this module is their shell: the table on the terminal and `ett_results.csv/.md` in `--out`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich import box
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from longstm.cli.options import is_config_path, model_entries, parse_int_list, read_configs
from longstm.cli.tables import markdown_table, write_table_files
from longstm.data import load_series
from longstm.errors import ConfigError
from longstm.evaluate.ett import choose_split, evaluate_ett

HORIZONS_EXAMPLE = "96,192,336,720"
RESULT_COLUMNS = tuple(
    (name, name, pattern)
    for name, pattern in (
        ("model", "{}"), ("mode", "{}"), ("horizon", "{}"), ("lookback", "{}"), ("features", "{}"), ("mse", "{:.3f}"),
        ("mae", "{:.3f}"), ("windows", "{}"), ("repeat_mse", "{:.3f}"), ("repeat_mae", "{:.3f}"), ("epochs_run", "{}"),
        ("best_epoch", "{}"), ("train_seconds", "{:.0f}"), ("score_seconds", "{:.0f}"),
    )
)


def write_ett_results(rows: list[dict], out_dir: str | Path) -> list[Path]:
    """`ett_results.csv` and `ett_results.md` (columns `RESULT_COLUMNS`) in `out_dir`."""
    return write_table_files(out_dir, "ett_results", rows, markdown_table(rows, RESULT_COLUMNS))


def _caption(chosen, lookback: int, features: str) -> str:
    return (f"{chosen.protocol} split, test rows [{chosen.test[0]}, {chosen.test[1]}), L={lookback}, features {features}, "
            "metrics on train-scaled data")


def _dropped(drop_last_batch: int | None, separator: str) -> str:
    return f"{separator}last incomplete batch of {drop_last_batch} dropped" if drop_last_batch else ""


def run_ett_command(
    data: Path,
    *,
    model: str = "repeat",
    lookback: int = 336,
    horizons: str = HORIZONS_EXAMPLE,
    drop_last_batch: int | None = None,
    features: str = "M",
    target: str = "OT",
    split: str = "auto",
    mode: str = "both",
    out: Path | None = None,
    channel_independent: bool = False,
    overrides: Sequence[str] = (),
    seeds: str | None = None,
    resume: bool = False,
    weights: str = "equal",
    console: Console | None = None,
) -> list[dict]:
    """What `longstm eval ett` does: score a baseline name or a training config `.toml`
    (`model`, read once with `overrides` from `--set`), print the table, write
    `ett_results.csv/.md` to `out`. The other arguments are the command's options, see
    `longstm eval ett --help`.

    Returns:
        The table's rows (one per horizon, and per mode for a trained model).
    """
    horizon_list = list(parse_int_list(horizons, "--horizons", HORIZONS_EXAMPLE))
    series = load_series(data, gap_policy="report")
    chosen = choose_split(series, lookback, split)
    console = console or Console()
    options = dict(drop_last_batch=drop_last_batch, features=features, target=target, split=split)
    entries = model_entries(model)
    is_ensemble = seeds is not None or len(entries) > 1
    if weights != "equal" and not is_ensemble:
        raise ConfigError(f"--weights applies to an ensemble (several --model entries, or --seeds); got --model {model!r}")
    if is_ensemble:
        if not any(is_config_path(entry) for entry in entries):
            raise ConfigError(f"an ensemble (--seeds, or several --model entries) needs a training config .toml; got --model {model!r}")
        rows, table = _ensemble_rows(console, series, entries, seeds, lookback, horizon_list, mode, out, channel_independent,
                                     overrides, resume, options, weights)
        table.title = f"{table.title} on {data.name}"
        forecast = ("the mean of its members' forecasts" if weights == "equal" else
                    "(1 - a) x the trained members' mean + a x the baselines', a fitted on validation "
                    "(so its val MSE is the fitted one)")
        table.caption = (f"{_caption(chosen, lookback, features)}; each member trained as `--model CONFIG --set seed=S`; "
                         f"the ensemble (`mean`) forecasts {forecast}" + _dropped(drop_last_batch, "; "))
    elif is_config_path(model):
        rows, table = _trained_rows(console, series, model, lookback, horizon_list, mode, out, channel_independent,
                                    overrides, options, resume)
        table.title = f"{table.title} on {data.name}"
        table.caption = (f"{_caption(chosen, lookback, features)}; window: each window from a zero state (lookback L); "
                         "stream: state carried through the whole past (more history than L)"
                         + _dropped(drop_last_batch, "; "))
    else:
        if channel_independent:
            raise ConfigError("--channel-independent applies to a trained model (--model CONFIG.toml), not to a baseline")
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"{model} on {data.name}", total=None)
            results = evaluate_ett(series, model, lookback, horizon_list, on_batch=lambda n: progress.advance(task, n),
                                   **options)
        table = Table(title=f"{model} on {data.name}",
                      caption=_caption(chosen, lookback, features) + _dropped(drop_last_batch, ", "))
        for column in ("H", "MSE", "MAE", "windows"):
            table.add_column(column, justify="right")
        for result in results:
            table.add_row(str(result.horizon), f"{result.mse:.3f}", f"{result.mae:.3f}", str(result.windows))
        rows = [{"model": model, "mode": "window", "horizon": r.horizon, "lookback": r.lookback, "features": r.features,
                 "mse": r.mse, "mae": r.mae, "windows": r.windows} for r in results]
    console.print(table)
    if out is not None:
        paths = write_ett_results(rows, out)
        console.print(f"wrote {', '.join(str(p) for p in paths)}")
    return rows


def _requested_modes(mode: str, every: tuple[str, ...]) -> tuple[str, ...]:
    """The modes `--mode` names: one of `every`, or all of them for "both"."""
    if mode != "both" and mode not in every:
        raise ConfigError(f"--mode must be {', '.join(every)} or both, got {mode!r}")
    return every if mode == "both" else (mode,)


def _narrowed(console, mode: str, modes: tuple[str, ...], available: tuple[str, ...], why: str) -> tuple[str, ...]:
    """`--mode both` narrowed to the modes the model can be scored in, saying `why` when it is."""
    if mode == "both" and available != modes:
        console.print(why)
        return available
    return modes


def _announce(console, label: str, summary: dict) -> None:
    """One line as a horizon's model is ready: trained now, or reused from `--out` (`--resume`)."""
    trained = f"{summary['epochs_run']} epochs in {summary['train_seconds']:.0f} s"
    done = f"reused (trained {trained} earlier)" if summary.get("reused") else f"trained {trained}"
    best = "" if summary.get("best_epoch") is None else f", best epoch {summary['best_epoch']}"
    val = "" if summary.get("val_mse") is None else f" (validation MSE {summary['val_mse']:.4f})"
    own = ", ".join(f"{key}={value}" for key, value in (summary.get("horizon_values") or {}).items())
    own = f" with {own}" if own else ""  # the config's [horizons.H] values for this model
    console.print(f"{label}: {done}{own}{best}{val}", soft_wrap=True)  # one line for a log to grep, at any width


def _trained_rows(console, series, config_path: str, lookback: int, horizons: list[int], mode: str, out,
                  channel_independent: bool, overrides: Sequence[str], options: dict, resume: bool = False) -> tuple[list[dict], Table]:
    """Train the config per horizon and score it in each mode beside the repeat baseline.
    With `out`, the table on disk grows as each horizon finishes. Returns the rows and a
    table whose title the caller completes."""
    # Imported here: training loads TensorFlow, which a baseline never needs.
    from longstm.evaluate.ett_trained import MODES, TrainedEtt, ett_table_rows

    modes = _requested_modes(mode, MODES)
    trained = TrainedEtt(read_configs([config_path], overrides)[0], series, lookback, features=options["features"],
                         target=options["target"], split=options["split"], run_dir=None if out is None else Path(out) / "runs",
                         progress=True, channel_independent=channel_independent, reuse=resume)
    modes = _narrowed(console, mode, modes, trained.modes, f"{Path(config_path).name}: a window-only model, scored in window mode only")
    baseline = evaluate_ett(series, "repeat", lookback, horizons, **options)
    # With --drop-last-batch the same trained models are also scored on all test windows (the
    # fixed protocol's primary figure): rows with more windows, at no extra training.
    all_windows = dict(options, drop_last_batch=None)
    baseline_all = evaluate_ett(series, "repeat", lookback, horizons, **all_windows) if options["drop_last_batch"] else None

    def announce(horizon, summary):
        _announce(console, f"H={horizon}", summary)

    name = Path(config_path).stem + (" (channel-independent)" if channel_independent else "")
    results: dict[str, list] = {m: [] for m in modes}
    results_all: dict[str, list] = {m: [] for m in modes}
    rows: list[dict] = []
    for horizon in horizons:
        scored = trained.evaluate([horizon], modes, drop_last_batch=options["drop_last_batch"], on_horizon=announce)
        for m, mode_results in scored.items():
            results[m] += mode_results
        summaries = {h: t.summary for h, t in trained.models.items()}
        rows = ett_table_rows(results, baseline, summaries, name)
        if baseline_all is not None:
            for m, mode_results in trained.evaluate([horizon], modes).items():
                results_all[m] += mode_results
            rows = sorted(rows + ett_table_rows(results_all, baseline_all, summaries, name),
                          key=lambda row: (row["horizon"], row["mode"], row["windows"]))
        if out is not None:
            write_ett_results(rows, out)
    table = Table(title=f"{name} ({trained.config.model.name})")
    for column in ("H", "mode", "MSE", "MAE", "repeat MSE", "repeat MAE", "windows", "epochs (best)", "train s", "score s"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for row in rows:
        table.add_row(str(row["horizon"]), row["mode"], f"{row['mse']:.3f}", f"{row['mae']:.3f}", f"{row['repeat_mse']:.3f}",
                      f"{row['repeat_mae']:.3f}", str(row["windows"]), f"{row['epochs_run']} ({row['best_epoch']})",
                      f"{row['train_seconds']:.0f}", f"{row['score_seconds']:.0f}")
    return rows, table


def _ensemble_rows(console, series, entries: list[str], seeds: str | None, lookback: int, horizons: list[int], mode: str,
                   out, channel_independent: bool, overrides: Sequence[str], resume: bool, options: dict,
                   weights: str = "equal") -> tuple[list[dict], Table]:
    """Train every config x seed and score each member and the mean of their forecasts (rows with
    `model` = the member's folder name, or the ensemble's name). Each member's own table goes
    to `out/<member>/`, the whole table to `out/`, as each horizon finishes."""
    from longstm.evaluate.ett_ensemble import EttEnsemble
    from longstm.evaluate.ett_trained import MODES, ett_table_rows

    modes = _requested_modes(mode, MODES)
    seed_list = None if seeds is None else list(parse_int_list(seeds, "--seeds", "0,1,2", minimum=0))
    configs = read_configs([path for path in entries if is_config_path(path)], overrides)
    baselines = [entry for entry in entries if not is_config_path(entry)]
    ensemble = EttEnsemble(configs, seed_list, series, lookback, run_dir=out, reuse=resume, baselines=baselines,
                           weights=weights, features=options["features"],
                           target=options["target"], split=options["split"], progress=True,
                           channel_independent=channel_independent)
    modes = _narrowed(console, mode, modes, ensemble.modes,
                      "a member is window-only or a baseline: the ensemble is scored in window mode only")

    def announce(name, horizon, summary):
        _announce(console, f"H={horizon} {name}", summary)

    passes = [options["drop_last_batch"]] + ([None] if options["drop_last_batch"] else [])
    rows: list[dict] = []
    for horizon in horizons:
        for dropped in passes:
            baseline = evaluate_ett(series, "repeat", lookback, [horizon], **dict(options, drop_last_batch=dropped))
            results, members = ensemble.evaluate([horizon], modes, drop_last_batch=dropped,
                                                 on_member=announce if dropped == passes[0] else None)
            rows += ett_table_rows(results, baseline, {horizon: ensemble.summary(horizon)}, ensemble.name)
            for name, member_results in members.items():
                rows += ett_table_rows(member_results, baseline, {horizon: ensemble.member_summary(name, horizon)}, name)
        rows.sort(key=lambda row: (row["horizon"], row["mode"], row["windows"], row["model"] != ensemble.name, row["model"]))
        if out is not None:
            write_ett_results(rows, out)
            for name in ensemble.members:  # a trained member's folder holds its own table too
                write_ett_results([row for row in rows if row["model"] == name], Path(out) / name)
    return rows, ensemble_table(ensemble.name, rows)


def ensemble_table(name: str, rows: list[dict]) -> Table:
    """The ensemble `name`'s rows (its own, `model` = `name`, shown as "mean"; its members') as a
    table that keeps member names whole on an 80-column terminal: borders only under the
    header, no outer padding, and a name too long for its column folded onto the next line,
    never cut."""
    table = Table(title=name, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in ("H", "mode", "model", "MSE", "MAE", "windows", "val MSE", "train s"):
        table.add_column(column, justify="left" if column in ("mode", "model") else "right",
                         overflow="fold" if column == "model" else "ellipsis")
    for row in rows:
        val = "" if row["val_mse"] is None else f"{row['val_mse']:.4f}"
        label = row["model"] if row["model"] != name else (
            "mean" if row.get("baseline_weight") is None else f"mean, a={row['baseline_weight']:.2f}")
        table.add_row(str(row["horizon"]), row["mode"], label, f"{row['mse']:.4f}",
                      f"{row['mae']:.4f}", str(row["windows"]), val, f"{row['train_seconds']:.0f}")
    return table
