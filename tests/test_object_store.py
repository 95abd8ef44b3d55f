"""The one object store of both front ends: records, categories, undo/redo with outside pixels, the autosave hook."""

from __future__ import annotations

import numpy as np
import pytest

from tinysam_annotate.errors import SessionError
from tinysam_annotate.io.prompt_record import PromptRecord
from tinysam_annotate.object_store import ObjectInfo, ObjectStore


class Paint:
    """A Reversible edit of an outside array, as the napari plugin's labels edits are."""

    def __init__(self, pixels: np.ndarray, index: int, value: int) -> None:
        self.pixels, self.index, self.before, self.after = pixels, index, int(pixels[index]), value
        pixels[index] = value

    def revert(self) -> None:
        self.pixels[self.index] = self.before

    def apply(self) -> None:
        self.pixels[self.index] = self.after


def test_changes_undo_and_redo_with_their_pixels_and_call_the_hook_each_time():
    pixels = np.zeros(4, int)
    changes: list[tuple[int, ...]] = []
    store: ObjectStore[ObjectInfo] = ObjectStore(["cell", "debris"])
    store.on_change = lambda: changes.append(tuple(pixels))
    store.add([ObjectInfo(1, "cell", 0.9, PromptRecord("click", ((3.0, 4.0),), (1,)))], pixels=Paint(pixels, 0, 1))
    store.add([ObjectInfo(2, "debris")], pixels=Paint(pixels, 1, 2))
    store.relabel(2, "cell")
    assert [o.category for o in store.objects] == ["cell", "cell"] and store.next_id == 3
    store.undo()  # relabel
    store.undo()  # object 2 and its pixel
    assert [o.object_id for o in store.objects] == [1] and pixels.tolist() == [1, 0, 0, 0] and store.next_id == 2
    store.redo()
    assert store.objects[-1] == ObjectInfo(2, "debris") and pixels.tolist() == [1, 2, 0, 0]
    assert len(changes) == 6 and changes[-1] == (1, 2, 0, 0)  # the hook sees the pixels already changed


def test_bad_changes_raise_and_change_nothing():
    store: ObjectStore[ObjectInfo] = ObjectStore()
    with pytest.raises(SessionError, match="unknown category 'cell'"):
        store.add([ObjectInfo(1, "cell")])
    with pytest.raises(SessionError, match="no object with id 5"):
        store.delete(5)
    with pytest.raises(SessionError, match="needs a name"):
        store.add_category("  ")
    with pytest.raises(SessionError, match="nothing to undo"):
        store.undo()
    store.add([])  # nothing to add: no undo step
    assert not store.objects and not store.can_undo()
    store.add([ObjectInfo(1, "cell")], categories=["cell"])  # a new category comes with its objects, one step
    store.undo()
    assert store.categories == ("object",) and not store.objects


def test_the_undo_limit_and_forgetting_history_keep_the_objects():
    store: ObjectStore[ObjectInfo] = ObjectStore(limit=2)
    for object_id in (1, 2, 3):
        store.add([ObjectInfo(object_id)])
    store.undo()
    store.undo()
    with pytest.raises(SessionError, match="nothing to undo"):
        store.undo()
    assert [o.object_id for o in store.objects] == [1]
    store.redo()
    store.forget_history()
    assert [o.object_id for o in store.objects] == [1, 2] and not store.can_undo() and not store.can_redo()
