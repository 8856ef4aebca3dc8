"""`StandardScaler`: per-column standardisation whose statistics come from training rows only."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from longstm.errors import DataValidationError


class StandardScaler:
    """Subtract each column's mean and divide by its standard deviation.

    Matches `sklearn.preprocessing.StandardScaler` (population std, ddof=0; a constant column
    gets scale 1) so ETT figures computed with it reproduce the published ones. Statistics are
    accumulated in float64, block by block, so a memory-mapped array is never loaded whole.

    Args:
        columns: optional column names, stored with the statistics and checked on load.

    Example:

    >>> scaler = StandardScaler().fit(train_values)          # doctest: +SKIP
    >>> scaled = scaler.transform(values)                    # doctest: +SKIP
    >>> StandardScaler.from_dict(scaler.to_dict())           # doctest: +SKIP
    """

    def __init__(self, columns: Sequence[str] | None = None):
        self.columns = None if columns is None else [str(c) for c in columns]
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.rows_seen = 0

    def fit(self, values: np.ndarray, *, block_rows: int = 1 << 20) -> "StandardScaler":
        """Compute mean and std of `values` (rows, features): pass the training rows only."""
        if values.ndim != 2 or values.shape[0] == 0:
            raise DataValidationError(f"StandardScaler.fit expects a non-empty (rows, features) array, got shape {values.shape}")
        if self.columns is not None and len(self.columns) != values.shape[1]:
            raise DataValidationError(f"StandardScaler has {len(self.columns)} column names but the data has {values.shape[1]} columns")
        total = np.zeros(values.shape[1])
        for start in range(0, values.shape[0], block_rows):
            total += np.asarray(values[start : start + block_rows], dtype=np.float64).sum(axis=0)
        mean = total / values.shape[0]
        squares = np.zeros(values.shape[1])
        for start in range(0, values.shape[0], block_rows):
            centred = np.asarray(values[start : start + block_rows], dtype=np.float64) - mean
            squares += (centred * centred).sum(axis=0)
        std = np.sqrt(squares / values.shape[0])
        self.mean = mean
        self.scale = np.where(std > 0, std, 1.0)
        self.rows_seen = int(values.shape[0])
        return self

    def _require_fitted(self, values: np.ndarray) -> None:
        if self.mean is None:
            raise DataValidationError("StandardScaler is not fitted: call fit(train_values) first")
        if values.shape[-1] != self.mean.shape[0]:
            raise DataValidationError(
                f"StandardScaler was fitted on {self.mean.shape[0]} columns, got data with {values.shape[-1]}"
            )

    def transform(self, values: np.ndarray, dtype=np.float32) -> np.ndarray:
        """`(values - mean) / std` as a new array (any leading shape, features last)."""
        self._require_fitted(values)
        return ((np.asarray(values, dtype=np.float64) - self.mean) / self.scale).astype(dtype, copy=False)

    def inverse_transform(self, values: np.ndarray, dtype=np.float32) -> np.ndarray:
        """`values * std + mean`: back to the data's units."""
        self._require_fitted(values)
        return (np.asarray(values, dtype=np.float64) * self.scale + self.mean).astype(dtype, copy=False)

    def subset(self, indices: Sequence[int]) -> "StandardScaler":
        """A scaler for some of the columns (e.g. the target column only)."""
        self._require_fitted(np.zeros((1, self.mean.shape[0])))
        part = StandardScaler(None if self.columns is None else [self.columns[i] for i in indices])
        part.mean, part.scale, part.rows_seen = self.mean[list(indices)], self.scale[list(indices)], self.rows_seen
        return part

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, for a run directory's JSON."""
        if self.mean is None:
            raise DataValidationError("StandardScaler is not fitted: nothing to save")
        return {"kind": "standard", "columns": self.columns, "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "rows_seen": self.rows_seen}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "StandardScaler":
        for key in ("mean", "scale"):
            if key not in state:
                raise DataValidationError(f"scaler state is missing key {key!r}; got keys {sorted(state)}")
        if state.get("kind", "standard") != "standard":
            raise DataValidationError(f"scaler state has kind {state['kind']!r}, expected 'standard'")
        scaler = cls(state.get("columns"))
        scaler.mean = np.asarray(state["mean"], dtype=np.float64)
        scaler.scale = np.asarray(state["scale"], dtype=np.float64)
        if scaler.mean.shape != scaler.scale.shape or scaler.mean.ndim != 1:
            raise DataValidationError(f"scaler state: mean and scale must be equal-length lists, got {scaler.mean.shape} and {scaler.scale.shape}")
        scaler.rows_seen = int(state.get("rows_seen", 0))
        return scaler
