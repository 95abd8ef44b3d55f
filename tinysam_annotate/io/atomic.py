"""Atomic file writes: a temp file in the target folder, fsync, then rename over the target.

The result has the mode a plain ``open(path, "w")`` would give (0666 less the umask; an existing file keeps
its mode), not mkstemp's 0600. Temp files are named ``.NAME.PID-RANDOM.tmp``; ones left by a killed writer
(its process is gone, or the file is a day old) are removed by the next write of the same file.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import IO, Iterator

STALE_AFTER_SECONDS = 24 * 3600  # a temp file this old is stale even if its PID is alive again (reused)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which is not safe while other threads create files.
_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file next to ``path``; on success it replaces ``path`` in one rename.

    A crash or exception before the end leaves the previous file untouched (and no temp file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    os.close(fd)  # reopen by name: writers such as tifffile want a file object with a real .name
    try:
        os.chmod(tmp, _target_mode(path))
        with open(tmp, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_stale_temp_files(path: Path) -> int:
    """Delete the temp files of earlier writes of ``path`` whose writer is gone; returns how many."""
    removed = 0
    for candidate in path.parent.glob(f".{_glob_escape(path.name)}.*.tmp"):
        if _is_stale(candidate, path.name):
            with contextlib.suppress(OSError):
                candidate.unlink()
                removed += 1
    return removed


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _is_stale(candidate: Path, name: str) -> bool:
    try:
        age = time.time() - candidate.stat().st_mtime
    except OSError:
        return False
    if age > STALE_AFTER_SECONDS:
        return True
    middle = candidate.name[len(name) + 2 : -len(".tmp")]  # "PID-RANDOM", or mkstemp's RANDOM of older writers
    pid_text = middle.split("-", 1)[0]
    if not pid_text.isdigit():
        return age > 3600  # a temp file from before PIDs were in the name: stale after an hour
    pid = int(pid_text)
    if pid == os.getpid() or os.name == "nt":  # another thread of ours; Windows' os.kill would terminate
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, another user's
    return False


def _target_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_UMASK
