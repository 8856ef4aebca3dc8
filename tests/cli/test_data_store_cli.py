"""`longstm data convert` and `longstm data inspect STORE`: a tick panel in, a per-series summary
out; bad sources and options are one line with exit code 2, and leave no visible store."""

from __future__ import annotations

import zipfile

import numpy as np

from longstm.cli import main
from longstm.data.store import Store


def _tick_zip(folder, day, millis, bid, ask):
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / f"{day}_quote.zip", "w") as archive:
        archive.writestr("ticks.csv", "".join(f"{m},{b},{a}\n" for m, b, a in zip(millis, bid, ask)))


def _panel(root):
    for series in ("fxcm_eurusd", "oanda_eurusd"):
        for day in ("20140501", "20140502", "20140505"):
            millis = np.arange(0, 86_400_000, 1_800_000)
            _tick_zip(root / series, day, millis, 1.3 + millis * 0, 1.3002 + millis * 0 - (millis == 0) * 0.001)


def test_convert_then_inspect_a_store(tmp_path, capsys):
    _panel(tmp_path / "ticks")
    assert main(["data", "convert", str(tmp_path / "ticks"), "--out", str(tmp_path / "store"), "--tz", "fxcm_*=-05:00"]) == 0
    assert "converted 288 rows of 2 series from 6 files" in capsys.readouterr().out
    assert Store(tmp_path / "store").series("fxcm_eurusd").timestamps()[0] == np.datetime64("2014-05-01T05:00", "ns").astype(np.int64)
    assert main(["data", "inspect", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    lines = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]] for line in out.splitlines() if line.startswith("│ ") and "_eurusd" in line}
    assert lines["fxcm_eurusd"][:2] == ["144", "2014-05-01 05:00"]
    assert lines["fxcm_eurusd"][3:6] == ["2", "48.5 h", "3"]  # sessions (the weekend), largest gap, crossed quotes


def test_bad_options_and_sources_are_one_line_with_exit_code_2(tmp_path, capsys):
    _panel(tmp_path / "ticks")
    assert main(["data", "convert", str(tmp_path / "ticks"), "--out", str(tmp_path / "s"), "--tz", "fxcm"]) == 2
    assert "--tz must be PATTERN=ZONE" in capsys.readouterr().err
    assert main(["data", "convert", str(tmp_path / "nothing"), "--out", str(tmp_path / "s")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    with zipfile.ZipFile(tmp_path / "ticks" / "oanda_eurusd" / "20140506_quote.zip", "w") as archive:
        archive.writestr("ticks.csv", "5,1.3,1.4\n3,1.3,1.4\n")
    assert main(["data", "convert", str(tmp_path / "ticks"), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "20140506_quote.zip: series 'oanda_eurusd' row 2: timestamp" in err and len(err.strip().splitlines()) == 1
    assert Store(tmp_path / "s").names == []  # the failed run published nothing
