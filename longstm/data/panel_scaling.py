"""Train-only scaling of a panel from per-series moments (count, sum, sum of squares).

Moments add up: a process that reads only some series (a worker of a multi-worker run) sums
its own, the processes sum theirs (`PanelDataset(all_reduce=...)`), and every process gets
the scaler one process reading every series would fit — per series, or pooled over all.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from longstm.errors import DataValidationError


def scaler_from_moments(moments: dict[str, np.ndarray], names: Sequence[str], per_series: bool, n_features: int,
                        where: str, part: str = "train") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`{series: (mean, scale)}` from `PanelFeatureRows.moments` (pooled: their sum, the same
    for every series); target columns (from `n_features` on) keep a mean of 0.

    Raises:
        DataValidationError: a series (or the pool) with fewer than 2 rows.
    """
    width = next(iter(moments.values())).shape[1] if moments else 0
    if not per_series:
        pooled = sum(moments.values())
        moments = {name: pooled for name in names}
    scaler = {}
    for name in names:
        count, total, squares = moments.get(name, np.zeros((3, width)))
        if width == 0 or count[0] < 2:
            raise DataValidationError(f"{where}: series {name!r} has {int(count[0]) if width else 0} {part} rows; scaling needs 2 or more")
        safe = np.maximum(count, 1)
        mean = np.where(np.arange(width) < n_features, total / safe, 0.0)
        scale = np.sqrt(np.maximum(squares / safe - mean * mean, 0.0))
        scaler[name] = (mean, np.where(scale > 0, scale, 1.0))
    return scaler
