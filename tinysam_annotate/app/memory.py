"""One memory budget for all sessions of the app: an image is opened only when its session's working memory fits.

A session on an H x W image holds the RGB image (3 bytes a pixel), the preview's candidate masks and each accepted
object's mask, and a click peaks higher while the low-res logits are upsampled and the preview is cleaned. Measured
on a 4000 x 4000 image (tracemalloc, numpy only; the embedding is fixed-size and counted by the cache): 3 B/px
open, a click peaking at 47 B/px, 51 B/px across click + accept. :data:`SESSION_BYTES_PER_PIXEL` rounds that up.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from ..errors import ImageTooLargeError

SESSION_BYTES_PER_PIXEL = 64
SESSIONS_AT_THE_PIXEL_LIMIT = 2  # the largest image the app accepts leaves room for at least one more like it


def pixel_limit(budget_bytes: int) -> int:
    """The most pixels one image may have under an app-wide budget of ``budget_bytes``."""
    return budget_bytes // (SESSION_BYTES_PER_PIXEL * SESSIONS_AT_THE_PIXEL_LIMIT)


@dataclass
class _Reservation:
    nbytes: int
    on_evict: Callable[[], None] | None = None  # set once the session's browser has gone: it may then be evicted


class MemoryBudget:
    """Reservations of working memory by session, within ``budget_bytes`` for the whole app (thread-safe).

    A session whose tab has closed keeps its reservation (and its work, for a browser that reconnects) until another
    session needs the room: then the oldest closed sessions are evicted first."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._held: dict[int, _Reservation] = {}  # by id() of the owner, in reservation order
        self._lock = threading.Lock()

    @property
    def reserved_bytes(self) -> int:
        with self._lock:
            return sum(r.nbytes for r in self._held.values())

    def reserve(self, owner: object, width: int, height: int, what: str = "the image") -> None:
        """Hold the memory a session needs for a ``width`` x ``height`` image (replacing the owner's earlier
        reservation), or raise ImageTooLargeError saying how much is needed and how much is free."""
        need = width * height * SESSION_BYTES_PER_PIXEL
        limit = pixel_limit(self.budget_bytes)
        if width * height > limit:
            raise ImageTooLargeError(
                f"{what} is {width} x {height} = {width * height:,} pixels; this server annotates images of up to "
                f"{limit:,} pixels (a memory budget of {self.budget_bytes / 2**30:.1f} GiB shared by all sessions)")
        evicted: list[Callable[[], None]] = []
        with self._lock:
            previous = self._held.pop(id(owner), None)  # the owner's current image, reinstated if this one is refused
            free = self.budget_bytes - sum(r.nbytes for r in self._held.values())
            for key in [k for k, r in self._held.items() if r.on_evict is not None]:
                if free >= need:
                    break
                gone = self._held.pop(key)
                free += gone.nbytes
                evicted.append(gone.on_evict)  # type: ignore[arg-type]
            if free < need:
                if previous is not None:
                    self._held[id(owner)] = previous
                raise ImageTooLargeError(
                    f"{what} ({width} x {height}) needs about {need / 2**20:,.0f} MB of the server's memory and "
                    f"{max(free, 0) / 2**20:,.0f} MB are free while other sessions annotate; try again later or open "
                    f"a smaller image")
            self._held[id(owner)] = _Reservation(need)
        for evict in evicted:
            evict()

    def held(self, owner: object) -> _Reservation | None:
        """The owner's current reservation (to hand back to :meth:`restore` if what it was taken for fails)."""
        with self._lock:
            return self._held.get(id(owner))

    def restore(self, owner: object, reservation: _Reservation | None) -> None:
        """Put back the reservation :meth:`held` returned before a :meth:`reserve` whose image then failed to open."""
        with self._lock:
            if reservation is None:
                self._held.pop(id(owner), None)
            else:
                self._held[id(owner)] = reservation

    def mark_closed(self, owner: object, on_evict: Callable[[], None]) -> None:
        """The owner's browser has gone: its memory may be reclaimed (``on_evict`` frees it) when another needs it."""
        with self._lock:
            held = self._held.get(id(owner))
            if held is not None:
                held.on_evict = on_evict

    def release(self, owner: object) -> None:
        with self._lock:
            self._held.pop(id(owner), None)
