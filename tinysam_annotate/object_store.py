"""Accepted objects with undo, redo and autosave: the one object store of both annotation front ends.

The web app's :class:`~tinysam_annotate.session.AnnotationSession` keeps each object's mask in its record; the napari
plugin keeps the pixels in a labels array (what napari shows and users paint) and hands the store the changed
pixels of each change as a :class:`Reversible` edit, which the store reverts and re-applies together with the
records. Either way one change is one undo step, and the store calls its ``on_change`` hook (the owner's
autosave) after every change, undo and redo, so accepted work is written before the call returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Generic, Iterable, Protocol, TypeVar

from .errors import SessionError
from .history import UndoHistory
from .io.prompt_record import PromptRecord

DEFAULT_CATEGORY = "object"


@dataclass(frozen=True)
class ObjectInfo:
    """What is known of an accepted object besides its pixels: its id (also its value in label images), its
    category, the model's predicted IoU (None for imported or hand-made objects) and the prompts that made it."""

    object_id: int
    category: str = DEFAULT_CATEGORY
    score: float | None = None
    prompts: PromptRecord = field(default_factory=PromptRecord)


Obj = TypeVar("Obj", bound=ObjectInfo)


class Reversible(Protocol):
    """An edit of data the store does not hold (a labels array's pixels), applied already when it is recorded."""

    def apply(self) -> None:
        """Do the edit again (redo)."""

    def revert(self) -> None:
        """Put the data back as it was before the edit (undo)."""


@dataclass(frozen=True)
class StoreState(Generic[Obj]):
    """The objects (in the order they were accepted), the categories and the id the next object gets."""

    objects: tuple[Obj, ...] = ()
    categories: tuple[str, ...] = (DEFAULT_CATEGORY,)
    next_id: int = 1


@dataclass(frozen=True)
class _Change(Generic[Obj]):
    before: StoreState[Obj]
    after: StoreState[Obj]
    pixels: Reversible | None


class ObjectStore(Generic[Obj]):
    """Objects of type ``Obj`` (an :class:`ObjectInfo`, or one with its mask), changed one undo step at a time.

    ``limit``: undo steps kept (None: all). ``on_change``: called after every change, undo and redo (autosave); what
    it returns is ignored.
    """

    def __init__(self, categories: Iterable[str] = (DEFAULT_CATEGORY,), limit: int | None = None,
                 on_change: Callable[[], object] | None = None) -> None:
        self._state: StoreState[Obj] = StoreState((), tuple(categories) or (DEFAULT_CATEGORY,), 1)
        self._history: UndoHistory[_Change[Obj]] = UndoHistory(limit)
        self.on_change = on_change

    # ------------------------------------------------------------------ reading

    @property
    def objects(self) -> tuple[Obj, ...]:
        return self._state.objects

    @property
    def categories(self) -> tuple[str, ...]:
        return self._state.categories

    @property
    def next_id(self) -> int:
        return self._state.next_id

    def index(self, object_id: int) -> int:
        """Where the object with ``object_id`` is in :attr:`objects`; SessionError when there is none."""
        for index, obj in enumerate(self.objects):
            if obj.object_id == object_id:
                return index
        raise SessionError(f"no object with id {object_id}")

    def category(self, name: str | None) -> str:
        """``name`` when it is a known category (None: the first); SessionError naming the known ones otherwise."""
        name = name or self.categories[0]
        if name not in self.categories:
            raise _unknown_category(name, self.categories)
        return name

    # ------------------------------------------------------------------ changing

    def change(self, state: StoreState[Obj], pixels: Reversible | None = None) -> None:
        """Make ``state`` current as one undo step; ``pixels``, already applied by the caller, is undone with it."""
        self._history.record(_Change(self._state, state, pixels))
        self._state = state
        self._changed()

    def add(self, new: Iterable[Obj], pixels: Reversible | None = None, categories: Iterable[str] = ()) -> None:
        """Append objects (their categories known or in ``categories``, which are added) as one undo step; the
        next id moves past theirs. Nothing to add and no pixels: no step."""
        new = tuple(new)
        known = self.categories + tuple(c for c in dict.fromkeys(categories) if c not in self.categories)
        for obj in new:
            if obj.category not in known:
                raise _unknown_category(obj.category, known)
        if not new and pixels is None and known == self.categories:
            return
        next_id = max([self.next_id] + [obj.object_id + 1 for obj in new])
        self.change(StoreState(self.objects + new, known, next_id), pixels)

    def add_category(self, name: str) -> None:
        name = name.strip()
        if not name:
            raise SessionError("a category needs a name")
        if name not in self.categories:
            self.change(replace(self._state, categories=self.categories + (name,)))

    def delete(self, object_id: int, pixels: Reversible | None = None) -> None:
        index = self.index(object_id)
        self.change(replace(self._state, objects=self.objects[:index] + self.objects[index + 1 :]), pixels)

    def relabel(self, object_id: int, category: str) -> None:
        index = self.index(object_id)
        obj = replace(self.objects[index], category=self.category(category))
        self.change(replace(self._state, objects=self.objects[:index] + (obj,) + self.objects[index + 1 :]))

    def clear(self) -> None:
        """Remove every object (one undo step); categories stay."""
        if self.objects:
            self.change(replace(self._state, objects=()))

    # ------------------------------------------------------------------ undo / redo

    def can_undo(self) -> bool:
        return self._history.can_undo()

    def can_redo(self) -> bool:
        return self._history.can_redo()

    def undo(self) -> None:
        """Go back one step (records and pixels); SessionError when there is none."""
        step = self._history.undo()
        if step.pixels is not None:
            step.pixels.revert()
        self._state = step.before
        self._changed()

    def redo(self) -> None:
        step = self._history.redo()
        if step.pixels is not None:
            step.pixels.apply()
        self._state = step.after
        self._changed()

    def forget_history(self) -> None:
        """Keep the objects, drop every undo and redo step (after restoring an autosave)."""
        self._history.clear()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


def _unknown_category(name: str, known: tuple[str, ...]) -> SessionError:
    return SessionError(f"unknown category {name!r}; add it first (known: {', '.join(known)})")
