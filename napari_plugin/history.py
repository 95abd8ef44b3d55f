"""Undo/redo for edits of a labels array, stored as the before/after pixels of the changed boxes only."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from tinysam_annotate.history import UndoHistory

from .planes import PlaneKey
from .tiles import Box


@dataclass
class Patch:
    """The pixels of ``box`` in one plane before and after an edit."""

    key: PlaneKey
    box: Box
    before: np.ndarray
    after: np.ndarray

    def apply(self, labels: np.ndarray, which: str) -> None:
        x0, y0, x1, y1 = self.box
        plane = labels[self.key] if self.key else labels
        plane[y0:y1, x0:x1] = self.before if which == "before" else self.after


class Recording:
    """Collects the regions an edit may touch (call :meth:`before` first), then the patches that changed."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels
        self._snapshots: list[tuple[PlaneKey, Box, np.ndarray]] = []

    def before(self, key: PlaneKey, box: Box | None) -> None:
        plane = self.labels[key] if key else self.labels
        if box is None:
            box = (0, 0, plane.shape[1], plane.shape[0])
        x0, y0, x1, y1 = box
        self._snapshots.append((key, box, plane[y0:y1, x0:x1].copy()))

    def patches(self) -> list[Patch]:
        out = []
        for key, (x0, y0, _, _), old in self._snapshots:
            plane = self.labels[key] if key else self.labels
            new = plane[y0 : y0 + old.shape[0], x0 : x0 + old.shape[1]]
            changed = old != new
            if not changed.any():
                continue
            rows, cols = np.nonzero(changed.any(axis=1))[0], np.nonzero(changed.any(axis=0))[0]
            r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            out.append(Patch(key, (x0 + c0, y0 + r0, x0 + c1, y0 + r1), old[r0:r1, c0:c1].copy(), new[r0:r1, c0:c1].copy()))
        return out


class History:
    """Undo and redo of labels edits; each edit is a list of patches (possibly over several planes), kept in the
    package's :class:`~tinysam_annotate.history.UndoHistory` (the last ``limit`` edits)."""

    def __init__(self, limit: int = 100) -> None:
        self.edits: UndoHistory[list[Patch]] = UndoHistory(limit)

    @contextmanager
    def recording(self, labels: np.ndarray) -> Iterator[Recording]:
        """Record one edit; it becomes one undo step even when the body is interrupted (cancelled work stays)."""
        rec = Recording(labels)
        try:
            yield rec
        finally:
            patches = rec.patches()
            if patches:
                self.edits.record(patches)

    def can_undo(self) -> bool:
        return self.edits.can_undo()

    def can_redo(self) -> bool:
        return self.edits.can_redo()

    def undo(self, labels: np.ndarray) -> list[Patch]:
        """Put the pixels of the newest edit back as they were before it; SessionError when there is none."""
        step = self.edits.undo()
        for patch in reversed(step):
            patch.apply(labels, "before")
        return step

    def redo(self, labels: np.ndarray) -> list[Patch]:
        step = self.edits.redo()
        for patch in step:
            patch.apply(labels, "after")
        return step
