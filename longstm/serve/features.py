"""Incremental causal features for serving: one row at a time, the previous raw row carried.

Saved runs record them in data.json as `{"kind": "causal", "transforms": [...]}` (one
transform per raw column); `StreamingPredictor` applies them before its scaler.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from longstm.errors import ConfigError


class CausalFeatures:
    """Per-column causal transforms computed one row at a time, the previous raw row carried.

    Args:
        transforms: one entry per raw column: `"value"` (the value itself), `"diff"`
            (`x_t - x_{t-1}`) or `"log_return"` (`log(x_t / x_{t-1})`). The first row of a
            series (or after a reset) has no previous row; its diff/log-return is 0.

    `transform(values)` (whole series) and `step(row, previous)` (one tick) give the same
    numbers, so a model trained on `transform` output can be streamed.

    Example:

    >>> features = CausalFeatures(["log_return", "value"])
    >>> features.transform(np.array([[100.0, 1.0], [101.0, 2.0]]))   # doctest: +SKIP
    """

    KINDS = ("value", "diff", "log_return")

    def __init__(self, transforms: Sequence[str]):
        transforms = list(transforms)
        if not transforms:
            raise ConfigError("CausalFeatures needs one transform per column; got an empty list.")
        for index, kind in enumerate(transforms):
            if kind not in self.KINDS:
                raise ConfigError(f"CausalFeatures transform {index} must be one of {self.KINDS}; got {kind!r}.")
        self.transforms = transforms
        kinds = np.asarray(transforms)
        self._diff = kinds == "diff"
        self._log = kinds == "log_return"

    @property
    def n_columns(self) -> int:
        return len(self.transforms)

    def _apply(self, current: np.ndarray, previous: np.ndarray, has_previous: np.ndarray) -> np.ndarray:
        out = np.array(current, dtype=np.float64)
        if self._log.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.log(current[..., self._log] / previous[..., self._log])
            out[..., self._log] = np.where(has_previous[..., None], ratio, 0.0)
        if self._diff.any():
            out[..., self._diff] = np.where(has_previous[..., None], current[..., self._diff] - previous[..., self._diff], 0.0)
        return out

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Features of a whole series `(rows, columns)` (or `(rows, lanes, columns)`)."""
        values = np.asarray(values, dtype=np.float64)
        previous = np.concatenate([values[:1], values[:-1]], axis=0)
        has_previous = np.ones(values.shape[:-1], bool)
        has_previous[0] = False
        return self._apply(values, previous, has_previous)

    def step(self, row: np.ndarray, previous: np.ndarray, has_previous: np.ndarray) -> np.ndarray:
        """Features of one row per lane `(lanes, columns)` given each lane's previous raw row."""
        return self._apply(np.asarray(row, np.float64), previous, has_previous)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "causal", "transforms": self.transforms}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "CausalFeatures":
        if state.get("kind") != "causal" or "transforms" not in state:
            raise ConfigError(f"feature pipeline state must be {{'kind': 'causal', 'transforms': [...]}}; got {state!r}")
        return cls(state["transforms"])
