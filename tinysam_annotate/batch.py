"""Batch everything mode over many images into one COCO file: resumable, atomic, with progress."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from .amg import SamAutomaticMaskGenerator
from .errors import ImageError, TinySamAnnotateError
from .io.coco import decode_rle, rle_annotation, rle_from_mask
from .io.coco_journal import DEFAULT_CATEGORY_ID, CocoJournal, ImageAnnotations
from .io.image import load_image
from .io.labels import label_image_name, masks_to_labels, write_label_image
from .io.prompt_record import PromptRecord

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"}


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


def annotate_image(path: Path, generator: SamAutomaticMaskGenerator,
                   labels_dir: str | os.PathLike | None = None,
                   progress: Callable[[int, int], None] | None = None) -> ImageAnnotations:
    """Everything mode on one image file; an unreadable image gives ``error`` instead of raising.

    ``progress(prompts done, prompts in all)`` is called after each decoder batch."""
    try:
        rgb = load_image(path).rgb
    except ImageError as exc:
        log.warning("skipping %s: %s", path, exc)
        return ImageAnnotations(path.name, 0, 0, [], str(exc))
    anns = generator.generate(rgb, progress=progress)
    h, w = rgb.shape[:2]
    out, masks = [], []
    for ann in sorted(anns, key=lambda a: -a["area"]):  # big first: small objects stay on top in labels
        rle = ann["segmentation"]
        attributes = {
            "prompts": PromptRecord("everything", tuple(tuple(p) for p in ann["point_coords"]), (1,)).to_json(),
            "stability_score": float(ann["stability_score"]),
        }
        out.append(rle_annotation(rle, 0, 0, DEFAULT_CATEGORY_ID, ann["predicted_iou"], attributes))
        if labels_dir is not None:
            masks.append(decode_rle(rle))
    if labels_dir is not None:
        labels = masks_to_labels(masks, (h, w)) if masks else np.zeros((h, w), np.uint16)
        write_label_image(Path(labels_dir) / label_image_name(path.name), labels)
    return ImageAnnotations(path.name, h, w, out)


def check_unique_names(images: list[Path]) -> None:
    names = [p.name for p in images]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise TinySamAnnotateError(f"several inputs share a file name (COCO keys images by name): {', '.join(clashes)}")


def annotate_folder(
    images: list[Path],
    out: str | os.PathLike,
    generator: SamAutomaticMaskGenerator,
    labels_dir: str | os.PathLike | None = None,
    progress: bool = True,
    on_image: Callable[[Path, int], None] | None = None,
) -> BatchResult:
    """Run everything mode on each image into one COCO file (journaled per image, written at the end).

    Images whose file name is already in ``out`` or its journal are skipped, so a rerun after an interruption
    finishes only what is missing. Unreadable images are reported and skipped, never fatal.
    """
    def work(path: Path) -> ImageAnnotations:
        with prompt_bar(path.name, enabled=progress) as advance:
            return annotate_image(path, generator, labels_dir, advance)

    return folder_to_coco(images, out, work, "everything", progress, on_image)


@contextmanager
def prompt_bar(name: str, enabled: bool = True) -> Iterator[Callable[[int, int], None] | None]:
    """A second progress bar, under the images bar, counting one image's prompts (done / in all); it goes
    away when the image is done. Yields the ``progress(done, total)`` callback (None when disabled)."""
    if not enabled:
        yield None
        return
    bar = tqdm(total=0, desc=f"  {name}", unit="prompt", leave=False, position=1)

    def advance(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        yield advance
    finally:
        bar.close()


def folder_to_coco(images: list[Path], out: str | os.PathLike, work: Callable[[Path], ImageAnnotations | None],
                   desc: str, progress: bool = True, on_image: Callable[[Path, int], None] | None = None,
                   categories: list[dict[str, Any]] | None = None) -> BatchResult:
    """Run ``work`` on each image not yet in ``out`` (None: nothing to do for it); each result is journaled as it
    comes and ``out`` is written once, at the end or when the run is interrupted (Ctrl-C keeps what was done)."""
    check_unique_names(images)
    coco = CocoJournal(out, categories)
    result = BatchResult([], [], {}, 0)
    try:
        for path in tqdm(images, desc=desc, unit="image", disable=not progress):
            annotated = None if coco.is_done(path.name) else work(path)
            if annotated is None:
                result.skipped.append(path.name)
                continue
            if annotated.error is not None:
                result.failed[path.name] = annotated.error
                continue
            coco.add(annotated)
            result.processed.append(path.name)
            result.annotations += len(annotated.annotations)
            if on_image is not None:
                on_image(path, len(annotated.annotations))
    finally:
        coco.finish([p.name for p in images])
    return result


# -- box prompts from a detector ----------------------------------------------------------------

BOX_CHUNK = 32  # boxes per decoder call (bounds the full-resolution masks held at once)


@dataclass(frozen=True)
class Detection:
    """One detector box (x, y, width, height in pixels, COCO's bbox order), its class and confidence."""

    bbox: tuple[float, float, float, float]
    category_id: int
    score: float


def load_detections(path: str | os.PathLike, images_json: str | os.PathLike | None = None
                    ) -> tuple[dict[str, list[Detection]], list[dict[str, Any]]]:
    """Detections in COCO results format, grouped by image file name, and the categories to write.

    Each detection names its image by ``file_name``, or by ``image_id`` resolved through the images of
    ``images_json`` (a COCO file, e.g. the dataset's annotations; its categories are used when present).
    """
    import json

    try:
        detections = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TinySamAnnotateError(f"cannot read detections {path}: {exc}") from exc
    if not isinstance(detections, list):
        raise TinySamAnnotateError(f"{path}: detections must be a JSON list in COCO results format")
    names: dict[int, str] = {}
    categories: list[dict[str, Any]] = []
    if images_json is not None:
        reference = json.loads(Path(images_json).read_text(encoding="utf-8"))
        names = {int(img["id"]): img["file_name"] for img in reference.get("images", [])}
        categories = [{"id": c["id"], "name": c["name"]} for c in reference.get("categories", [])]
    grouped: dict[str, list[Detection]] = {}
    for i, det in enumerate(detections):
        try:
            x, y, w, h = (float(v) for v in det["bbox"])
            name = det.get("file_name") or names[int(det["image_id"])]
            detection = Detection((x, y, w, h), int(det.get("category_id", 1)), float(det.get("score", 1.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise TinySamAnnotateError(
                f"{path}: detection {i} needs bbox [x, y, w, h] and file_name, or an image_id listed in --images-json "
                f"({type(exc).__name__}: {exc})") from exc
        if w <= 0 or h <= 0:
            raise TinySamAnnotateError(f"{path}: detection {i} has an empty box {det['bbox']}")
        grouped.setdefault(Path(name).name, []).append(detection)
    used = sorted({d.category_id for dets in grouped.values() for d in dets})
    known = {c["id"] for c in categories}
    categories += [{"id": c, "name": "object" if c == 1 else f"category_{c}"} for c in used if c not in known]
    return grouped, categories


def annotate_boxes_image(path: Path, detections: list[Detection], predictor: Any) -> ImageAnnotations:
    """One mask per detection (the candidate with the best predicted IoU); score = detection score x IoU."""
    try:
        rgb = load_image(path).rgb
    except ImageError as exc:
        return ImageAnnotations(path.name, 0, 0, [], str(exc))
    predictor.set_image(rgb)
    h, w = rgb.shape[:2]
    out = []
    for start in range(0, len(detections), BOX_CHUNK):
        chunk = detections[start : start + BOX_CHUNK]
        boxes = np.array([[x, y, x + bw, y + bh] for x, y, bw, bh in (d.bbox for d in chunk)], dtype=np.float32)
        masks, ious, _ = predictor.predict(box=boxes, multimask_output=True)
        if masks.ndim == 3:  # a single box comes back without the box axis
            masks, ious = masks[None], ious[None]
        for det, box_masks, box_ious in zip(chunk, masks, ious, strict=True):
            best = int(np.argmax(box_ious))
            rle = rle_from_mask(box_masks[best])
            x, y, bw, bh = (float(v) for v in det.bbox)
            attributes = {"prompts": PromptRecord("detection", box=(x, y, x + bw, y + bh)).to_json(),
                          "detection_score": det.score, "predicted_iou": float(box_ious[best])}
            out.append(rle_annotation(rle, 0, 0, det.category_id, det.score * float(box_ious[best]), attributes))
    return ImageAnnotations(path.name, h, w, out)


def annotate_boxes_folder(images: list[Path], detections: dict[str, list[Detection]], categories: list[dict[str, Any]],
                          out: str | os.PathLike, predictor: Any, progress: bool = True) -> BatchResult:
    """Box-prompt masks for every image with detections into one COCO file (resumable like everything mode)."""

    def work(path: Path) -> ImageAnnotations | None:
        return annotate_boxes_image(path, detections[path.name], predictor) if path.name in detections else None

    return folder_to_coco(images, out, work, "boxes", progress, categories=categories)


def embed_image(path: Path, predictor: Any) -> str:
    """Put one image's embedding into ``predictor``'s cache: "computed", "cached" or "error: ..." (unreadable)."""
    try:
        predictor.set_image(load_image(path).rgb)
    except ImageError as exc:
        return f"error: {exc}"
    return "cached" if predictor.last_cache_hit else "computed"


def embed_folder(images: list[Path], predictor: Any, progress: bool = True) -> dict[str, str]:
    """Precompute the embeddings of ``images`` into ``predictor``'s cache; {file: computed|cached|error: ...}."""
    return {str(path): embed_image(path, predictor) for path in tqdm(images, desc="embed", unit="image", disable=not progress)}
