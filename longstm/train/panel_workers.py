"""A panel run over several workers: each worker reads only the shards of its own series.

Under `MultiWorkerMirroredStrategy` with W workers, the panel's series are shared out in W
groups of about equal rows (`longstm.data.lane_groups.series_groups`, from the store's index).
Worker w opens only its group's shards: it computes those series' sessions, split rows and
training moments, and its lanes (`train.lanes / W` of them, one block of `LaneGroups`) hold
only those series. What the workers need of each other goes through the strategy's all-reduce:

- the moments (count, sum, sum of squares over the training rows) and split rows of every
  series, each filled in by the worker that reads it, so every worker gets the same scaler,
  per series or pooled, as one process would fit, and the chief writes the whole record;
- the number of updates per epoch (the longest group's: a group that runs out gets empty
  windows).

A one-process run with the same groups (`grouped_training_lanes(config, data, groups)`)
trains exactly the same updates.

Example:

>>> share = panel_share(config, strategy)          # None with one worker
>>> data = load_panel(config, share=share)          # this worker's series, the whole panel's scaler
>>> lanes = grouped_training_lanes(config, data, share.groups, held=share.index, all_reduce=share.all_reduce)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from longstm.data.lane_groups import LaneGroups, series_groups
from longstm.data.lanes import LaneWindows
from longstm.data.panel import PanelDataset
from longstm.data.store import Store
from longstm.errors import ConfigError
from longstm.train.config import Config
from longstm.train.distribute import local_replicas, replicas, worker_index


@dataclass(frozen=True)
class PanelShare:
    """This worker's part of a panel: `groups[index]` are its series, of `all_series`."""

    groups: list[list[str]]
    index: int
    all_reduce: Callable[[np.ndarray], np.ndarray]
    all_series: list[str]

    @property
    def series(self) -> list[str]:
        return self.groups[self.index]


def workers(strategy) -> int:
    """Worker processes of a strategy (1 without one, or on one host)."""
    return 1 if strategy is None else replicas(strategy) // local_replicas(strategy)


def all_reduce_sum(strategy, array: np.ndarray) -> np.ndarray:
    """The sum over the workers of a float64 array (each worker's first replica gives its own;
    the strategy's collective, the one the gradients use)."""
    local = local_replicas(strategy)
    value = tf.constant(np.asarray(array, np.float64))
    zeros = tf.zeros_like(value)
    per_replica = strategy.experimental_distribute_values_from_function(
        lambda context: value if context.replica_id_in_sync_group % local == 0 else zeros)
    return np.asarray(strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None))


def panel_share(config: Config, store_path, strategy, names: Sequence[str] | None = None) -> PanelShare | None:
    """This worker's series and the all-reduce, or None with one worker.

    Args:
        config: the run's config (`train.lanes`, `data.series`).
        store_path: the store.
        strategy: the run's strategy (None: one device).
        names: the series to share out (default `data.series`, else all of the store's).

    Returns:
        A `PanelShare`, or None when the strategy has one worker.

    Raises:
        ConfigError: `train.lanes` not a multiple of the workers, or fewer series than workers.
    """
    count = workers(strategy)
    if count <= 1:
        return None
    if config.train.lanes % count:
        raise ConfigError(f"train.lanes = {config.train.lanes} must be divisible by the {count} workers of a panel run "
                          f"(each worker's lanes hold its own series)")
    store = Store(store_path)
    names = list(names or config.data.series or store.names)
    return PanelShare(series_groups(store, names, count), worker_index(strategy), lambda array: all_reduce_sum(strategy, array), names)


def grouped_training_lanes(config: Config, data: PanelDataset, groups: Sequence[Sequence[str]], *, held: int | None = None,
                           all_reduce: Callable[[np.ndarray], np.ndarray] | None = None) -> LaneGroups:
    """`train.lanes / len(groups)` training lanes per group of series, side by side.

    Args:
        config: the run's config.
        data: the panel (all the groups' series, or with `held` only that group's).
        groups: the series of each group.
        held: the one group this process reads (None: all).
        all_reduce: sums an array over the processes (needed with `held`): the groups agree
            on the number of updates.

    Returns:
        A `LaneGroups` of `train.lanes` lanes (other processes' groups as lane counts).
    """
    width = config.train.lanes // len(groups)
    train = config.train
    blocks: list[LaneWindows | int] = []
    for index, names in enumerate(groups):
        if held is not None and index != held:
            blocks.append(width)
            continue
        rows = data.rows("train", series=names)
        blocks.append(LaneWindows(rows, lanes=width, k1=train.k1, k2=train.k2, burn_in=train.burn_in,
                                  segments=rows.segments, **data.lane_columns()))
    steps = None
    if held is not None:
        counts = np.zeros(len(groups))
        counts[held] = len(blocks[held])
        steps = int(np.max(all_reduce(counts)))
    return LaneGroups(blocks, steps)
