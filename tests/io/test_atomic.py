"""Atomic writes: the umask's mode (not mkstemp's 0600), and temp files of killed writers cleaned up."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np

from tinysam_annotate.cache import EmbeddingCache
from tinysam_annotate.io.atomic import atomic_write
from tinysam_annotate.io.coco import build_coco, write_coco


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_files_get_the_umask_mode_and_existing_files_keep_theirs(tmp_path):
    umask = os.umask(0o022)
    try:
        coco = build_coco([{"file_name": "a.png", "height": 4, "width": 4}], [[]])
        assert _mode(write_coco(tmp_path / "out.json", coco)) == 0o644  # was 0600
        cache = EmbeddingCache(tmp_path / "cache")
        cache.put("ab" * 20, np.ones((1, 2, 2, 2), np.float32))
        assert _mode(cache.path_for("ab" * 20)) == 0o644
        os.chmod(tmp_path / "out.json", 0o640)
        write_coco(tmp_path / "out.json", coco)
        assert _mode(tmp_path / "out.json") == 0o640
    finally:
        os.umask(umask)


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_temp_files_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "out.json"
    stale = tmp_path / f".out.json.{_dead_pid()}-abc123.tmp"  # its writer was SIGKILLed mid-write
    ours = tmp_path / f".out.json.{os.getpid()}-def456.tmp"  # a write in progress in another thread
    other_file = tmp_path / f".other.json.{_dead_pid()}-ghi789.tmp"
    for path in (stale, ours, other_file):
        path.write_text("partial")
    with atomic_write(target, "w") as fh:
        fh.write("{}")
    assert target.read_text() == "{}" and not stale.exists() and ours.exists() and other_file.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, ours.name, other_file.name])
