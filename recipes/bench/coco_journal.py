"""Cost of adding one image to a batch COCO file: the journal against rewriting the whole file per image.

    python -m recipes.bench.coco_journal [--images 1000] [--objects 20] [--rewrite-images 200]

Each image carries ``--objects`` RLE masks on a 512 x 512 frame. The journal (``tinysam_annotate.io.coco_journal``,
what the local and Ray batch engines use) appends one line per image and writes the COCO file once; the old
way (validate and rewrite the whole file after every image) is timed on the first ``--rewrite-images`` only,
as its cost grows with the file. Both in one process, side by side. Writes ``recipes/results/coco_journal.md``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from tinysam_annotate.io.coco import rle_annotation, rle_from_mask, write_coco
from tinysam_annotate.io.coco_journal import CocoJournal, ImageAnnotations

from .model_eval import RESULTS

SIZE = 512


def make_images(n_images: int, n_objects: int, seed: int = 0) -> list[ImageAnnotations]:
    """``n_images`` records of ``n_objects`` random discs each (real RLEs, as everything mode writes them)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    records = []
    for i in range(n_images):
        annotations = []
        for _ in range(n_objects):
            cx, cy, r = rng.uniform(40, SIZE - 40), rng.uniform(40, SIZE - 40), rng.uniform(8, 40)
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
            annotations.append(rle_annotation(rle_from_mask(mask), 0, 0, 1, float(rng.uniform(0.7, 1.0))))
        records.append(ImageAnnotations(f"img{i:05d}.png", SIZE, SIZE, annotations))
    return records


def time_journal(records: list[ImageAnnotations], folder: Path) -> tuple[list[float], float]:
    """Seconds of each add, and of the final write."""
    journal = CocoJournal(folder / "journal.json")
    per_image = []
    for record in records:
        start = time.perf_counter()
        journal.add(record)
        per_image.append(time.perf_counter() - start)
    start = time.perf_counter()
    journal.finish()
    return per_image, time.perf_counter() - start


def time_rewrite(records: list[ImageAnnotations], folder: Path) -> list[float]:
    """Seconds per image when the whole COCO file is validated and rewritten after each one (the old writer)."""
    coco: dict = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "object"}]}
    per_image = []
    for image_id, record in enumerate(records, start=1):
        start = time.perf_counter()
        coco["images"].append({"id": image_id, "file_name": record.file_name, "height": SIZE, "width": SIZE})
        for ann in record.annotations:
            coco["annotations"].append({**ann, "id": len(coco["annotations"]) + 1, "image_id": image_id})
        write_coco(folder / "rewrite.json", coco)
        per_image.append(time.perf_counter() - start)
    return per_image


def window_ms(times: list[float], start: int, stop: int) -> float:
    return 1000 * float(np.mean(times[start:stop]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--objects", type=int, default=20)
    parser.add_argument("--rewrite-images", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS / "coco_journal.md")
    args = parser.parse_args(argv)
    records = make_images(args.images, args.objects)
    window = max(1, min(100, args.rewrite_images // 10))
    with tempfile.TemporaryDirectory() as tmp:
        journal_times, finish_seconds = time_journal(records, Path(tmp))
        rewrite_times = time_rewrite(records[: args.rewrite_images], Path(tmp))
    n, m = len(journal_times), len(rewrite_times)
    rows = [
        f"| journal (append one line) | {window_ms(journal_times, 0, window):.2f} | "
        f"{window_ms(journal_times, m - window, m):.2f} | {window_ms(journal_times, n - window, n):.2f} | "
        f"{sum(journal_times) + finish_seconds:.1f} s (final write {finish_seconds:.1f} s) |",
        f"| rewrite the file per image (old) | {window_ms(rewrite_times, 0, window):.2f} | "
        f"{window_ms(rewrite_times, m - window, m):.2f} | not run | {sum(rewrite_times):.1f} s for {m} images |",
    ]
    table = "\n".join([
        "# Adding an image to a batch COCO file",
        "",
        f"{args.objects} RLE objects per {SIZE} x {SIZE} image; mean milliseconds per image added over windows of "
        f"{window} images (`python -m recipes.bench.coco_journal`).",
        "",
        f"| writer | images 1-{window} | images {m - window + 1}-{m} | images {n - window + 1}-{n} | total |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ])
    args.out.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
