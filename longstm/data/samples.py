"""Sample data shipped inside the package (see `longstm/data/bundled/README.md`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from longstm.errors import DataValidationError

BUNDLED = {"ETTh1": "ETTh1.csv.gz"}


def bundled_path(name: str = "ETTh1") -> Path:
    """Path of a bundled data file, e.g. `bundled_path("ETTh1")` -> `.../bundled/ETTh1.csv.gz`.

    The file is readable with `load_series(path)`; its provenance and licence are in the
    README beside it.
    """
    if name not in BUNDLED:
        raise DataValidationError(f"no bundled data set {name!r}; bundled: {', '.join(BUNDLED)}")
    path = Path(str(resources.files("longstm.data.bundled") / BUNDLED[name]))
    if not path.exists():
        raise DataValidationError(f"bundled file {path} is missing from this installation of longstm")
    return path
