"""Serving a trained model tick by tick: the predictor, its engines, exports and `follow`.

    from longstm.serve import StreamingPredictor, export_run
    predictor = StreamingPredictor.from_run("runs/etth1")
    forecast = predictor.update(row)

One file per job: `predictor` (`StreamingPredictor`), `rows` (pandas/dict/Arrow rows read by
column name), `routing` (rows of mixed instruments, each to its own state; a panel run's
per-series scalers), `numpy_engine` and `compiled` (the two
engines that run a model's own `step`), `state` (the model state as NumPy), `loading` (a run
directory -> model + metadata), `step_model` (`StreamingStep`, one tick as a Keras model),
`export` (SavedModel/.keras/TFLite), `follow` (forecasting a growing file). Features come
from the training pipeline, `longstm.data.features.FeaturePipeline`, in its incremental mode.

The names below that need TensorFlow at import (`export`, `loading`, `step_model`) are loaded
on first use, so `from longstm.serve import StreamingPredictor` (and `longstm.StreamingPredictor`)
stays free of TensorFlow until a predictor runs.
"""

from __future__ import annotations

from longstm.serve.checks import check_streamable
from longstm.serve.follow import FollowReport, follow_stream
from longstm.serve.numpy_engine import NumpyRNNStack
from longstm.serve.predictor import ENGINES, StreamingPredictor

_LAZY = {
    "FORMATS": "longstm.serve.export",
    "SavedModelStep": "longstm.serve.export",
    "TFLiteStep": "longstm.serve.export",
    "export_predictor": "longstm.serve.export",
    "export_run": "longstm.serve.export",
    "load_run_model": "longstm.serve.loading",
    "StreamingStep": "longstm.serve.step_model",
}

__all__ = [
    "ENGINES",
    "FollowReport",
    "NumpyRNNStack",
    "StreamingPredictor",
    "check_streamable",
    "follow_stream",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'longstm.serve' has no attribute {name!r}")
