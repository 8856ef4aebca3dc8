"""longstm.models: the state protocol, recurrent models, heads and baselines.

Names are imported lazily, so `longstm.models.baselines` (NumPy only) does not pull in
TensorFlow. Sessions adding a model add one entry to `_EXPORTS`.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AttentionLSTM": "longstm.models.attention",
    "MultiHorizonHead": "longstm.models.heads",
    "NextStepHead": "longstm.models.heads",
    "QuantileHead": "longstm.models.heads",
    "HierarchicalLSTM": "longstm.models.hierarchical",
    "PinballLoss": "longstm.models.losses",
    "pinball_loss": "longstm.models.losses",
    "StackedLSTM": "longstm.models.stacked",
    "Forecaster": "longstm.models.protocol",
    "KerasRNNStack": "longstm.models.protocol",
    "LinearLagSkip": "longstm.models.lags",
    "LinearForecaster": "longstm.models.linear_baseline",
    "RecurrentModel": "longstm.models.protocol",
    "MinGRU": "longstm.models.minrnn",
    "MinLSTM": "longstm.models.minrnn",
    "MinRNNStack": "longstm.models.minrnn_stack",
    "SegmentDecoder": "longstm.models.segment_decoder",
    "SegmentGRU": "longstm.models.segment",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'longstm.models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
