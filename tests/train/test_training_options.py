"""Optimizers, schedules, clipping, mixed precision, early stopping, TensorBoard logs."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from longstm.data.lanes import LaneWindows
from longstm.evaluate.trained import fit_and_summarise
from longstm.models.protocol import Forecaster, KerasRNNStack
from longstm.train.config import TrainConfig
from longstm.train.optimizers import make_optimizer
from longstm.train.trainer import Trainer
from tests.train.epoch_weights import keep_weights_each_epoch


def test_warmup_then_cosine_schedule_and_clipping():
    config = TrainConfig(
        optimizer="adamw", learning_rate=1e-2, min_learning_rate=1e-3, schedule="cosine",
        warmup_steps=10, clipnorm=0.5, weight_decay=0.01,
    )
    optimizer = make_optimizer(config, total_steps=110)
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert optimizer.global_clipnorm == 0.5 and optimizer.weight_decay == 0.01
    schedule = optimizer._learning_rate
    lr = lambda step: float(schedule(step))  # noqa: E731
    assert lr(0) == pytest.approx(0.0)
    assert lr(5) == pytest.approx(5e-3)  # linear warm-up
    assert lr(10) == pytest.approx(1e-2)
    assert lr(60) == pytest.approx(1e-3 + (1e-2 - 1e-3) * 0.5 * (1 + math.cos(math.pi * 0.5)), rel=1e-5)
    assert lr(110) == pytest.approx(1e-3, rel=1e-5)
    constant = make_optimizer(TrainConfig(learning_rate=3e-3, clipnorm=0.0), total_steps=50)
    assert isinstance(constant, keras.optimizers.Adam) and constant.global_clipnorm is None
    assert float(constant.learning_rate) == pytest.approx(3e-3)


def test_epoch_decay_holds_the_rate_then_decays_it_once_per_epoch():
    config = TrainConfig(learning_rate=1e-2, schedule="epoch_decay", decay_after_epochs=3, decay_rate=0.5, epochs=6)
    schedule = make_optimizer(config, total_steps=60)._learning_rate  # 10 updates per epoch
    rates = [float(schedule(step)) for step in range(60)]
    expected = [1e-2] * 30 + [5e-3] * 10 + [2.5e-3] * 10 + [1.25e-3] * 10  # SegRNN's "type3" with 0.5
    assert rates == pytest.approx(expected)
    # A run no longer than the held epochs never decays: a constant rate.
    short = make_optimizer(TrainConfig(learning_rate=1e-2, schedule="epoch_decay", epochs=3), total_steps=30)
    assert float(short.learning_rate) == pytest.approx(1e-2)


def test_epoch_decay_in_training_reads_one_rate_per_epoch():
    """Through `Trainer.fit`: the rate the optimizer applies drops at each epoch's end."""
    keras.utils.set_random_seed(0)
    model = Forecaster(KerasRNNStack([keras.layers.LSTM(3)]), outputs=1)
    values = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    stream = LaneWindows(values, lanes=2, k1=10, k2=10, target_columns=[0])
    config = TrainConfig(k1=10, k2=10, epochs=3, learning_rate=1e-2, schedule="epoch_decay", decay_after_epochs=1,
                         decay_rate=0.5)
    epochs = Trainer(model, config, progress=False).fit(stream)
    # Each epoch's record holds the rate after it, the one the next epoch trains at: epoch 0
    # at 1e-2 (held one epoch), epoch 1 at 5e-3, epoch 2 (the last) at 2.5e-3.
    assert [epoch["learning_rate"] for epoch in epochs] == pytest.approx([5e-3, 2.5e-3, 2.5e-3])


def test_global_norm_clipping_bounds_the_applied_update():
    keras.utils.set_random_seed(0)
    model = Forecaster(KerasRNNStack([keras.layers.LSTM(3)]), outputs=1)
    values = (np.random.default_rng(0).normal(size=(200, 2)) * 100).astype(np.float32)  # huge gradients
    stream = LaneWindows(values, lanes=2, k1=10, k2=10, target_columns=[0])
    config = TrainConfig(k1=10, k2=10, epochs=1, clipnorm=1e-3, learning_rate=1.0, optimizer="adam")
    trainer = Trainer(model, config, progress=False)
    trainer._prepare(stream, 10)
    trainer.optimizer = keras.optimizers.SGD(1.0, global_clipnorm=1e-3)
    trainer.engine.optimizer = trainer.optimizer
    trainer.optimizer.build(model.trainable_variables)
    before = [v.numpy().copy() for v in model.trainable_variables]
    batch = next(iter(stream.dataset()))
    trainer.engine.train_step(batch, trainer.engine.initial_state(2))
    change = np.sqrt(sum(np.sum((v.numpy() - b) ** 2) for v, b in zip(model.trainable_variables, before)))
    assert change == pytest.approx(1e-3, rel=1e-3)


