import json

import pytest

from longstm.bench.sweeps import SWEEPS, parse_sweeps, plot_sweep
from longstm.cli import main
from longstm.errors import ConfigError


@pytest.mark.parametrize(
    "rows",
    [
        [{"model": m, "T": t, "ms_per_step": t / s} for m, s in (("keras_lstm", 1), ("minlstm", 20)) for t in (256, 4096)],
        [{"method": m, "T": t, "peak_rss_mb": 600 + t / s} for m, s in (("tbptt", 1e6), ("full_bptt", 1e3)) for t in (1e4, 1e6)],
        [{"method": "predict", "p50_us": 30000, "p99_us": 45000}, {"method": "numpy", "p50_us": 40, "p99_us": 90}],
    ],
    ids=["speed", "memory", "stream"],
)
def test_every_sweep_kind_is_drawn_next_to_its_json(tmp_path, rows):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(rows))
    png = plot_sweep(path)
    assert png == tmp_path / "sweep.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_json_that_is_not_a_sweep_is_refused(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps([{"loss": 1.0}]))
    with pytest.raises(ConfigError, match="not a longstm bench JSON"):
        plot_sweep(path)


def test_unknown_sweep_names_are_a_user_error(tmp_path, capsys):
    assert main(["bench", "all", "--out", str(tmp_path), "--only", "speed,warp"]) == 2
    assert "unknown sweeps ['warp']" in capsys.readouterr().err
    assert set(SWEEPS) >= {"speed", "memory", "stream"}


def test_every_sweep_runs_when_only_is_not_given():
    assert parse_sweeps(None) == list(SWEEPS)
    assert parse_sweeps("memory, speed") == ["memory", "speed"]
