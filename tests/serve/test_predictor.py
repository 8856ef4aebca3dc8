"""StreamingPredictor: per-tick predictions equal the batch model's, state handling, bad input, run directories."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

from longstm.errors import ConfigError, DataValidationError
from longstm.models.attention import AttentionLSTM
from longstm.models.hierarchical import HierarchicalLSTM
from longstm.models.minrnn import MinGRU, MinLSTM
from longstm.models.minrnn_stack import MinRNNStack
from longstm.models.protocol import Forecaster, KerasRNNStack
from longstm.models.stacked import StackedLSTM
from longstm.data.features import FeaturePipeline
from longstm.serve import NumpyRNNStack, StreamingPredictor
from tests.serve.run_fixture import make_run

TOLERANCE = 1e-5
N, T, F = 3, 24, 4


def _minrnn(kind):
    if kind == "minlstm":
        return MinLSTM(12)
    if kind == "mingru":
        return MinGRU(12, mode="sequential")
    return MinRNNStack(12, layers=2, cell="minlstm")


FAMILIES = {
    "keras_lstm_x2": lambda: KerasRNNStack([keras.layers.LSTM(12), keras.layers.LSTM(8)]),
    "keras_gru": lambda: KerasRNNStack([keras.layers.GRU(12)]),
    "keras_lstm_gru": lambda: KerasRNNStack([keras.layers.LSTM(8), keras.layers.GRU(6)]),
    "stacked": lambda: StackedLSTM(12, layers=2),
    "stacked_residual_norm": lambda: StackedLSTM(12, layers=2, residual=True, layer_norm=True),
    "hierarchical_sequential": lambda: HierarchicalLSTM([(8, 4), (6, 3), (5, 1)], mode="sequential"),
    "attention_window": lambda: AttentionLSTM(12, heads=2, memory=6, window=5),
    "minlstm": lambda: _minrnn("minlstm"),
    "mingru": lambda: _minrnn("mingru"),
    "minrnn_stack": lambda: _minrnn("stack"),
}


def _per_column(transforms):
    """The pipeline of one transform per column (the saved runs' former "causal" features)."""
    return FeaturePipeline([{"kind": "per_column", "transforms": transforms}], [f"x{i}" for i in range(len(transforms))])


def _batch(model, x):
    y, _ = model(x, state=model.initial_state(x.shape[0]))
    return np.asarray(y)


def _stream(predictor, x):
    """(N, T, F) through update() one tick at a time -> (N, T, outputs)."""
    return np.stack([predictor.update(x[:, t]) for t in range(x.shape[1])], axis=1)


@pytest.fixture(scope="module")
def inputs():
    return np.random.default_rng(0).normal(size=(N, T, F)).astype(np.float32)


def _head(name):
    from longstm.models.heads import MultiHorizonHead, QuantileHead

    return {"dense": None, "multi_horizon": MultiHorizonHead(3, 2, hidden=5), "quantile": QuantileHead((0.1, 0.5, 0.9), 2, 1)}[name]


@pytest.mark.parametrize(
    "family, head", [(family, "dense") for family in sorted(FAMILIES)] + [("stacked", "multi_horizon"), ("keras_gru", "quantile")]
)
def test_streaming_equals_batch_model(family, head, inputs):
    keras.utils.set_random_seed(1)
    model = Forecaster(FAMILIES[family](), head=_head(head), outputs=2)
    expected = _batch(model, inputs)
    engines = ["tf"] + (["numpy"] if NumpyRNNStack.supports(model) else [])
    for engine in engines:
        predictor = StreamingPredictor(model, n_instruments=N, engine=engine)
        got = _stream(predictor, inputs)
        assert np.abs(got - expected).max() < TOLERANCE, (family, engine)
        # update_many continues from the carried state exactly like single ticks do.
        again = StreamingPredictor(model, n_instruments=N, engine=engine)
        first = again.update_many(np.swapaxes(inputs[:, :10], 0, 1))
        rest = again.update_many(np.swapaxes(inputs[:, 10:], 0, 1))
        both = np.swapaxes(np.concatenate([first, rest]), 0, 1)
        assert np.abs(both - expected).max() < TOLERANCE, (family, engine)
        assert list(again.ticks) == [T] * N


def test_numpy_engine_is_chosen_for_lstm_stacks_and_refused_elsewhere():
    lstm = Forecaster(KerasRNNStack([keras.layers.LSTM(4)]), outputs=1)
    lstm(np.zeros((1, 1, 2), np.float32))
    assert StreamingPredictor(lstm).engine == "numpy"
    attention = Forecaster(AttentionLSTM(4, heads=1, memory=2, window=3), outputs=1)
    attention(np.zeros((1, 1, 2), np.float32))
    assert StreamingPredictor(attention).engine == "tf"
    with pytest.raises(ConfigError, match="NumPy streaming engine cannot run this model: its core AttentionLSTM"):
        StreamingPredictor(attention, engine="numpy")
    tanh_head = Forecaster(KerasRNNStack([keras.layers.LSTM(4)]), head=keras.layers.Dense(1, activation="tanh"))
    tanh_head(np.zeros((1, 1, 2), np.float32))
    assert "non-linear activation" in NumpyRNNStack.unsupported_reason(tanh_head)


@pytest.mark.parametrize(
    "core, message",
    [
        (lambda: HierarchicalLSTM([(4, 2), (4, 1)], mode="parallel"), "mode='parallel'.*cannot stream"),
        (lambda: HierarchicalLSTM([(4, 2), (4, 1)], mode="sequential", outputs="per_summary"), "per_summary"),
        (lambda: AttentionLSTM(4, heads=1, memory=4), r"window=None\) cannot stream.*window <= memory \+ 1 = 5"),
        (lambda: KerasRNNStack([keras.layers.LSTM(4, go_backwards=True)]), r"run backwards in time \(go_backwards=True\)"),
    ],
)
def test_models_that_cannot_stream_are_refused(core, message):
    model = Forecaster(core(), outputs=1)
    model(np.zeros((1, 4, 2), np.float32))
    with pytest.raises(ConfigError, match=message):
        StreamingPredictor(model)


def test_bad_arguments_are_refused():
    model = Forecaster(KerasRNNStack([keras.layers.LSTM(4)]), outputs=1)
    with pytest.raises(ConfigError, match="needs a built model"):
        StreamingPredictor(model)
    model(np.zeros((1, 1, 2), np.float32))
    with pytest.raises(ConfigError, match="n_instruments must be an integer >= 1; got 0"):
        StreamingPredictor(model, n_instruments=0)
    with pytest.raises(ConfigError, match="engine must be one of"):
        StreamingPredictor(model, engine="xla")
    with pytest.raises(ConfigError, match="needs a longstm RecurrentModel"):
        StreamingPredictor(keras.Sequential([keras.layers.Dense(1)]))
    with pytest.raises(ConfigError, match="reads 2 features per step but .* give 3"):
        StreamingPredictor(model, feature_columns=[0, 1, 2])
    with pytest.raises(ConfigError, match="horizon must be an integer >= 1; got 0"):
        StreamingPredictor(model, horizon=0)
    from longstm.data import StandardScaler

    with pytest.raises(ConfigError, match="scaler is not fitted"):
        StreamingPredictor(model, scaler=StandardScaler())
    scaler = StandardScaler().fit(np.random.default_rng(0).normal(size=(10, 3)))
    with pytest.raises(ConfigError, match="scaler has 3 columns but the feature pipeline gives 2"):
        StreamingPredictor(model, scaler=scaler, feature_pipeline=_per_column(["value", "diff"]))
    with pytest.raises(ConfigError, match=r"feature_columns must be column indices in \[0, 3\); got \[0, 3\]"):
        StreamingPredictor(model, scaler=scaler, feature_columns=[0, 3])
    with pytest.raises(ConfigError, match="gives 1 outputs per step but target_columns x horizon = 1 x 2 = 2"):
        StreamingPredictor(model, scaler=scaler, feature_columns=[0, 2], target_columns=[1], horizon=2)
    chosen = StreamingPredictor(model, feature_columns=[2, 0])  # no scaler: rows need at least 3 columns
    assert chosen.update(np.arange(5.0)).shape == (1,)
    with pytest.raises(DataValidationError, match=r"x_t must have shape .*\(\.\.\., 1, >2\); got \(1, 2\)"):
        chosen.update(np.zeros(2))


@pytest.fixture
def lstm_model():
    keras.utils.set_random_seed(2)
    model = Forecaster(KerasRNNStack([keras.layers.LSTM(8), keras.layers.GRU(6)]), outputs=2)
    model(np.zeros((1, 1, F), np.float32))
    return model


@pytest.mark.parametrize("engine", ["numpy", "tf"])
def test_bad_ticks_raise_and_leave_the_state_unchanged(lstm_model, inputs, engine):
    predictor = StreamingPredictor(lstm_model, n_instruments=N, engine=engine)
    clean = StreamingPredictor(lstm_model, n_instruments=N, engine=engine)
    for t in range(5):
        predictor.update(inputs[:, t])
        clean.update(inputs[:, t])
    with pytest.raises(DataValidationError, match=r"x_t must have shape .*\(\.\.\., 3, 4\); got \(3, 5\)"):
        predictor.update(np.zeros((N, F + 1)))
    bad = inputs[:, 5].copy()
    bad[1, 2] = np.nan
    with pytest.raises(DataValidationError, match="non-finite value nan at instrument=1, column=2; the state was not changed"):
        predictor.update(bad)
    many = np.swapaxes(inputs[:, 5:9], 0, 1).copy()
    many[2, 0, 3] = np.inf
    with pytest.raises(DataValidationError, match="xs has a non-finite value inf at tick=2, instrument=0, column=3"):
        predictor.update_many(many)
    np.testing.assert_array_equal(predictor.update(inputs[:, 5]), clean.update(inputs[:, 5]))
    assert list(predictor.ticks) == [6] * N


def test_one_instrument_takes_and_gives_flat_rows(lstm_model, inputs):
    predictor = StreamingPredictor(lstm_model)
    row = predictor.update(inputs[0, 0])
    assert row.shape == (2,)
    assert predictor.update_many(inputs[0, 1:4]).shape == (3, 2)
    np.testing.assert_allclose(
        np.concatenate([row[None], StreamingPredictor(lstm_model).update_many(inputs[0, :4])[1:]]),
        _batch(lstm_model, inputs[:1, :4])[0],
        atol=TOLERANCE,
    )


@pytest.mark.parametrize("engine", ["numpy", "tf"])
def test_save_and_restore_state_continue_exactly(lstm_model, inputs, tmp_path, engine):
    predictor = StreamingPredictor(lstm_model, n_instruments=N, engine=engine)
    predictor.warm_up(np.swapaxes(inputs[:, :12], 0, 1))
    path = predictor.save_state(tmp_path / "state.npz")
    continued = predictor.update_many(np.swapaxes(inputs[:, 12:], 0, 1))
    restored = StreamingPredictor(lstm_model, n_instruments=N, engine="tf" if engine == "numpy" else "numpy")
    restored.restore_state(path)
    assert list(restored.ticks) == [12] * N
    np.testing.assert_allclose(restored.update_many(np.swapaxes(inputs[:, 12:], 0, 1)), continued, atol=TOLERANCE)
    # The state property round-trips too.
    copy = StreamingPredictor(lstm_model, n_instruments=N, engine=engine)
    copy.state = predictor.state
    np.testing.assert_allclose(copy.update(inputs[:, 0]), predictor.update(inputs[:, 0]), atol=TOLERANCE)


def test_restoring_a_state_of_another_shape_is_refused(lstm_model, tmp_path):
    path = StreamingPredictor(lstm_model, n_instruments=2).save_state(tmp_path / "two.npz")
    with pytest.raises(DataValidationError, match=r"two.npz: streaming state does not fit this model and 3 instruments"):
        StreamingPredictor(lstm_model, n_instruments=3).restore_state(path)
    other = Forecaster(KerasRNNStack([keras.layers.LSTM(8)]), outputs=2)
    other(np.zeros((1, 1, F), np.float32))
    with pytest.raises(DataValidationError, match="holds 3 model state arrays; this model's state has 2"):
        StreamingPredictor(other, n_instruments=2).restore_state(path)
    with pytest.raises(DataValidationError, match="no such state file"):
        StreamingPredictor(other).restore_state(tmp_path / "missing.npz")


@pytest.mark.parametrize("engine", ["numpy", "tf"])
def test_reset_one_instrument_starts_it_afresh_and_keeps_the_others(lstm_model, inputs, engine):
    predictor = StreamingPredictor(lstm_model, n_instruments=N, engine=engine)
    predictor.update_many(np.swapaxes(inputs[:, :8], 0, 1))
    predictor.reset(1)
    got = predictor.update_many(np.swapaxes(inputs[:, 8:], 0, 1))
    assert list(predictor.ticks) == [T, T - 8, T]
    fresh = _batch(lstm_model, inputs[1:2, 8:])[0]
    np.testing.assert_allclose(got[:, 1], fresh, atol=TOLERANCE)
    whole = _batch(lstm_model, inputs)
    np.testing.assert_allclose(got[:, 0], whole[0, 8:], atol=TOLERANCE)
    np.testing.assert_allclose(got[:, 2], whole[2, 8:], atol=TOLERANCE)
    with pytest.raises(DataValidationError, match=r"instrument indices in \[0, 3\); got 3"):
        predictor.reset(3)


def test_hierarchical_reset_restarts_the_phase():
    keras.utils.set_random_seed(3)
    model = Forecaster(HierarchicalLSTM([(4, 3), (4, 1)], mode="sequential"), outputs=1)
    x = np.random.default_rng(1).normal(size=(2, 12, 2)).astype(np.float32)
    model(x[:, :3])
    predictor = StreamingPredictor(model, n_instruments=2)
    predictor.update_many(np.swapaxes(x[:, :4], 0, 1))  # instrument 1 is mid-period (phase 1 of 3)
    predictor.reset(1)
    got = predictor.update_many(np.swapaxes(x[:, 4:10], 0, 1))
    np.testing.assert_allclose(got[:, 1], _batch(model, x[1:2, 4:10])[0], atol=TOLERANCE)
    np.testing.assert_allclose(got[:, 0], _batch(model, x[:1, :12])[0, 4:10], atol=TOLERANCE)


def test_per_column_features_step_equals_transform():
    prices = np.array([[100.0, 5.0, 1.0], [101.0, 7.0, 2.0], [99.5, 6.0, 3.0], [102.0, 6.5, 4.0]])
    features = _per_column(["log_return", "diff", "value"])
    batch = features.compute(prices)
    np.testing.assert_allclose(batch[1], [np.log(101 / 100), 2.0, 2.0])
    np.testing.assert_allclose(batch[0], [0.0, 0.0, 1.0])
    state, rows = features.start(1), []
    for row in prices:
        outputs, state = features.step(row[None], state)
        rows.append(outputs[0])
    np.testing.assert_allclose(np.stack(rows), batch)
    with pytest.raises(ConfigError, match="transform 1 must be one of .*got 'pct'"):
        _per_column(["value", "pct"])


def test_scaler_and_pipeline_give_original_units(lstm_model):
    from longstm.data import StandardScaler

    rng = np.random.default_rng(4)
    raw = np.exp(np.cumsum(rng.normal(scale=0.01, size=(40, F)), axis=0)) * 100  # positive prices
    pipeline = _per_column(["log_return", "value", "diff", "log_return"])
    derived = pipeline.compute(raw)
    scaler = StandardScaler().fit(derived)
    predictor = StreamingPredictor(lstm_model, scaler=scaler, feature_pipeline=pipeline, target_columns=[1], horizon=2)
    got = predictor.update_many(raw[:15])
    got = np.concatenate([got, np.stack([predictor.update(row) for row in raw[15:]])])
    scaled = scaler.transform(derived)[None]
    expected = _batch(lstm_model, scaled)[0] * scaler.scale[1] + scaler.mean[1]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    bad = raw[0].copy()
    bad[0] = -1.0  # a log return of a negative price
    with pytest.raises(DataValidationError, match="feature pipeline gave a non-finite value"):
        predictor.update(bad)


# ---- a run directory, as `longstm train` leaves it ---------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("stream_run"))


# attention_lstm runs load too (checked by hand); its streaming exactness is tested above, and a
# run of it here would cost 14 s of the test budget.
@pytest.mark.parametrize("model_name", ["lstm", "stacked_lstm"])
def test_from_run_equals_the_trainers_predict(model_name, run_dir, tmp_path):
    from longstm.train.run import predict_run

    if model_name != "lstm":
        run_dir = make_run(tmp_path, rows=64, model_name=model_name)
    data_path = run_dir.parent / "etth1.csv"
    expected = predict_run(run_dir, data_path)  # one eval lane from row 0: the same history as streaming
    raw = pd.read_csv(data_path)
    predictor = StreamingPredictor.from_run(run_dir)
    assert predictor.engine == "numpy"
    assert predictor.column_names == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    got = predictor.update_many(raw[predictor.column_names].to_numpy())
    names = ["OT+1", "HUFL+1", "OT+2", "HUFL+2"]
    assert list(expected.columns[2:]) == names
    np.testing.assert_allclose(got[expected["row"].to_numpy()], expected[names].to_numpy(), rtol=1e-5, atol=1e-4)


def test_from_run_with_a_feature_pipeline_equals_the_trainers_predict(tmp_path):
    from longstm.train.run import predict_run

    pipeline = [{"kind": "raw"}, {"kind": "diff", "columns": ["OT"]}]
    run_dir = make_run(tmp_path, rows=64, pipeline=pipeline, features=("HUFL", "MUFL", "OT", "OT_diff"))
    data_path = run_dir.parent / "etth1.csv"
    expected = predict_run(run_dir, data_path)
    raw = pd.read_csv(data_path)
    predictor = StreamingPredictor.from_run(run_dir)
    assert predictor.column_names == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]  # the pipeline's inputs
    got = predictor.update_many(raw[predictor.column_names].to_numpy())
    names = ["OT+1", "HUFL+1", "OT+2", "HUFL+2"]
    np.testing.assert_allclose(got[expected["row"].to_numpy()], expected[names].to_numpy(), rtol=1e-5, atol=1e-4)


