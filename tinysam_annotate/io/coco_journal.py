"""A COCO file filled image by image through an append-only journal: constant cost per image, resumable.

Each finished image becomes one fsynced JSON line in ``OUT.journal.jsonl``; the COCO file itself is written
once, by :meth:`CocoJournal.finish` (atomically), which then removes the journal. A run that crashed leaves
the journal behind: the next run over the same output reads it with the COCO file and skips every image
already in either. The local batch engine and the Ray driver both write through this class.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from .coco import read_coco, write_coco

DEFAULT_CATEGORIES: tuple[dict[str, Any], ...] = ({"id": 1, "name": "object"},)
DEFAULT_CATEGORY_ID = 1


@dataclass
class ImageAnnotations:
    """One image's annotations without COCO ids (assigned when merged into the file); ``error`` when it failed."""

    file_name: str
    height: int
    width: int
    annotations: list[dict[str, Any]]  # segmentation (RLE, counts str), area, bbox, score, attributes
    error: str | None = None


def journal_path(out: str | os.PathLike) -> Path:
    """Where the journal of the COCO file ``out`` lives: next to it, ``OUT.journal.jsonl``."""
    out = Path(out)
    return out.with_name(out.name + ".journal.jsonl")


class CocoJournal:
    """The COCO file ``out`` being filled: images already in it, images journaled since, and fresh ids.

    ``categories`` apply when the file has no annotations yet (default: one "object" category, id 1).
    Records of failed images are kept for the run (a retried image is counted once) but not across runs:
    a rerun tries them again.
    """

    def __init__(self, out: str | os.PathLike, categories: Sequence[dict[str, Any]] | None = None) -> None:
        self.out = Path(out)
        self.path = journal_path(self.out)
        if self.out.exists():
            self._coco = read_coco(self.out)
        else:
            self._coco = {"images": [], "annotations": [], "categories": [dict(c) for c in DEFAULT_CATEGORIES]}
        if categories is not None and not self._coco["annotations"]:
            self._coco["categories"] = [dict(c) for c in categories]
        self._in_file = {img["file_name"] for img in self._coco["images"]}
        self.records: dict[str, ImageAnnotations] = {}  # this journal's, first record per file name
        for record in self._read_journal():
            if record.error is None and record.file_name not in self._in_file:
                self.records.setdefault(record.file_name, record)

    def _read_journal(self) -> list[ImageAnnotations]:
        if not self.path.exists():
            return []
        records = []
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    records.append(ImageAnnotations(**json.loads(line)))
                except (json.JSONDecodeError, TypeError):
                    continue  # a line cut short by a crash mid-write
        return records

    def is_done(self, file_name: str) -> bool:
        """Whether the image is in the COCO file or was journaled in this run or an interrupted one."""
        return file_name in self._in_file or file_name in self.records

    def add(self, record: ImageAnnotations) -> bool:
        """Journal one image (one appended line, however many images came before); False if it is already done."""
        if self.is_done(record.file_name):
            return False
        self.records[record.file_name] = record
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(record)) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return True

    def finish(self, order: Sequence[str] = ()) -> Path:
        """Merge the journaled images into the COCO file (those named in ``order`` first, in that order, then
        the rest as they arrived), write it atomically and remove the journal. Failed images are left out."""
        rank = {name: i for i, name in enumerate(order)}
        pending = sorted(self.records.values(), key=lambda r: rank.get(r.file_name, len(rank)))
        if self.out.exists() and not any(r.error is None for r in pending):
            self.records.clear()  # nothing new: the file stays as it is (writing validates every mask again)
            self.path.unlink(missing_ok=True)
            return self.out
        next_image = max((img["id"] for img in self._coco["images"]), default=0) + 1
        next_ann = max((ann["id"] for ann in self._coco["annotations"]), default=0) + 1
        for record in pending:
            if record.error is not None or record.file_name in self._in_file:
                continue
            self._coco["images"].append({"id": next_image, "file_name": record.file_name, "height": record.height,
                                         "width": record.width})
            for ann in record.annotations:
                self._coco["annotations"].append({**ann, "id": next_ann, "image_id": next_image})
                next_ann += 1
            self._in_file.add(record.file_name)
            next_image += 1
        self.records.clear()
        written = write_coco(self.out, self._coco)
        self.path.unlink(missing_ok=True)
        return written
