"""Ensembles in the ETT protocol: the mean of the members' forecasts, seeds applied, members
reused with --resume (and refused when their config differs), validation scoring, CLI."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

import longstm.evaluate.ett_trained as ett_trained
from longstm.cli import main
from longstm.cli.eval_ett import _announce, ensemble_table
from longstm.data.windows import WindowIndex, gather_windows
from longstm.errors import ConfigError
from longstm.evaluate.ett import evaluate_ett, prepare_ett
from longstm.evaluate.ett_ensemble import EttEnsemble, MeanForecaster, RememberedForecaster, fit_blend_weight
from longstm.models.baselines import make_baseline
from longstm.train.config import read_config
from tests.evaluate.test_trained import write_config

from tests.evaluate.test_ett_trained import LOOKBACK, folder  # noqa: F401 (the same 1,200 ETTh1 rows)

HORIZON = 6


@pytest.fixture(scope="module")
def ensemble(folder):
    """Two seeds of a tiny LSTM, trained once and scored in both modes."""
    ensemble = EttEnsemble([read_config(write_config(folder))], [0, 1], folder / "ett.csv", LOOKBACK, run_dir=folder / "ens")
    results, members = ensemble.evaluate([HORIZON], ["window", "stream"])
    return ensemble, results, members


def test_the_ensemble_scores_the_mean_of_its_members_forecasts(ensemble):
    ensemble, results, members = ensemble
    member = next(iter(ensemble.members.values()))
    test_start, test_stop = member.split.test
    starts = WindowIndex(len(member.series), LOOKBACK, HORIZON, start=test_start, stop=test_stop).starts()
    _, _, _, scaler = prepare_ett(member.series, LOOKBACK)
    x, y = gather_windows(member.series.values, starts, LOOKBACK, HORIZON, scaler=scaler)
    for mode in ("window", "stream"):
        forecasts = [m.forecaster(HORIZON, mode) for m in ensemble.members.values()]
        each = [f.predict_windows(x) if mode == "window" else f.predict_at_rows(starts + LOOKBACK - 1) for f in forecasts]
        assert not np.allclose(each[0], each[1])  # the seeds made two different models
        mean = np.mean(each, axis=0)
        assert results[mode][0].mse == pytest.approx(float(np.mean((mean - y) ** 2)), rel=1e-5)
        for name, forecast in zip(ensemble.members, each):
            assert members[name][mode][0].mse == pytest.approx(float(np.mean((forecast - y) ** 2)), rel=1e-5)
    assert sorted(ensemble.members) == ["tiny_lstm_s0", "tiny_lstm_s1"]
    assert [m.config.seed for m in ensemble.members.values()] == [0, 1]
    summary = ensemble.summary(HORIZON)
    seconds = [m.models[HORIZON].summary["train_seconds"] for m in ensemble.members.values()]
    assert summary["train_seconds"] == pytest.approx(sum(seconds))  # an ensemble costs all its members


def test_validation_scoring_reads_the_validation_windows(ensemble):
    ensemble, _, _ = ensemble
    member = next(iter(ensemble.members.values()))
    forecasters = [m.forecaster(HORIZON, "window") for m in ensemble.members.values()]
    (val,) = evaluate_ett(member.series, MeanForecaster(forecasters), LOOKBACK, [HORIZON], part="val")
    val_start, val_stop = member.split.val
    starts = WindowIndex(len(member.series), LOOKBACK, HORIZON, start=val_start, stop=val_stop).starts()
    _, _, _, scaler = prepare_ett(member.series, LOOKBACK)
    x, y = gather_windows(member.series.values, starts, LOOKBACK, HORIZON, scaler=scaler)
    mean = np.mean([f.predict_windows(x) for f in forecasters], axis=0)
    assert val.windows == len(starts)
    assert val.mse == pytest.approx(float(np.mean((mean - y) ** 2)), rel=1e-5)
    assert ensemble.summary(HORIZON)["val_mse"] == pytest.approx(val.mse, rel=1e-6)
    with pytest.raises(ConfigError, match="part must be 'test' or 'val'"):
        evaluate_ett(member.series, "repeat", LOOKBACK, [HORIZON], part="train")


def test_a_baseline_joins_as_one_more_member_in_window_mode(folder, ensemble):
    trained, results, _ = ensemble
    with_nlinear = EttEnsemble([read_config(write_config(folder))], [0, 1], folder / "ett.csv", LOOKBACK, run_dir=folder / "ens",
                               reuse=True, baselines=["nlinear"])
    assert with_nlinear.modes == ("window",) and with_nlinear.name == "mean of tiny_lstm x2 + nlinear"
    mean, members = with_nlinear.evaluate([HORIZON], ["window"])
    member = next(iter(trained.members.values()))
    test_start, test_stop = member.split.test
    starts = WindowIndex(len(member.series), LOOKBACK, HORIZON, start=test_start, stop=test_stop).starts()
    _, _, _, scaler = prepare_ett(member.series, LOOKBACK)
    x, y = gather_windows(member.series.values, starts, LOOKBACK, HORIZON, scaler=scaler)
    nlinear = with_nlinear.baseline("nlinear", HORIZON)[0].predict_windows(x)
    assert members["nlinear"]["window"][0].mse == pytest.approx(evaluate_ett(member.series, "nlinear", LOOKBACK, [HORIZON])[0].mse)
    trained_forecasts = [m.forecaster(HORIZON, "window").predict_windows(x) for m in trained.members.values()]
    expected = np.mean(trained_forecasts + [nlinear], axis=0)  # one member among three, not a weight of its own
    assert mean["window"][0].mse == pytest.approx(float(np.mean((expected - y) ** 2)), rel=1e-5)
    assert mean["window"][0].mse != pytest.approx(results["window"][0].mse, rel=1e-4)
    with pytest.raises(ConfigError, match="scored in \\['window'\\]"):
        with_nlinear.evaluate([HORIZON], ["stream"])
    with pytest.raises(ConfigError, match="distinct names among"):
        EttEnsemble([read_config(write_config(folder))], [0], folder / "ett.csv", LOOKBACK, baselines=["nlinear", "arima"])


def windows_of(member, part: str):
    """The scaled windows `x`, `y` of the protocol's `part` ("val" or "test") at HORIZON."""
    start, stop = member.split.val if part == "val" else member.split.test
    starts = WindowIndex(len(member.series), LOOKBACK, HORIZON, start=start, stop=stop).starts()
    _, _, _, scaler = prepare_ett(member.series, LOOKBACK)
    return gather_windows(member.series.values, starts, LOOKBACK, HORIZON, scaler=scaler)


