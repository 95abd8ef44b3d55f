"""COCO JSON export/import of masks (RLE or polygons), and a validator for training pipelines.

Masks are H x W boolean arrays. RLE counts are stored as str (pycocotools' compressed form); ``area``
is the pixel count and ``bbox`` is pycocotools' toBbox (x, y, width, height). The prompts that made
an object travel in ``attributes``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, TypeGuard

import numpy as np
from pycocotools import mask as mask_utils
from skimage import measure

from ..errors import TinySamAnnotateError
from .atomic import atomic_write

log = logging.getLogger(__name__)


class CocoFormatError(TinySamAnnotateError):
    """A COCO file is malformed or inconsistent (the message lists every problem found)."""


# Largest image a COCO file may describe (height x width): 2**28 pixels, a 16384 x 16384 plane. Masks are
# decoded at full size, so this bounds what one annotation can cost.
MAX_IMAGE_PIXELS = 2**28


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


def read_coco(path: str | os.PathLike, validate: bool = True, max_pixels: int = MAX_IMAGE_PIXELS) -> dict[str, Any]:
    """Load a COCO file; malformed JSON or structure raises CocoFormatError.

    ``validate`` also decodes every mask to check area and bbox; without it the structure and types are
    still checked (:func:`check_structure`), so nothing read here can crash a decoder later.
    """
    try:
        coco = json.loads(Path(path).read_text())
    except RecursionError:
        raise CocoFormatError(f"cannot read COCO file {path}: nested too deeply") from None
    except (OSError, ValueError) as exc:
        raise CocoFormatError(f"cannot read COCO file {path}: {exc}") from exc
    if validate:
        validate_coco(coco, max_pixels)
    else:
        check_structure(coco, max_pixels)
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
    records = []
    for a in coco["annotations"]:
        if a["image_id"] != image_id:
            continue
        try:
            mask = decode_segmentation(a["segmentation"], img["height"], img["width"])
        except Exception as exc:  # pycocotools raises assorted errors on corrupt counts
            raise CocoFormatError(f"annotation {a.get('id')}: segmentation does not decode ({exc})") from None
        records.append(ObjectRecord(mask, a["category_id"], a.get("score"), a.get("attributes", {})))
    return records


def validate_coco(coco: Any, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Check a COCO dict the way a training pipeline needs it; raise CocoFormatError listing problems.

    First the structure and types without decoding anything (:func:`check_structure`), then each mask:
    area equals its pixel count and bbox equals pycocotools' toBbox.
    """
    problems, decodable = _structure(coco, max_pixels)
    for ann, img in decodable:
        problems += _check_decoded(ann, img)
    _raise(problems)


