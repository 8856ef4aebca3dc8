"""`longstm train`, `longstm evaluate`, `longstm predict`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the training commands to the top-level app."""
