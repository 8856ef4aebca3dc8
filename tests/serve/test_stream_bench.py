"""`longstm bench stream`: a tiny run writes the JSON the docs and the lead read."""

from __future__ import annotations

import json
import math

from longstm.cli import main


def test_bench_stream_writes_p50_p99_per_method(tmp_path, capsys):
    path = tmp_path / "stream.json"
    code = main(["bench", "stream", "--units", "8", "--ticks", "30", "--slow-ticks", "3", "--features", "2", "--json", str(path)])
    assert code == 0
    everything = json.loads(path.read_text())
    results = [r for r in everything if r["instruments"] == 1 and r["method"] != "calendar 3-level"]  # the others below
    assert [r["method"] for r in results] == ["numpy", "tf_function", "eager", "predict"]
    for record in results:
        assert 0 < record["p50_us"] <= record["p99_us"] and math.isfinite(record["p99_us"])
        assert record["ticks"] == (30 if record["method"] in ("numpy", "tf_function") else 3)
        assert record["units"] == 8
    predict = next(r for r in results if r["method"] == "predict")
    assert predict["speedup_vs_predict_p50"] == 1.0
    assert "per-tick latency" in capsys.readouterr().out
    # With 4 and 64 instruments (the default --many): one row per engine and setting.
    many = [(r["method"], r["engine"], r["instruments"]) for r in everything if r["instruments"] > 1]
    methods = [("numpy", "numpy"), ("tf_function", "tf"), ("numpy_routed", "numpy"), ("tf_routed", "tf")]
    assert many == [(f"{method} x{n}", engine, n) for n in (4, 64) for method, engine in methods]
    # A 3-level calendar model, its flags computed per tick by the pipeline (issue 16).
    calendar = [r for r in everything if r["method"] == "calendar 3-level"]
    assert len(calendar) == 1 and calendar[0]["layers"] == 3 and calendar[0]["engine"] == "tf"
    for record in everything[4:]:
        assert 0 < record["p50_us"] <= record["p99_us"] and record["ticks"] == 30
        if "_routed" not in record["method"] and "calendar" not in record["method"]:  # a routed tick is one instrument's row
            assert record["us_per_instrument"] == record["p50_us"] / record["instruments"]


def test_bench_stream_rejects_bad_options(capsys):
    assert main(["bench", "stream", "--ticks", "0"]) == 2
    assert "--ticks must be an integer >= 1; got 0" in capsys.readouterr().err
    assert main(["bench", "stream", "--many", "4,x"]) == 2
    assert "--many must be comma-separated integers >= 1, e.g. 4,64; got '4,x'" in capsys.readouterr().err
