"""The one undo model of both front ends: stacks of edits with a limit."""

from __future__ import annotations

import pytest

from tinysam_annotate.errors import SessionError
from tinysam_annotate.history import UndoHistory


def test_undo_and_redo_move_edits_between_the_stacks_and_a_new_edit_drops_the_redo():
    history: UndoHistory[str] = UndoHistory()
    for edit in ("a", "b", "c"):
        history.record(edit)
    assert history.undo() == "c" and history.undo() == "b"
    assert history.redo() == "b" and history.can_redo()
    history.record("d")
    assert not history.can_redo() and history.undo_stack == ["a", "b", "d"]
    with pytest.raises(SessionError, match="nothing to redo"):
        history.redo()


def test_past_the_limit_the_oldest_edit_is_forgotten():
    history: UndoHistory[int] = UndoHistory(limit=3)
    for edit in range(5):
        history.record(edit)
    assert [history.undo() for _ in range(3)] == [4, 3, 2]
    with pytest.raises(SessionError, match="nothing to undo"):
        history.undo()
