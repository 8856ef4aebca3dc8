"""Training on several devices or hosts with `tf.distribute`, lanes sharded across replicas.

    strategy = get_strategy("mirrored")          # all local GPUs (or logical CPUs)
    with strategy.scope():
        model = build_model(...)                  # variables mirrored on every replica
    trainer = Trainer(model, config, strategy=strategy)
    trainer.fit(train_lanes)                      # the same LaneWindows as on one device

With R replicas in sync (over all workers) and B lanes, replica r owns the contiguous block
of lanes `[r * B/R, (r + 1) * B/R)` for the whole run and carries their state from window to
window as a per-replica value of shape `(B/R, ...)` (never a mirrored variable: replicas'
copies of one would silently diverge, and Keras' `stateful=True` fails under a strategy,
TensorFlow issue #39098). A worker reads only the rows of its own replicas' lanes
(`lane_block`): with an `.npy` file or `np.memmap` it touches nothing else of the series.

One update (`DistributedEngine.train_step`):

    global_count = all_reduce(SUM, count of unmasked target steps)      # every replica
    gradient_r   = d(loss_sum_r / global_count) / d(weights)            # replica r's lanes
    gradient     = all_reduce(SUM, gradient_r)                          # = the one-device gradient
    clip by global norm (of the all-reduced gradient), apply             # identical on every replica

so an update equals the single-device update at the same global batch of B lanes. The
all-reduces are `tf.distribute`'s (`ReplicaContext.all_reduce`); Keras' optimizer would
otherwise all-reduce inside `apply` *after* clipping each replica's own gradient, so the
optimizer used here (`make_optimizer(..., reduced_gradients=True)`) takes gradients that
are already summed (see `PreReducedGradients`).

Checkpoints hold the global `(B, ...)` state arrays in lane order (`gather_state`), exactly
as a single-device run writes them, and `scatter_state` splits them again: a run can resume
on any replica count that divides B.

Validation, `evaluate` and `predict` run on one device (the local copy of the mirrored
weights, identical on every replica): the training throughput is what is distributed.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import numpy as np
import tensorflow as tf

from longstm.errors import ConfigError
from longstm.train.engine import TBPTTEngine, cast_state

STRATEGIES = ("default", "mirrored", "multiworker")

_CREATED: dict[str, Any] = {}


def get_strategy(name: str | Any | None):
    """The `tf.distribute.Strategy` for a config name; None for "default" (one device).

    Args:
        name: "default", "mirrored" (`MirroredStrategy` over all local GPUs, else over the
            logical CPU devices when there are several, else the CPU), "multiworker"
            (`MultiWorkerMirroredStrategy`; the cluster comes from `TF_CONFIG`, else from
            Slurm's environment through `SlurmClusterResolver`), or a strategy object
            (returned as is).

    A strategy is created once per process and reused (TensorFlow allows only one
    `MultiWorkerMirroredStrategy` per process, and it must be created before any other
    TensorFlow operation runs: call this first in the program).

    Environment:
        LONGSTM_CPU_REPLICAS=n: without GPUs, split the CPU into n logical devices for
            "mirrored" (testing and demonstrations: they share the same cores).
        LONGSTM_COLLECTIVE_TIMEOUT=seconds: "multiworker" collectives fail after this long
            instead of waiting for a lost worker forever.
    """
    if name is None or name == "default":
        return None
    if isinstance(name, tf.distribute.Strategy):
        return None if _is_default(name) else name
    if name not in STRATEGIES:
        raise ConfigError(f"'train.strategy' must be one of {STRATEGIES}; got {name!r}")
    if name in _CREATED:
        return _CREATED[name]
    if name == "mirrored":
        _split_cpu(int(os.environ.get("LONGSTM_CPU_REPLICAS", "0") or 0))
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
    else:
        timeout = os.environ.get("LONGSTM_COLLECTIVE_TIMEOUT")
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=float(timeout) if timeout else None)
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=_cluster_resolver(), communication_options=options
        )
    _CREATED[name] = strategy
    return strategy


def _split_cpu(count: int) -> None:
    if count <= 1 or tf.config.list_physical_devices("GPU"):
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        raise ConfigError(
            f"LONGSTM_CPU_REPLICAS={count}: TensorFlow was already initialised with "
            f"{len(tf.config.list_logical_devices('CPU'))} CPU device(s); the strategy must be created first"
        ) from None


def _is_default(strategy) -> bool:
    return type(strategy).__name__ == "_DefaultDistributionStrategy"


def _cluster_resolver():
    if os.environ.get("TF_CONFIG"):
        try:
            spec = json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as error:
            raise ConfigError(f"TF_CONFIG is not valid JSON ({error}); got {os.environ['TF_CONFIG'][:200]!r}") from None
        workers = spec.get("cluster", {}).get("worker")
        task = spec.get("task", {})
        if not workers or task.get("type") not in ("worker", "chief") or "index" not in task:
            raise ConfigError(
                'TF_CONFIG must look like {"cluster": {"worker": ["host1:port", ...]}, '
                f'"task": {{"type": "worker", "index": 0}}}}; got {os.environ["TF_CONFIG"][:200]!r}'
            )
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if os.environ.get("SLURM_JOB_ID") and os.environ.get("SLURM_PROCID"):
        return tf.distribute.cluster_resolver.SlurmClusterResolver(port_base=int(os.environ.get("LONGSTM_PORT_BASE", "8888")))
    raise ConfigError(
        "strategy 'multiworker' needs the cluster: set TF_CONFIG on every worker (see docs/distributed.md) "
        "or run under Slurm (srun), whose environment describes it"
    )


def replicas(strategy) -> int:
    """Replicas in sync over all workers (1 without a strategy)."""
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def local_replicas(strategy) -> int:
    return 1 if strategy is None else len(strategy.extended.worker_devices)


def worker_index(strategy) -> int:
    """This worker's index in the cluster (0 without a strategy or with a one-host strategy)."""
    if strategy is None:
        return 0
    first: list[int] = []

    def record(context):
        first.append(context.replica_id_in_sync_group)
        return tf.constant(0)

    strategy.experimental_distribute_values_from_function(record)
    return min(first) // local_replicas(strategy)


def is_chief(strategy) -> bool:
    """Whether this process writes the run's files (worker 0)."""
    return worker_index(strategy) == 0


def check_lanes(strategy, lanes: int, key: str = "train.lanes") -> int:
    """Lanes per replica; `ConfigError` unless `lanes` is a multiple of the replica count."""
    count = replicas(strategy)
    if lanes % count:
        raise ConfigError(
            f"{key} = {lanes} must be divisible by the {count} replicas in sync of the distribution strategy "
            f"(each replica carries the state of its own block of lanes); use e.g. {count * max(1, lanes // count)} "
            f"or {count * (lanes // count + 1)}"
        )
    return lanes // count


def lane_block(windows, first: int, stop: int):
    """The same `LaneWindows` schedule restricted to lanes `first .. stop-1`.

    The block reads only its own lanes' rows (same windows, resets and masks as those lanes
    have in the full schedule, same number of updates), so a worker never touches the rows
    of other workers' lanes. Returns `windows` itself for the full range. A schedule with its
    own `lane_block` (`longstm.data.lane_groups.LaneGroups`: each worker holds only its groups) cuts itself.
    """
    if (first, stop) == (0, windows.lanes):
        return windows
    if hasattr(windows, "lane_block"):
        return windows.lane_block(first, stop)
    if not 0 <= first < stop <= windows.lanes:
        raise ValueError(f"lane block must satisfy 0 <= first < stop <= {windows.lanes}; got ({first}, {stop})")
    block = copy.copy(windows)  # shares the row source; the schedule arrays are sliced below
    block.lanes = stop - first
    for name in ("_start", "_mask_from", "_loss_end", "_reset"):
        setattr(block, name, np.ascontiguousarray(getattr(windows, name)[:, first:stop]))
    return block


class DistributedEngine:
    """`TBPTTEngine`'s train step run on every replica of a strategy, state per replica.

    Args:
        strategy: a `tf.distribute` strategy; the model and optimizer were created (and the
            model built) under its scope.
        model: the `RecurrentModel`.
        optimizer: from `make_optimizer(..., reduced_gradients=True)` under the scope.
        k1: as `TBPTTEngine`.
        lanes: B, the global number of lanes (a multiple of the replica count).

    `train_step(batch, state)` takes this worker's batch (a dict of its own lanes' x, y,
    mask, reset, in lane order) and the per-replica state; returns the global loss sum and
    count (summed over all replicas) and the new per-replica state.
    """

    def __init__(self, strategy, model, optimizer, k1: int, lanes: int):
        self.strategy = strategy
        self.lanes = lanes
        self.per_replica = check_lanes(strategy, lanes)
        self.local_replicas = local_replicas(strategy)
        self.worker = worker_index(strategy)
        self.first_lane = self.worker * self.local_replicas * self.per_replica
        self.local_lanes = self.local_replicas * self.per_replica
        with strategy.scope():
            self.core = TBPTTEngine(model, optimizer, k1)
        self.model, self.optimizer = model, optimizer
        self._evaluator = None
        self._step = tf.function(self._distributed_step)
        self._gather = tf.function(
            lambda state: [strategy.gather(leaf, axis=0) for leaf in tf.nest.flatten(state)]
        )

    @property
    def evaluator(self) -> TBPTTEngine:
        """An evaluation-only engine on one device (the local copy of the mirrored weights)."""
        if self._evaluator is None:
            self._evaluator = TBPTTEngine(self.model)
        return self._evaluator

    def local_windows(self, windows):
        """This worker's lanes of `windows`: it reads no other worker's rows."""
        return lane_block(windows, self.first_lane, self.first_lane + self.local_lanes)

    # ---- values per replica -----------------------------------------------------------------

    def _split(self, array):
        """A worker-local `(local_lanes, ...)` array as per-replica `(B/R, ...)` blocks."""
        per, local = self.per_replica, self.local_replicas

        def block(context):
            index = context.replica_id_in_sync_group % local
            return tf.convert_to_tensor(array[index * per : (index + 1) * per])

        return self.strategy.experimental_distribute_values_from_function(block)

    def initial_state(self, lanes: int | None = None):
        """Zero state of this worker's replicas' lanes, per replica."""
        zeros = cast_state(self.model.initial_state(self.per_replica), tf.float32)
        return tf.nest.map_structure(
            lambda leaf: self.strategy.experimental_distribute_values_from_function(lambda _: tf.identity(leaf)), zeros
        )

    def gather_state(self, state) -> list[np.ndarray]:
        """The global `(B, ...)` state arrays, lanes in order (a collective: every worker calls it)."""
        return [np.asarray(leaf) for leaf in self._gather(state)]

    def scatter_state(self, template, leaves: list[np.ndarray]):
        """Per-replica state from global `(B, ...)` arrays (as `gather_state` returns them)."""
        local = [np.asarray(leaf)[self.first_lane : self.first_lane + self.local_lanes] for leaf in leaves]
        return tf.nest.pack_sequence_as(template, [self._split(leaf) for leaf in local])

    # ---- the update -------------------------------------------------------------------------

    def train_step(self, batch, state):
        x, y, mask, reset = (self._split(batch[key]) for key in ("x", "y", "mask", "reset"))
        return self._step(x, y, mask, reset, state)

    def _distributed_step(self, x, y, mask, reset, state):
        loss_sum, count, carried = self.strategy.run(self._replica_step, args=(x, y, mask, reset, state))
        total = self.strategy.reduce(tf.distribute.ReduceOp.SUM, loss_sum, axis=None)
        total_count = self.strategy.reduce(tf.distribute.ReduceOp.SUM, count, axis=None)
        return total, total_count, carried

    def _replica_step(self, x, y, mask, reset, state):
        context = tf.distribute.get_replica_context()
        global_count = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(mask))
        loss_sum, count, gradients, carried = self.core.window_gradients(
            x, y, mask, reset, state, total_count=global_count
        )
        present = [i for i, gradient in enumerate(gradients) if gradient is not None]
        summed = context.all_reduce(tf.distribute.ReduceOp.SUM, [gradients[i] for i in present])
        gradients = list(gradients)
        for i, gradient in zip(present, summed):
            gradients[i] = gradient
        self.optimizer.apply(gradients, self.model.trainable_variables)
        return loss_sum, count, carried


class PreReducedGradients:
    """Mixin for a Keras optimizer whose gradients arrive already all-reduced.

    Keras' TensorFlow optimizer sums the gradients across replicas inside `apply`, after
    clipping: global-norm clipping would then use each replica's own gradient norm. The
    engine sums them first (`ReplicaContext.all_reduce`), so the optimizer (and its
    clipping, and a `LossScaleOptimizer`'s finiteness check) sees the summed gradient;
    this hook keeps Keras from summing it a second time.
    """

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


def pre_reduced(optimizer_class):
    """A subclass of a Keras optimizer class that expects already all-reduced gradients."""
    if not hasattr(optimizer_class, "_all_reduce_sum_gradients"):
        raise RuntimeError(
            f"{optimizer_class.__name__} has no _all_reduce_sum_gradients: this Keras version reduces "
            "gradients differently; longstm's distributed training needs updating for it"
        )
    return type(f"PreReduced{optimizer_class.__name__}", (PreReducedGradients, optimizer_class), {})
