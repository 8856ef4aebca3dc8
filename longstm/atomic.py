"""Writing a file so that a reader never sees half of it.

`write_atomically(path, write)` lets `write` fill a temporary file beside `path` and renames it
onto `path` (an atomic step on one file system). The temporary name is unique, so several
processes can write the same folder at once. A write that fails (a full disk) removes the
temporary file, leaves `path` as it was, and re-raises the `OSError` naming `path`; callers turn
it into their own one-line error. The run directory, checkpoints and the data store all write
through it, and so do plots (`save_figure`).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable


def write_atomically(path: str | Path, write: Callable[[Path], None], *, suffix: str = ".tmp") -> None:
    """Call `write(temporary)`, then rename the temporary file onto `path`.

    Args:
        path: the file to write (its folder is created if missing).
        write: fills the file it is given.
        suffix: the temporary file's ending (`np.savez` needs `.npz`).

    Raises:
        OSError: the write or the rename failed; `path` is unchanged and no temporary is left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    except OSError as reason:
        temporary.unlink(missing_ok=True)
        raise OSError(reason.errno, reason.strerror, str(path)) from None
    except BaseException:  # any other failure, Ctrl-C included: no half-written temporary stays behind
        temporary.unlink(missing_ok=True)
        raise


def save_figure(figure, path: str | Path, **options) -> Path:
    """`figure.savefig(path, **options)` through `write_atomically`: a run killed while a plot is
    written leaves the old file or none, never a truncated PNG that looks valid.

    Args:
        figure: a Matplotlib `Figure`.
        path: the image to write; its ending (`.png`, `.svg`, `.pdf`) names the format (PNG without one).
        **options: passed to `savefig` (`dpi=110`).

    Returns:
        `path`, as a `Path`.

    Example:

    >>> save_figure(figure, "runs/x/loss.png", dpi=100)
    PosixPath('runs/x/loss.png')
    """
    path = Path(path)
    image_format = path.suffix.lstrip(".") or "png"  # Matplotlib's default
    write_atomically(path, lambda temporary: figure.savefig(temporary, format=image_format, **options), suffix=path.suffix)
    return path
