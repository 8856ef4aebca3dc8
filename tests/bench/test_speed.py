import json

import pytest

from longstm.bench import speed
from longstm.cli import main


def test_bench_speed_cli_smoke_writes_json(tmp_path):
    out = tmp_path / "speed.json"
    code = main([
        "bench", "speed", "--models", "hierarchical", "--chunks", "64",
        "--units", "4", "--lanes", "2", "--features", "3", "--repeats", "1", "--json", str(out),
    ])
    assert code == 0
    rows = json.loads(out.read_text())
    assert [(row["model"], row["T"]) for row in rows] == [("keras_lstm", 64), ("hierarchical", 64)]
    for row in rows:
        assert row["ms_per_step"] > 0 and len(row["samples_ms"]) == 1
        assert row["steps_per_s"] == pytest.approx(1000.0 / row["ms_per_step"], rel=1e-2)
    assert rows[0]["ratio_vs_keras_lstm"] == 1.0
    assert rows[0]["sequential_depth"] == 64  # the keras LSTM runs every step in sequence


def test_every_model_and_chunk_is_measured_with_ratios_to_the_baseline(monkeypatch):
    fake_seconds = {"keras_lstm": 0.2, "stacked": 0.3, "hierarchical": 0.05}
    monkeypatch.setattr(speed, "MODEL_BUILDERS", {name: (lambda units, n=name: n) for name in fake_seconds})
    monkeypatch.setattr(
        speed, "prepare_train_step", lambda model, lanes, steps, features: lambda: fake_seconds[model] * steps / 64
    )
    rows = speed.run_speed(["hierarchical", "stacked"], [64, 128], repeats=3)
    # The baseline is always measured, first, at every chunk length.
    assert [(row["model"], row["T"]) for row in rows] == [
        (m, t) for t in (64, 128) for m in ("keras_lstm", "hierarchical", "stacked")
    ]
    by_key = {(row["model"], row["T"]): row for row in rows}
    assert by_key["hierarchical", 128]["ms_per_step"] == pytest.approx(100.0)
    assert by_key["hierarchical", 128]["ratio_vs_keras_lstm"] == pytest.approx(0.25)
    assert by_key["hierarchical", 128]["speedup_vs_keras_lstm"] == pytest.approx(4.0)
    assert by_key["stacked", 64]["steps_per_s"] == pytest.approx(1000.0 / 300.0, rel=1e-3)


def test_registry_has_the_documented_names():
    assert {"keras_lstm", "stacked", "hierarchical", "attention"} <= set(speed.MODEL_BUILDERS)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "lstm2"], "--models must name some of keras_lstm"),
        (["--chunks", "256,abc"], "--chunks must be a comma-separated list of positive integers"),
        (["--chunks", "0"], "--chunks must be"),
    ],
)
def test_bad_options_are_one_line_errors(args, message, capsys):
    assert main(["bench", "speed", *args]) == 2
    assert message in " ".join(capsys.readouterr().err.split())
