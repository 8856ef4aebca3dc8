"""longstm.train: truncated BPTT with carried state — the trainer.

The Python API (TensorFlow is imported only when one of the TF-backed names is used):

From a config file, everything in a run directory:

>>> from longstm.train import load_config, train_from_config, evaluate_run, predict_run
>>> scores = train_from_config(load_config("configs/tbptt_lstm_etth1.toml"), "runs/etth1")
>>> scores["test"]                                    # {"mse": ..., "mae": ..., "rows": ...}
>>> evaluate_run("runs/etth1")                        # recomputed from the checkpoint
>>> frame = predict_run("runs/etth1", "ETTh1.csv")    # per-row forecasts, data units

From arrays, with your own model:

>>> from longstm.data.lanes import LaneWindows
>>> from longstm.train import Trainer, TrainConfig
>>> train = LaneWindows(values, lanes=16, k1=128, k2=128, target_columns=[0], rows=(0, n_train))
>>> val = LaneWindows(values, lanes=4, k1=128, k2=128, target_columns=[0],
...                   rows=(n_train, n_val_end), burn_in=512)   # warm-up on the past
>>> trainer = Trainer(model, TrainConfig(k1=128, k2=128, epochs=5), run_dir="runs/x")
>>> history = trainer.fit(train, val)                 # per-epoch dicts
>>> rows, predictions = trainer.predict(val)          # one forecast per target row, scaled units

Pieces:

- `longstm.data.lanes.LaneWindows`: B lanes of TBPTT(k1, k2) windows, resets at segments,
  burn-in, from an in-memory array, an `np.memmap` or an on-disk `.npy` (`open_npy`).
- `TBPTTEngine` (`longstm.train.engine`): the `tf.function` train/eval steps, state in and out.
- `Trainer` (`longstm.train.trainer`): the loop, resume, NaN stop, early stopping; around it
  the checkpoint format (`longstm.train.checkpoint`), the step/epoch logs, loss plot,
  TensorBoard and progress bar (`longstm.train.logs`) and the optimizer
  (`longstm.train.optimizers`).
- `Config`/`load_config`/`read_config` (`longstm.train.config`): the TOML schema, its
  validation and `--set` overrides.
- `RunDir` (`longstm.train.rundir`): the run directory's layout, the one module that knows it.
- `MODELS`/`register_model`/`build_model` (`longstm.models.registry`, re-exported here): models by name.
- `train_from_config`, `load_run`, `evaluate_run`, `predict_run` (`longstm.train.run`), and
  the pieces the evaluation protocols use too: `build_trainer`, `training_lanes`,
  `evaluation_lanes`, `fit_and_keep_best`; `longstm.train.carried.carried_outputs` runs a
  series with carried state.
- `longstm.train.distribute`: `tf.distribute` strategies (`[train] strategy = "mirrored"` or
  `"multiworker"`, `longstm train --strategy`); see docs/distributed.md.
"""

import importlib

from longstm.train.config import Config, TrainConfig, config_from_dict, load_config, read_config

_LAZY = {
    "Trainer": "longstm.train.trainer",
    "TBPTTEngine": "longstm.train.engine",
    "train_from_config": "longstm.train.run",
    "evaluate_run": "longstm.train.run",
    "predict_run": "longstm.train.run",
    "load_run": "longstm.train.run",
    "load_data": "longstm.train.run",
    "build_trainer": "longstm.train.run",
    "fit_and_keep_best": "longstm.train.run",
    "MODELS": "longstm.models.registry",
    "build_model": "longstm.models.registry",
    "register_model": "longstm.models.registry",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'longstm.train' has no attribute {name!r}")


__all__ = [
    "Config",
    "MODELS",
    "TBPTTEngine",
    "TrainConfig",
    "Trainer",
    "build_model",
    "build_trainer",
    "config_from_dict",
    "evaluate_run",
    "fit_and_keep_best",
    "load_config",
    "load_data",
    "load_run",
    "predict_run",
    "read_config",
    "register_model",
    "train_from_config",
]
