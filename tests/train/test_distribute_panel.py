"""A panel run over 2 workers (`MultiWorkerMirroredStrategy` on localhost): each worker opens only
the shards of its own series, and the run trains what one process trains with the same groups.

The workers run `train_from_config` in subprocesses (this file is their script:
`python tests/train/test_distribute_panel.py worker INDEX OUT WORK`); each records which series'
shards it opened (`StoreSeries._table`, the store's one open path), its per-update losses and
its final weights. The one-process reference runs here, from the same config and seed, with the
same two groups of series side by side (`grouped_training_lanes`). Pooled scaling makes the
scaler need every series: the workers get it through the strategy's all-reduce of their moments.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.train.test_distribute import SUBPROCESS_TESTS, run_local_workers

def _config(store):
    from tests.train.test_panel_run import panel_config

    config = panel_config(store, scaling="pooled")
    config.train.epochs, config.train.learning_rate = 1, 1e-2
    return config


def _store(work: Path) -> Path:
    from tests.train.test_panel_run import make_quote_store

    store = work / "quotes" / "store"
    return store if store.exists() else make_quote_store(work / "quotes", ticks_per_day=300)


class _Losses:
    def __init__(self):
        self.losses, self.trainer = [], None

    def on_step_end(self, trainer, step, logs):
        self.losses.append(logs["loss"])
        self.trainer = trainer


def worker_main(index: int, out: str, work: str) -> None:
    from longstm.train.distribute import get_strategy

    get_strategy("multiworker")  # before any other TensorFlow operation
    import tensorflow as tf

    from longstm.data.store import StoreSeries
    from longstm.train.run import train_from_config

    tf.config.experimental.enable_op_determinism()
    opened, table = set(), StoreSeries._table

    def recording_table(self, shard):
        opened.add(self.name)
        return table(self, shard)

    StoreSeries._table = recording_table
    record = _Losses()
    scores = train_from_config(_config(_store(Path(work))), Path(work) / "run", progress=False, callbacks=[record], strategy="multiworker")
    Path(out).write_text(json.dumps({"opened": sorted(opened), "losses": record.losses, "scores": scores,
                                     "weights": [w.tolist() for w in record.trainer.model.get_weights()]}))


@pytest.mark.slow
@SUBPROCESS_TESTS
def test_each_worker_reads_only_its_series_and_the_run_equals_one_process(tmp_path):
    from longstm.data.lane_groups import series_groups
    from longstm.data.store import Store
    from longstm.train.panel_workers import grouped_training_lanes
    from longstm.train.run import build_trainer, evaluate_run, load_panel
    from longstm.train.rundir import RunDir

    store = _store(tmp_path)
    config = _config(store)
    chief, other = run_local_workers(__file__, tmp_path)

    groups = series_groups(Store(store), ["a", "b", "c"], 2)
    assert groups == [["a", "c"], ["b"]]  # equal rows: the largest first to the lightest group
    assert chief["opened"] == ["a", "c"] and other["opened"] == ["b"]
    assert chief["scores"] == other["scores"] == {}

    # One process with the same two groups side by side: the same scaler, updates and weights.
    data = load_panel(config)
    record = RunDir(tmp_path / "run").read_data_record()
    assert record["series"] == ["a", "b", "c"] and record["rows"] == {k: list(v) for k, v in data.panel.bounds.items()}
    for name in "abc":
        np.testing.assert_allclose(record["scaler"][name]["mean"], data.scaler[name][0], rtol=1e-12)
        np.testing.assert_allclose(record["scaler"][name]["scale"], data.scaler[name][1], rtol=1e-12)
    losses = _Losses()
    trainer = build_trainer(config, data, callbacks=[losses], progress=False)
    trainer.fit(grouped_training_lanes(config, data, groups))
    assert len(losses.losses) == len(chief["losses"]) > 10 and other["losses"] == chief["losses"]
    np.testing.assert_allclose(chief["losses"], losses.losses, rtol=1e-5)
    for got, want in zip(chief["weights"], trainer.model.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # The run is scored afterwards on one device, as the docs say (its last checkpoint's weights).
    scores = evaluate_run(tmp_path / "run")
    assert set(scores) == {"val", "test"} and all(np.isfinite(s["mse"]) for s in scores.values())


def test_a_panel_over_workers_needs_lanes_divisible_by_the_workers(tmp_path):
    from types import SimpleNamespace

    from longstm.errors import ConfigError
    from longstm.train.panel_workers import panel_share

    store = _store(tmp_path)
    config = _config(store)
    config.train.lanes = 3
    two_workers = SimpleNamespace(num_replicas_in_sync=2, extended=SimpleNamespace(worker_devices=["/cpu:0"]))
    with pytest.raises(ConfigError, match=r"train.lanes = 3 must be divisible by the 2 workers of a panel run"):
        panel_share(config, store, two_workers)
    assert panel_share(config, store, None) is None  # one worker: nothing to share


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker_main(int(sys.argv[2]), sys.argv[3], sys.argv[4])
