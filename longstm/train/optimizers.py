"""The optimizer a training config describes: Adam/AdamW, clipping, warm-up and schedule.

Example:

>>> optimizer = make_optimizer(TrainConfig(learning_rate=3e-3, schedule="cosine"), total_steps=1000)
"""

from __future__ import annotations

import keras

from longstm.train import distribute
from longstm.train.config import TrainConfig


def make_optimizer(config: TrainConfig, total_steps: int, reduced_gradients: bool = False):
    """Adam/AdamW with global-norm clipping and a warm-up + constant/cosine schedule, or the
    rate held for `decay_after_epochs` epochs and then multiplied by `decay_rate` after each
    further epoch (`schedule = "epoch_decay"`, SegRNN's default `lradj = "type3"`).

    Args:
        config: the `[train]` table (optimizer, learning rates, schedule, clipping, precision).
        total_steps: updates of the whole run, `config.epochs` epochs of equal length (the
            cosine schedule decays over them; the epoch decay steps at each epoch's end).
        reduced_gradients: under a strategy, the optimizer is given gradients already summed
            over the replicas and clips and applies them as they are
            (`longstm.train.distribute.PreReducedGradients`).

    Returns:
        A Keras optimizer (a `LossScaleOptimizer` under `mixed_float16`).
    """
    warmup = min(config.warmup_steps, max(total_steps - 1, 0))
    if config.schedule == "epoch_decay":
        learning_rate = epoch_decay(config, max(total_steps // config.epochs, 1))
    elif config.schedule == "cosine" or warmup > 0:
        alpha = config.min_learning_rate / config.learning_rate if config.schedule == "cosine" else 1.0
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else config.learning_rate,
            decay_steps=max(total_steps - warmup, 1),
            alpha=alpha,
            warmup_target=config.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    else:
        learning_rate = config.learning_rate
    clip = {"global_clipnorm": config.clipnorm} if config.clipnorm > 0 else {}
    adam, adamw = keras.optimizers.Adam, keras.optimizers.AdamW
    if reduced_gradients:
        adam, adamw = distribute.pre_reduced(adam), distribute.pre_reduced(adamw)
    if config.optimizer == "adamw":
        optimizer = adamw(learning_rate=learning_rate, weight_decay=config.weight_decay, **clip)
    else:
        optimizer = adam(learning_rate=learning_rate, **clip)
    if config.mixed_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def epoch_decay(config: TrainConfig, steps_per_epoch: int):
    """The `epoch_decay` schedule over update steps: epoch e (from 0) trains at
    `learning_rate * decay_rate ** max(0, e - decay_after_epochs + 1)`."""
    held = config.decay_after_epochs
    if config.epochs <= held:  # it never decays within the run
        return config.learning_rate
    # The optimizer reads the schedule at its update count before the update: the first update
    # of epoch e reads e * steps_per_epoch, which must fall past the boundary (values change
    # strictly after each boundary).
    boundaries = [steps_per_epoch * epoch - 1 for epoch in range(held, config.epochs)]
    values = [config.learning_rate * config.decay_rate**k for k in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
