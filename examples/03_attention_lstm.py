"""03 — An LSTM with causal attention over its outputs and a carried memory (ETTh1).

The bug this corrects (as seen in a blog post on LSTMs for long sequences):
`keras.layers.Attention` dropped into a `keras.Sequential` after an LSTM. `Attention`
takes a *list* `[query, value]` (or `[query, value, key]`), which a `Sequential` layer never
receives, and nothing in that recipe masks the future: every step attended to every other
step of its window, later ones included, so the model peeked at the values it was asked to
forecast and its validation score was too good to be true. Attention was also confined to
one window, with no state carried between windows.

Here `AttentionLSTM` runs an LSTM (state carried across chunks) and causal multi-head
self-attention over its outputs: each hour attends to the 128 hours before it and itself
(a sliding window), and the keys of the previous chunk come from a **memory** of the last
128 LSTM outputs, carried like state (no gradient through it), so attention reaches across
the chunk boundary and a chunked run equals the unchunked one exactly. Trained with TBPTT
(k1=48, k2=64) as in `configs/attention_lstm_etth1.toml`; then test MSE against repeating
the last value on the same test rows, a forecast plot, and a heatmap of the attention weights
over the first test chunk (state and memory warmed up on the two weeks before it), the
same as `longstm plot attention RUN_DIR` draws for a run of that config.

    python examples/03_attention_lstm.py [--epochs 8] [--out runs/examples/03_attention_lstm]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import compare_with_repeat_last, load_etth1, parse_args, plot_forecast, report, residual_head, train  # noqa: E402

CONFIG = "attention_lstm_etth1.toml"


def build_model(config, data):
    """`AttentionLSTM(32, heads=4, memory=128, window=129)` + a residual Dense head."""
    import keras

    from longstm.models.attention import AttentionLSTM
    from longstm.models.protocol import Forecaster

    keras.utils.set_random_seed(config.seed)
    options = config.model.options
    core = AttentionLSTM(
        config.model.units, heads=options["heads"], memory=options["memory"], window=options["window"]
    )
    return Forecaster(core, **residual_head(config, data))


def plot_attention(trainer, config, data, out: Path) -> Path:
    """Attention weights over the first test chunk, saved as `attention.npy` and drawn."""
    from longstm.cli.attention_plot import attention_matrix, chunk_attention, draw_attention
    from longstm.models.attention import save_attention_weights

    core = trainer.model.core
    first = data.splits["test"][0]
    steps = min(config.train.k2, data.splits["test"][1] - first)
    weights = chunk_attention(core, data, first, steps, warmup=config.eval.warmup, window=config.train.k2)
    save_attention_weights(out / "attention.npy", weights)
    title = f"attention over test rows {first}..{first + steps - 1} (mean over {core.heads} heads)"
    return draw_attention(attention_matrix(weights), out / "attention.png", core.memory, title)


def main(argv=None) -> dict:
    args = parse_args(__doc__.splitlines()[0], "runs/examples/03_attention_lstm", argv)
    config, data = load_etth1(CONFIG, args)
    trainer = train(build_model(config, data), config, data, args.out)
    scores, series = compare_with_repeat_last(config, data, trainer)
    plot_forecast(args.out / "forecast.png", series, "LSTM + causal attention with memory, ETTh1 test (last two weeks)")
    plot_attention(trainer, config, data, args.out)
    report("03_attention_lstm", scores, args.out)
    return scores


if __name__ == "__main__":
    main()
