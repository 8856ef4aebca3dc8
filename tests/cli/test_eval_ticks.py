"""`longstm eval ticks`: a table per horizon (models × series and pooled), metrics and pooled
equity plots in --out, and bad input as one line with exit code 2."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from longstm.cli import main
from tests.evaluate.test_ticks import TRAIN_UNTIL, VAL_UNTIL, make_tick_store


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
        (["--model", "zero,configs/lstm.toml"], "trained configs are not supported by `eval ticks` yet"),
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
