"""The two examples of docs/architecture.md run as written: a new model joins through the
registry and chunks, carries and steps like the built-in ones; a new source becomes lanes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from longstm.models.registry import MODELS, build_model
from longstm.train.config import config_from_dict

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_the_new_model_example_chunks_carries_and_steps():
    namespace: dict = {}
    exec(_blocks()[0], namespace)
    try:
        config = config_from_dict({"data": {"path": "x.csv"}, "model": {"name": "leaky_mean", "units": 4}})
        model = build_model(config.model, 3, 2)
        x = np.random.default_rng(0).normal(size=(2, 10, 3)).astype("float32")
        full, _ = model(x, state=model.initial_state(2))
        first, state = model(x[:, :4], state=model.initial_state(2))
        second, _ = model(x[:, 4:], state=state)
        np.testing.assert_allclose(np.concatenate([first, second], axis=1), full, atol=1e-6)
        state, outputs = model.initial_step_state(2), []
        for t in range(10):
            y_t, state = model.step(x[:, t], state)
            outputs.append(y_t)
        np.testing.assert_allclose(np.stack(outputs, axis=1), full, atol=1e-6)
    finally:
        MODELS.pop("leaky_mean", None)


def test_the_new_source_example_gives_sessions_and_lanes():
    hour_later = [7_200_000 if i > 5 else 0 for i in range(12)]
    namespace = {"my_rows": [(1_700_000_000_000 + i * 1000 + hour_later[i], 1.0 + i, 1.1 + i) for i in range(12)]}
    exec(_blocks()[1], namespace)
    assert namespace["series"].segments.tolist() == [0, 6]
    assert namespace["lanes"].lanes == 16
