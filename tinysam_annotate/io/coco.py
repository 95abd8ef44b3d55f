"""COCO JSON export/import of masks (RLE or polygons), and a validator for training pipelines.

Masks are H x W boolean arrays. RLE counts are stored as str (pycocotools' compressed form); ``area``
is the pixel count and ``bbox`` is pycocotools' toBbox (x, y, width, height). The prompts that made
an object travel in ``attributes``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from skimage import measure

from ..errors import TinySamAnnotateError
from .atomic import atomic_write

log = logging.getLogger(__name__)


class CocoFormatError(TinySamAnnotateError):
    """A COCO file is malformed or inconsistent (the message lists every problem found)."""


@dataclass
class ObjectRecord:
    """One annotated object of one image."""

    mask: np.ndarray  # H x W bool
    category_id: int = 1
    score: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)  # e.g. {"prompts": {...}}


def decode_rle(rle: dict) -> np.ndarray:
    """H x W bool mask of one pycocotools RLE (counts as bytes or str)."""
    counts = rle["counts"]
    rle = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode([rle])[:, :, 0].astype(bool)


def json_rle(rle: dict) -> dict:
    """A pycocotools RLE in JSON form: ``size`` as a list and ``counts`` as str."""
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def rle_from_mask(mask: np.ndarray) -> dict:
    """JSON-ready COCO RLE (counts as str) of an H x W boolean mask."""
    return json_rle(mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8))))


def mask_to_polygons(mask: np.ndarray) -> list[list[float]] | None:
    """COCO polygons (one per part) that rasterise back to exactly ``mask``, or None when impossible.

    Polygons follow pixel edges (vertices on integer pixel corners), which is what pycocotools
    rasterises back exactly. COCO polygons cannot hold holes, so masks with holes (and any mask whose
    polygons would not reproduce it) return None and are written as RLE. No polygon has < 3 points.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return None
    h, w = mask.shape
    # Trace on a 2x nearest upscale: contour points then lie within a quarter pixel of the true pixel
    # edges (exactly on them along straight runs), so rounding recovers the corners.
    upscaled = np.pad(np.kron(mask, np.ones((2, 2), dtype=bool)), 1).astype(np.uint8)
    polygons = []
    for contour in measure.find_contours(upscaled, 0.5):
        corners = np.rint((contour - 0.5) / 2)[:, ::-1]  # (x, y) pixel corners
        keep = np.ones(len(corners), dtype=bool)
        keep[1:] = np.any(corners[1:] != corners[:-1], axis=1)
        corners = corners[keep]
        if len(corners) > 1 and np.array_equal(corners[0], corners[-1]):
            corners = corners[:-1]
        corners = _drop_collinear(corners)
        if len(corners) < 3:
            return None
        polygons.append([float(v) for v in corners.reshape(-1)])
    decoded = decode_rle(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w)))
    return polygons if np.array_equal(decoded, mask) else None


def _drop_collinear(points: np.ndarray) -> np.ndarray:
    """Remove vertices of a closed polygon that lie on the line through their neighbours."""
    if len(points) < 3:
        return points
    before = points - np.roll(points, 1, axis=0)
    after = np.roll(points, -1, axis=0) - points
    cross = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    return points[cross != 0]


def annotation_for(obj: ObjectRecord, ann_id: int, image_id: int, use_polygons: bool) -> dict[str, Any]:
    """A COCO annotation dict for one object (exact polygons when asked and possible, else RLE)."""
    mask = np.asarray(obj.mask, dtype=bool)
    polygons = mask_to_polygons(mask) if use_polygons else None
    if use_polygons and polygons is None:
        log.warning("object %d cannot be written as exact polygons (holes or thin parts); using RLE", ann_id)
    return rle_annotation(rle_from_mask(mask), ann_id, image_id, obj.category_id, obj.score, obj.attributes, polygons)


def rle_annotation(
    rle: dict,
    ann_id: int,
    image_id: int,
    category_id: int,
    score: float | None = None,
    attributes: dict[str, Any] | None = None,
    polygons: list[list[float]] | None = None,
) -> dict[str, Any]:
    """A COCO annotation dict from a JSON RLE: area is its pixel count, bbox pycocotools' toBbox.

    ``polygons``, when given, replace the RLE as the segmentation (they must describe the same mask).
    """
    coco_rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    ann: dict[str, Any] = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": int(category_id),
        "segmentation": polygons if polygons is not None else rle,
        "area": int(mask_utils.area(coco_rle)),
        "bbox": [float(v) for v in mask_utils.toBbox(coco_rle)],
        "iscrowd": 0,
    }
    if score is not None:
        ann["score"] = float(score)
    if attributes:
        ann["attributes"] = attributes
    return ann


def build_coco(
    images: Sequence[dict[str, Any]],
    objects: Sequence[Sequence[ObjectRecord]],
    categories: Sequence[dict[str, Any]] | None = None,
    use_polygons: bool = False,
) -> dict[str, Any]:
    """A COCO dict. images: dicts with at least file_name, height, width (ids 1.. are assigned when absent).

    objects[i] are the objects of images[i]; every mask must be height x width of its image.
    """
    if len(images) != len(objects):
        raise ValueError(f"{len(images)} images but {len(objects)} object lists")
    out_images, annotations = [], []
    ann_id = 1
    for index, (info, objs) in enumerate(zip(images, objects, strict=True), start=1):
        image = {"id": int(info.get("id", index)), **{k: v for k, v in info.items() if k != "id"}}
        out_images.append(image)
        for obj in objs:
            if tuple(np.shape(obj.mask)) != (image["height"], image["width"]):
                raise ValueError(
                    f"mask of shape {np.shape(obj.mask)} does not match image {image['file_name']} "
                    f"({image['height']} x {image['width']})"
                )
            annotations.append(annotation_for(obj, ann_id, image["id"], use_polygons))
            ann_id += 1
    used = sorted({a["category_id"] for a in annotations})
    cats = list(categories) if categories is not None else [{"id": c, "name": f"object_{c}" if c != 1 else "object"} for c in used]
    return {"images": out_images, "annotations": annotations, "categories": cats}


