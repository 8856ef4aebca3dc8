"""Following a growing CSV/Parquet file: one forecast per row, malformed rows skipped, the state kept."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pandas as pd
import pytest

from longstm.serve import StreamingPredictor
from tests.serve.run_fixture import make_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("follow_run"))


def _expected_forecasts(run_dir, raw_rows):
    predictor = StreamingPredictor.from_run(run_dir)
    return predictor.update_many(raw_rows)


def test_follow_a_growing_csv_skips_malformed_rows_and_keeps_state(run_dir, tmp_path):
    from longstm.serve import follow_stream, load_run_model

    raw = pd.read_csv(run_dir.parent / "etth1.csv", nrows=30)
    lines = raw.to_csv(index=False).splitlines()
    live = tmp_path / "live.csv"
    live.write_text("\n".join(lines[:11]) + "\n")  # header + 10 rows
    bad_lines = [
        "2016-07-01 10:00:00,1.0,2.0\n",  # too few fields
        lines[12].replace(lines[12].split(",")[7], "abc", 1) + "\n",  # OT is not a number
        lines[12].replace(lines[12].split(",")[1], "nan", 1) + "\n",
    ]

    def append():
        with open(live, "a") as handle:
            for index in range(11, 31):
                time.sleep(0.01)
                if index == 15:
                    handle.writelines(bad_lines)
                handle.write(lines[index][:5])  # a partial line first: it must wait for its newline
                handle.flush()
                time.sleep(0.01)
                handle.write(lines[index][5:] + "\n")
                handle.flush()

    writer = threading.Thread(target=append)
    model, meta = load_run_model(run_dir)
    predictor = StreamingPredictor.from_metadata(model, meta)
    out, skipped = io.StringIO(), []
    writer.start()
    started = time.monotonic()
    report = follow_stream(predictor, live, out, target_names=meta["targets"], idle_timeout=1.0, poll=0.01, report_skip=skipped.append)
    writer.join()
    assert time.monotonic() - started < 10
    assert report.rows == 33 and report.forecasts == 30
    assert skipped == [
        f"{live} line 16: has 3 fields, the header has 8",
        f"{live} line 17: column 'OT': expected a number, got 'abc'",
        f"{live} line 18: column 'HUFL': expected a finite number, got 'nan'",
    ]
    frame = pd.read_csv(io.StringIO(out.getvalue()))
    assert list(frame.columns) == ["row", "date", "OT+1", "HUFL+1", "OT+2", "HUFL+2"]
    assert list(frame["date"]) == list(raw["date"])
    assert list(frame["row"]) == list(range(14)) + list(range(17, 33))  # data rows 14-16 were malformed
    expected = _expected_forecasts(run_dir, raw[predictor.column_names].to_numpy())
    np.testing.assert_allclose(frame[["OT+1", "HUFL+1", "OT+2", "HUFL+2"]].to_numpy(), expected, rtol=1e-6, atol=1e-5)


def test_follow_parquet_and_cli(run_dir, tmp_path):
    from longstm.cli import main

    raw = pd.read_csv(run_dir.parent / "etth1.csv", nrows=12)
    source = tmp_path / "live.parquet"
    raw.to_parquet(source)
    out = tmp_path / "forecasts.csv"
    state = tmp_path / "state.npz"
    code = main(["follow", str(run_dir), str(source), "--out", str(out), "--max-rows", "8", "--state-out", str(state), "--poll", "0.01"])
    assert code == 0
    frame = pd.read_csv(out)
    columns = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    expected = _expected_forecasts(run_dir, raw[columns].to_numpy())
    assert len(frame) == 8
    np.testing.assert_allclose(frame[["OT+1", "HUFL+1", "OT+2", "HUFL+2"]].to_numpy(), expected[:8], rtol=1e-6, atol=1e-5)
    # Resuming from the saved state continues the stream exactly.
    rest = tmp_path / "rest.csv"
    raw.iloc[8:].to_csv(rest, index=False)
    assert main(["follow", str(run_dir), str(rest), "--out", str(tmp_path / "rest_out.csv"), "--state-in", str(state), "--idle-timeout", "0"]) == 0
    tail = pd.read_csv(tmp_path / "rest_out.csv")
    np.testing.assert_allclose(tail[["OT+1", "HUFL+1", "OT+2", "HUFL+2"]].to_numpy(), expected[8:], rtol=1e-6, atol=1e-5)


def test_follow_bad_input_is_one_clear_error(run_dir, tmp_path, capsys):
    from longstm.cli import main

    wrong = tmp_path / "wrong.csv"
    wrong.write_text("date,a,b\n2016,1,2\n")
    assert main(["follow", str(run_dir), str(wrong), "--idle-timeout", "0"]) == 2
    assert "lacks the run's columns ['HUFL', 'HULL', 'MUFL', 'MULL', 'LUFL', 'LULL', 'OT']" in capsys.readouterr().err
    assert main(["follow", str(run_dir), str(tmp_path / "absent.csv")]) == 2
    assert "absent.csv: no such file to follow" in capsys.readouterr().err
    assert main(["follow", str(run_dir), str(wrong), "--max-rows", "0"]) == 2
    assert "--max-rows must be an integer >= 1; got 0" in capsys.readouterr().err
