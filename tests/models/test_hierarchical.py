import keras
import numpy as np
import pytest

from longstm.errors import ConfigError, DataValidationError
from longstm.models.hierarchical import HierarchicalLSTM
from longstm.models.minrnn import MinGRU, MinLSTM
from longstm.models.protocol import Forecaster, RecurrentModel
from longstm.models.stacked import StackedLSTM
from tests.models.trainer_check import assert_trains_through_the_tbptt_trainer

STEPS = 48


def _series(seed=0, batch=2, steps=STEPS, features=3):
    return np.random.default_rng(seed).normal(size=(batch, steps, features)).astype("float32")


def _chunked(model, x, chunk):
    state = model.initial_state(x.shape[0])
    pieces = []
    for start in range(0, x.shape[1], chunk):
        y, state = model(x[:, start : start + chunk], state=state)
        pieces.append(np.asarray(y))
    return np.concatenate(pieces, axis=1)


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
@pytest.mark.parametrize("outputs", ["per_step", "per_summary"])
def test_chunked_with_carried_state_equals_full_forward(mode, outputs):
    # Both modes are exact: chunk boundaries are sub-chunk boundaries (see the module docstring).
    x = _series()
    model = HierarchicalLSTM([(4, 4), (5, 3), (3, 2)], mode=mode, outputs=outputs)
    full = np.asarray(model(x)[0])
    assert full.shape == ((2, STEPS, 12) if outputs == "per_step" else (2, STEPS // 24, 3))
    np.testing.assert_allclose(_chunked(model, x, 24), full, atol=1e-5)


def _two_level(mode, stride=4):
    model = HierarchicalLSTM([(4, stride), (5, 1)], mode=mode)
    model(_series())
    return model


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_per_step_outputs_follow_the_documented_rule(mode):
    """Step t sees level-1 output j = floor((t + 1) / stride) - 1: from the last step of sub-chunk j."""
    x = _series()
    stride = 4
    model = _two_level(mode, stride)
    outputs = np.asarray(model(x)[0])
    lower, upper = model.level_models
    if mode == "sequential":
        expected_lower = np.asarray(lower(x)[0])
    else:
        sub_chunks = x.reshape(-1, stride, 3)
        expected_lower = np.asarray(lower(sub_chunks)[0]).reshape(2, STEPS, 4)
    np.testing.assert_allclose(outputs[..., :4], expected_lower, atol=1e-6)
    upper_outputs = np.asarray(upper(expected_lower[:, stride - 1 :: stride])[0])
    for t in range(STEPS):
        j = (t + 1) // stride - 1
        expected = upper_outputs[:, j] if j >= 0 else np.zeros((2, 5), "float32")
        np.testing.assert_allclose(outputs[:, t, 4:], expected, atol=1e-6, err_msg=f"step {t}")


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
@pytest.mark.parametrize("t", [0, 7, 8, 23, 47])  # 7 and 23 close a sub-chunk, 8 opens one
def test_causal_perturbing_step_t_leaves_earlier_outputs_unchanged(mode, t):
    x = _series()
    model = HierarchicalLSTM([(4, 4), (5, 2), (3, 1)], mode=mode)
    base = np.asarray(model(x)[0])
    bumped = x.copy()
    bumped[:, t] += 3.0
    moved = np.asarray(model(bumped)[0])
    np.testing.assert_array_equal(moved[:, :t], base[:, :t])
    assert np.abs(moved[:, t] - base[:, t]).max() > 1e-4
    if (t + 1) % 4 == 0:  # the summary closing at t is used at t itself: the bound is tight
        assert np.abs(moved[:, t, 4:9] - base[:, t, 4:9]).max() > 1e-5


def test_parallel_lowest_level_restarts_each_sub_chunk_sequential_does_not():
    x = _series()
    bumped = x.copy()
    bumped[:, 1] += 3.0
    for mode, lower_moves in (("parallel", False), ("sequential", True)):
        model = _two_level(mode)
        base, moved = np.asarray(model(x)[0]), np.asarray(model(bumped)[0])
        lower_change = np.abs(moved[:, 4:, :4] - base[:, 4:, :4]).max()
        assert (lower_change > 1e-5) == lower_moves, mode
        assert np.abs(moved[:, 4:, 4:] - base[:, 4:, 4:]).max() > 1e-5  # the upper level links sub-chunks


def test_per_summary_is_the_top_level_output_at_the_closing_steps():
    x = _series()
    per_step = HierarchicalLSTM([(4, 4), (5, 3)], mode="parallel")
    per_step(x)
    per_summary = HierarchicalLSTM([(4, 4), (5, 3)], mode="parallel", outputs="per_summary")
    per_summary(x)
    per_summary.set_weights(per_step.get_weights())
    # Top outputs every 3 level-1 steps = every 12 raw steps: level-1 step 3i+2 closes at raw 12i+11.
    np.testing.assert_allclose(np.asarray(per_summary(x)[0]), np.asarray(per_step(x)[0])[:, 11::12, 4:], atol=1e-6)


def test_a_recurrent_model_can_be_a_level_and_the_model_round_trips(tmp_path):
    x = _series(1)
    model = HierarchicalLSTM([(3, 4), (StackedLSTM(5, layers=2, residual=True), 2)], mode="sequential")
    expected, expected_state = model(x)
    model.save(tmp_path / "h.keras")
    loaded = keras.saving.load_model(tmp_path / "h.keras")
    got, got_state = loaded(x)
    np.testing.assert_array_equal(got, expected)
    for a, b in zip(keras.tree.flatten(got_state), keras.tree.flatten(expected_state)):
        np.testing.assert_array_equal(a, b)
    config = loaded.get_config()
    assert config["mode"] == "sequential" and config["levels"][0] == [3, 4]
    assert loaded.level_models[1].num_layers == 2 and loaded.level_models[1].residual


def test_chunk_length_must_be_a_multiple_of_the_strides_product():
    model = HierarchicalLSTM([(4, 4), (5, 3)])
    with pytest.raises(DataValidationError, match=r"multiple of the product of the strides 4 x 3 = 12; got 20"):
        model(_series(steps=20))


class _NoWidth(RecurrentModel):
    def initial_state(self, batch_size):
        return ()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(levels=[]), r"`levels` must be a non-empty list"),
        (dict(levels=[(4, 0)]), r"`levels\[0\] stride` must be an integer >= 1; got 0"),
        (dict(levels=[(4, 2), (0, 1)]), r"`levels\[1\] units` must be an integer >= 1; got 0"),
        (dict(levels=[(4, 2, 3)]), r"`levels\[0\]` must be a pair"),
        (dict(levels=[(4, 2)], mode="fast"), r"`mode` must be one of \('parallel', 'sequential'\); got 'fast'"),
        (dict(levels=[(4, 2)], outputs="all"), r"`outputs` must be one of .*; got 'all'"),
        (dict(levels=[(4, 2), (_NoWidth(), 1)]), r"_NoWidth must have an integer `units` attribute"),
    ],
)
def test_bad_arguments_raise_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        HierarchicalLSTM(**kwargs)


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
def test_trains_through_the_tbptt_trainer(mode):
    assert_trains_through_the_tbptt_trainer(HierarchicalLSTM([(8, 8), (8, 1)], mode=mode), chunk=32)


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_min_rnn_levels_from_issue_6_work_and_chunk_exactly(mode):
    x = _series()
    model = HierarchicalLSTM([(MinGRU(4), 8), (MinLSTM(5), 1)], mode=mode)
    full = np.asarray(model(x)[0])
    assert full.shape == (2, STEPS, 9)
    np.testing.assert_allclose(_chunked(model, x, 16), full, atol=1e-5)