def write_coco(path: str | os.PathLike, coco: dict[str, Any], validate: bool = True) -> Path:
    """Validate (optionally) and write atomically; a crash mid-write leaves the old file intact."""
    if validate:
        validate_coco(coco)
    with atomic_write(path, "w") as fh:
        json.dump(coco, fh)
    return Path(path)


def read_coco(path: str | os.PathLike, validate: bool = True) -> dict[str, Any]:
    """Load a COCO file; malformed JSON or structure raises CocoFormatError."""
    try:
        coco = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CocoFormatError(f"cannot read COCO file {path}: {exc}") from exc
    if validate:
        validate_coco(coco)
    return coco


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """H x W bool mask of a COCO segmentation (RLE with str/bytes/list counts, or polygons)."""
    if isinstance(segmentation, list):
        return decode_rle(mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width)))
    if isinstance(segmentation.get("counts"), list):
        return decode_rle(mask_utils.frPyObjects(segmentation, height, width))
    return decode_rle(segmentation)


def objects_of_image(coco: dict[str, Any], image_id: int) -> list[ObjectRecord]:
    """The objects of one image, decoded back to masks, in annotation order."""
    images = {img["id"]: img for img in coco["images"]}
    if image_id not in images:
        raise CocoFormatError(f"image id {image_id} is not in this COCO file")
    img = images[image_id]
    return [
        ObjectRecord(
            mask=decode_segmentation(a["segmentation"], img["height"], img["width"]),
            category_id=a["category_id"],
            score=a.get("score"),
            attributes=a.get("attributes", {}),
        )
        for a in coco["annotations"]
        if a["image_id"] == image_id
    ]


def validate_coco(coco: Any) -> None:
    """Check a COCO dict the way a training pipeline needs it; raise CocoFormatError listing problems.

    Checks: top-level lists; unique image/annotation/category ids; every annotation's image and
    category exist; RLE size equals the image size and counts are str; area equals the mask's pixel
    count; bbox equals pycocotools' toBbox; polygons have >= 3 points; positive image sizes.
    """
    problems: list[str] = []
    if not isinstance(coco, dict):
        raise CocoFormatError("COCO data must be a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            problems.append(f"'{key}' must be a list")
    if problems:
        raise CocoFormatError("; ".join(problems))
    images, seen = {}, set()
    for img in coco["images"]:
        iid = img.get("id")
        if iid in images:
            problems.append(f"duplicate image id {iid}")
        if not (isinstance(img.get("height"), int) and isinstance(img.get("width"), int)) or img["height"] < 1 or img["width"] < 1:
            problems.append(f"image {iid}: height and width must be positive integers")
            continue
        images[iid] = img
    cat_ids = [c.get("id") for c in coco["categories"]]
    if len(set(cat_ids)) != len(cat_ids):
        problems.append("duplicate category ids")
    for ann in coco["annotations"]:
        aid = ann.get("id")
        if aid in seen:
            problems.append(f"duplicate annotation id {aid}")
        seen.add(aid)
        img = images.get(ann.get("image_id"))
        if img is None:
            problems.append(f"annotation {aid}: unknown image_id {ann.get('image_id')}")
            continue
        if ann.get("category_id") not in cat_ids:
            problems.append(f"annotation {aid}: unknown category_id {ann.get('category_id')}")
        problems += _check_segmentation(ann, img)
    if problems:
        shown = "; ".join(problems[:20]) + (f"; ... {len(problems) - 20} more" if len(problems) > 20 else "")
        raise CocoFormatError(f"invalid COCO data: {shown}")


def _check_segmentation(ann: dict[str, Any], img: dict[str, Any]) -> list[str]:
    aid, seg = ann.get("id"), ann.get("segmentation")
    h, w = img["height"], img["width"]
    problems = []
    if isinstance(seg, dict):
        if list(seg.get("size", [])) != [h, w]:
            problems.append(f"annotation {aid}: RLE size {seg.get('size')} != image size {[h, w]}")
            return problems
        if not isinstance(seg.get("counts"), str):
            problems.append(f"annotation {aid}: RLE counts must be a str")
            return problems
    elif isinstance(seg, list):
        if not seg or any(not isinstance(p, list) or len(p) < 6 or len(p) % 2 for p in seg):
            return [f"annotation {aid}: every polygon needs >= 3 (x, y) points"]
    else:
        return [f"annotation {aid}: segmentation must be RLE or polygons"]
    try:
        mask = decode_segmentation(seg, h, w)
    except Exception as exc:  # pycocotools raises assorted errors on corrupt counts
        return [f"annotation {aid}: segmentation does not decode ({exc})"]
    if ann.get("area") != int(mask.sum()):
        problems.append(f"annotation {aid}: area {ann.get('area')} != mask pixels {int(mask.sum())}")
    expected = [float(v) for v in mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))]
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not np.allclose(bbox, expected, atol=1e-6):
        problems.append(f"annotation {aid}: bbox {bbox} != {expected}")
    return problems
