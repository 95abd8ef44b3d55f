"""Batch everything mode over many images into one COCO file: resumable, atomic, with progress."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from tqdm import tqdm

from .amg import SamAutomaticMaskGenerator, SamHierarchicalMaskGenerator
from .errors import ImageError, TinySamAnnotateError
from .io.coco import decode_rle, read_coco, rle_annotation, write_coco
from .io.image import load_image
from .io.labels import masks_to_labels, write_label_image

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"}
CATEGORY = {"id": 1, "name": "object"}


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, folders expanded to their image files (sorted, not recursive).

    A path that does not exist is an error (a typo should not silently annotate nothing).
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise TinySamAnnotateError(f"no such file or folder: {path}")
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            files.append(path)
    return files


@dataclass
class BatchResult:
    processed: list[str]
    skipped: list[str]
    failed: dict[str, str]
    annotations: int


def make_generator(backend: Any, mode: str, **options: Any) -> SamAutomaticMaskGenerator:
    """A hierarchical (default) or grid generator over ``backend`` with RLE output."""
    if mode not in ("hierarchical", "grid"):
        raise ValueError(f"mode must be 'hierarchical' or 'grid', got {mode!r}")
    cls = SamHierarchicalMaskGenerator if mode == "hierarchical" else SamAutomaticMaskGenerator
    return cls(backend, output_mode="coco_rle", **options)


def annotate_folder(
    images: list[Path],
    out: str | os.PathLike,
    generator: SamAutomaticMaskGenerator,
    labels_dir: str | os.PathLike | None = None,
    progress: bool = True,
    on_image: Callable[[Path, int], None] | None = None,
) -> BatchResult:
    """Run everything mode on each image and write a COCO file after every image (atomically).

    Images whose file name is already in ``out`` are skipped, so a rerun after an interruption
    finishes only what is missing. Unreadable images are reported and skipped, never fatal.
    """
    names = [p.name for p in images]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise TinySamAnnotateError(f"several inputs share a file name (COCO keys images by name): {', '.join(clashes)}")
    out = Path(out)
    coco = read_coco(out) if out.exists() else {"images": [], "annotations": [], "categories": [CATEGORY]}
    done = {img["file_name"] for img in coco["images"]}
    next_image = max((img["id"] for img in coco["images"]), default=0) + 1
    next_ann = max((a["id"] for a in coco["annotations"]), default=0) + 1
    result = BatchResult([], [], {}, 0)
    for path in tqdm(images, desc="everything", unit="image", disable=not progress):
        name = path.name
        if name in done:
            result.skipped.append(name)
            continue
        try:
            rgb = load_image(path).rgb
        except ImageError as exc:
            log.warning("skipping %s: %s", path, exc)
            result.failed[name] = str(exc)
            continue
        anns = generator.generate(rgb)
        h, w = rgb.shape[:2]
        coco["images"].append({"id": next_image, "file_name": name, "height": h, "width": w})
        masks = []
        for ann in sorted(anns, key=lambda a: -a["area"]):  # big first: small objects stay on top in labels
            rle = ann["segmentation"]
            attributes = {
                "prompts": {"point_coords": ann["point_coords"], "point_labels": [1]},
                "stability_score": float(ann["stability_score"]),
                "source": "everything",
            }
            coco["annotations"].append(
                rle_annotation(rle, next_ann, next_image, CATEGORY["id"], ann["predicted_iou"], attributes)
            )
            next_ann += 1
            if labels_dir is not None:
                masks.append(decode_rle(rle))
        if labels_dir is not None:
            labels = masks_to_labels(masks, (h, w)) if masks else np.zeros((h, w), np.uint16)
            write_label_image(Path(labels_dir) / f"{path.stem}_labels.tif", labels)
        write_coco(out, coco)
        done.add(name)
        next_image += 1
        result.processed.append(name)
        result.annotations += len(anns)
        if on_image is not None:
            on_image(path, len(anns))
    return result
