"""`longstm demo`: train a small LSTM on bundled real data and compare it with naive baselines."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the demo command to the top-level app."""
