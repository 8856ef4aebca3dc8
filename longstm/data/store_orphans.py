"""The leftovers of a convert run that was killed, found and removed by the next convert.

A convert run (`longstm.data.store.convert`) writes its shards under `STORE/.staging/<run>/`,
moves them into `STORE/shards/` and then writes `STORE/runs/<run>.json`, which makes them
visible. A run that fails removes what it wrote; one that is killed (SIGKILL, a lost node) in
the middle cannot, and leaves its staging folder and, if it was killed while publishing, shard
files that no run file names. Readers never see those (`Store` reads only the shards its run
files name), but they fill the disk and look like data to anyone listing the folder.

So every run first writes who it is, `owner.json` (host name and process id), into its staging
folder, and the next convert removes the leftovers of every run that is certainly dead:

- a run with shards under `shards/`, no run file and no staging folder (its own clean-up ran,
  or it predates the owner file and its staging folder is gone);
- a run whose owner file names this host and a process that no longer exists.

A run on another host, or one whose staging folder has no owner file, may still be running
(several processes convert into one store at once), and is left alone.

Example:

>>> claim(Path("runs/ticks.store/.staging") / run)   # at the start of a convert run
>>> remove_orphans(Path("runs/ticks.store"))         # at the start of the next one
['shards/oanda_eurusd/20140501_quote.00000001733000000000-4242-a1b2c3.arrow']
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from pathlib import Path

OWNER_FILE = "owner.json"
RUN_OF_SHARD = re.compile(r"\.(\d{20}-\d+-[0-9a-f]{6})\.arrow$")


def claim(staging: Path) -> None:
    """Create a run's staging folder with its `owner.json`: this host and this process."""
    staging.mkdir(parents=True, exist_ok=True)
    (staging / OWNER_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))


def _process_exists(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError, OverflowError):  # someone else's process, or no pid: assume alive
        return True
    return True


def _dead(staging: Path) -> bool:
    """True when the run that owns `staging` has certainly stopped."""
    if not staging.is_dir():
        return True  # a live run keeps its staging folder until its run file is written
    try:
        owner = json.loads((staging / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return False  # no owner file yet (or an older run's): it may be running
    return owner.get("host") == socket.gethostname() and not _process_exists(owner.get("pid"))


def remove_orphans(root: Path) -> list[str]:
    """Remove the shards and staging folders of dead, unpublished runs in the store at `root`.

    Returns:
        The removed shard files, relative to `root` (staging folders are not listed).
    """
    published = {path.stem for path in (root / "runs").glob("*.json")}
    unpublished: dict[str, list[Path]] = {}
    for shard in (root / "shards").rglob("*.arrow"):
        match = RUN_OF_SHARD.search(shard.name)
        if match and match.group(1) not in published:
            unpublished.setdefault(match.group(1), []).append(shard)
    staging_root = root / ".staging"
    for folder in staging_root.iterdir() if staging_root.is_dir() else ():
        if folder.is_dir() and folder.name not in published:
            unpublished.setdefault(folder.name, [])
    removed = []
    for run, shards in sorted(unpublished.items()):
        # dead first, then no run file: a run writes its run file before it removes its staging folder
        if not _dead(staging_root / run) or (root / "runs" / f"{run}.json").exists():
            continue
        for shard in shards:
            shard.unlink(missing_ok=True)
            removed.append(str(shard.relative_to(root)))
        shutil.rmtree(staging_root / run, ignore_errors=True)
    return removed
