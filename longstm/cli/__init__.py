"""The `longstm` command line.

Each command group lives in its own module and registers itself here. Modules import
TensorFlow lazily inside their commands, so `longstm --help` stays fast.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from longstm.cli import bench, data, demo, evaluate, plot, report, stream, train
from longstm.errors import LongstmError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # read when a command first imports TensorFlow

app = typer.Typer(
    name="longstm",
    help="LSTMs on very long time series: chunked training with carried state, and its tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
error_console = Console(stderr=True, soft_wrap=True)  # one error, one line: easy to grep


def _register_commands() -> None:
    app.add_typer(data.app, name="data", help="Inspect and validate data files.")
    app.add_typer(evaluate.app, name="eval", help="Benchmark protocols (ETT, HFT, LOBSTER): train and score models on a data file. "
                 "(`longstm evaluate RUN_DIR` scores a trained run directory.)")
    app.add_typer(bench.app, name="bench", help="Speed, memory and latency benchmarks.")
    app.add_typer(plot.app, name="plot", help="Plots from a run directory.")
    for module in (train, demo, report, stream):
        module.register(app)


_register_commands()


def _save_traceback(error: BaseException) -> Path:
    """The full traceback of an unexpected error, in a file of its own (the screen gets one line)."""
    handle, name = tempfile.mkstemp(prefix="longstm-error-", suffix=".txt")
    with os.fdopen(handle, "w") as out:
        out.write(f"longstm {' '.join(sys.argv[1:])}\n\n")
        out.write("".join(traceback.format_exception(error)))
    return Path(name)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script.

    - A user error (bad input, config, data: a `LongstmError`) is one clear line, exit code 2.
    - A usage error (an unknown command or option, a bad argument type) is Typer's usage box,
      exit code 2 (Typer runs in standalone mode).
    - Anything else is a bug or an environment failure: one line naming a file that holds the
      full traceback, exit code 1.
    """
    try:
        app(args=argv, prog_name="longstm")
    except LongstmError as error:
        error_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
        return 2
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except KeyboardInterrupt:
        error_console.print("interrupted", highlight=False)
        return 130
    except Exception as error:  # noqa: BLE001 - the last line of defence: never a bare traceback
        path = _save_traceback(error)
        message = " ".join(str(error).split())[:300]
        error_console.print(
            f"[bold red]internal error:[/] {type(error).__name__}: {escape(message)} (full traceback in {path}; "
            f"please report it)",
            highlight=False,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
