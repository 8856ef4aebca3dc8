"""`longstm eval ticks`: a table per horizon (models × series and pooled), metrics and pooled
equity plots in --out, and bad input as one line with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from longstm.cli import main
from longstm.evaluate.ticks import TicksConfig, evaluate_ticks
from longstm.models.hft_baselines import ZeroReturn
from longstm.train.panel import predict_panel
from tests.evaluate.test_ticks import TRAIN_UNTIL, VAL_UNTIL, make_tick_store
from tests.evaluate.test_trained import write_config


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return str(make_tick_store(tmp_path_factory.mktemp("cli_ticks")).path)


def test_eval_ticks_prints_a_table_per_horizon_and_writes_its_files(store_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # Rich would cut the table at 80 columns
    out = tmp_path / "out"
    code = main(["eval", "ticks", "--data", store_path, "--train-until", TRAIN_UNTIL, "--val-until", VAL_UNTIL,
                 "--horizons", "10s,30s", "--model", "zero,momentum,ar,meanrev", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Δ = 10s ahead" in printed and "Δ = 30s ahead" in printed
    assert sum(line.split()[:2] == ["meanrev", "pooled"] for line in printed.splitlines()) == 2
    table = pd.read_csv(out / "metrics.csv")
    assert len(table) == 4 * 3 * 2 and set(table["series"]) == {"a", "b", "pooled"}
    pooled = table[(table["series"] == "pooled") & (table["horizon"] == "10s")].set_index("model")
    per_series = table[(table["series"] != "pooled") & (table["horizon"] == "10s")].groupby("model")["n"].sum()
    assert (pooled["n"] == per_series[pooled.index]).all()
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["protocol"] == "ticks" and saved["config"]["horizons"] == ["10s", "30s"]
    assert saved["data"]["rows"]["a"] == [0, 5400, 10800, 14400]
    assert "| 30s | meanrev | pooled |" in (out / "metrics.md").read_text()
    assert (out / "equity_10s.png").stat().st_size > 1000 and (out / "equity_30s.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--data", "{tmp}/nowhere"], "nowhere: not a longstm store"),
        (["--series", "a,x"], "no series 'x'; it has ['a', 'b']"),
        (["--val-until", "2025-01-01"], "series 'a' has no row at or after val_until '2025-01-01'"),
        (["--train-until", "2023-01-01", "--val-until", "2023-06-01"], "series 'a' has no row before train_until '2023-01-01'"),
        (["--horizons", "10,60s"], "--horizons must be comma-separated durations with a unit"),
        (["--model", "zero,{tmp}/missing.toml"], "missing.toml: no such config file"),
        (["--set", "train.epochs=1"], "names no config .toml"),
        (["--model", "zero,arima"], "unknown model 'arima' for the tick protocol"),
        (["--train-until", "soon"], "split.train_until must be a date or time"),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2(store_path, tmp_path, capsys, options, message):
    arguments = {"--data": store_path, "--train-until": TRAIN_UNTIL, "--val-until": VAL_UNTIL}
    for key, value in zip(options[::2], options[1::2]):
        arguments[key] = value.replace("{tmp}", str(tmp_path))
    assert main(["eval", "ticks", *[part for pair in arguments.items() for part in pair]]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_training_config_is_trained_on_the_store_and_scored_like_the_baselines(store_path, tmp_path, capsys):
    config = write_config(tmp_path, residual="false")  # no data table: the command trains on --data, with its split and horizons
    out = tmp_path / "out"
    code = main(["eval", "ticks", "--data", store_path, "--train-until", TRAIN_UNTIL, "--val-until", VAL_UNTIL,
                 "--horizons", "10s,30s", "--model", f"zero,{config}", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    table = pd.read_csv(out / "metrics.csv")
    assert set(table["model"]) == {"zero", "tiny_lstm"} and len(table) == 2 * 3 * 2
    run = out / "runs" / "tiny_lstm"
    saved = json.loads((run / "data.json").read_text())
    assert saved["split"] == {"train_until": TRAIN_UNTIL, "val_until": VAL_UNTIL} and saved["time_targets"] == ["10s", "30s"]
    # the scored forecasts are the run's own test forecasts (in bp) at the protocol's decision ticks
    frame = predict_panel(run, part="test")
    evaluation = evaluate_ticks(store_path, {"zero": ZeroReturn}, TicksConfig(TRAIN_UNTIL, VAL_UNTIL, horizons=("30s",)))
    decisions = next(r for r in evaluation.results if r.series == "b")
    forecasts = frame[frame["series"] == "b"].set_index("row")["pred_mid_log_return_30s"].reindex(decisions.rows)
    assert forecasts.notna().all()
    expected = np.mean((1e4 * forecasts.to_numpy() - decisions.actuals) ** 2)
    row = table[(table["model"] == "tiny_lstm") & (table["series"] == "b") & (table["horizon"] == "30s")].iloc[0]
    assert row["mse_bp2"] == pytest.approx(expected, rel=1e-6)