def test_from_run_refuses_a_hierarchical_parallel_run(tmp_path):
    with pytest.raises(ConfigError, match="HierarchicalLSTM\\(mode='parallel'\\) cannot stream"):
        StreamingPredictor.from_run(make_run(tmp_path, rows=64, model_name="hierarchical_lstm"))


def test_from_run_refuses_what_is_not_a_run(tmp_path, run_dir):
    with pytest.raises(ConfigError, match="not a run directory"):
        StreamingPredictor.from_run(tmp_path)
    with pytest.raises(ConfigError, match="weights must be 'best' or 'latest'"):
        StreamingPredictor.from_run(run_dir, weights="newest")
    with pytest.raises(ConfigError, match="has no checkpoint yet"):
        StreamingPredictor.from_run(run_dir, weights="latest")


def test_package_exports_the_predictor_without_importing_tensorflow():
    import subprocess
    import sys

    code = "import sys, longstm; longstm.StreamingPredictor; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_long_warm_up_in_chunks_equals_ticks_and_empty_history_is_a_no_op(lstm_model, monkeypatch):
    from longstm.serve import predictor as predictor_module

    monkeypatch.setattr(predictor_module, "WARM_UP_CHUNK", 16)
    x = np.random.default_rng(6).normal(size=(2, 2 * 16 + 13, F)).astype(np.float32)
    predictor = StreamingPredictor(lstm_model, n_instruments=2, engine="tf")
    assert predictor.warm_up(np.zeros((0, 2, F))).shape == (0, 2, 2)
    warmed = predictor.warm_up(np.swapaxes(x[:, :-5], 0, 1))  # two compiled chunks and 8 ticks
    np.testing.assert_allclose(np.swapaxes(warmed, 0, 1), _batch(lstm_model, x[:, :-5]), atol=TOLERANCE)
    ticked = StreamingPredictor(lstm_model, n_instruments=2, engine="numpy")
    ticked.warm_up(np.swapaxes(x[:, :-5], 0, 1))
    np.testing.assert_allclose(
        np.stack([predictor.update(x[:, t]) for t in range(x.shape[1] - 5, x.shape[1])]),
        np.stack([ticked.update(x[:, t]) for t in range(x.shape[1] - 5, x.shape[1])]),
        atol=TOLERANCE,
    )