def test_mixed_float16_trains_with_loss_scaling_and_float32_state():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = Forecaster(KerasRNNStack([keras.layers.LSTM(4)]), outputs=1)
        values = np.random.default_rng(0).normal(size=(300, 2)).astype(np.float32)
        # Targets of ~300: the loss (~1e5) times the initial scale 2^15 overflows float16 (max
        # 65504) in the backward pass, so the dynamic scale must come down before steps apply.
        values[:, 0] *= 300.0
        stream = LaneWindows(values, lanes=2, k1=10, k2=10, target_columns=[0])
        trainer = Trainer(model, TrainConfig(k1=10, k2=10, epochs=1, mixed_precision="mixed_float16"), progress=False)
        initial = [v.numpy().copy() for v in model.trainable_variables]
        history = trainer.fit(stream)
        optimizer = trainer.optimizer
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        assert np.isfinite(history[0]["train_mse"])
        # Each overflowing step halves the scale and is skipped; the others are applied.
        scale = float(optimizer.dynamic_scale)
        halvings = math.log2(2.0**15 / scale)
        assert scale < 2.0**15 and halvings == int(halvings)
        assert int(optimizer.iterations) + halvings == len(stream) and int(optimizer.iterations) > 0
        for before, after in zip(initial, model.trainable_variables):
            assert np.isfinite(after.numpy()).all() and not np.array_equal(before, after.numpy())
        assert all(t.dtype == tf.float32 for t in tf.nest.flatten(trainer.state))
        assert model.trainable_variables[0].dtype == "float32"  # float32 master weights
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_early_stopping_keeps_the_best_validation_weights_and_logs_to_tensorboard(tmp_path):
    keras.utils.set_random_seed(0)
    model = Forecaster(KerasRNNStack([keras.layers.LSTM(3)]), outputs=1)
    values = np.random.default_rng(0).normal(size=(240, 2)).astype(np.float32)
    stream = LaneWindows(values, lanes=2, k1=20, k2=20, target_columns=[0])
    trainer = Trainer(model, TrainConfig(k1=20, k2=20, epochs=10, early_stopping_patience=2), run_dir=tmp_path, progress=False)
    scripted = iter([1.0, 0.5, 0.7, 0.4, 0.6, 0.8, 0.1])  # best at epoch 4, then 2 bad epochs
    trainer.evaluate = lambda _stream: {"mse": next(scripted), "mae": 0.0, "rows": 1}
    weights_after = keep_weights_each_epoch(trainer)
    history = trainer.fit(stream, validation=stream)
    assert [record["epoch"] for record in history] == [1, 2, 3, 4, 5, 6]
    with np.load(tmp_path / "checkpoints" / "best.npz") as best:
        for i, value in enumerate(weights_after[4]):
            np.testing.assert_array_equal(best[f"model_{i}"], value)

    events = sorted((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    tags = {}
    for event in tf.compat.v1.train.summary_iterator(str(events[0])):
        for value in event.summary.value:
            tags.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    assert len(tags["train/loss"]) == 6 * len(stream)
    np.testing.assert_allclose(tags["epoch/val_mse"], [1.0, 0.5, 0.7, 0.4, 0.6, 0.8], rtol=1e-6)  # float32 summaries
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_monitor_val_mae_keeps_and_stops_on_the_validation_mae(tmp_path):
    """SegRNN keeps the epoch of its training loss (MAE); `train.monitor = "val_mae"` does that."""
    keras.utils.set_random_seed(0)
    model = Forecaster(KerasRNNStack([keras.layers.LSTM(3)]), outputs=1)
    values = np.random.default_rng(0).normal(size=(240, 2)).astype(np.float32)
    stream = LaneWindows(values, lanes=2, k1=20, k2=20, target_columns=[0])
    config = TrainConfig(k1=20, k2=20, epochs=10, early_stopping_patience=2, monitor="val_mae")
    trainer = Trainer(model, config, run_dir=tmp_path, progress=False)
    # MSE is best at epoch 4; MAE at epoch 2, then 2 epochs without a lower MAE stop the run.
    scripted = iter([(1.0, 0.9), (0.8, 0.3), (0.7, 0.5), (0.4, 0.6), (0.3, 0.7)])
    trainer.evaluate = lambda _stream: dict(zip(("mse", "mae"), next(scripted)), rows=1)
    weights_after = keep_weights_each_epoch(trainer)
    summary = fit_and_summarise(trainer, stream, stream)
    assert summary["epochs_run"] == 4 and summary["best_epoch"] == 2 and summary["val_mse"] == 0.8
    for variable, value in zip(trainer.model.variables, weights_after[2]):  # best.npz reloaded
        np.testing.assert_array_equal(variable.numpy(), value)
