"""Edits of a labels array for the object store's undo: the before/after pixels of the changed boxes only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


@dataclass
class LabelsEdit:
    """One edit of ``labels`` as its changed patches (possibly over several planes): a
    :class:`~tinysam_annotate.object_store.Reversible` the object store undoes and redoes with the edit's objects."""

    labels: np.ndarray
    patches: list[Patch]

    def revert(self) -> None:
        for patch in reversed(self.patches):
            patch.apply(self.labels, "before")

    def apply(self) -> None:
        for patch in self.patches:
            patch.apply(self.labels, "after")
