"""A shared proof for the model tests: a model trains through the TBPTT trainer."""

import keras
import numpy as np

from longstm.data.lanes import LaneWindows
from longstm.models.protocol import Forecaster
from longstm.train.config import TrainConfig
from longstm.train.trainer import Trainer


def _sine_lanes(chunk):
    t = np.arange(4 * 16 * chunk, dtype=np.float32)
    values = np.stack([np.sin(2 * np.pi * t / 37.0), np.cos(2 * np.pi * t / 37.0)], axis=1)
    return LaneWindows(values, lanes=4, k1=chunk, k2=chunk, target_columns=[0])


def assert_trains_through_the_tbptt_trainer(core, chunk):
    """A few epochs of next-step sine prediction: the loss must fall well below its start."""
    keras.utils.set_random_seed(0)
    losses = []

    class Record:
        def on_step_end(self, trainer, step, logs):
            losses.append(logs["loss"])

    config = TrainConfig(lanes=4, k1=chunk, k2=chunk, epochs=2, learning_rate=2e-2)
    trainer = Trainer(Forecaster(core, outputs=1), config, callbacks=[Record()], progress=False)
    trainer.fit(_sine_lanes(chunk))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-4:]) < 0.3 * np.mean(losses[:2]), losses
