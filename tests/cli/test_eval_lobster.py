"""`longstm eval lobster`: tables on the terminal, metrics in --out, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from longstm.cli import main
from longstm.evaluate.lobster_task import direction_labels
from tests.evaluate.test_lobster_task import trending_book, write_lobster_pair


def test_cli_eval_lobster_end_to_end_on_a_tiny_synthetic_sample(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    mid_cents = np.round(trending_book(1200)[:, 0] * 100)
    message_path = write_lobster_pair(tmp_path, mid_cents)
    out = tmp_path / "run"
    assert main(["eval", "lobster", "--data", str(message_path), "--k", "5,10", "--alpha", "1.5e-5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "k = 10 events ahead" in printed and "persistence" in printed
    saved = json.loads((out / "metrics.json").read_text())
    # Changes here are whole cents over k = 10 mids near $100 (about 1e-5 apart); alpha sits between
    # two of them, so the float32 storage of the loader cannot flip a label.
    assert saved["config"] == {"horizons": [5, 10], "alpha": 1.5e-5, "fractions": [0.7, 0.1, 0.2]}
    expected, _ = direction_labels(mid_cents / 100, 10, 1.5e-5)
    row = next(r for r in saved["metrics"] if r["model"] == "persistence" and r["horizon"] == 10)
    test_steps = np.arange(960, 1190)
    assert row["accuracy"] == pytest.approx(np.mean(expected[test_steps - 10] == expected[test_steps]))
    assert main(["eval", "lobster", "--data", str(message_path), "--model", "lstm"]) == 2
    assert "unknown model 'lstm' for the LOBSTER task" in " ".join(capsys.readouterr().err.split())