def test_pipeline_state_is_saved_restored_and_reset(lstm_model, tmp_path):
    from longstm.data import StandardScaler

    raw = np.exp(np.cumsum(np.random.default_rng(7).normal(scale=0.01, size=(30, F)), axis=0)) * 100
    pipeline = _per_column(["log_return", "value", "diff", "log_return"])
    scaler = StandardScaler().fit(pipeline.compute(raw))
    predictor = StreamingPredictor(lstm_model, scaler=scaler, feature_pipeline=pipeline, target_columns=[1], horizon=2)
    predictor.update_many(raw[:10])
    path = predictor.save_state(tmp_path / "state.npz")
    continued = predictor.update_many(raw[10:])
    rebuilt = StreamingPredictor.from_metadata(lstm_model, predictor.metadata())
    assert rebuilt.column_names == ["x0", "x1", "x2", "x3"]  # raw rows carry the pipeline's inputs
    rebuilt.restore_state(path)
    np.testing.assert_allclose(rebuilt.update_many(raw[10:]), continued, atol=TOLERANCE)
    # A state file of the former layout (the previous raw row) continues the same way.
    with np.load(path) as arrays:
        former = {key: arrays[key] for key in arrays.files if not key.startswith("pipeline_")}
    np.savez(tmp_path / "former.npz", **former, previous=raw[9][None], has_previous=np.ones(1, bool))
    rebuilt.restore_state(tmp_path / "former.npz")
    np.testing.assert_allclose(rebuilt.update_many(raw[10:]), continued, atol=TOLERANCE)
    # After a reset the features restart too: as a fresh predictor from that row on.
    rebuilt.reset(0)
    fresh = StreamingPredictor(lstm_model, scaler=scaler, feature_pipeline=pipeline, target_columns=[1], horizon=2)
    np.testing.assert_allclose(rebuilt.update_many(raw[12:]), fresh.update_many(raw[12:]), atol=TOLERANCE)
