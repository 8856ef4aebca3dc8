"""01 — A chunked LSTM that carries its state from chunk to chunk, on real data (ETTh1).

The bugs this corrects (as seen in a blog post on LSTMs for long sequences):

1. **Chunks trained independently, without state carry.** The long series was cut into
   chunks that were fed to `model.fit` as independent samples (shuffled, each starting
   from a zero state), so nothing the LSTM saw in one chunk reached the next: it could
   never use more history than one chunk, however long the series. Here the series is
   split into a few long contiguous *lanes*; each lane's chunks are processed in order and
   the state `(h, c)` at the end of one chunk is the initial state of the next (truncated
   BPTT: the gradient stops at the chunk boundary, the state does not). Validation and
   test lanes first warm their state up on the rows before them, never on the future.
2. **A target reshape that does not match.** The inputs were reshaped to
   `(chunks, chunk_length, features)` and the targets reshaped separately (another chunk
   length, or one target per chunk), so the target at position s of a chunk was not the
   value `offset` rows after the input at position s. Here `LaneWindows` gathers inputs and
   targets from the same rows: `y[lane, s]` is the target row `offset` hours after the row
   that `x[lane, s]` reads, and the repeat-last comparison below recomputes the targets
   from the raw series (the tests check it against an independent computation).

The model: two LSTM layers (residual connections, layer norm) and a head that forecasts the
change of the oil temperature over the next hour (`residual_inputs`), trained with TBPTT
(k1=48, k2=64) as in `configs/stacked_lstm_etth1.toml`; then test MSE against repeating the
last value, on the same test rows, and a plot of the last two weeks.

    python examples/01_chunked_lstm.py [--epochs 8] [--out runs/examples/01_chunked_lstm]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import compare_with_repeat_last, load_etth1, parse_args, plot_forecast, report, residual_head, train  # noqa: E402

CONFIG = "stacked_lstm_etth1.toml"


def build_model(config, data):
    """`StackedLSTM` core + a Dense head that adds the current OT (forecasting the change)."""
    import keras

    from longstm.models.protocol import Forecaster
    from longstm.models.stacked import StackedLSTM

    keras.utils.set_random_seed(config.seed)
    options = config.model.options
    core = StackedLSTM(
        config.model.units,
        layers=config.model.layers,
        residual=options.get("residual", True),
        layer_norm=options.get("layer_norm", True),
    )
    return Forecaster(core, **residual_head(config, data))


def main(argv=None) -> dict:
    args = parse_args(__doc__.splitlines()[0], "runs/examples/01_chunked_lstm", argv)
    config, data = load_etth1(CONFIG, args)
    trainer = train(build_model(config, data), config, data, args.out)
    scores, series = compare_with_repeat_last(config, data, trainer)
    plot_forecast(args.out / "forecast.png", series, "Stacked LSTM with carried state, ETTh1 test (last two weeks)")
    report("01_chunked_lstm", scores, args.out)
    return scores


if __name__ == "__main__":
    main()
