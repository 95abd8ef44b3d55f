"""nD labels arrays <-> COCO (one COCO image per plane) through the library's shared COCO exporter.

Each COCO image of a stack carries ``plane``: the plane's key (indexes of the leading axes), and its
file_name is ``name`` for a 2D image or ``name[z,...]`` for a plane. Annotations keep the label id in
``attributes.object_id`` so that a round trip gives back the same labels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from scipy import ndimage

from tinysam_annotate.io.coco import CocoFormatError, ObjectRecord, build_coco, objects_of_image, read_coco, write_coco
from tinysam_annotate.io.prompt_record import PromptRecord

PlaneKey = tuple[int, ...]


def plane_objects(plane: np.ndarray, prompts: Mapping[int, PromptRecord] | None = None,
                  scores: Mapping[int, float] | None = None) -> list[ObjectRecord]:
    """One record per label id of a 2D plane (each mask built inside the object's bounding box only), with the
    object's prompts (the shared schema of :mod:`tinysam_annotate.io.prompt_record`) and score when known."""
    records: list[ObjectRecord] = []
    if not plane.any():
        return records
    prompts, scores = prompts or {}, scores or {}
    for object_id, where in enumerate(ndimage.find_objects(plane.astype(np.int64, copy=False)), start=1):
        if where is None:
            continue
        mask = np.zeros(plane.shape, dtype=bool)
        mask[where] = plane[where] == object_id
        record = prompts.get(object_id, PromptRecord("import"))
        records.append(ObjectRecord(mask, 1, scores.get(object_id), {"object_id": object_id, "prompts": record.to_json()}))
    return records


def labels_to_coco(labels: np.ndarray, name: str, prompts: Mapping[int, PromptRecord] | None = None,
                   category: str = "object", use_polygons: bool = False,
                   scores: Mapping[int, float] | None = None) -> dict[str, Any]:
    """A COCO dict with one image per plane of ``labels`` (..., H, W)."""
    if labels.ndim < 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer array of 2 or more dimensions, got {labels.dtype} {labels.shape}")
    h, w = labels.shape[-2:]
    keys = [tuple(int(i) for i in k) for k in np.ndindex(*labels.shape[:-2])] if labels.ndim > 2 else [()]
    images, objects = [], []
    for key in keys:
        file_name = name if not key else f"{name}[{','.join(map(str, key))}]"
        images.append({"file_name": file_name, "height": int(h), "width": int(w), "plane": list(key)})
        objects.append(plane_objects(np.asarray(labels[key]) if key else np.asarray(labels), prompts, scores))
    return build_coco(images, objects, [{"id": 1, "name": category}], use_polygons=use_polygons)


def export_coco(path: str | os.PathLike, labels: np.ndarray, name: str,
                prompts: Mapping[int, PromptRecord] | None = None, category: str = "object",
                scores: Mapping[int, float] | None = None) -> Path:
    """Write ``labels`` as a validated COCO file, atomically."""
    return write_coco(path, labels_to_coco(labels, name, prompts, category, scores=scores))


def coco_prompts(coco: dict[str, Any]) -> dict[int, PromptRecord]:
    """The prompts stored with each object, by the label id :func:`coco_to_labels` gives it."""
    out: dict[int, PromptRecord] = {}
    for label_id, _, record in _labelled_records(coco, _plane_keys(coco["images"])):
        if "prompts" in record.attributes:
            out[label_id] = PromptRecord.from_json(record.attributes["prompts"])
    return out


def coco_to_labels(coco: dict[str, Any]) -> np.ndarray:
    """The labels array a COCO file describes: (planes..., H, W) from the images' ``plane`` keys.

    Files written by other tools (no ``plane``) with several images become a stack along a first axis.
    Label ids come from ``attributes.object_id`` when present and unique, else 1, 2, ... in file order.
    """
    images = coco["images"]
    if not images:
        raise CocoFormatError("the COCO file holds no images")
    sizes = {(img["height"], img["width"]) for img in images}
    if len(sizes) != 1:
        raise CocoFormatError(f"the images have different sizes {sorted(sizes)}; open them one by one")
    h, w = sizes.pop()
    keys = _plane_keys(images)
    leading = tuple(int(max(k[d] for k in keys)) + 1 for d in range(len(keys[0])))
    labelled = _labelled_records(coco, keys)
    top = max((label_id for label_id, _, _ in labelled), default=0)
    labels = np.zeros(leading + (h, w), dtype=np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32)
    for label_id, key, record in labelled:
        (labels[key] if key else labels)[record.mask] = label_id
    return labels


def _plane_keys(images: list[dict[str, Any]]) -> list[PlaneKey]:
    keys = [tuple(img.get("plane", ())) for img in images]
    if len(set(keys)) != len(keys) or any(len(k) != len(keys[0]) for k in keys):
        keys = [(i,) for i in range(len(images))] if len(images) > 1 else [()]
    return keys


def _labelled_records(coco: dict[str, Any], keys: list[PlaneKey]) -> list[tuple[int, PlaneKey, ObjectRecord]]:
    """Every object of the file in order as (label id, plane key, record): the id is ``attributes.object_id``
    when all are present and unique, else 1, 2, ... in file order."""
    found = [(key, r) for key, img in zip(keys, coco["images"], strict=True) for r in objects_of_image(coco, img["id"])]
    wanted = [r.attributes.get("object_id") for _, r in found]
    ids = [i for i in wanted if isinstance(i, int) and not isinstance(i, bool) and i > 0]
    use_ids = len(ids) == len(wanted) and len(set(ids)) == len(ids)
    return [(ids[i] if use_ids else i + 1, key, r) for i, (key, r) in enumerate(found)]


def import_coco(path: str | os.PathLike) -> tuple[np.ndarray, dict[int, PromptRecord]]:
    """The labels a COCO file describes and the prompts of its objects (by label id)."""
    coco = read_coco(path)
    return coco_to_labels(coco), coco_prompts(coco)