def test_validation_weights_blend_the_trained_mean_with_nlinear_at_the_weight_best_on_validation(folder, ensemble):
    trained, _, _ = ensemble
    blended = EttEnsemble([read_config(write_config(folder))], [0, 1], folder / "ett.csv", LOOKBACK, run_dir=folder / "ens",
                          reuse=True, baselines=["nlinear"], weights="validation")
    assert blended.name == "mean of tiny_lstm x2, blended with nlinear on validation"
    mean, _ = blended.evaluate([HORIZON], ["window"])
    weight = blended.summary(HORIZON)["baseline_weight"]
    nlinear = blended.baseline("nlinear", HORIZON)[0]
    member = next(iter(trained.members.values()))

    def blend_errors(part: str) -> np.ndarray:
        """The squared-error MSE of (1 - a) * trained mean + a * NLinear for a = 0, 0.01, ..., 1."""
        x, y = windows_of(member, part)
        recurrent = np.mean([m.forecaster(HORIZON, "window").predict_windows(x) for m in trained.members.values()], axis=0)
        linear = nlinear.predict_windows(x)
        return np.array([np.mean(((1 - a) * recurrent + a * linear - y) ** 2) for a in np.linspace(0, 1, 101)])

    on_validation, on_test = blend_errors("val"), blend_errors("test")
    assert 0.0 < weight < 1.0 and abs(weight - np.argmin(on_validation) / 100) <= 0.01  # the validation minimum ...
    assert abs(np.argmin(on_test) / 100 - np.argmin(on_validation) / 100) > 0.05  # ... which is not the test's here
    x, y = windows_of(member, "test")
    recurrent = np.mean([m.forecaster(HORIZON, "window").predict_windows(x) for m in trained.members.values()], axis=0)
    expected = (1 - weight) * recurrent + weight * nlinear.predict_windows(x)
    assert mean["window"][0].mse == pytest.approx(float(np.mean((expected - y) ** 2)), rel=1e-5)
    assert blended.summary(HORIZON)["val_mse"] == pytest.approx(float(on_validation.min()), rel=1e-3)
    assert blended.member_weights(HORIZON) == pytest.approx([(1 - weight) / 2, (1 - weight) / 2, weight])


