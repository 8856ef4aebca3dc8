"""Blocks of lanes side by side, each a `LaneWindows` over its own rows.

A multi-worker run on a store gives each worker the series of one group (`longstm.data.panel.series_groups`):
its lanes read only those series, so it opens only their shards. `LaneGroups` lays the groups'
lanes side by side as one schedule of B lanes with a common number of updates; a worker holds
its own groups and only the lane counts of the others, and a one-process run with the same
groups trains exactly the same updates.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from longstm.data.lanes import LaneWindows, lanes_dataset
from longstm.data.store import Store
from longstm.errors import ConfigError, DataValidationError


class LaneGroups:
    """Blocks of lanes side by side, each its own `LaneWindows` over its own rows.

    Group g's lanes follow group g - 1's; every group runs `steps` updates (the longest
    group's, unless given), a group that runs out getting empty windows (zero inputs, loss
    mask 0, reset set). A group may be a lane count instead: lanes that another process reads
    (a multi-worker run, each worker holding the groups of its own series); they cannot be
    batched here, and `lane_block` leaves them out.

    Args:
        groups: `LaneWindows` (same k1, k2, features and outputs) or lane counts.
        steps: updates per epoch (default: the longest group's); at least every group's.

    Example:

    >>> lanes = LaneGroups([LaneWindows(rows_a, lanes=8, k1=64), LaneWindows(rows_b, lanes=8, k1=64)])
    >>> lanes.lanes, len(lanes)                 # 16 lanes; the longer group's updates
    """

    def __init__(self, groups: Sequence[LaneWindows | int], steps: int | None = None):
        self.groups = list(groups)
        held = [g for g in self.groups if isinstance(g, LaneWindows)]
        if not held:
            raise DataValidationError("LaneGroups needs at least one LaneWindows group")
        first = held[0]
        for group in held[1:]:
            if (group.k1, group.k2, group.n_features, group.n_outputs) != (first.k1, first.k2, first.n_features, first.n_outputs):
                raise DataValidationError(f"lane groups must share k1, k2, features and outputs; got {(group.k1, group.k2, group.n_features, group.n_outputs)} "
                                          f"and {(first.k1, first.k2, first.n_features, first.n_outputs)}")
        self.k1, self.k2, self.n_features, self.n_outputs = first.k1, first.k2, first.n_features, first.n_outputs
        self.widths = [g.lanes if isinstance(g, LaneWindows) else int(g) for g in self.groups]
        self.lanes = sum(self.widths)
        longest = max(len(g) for g in held)
        self.steps = longest if steps is None else int(steps)
        if self.steps < longest:
            raise DataValidationError(f"steps must be at least the longest group's {longest}; got {steps}")

    def __len__(self) -> int:
        return self.steps

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """Every group's arrays of update `step`, lanes in group order."""
        parts = []
        for group, width in zip(self.groups, self.widths):
            if not isinstance(group, LaneWindows):
                raise DataValidationError(f"lanes of another process ({width} lanes) cannot be read here; take a lane_block of the held groups")
            parts.append(group.batch(step) if step < len(group) else self._empty(width))
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    def _empty(self, width: int) -> dict[str, np.ndarray]:
        return {"x": np.zeros((width, self.k2, self.n_features), np.float32), "y": np.zeros((width, self.k2, self.n_outputs), np.float32),
                "mask": np.zeros((width, self.k2), np.float32), "reset": np.ones(width, bool), "start": np.full(width, -1, np.int64)}

    def lane_block(self, first: int, stop: int) -> "LaneGroups":
        """The groups of lanes `first .. stop-1` (group edges), with the same number of updates."""
        edges = np.concatenate([[0], np.cumsum(self.widths)])
        if first not in edges or stop not in edges or not first < stop:
            raise DataValidationError(f"a lane block must start and stop at group edges {edges.tolist()}; got ({first}, {stop})")
        inside = self.groups[int(np.searchsorted(edges, first)) : int(np.searchsorted(edges, stop))]
        return self if len(inside) == len(self.groups) else LaneGroups(inside, self.steps)

    def dataset(self, first_step: int = 0):
        """As `LaneWindows.dataset`."""
        return lanes_dataset(self, first_step)


def series_groups(store: Store, names: Sequence[str], groups: int) -> list[list[str]]:
    """`names` in `groups` groups of about equal rows (from the store's index: no shard is
    opened), each in the given order: the largest series first to the lightest group.

    Args:
        store: the `Store`.
        names: the series to share out.
        groups: how many groups (the workers of a run).

    Returns:
        One list of series names per group.

    Raises:
        ConfigError: more groups than series (a worker would have nothing to read).

    Example:

    >>> series_groups(store, ["a", "b", "c"], 2)     # a, b, c of equal length
    [['a', 'c'], ['b']]
    """
    names = list(names)
    if groups > len(names):
        raise ConfigError(f"{store.path}: {groups} workers need at least {groups} series to share out; the panel has {len(names)}: {names}")
    members: list[set[str]] = [set() for _ in range(groups)]
    load = [0] * groups
    for rows, index, name in sorted((-store.indexed_rows(name), index, name) for index, name in enumerate(names)):
        lightest = min(range(groups), key=lambda g: (load[g], g))
        members[lightest].add(name)
        load[lightest] -= rows
    return [[name for name in names if name in group] for group in members]
