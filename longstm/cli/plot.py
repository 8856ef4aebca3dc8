"""`longstm plot` commands."""

from __future__ import annotations

from pathlib import Path

import typer

from longstm.errors import ConfigError, DataValidationError

app = typer.Typer(no_args_is_help=True)

ATTENTION_FILES = ("attention.npy", "attention.npz")


def load_attention(path: Path):
    """Attention weights from a `.npy`/`.npz` file, or from `attention.npy|npz` in a run directory."""
    import numpy as np

    path = Path(path)
    if path.is_dir():
        candidates = [path / name for name in ATTENTION_FILES if (path / name).exists()]
        if not candidates:
            raise DataValidationError(
                f"{path} has no attention weights: expected one of {', '.join(ATTENTION_FILES)} "
                "(write them with longstm.models.attention.save_attention_weights)."
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


@app.command("attention")
def attention(
    source: Path = typer.Argument(..., help="A run directory with attention.npy/.npz, or such a file."),
    out: Path = typer.Option(None, "--out", "-o", help="PNG to write (default: attention.png beside the weights)."),
    lane: int = typer.Option(0, help="Which lane (batch row) to draw, for 4-D weights."),
    head: int = typer.Option(None, help="Which head to draw (default: the mean over heads)."),
    memory: int = typer.Option(None, help="Memory slots before the chunk (default: keys - queries), drawn as a line."),
) -> None:
    """Draw attention weights (queries x keys) as a heatmap PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rich.console import Console

    weights, found = load_attention(source)
    matrix = attention_matrix(weights, lane, head)
    queries, keys = matrix.shape
    memory = keys - queries if memory is None else memory
    if not 0 <= memory <= keys:
        raise ConfigError(f"--memory must be in [0, {keys}] (the weights have {keys} key columns); got {memory}.")
    out = out or found.with_name("attention.png")
    figure, axes = plt.subplots(figsize=(8, 8 * queries / max(keys, 1) + 1.2))
    image = axes.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest",
                        extent=(-memory - 0.5, keys - memory - 0.5, queries - 0.5, -0.5))
    if memory:
        axes.axvline(-0.5, color="white", linewidth=1, linestyle="--")
    axes.set_xlabel("key step (negative: carried memory from earlier chunks)")
    axes.set_ylabel("query step in chunk")
    which = "mean over heads" if head is None or weights.ndim == 2 else f"head {head}"
    axes.set_title(f"attention weights, lane {lane}, {which}")
    figure.colorbar(image, ax=axes, label="weight")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    plt.close(figure)
    Console().print(f"wrote {out}")
