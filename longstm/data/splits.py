"""Chronological train/validation/test splits with the lookback overlap of the ETT protocol.

Validation and test start `lookback` rows before their first target, so their first window's
input reaches back into the previous split (the Informer/Autoformer/DLinear convention). The
row ranges are half-open `[start, stop)`.

- `ett_split`: ETTh 12/4/4 months of 30 days: train [0, 8640), val [8640 - L, 11520),
  test [11520 - L, 14400); ETTm the same x4 (15-minute rows). Rows past 14400 (x4) are unused.
- `chronological_split`: other data, `num_train = int(n * 0.7)`, `num_test = int(n * 0.2)`,
  `num_val = n - num_train - num_test` (Informer's `Dataset_Custom`).
"""

from __future__ import annotations

from dataclasses import dataclass

from longstm.errors import DataValidationError

ETT_HOURS = (12 * 30 * 24, 4 * 30 * 24, 4 * 30 * 24)  # train, val, test rows of ETTh
ETT_ROWS_PER_HOUR = {"h": 1, "m": 4}


@dataclass(frozen=True)
class Split:
    """Row ranges `[start, stop)` of the three parts, and the lookback they overlap by."""

    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]
    lookback: int
    protocol: str = ""

    def part(self, name: str) -> tuple[int, int]:
        """`(start, stop)` of `"train"`, `"val"` or `"test"`."""
        if name not in ("train", "val", "test"):
            raise DataValidationError(f"split part must be 'train', 'val' or 'test', got {name!r}")
        return getattr(self, name)

    def num_windows(self, name: str, horizon: int) -> int:
        """Windows of `lookback` inputs + `horizon` targets that fit in a part (0 if none)."""
        start, stop = self.part(name)
        return max(0, stop - start - self.lookback - horizon + 1)


def _check_lookback(lookback: int) -> int:
    if isinstance(lookback, bool) or int(lookback) != lookback or lookback < 1:
        raise DataValidationError(f"lookback must be a positive integer, got {lookback!r}")
    return int(lookback)


def ett_split(n_rows: int, lookback: int, freq: str = "h") -> Split:
    """The standard ETT split (Informer, Autoformer, DLinear, PatchTST...).

    Args:
        n_rows: rows in the file (ETTh1 has 17420; only the first 14400 are used).
        lookback: input length L; val and test start L rows before their first target.
        freq: `"h"` for ETTh (hourly), `"m"` for ETTm (15-minute rows, all borders x4).

    Returns:
        A `Split`.

    Example:

    >>> ett_split(17420, 336)
    Split(train=(0, 8640), val=(8304, 11520), test=(11184, 14400), lookback=336, protocol='ETTh')
    """
    if freq not in ETT_ROWS_PER_HOUR:
        raise DataValidationError(f"ETT freq must be 'h' (hourly) or 'm' (15-minute), got {freq!r}")
    lookback = _check_lookback(lookback)
    scale = ETT_ROWS_PER_HOUR[freq]
    train, val, test = (rows * scale for rows in ETT_HOURS)
    if n_rows < train + val + test:
        raise DataValidationError(
            f"the ETT{freq} split needs at least {train + val + test} rows (12/4/4 months), got {n_rows}"
        )
    if lookback > train:
        raise DataValidationError(f"lookback {lookback} is longer than the ETT{freq} training part ({train} rows)")
    return Split((0, train), (train - lookback, train + val), (train + val - lookback, train + val + test), lookback, f"ETT{freq}")


def chronological_counts(n_rows: int, fractions) -> tuple[int, int, int]:
    """Rows of the train, validation and test parts with Informer's rounding.

    `num_train = int(n * train)`, `num_test = int(n * test)` and validation the rest; a part
    may be empty (callers decide whether that is allowed). The one rounding rule behind
    `chronological_split` and the run splits of `split_rows`.

    Example:

    >>> chronological_counts(1000, (0.7, 0.1, 0.2))
    (700, 100, 200)
    """
    num_train = int(n_rows * fractions[0])
    num_test = int(n_rows * fractions[2])
    return num_train, n_rows - num_train - num_test, num_test


def split_rows(n_rows: int, fractions) -> dict[str, tuple[int, int]]:
    """A run's chronological row ranges (`data.split` fractions) with Informer's rounding:
    `int(n * train)` and `int(n * test)` rows, validation the rest; empty parts allowed."""
    train, _, test = chronological_counts(n_rows, fractions)
    if train < 1:
        raise DataValidationError(f"data.split {list(fractions)} leaves no training rows out of {n_rows}")
    return {"train": (0, train), "val": (train, n_rows - test), "test": (n_rows - test, n_rows)}


def chronological_split(n_rows: int, lookback: int, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> Split:
    """A chronological train/val/test split with the ETT-style lookback overlap.

    Args:
        n_rows: rows in the series.
        lookback: input length L.
        fractions: (train, val, test), summing to 1. As in Informer's `Dataset_Custom`,
            `num_train = int(n * train)`, `num_test = int(n * test)` and validation gets the rest.

    Example:

    >>> chronological_split(1000, 10)
    Split(train=(0, 700), val=(690, 800), test=(790, 1000), lookback=10, protocol='70/10/20')
    """
    lookback = _check_lookback(lookback)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise DataValidationError(f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")
    num_train, num_val, num_test = chronological_counts(n_rows, fractions)
    if min(num_train, num_val, num_test) < 1 or lookback > num_train:
        raise DataValidationError(
            f"cannot split {n_rows} rows {fractions} with lookback {lookback}: parts of {num_train}/"
            f"{num_val}/{num_test} rows (each part needs rows, and lookback must fit in train)"
        )
    label = "/".join(f"{round(f * 100):g}" for f in fractions)
    return Split(
        (0, num_train),
        (num_train - lookback, num_train + num_val),
        (n_rows - num_test - lookback, n_rows),
        lookback,
        label,
    )
