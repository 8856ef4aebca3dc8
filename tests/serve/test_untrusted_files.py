"""Files from elsewhere never run code: a `.keras` file with a `Lambda` layer and `.npz` files holding
pickled objects are refused with one line, and the code they carry (it writes a marker file) never runs.

Each crafted file comes with a control that shows the code it carries does run when loaded unsafely,
so the refusal is what keeps the marker from appearing.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from longstm.cli import main
from longstm.errors import ConfigError, DataValidationError, TrainingError
from longstm.models.protocol import Forecaster, KerasRNNStack
from longstm.serve.predictor import StreamingPredictor
from longstm.train.checkpoint import load_weights
from tests.serve.run_fixture import make_run


class _WritesMarker:
    """Unpickling this object opens (creates) the marker file: code run by `pickle.load`."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _marker_writing_lambda(marker: Path):
    # the path is a literal in the lambda's code (Keras saves a lambda's bytecode, not its closure)
    code = eval(f"lambda y: (__import__('pathlib').Path({str(marker)!r}).write_text('ran'), y)[1]")  # noqa: S307
    return keras.layers.Lambda(code, name="payload")


def _tiny_model(seed: int, layer=keras.layers.GRU, **head):
    keras.utils.set_random_seed(seed)
    model = Forecaster(KerasRNNStack([layer(4)]), **(head or {"outputs": 1}))
    model(np.zeros((1, 2, 3), np.float32))
    return model


def _refused(load, error, message: str, marker: Path) -> None:
    """`load()` raises `error` with exactly `message` (one line), and the crafted code never ran."""
    with pytest.raises(error) as caught:
        load()
    assert str(caught.value) == message
    assert not marker.exists()


def _with_a_pickle(path: Path, key: str, marker: Path) -> Path:
    """`path` (an `.npz`) rewritten with its array `key` replaced by pickled objects of the same shape."""
    with np.load(path) as arrays:
        contents = {name: arrays[name] for name in arrays.files}
    shape = contents[key].shape
    contents[key] = np.array([_WritesMarker(marker)] * int(np.prod(shape)), dtype=object).reshape(shape)
    np.savez(path, **contents)
    return path


def _lambda_file(kind: str, folder: Path, marker: Path) -> Path:
    """A `.keras` file whose Lambda layer writes `marker` when the layer is built or called."""
    keras.utils.set_random_seed(11)
    if kind == "sequential":
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), _marker_writing_lambda(marker)])
    else:  # a longstm Forecaster whose head is the Lambda
        model = _tiny_model(11, head=_marker_writing_lambda(marker))
    path = folder / f"{kind}.keras"
    model.save(path)
    marker.unlink(missing_ok=True)  # building the model above ran the lambda once, in this process
    return path


@pytest.mark.parametrize("kind", ["sequential", "forecaster"])
def test_a_keras_file_with_a_lambda_layer_is_refused_and_runs_nothing(kind, tmp_path):
    marker = tmp_path / "marker"
    path = _lambda_file(kind, tmp_path, marker)
    message = (
        f"{path}: holds a Lambda layer (Python code); longstm never runs code from a model file, so it refuses "
        f"this one. Rebuild the model without Lambda layers"
    )
    _refused(lambda: StreamingPredictor.from_saved(path), ConfigError, message, marker)


def test_control_the_crafted_lambda_file_runs_its_code_when_loaded_unsafely(tmp_path):
    marker = tmp_path / "marker"
    path = _lambda_file("sequential", tmp_path, marker)
    keras.saving.load_model(path, safe_mode=False)  # what a loader without safe mode would do
    assert marker.read_text() == "ran"


def test_a_damaged_keras_file_is_one_line(tmp_path):
    _tiny_model(12).save(tmp_path / "good.keras")
    cut = tmp_path / "cut.keras"
    cut.write_bytes((tmp_path / "good.keras").read_bytes()[:300])
    with pytest.raises(ConfigError, match=r"cut.keras: not a readable .keras file \(") as caught:
        StreamingPredictor.from_saved(cut)
    assert "\n" not in str(caught.value)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("untrusted_run"), rows=80)


def test_control_the_crafted_npz_runs_its_code_when_unpickled(tmp_path):
    marker = tmp_path / "marker"
    np.savez(tmp_path / "x.npz", payload=np.zeros(1))
    with np.load(_with_a_pickle(tmp_path / "x.npz", "payload", marker), allow_pickle=True) as arrays:
        arrays["payload"]
    assert marker.exists()


def test_a_run_directory_with_pickled_weights_is_refused_and_runs_nothing(run_dir, tmp_path, capsys):
    marker = tmp_path / "marker"
    best = run_dir / "checkpoints" / "best.npz"
    original = best.read_bytes()
    _with_a_pickle(best, "model_0", marker)
    try:
        with pytest.raises(ConfigError) as caught:
            StreamingPredictor.from_run(run_dir)
        assert str(caught.value).startswith(f"{best}: the weights file holds pickled Python objects, which longstm never loads")
        assert "\n" not in str(caught.value)
        assert main(["export", str(run_dir), "--format", "keras", "--out", str(tmp_path / "x.keras")]) == 2
        err = capsys.readouterr().err
        assert "holds pickled Python objects" in err and "Traceback" not in err
        assert not (tmp_path / "x.keras").exists()
    finally:
        best.write_bytes(original)
    assert not marker.exists()
    StreamingPredictor.from_run(run_dir)  # the restored file loads: the refusal was the pickle's


def test_a_checkpoint_with_a_pickled_object_is_refused_when_training_reads_it(tmp_path):
    marker = tmp_path / "marker"
    model = _tiny_model(14)
    best = tmp_path / "best.npz"
    np.savez(best, **{f"model_{i}": np.asarray(v) for i, v in enumerate(model.variables)})
    message = (
        f"{_with_a_pickle(best, 'model_1', marker)}: the checkpoint file holds pickled Python objects, which longstm "
        f"never loads (unpickling a file can run any code); train again without --resume (or delete the checkpoints "
        f"folder) to start over"
    )
    _refused(lambda: load_weights(model, best), TrainingError, message, marker)


def test_a_state_file_with_a_pickled_object_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "marker"
    predictor = StreamingPredictor(_tiny_model(13, keras.layers.LSTM))
    saved = _with_a_pickle(predictor.save_state(tmp_path / "state.npz"), "model_0", marker)
    message = (
        f"{saved}: the state file holds pickled Python objects, which longstm never loads (unpickling a file can "
        f"run any code); save the state again"
    )
    _refused(lambda: predictor.restore_state(saved), DataValidationError, message, marker)
