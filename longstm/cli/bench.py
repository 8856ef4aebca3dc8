"""`longstm bench` commands."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)

app.command("speed")(__import__("longstm.bench.speed", fromlist=["speed_command"]).speed_command)
app.command("stream")(__import__("longstm.bench.stream", fromlist=["stream_command"]).stream_command)
app.command("memory")(__import__("longstm.bench.memory", fromlist=["command"]).command)
