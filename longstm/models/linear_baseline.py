"""LTSF-Linear's "Linear" and "NLinear" (Zeng et al., AAAI 2023), fitted in closed form.

One linear map from the L-step input window to the H-step forecast, with a bias, shared by
all forecast channels (channel-independent, the paper's `individual=False`). NLinear
subtracts the window's last value from the input and adds it back to the forecast, which
makes it follow level shifts between training and test data.

The paper trains the map with Adam on the MSE; here it is the least-squares solution over
all training windows (optionally ridge-penalised), so there is no learning rate, epoch count
or seed to tune. The normal equations `[X 1]^T [X 1]` ((L+1) x (L+1)) and `[X 1]^T Y` are
accumulated over blocks of windows (views of the series, one block copied at a time), so the
windows are never materialised all at once.

- `window_normal_equations`: the accumulated normal equations over the windows in a row range.
- `LinearForecaster`: `fit` on the training rows, then `predict_windows(x) -> y`.
- `make_linear_baseline`: `"linear"` or `"nlinear"` by name.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.linalg
from numpy.lib.stride_tricks import sliding_window_view

from longstm.data.scaling import StandardScaler
from longstm.data.series import TimeSeries
from longstm.data.windows import WindowIndex
from longstm.errors import ConfigError, DataValidationError
from longstm.models.checks import check_horizon

LINEAR_BASELINES = ("linear", "nlinear")


def window_normal_equations(
    values: np.ndarray,
    lookback: int,
    horizon: int,
    *,
    start: int = 0,
    stop: int | None = None,
    segments: Sequence[int] | np.ndarray | None = None,
    channels: Sequence[int] | None = None,
    scaler: StandardScaler | None = None,
    subtract_last: bool = False,
    block_windows: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """The least-squares normal equations of a window -> horizon map with a bias, in float64.

    Every window of `lookback + horizon` rows inside `[start, stop)` and inside one segment
    (stride 1, as `WindowIndex`) gives one sample per channel in `channels`: the input is the
    channel's L values `x` (minus `x[-1]` when `subtract_last`), the target its next H values
    (minus the same `x[-1]`).

    Args:
        values: `(rows, columns)` array (may be a memmap; read one block of rows at a time).
        lookback, horizon: L and H.
        start, stop: the row range the windows must lie in (the training rows).
        segments: segment start rows; windows never cross one. Default `[0]`.
        channels: the columns that give samples (default all); all share one map.
        scaler: a fitted `StandardScaler` over all columns, applied to each block of rows.
        subtract_last: NLinear's normalisation.
        block_windows: windows per block (memory: about `block_windows * (L + H) * 8` bytes).

    Returns:
        `(gram, cross)`: `gram = A^T A` of shape `(L + 1, L + 1)` and `cross = A^T Y` of shape
        `(L + 1, H)`, where `A = [X, 1]` holds one sample per row (the bias column last) and `Y`
        the targets. `gram[-1, -1]` is the number of samples.
    """
    index = WindowIndex(len(values), lookback, horizon, start=start, stop=stop, segments=segments)
    index.require(1, "linear baseline training rows")
    lookback, width = index.lookback, index.lookback + index.horizon
    columns = range(values.shape[1]) if channels is None else [int(c) for c in channels]
    gram = np.zeros((lookback + 1, lookback + 1))
    cross = np.zeros((lookback + 1, index.horizon))
    for first, count in zip(index.firsts, index.counts):
        for offset in range(0, int(count), block_windows):
            windows_here = min(block_windows, int(count) - offset)
            rows = np.asarray(values[first + offset : first + offset + windows_here + width - 1], np.float64)
            if scaler is not None:
                rows = scaler.transform(rows, dtype=np.float64)
            for column in columns:
                # A contiguous copy of this block's windows: matmul on the overlapping view
                # would not go through BLAS.
                block = np.array(sliding_window_view(rows[:, column], width))
                if subtract_last:
                    block -= block[:, lookback - 1 : lookback]
                x, y = block[:, :lookback], block[:, lookback:]
                gram[:lookback, :lookback] += x.T @ x
                cross[:lookback] += x.T @ y
                gram[:lookback, lookback] += x.sum(axis=0)
                gram[lookback, lookback] += windows_here
                cross[lookback] += y.sum(axis=0)
    gram[lookback, :lookback] = gram[:lookback, lookback]
    return gram, cross


class LinearForecaster:
    """LTSF-Linear's Linear / NLinear map, fitted by least squares on the training windows.

    Each forecast channel is forecast from its own L past values by the same linear map
    (channel-independent, one map shared by all channels). With `target_indices` (the ETT
    protocol's `"MS"` mode) only those channels are read and forecast: the map reads the
    target channel's own window, not the other columns, which is also what LTSF-Linear's
    shared map does in MS mode (its loss only sees the target channel).

    Args:
        horizon: steps to forecast (H).
        target_indices: which input columns to fit on and forecast (default all).
        subtract_last: NLinear: subtract the window's last value from the input and add it back
            to the forecast. False: plain Linear.
        ridge: L2 penalty on the weights (not the bias), relative to the inputs' scale: the
            penalty is `ridge * trace(X^T X) / L`, i.e. `ridge` times the mean square input
            summed over the samples. Must be >= 0. The default 1e-6 only guards against a
            singular system (NLinear's last input is always 0) and leaves the fit practically
            ordinary least squares.
        block_windows: windows per block while accumulating the normal equations.

    Call arguments (`predict_windows`):
        x: windows `(batch, lookback, features)` with the lookback the map was fitted for.

    Returns:
        Forecasts `(batch, horizon, targets)` in the dtype of `x` (computed in float64).

    Example:

    >>> model = LinearForecaster(96, subtract_last=True).fit(series, 336, start=0, stop=8640,
    ...                                                      scaler=scaler)  # doctest: +SKIP
    >>> model.predict_windows(x).shape  # x: (batch, 336, 7)   # doctest: +SKIP
    (batch, 96, 7)
    """

    def __init__(self, horizon: int, target_indices: Sequence[int] | None = None, *, subtract_last: bool = False,
                 ridge: float = 1e-6, block_windows: int = 2048):
        self.horizon = check_horizon(horizon)
        if isinstance(ridge, bool) or not isinstance(ridge, (int, float, np.floating, np.integer)) \
                or not np.isfinite(ridge) or ridge < 0:
            raise ConfigError(f"linear baseline ridge must be a finite number >= 0, got {ridge!r}")
        if isinstance(block_windows, bool) or not isinstance(block_windows, (int, np.integer)) or block_windows < 1:
            raise ConfigError(f"block_windows must be a positive integer, got {block_windows!r}")
        self.target_indices = None if target_indices is None else [int(i) for i in target_indices]
        self.subtract_last = bool(subtract_last)
        self.ridge = float(ridge)
        self.block_windows = int(block_windows)
        self.weights: np.ndarray | None = None  # (lookback, horizon)
        self.bias: np.ndarray | None = None  # (horizon,)
        self.samples = 0

    @property
    def name(self) -> str:
        return "nlinear" if self.subtract_last else "linear"

    @property
    def fitted(self) -> bool:
        return self.weights is not None

    @property
    def lookback(self) -> int | None:
        return None if self.weights is None else self.weights.shape[0]

    def fit(self, series: TimeSeries | np.ndarray, lookback: int, *, start: int = 0, stop: int | None = None,
            scaler: StandardScaler | None = None) -> "LinearForecaster":
        """Fit on every window of `lookback + horizon` rows inside `[start, stop)`; returns self.

        Args:
            series: a `TimeSeries` (windows never cross its segment starts) or a
                `(rows, columns)` array.
            lookback: input length L.
            start, stop: the training rows; no window reads a row outside them.
            scaler: a `StandardScaler` fitted on all columns, applied before fitting (the
                forecasts are then on the scaled data, like the ETT protocol's windows).
        """
        values = series.values if isinstance(series, TimeSeries) else series
        if not isinstance(values, np.ndarray) or values.ndim != 2:
            raise DataValidationError(f"LinearForecaster.fit needs a TimeSeries or a (rows, columns) array, "
                                      f"got {type(series).__name__}")
        if self.target_indices is not None and any(not 0 <= i < values.shape[1] for i in self.target_indices):
            raise ConfigError(f"target_indices {self.target_indices} out of range for {values.shape[1]} columns")
        segments = series.segments if isinstance(series, TimeSeries) else None
        gram, cross = window_normal_equations(
            values, lookback, self.horizon, start=start, stop=stop, segments=segments, channels=self.target_indices,
            scaler=scaler, subtract_last=self.subtract_last, block_windows=self.block_windows,
        )
        lookback = gram.shape[0] - 1
        samples = int(gram[-1, -1])
        if samples <= lookback:
            raise DataValidationError(
                f"linear baseline: {samples} training samples (windows x channels in rows [{start}, {stop})) for "
                f"{lookback + 1} unknowns (lookback {lookback} + bias); need more training rows or a shorter lookback"
            )
        penalised = gram.copy()
        penalty = self.ridge * np.trace(gram[:lookback, :lookback]) / lookback
        penalised[np.arange(lookback), np.arange(lookback)] += penalty
        # lstsq (SVD) rather than a Cholesky solve: with ridge=0 it still returns the minimum-norm
        # solution of a singular system (NLinear's always-zero last input, or an exactly
        # low-rank training series).
        solution, *_ = scipy.linalg.lstsq(penalised, cross)
        self.weights, self.bias, self.samples = solution[:lookback], solution[lookback], samples
        return self

    def predict_windows(self, x: np.ndarray) -> np.ndarray:
        """Forecasts `(batch, horizon, targets)` for input windows `x` `(batch, lookback, features)`."""
        if self.weights is None:
            raise ConfigError(f"{self.name} baseline: predict_windows called before fit")
        x = np.asarray(x)
        if x.ndim != 3 or x.shape[1] != self.lookback:
            raise ConfigError(f"{self.name} baseline expects windows of shape (batch, lookback {self.lookback}, "
                              f"features), got {x.shape}")
        if self.target_indices is not None:
            x = x[:, :, self.target_indices]
        inputs = np.swapaxes(x, 1, 2).astype(np.float64)  # (batch, channels, lookback)
        level = inputs[:, :, -1:] if self.subtract_last else 0.0
        forecast = (inputs - level) @ self.weights + self.bias + level  # (batch, channels, horizon)
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        return np.ascontiguousarray(np.swapaxes(forecast, 1, 2), dtype=dtype)


def make_linear_baseline(name: str, horizon: int, target_indices: Sequence[int] | None = None,
                         ridge: float = 1e-6) -> LinearForecaster:
    """An unfitted `"linear"` or `"nlinear"` `LinearForecaster`."""
    if name not in LINEAR_BASELINES:
        raise ConfigError(f"unknown linear baseline {name!r}; expected one of {', '.join(LINEAR_BASELINES)}")
    return LinearForecaster(horizon, target_indices, subtract_last=name == "nlinear", ridge=ridge)
