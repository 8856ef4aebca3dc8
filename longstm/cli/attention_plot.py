"""Attention heatmaps for `longstm plot attention`: weights from a file or computed from a
trained `attention_lstm` run, reduced to one `(queries, keys)` matrix and drawn as a PNG.

`longstm.cli.plot` imports this module inside its command (it loads Keras and matplotlib).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from longstm.atomic import save_figure
from longstm.errors import ConfigError, DataValidationError
from longstm.models.attention import AttentionLSTM
from longstm.train.run import load_run
from longstm.train.rundir import RunDir

ATTENTION_FILES = ("attention.npy", "attention.npz")
ATTENTION_MODEL = "attention_lstm"


def load_attention(path: Path):
    """Attention weights from a `.npy`/`.npz` file, or from `attention.npy|npz` in a folder."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / name for name in ATTENTION_FILES if (path / name).exists()]
        if not candidates:
            raise DataValidationError(
                f"{path} has no attention weights: expected one of {', '.join(ATTENTION_FILES)} "
                "(write them with longstm.models.attention.save_attention_weights), or a run directory "
                f"of model {ATTENTION_MODEL!r} (with config.toml)."
            )
        path = candidates[0]
    if not path.exists():
        raise DataValidationError(f"attention weights file {path} does not exist.")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataValidationError(f"{path} is not a NumPy .npy/.npz file: {error}") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        key = "attention" if "attention" in loaded.files else (loaded.files[0] if len(loaded.files) == 1 else None)
        if key is None:
            raise DataValidationError(f"{path} holds arrays {loaded.files}; expected one named 'attention'.")
        loaded = loaded[key]
    weights = np.asarray(loaded, dtype="float64")
    if weights.ndim not in (2, 3, 4):
        raise DataValidationError(
            f"{path}: attention weights must have shape (queries, keys), (heads, queries, keys) or "
            f"(batch, heads, queries, keys); got shape {weights.shape}."
        )
    return weights, path


def attention_matrix(weights, lane: int = 0, head: int | None = None):
    """One `(queries, keys)` matrix: the lane's weights, one head or the mean over heads."""
    if weights.ndim == 4:
        if not 0 <= lane < weights.shape[0]:
            raise ConfigError(f"--lane must be in [0, {weights.shape[0] - 1}] (the weights have {weights.shape[0]} lanes); got {lane}.")
        weights = weights[lane]
    if weights.ndim == 3:
        if head is None:
            return weights.mean(axis=0)
        if not 0 <= head < weights.shape[0]:
            raise ConfigError(f"--head must be in [0, {weights.shape[0] - 1}] (the weights have {weights.shape[0]} heads); got {head}.")
        return weights[head]
    return weights


def run_attention(run_dir: Path, start: int = 0, steps: int | None = None, warmup: int | None = None):
    """Attention weights of a trained `attention_lstm` run over one chunk of its test split.

    The chunk is `steps` rows (default: the run's window length `train.k2`) from row `start`
    of the test split. Before it, the model's state (LSTM state and attention memory) is
    warmed up on the `warmup` rows that precede the chunk (default: the run's `eval.warmup`),
    in windows of `train.k2` as evaluation does, so the memory holds real earlier outputs.

    Returns:
        `(weights, memory, first_row)`: weights of shape `(1, heads, steps, memory + steps)`
        (see `AttentionLSTM`), the number of memory key columns, and the series row of the
        chunk's first query.
    """
    run_dir = Path(run_dir)
    name = RunDir(run_dir).read_config().model.name
    if name != ATTENTION_MODEL:
        raise ConfigError(
            f"{run_dir}: the run's model is {name!r}, which has no attention weights to plot; "
            f"expected a run with model.name = {ATTENTION_MODEL!r}."
        )
    config, data, trainer = load_run(run_dir)
    core = getattr(trainer.model, "core", trainer.model)
    if not isinstance(core, AttentionLSTM):
        raise ConfigError(f"{run_dir}: the run's model core is {type(core).__name__}, not an AttentionLSTM.")
    steps = config.train.k2 if steps is None else steps
    warmup = config.eval.warmup if warmup is None else warmup
    test_start, test_stop = data.splits["test"]
    if start < 0 or test_start + start + steps > test_stop:
        raise ConfigError(
            f"--start {start} with --steps {steps} must lie inside the test split of {test_stop - test_start} rows "
            f"(rows {test_start}..{test_stop - 1} of {data.series.source}); use 0 <= start <= {test_stop - test_start - steps}."
        )
    first = test_start + start
    weights = chunk_attention(core, data, first, steps, warmup, window=config.train.k2)
    return weights, core.memory, first


def chunk_attention(core, data, first: int, steps: int, warmup: int, window: int):
    """Attention weights `(1, heads, steps, memory + steps)` of `core` over series rows `first .. first + steps - 1`.

    Args:
        core: a trained `AttentionLSTM`.
        data: the run's `PreparedData` (series, feature columns, train-only scaler).
        first: the series row of the chunk's first query.
        steps: rows in the chunk.
        warmup: rows before `first` that warm up the state and memory first (fewer at a
            segment start: the state resets there, so no row before it is used).
        window: the length of the warm-up windows (the run's `train.k2`); the warm-up rows
            are run in windows of this length ending at `first`, the first one shorter.
    """
    if steps < 1:
        raise ConfigError(f"--steps must be a positive number of rows; got {steps}.")
    if warmup < 0:
        raise ConfigError(f"--warmup must be >= 0 rows; got {warmup}.")
    segment_start = max(int(s) for s in data.series.segments if s <= first)
    warm_from = max(segment_start, first - warmup)
    inputs = np.asarray(data.series.values[warm_from : first + steps], dtype=np.float32)
    if data.mean is not None:
        inputs = (inputs - data.mean) / data.std
    inputs = inputs[None, :, data.feature_columns]
    warm = first - warm_from
    state = core.initial_state(1)
    previous = 0
    for cut in sorted(range(warm, 0, -window)):
        _, state = core(inputs[:, previous:cut], state=state, training=False)
        previous = cut
    _, _, weights = core(inputs[:, warm:], state=state, training=False, return_attention=True)
    return np.asarray(weights)


def draw_attention(matrix, out: Path, memory: int, title: str) -> Path:
    """A `(queries, keys)` heatmap PNG; the first `memory` key columns are the carried memory."""
    queries, keys = matrix.shape
    figure = Figure(figsize=(8, 8 * queries / max(keys, 1) + 1.2))
    axes = figure.subplots()
    image = axes.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest",
                        extent=(-memory - 0.5, keys - memory - 0.5, queries - 0.5, -0.5))
    if memory:
        axes.axvline(-0.5, color="white", linewidth=1, linestyle="--")
    axes.set_xlabel("key step (negative: carried memory from earlier chunks)")
    axes.set_ylabel("query step in chunk")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label="weight")
    figure.tight_layout()
    return save_figure(figure, out, dpi=120)
