"""Distributed TBPTT (issue 8): mirrored and multi-worker runs equal a single-device run.

The strategies need TensorFlow configured before it initialises (two logical CPU devices,
collective ops), so those checks run in subprocesses: this file is also the script they run
(`python tests/train/test_distribute.py mirrored OUT.json`, `... worker INDEX OUT.json`).
The subprocesses compare runs and write numbers; the tests here assert on them.

Tolerances: float32 losses agree within 1e-5 relative and carried states within 1e-5
absolute (the replicas run the same kernels on fewer lanes; the summed gradient differs from
the one-device gradient only in summation order). Mixed float16: losses 1e-4 relative and
states one float16 rounding step, as long as both runs make the same loss-scaling decisions
(see that test).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 420  # seconds for one subprocess (about 60-100 s on 2 idle cores, 150 was too little under load); a hung collective fails the test instead of CI
# pytest-timeout (300 s for a test in pyproject.toml) counts the module fixture's subprocess
# against whichever test sets it up first, and the multi-worker test waits for its own workers
# after it: those tests get room for both subprocess timeouts, so the subprocess's own timeout
# (with its output) is what fails first.
SUBPROCESS_TESTS = pytest.mark.timeout(2 * TIMEOUT + 60)

# ---------------------------------------------------------------------------------------------
# Shared by the subprocess scripts
# ---------------------------------------------------------------------------------------------

N_ROWS, LANES, K1, K2 = 240, 4, 6, 8


def _series():
    rng = np.random.default_rng(7)
    values = np.cumsum(rng.normal(size=(N_ROWS, 3)), axis=0).astype(np.float32) / 5
    return values, [0, 130]  # a second segment: lanes reset mid-run


class RecordingRows:
    """A duck-typed row source that records which rows were read."""

    def __init__(self, values):
        self.values, self.shape, self.read = values, values.shape, []

    def __getitem__(self, index):
        self.read.append((index.start, index.stop))
        return self.values[index]


def _lanes(values, segments, lanes=LANES, k1=K1, k2=K2):
    from longstm.data.lanes import LaneWindows

    return LaneWindows(values, lanes=lanes, k1=k1, k2=k2, target_columns=[0], segments=segments, burn_in=3)


def _make_model():
    import keras

    from longstm.models.protocol import Forecaster, KerasRNNStack

    return Forecaster(KerasRNNStack([keras.layers.LSTM(5), keras.layers.LSTM(4)]), outputs=1)


def _reference_weights():
    import keras

    from longstm.train.engine import build_model_for

    keras.utils.set_random_seed(11)
    model = _make_model()
    build_model_for(model, 2, K2, 3)
    return model.get_weights()


class _Record:
    """Per update: the logged loss and the global (lanes, ...) states (a collective call)."""

    def __init__(self, fail_at=None):
        self.losses, self.states, self.loss_scales, self.fail_at = [], [], [], fail_at

    def on_step_end(self, trainer, step, logs):
        self.losses.append(logs["loss"])
        if hasattr(trainer.optimizer, "dynamic_scale"):
            self.loss_scales.append(float(trainer.optimizer.dynamic_scale.numpy()))
        self.states.append([leaf.tolist() for leaf in trainer.state_arrays()])
        if step == self.fail_at:
            raise KeyboardInterrupt("stopped by the test")


def _run(strategy_name, config, weights, train_lanes, run_dir=None, resume=False, fail_at=None):
    """Train on `train_lanes`; returns the recorder, the trainer and the final weights."""
    from longstm.train.distribute import get_strategy
    from longstm.train.engine import build_model_for
    from longstm.train.trainer import Trainer

    strategy = get_strategy(strategy_name)
    scope = strategy.scope() if strategy is not None else _null()
    with scope:
        model = _make_model()
        build_model_for(model, 2, K2, 3)
    model.set_weights(weights)
    record = _Record(fail_at)
    trainer = Trainer(model, config, run_dir=run_dir, callbacks=[record], progress=False, strategy=strategy_name)
    try:
        trainer.fit(train_lanes, resume=resume)
    except KeyboardInterrupt:
        pass
    return record, trainer, [w.tolist() for w in model.get_weights()]


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _configs():
    from longstm.train.config import TrainConfig

    return {
        # clipnorm far below the gradient norm: clipping is active in every update
        "adam_clip": TrainConfig(lanes=LANES, k1=K1, k2=K2, epochs=2, learning_rate=1e-2, clipnorm=1e-3),
        # AdamW, warm-up + cosine, clipping and dynamic loss scaling together
        "adamw_mixed_float16": TrainConfig(
            lanes=LANES, k1=K1, k2=K2, epochs=1, optimizer="adamw", weight_decay=0.01, learning_rate=1e-2,
            schedule="cosine", warmup_steps=3, clipnorm=0.5, mixed_precision="mixed_float16",
        ),
        "resume": TrainConfig(
            lanes=LANES, k1=K1, k2=K2, epochs=2, learning_rate=1e-2, clipnorm=1e-3, checkpoint_every=4
        ),
    }


def _summary(record, weights):
    return {"losses": record.losses, "states": record.states, "weights": weights, "loss_scales": record.loss_scales}


# ---------------------------------------------------------------------------------------------
# Subprocess: MirroredStrategy over 2 logical CPU devices
# ---------------------------------------------------------------------------------------------


def mirrored_main(out: str, work: str) -> None:
    os.environ["LONGSTM_CPU_REPLICAS"] = "2"
    from longstm.train.distribute import get_strategy, replicas

    strategy = get_strategy("mirrored")  # before any other TensorFlow operation
    import keras
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    results = {"replicas": replicas(strategy)}
    values, segments = _series()
    weights = _reference_weights()
    configs = _configs()
    for name in ("adam_clip", "adamw_mixed_float16"):
        keras.mixed_precision.set_global_policy(configs[name].mixed_precision.replace("off", "float32"))
        single, _, single_weights = _run("default", configs[name], weights, _lanes(values, segments))
        mirrored, _, mirrored_weights = _run("mirrored", configs[name], weights, _lanes(values, segments))
        results[name] = {"single": _summary(single, single_weights), "mirrored": _summary(mirrored, mirrored_weights)}
    keras.mixed_precision.set_global_policy("float32")

    # Checkpoints: written under mirrored, resumed on one device, and the other way round
    # (the same settings as "adam_clip", whose single-device losses are the reference).
    config = configs["resume"]
    results["resume"] = {"reference": results["adam_clip"]["single"]["losses"]}
    for writer, reader in (("mirrored", "default"), ("default", "mirrored")):
        run_dir = Path(work) / f"{writer}_to_{reader}"
        first, _, _ = _run(writer, config, weights, _lanes(values, segments), run_dir=run_dir, fail_at=6)
        with np.load(run_dir / "checkpoints" / "latest" / "variables.npz") as arrays:
            saved = [arrays[f"state_{i}"].tolist() for i in range(4)]
        second, _, _ = _run(reader, config, weights, _lanes(values, segments), run_dir=run_dir, resume=True)
        results["resume"][f"{writer}_to_{reader}"] = {
            "first": first.losses, "saved_states": saved, "states_at_4": first.states[3], "second": second.losses,
        }

    # Lanes that do not divide over the replicas.
    from longstm.errors import ConfigError

    try:
        _run("mirrored", configs["adam_clip"], weights, _lanes(values, segments, lanes=3))
    except ConfigError as error:
        results["lanes_error"] = str(error)

    # End to end from a config file, then evaluation of the run on the default strategy.
    results["end_to_end"] = _end_to_end(Path(work), values)
    results["models"] = _every_model(values, segments)
    Path(out).write_text(json.dumps(results))


def _end_to_end(work: Path, values) -> dict:
    import pandas as pd

    from longstm.train.run import evaluate_run

    csv = work / "series.csv"
    pd.DataFrame(values, columns=["a", "b", "c"]).to_csv(csv, index=False)
    text = f"""
