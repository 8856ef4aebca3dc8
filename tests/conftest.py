"""Shared test fixtures: where the real data lives, and a skip for fresh clones without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LONGSTM_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_file(relative: str) -> Path:
    """Path of a file under ../shared/data; skips the test (with the reason) when it is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"needs {path} (the shared real-data folder beside the repo), which is absent")
    return path


@pytest.fixture
def shared_data():
    """A function that returns a path under ../shared/data or skips the test."""
    return shared_file
