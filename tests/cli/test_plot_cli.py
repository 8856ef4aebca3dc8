"""`longstm plot attention RUN_DIR`: attention weights computed from a trained run, and its errors."""

import numpy as np
import pandas as pd
import pytest

from longstm.cli import main

STEPS, MEMORY, WINDOW, HEADS = 16, 8, 9, 2


@pytest.fixture(scope="module")
def attention_run(tmp_path_factory):
    """A tiny attention_lstm run on a synthetic two-column series (one epoch)."""
    from longstm.train import config_from_dict, train_from_config

    folder = tmp_path_factory.mktemp("attention_run")
    rows = 480
    t = np.arange(rows)
    pd.DataFrame(
        {
            "date": pd.date_range("2021-01-01", periods=rows, freq="h").strftime("%Y-%m-%d %H:%M:%S"),
            "load": np.sin(t / 5.0),
            "temp": np.cos(t / 7.0),
        }
    ).to_csv(folder / "series.csv", index=False)
    config = config_from_dict(
        {
            "data": {"path": str(folder / "series.csv"), "targets": ["temp"]},
            "model": {"name": "attention_lstm", "units": 4, "options": {"heads": HEADS, "memory": MEMORY, "window": WINDOW}},
            "train": {"lanes": 2, "k1": STEPS, "k2": STEPS, "epochs": 1, "learning_rate": 1e-2},
            "eval": {"lanes": 2, "warmup": 40},
        },
        source="tiny.toml",
    )
    run_dir = folder / "run"
    train_from_config(config, run_dir, progress=False)
    return run_dir


def test_a_run_directory_gets_its_attention_computed_saved_and_drawn(attention_run):
    assert main(["plot", "attention", str(attention_run)]) == 0
    weights = np.load(attention_run / "attention.npy")
    assert weights.shape == (1, HEADS, STEPS, MEMORY + STEPS)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-5)  # a distribution per query and head
    lag = (np.arange(STEPS)[:, None] + MEMORY) - np.arange(MEMORY + STEPS)[None, :]
    assert np.all(weights[..., (lag < 0) | (lag >= WINDOW)] == 0)  # causal, within the sliding window
    # The memory was warmed up on the rows before the chunk: the first query attends to it.
    assert weights[0, :, 0, :MEMORY].sum() > 0.05
    png = (attention_run / "attention.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_warm_up_in_windows_equals_one_pass_and_a_cold_start_has_no_memory(attention_run):
    from longstm.cli.attention_plot import chunk_attention
    from longstm.train import load_run

    config, data, trainer = load_run(attention_run)
    core = trainer.model.core
    first = data.splits["test"][0] + 5
    windowed = chunk_attention(core, data, first, STEPS, warmup=40, window=STEPS)
    one_pass = chunk_attention(core, data, first, STEPS, warmup=40, window=1000)
    np.testing.assert_allclose(windowed, one_pass, atol=1e-5)
    cold = chunk_attention(core, data, first, STEPS, warmup=0, window=STEPS)
    assert np.all(cold[..., :MEMORY] == 0)  # nothing before the chunk: the memory is masked out
    assert np.abs(cold - windowed).max() > 1e-3


def test_start_and_steps_choose_the_chunk(attention_run, tmp_path):
    out = tmp_path / "chunk.png"
    assert main(["plot", "attention", str(attention_run), "--start", "8", "--steps", "8", "--head", "1", "-o", str(out)]) == 0
    assert np.load(attention_run / "attention.npy").shape == (1, HEADS, 8, MEMORY + 8)
    assert out.read_bytes()[:4] == b"\x89PNG"


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return " ".join(err.split())


def test_a_run_without_attention_is_refused_with_a_clear_message(attention_run, tmp_path, capsys):
    other = tmp_path / "lstm_run"
    other.mkdir()
    text = (attention_run / "config.toml").read_text().replace('name = "attention_lstm"', 'name = "lstm"')
    (other / "config.toml").write_text(text)
    assert main(["plot", "attention", str(other)]) == 2
    assert "the run's model is 'lstm', which has no attention weights to plot" in _one_line_error(capsys)


def test_a_chunk_outside_the_test_split_is_refused(attention_run, capsys):
    assert main(["plot", "attention", str(attention_run), "--start", "90"]) == 2
    assert "must lie inside the test split of 96 rows" in _one_line_error(capsys)
    assert main(["plot", "attention", str(attention_run), "--steps", "0"]) == 2
    assert "--steps must be a positive number of rows; got 0" in _one_line_error(capsys)


def test_a_weights_file_is_still_drawn_as_given(tmp_path):
    weights = np.random.default_rng(0).random((3, 2, 4, 6))
    np.savez(tmp_path / "weights.npz", attention=weights)
    assert main(["plot", "attention", str(tmp_path / "weights.npz"), "--lane", "2"]) == 0
    assert (tmp_path / "attention.png").read_bytes()[:4] == b"\x89PNG"
