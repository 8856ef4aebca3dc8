"""`longstm eval hft`: tables on the terminal, metrics and plots in --out, one-line errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from longstm.cli import main
from longstm.evaluate.hft import Bars
from tests.evaluate.test_hft import synthetic_bars


def write_bars_csv(path, bars: Bars) -> None:
    pd.DataFrame(
        {
            "timestamp": pd.DatetimeIndex(bars.timestamps).strftime("%Y-%m-%d %H:%M:%S"),
            "open": bars.open, "high": bars.high, "low": bars.low, "close": bars.close, "volume": bars.volume,
        }
    ).to_csv(path, index=False)


def test_cli_eval_hft_writes_tables_metrics_and_plots(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # Rich would wrap the table at 80 columns
    data = tmp_path / "bars.csv"
    write_bars_csv(data, synthetic_bars(3000))
    out = tmp_path / "run"
    code = main(["eval", "hft", "--data", str(data), "--model", "zero,ar", "--horizons", "1,5",
                 "--lookback", "20", "--cost-bps", "0.5", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "k = 1" in printed and "k = 5" in printed and "buy_and_hold" in printed
    table = pd.read_csv(out / "metrics.csv")
    assert sorted(set(table["model"])) == ["ar", "buy_and_hold", "zero"]
    assert len(table) == 6
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["config"]["horizons"] == [1, 5] and saved["config"]["cost_bps"] == 0.5
    assert saved["data"]["bars"] == 3000
    assert (out / "equity_h1.png").stat().st_size > 1000
    assert (out / "predictions_h5.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--horizons", "1,x"], "--horizons must be comma-separated positive integers"),
        (["--model", "zero,lstm9"], "unknown model 'lstm9'"),
        (["--cost-bps", "-1"], "cost_bps must be a finite number >= 0"),
    ],
)
def test_cli_eval_hft_bad_arguments_exit_2_with_one_line(tmp_path, capsys, arguments, message):
    data = tmp_path / "bars.csv"
    write_bars_csv(data, synthetic_bars(1000))
    assert main(["eval", "hft", "--data", str(data), *arguments]) == 2
    assert message in " ".join(capsys.readouterr().err.split())
