"""longstm: LSTMs on very long time series in Keras 3 / TensorFlow.

Importing `longstm` does not import TensorFlow; the subpackages that need it do.
"""

from longstm.errors import ConfigError, DataValidationError, LongstmError, TrainingError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataValidationError", "LongstmError", "TrainingError", "__version__"]


def __getattr__(name):
    # Lazy: `longstm.StreamingPredictor` imports Keras/TensorFlow only when first used.
    if name == "StreamingPredictor":
        from longstm.serve.predictor import StreamingPredictor

        return StreamingPredictor
    raise AttributeError(f"module 'longstm' has no attribute {name!r}")
