"""The `longstm` command line.

Each command group lives in its own module and registers itself here. Modules import
TensorFlow lazily inside their commands, so `longstm --help` stays fast.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from longstm.errors import LongstmError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

app = typer.Typer(
    name="longstm",
    help="LSTMs on very long time series: chunked training with carried state, and its tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
error_console = Console(stderr=True, soft_wrap=True)  # one error, one line: easy to grep


def _register_commands() -> None:
    from longstm.cli import bench, data, demo, evaluate, plot, train

    app.add_typer(data.app, name="data", help="Inspect and validate data files.")
    app.add_typer(evaluate.app, name="eval", help="Standard evaluation protocols (ETT, HFT).")
    app.add_typer(bench.app, name="bench", help="Speed and memory benchmarks.")
    app.add_typer(plot.app, name="plot", help="Plots from a run directory.")
    train.register(app)
    demo.register(app)
    from longstm.cli import report

    report.register(app)
    __import__("longstm.cli.stream", fromlist=["register"]).register(app)


_register_commands()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script: user errors become one clear line, exit code 2."""
    try:
        app(args=argv, standalone_mode=False)
    except LongstmError as error:
        error_console.print(f"[bold red]error:[/] {error}", highlight=False)
        return 2
    except SystemExit as exit_:
        return int(exit_.code or 0)
    except typer.Exit as exit_:
        return exit_.exit_code
    except Exception as error:  # click's own usage errors
        import click

        if isinstance(error, click.exceptions.ClickException):
            error.show()
            return error.exit_code
        if isinstance(error, click.exceptions.Abort):
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
