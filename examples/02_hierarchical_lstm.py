"""02 — A hierarchical LSTM: a fast lower level per day, a slow upper level over days (ETTh1).

The claim this corrects (as seen in a blog post on LSTMs for long sequences): "an LSTM
is O(T²) in the sequence length, so long sequences must be cut up". It is not: an LSTM
does O(T) work, a constant amount per step. What makes it slow on long series is that
those T steps are **sequential** — step t needs the state of step t - 1 — so no hardware
parallelism shortens a chunk of k steps below k step-latencies, and BPTT through them
keeps k steps of activations. The remedy is to shorten the sequential path, not to fight
a quadratic cost that is not there.

Here, in `"parallel"` mode, the lower level (32 units) runs over each 24-hour sub-chunk
independently — all sub-chunks of a chunk side by side in the batch axis — and emits one
summary per day; the upper level (64 units) runs over the daily summaries with its state
carried from chunk to chunk. A window of 72 hours then takes 24 + 3 sequential steps
instead of 72, and the carried upper state links the days across chunks. Every step's
output is the concatenation of the lower level's output and the upper level's latest
summary (from the previous completed day: causal). Trained with TBPTT (k1=48, k2=72) as
in `configs/hierarchical_lstm_etth1.toml`; then test MSE against repeating the last value
on the same test rows, and a plot of the last two weeks.

    python examples/02_hierarchical_lstm.py [--epochs 8] [--out runs/examples/02_hierarchical_lstm]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import compare_with_repeat_last, load_etth1, parse_args, plot_forecast, report, residual_head, train  # noqa: E402

CONFIG = "hierarchical_lstm_etth1.toml"


def build_model(config, data):
    """`HierarchicalLSTM(levels=[(32, 24), (64, 1)], mode="parallel")` + a residual Dense head."""
    import keras

    from longstm.models.hierarchical import HierarchicalLSTM
    from longstm.models.protocol import Forecaster

    keras.utils.set_random_seed(config.seed)
    options = config.model.options
    levels = [tuple(level) for level in options["levels"]]
    core = HierarchicalLSTM(levels, mode=options["mode"], outputs=options["outputs"])
    return Forecaster(core, **residual_head(config, data))


def sequential_depth(levels, chunk: int, mode: str) -> int:
    """Sequential steps to run a chunk: the lowest level's (its stride, or the whole chunk in
    `"sequential"` mode) plus each upper level's number of summaries."""
    depth = levels[0][1] if mode == "parallel" else chunk
    period = levels[0][1]
    for _, stride in levels[1:]:
        depth += chunk // period
        period *= stride
    return depth


def main(argv=None) -> dict:
    args = parse_args(__doc__.splitlines()[0], "runs/examples/02_hierarchical_lstm", argv)
    config, data = load_etth1(CONFIG, args)
    options = config.model.options
    depth = sequential_depth(options["levels"], config.train.k2, options["mode"])
    print(f"sequential depth of a {config.train.k2}-step window: {depth} steps (a flat LSTM: {config.train.k2})")
    trainer = train(build_model(config, data), config, data, args.out)
    scores, series = compare_with_repeat_last(config, data, trainer)
    scores["sequential_depth"] = depth
    plot_forecast(args.out / "forecast.png", series, "Hierarchical LSTM (day / days), ETTh1 test (last two weeks)")
    report("02_hierarchical_lstm", scores, args.out)
    return scores


if __name__ == "__main__":
    main()
