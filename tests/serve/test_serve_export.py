"""Exported single-step artefacts (keras, SavedModel, TFLite) give the streaming predictions."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest

from longstm.errors import ConfigError
from longstm.serve.export import SavedModelStep, TFLiteStep, export_predictor, export_run
from longstm.models.hierarchical import HierarchicalLSTM
from longstm.models.protocol import Forecaster
from longstm.serve.predictor import StreamingPredictor
from longstm.serve.step_model import StreamingStep
from tests.serve.run_fixture import make_run

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("export_run"))


@pytest.fixture(scope="module")
def scaled_ticks(run_dir):
    """Twenty scaled feature rows of the run's data and the streaming predictions (scaled units)."""
    predictor = StreamingPredictor.from_run(run_dir)
    raw = pd.read_csv(run_dir.parent / "etth1.csv", nrows=20)[predictor.column_names].to_numpy()
    scaled = ((raw - predictor.scaler.mean) / predictor.scaler.scale)[:, predictor.feature_columns].astype(np.float32)
    plain = StreamingPredictor(predictor.model)  # no scaler: the artefacts work in scaled units
    return raw, scaled, plain.update_many(scaled)


@pytest.mark.parametrize("format, name", [("keras", "step.keras"), ("savedmodel", "step_savedmodel"), ("tflite", "step.tflite")])
def test_exported_artefact_gives_the_streaming_predictions(run_dir, scaled_ticks, tmp_path, format, name):
    raw, scaled, expected = scaled_ticks
    path = export_run(run_dir, format, tmp_path / name)
    if format == "keras":
        loaded = StreamingPredictor.from_saved(path)  # metadata travels inside: raw rows in, data units out
        from_raw = loaded.update_many(raw)
        np.testing.assert_allclose(from_raw, StreamingPredictor.from_run(run_dir).update_many(raw), rtol=1e-5, atol=1e-4)
        step = keras.saving.load_model(path)
        assert isinstance(step, StreamingStep)
        state = step.zero_state(1)
        got = []
        for x_t in scaled:
            outputs = step([x_t[None], *state])
            got.append(np.asarray(outputs[0])[0])
            state = outputs[1:]
        got = np.stack(got)
    else:
        runner = SavedModelStep(path) if format == "savedmodel" else TFLiteStep(path)
        got = np.stack([runner(x_t[None])[0] for x_t in scaled])
        meta = json.loads(((path / "longstm_stream.json") if format == "savedmodel" else path.with_name(path.name + ".json")).read_text())
        if format == "tflite":
            assert meta["tflite_ops"] == "TFLITE_BUILTINS"  # an LSTM/GRU step needs no TensorFlow ops
        assert meta["target_columns"] == [6, 0] and meta["horizon"] == 2 and meta["state_shapes"] == [[6], [6], [6], [6]]
    assert np.abs(got - expected).max() < TOLERANCE


def test_savedmodel_takes_any_batch(run_dir, scaled_ticks, tmp_path):
    _, scaled, expected = scaled_ticks
    path = export_run(run_dir, "savedmodel", tmp_path / "sm")
    runner = SavedModelStep(path, batch=3)
    got = np.stack([runner(np.repeat(x_t[None], 3, axis=0)) for x_t in scaled[:5]])
    assert np.abs(got - expected[:5, None]).max() < TOLERANCE


def test_hierarchical_exports_to_keras(tmp_path):
    keras.utils.set_random_seed(7)
    model = Forecaster(HierarchicalLSTM([(4, 2), (4, 1)], mode="sequential"), outputs=1)
    x = np.random.default_rng(2).normal(size=(1, 8, 3)).astype(np.float32)
    expected, _ = model(x)
    predictor = StreamingPredictor(model)
    loaded = StreamingPredictor.from_saved(export_predictor(predictor, tmp_path / "h.keras", "keras"))
    assert np.abs(loaded.update_many(x[0]) - np.asarray(expected)[0]).max() < TOLERANCE


def test_export_cli_and_bad_arguments(run_dir, tmp_path, capsys):
    from longstm.cli import main

    assert main(["export", str(run_dir), "--format", "keras", "--out", str(tmp_path / "cli.keras")]) == 0
    assert (tmp_path / "cli.keras").is_file()
    assert main(["export", str(run_dir), "--format", "onnx"]) == 2
    assert "--format must be one of savedmodel, keras, tflite; got 'onnx'" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--format", "keras", "--out", str(tmp_path / "x.h5")]) == 2
    assert "--format keras writes a .keras file" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--format", "keras"]) == 2
    assert "not a run directory" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="expected an existing .keras file"):
        StreamingPredictor.from_saved(tmp_path / "missing.keras")


@pytest.mark.parametrize("family", ["attention", "minlstm"])
def test_attention_and_minlstm_convert_to_builtin_tflite(family, tmp_path):
    from longstm.models.attention import AttentionLSTM
    from longstm.models.minrnn import MinLSTM

    keras.utils.set_random_seed(8)
    if family == "attention":
        core = AttentionLSTM(8, heads=2, memory=4, window=5)
    else:
        core = MinLSTM(8)
    model = Forecaster(core, outputs=1)
    x = np.random.default_rng(3).normal(size=(1, 10, 3)).astype(np.float32)
    expected = np.asarray(model(x)[0])[0]
    path = export_predictor(StreamingPredictor(model), tmp_path / f"{family}.tflite", "tflite")
    assert json.loads(path.with_name(path.name + ".json").read_text())["tflite_ops"] == "TFLITE_BUILTINS"
    runner = TFLiteStep(path)
    got = np.stack([runner(x[:, t])[0] for t in range(10)])
    assert np.abs(got - expected).max() < TOLERANCE


def test_from_saved_takes_a_plain_protocol_model(tmp_path):
    from longstm.models.protocol import KerasRNNStack

    keras.utils.set_random_seed(9)
    model = Forecaster(KerasRNNStack([keras.layers.GRU(6)]), outputs=2)
    x = np.random.default_rng(4).normal(size=(1, 6, 3)).astype(np.float32)
    expected = np.asarray(model(x)[0])[0]
    model.save(tmp_path / "plain.keras")
    predictor = StreamingPredictor.from_saved(tmp_path / "plain.keras")
    assert predictor.scaler is None  # no metadata: scaled units in and out
    assert np.abs(predictor.update_many(x[0]) - expected).max() < TOLERANCE