@pytest.mark.parametrize("minimum, expected", [(0.3, 0.3), (0.85, 0.85), (-0.4, 0.0), (1.7, 1.0)])
def test_the_blend_weight_is_the_minimum_of_the_quadratic_through_three_values(minimum, expected):
    def mse(a):
        return 0.37 * (a - minimum) ** 2 + 0.41
    assert fit_blend_weight(mse(0.0), mse(0.5), mse(1.0)) == pytest.approx(expected, abs=1e-12)
    assert fit_blend_weight(0.41, 0.41, 0.41) == 0.5  # forecasts that do not differ


def test_validation_weights_need_a_baseline_and_a_known_name(folder):
    config = read_config(write_config(folder))
    with pytest.raises(ConfigError, match="got no baseline"):
        EttEnsemble([config], [0], folder / "ett.csv", LOOKBACK, weights="validation")
    with pytest.raises(ConfigError, match="ensemble weights must be one of \\('equal', 'validation'\\); got 'best'"):
        EttEnsemble([config], [0], folder / "ett.csv", LOOKBACK, baselines=["nlinear"], weights="best")
    with pytest.raises(ValueError, match="one weight per forecaster \\(2\\) summing to 1"):
        MeanForecaster([make_baseline("repeat", 2, None)] * 2, [0.5, 0.6])


