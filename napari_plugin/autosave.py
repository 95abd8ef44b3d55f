"""Where the plugin autosaves an image's labels and objects, and what an autosave holds (Qt-free).

An autosave is the plugin's own COCO export (:mod:`.labels_io`: one COCO image per plane, prompts and scores in
``attributes``), written atomically after every change, so it restores with the import that reads exports.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tinysam_annotate.paths import app_home


def autosave_dir() -> Path:
    """``autosave`` under :func:`~tinysam_annotate.paths.app_home` (always writable, unlike an image's folder)."""
    return app_home() / "autosave"


def autosave_path(folder: Path, name: str, shape: tuple[int, ...], source: str | None = None) -> Path:
    """The autosave file of an image: named after the layer, keyed by its source file (or name) and labels shape,
    so that two images never share one and the same image finds its own after napari restarts."""
    identity = json.dumps([str(Path(source).resolve()) if source else name, list(shape)])
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60] or "image"
    return folder / f"{stem}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}.coco.json"


@dataclass(frozen=True)
class AutosaveInfo:
    """What an autosave holds, to offer it: objects (annotations) and when it was written."""

    path: Path
    objects: int
    written: datetime

    def describe(self) -> str:
        return f"{self.objects} object{'s' if self.objects != 1 else ''} autosaved {self.written:%Y-%m-%d %H:%M}"


def autosave_info(path: Path) -> AutosaveInfo | None:
    """The autosave at ``path`` if there is one with objects in it (unreadable files count as none)."""
    try:
        objects = len(json.loads(path.read_text(encoding="utf-8")).get("annotations", []))
        written = datetime.fromtimestamp(path.stat().st_mtime)
    except (OSError, ValueError, AttributeError):
        return None
    return AutosaveInfo(path, objects, written) if objects else None
