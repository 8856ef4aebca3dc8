"""`longstm report`: a self-contained HTML and a Markdown report built from any run directory."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest

from longstm.cli.eval_hft import save_hft_outputs
from longstm.errors import DataValidationError
from longstm.evaluate.hft import Bars, HFTConfig, evaluate_hft
from longstm.evaluate.report import build_report, collect
from longstm.models.hft_baselines import LinearAR, ZeroReturn


def tiny_png(path, color: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(2, 2))
    axis.imshow(np.random.default_rng(0).random((4, 4)), cmap=color)
    figure.savefig(path, dpi=40)
    plt.close(figure)
    return path.read_bytes()


def hft_run(folder):
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, 1500)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    bars = Bars(open_, np.maximum(open_, close), np.minimum(open_, close), close, np.ones(1500),
                timestamps=np.datetime64("2025-01-01") + np.arange(1500) * np.timedelta64(1, "m"))
    evaluation = evaluate_hft(bars, {"zero": ZeroReturn, "ar": LinearAR}, HFTConfig(horizons=(1, 5), lookback=20))
    save_hft_outputs(evaluation, folder)
    return evaluation


def test_report_of_an_eval_hft_directory_embeds_every_plot_and_shows_metrics_and_config(tmp_path):
    evaluation = hft_run(tmp_path)
    html_path, md_path = build_report(tmp_path)
    page, markdown = html_path.read_text(), md_path.read_text()
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["equity_h1.png", "equity_h5.png", "predictions_h1.png", "predictions_h5.png"]
    embedded = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(embedded) == 4
    assert sorted(base64.b64decode(e) for e in embedded) == sorted((tmp_path / n).read_bytes() for n in pngs)
    # Self-contained: no image or stylesheet is fetched from a path or URL.
    assert not re.search(r"src='(?!data:)", page) and "<link" not in page
    ar_mse = next(r["mse_bp2"] for r in evaluation.rows() if r["model"] == "ar" and r["horizon"] == 5)
    assert f"{ar_mse:.4f}".rstrip("0") in page and f"{ar_mse:.4f}".rstrip("0") in markdown
    assert "lookback = 20" in page and "horizons = 1, 5" in markdown
    assert "<h2>Equity curves</h2>" in page and "<h2>Predictions vs actual</h2>" in page
    assert "![equity_h5.png](equity_h5.png)" in markdown
    # metrics.json's records duplicate metrics.csv, so the table appears once.
    assert markdown.count("| model | horizon | n_test |") == 1


def trainer_run(folder):
    """A run directory laid out as `longstm train` writes it (see longstm.train.run)."""
    (folder / "config.toml").write_text('[model]\nname = "stacked"\nunits = 64\n\n[train]\nk1 = 96\n')
    (folder / "data.json").write_text(json.dumps({"rows": 17420, "splits": {"train": [0, 12194]},
                                                  "scaler": {"mean": list(range(30))}}))
    epochs = pd.DataFrame({"epoch": [1, 2, 3, 4], "train_mse": [1.0, 0.5, 0.4, 0.35], "val_mse": [1.1, 0.6, 0.55, 0.58]})
    epochs.to_csv(folder / "metrics.csv", index=False)
    pd.DataFrame({"step": np.arange(1, 41), "epoch": np.repeat([1, 2, 3, 4], 10), "loss": np.linspace(1, 0.3, 40)}).to_csv(
        folder / "steps.csv", index=False
    )
    (folder / "metrics.json").write_text(json.dumps({
        "epochs": epochs.to_dict("records"),
        "val": {"mse": 0.55, "mae": 0.5},
        "test": {"mse": 0.41, "mae": 0.43},
    }))
    (folder / "checkpoints").mkdir()
    tiny_png(folder / "checkpoints" / "ignored.png", "gray")
    return tiny_png(folder / "loss.png", "magma")


def test_report_of_a_trainer_run_draws_learning_curves_and_summarises_scores(tmp_path):
    loss_png = trainer_run(tmp_path)
    plots = tmp_path / "plots"
    plots.mkdir()
    attention = tiny_png(plots / "attention_layer0.png", "viridis")
    tiny_png(tmp_path / "predictions.png", "gray")

    contents = collect(tmp_path)
    groups = {figure.path.name: figure.group for figure in contents.figures}
    assert groups == {
        "report_learning_curves_metrics.png": "learning",
        "report_learning_curves_steps.png": "learning",
        "loss.png": "learning",
        "attention_layer0.png": "attention",
        "predictions.png": "predictions",
    }
    html_path, md_path = build_report(tmp_path, title="stacked on ETTh1")
    page, markdown = html_path.read_text(), md_path.read_text()
    assert "<title>stacked on ETTh1</title>" in page
    assert 'name = "stacked"' in markdown and "k1 = 96" in markdown
    for heading in ("Configuration", "Data", "Metrics", "Learning curves", "Attention", "Predictions vs actual"):
        assert f"<h2>{heading}</h2>" in page
    assert base64.b64encode(attention).decode() in page and base64.b64encode(loss_png).decode() in page
    # data.json is the data summary; a long list is cut short.
    assert "| splits.train | 0, 12194 |" in markdown
    assert "| scaler.mean | 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, ... (30 values) |" in markdown
    # Training logs are summarised by their first, last and best rows ...
    assert "| best val_mse | 3 | 0.4 | 0.55 |" in markdown
    assert "| last | 40 | 4 | 0.3 |" in markdown
    # ... the per-epoch records in metrics.json duplicate metrics.csv and are not repeated,
    # and the final scores become one table with a row per split.
    assert markdown.count("train_mse") == 1
    assert "|  | mse | mae |" in markdown and "| test | 0.41 | 0.43 |" in markdown
    assert "![plots/attention_layer0.png](plots/attention_layer0.png)" in markdown
    assert "ignored.png" not in markdown


def test_unreadable_files_become_notes_not_crashes(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "ok.csv").write_text("a,b\n1,2\n")
    html_path, md_path = build_report(tmp_path)
    assert "could not be read" in md_path.read_text()
    assert "| 1 | 2 |" in md_path.read_text()


def test_report_output_directory_option(tmp_path):
    hft_run(tmp_path / "run")
    html_path, md_path = build_report(tmp_path / "run", tmp_path / "elsewhere")
    assert html_path == tmp_path / "elsewhere" / "report.html" and md_path.exists()
    assert not (tmp_path / "run" / "report.html").exists()


def test_missing_or_empty_run_directories_are_clear_errors(tmp_path):
    with pytest.raises(DataValidationError, match="no such run directory"):
        build_report(tmp_path / "nope")
    with pytest.raises(DataValidationError, match="nothing to report"):
        build_report(tmp_path)


def test_cli_report(tmp_path, capsys):
    from longstm.cli import main

    hft_run(tmp_path)
    assert main(["report", str(tmp_path)]) == 0
    assert "report.html" in capsys.readouterr().out
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such run directory" in " ".join(capsys.readouterr().err.split())
