"""Every family that can stream exports to `.keras`, SavedModel and TFLite with the model's own predictions.

Each cell: a tiny model (4 units, 3 features, random weights), its batch predictions over 8 steps
(`model(x)`, the whole chunk at once) against the exported artefact stepped tick by tick with its
state carried. A family that cannot stream is refused with one line naming the format.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from longstm.cli import main
from longstm.errors import ConfigError
from longstm.models.attention import AttentionLSTM
from longstm.models.heads import QuantileHead
from longstm.models.hierarchical import HierarchicalLSTM
from longstm.models.lags import LinearLagSkip
from longstm.models.minrnn import MinGRU, MinLSTM
from longstm.models.minrnn_stack import MinRNNStack
from longstm.models.protocol import Forecaster, KerasRNNStack
from longstm.models.stacked import StackedLSTM
from longstm.serve.export import SavedModelStep, TFLiteStep, export_model
from longstm.serve.predictor import StreamingPredictor
from tests.serve.run_fixture import make_run

# float32 arithmetic in another order (TFLite kernels, a traced graph) over 8 steps of a 4-unit
# model differs from the batch call by < 1e-6 (measured: at most 6.6e-7, the attention model
# in TFLite); 1e-5 leaves room and still catches a dropped state or a wrong head (errors ~0.1).
TOLERANCE = 1e-5
FEATURES, STEPS = 3, 8

FAMILIES = {
    "lstm": lambda: Forecaster(KerasRNNStack([keras.layers.LSTM(4), keras.layers.LSTM(4)]), outputs=2),
    "gru": lambda: Forecaster(KerasRNNStack([keras.layers.GRU(4)]), outputs=2),
    "stacked_lstm": lambda: Forecaster(StackedLSTM(4, layers=2, residual=True, layer_norm=True), outputs=2),
    "hierarchical_sequential": lambda: Forecaster(HierarchicalLSTM([(4, 2), (4, 1)], mode="sequential"), outputs=1),
    "attention_windowed": lambda: Forecaster(AttentionLSTM(4, heads=2, memory=3, window=4), outputs=1),
    "minlstm": lambda: Forecaster(MinLSTM(4), outputs=1),
    "mingru": lambda: Forecaster(MinGRU(4), outputs=1),
    "minrnn_stack": lambda: Forecaster(MinRNNStack(4, layers=2, cell="mingru"), outputs=1),
    "linear_lag_skip": lambda: Forecaster(
        LinearLagSkip(KerasRNNStack([keras.layers.LSTM(4)]), lags=3, width=4, features=FEATURES), outputs=1
    ),
    "quantile_head": lambda: Forecaster(KerasRNNStack([keras.layers.LSTM(4)]), head=QuantileHead((0.1, 0.5, 0.9), horizons=2)),
    "residual_head": lambda: Forecaster(KerasRNNStack([keras.layers.GRU(4)]), outputs=2, residual_inputs=[0]),
}
FORMATS = {"keras": "step.keras", "savedmodel": "step_savedmodel", "tflite": "step.tflite"}


def _ticks() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(1, STEPS, FEATURES)).astype(np.float32)


def _stepped(path: Path, format: str, x: np.ndarray) -> np.ndarray:
    """The artefact at `path` run one tick at a time over `x[0]`, its state carried between ticks."""
    if format == "keras":
        step = keras.saving.load_model(path)  # the StreamingStep itself (from_saved may run it on the NumPy engine)
        state, outputs = step.zero_state(1), []
        for t in range(x.shape[1]):
            prediction, *state = step([x[:, t], *state])
            outputs.append(np.asarray(prediction)[0])
        return np.stack(outputs)
    runner = SavedModelStep(path) if format == "savedmodel" else TFLiteStep(path)
    return np.stack([runner(x[:, t])[0] for t in range(x.shape[1])])


@pytest.mark.parametrize("format", list(FORMATS))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_exported_family_gives_the_batch_predictions(family, format, tmp_path):
    keras.utils.set_random_seed(3)
    model = FAMILIES[family]()
    x = _ticks()
    expected = np.asarray(model(x)[0])[0]
    path = export_model(model, tmp_path / FORMATS[format], format)
    got = np.asarray(_stepped(path, format, x))
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < TOLERANCE
    if format == "keras":  # what a user loads: StreamingPredictor.from_saved, whichever engine it picks
        assert np.abs(StreamingPredictor.from_saved(path).update_many(x[0]) - expected).max() < TOLERANCE
    # the artefact carries state: the last tick alone, from a zero state, is not what it gave
    assert np.abs(np.asarray(_stepped(path, format, x[:, -1:]))[-1] - expected[-1]).max() > 1e-3
    if format == "tflite":  # every streaming family's step is plain arithmetic: no TensorFlow ops in the flat buffer
        assert json.loads(Path(str(path) + ".json").read_text())["tflite_ops"] == "TFLITE_BUILTINS"


@pytest.mark.parametrize("format", list(FORMATS))
def test_a_family_that_cannot_stream_is_refused_in_one_line(format, tmp_path):
    model = Forecaster(HierarchicalLSTM([(4, 2), (4, 1)], mode="parallel"), outputs=1)
    model(_ticks())
    with pytest.raises(ConfigError) as caught:
        export_model(model, tmp_path / FORMATS[format], format)
    message = str(caught.value)
    assert "\n" not in message
    assert f"cannot export to {format}: HierarchicalLSTM(mode='parallel') cannot stream" in message
    assert not (tmp_path / FORMATS[format]).exists()


def test_exporting_a_run_that_cannot_stream_is_one_cli_line(tmp_path, capsys):
    run_dir = make_run(tmp_path, rows=80, model_name="hierarchical_lstm")  # default levels: parallel mode
    assert main(["export", str(run_dir), "--format", "tflite", "--out", str(tmp_path / "h.tflite")]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert f"{run_dir}: cannot export to tflite: HierarchicalLSTM(mode='parallel') cannot stream" in err
    assert "Traceback" not in err and not (tmp_path / "h.tflite").exists()
