"""Undo and redo as stacks of edits, with a limit.

The :class:`~tinysam_annotate.object_store.ObjectStore` of both front ends keeps its changes here (records before
and after, and the pixels of a napari labels edit); the stacks, their limit and the "nothing to undo" errors live
here, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .errors import SessionError

Edit = TypeVar("Edit")


@dataclass
class UndoHistory(Generic[Edit]):
    """Edits that can be undone (newest last) and undone edits that can be redone; past ``limit`` edits the oldest
    is forgotten (None: keep all)."""

    limit: int | None = None
    undo_stack: list[Edit] = field(default_factory=list)
    redo_stack: list[Edit] = field(default_factory=list)

    def record(self, edit: Edit) -> None:
        """A new edit: it can be undone; what was undone before can no longer be redone."""
        self.undo_stack.append(edit)
        if self.limit is not None:
            del self.undo_stack[: -self.limit]
        self.redo_stack.clear()

    def can_undo(self) -> bool:
        return bool(self.undo_stack)

    def can_redo(self) -> bool:
        return bool(self.redo_stack)

    def undo(self) -> Edit:
        """The newest edit, moved to the redo stack; the caller reverts it. SessionError when there is none."""
        if not self.undo_stack:
            raise SessionError("nothing to undo")
        edit = self.undo_stack.pop()
        self.redo_stack.append(edit)
        return edit

    def redo(self) -> Edit:
        """The newest undone edit, moved back to the undo stack; the caller applies it again."""
        if not self.redo_stack:
            raise SessionError("nothing to redo")
        edit = self.redo_stack.pop()
        self.undo_stack.append(edit)
        return edit

    def clear(self) -> None:
        self.undo_stack.clear()
        self.redo_stack.clear()