def test_cli_validation_weights_show_and_save_the_fitted_weight(folder, ensemble, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = folder / "weighted"
    for name in ("tiny_lstm_s0", "tiny_lstm_s1"):  # the fixture's trained members, reused
        (out / name).mkdir(parents=True)
        (out / name / "runs").symlink_to(folder / "ens" / name / "runs")
    code = main(["eval", "ett", "--data", str(folder / "ett.csv"), "--model", f"{write_config(folder)},nlinear", "--seeds", "0,1",
                 "--lookback", str(LOOKBACK), "--horizons", str(HORIZON), "--out", str(out), "--resume", "--weights", "validation"])
    assert code == 0
    table = pd.read_csv(out / "ett_results.csv")
    weighted = table[table["model"] == "mean of tiny_lstm x2, blended with nlinear on validation"]
    assert len(weighted) == 1 and table["baseline_weight"].notna().sum() == 1
    weight = float(weighted["baseline_weight"].iloc[0])
    text = " ".join(capsys.readouterr().out.split())
    assert "reused" in text and f"mean, a={weight:.2f}" in text
    assert "a fitted on validation (so its val MSE is the fitted one)" in text  # not a fair rank against a plain mean


class CountingForecaster:
    """A window forecaster that counts the windows it is asked to forecast."""

    def __init__(self, forecaster, counts: list):
        self.forecaster, self.counts = forecaster, counts

    def predict_windows(self, x):
        self.counts.append(len(x))
        return self.forecaster.predict_windows(x)


def test_each_member_forecasts_each_test_window_once_per_horizon_and_mode(folder, ensemble, monkeypatch):
    """The mean reads the forecasts its members were scored with: in window mode a member
    forecasts the test windows once (and the validation windows once, for the mean's val MSE);
    in stream mode it runs one carried pass. The numbers are those of the fixture's ensemble."""
    trained, results, members = ensemble
    passes = []
    carried_pass = ett_trained.StreamForecaster._carried_pass
    monkeypatch.setattr(ett_trained.StreamForecaster, "_carried_pass", lambda self: passes.append(1) or carried_pass(self))
    again = EttEnsemble([read_config(write_config(folder))], [0, 1], folder / "ett.csv", LOOKBACK, run_dir=folder / "ens",
                        reuse=True)
    counts = {name: [] for name in again.members}

    def counting(real, seen):
        return lambda horizon, mode: CountingForecaster(real(horizon, mode), seen) if mode == "window" else real(horizon, mode)

    for name, member in again.members.items():
        member.forecaster = counting(member.forecaster, counts[name])
    scored, scored_members = again.evaluate([HORIZON], ["window", "stream"])
    test_windows = results["window"][0].windows
    (val,) = evaluate_ett(trained.series, "repeat", LOOKBACK, [HORIZON], part="val")
    for name in again.members:
        assert sum(counts[name]) == test_windows + val.windows, (name, counts[name])
        for mode in ("window", "stream"):
            assert scored_members[name][mode][0].mse == pytest.approx(members[name][mode][0].mse, rel=1e-6)
    assert len(passes) == len(again.members)  # one carried pass per member
    for mode in ("window", "stream"):
        assert scored[mode][0].mse == pytest.approx(results[mode][0].mse, rel=1e-6)
        assert scored[mode][0].windows == test_windows


def test_a_remembered_forecaster_computes_each_batch_once():
    calls = []
    kept = RememberedForecaster(CountingForecaster(make_baseline("repeat", 2, None), calls))
    x = np.arange(24, dtype=np.float32).reshape(3, 4, 2)
    first = kept.predict_windows(x)
    assert kept.predict_windows(x.copy()) is first and calls == [3]  # the same windows: kept
    np.testing.assert_array_equal(kept.predict_windows(x[:2]), first[:2])  # other windows: computed
    assert kept.predict_windows(x + 1)[0, 0, 0] == first[0, 0, 0] + 1 and calls == [3, 2, 3]


def test_resume_reuses_finished_members_and_refuses_another_config(folder, ensemble, monkeypatch):
    ensemble, results, _ = ensemble

    def no_training(*args, **kwargs):
        raise AssertionError("a finished member was trained again")

    monkeypatch.setattr(ett_trained, "fit_and_summarise", no_training)
    again = EttEnsemble([read_config(write_config(folder))], [0, 1], folder / "ett.csv", LOOKBACK, run_dir=folder / "ens",
                        reuse=True)
    resumed, _ = again.evaluate([HORIZON], ["window"])
    assert resumed["window"][0].mse == pytest.approx(results["window"][0].mse, rel=1e-6)
    first = json.loads((folder / "ens" / "tiny_lstm_s0" / "runs" / f"h{HORIZON}" / "protocol.json").read_text())
    assert again.summary(HORIZON)["train_seconds"] == pytest.approx(
        first["train_seconds"] + ensemble.members["tiny_lstm_s1"].models[HORIZON].summary["train_seconds"])
    changed = read_config(write_config(folder), ["model.units=5"])
    with pytest.raises(ConfigError, match="trained with another config"):
        EttEnsemble([changed], [0], folder / "ett.csv", LOOKBACK, run_dir=folder / "ens", reuse=True).evaluate([HORIZON], ["window"])


def test_cli_ensemble_of_two_configs_writes_members_and_the_mean(folder, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    first = write_config(folder)
    second = folder / "tiny_twin.toml"
    second.write_text(first.read_text().replace("seed = 0", "seed = 3"))
    out = folder / "cli"
    code = main(["eval", "ett", "--data", str(folder / "ett.csv"), "--model", f"{first},{second},nlinear", "--lookback",
                 str(LOOKBACK), "--horizons", str(HORIZON), "--mode", "window", "--drop-last-batch", "32", "--out", str(out)])
    assert code == 0
    table = pd.read_csv(out / "ett_results.csv")
    assert set(table["model"]) == {"mean of tiny_lstm x1 + tiny_twin x1 + nlinear", "tiny_lstm_s0", "tiny_twin_s3", "nlinear"}
    assert len(set(table["windows"])) == 2  # all test windows, and the last batch of 32 dropped
    member = pd.read_csv(out / "tiny_twin_s3" / "ett_results.csv")
    assert set(member["model"]) == {"tiny_twin_s3"} and len(member) == 2
    assert (out / "tiny_lstm_s0" / "runs" / f"h{HORIZON}" / "checkpoints" / "best.npz").exists()
    text = " ".join(capsys.readouterr().out.split())
    assert "mean of tiny_lstm x1 + tiny_twin x1 + nlinear" in text


def test_cli_resume_says_a_horizon_was_reused_not_trained(folder, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    command = ["eval", "ett", "--data", str(folder / "ett.csv"), "--model", str(write_config(folder)), "--lookback",
               str(LOOKBACK), "--horizons", str(HORIZON), "--mode", "window", "--out", str(folder / "resumed"), "--resume"]
    assert main(command) == 0
    first = " ".join(capsys.readouterr().out.split())
    assert f"H={HORIZON}: trained " in first and "reused" not in first
    assert main(command) == 0
    again = " ".join(capsys.readouterr().out.split())
    epochs = first.split(f"H={HORIZON}: trained ")[1].split(" s,")[0]  # "N epochs in S"
    assert f"H={HORIZON}: reused (trained {epochs} s earlier), best epoch" in again


def test_the_announce_line_stays_one_line_at_80_columns():
    out = io.StringIO()
    summary = {"epochs_run": 10, "train_seconds": 344.4, "best_epoch": 7, "val_mse": 0.63161, "reused": True}
    _announce(Console(file=out, width=80), "H=720 ett_segment_segrnn512_s0", summary)
    assert out.getvalue() == ("H=720 ett_segment_segrnn512_s0: reused (trained 10 epochs in 344 s earlier), "
                              "best epoch 7 (validation MSE 0.6316)\n")


def test_the_announce_line_names_the_values_of_the_horizon_table():
    out = io.StringIO()
    summary = {"epochs_run": 8, "train_seconds": 69.0, "best_epoch": 5, "val_mse": 1.51129,
               "horizon_values": {"train.learning_rate": 0.0001}}
    _announce(Console(file=out, width=80), "H=720", summary)
    assert out.getvalue() == "H=720: trained 8 epochs in 69 s with train.learning_rate=0.0001, best epoch 5 (validation MSE 1.5113)\n"


@pytest.mark.parametrize("arguments, message", [
    (["--model", "repeat,nlinear", "--seeds", "0,1"], "needs a training config .toml"),
    (["--model", "{config}", "--seeds", "0,0"], "distinct seeds"),
    (["--model", "{config}", "--seeds", "0,-1"], "--seeds must be comma-separated integers >= 0"),
    (["--model", "{config},{config}"], "different file names"),
    (["--model", "{config}", "--weights", "validation"], "--weights applies to an ensemble"),
    (["--model", "{config}", "--seeds", "0", "--weights", "validation"], "got no baseline"),
    (["--model", "{config},nlinear", "--weights", "mean"], "ensemble weights must be one of"),
])
def test_cli_ensemble_errors(folder, capsys, arguments, message):
    config = str(write_config(folder))
    arguments = [a.replace("{config}", config) for a in arguments]
    assert main(["eval", "ett", "--data", str(folder / "ett.csv"), "--lookback", str(LOOKBACK), "--horizons", "6", *arguments]) == 2
    assert message in " ".join(capsys.readouterr().err.split())


def table_row(model: str, mode: str = "window", windows: int = 2785, val_mse=None) -> dict:
    return {"horizon": 720, "mode": mode, "model": model, "mse": 0.4553, "mae": 0.4512, "windows": windows,
            "val_mse": val_mse, "train_seconds": 1234.0}


def rendered(table) -> list[str]:
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text().splitlines()


def test_the_ensemble_table_keeps_member_names_whole_at_80_columns():
    name = "mean of ett_segment_segrnn x3 + nlinear"
    members = ["ett_segment_segrnn_s0", "ett_segment_segrnn_s1", "ett_segment_segrnn_s2", "nlinear"]
    rows = [table_row(model, mode, windows, 0.7 if model == name else None)
            for mode in ("stream", "window") for windows in (2785, 2784) for model in [name, *members]]
    lines = rendered(ensemble_table(name, rows))
    assert max(len(line) for line in lines) <= 80 and not any("…" in line for line in lines)
    assert lines[0].strip() == name  # the title names the ensemble; its rows say "mean"
    table_rows = [line.split() for line in lines if line.lstrip().startswith("720 ")]
    assert len(table_rows) == len(rows)  # one line each: nothing wrapped
    assert [row[2] for row in table_rows] == ["mean" if row["model"] == name else row["model"] for row in rows]
    assert all(len(row) == 8 - (row[2] != "mean") for row in table_rows)  # every column whole (val MSE only for the mean)


def test_a_member_name_too_long_for_80_columns_is_folded_not_cut():
    long_name = "ett_segment_segrnn_l720_wide_dropout_s10"
    lines = rendered(ensemble_table("mean of x", [table_row("mean of x"), table_row(long_name)]))
    assert not any("…" in line for line in lines)
    first = next(i for i, line in enumerate(lines) if long_name[:12] in line)
    column = lines[first].index(long_name[:12])
    pieces = [line[column:].split()[0] for line in lines[first:] if len(line) > column and line[column] != " "]
    assert "".join(pieces).startswith(long_name) and len(pieces) > 1
