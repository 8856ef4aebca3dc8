"""`longstm data inspect`: the summary of good and flawed files, and errors as one line."""

from __future__ import annotations

from longstm.cli import main
from longstm.data import bundled_path
from longstm.data.inspect import inspect_file


def _rows(out: str) -> dict[str, str]:
    table = {}
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if len(cells) == 2 and cells[0]:
            table[cells[0]] = cells[1]
    return table


def test_inspect_bundled_etth1(capsys):
    assert main(["data", "inspect", str(bundled_path("ETTh1"))]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["rows"] == "17,420"
    assert rows["columns"] == "7: HUFL, HULL, MUFL, MULL, LUFL, LULL, OT"
    assert rows["time span"] == "2016-07-01 00:00:00 .. 2018-06-26 19:00:00 (725 days 19:00:00)"
    assert rows["resolution"] == "1h"
    assert rows["gaps"] == "none" and rows["NaNs"] == "none"


def test_inspect_reports_gaps_and_nans(tmp_path, capsys):
    path = tmp_path / "flawed.csv"
    stamps = ["2024-01-01 00:00", "2024-01-01 00:15", "2024-01-01 00:30", "2024-01-01 02:00", "2024-01-01 02:15"]
    values = ["1", "", "3", "4", ""]
    path.write_text("time,load\n" + "".join(f"{t},{v}\n" for t, v in zip(stamps, values)))
    summary = inspect_file(path)
    assert summary.rows == 5 and summary.nans == 2 and summary.gaps == 1 and summary.gap_rows == [3]
    assert summary.columns[0].nans == 2 and summary.columns[0].maximum == 4.0
    assert main(["data", "inspect", str(path)]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert rows["resolution"] == "15min"
    assert rows["gaps"] == "1 (largest 90min; after rows 3)"
    assert rows["NaNs"].startswith("2 ")
    assert "warning:" in out and "1 gaps longer than the usual step" in " ".join(out.split())


def test_inspect_errors_exit_2(tmp_path, capsys):
    path = tmp_path / "unsorted.csv"
    path.write_text("date,a\n2024-01-02,1\n2024-01-01,2\n")
    assert main(["data", "inspect", str(path)]) == 2
    assert "is not sorted: row 1" in " ".join(capsys.readouterr().err.split())
    assert main(["data", "inspect", str(tmp_path / "missing.parquet")]) == 2
    assert "no such file" in " ".join(capsys.readouterr().err.split())
