"""The runnable examples: each trains on (the first rows of) the bundled ETTh1 in-process, with
carried state, and scores itself against repeat-last on the same test rows."""

import json
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NAMES = ["01_chunked_lstm", "02_hierarchical_lstm", "03_attention_lstm"]
ROWS = 1200


def repeat_last_mse(csv: Path) -> tuple[float, int]:
    """Repeat-last test MSE in train-scaled units, from the raw file (70/10/20 split, next hour)."""
    ot = pd.read_csv(csv)["OT"].to_numpy(np.float64)
    train, test = int(len(ot) * 0.7), int(len(ot) * 0.2)
    std = ot[:train].std()  # population std, as StandardScaler
    rows = np.arange(len(ot) - test, len(ot) - 1)  # the last row has no next hour
    return float(np.mean(((ot[rows + 1] - ot[rows]) / std) ** 2)), len(rows)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_example_runs_end_to_end_on_the_first_rows_of_etth1(name, tmp_path):
    module = runpy.run_path(str(EXAMPLES / f"{name}.py"))
    assert name.split("_", 1)[0] in module["__doc__"].splitlines()[0]
    scores = module["main"](["--epochs", "1", "--rows", str(ROWS), "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["example"] == name and saved["model_mse"] == scores["model_mse"]
    expected, rows = repeat_last_mse(tmp_path / f"ETTh1_first_{ROWS}_rows.csv")
    assert scores["test_rows"] == rows
    assert scores["repeat_last_mse"] == pytest.approx(expected, rel=1e-5)
    assert np.isfinite(scores["model_mse"]) and np.isfinite(scores["val_mse"])  # one epoch: no quality bar
    for picture in ["forecast.png", "loss.png"] + (["attention.png"] if name.startswith("03") else []):
        assert (tmp_path / picture).read_bytes()[:4] == b"\x89PNG", picture
    if name.startswith("03"):
        weights = np.load(tmp_path / "attention.npy")
        assert weights.shape == (1, 4, 64, 128 + 64)
        np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_each_example_names_the_bug_it_corrects(name):
    doc = runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="not_main")["__doc__"]
    expected = {
        "01_chunked_lstm": ["without state carry", "target reshape that does not match"],
        "02_hierarchical_lstm": ["O(T²)", "O(T) work"],
        "03_attention_lstm": ["keras.layers.Attention", "Sequential"],
    }[name]
    for phrase in expected:
        assert phrase in doc, phrase
