"""Writing a file so that a reader never sees half of it.

`write_atomically(path, write)` lets `write` fill a temporary file beside `path` and renames it
onto `path` (an atomic step on one file system). The temporary name is unique, so several
processes can write the same folder at once. A write that fails (a full disk) removes the
temporary file, leaves `path` as it was, and re-raises the `OSError` naming `path`; callers turn
it into their own one-line error. The run directory, checkpoints and the data store all write
through it.
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
