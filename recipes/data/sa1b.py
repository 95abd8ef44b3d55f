"""SA-1B format: one JPEG and one JSON per image, masks as COCO RLE.

The JSON of ``sa_<id>.jpg`` is ``sa_<id>.json``::

    {"image": {"image_id": int, "width": W, "height": H, "file_name": "sa_<id>.jpg"},
     "annotations": [{"id", "segmentation": {"size": [H, W], "counts": str}, "bbox": [x, y, w, h],
                      "area", "predicted_iou", "point_coords": [[x, y]], "stability_score", "crop_box"}]}

Any corpus in this layout (SA-1B itself, or the procedural scenes) can be read by :class:`Sa1bFolder`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from tinysam_annotate.io.atomic import atomic_write

from .scenes import SceneConfig, generate_scene


class Sa1bFormatError(ValueError):
    """An SA-1B JSON file is missing a field or disagrees with its image."""


@dataclass
class Sa1bRecord:
    """One image of an SA-1B folder: H x W x 3 uint8 pixels and N x H x W bool masks."""

    image_id: int
    image: np.ndarray
    masks: np.ndarray


def annotation_json(image_id: int, file_name: str, masks: np.ndarray) -> dict:
    """The SA-1B JSON document of one image with N x H x W boolean ``masks``."""
    from tinysam_annotate.io.coco import rle_from_mask  # pycocotools: only where files are written (not on GPU hosts)

    height, width = masks.shape[1:] if len(masks) else (0, 0)
    annotations = []
    for index, mask in enumerate(masks):
        rows, cols = np.nonzero(mask)
        x0, y0, x1, y1 = cols.min(), rows.min(), cols.max() + 1, rows.max() + 1
        # point_coords: SA-1B stores the point that produced the mask; an interior point is the closest analogue.
        # The distance transform runs on the mask's box only (a full-image one per mask dominated writing).
        dist = ndimage.distance_transform_edt(np.pad(mask[y0:y1, x0:x1], 1))[1:-1, 1:-1]
        py, px = np.unravel_index(int(np.argmax(dist)), dist.shape)
        py, px = py + y0, px + x0
        annotations.append(
            {
                "id": image_id * 10_000 + index,
                "segmentation": rle_from_mask(mask),
                "bbox": [int(x0), int(y0), int(x1 - x0), int(y1 - y0)],
                "area": int(mask.sum()),
                "predicted_iou": 1.0,
                "point_coords": [[float(px) + 0.5, float(py) + 0.5]],
                "stability_score": 1.0,
                "crop_box": [0, 0, int(width), int(height)],
            }
        )
    return {"image": {"image_id": image_id, "width": int(width), "height": int(height), "file_name": file_name}, "annotations": annotations}


def write_record(folder: str | os.PathLike, image_id: int, image: np.ndarray, masks: np.ndarray, quality: int = 92) -> Path:
    """Write ``sa_<image_id>.jpg`` and its JSON atomically; returns the JSON path."""
    folder = Path(folder)
    stem = f"sa_{image_id}"
    if masks.shape[1:] != image.shape[:2]:
        raise Sa1bFormatError(f"masks are {masks.shape[1:]} but the image is {image.shape[:2]}")
    with atomic_write(folder / f"{stem}.jpg") as fh:
        Image.fromarray(image).save(fh, format="JPEG", quality=quality)
    doc = annotation_json(image_id, f"{stem}.jpg", masks)
    doc["image"]["width"], doc["image"]["height"] = image.shape[1], image.shape[0]
    with atomic_write(folder / f"{stem}.json", "w") as fh:
        json.dump(doc, fh)
    return folder / f"{stem}.json"


def read_record(json_path: str | os.PathLike) -> Sa1bRecord:
    """Read one image and its masks; Sa1bFormatError names what is wrong."""
    json_path = Path(json_path)
    try:
        doc = json.loads(json_path.read_text())
        info = doc["image"]
        image_path = json_path.parent / info["file_name"]
        height, width = int(info["height"]), int(info["width"])
        annotations = doc["annotations"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise Sa1bFormatError(f"{json_path}: not an SA-1B annotation file ({exc})") from exc
    with Image.open(image_path) as img:
        image = np.asarray(img.convert("RGB"))
    if image.shape[:2] != (height, width):
        raise Sa1bFormatError(f"{json_path}: image is {image.shape[1]}x{image.shape[0]}, JSON says {width}x{height}")
    from tinysam_annotate.io.coco import decode_rle

    masks = [decode_rle(a["segmentation"]) for a in annotations]
    for a, m in zip(annotations, masks, strict=True):
        if m.shape != (height, width):
            raise Sa1bFormatError(f"{json_path}: annotation {a.get('id')} has size {m.shape}, image is {(height, width)}")
    stacked = np.stack(masks) if masks else np.zeros((0, height, width), bool)
    return Sa1bRecord(image_id=int(info["image_id"]), image=image, masks=stacked)


class Sa1bFolder:
    """The records of a folder of SA-1B files, in file-name order."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.refresh()
        if not self.paths:
            raise FileNotFoundError(f"no sa_*.json files in {self.folder}")

    def refresh(self) -> None:
        """Re-list the folder (a corpus still being generated grows while it trains)."""
        self.paths = sorted(self.folder.glob("sa_*.json"))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Sa1bRecord:
        return read_record(self.paths[index])

    def __iter__(self) -> Iterator[Sa1bRecord]:
        return (self[i] for i in range(len(self)))


def generate_folder(folder: str | os.PathLike, seeds: Iterable[int], config: SceneConfig | None = None,
                    progress: bool = True) -> int:
    """Write the scenes of ``seeds`` as SA-1B files (image id = seed); existing ones are kept. Returns the count written."""
    config = config or SceneConfig()
    folder = Path(folder)
    seeds = list(seeds)
    written = 0
    for seed in tqdm(seeds, desc="scenes", disable=not progress, unit="img"):
        if (folder / f"sa_{seed}.json").exists():
            continue
        scene = generate_scene(seed, config)
        if len(scene.masks) == 0:
            continue
        write_record(folder, seed, scene.image, scene.masks)
        written += 1
    return written
