"""The journaled COCO writer: one appended line per image, one COCO write at the end, resumable after a crash."""

from __future__ import annotations

import numpy as np
import pytest

from tinysam_annotate.io import coco_journal
from tinysam_annotate.io.coco import read_coco, rle_annotation, rle_from_mask
from tinysam_annotate.io.coco_journal import CocoJournal, ImageAnnotations, journal_path


def image(name: str, n_objects: int = 2, error: str | None = None) -> ImageAnnotations:
    annotations = []
    for k in range(n_objects):
        mask = np.zeros((16, 16), bool)
        mask[k : k + 4, 2 : 6 + k] = True
        annotations.append(rle_annotation(rle_from_mask(mask), 0, 0, 1, 0.9))
    return ImageAnnotations(name, 16, 16, annotations, error)


@pytest.fixture
def counted_writes(monkeypatch):
    calls = []
    real = coco_journal.write_coco

    def counting(path, coco, *args, **kwargs):
        calls.append(len(coco["images"]))
        return real(path, coco, *args, **kwargs)

    monkeypatch.setattr(coco_journal, "write_coco", counting)
    return calls


def test_adding_an_image_appends_one_line_and_leaves_the_coco_file_alone(tmp_path, counted_writes):
    out = tmp_path / "out.json"
    first = CocoJournal(out)
    for i in range(40):
        first.add(image(f"old{i}.png"))
    first.finish()
    before = out.read_bytes()
    counted_writes.clear()
    journal = CocoJournal(out)
    for i in range(25):
        assert journal.add(image(f"new{i}.png", n_objects=3))
        assert len(journal_path(out).read_text().splitlines()) == i + 1
    assert counted_writes == [] and out.read_bytes() == before  # nothing rewritten per image
    journal.finish()
    assert counted_writes == [65] and not journal_path(out).exists()
    coco = read_coco(out)
    assert [i["file_name"] for i in coco["images"]] == [f"old{i}.png" for i in range(40)] + [f"new{i}.png" for i in range(25)]
    assert len(coco["annotations"]) == 40 * 2 + 25 * 3
    assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"])
    assert len({i["id"] for i in coco["images"]}) == 65


def test_a_crash_leaves_the_journal_and_the_next_run_skips_what_it_holds(tmp_path):
    out = tmp_path / "out.json"
    crashed = CocoJournal(out)
    crashed.add(image("a.png"))
    crashed.add(image("b.png", error="cannot decode b.png"))
    crashed.add(image("c.png"))
    with open(journal_path(out), "a", encoding="utf-8") as fh:
        fh.write('{"file_name": "d.png", "height": 16, "wid')  # the process died mid-line
    resumed = CocoJournal(out)
    assert resumed.is_done("a.png") and resumed.is_done("c.png")
    assert not resumed.is_done("b.png")  # a failure is tried again
    assert not resumed.is_done("d.png")
    assert not resumed.add(image("a.png"))
    assert resumed.add(image("b.png"))
    resumed.finish(order=["c.png", "b.png", "a.png"])
    assert [i["file_name"] for i in read_coco(out)["images"]] == ["c.png", "b.png", "a.png"]


def test_a_retried_image_counts_once_and_failures_stay_out_of_the_file(tmp_path):
    out = tmp_path / "out.json"
    journal = CocoJournal(out, categories=[{"id": 1, "name": "nucleus"}])
    assert journal.add(image("x.png", error="boom"))
    assert not journal.add(image("x.png"))  # a retry's second result within one run
    assert journal.add(image("y.png"))
    assert not journal.add(image("y.png"))
    journal.finish()
    coco = read_coco(out)
    assert [i["file_name"] for i in coco["images"]] == ["y.png"]
    assert coco["categories"] == [{"id": 1, "name": "nucleus"}]


def test_a_run_that_adds_nothing_leaves_the_coco_file_unwritten(tmp_path, counted_writes):
    out = tmp_path / "out.json"
    first = CocoJournal(out)
    first.add(image("a.png"))
    first.finish()
    counted_writes.clear()
    rerun = CocoJournal(out)
    assert not rerun.add(image("a.png"))
    rerun.add(image("b.png", error="cannot decode b.png"))
    rerun.finish()
    assert counted_writes == [] and not journal_path(out).exists()
    assert [i["file_name"] for i in read_coco(out)["images"]] == ["a.png"]
