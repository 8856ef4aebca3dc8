"""`longstm eval ett` prints one row per horizon and turns bad input into one clear line."""

from __future__ import annotations

from longstm.cli import main
from longstm.data import bundled_path


def test_eval_ett_prints_dlinear_repeat_rows(capsys):
    code = main(["eval", "ett", "--data", str(bundled_path("ETTh1")), "--model", "repeat", "--lookback", "336",
                 "--horizons", "96,192,336,720", "--drop-last-batch", "32"])
    out = capsys.readouterr().out
    assert code == 0
    rows = [line.split("│")[1:4] for line in out.splitlines() if line.startswith("│")]
    assert [[cell.strip() for cell in row] for row in rows] == [
        ["96", "1.295", "0.713"], ["192", "1.325", "0.733"], ["336", "1.323", "0.744"], ["720", "1.339", "0.756"]]
    assert "ETTh split" in out


def _error_line(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())  # Rich wraps long lines


def test_eval_ett_user_errors_exit_2(capsys, tmp_path):
    data = str(bundled_path("ETTh1"))
    assert main(["eval", "ett", "--data", data, "--horizons", "96,abc"]) == 2
    assert "--horizons must be comma-separated positive integers" in _error_line(capsys)
    assert main(["eval", "ett", "--data", data, "--model", "lstm", "--horizons", "24"]) == 2
    assert "unknown model 'lstm'" in _error_line(capsys)
    assert main(["eval", "ett", "--data", str(tmp_path / "none.csv")]) == 2
    assert "no such file" in _error_line(capsys)
