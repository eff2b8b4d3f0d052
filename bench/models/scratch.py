"""Build folders that a killed process does not leave behind for ever.

Cards and variants are built in a hidden folder beside their final place and published by an
atomic rename. A process killed mid-build (SIGKILL, out of memory, power loss) never reaches its
clean-up, so each build folder carries the id of the process that owns it, and the next build in
the same parent removes folders whose owner is gone. A folder whose owner cannot be told (an old
name, another host's process on a shared disk) is removed once it is older than a day.
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

# A build folder of an unknown owner older than this is abandoned.
STALE_AFTER_S = 24 * 3600


def _host() -> str:
    return socket.gethostname().replace("-", "_")[:40] or "host"


def scratch_dir(parent: Path, prefix: str) -> Path:
    """A new empty folder `parent/<prefix><host>-<pid>-<random>` (the rename target's file system)."""
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=parent, prefix=f"{prefix}{_host()}-{os.getpid()}-"))
    # mkdtemp makes it 0700; the published folder should follow the umask like any other.
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o777 & ~umask)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _owner(name: str, prefix: str) -> tuple[str, int] | None:
    """(host, pid) from a scratch folder's name, None for a name this module did not make."""
    parts = name[len(prefix):].split("-")
    if len(parts) < 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def sweep_scratch(parent: Path, prefix: str, now: float | None = None) -> list[Path]:
    """Remove the build folders under `parent` whose process is gone; returns what was removed."""
    if not parent.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for path in parent.iterdir():
        if not (path.name.startswith(prefix) and path.is_dir()):
            continue
        owner = _owner(path.name, prefix)
        if owner is not None and owner[0] == _host():
            if owner[1] == os.getpid() or _alive(owner[1]):
                continue
        else:
            try:
                age = now - path.stat().st_mtime
            except OSError:
                continue
            if age < STALE_AFTER_S:
                continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
