"""longstm.data: loading, validating, featurising, splitting and windowing long time series.

The one representation is `TimeSeries` (float32 values, column names, timestamps, segment
starts). `load_series` reads files into it; `FeaturePipeline` derives causal features
(whole series or row by row; `build_features` is its one-call form);
`ett_split`/`chronological_split` and `StandardScaler` give train-only scaling;
`window_dataset` serves (lookback, horizon) windows lazily through `tf.data`.
"""

from longstm.data.features import FeaturePipeline, build_features
from longstm.data.loaders import KINDS, load_series
from longstm.data.samples import bundled_path
from longstm.data.scaling import StandardScaler
from longstm.data.series import TimeSeries
from longstm.data.splits import Split, chronological_split, ett_split
from longstm.data.validation import (
    GAP_POLICIES,
    DataWarning,
    apply_gap_policy,
    find_gaps,
    require_length,
)
from longstm.data.windows import WindowIndex, gather_windows, iter_window_batches, window_dataset

__all__ = [
    "GAP_POLICIES",
    "KINDS",
    "Split",
    "StandardScaler",
    "DataWarning",
    "FeaturePipeline",
    "TimeSeries",
    "WindowIndex",
    "apply_gap_policy",
    "build_features",
    "bundled_path",
    "chronological_split",
    "ett_split",
    "find_gaps",
    "gather_windows",
    "iter_window_batches",
    "load_series",
    "require_length",
    "window_dataset",
]
