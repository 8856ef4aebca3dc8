"""longstm.evaluate: metrics and standard evaluation protocols (ETT)."""

from longstm.evaluate.ett import EttResult, evaluate_ett
from longstm.evaluate.metrics import ErrorAccumulator, mae, mse

__all__ = ["ErrorAccumulator", "EttResult", "evaluate_ett", "mae", "mse"]