seed = 1
[data]
path = "{csv}"
targets = ["a"]
split = [0.7, 0.15, 0.15]
[model]
units = 4
[train]
lanes = 4
k1 = 8
k2 = 8
epochs = 1
strategy = "mirrored"
[eval]
lanes = 2
warmup = 8
"""
    config_path = work / "run.toml"
    config_path.write_text(text)
    from typer.testing import CliRunner

    from longstm.cli import app

    run_dir = work / "run"
    result = CliRunner().invoke(app, ["train", "--config", str(config_path), "--run-dir", str(run_dir)])
    scores = json.loads((run_dir / "metrics.json").read_text())
    again = evaluate_run(run_dir)
    # A finished mirrored run "resumed" on one device: accepted, nothing left to train.
    resumed = CliRunner().invoke(
        app, ["train", "--config", str(config_path), "--run-dir", str(run_dir), "--resume", "--strategy", "default"]
    )
    return {"exit": result.exit_code, "output": result.output[-2000:], "test": scores["test"], "evaluated": again["test"],
            "resume_exit": resumed.exit_code, "resume_output": resumed.output[-2000:],
            "resumed": json.loads((run_dir / "metrics.json").read_text())["test"]}


# ---------------------------------------------------------------------------------------------
# Subprocess: one worker of a 2-worker MultiWorkerMirroredStrategy on localhost
# ---------------------------------------------------------------------------------------------


def worker_main(index: int, out: str, work: str) -> None:
    from longstm.train.distribute import get_strategy, is_chief, replicas

    strategy = get_strategy("multiworker")  # before any other TensorFlow operation
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    values, segments = _series()
    source = RecordingRows(values)
    weights = _reference_weights()
    config = _configs()["adam_clip"]
    run_dir = Path(work) / "multiworker_run"
    record, trainer, final = _run("multiworker", config, weights, _lanes(source, segments), run_dir=run_dir)
    result = {
        "replicas": replicas(strategy), "chief": is_chief(strategy), "first_lane": trainer.engine.first_lane,
        "rows_read": source.read, "distributed": _summary(record, final),
    }
    Path(out).write_text(json.dumps(result))


# ---------------------------------------------------------------------------------------------
# Every config model, mirrored vs one device (part of the mirrored subprocess)
# ---------------------------------------------------------------------------------------------

# Tiny settings within each family's constraints (the hierarchical strides and the segment divide
# the window, a short attention memory); k1 = k2 keeps each trace small (overlapping windows are
# covered by "adam_clip" above). Tracing the mirrored step dominates: about 2-3 s per family.
MODEL_K = 8
MODEL_SETTINGS = {
    "lstm": {},
    "gru": {},
    "stacked_lstm": {"layers": 2},  # residual + layer norm (on by default with 2 layers)
    "hierarchical_lstm": {"options": {"levels": [[4, 4], [4, 1]]}},  # parallel mode
    "hierarchical_lstm_sequential": {"name": "hierarchical_lstm", "options": {"levels": [[4, 2], [4, 1]], "mode": "sequential"}},
    "attention_lstm": {"options": {"heads": 2, "memory": 8, "window": 9}},
    "minlstm": {},
    "mingru": {"layers": 2},  # MinRNNStack blocks with RMS norm and the MLP
    "segment_gru": {"options": {"segment": 4}},
    "calendar_lstm": {"options": {"levels": [{"units": 4, "every_events": 2}, {"units": 4}]}},  # column 2 is its flag
}


def _every_model(values, segments) -> dict:
    """Each family of the registry trained one epoch on one device and mirrored from the same weights
    (clipnorm 0.1 is far below the gradient norm: clipping is active in every update)."""
    import keras

    from longstm.models.registry import MODELS, build_model
    from longstm.train.config import ModelConfig, TrainConfig
    from longstm.train.distribute import get_strategy
    from longstm.train.engine import build_model_for
    from longstm.train.trainer import Trainer

    strategy = get_strategy("mirrored")  # created by mirrored_main before TensorFlow ran
    config = TrainConfig(lanes=LANES, k1=MODEL_K, k2=MODEL_K, epochs=1, learning_rate=1e-2, clipnorm=0.1)
    results = {"registry": sorted(MODELS)}
    for label, settings in MODEL_SETTINGS.items():
        model_config = ModelConfig(**{"name": label, "units": 4, **settings})
        runs = {}
        for strategy_name in ("default", "mirrored"):
            keras.utils.set_random_seed(0)
            with strategy.scope() if strategy_name == "mirrored" else _null():
                model = build_model(model_config, 3, 1)
                build_model_for(model, 2, MODEL_K, 3)
            if strategy_name == "default":
                initial = model.get_weights()
            model.set_weights(initial)
            record = _Record()
            Trainer(model, config, callbacks=[record], progress=False, strategy=strategy_name).fit(
                _lanes(values, segments, k1=MODEL_K, k2=MODEL_K)
            )
            runs[strategy_name] = _summary(record, [w.tolist() for w in model.get_weights()])
        runs["moved"] = max(float(np.max(np.abs(np.array(w) - a))) for w, a in zip(runs["default"]["weights"], initial))
        results[label] = runs
    return results


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def _environment() -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    return env


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    work = tmp_path_factory.mktemp("mirrored")
    out = work / "out.json"
    process = subprocess.run(
        [sys.executable, __file__, "mirrored", str(out), str(work)],
        env=_environment(), cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert process.returncode == 0, process.stderr[-4000:]
    return json.loads(out.read_text())


def _assert_same_run(single, distributed, rtol=1e-5, updates=None, weights=True, state_atol=1e-6):
    """Same losses (relative `rtol`) and carried states per lane (rtol, plus `state_atol`)."""
    updates = len(single["losses"]) if updates is None else updates
    assert len(single["losses"]) == len(distributed["losses"]) >= updates >= 5
    np.testing.assert_allclose(distributed["losses"][:updates], single["losses"][:updates], rtol=rtol)
    for step, (a, b) in enumerate(zip(single["states"][:updates], distributed["states"][:updates])):
        for leaf_a, leaf_b in zip(a, b):
            np.testing.assert_allclose(
                leaf_b, leaf_a, rtol=rtol, atol=state_atol, err_msg=f"carried state after update {step + 1}"
            )
    if weights:
        for a, b in zip(single["weights"], distributed["weights"]):
            np.testing.assert_allclose(b, a, rtol=rtol, atol=1e-6)


@pytest.mark.slow
@SUBPROCESS_TESTS
def test_mirrored_equals_one_device_with_active_clipping(mirrored):
    assert mirrored["replicas"] == 2
    run = mirrored["adam_clip"]
    _assert_same_run(run["single"], run["mirrored"])
    # The states differ from lane to lane and change from update to update (nothing trivial).
    states = np.array(run["mirrored"]["states"][5][0])
    assert states.shape == (LANES, 5) and np.ptp(states, axis=0).max() > 1e-2


@pytest.mark.slow  # shares the mirrored subprocess (~90 s on 2 idle cores)
@SUBPROCESS_TESTS
def test_mirrored_equals_one_device_adamw_cosine_clipping_mixed_float16(mirrored):
    """Equal while both runs make the same loss-scaling decisions.

    Dynamic loss scaling skips an update when a float16 gradient overflows. One device sums
    the weight gradient over all B lanes in float16, a replica over B/R, so the two can
    overflow at different updates (measured: update 8 here), after which the runs are
    different runs. Up to that point they must agree, skipped updates included.
    """
    run = mirrored["adamw_mixed_float16"]
    single, distributed = run["single"]["loss_scales"], run["mirrored"]["loss_scales"]
    assert single[:2] == distributed[:2] == [16384.0, 8192.0]  # both skipped the first two updates
    same = next((i for i, (a, b) in enumerate(zip(single, distributed)) if a != b), len(single))
    assert same >= 6
    # States are float16 inside the model: allow one float16 rounding step (4.9e-4 below 1).
    _assert_same_run(
        run["single"], run["mirrored"], rtol=1e-4, updates=same, weights=same == len(single), state_atol=1e-3
    )


@pytest.mark.slow  # shares the mirrored subprocess (~90 s on 2 idle cores)
@SUBPROCESS_TESTS
def test_checkpoints_move_between_mirrored_and_one_device(mirrored):
    resume = mirrored["resume"]
    reference = resume["reference"]
    for direction in ("mirrored_to_default", "default_to_mirrored"):
        run = resume[direction]
        # Checkpoint after update 4 holds the global (lanes, ...) states in lane order.
        for saved, recorded in zip(run["saved_states"], run["states_at_4"]):
            np.testing.assert_allclose(saved, recorded, atol=0)
        np.testing.assert_allclose(run["first"], reference[: len(run["first"])], rtol=1e-5)
        np.testing.assert_allclose(run["second"], reference[4:], rtol=1e-5, err_msg=direction)


@pytest.mark.slow  # shares the mirrored subprocess (~90 s on 2 idle cores)
@SUBPROCESS_TESTS
def test_lanes_must_divide_over_replicas(mirrored):
    message = mirrored["lanes_error"]
    assert "train.lanes = 3" in message and "divisible by the 2 replicas" in message


@pytest.mark.slow  # shares the mirrored subprocess (~90 s on 2 idle cores)
@SUBPROCESS_TESTS
def test_cli_trains_mirrored_and_the_run_evaluates_and_resumes_on_one_device(mirrored):
    run = mirrored["end_to_end"]
    assert run["exit"] == 0, run["output"]
    assert run["test"]["rows"] > 0
    assert run["evaluated"] == pytest.approx(run["test"], rel=1e-6)
    assert run["resume_exit"] == 0, run["resume_output"]
    assert run["resumed"] == pytest.approx(run["test"], rel=1e-6)


EVERY_FAMILY = {"lstm", "gru", "stacked_lstm", "hierarchical_lstm", "attention_lstm", "minlstm", "mingru", "segment_gru", "calendar_lstm"}


@pytest.mark.slow  # shares the mirrored subprocess (about 30 s of it on 2 idle cores)
@SUBPROCESS_TESTS
@pytest.mark.parametrize("label", sorted(MODEL_SETTINGS))
def test_every_model_family_trains_mirrored_as_on_one_device(mirrored, label):
    """Each registry model from the same weights, one epoch of clipped Adam on one device and
    on two replicas: the same losses, carried states per lane after every update, and weights."""
    runs = mirrored["models"]
    assert set(runs["registry"]) == EVERY_FAMILY  # a new family joins MODEL_SETTINGS (and this set)
    assert {settings.get("name", name) for name, settings in MODEL_SETTINGS.items()} == EVERY_FAMILY
    run = runs[label]
    _assert_same_run(run["default"], run["mirrored"], state_atol=1e-5)
    assert run["moved"] > 1e-2  # training changed the weights (the comparison is not of two idle runs)
    losses = np.array(run["default"]["losses"])
    assert np.ptp(losses) > 1e-2 * np.abs(losses).max()  # the loss is not constant over the updates


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_local_workers(script: str, work: Path, count: int = 2) -> list[dict]:
    """Run `python script worker INDEX OUT WORK` as `count` workers of one cluster on localhost
    (TF_CONFIG each); every worker must exit 0; returns what each wrote to OUT (JSON)."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(count)]}
    processes, outputs = [], []
    for index in range(count):
        env = _environment()
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env["LONGSTM_COLLECTIVE_TIMEOUT"] = "60"
        out = work / f"worker{index}.json"
        log = open(work / f"worker{index}.log", "w")
        processes.append(subprocess.Popen(
            [sys.executable, script, "worker", str(index), str(out), str(work)],
            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        ))
        outputs.append(out)
    try:
        for process in processes:
            process.wait(timeout=TIMEOUT)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    logs = [(work / f"worker{i}.log").read_text()[-3000:] for i in range(count)]
    assert [p.returncode for p in processes] == [0] * count, logs
    return [json.loads(out.read_text()) for out in outputs]


