"""Clean interactive masks: the parts the prompts point at, small holes filled, never empty by accident."""

from __future__ import annotations

import numpy as np
import pytest

from tinysam_annotate.cleanup import MaskCleanup, clean_mask, count_parts


def _scattered() -> np.ndarray:
    """A 100 x 100 mask: the object (rows/cols 30..59, a 2 x 2 and a 12 x 12 hole), a far blob, two specks."""
    mask = np.zeros((100, 100), bool)
    mask[30:60, 30:60] = True
    mask[40:42, 40:42] = False  # small hole: filled
    mask[44:56, 44:56] = False  # 144 px hole, 16% of the object: kept
    mask[80:95, 5:20] = True  # a far blob
    mask[10, 90] = mask[62, 62] = True  # specks, one just outside the object
    return mask


def test_a_click_keeps_only_the_part_it_is_on_and_fills_small_holes():
    mask = _scattered()
    assert count_parts(mask) == 4
    cleaned = clean_mask(mask, points=np.array([[35.0, 35.0]]), labels=np.array([1]))
    expected = np.zeros_like(mask)
    expected[30:60, 30:60] = True
    expected[44:56, 44:56] = False
    assert np.array_equal(cleaned, expected)
    # Two positive clicks on two parts keep both; a negative click does not select its part.
    both = clean_mask(mask, points=np.array([[35.0, 35.0], [10.0, 85.0], [90.0, 10.0]]), labels=np.array([1, 1, 0]))
    assert both[85, 10] and both[35, 35] and not both[10, 90]


def test_a_box_keeps_the_parts_mostly_inside_it_without_specks():
    mask = _scattered()
    cleaned = clean_mask(mask, box=np.array([25.0, 25.0, 65.0, 65.0]))
    assert cleaned[35, 35] and not cleaned[85, 10] and not cleaned[62, 62] and not cleaned[10, 90]
    # A part mostly inside the box is kept whole, spill included; one mostly outside is dropped.
    spill = np.zeros((100, 100), bool)
    spill[30:60, 30:70] = True  # 75% inside the box below
    spill[0:10, 55:100] = True  # 10% inside
    kept = clean_mask(spill, box=np.array([25.0, 5.0, 60.0, 65.0]))
    assert kept[30:60, 30:70].all() and not kept[0:10, 61:100].any()


def test_nothing_qualifies_keeps_the_nearest_part_and_never_empties_a_mask():
    mask = _scattered()
    off = clean_mask(mask, points=np.array([[25.0, 45.0]]), labels=np.array([1]))  # just left of the object
    assert off[35, 35] and not off[85, 10] and count_parts(off) == 1
    far = clean_mask(mask, box=np.array([70.0, 70.0, 99.0, 99.0]))  # no part inside: the largest part stays
    assert far.any() and count_parts(far) == 1
    empty = np.zeros((20, 20), bool)
    assert not clean_mask(empty, points=np.array([[3.0, 3.0]])).any()


def test_hole_filling_settings():
    ring = np.zeros((50, 50), bool)
    ring[10:40, 10:40] = True
    ring[20:30, 20:30] = False  # 100 px hole in a 800 px ring: 12.5%
    assert not clean_mask(ring, points=np.array([[12.0, 12.0]]))[25, 25]
    assert clean_mask(ring, points=np.array([[12.0, 12.0]]), settings=MaskCleanup(max_hole_fraction=0.2))[25, 25]
    assert clean_mask(ring, points=np.array([[12.0, 12.0]]), settings=MaskCleanup(max_hole_area=101))[25, 25]
    with pytest.raises(ValueError, match="one H x W mask"):
        clean_mask(np.zeros((2, 5, 5), bool))
