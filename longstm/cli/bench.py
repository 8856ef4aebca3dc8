"""`longstm bench` commands: each lives beside its benchmark in longstm/bench/."""

from __future__ import annotations

import typer

from longstm.bench import memory, speed, stream, sweeps

app = typer.Typer(no_args_is_help=True)

app.command("speed")(speed.speed_command)
app.command("memory")(memory.command)
app.command("stream")(stream.stream_command)
app.command("all")(sweeps.all_command)
