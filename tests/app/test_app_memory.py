"""The app's memory budget: images open only while all sessions' working memory fits; closed tabs give way."""

from __future__ import annotations

import numpy as np
import pytest

from tinysam_annotate.amg.memory import resident_bytes
from tinysam_annotate.app import handlers as h
from tinysam_annotate.app.engine import AppConfig, Engine
from tinysam_annotate.app.memory import SESSION_BYTES_PER_PIXEL, MemoryBudget, pixel_limit
from tinysam_annotate.cache import EmbeddingCache
from tinysam_annotate.errors import ImageTooLargeError

MB = 2**20


def test_reservations_fit_the_budget_and_a_refusal_says_what_is_needed_and_free():
    budget = MemoryBudget(2 * 1000 * 1000 * SESSION_BYTES_PER_PIXEL)  # two 1000 x 1000 images
    a, b, c = object(), object(), object()
    budget.reserve(a, 1000, 1000)
    budget.reserve(b, 1000, 1000)
    with pytest.raises(ImageTooLargeError, match=r"cells.png \(1000 x 1000\) needs about 61 MB .* 0 MB are free"):
        budget.reserve(c, 1000, 1000, "cells.png")
    budget.reserve(a, 500, 500)  # a smaller image replaces a's reservation
    budget.reserve(c, 500, 500)
    with pytest.raises(ImageTooLargeError):
        budget.reserve(a, 1000, 1000)  # refused: a keeps the image it had
    assert budget.reserved_bytes == (1000 * 1000 + 2 * 500 * 500) * SESSION_BYTES_PER_PIXEL
    budget.release(b)
    budget.reserve(a, 1000, 1000)
    assert budget.reserved_bytes == (1000 * 1000 + 500 * 500) * SESSION_BYTES_PER_PIXEL


def test_an_image_over_the_derived_pixel_limit_is_refused_outright():
    budget = MemoryBudget(4 * 2**30)
    assert pixel_limit(4 * 2**30) == AppConfig().max_pixels == 2**32 // (2 * SESSION_BYTES_PER_PIXEL)
    with pytest.raises(ImageTooLargeError, match="up to 33,554,432 pixels"):
        budget.reserve(object(), 6300, 6300, "bomb.png")



def test_opening_a_file_checks_the_budgets_pixel_limit_from_its_header(tiny_backend, tmp_path):
    from PIL import Image

    path = tmp_path / "wide.png"
    Image.new("L", (400, 300)).save(path)
    budget = MemoryBudget(2 * 200 * 200 * SESSION_BYTES_PER_PIXEL)  # its pixel limit: 200 x 200
    state = h.AppState(workdir=tmp_path / "session")
    with pytest.raises(ImageTooLargeError, match=f"over the limit of {pixel_limit(budget.budget_bytes):,}"):
        h.open_image(state, Engine(tiny_backend, EmbeddingCache(directory=None)), path, budget=budget)
    assert state.session is None and budget.reserved_bytes == 0

def test_closed_sessions_give_way_oldest_first_and_only_when_needed():
    budget = MemoryBudget(3 * 100 * 100 * SESSION_BYTES_PER_PIXEL)
    old, newer, open_tab, newcomer = object(), object(), object(), object()
    evicted = []
    for owner in (old, newer, open_tab):
        budget.reserve(owner, 100, 100)
    budget.mark_closed(old, lambda: evicted.append("old"))
    budget.mark_closed(newer, lambda: evicted.append("newer"))
    budget.reserve(newcomer, 100, 100)
    assert evicted == ["old"]  # one was enough; the newer closed session keeps its work
    with pytest.raises(ImageTooLargeError):
        budget.reserve(object(), 200, 100)  # would need the open tab's memory too: refused, nothing evicted
    assert evicted == ["old"]


@pytest.mark.slow
def test_three_sessions_on_a_large_image_stay_within_the_budget(tiny_backend):
    """Two sessions annotate a 3000 x 3000 image; the third is refused with a clear message instead of taking the
    server past its budget; the process grows by less than the budget."""
    side = 3000
    budget = MemoryBudget(int(2.2 * side * side * SESSION_BYTES_PER_PIXEL))
    engine = Engine(tiny_backend, EmbeddingCache(directory=None))
    image = np.random.default_rng(0).integers(0, 255, (side, side, 3), np.uint8)
    before = resident_bytes()
    states = [h.AppState() for _ in range(3)]
    for state in states[:2]:
        h.open_image(state, engine, image, name="large.png", budget=budget)
        h.click(state, 1500, 1500)
        h.click(state, 1600, 1500)
        h.accept(state, None)
    with pytest.raises(ImageTooLargeError, match=r"large.png \(3000 x 3000\) needs about 549 MB"):
        h.open_image(states[2], engine, image, name="large.png", budget=budget)
    assert states[2].session is None
    grown = resident_bytes() - before
    assert grown < budget.budget_bytes, (grown / MB, budget.budget_bytes / MB)
    for state in states:
        h.close(state)


def test_an_image_that_fails_to_open_leaves_the_reservation_of_the_one_still_open(tiny_backend, monkeypatch):
    budget = MemoryBudget(10 * 200 * 200 * SESSION_BYTES_PER_PIXEL)
    engine = Engine(tiny_backend, EmbeddingCache(directory=None))
    state = h.AppState()
    h.open_image(state, engine, np.zeros((100, 100, 3), np.uint8), name="first.png", budget=budget)
    before = budget.reserved_bytes

    def fail(*args, **kwargs):
        raise OSError("encoder failed")

    monkeypatch.setattr(h, "AnnotationSession", fail)
    with pytest.raises(OSError, match="encoder failed"):
        h.open_image(state, engine, np.zeros((200, 200, 3), np.uint8), name="second.png", budget=budget)
    assert budget.reserved_bytes == before and state.session.image_name == "first.png"
    h.close(state)