@pytest.mark.slow
@SUBPROCESS_TESTS
def test_multiworker_on_localhost_equals_one_device(tmp_path, mirrored):
    """Against the single-device run of the mirrored script: same data, weights and config."""
    chief, other = run_local_workers(__file__, tmp_path)
    assert chief["replicas"] == other["replicas"] == 2
    assert (chief["chief"], other["chief"]) == (True, False)
    assert (chief["first_lane"], other["first_lane"]) == (0, LANES // 2)
    _assert_same_run(mirrored["adam_clip"]["single"], chief["distributed"])
    assert other["distributed"]["losses"] == chief["distributed"]["losses"]

    # Each worker read only its own lanes' rows: lanes 0-1 cover the first half of the series,
    # lanes 2-3 the second (plus up to k2 - k1 + burn-in rows of warm-up before it).
    half = N_ROWS // 2
    first_rows = [row for start, stop in chief["rows_read"] for row in range(start, stop)]
    second_rows = [row for start, stop in other["rows_read"] for row in range(start, stop)]
    assert max(first_rows) < half + K2 and min(second_rows) >= half - K2
    # Only the chief wrote the run directory: one log row per update.
    steps = (tmp_path / "multiworker_run" / "steps.csv").read_text().splitlines()
    assert len(steps) == 1 + len(chief["distributed"]["losses"])


def test_strategy_config_and_cli_validation(tmp_path, capsys):
    from longstm.cli import main
    from longstm.errors import ConfigError
    from longstm.train.config import config_from_dict

    assert config_from_dict({"data": {"path": "x.csv"}, "train": {"strategy": "mirrored"}}).train.strategy == "mirrored"
    with pytest.raises(ConfigError, match=r"'train.strategy' must be one of \('default', 'mirrored', 'multiworker'\); got 'tpu'"):
        config_from_dict({"data": {"path": "x.csv"}, "train": {"strategy": "tpu"}})
    config = tmp_path / "c.toml"
    config.write_text('[data]\npath = "x.csv"\n')
    assert main(["train", "--config", str(config), "--strategy", "horovod"]) == 2
    assert "--strategy must be one of ('default', 'mirrored', 'multiworker'); got 'horovod'" in " ".join(
        capsys.readouterr().err.split()
    )


def test_multiworker_without_a_cluster_is_a_clear_error(monkeypatch):
    from longstm.errors import ConfigError
    from longstm.train import distribute

    for name in ("TF_CONFIG", "SLURM_JOB_ID", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="needs the cluster: set TF_CONFIG"):
        distribute._cluster_resolver()
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    with pytest.raises(ConfigError, match="TF_CONFIG must look like"):
        distribute._cluster_resolver()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid JSON"):
        distribute._cluster_resolver()


def test_lane_block_reads_only_its_lanes_and_matches_the_full_batch():
    from longstm.train.distribute import lane_block

    values, segments = _series()
    full = _lanes(values, segments)
    source = RecordingRows(values)
    block = lane_block(_lanes(source, segments), 2, 4)
    assert len(block) == len(full) and block.lanes == 2
    for step in range(len(full)):
        whole, part = full.batch(step), block.batch(step)
        for key in whole:
            np.testing.assert_array_equal(part[key], whole[key][2:4])
    starts = full._start[:, 2:4]
    lowest = starts[starts >= 0].min()
    assert min(start for start, _ in source.read) == lowest
    assert lane_block(full, 0, LANES) is full
    with pytest.raises(ValueError, match="lane block"):
        lane_block(full, 3, 2)


if __name__ == "__main__":
    if sys.argv[1] == "mirrored":
        mirrored_main(sys.argv[2], sys.argv[3])
    else:
        worker_main(int(sys.argv[2]), sys.argv[3], sys.argv[4])