def check_structure(coco: Any, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Structure and types of a COCO dict, checked before any mask is decoded; CocoFormatError lists problems.

    Images: integer ids, unique; positive integer height and width with height x width <= ``max_pixels``.
    Categories: integer ids, unique, a non-empty name. Annotations: integer ids, unique; known image and
    category; finite numeric score, area and bbox; segmentation an RLE whose size is its image's (counts a
    str, or a list of non-negative ints summing to height x width) or polygons of >= 3 finite points inside
    the image (one pixel of slack); attributes an object.
    """
    _raise(_structure(coco, max_pixels)[0])


def _structure(coco: Any, max_pixels: int) -> tuple[list[str], list[tuple[dict[str, Any], dict[str, Any]]]]:
    """The structural problems, and the (annotation, image) pairs whose segmentation is safe to decode."""
    if not isinstance(coco, dict):
        raise CocoFormatError("COCO data must be a JSON object")
    _raise([f"'{key}' must be a list" for key in ("images", "annotations", "categories") if not isinstance(coco.get(key), list)])
    problems: list[str] = []
    decodable: list[tuple[dict[str, Any], dict[str, Any]]] = []
    images: dict[int, dict[str, Any]] = {}
    for index, img in enumerate(coco["images"]):
        found = _check_image(img, index, max_pixels)
        if found:
            problems += found
        elif img["id"] in images:
            problems.append(f"duplicate image id {img['id']}")
        else:
            images[img["id"]] = img
    categories: set[int] = set()
    for index, cat in enumerate(coco["categories"]):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            problems.append(f"category #{index}: needs an integer id")
        elif not isinstance(cat.get("name"), str) or not cat["name"].strip():
            problems.append(f"category {cat['id']}: needs a non-empty name")
        elif cat["id"] in categories:
            problems.append(f"duplicate category id {cat['id']}")
        else:
            categories.add(cat["id"])
    seen: set[int] = set()
    for index, ann in enumerate(coco["annotations"]):
        if not isinstance(ann, dict) or not _is_int(ann.get("id")):
            problems.append(f"annotation #{index}: needs an integer id")
            continue
        aid = ann["id"]
        if aid in seen:
            problems.append(f"duplicate annotation id {aid}")
        seen.add(aid)
        image_id = ann.get("image_id")
        img = images.get(image_id) if _is_int(image_id) else None
        if img is None:
            problems.append(f"annotation {aid}: unknown image_id {_short(ann.get('image_id'))}")
            continue
        if not _is_int(ann.get("category_id")) or ann["category_id"] not in categories:
            problems.append(f"annotation {aid}: unknown category_id {_short(ann.get('category_id'))}")
        for name in ("score", "area"):
            if name in ann and not _is_finite_number(ann[name]):
                problems.append(f"annotation {aid}: {name} must be a finite number, got {_short(ann[name])}")
        bbox = ann.get("bbox")
        if bbox is not None and not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_finite_number, bbox))):
            problems.append(f"annotation {aid}: bbox must be 4 finite numbers, got {_short(bbox)}")
        if "attributes" in ann and not isinstance(ann["attributes"], dict):
            problems.append(f"annotation {aid}: attributes must be an object")
        found = _check_segmentation(ann.get("segmentation"), aid, img["height"], img["width"])
        problems += found
        if not found:
            decodable.append((ann, img))
    return problems, decodable


def _check_image(img: Any, index: int, max_pixels: int) -> list[str]:
    if not isinstance(img, dict) or not _is_int(img.get("id")):
        return [f"image #{index}: needs an integer id"]
    h, w = img.get("height"), img.get("width")
    if not (_is_int(h) and _is_int(w)) or h < 1 or w < 1:
        return [f"image {img['id']}: height and width must be positive integers"]
    if h * w > max_pixels:
        return [f"image {img['id']}: {w} x {h} is larger than the {max_pixels:,} pixels allowed"]
    if "file_name" in img and not isinstance(img["file_name"], str):
        return [f"image {img['id']}: file_name must be a string"]
    return []


def _check_segmentation(seg: Any, aid: int, h: int, w: int) -> list[str]:
    if isinstance(seg, dict):
        size = seg.get("size")
        if not (isinstance(size, list) and len(size) == 2 and size == [h, w]):
            return [f"annotation {aid}: RLE size {_short(size)} != image size {[h, w]}"]
        counts = seg.get("counts")
        if isinstance(counts, list):
            if not all(_is_int(c) and c >= 0 for c in counts) or sum(counts) != h * w:
                return [f"annotation {aid}: uncompressed RLE counts must be non-negative integers summing to {h * w}"]
        elif not isinstance(counts, str) or not counts.isascii():
            return [f"annotation {aid}: RLE counts must be an ASCII string or a list of integers"]
        return []
    if isinstance(seg, list):
        if not seg:
            return [f"annotation {aid}: every polygon needs >= 3 (x, y) points"]
        for poly in seg:
            if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
                return [f"annotation {aid}: every polygon needs >= 3 (x, y) points"]
            if not all(map(_is_finite_number, poly)):
                return [f"annotation {aid}: polygon coordinates must be finite numbers"]
            xs, ys = poly[0::2], poly[1::2]
            if min(xs) < -1 or max(xs) > w + 1 or min(ys) < -1 or max(ys) > h + 1:
                return [f"annotation {aid}: polygon coordinates outside the {w} x {h} image"]
        return []
    return [f"annotation {aid}: segmentation must be RLE or polygons"]


def _check_decoded(ann: dict[str, Any], img: dict[str, Any]) -> list[str]:
    aid = ann["id"]
    try:
        mask = decode_segmentation(ann["segmentation"], img["height"], img["width"])
    except Exception as exc:  # pycocotools raises assorted errors on corrupt counts
        return [f"annotation {aid}: segmentation does not decode ({exc})"]
    problems = []
    if ann.get("area") != int(mask.sum()):
        problems.append(f"annotation {aid}: area {_short(ann.get('area'))} != mask pixels {int(mask.sum())}")
    expected = [float(v) for v in mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))]
    bbox = ann.get("bbox")
    well_formed = isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_finite_number, bbox))
    if bbox is None or (well_formed and not np.allclose(bbox, expected, atol=1e-6)):
        problems.append(f"annotation {aid}: bbox {_short(bbox)} != {expected}")
    return problems  # a malformed bbox was reported by the structure check


def _raise(problems: list[str]) -> None:
    if problems:
        shown = "; ".join(problems[:20]) + (f"; ... {len(problems) - 20} more" if len(problems) > 20 else "")
        raise CocoFormatError(f"invalid COCO data: {shown}")


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
