"""longstm.evaluate: metrics and standard evaluation protocols (ETT).

`evaluate_ett`/`EttResult` are imported on first use: the ETT protocol imports
`longstm.models.baselines`, and importing the `longstm.models` package loads Keras.
"""

from longstm.evaluate.metrics import ErrorAccumulator, mae, mse

__all__ = ["ErrorAccumulator", "EttResult", "evaluate_ett", "mae", "mse"]


def __getattr__(name):
    if name in ("EttResult", "evaluate_ett"):
        from longstm.evaluate import ett

        return getattr(ett, name)
    raise AttributeError(f"module 'longstm.evaluate' has no attribute {name!r}")
