"""A GUI-free annotation session: prompts -> preview -> accepted objects, with undo/redo and autosave.

Both GUIs (the Gradio app and the napari plugin) are thin layers over this class. Coordinates are
original-image (x, y) pixels. Every change to the object list is one undo step and, when an autosave
path is set, is written atomically as a COCO file (with each object's prompts in ``attributes``)
before the call returns, so an accepted object is never lost; :meth:`AnnotationSession.restore`
reads it back after a crash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .cleanup import MaskCleanup, clean_mask
from .errors import PromptError, SessionError
from .io.coco import ObjectRecord, build_coco, objects_of_image, read_coco, write_coco
from .io.labels import masks_to_labels, write_label_image
from .io.prompt_record import PromptRecord
from .object_store import DEFAULT_CATEGORY, ObjectInfo, ObjectStore
from .predictor import SamPredictor

DEFAULT_CLEANUP = MaskCleanup()


@dataclass(frozen=True)
class AnnotatedObject(ObjectInfo):
    """One accepted object: its :class:`ObjectInfo` and its H x W bool mask."""

    mask: np.ndarray = field(kw_only=True)


@dataclass
class Preview:
    """The candidate masks of the current prompts (3 x H x W, cleaned as the session says), their predicted
    IoUs and the one shown."""

    masks: np.ndarray
    scores: np.ndarray
    low_res: np.ndarray  # 3 x 256 x 256 logits, fed back as mask_input on the next prompt
    selected: int
    raw_masks: np.ndarray  # 3 x H x W, the model's masks before cleaning

    @property
    def mask(self) -> np.ndarray:
        return self.masks[self.selected]

    @property
    def score(self) -> float:
        return float(self.scores[self.selected])


class AnnotationSession:
    """Annotate one image (H x W x 3 uint8 RGB) with a predictor; see the module docstring."""

    def __init__(
        self,
        predictor: SamPredictor,
        image: np.ndarray,
        image_name: str = "image.png",
        categories: list[str] | None = None,
        autosave_path: str | os.PathLike | None = None,
        cleanup: MaskCleanup | None = DEFAULT_CLEANUP,
    ) -> None:
        """``cleanup``: how preview masks are cleaned (parts the prompts point at, small holes filled); None
        shows the model's raw masks."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise SessionError(f"the session needs an H x W x 3 uint8 RGB image, got {image.dtype} {image.shape}")
        self.predictor = predictor
        self.image = image
        self.image_name = image_name
        self.autosave_path = Path(autosave_path) if autosave_path else None
        self.cleanup = cleanup
        self.store: ObjectStore[AnnotatedObject] = ObjectStore(categories or [DEFAULT_CATEGORY], on_change=self._autosave)
        self.points: list[tuple[float, float]] = []
        self.labels: list[int] = []
        self.box: tuple[float, float, float, float] | None = None
        self.preview: Preview | None = None
        predictor.set_image(image)  # cached by content: reopening an image is instant

    # ------------------------------------------------------------------ state

    @property
    def objects(self) -> tuple[AnnotatedObject, ...]:
        return self.store.objects

    @property
    def categories(self) -> tuple[str, ...]:
        return self.store.categories

    @property
    def height(self) -> int:
        return self.image.shape[0]

    @property
    def width(self) -> int:
        return self.image.shape[1]

    def can_undo(self) -> bool:
        return self.store.can_undo()

    def can_redo(self) -> bool:
        return self.store.can_redo()

    def undo(self) -> None:
        self.store.undo()

    def redo(self) -> None:
        self.store.redo()

    # ------------------------------------------------------------------ prompts

    def check_point(self, x: float, y: float) -> None:
        if not (np.isfinite(x) and np.isfinite(y)) or not (0 <= x <= self.width and 0 <= y <= self.height):
            raise PromptError(f"point ({x}, {y}) is outside the {self.width} x {self.height} image")

    def add_point(self, x: float, y: float, positive: bool = True) -> Preview:
        """Add a click in (x, y) image pixels and refine the preview (previous logits go back as mask_input)."""
        self.check_point(x, y)
        self.points.append((float(x), float(y)))
        self.labels.append(1 if positive else 0)
        return self._predict()

    def set_box(self, x0: float, y0: float, x1: float, y1: float) -> Preview:
        """Set (replace) the box prompt; corners in any order."""
        self.check_point(x0, y0)
        self.check_point(x1, y1)
        box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            raise PromptError(f"box {box} is empty; drag a rectangle at least one pixel wide and high")
        self.box = box
        return self._predict(refine=False)

    def cycle_candidate(self) -> Preview:
        """Show the next of the multimask candidates."""
        if self.preview is None:
            raise SessionError("no preview to cycle: add a point or a box first")
        self.preview.selected = (self.preview.selected + 1) % len(self.preview.scores)
        return self.preview

    def clear_prompts(self) -> None:
        self.points, self.labels, self.box, self.preview = [], [], None, None

    def _predict(self, refine: bool = True) -> Preview:
        mask_input = None
        if refine and self.preview is not None and len(self.points) > 1:
            mask_input = self.preview.low_res[self.preview.selected][None]
        masks, scores, low_res = self.predictor.predict(
            point_coords=np.array(self.points, dtype=np.float32) if self.points else None,
            point_labels=np.array(self.labels) if self.points else None,
            box=np.array(self.box, dtype=np.float32) if self.box is not None else None,
            mask_input=mask_input,
            multimask_output=True,
        )
        self.preview = Preview(self._cleaned(masks), scores, low_res, int(np.argmax(scores)), masks)
        return self.preview

    def set_cleanup(self, cleanup: MaskCleanup | None) -> None:
        """Clean previews with ``cleanup`` from now on (None: raw masks); the current preview follows at once."""
        self.cleanup = cleanup
        if self.preview is not None:
            self.preview.masks = self._cleaned(self.preview.raw_masks)

    def _cleaned(self, masks: np.ndarray) -> np.ndarray:
        if self.cleanup is None:
            return masks
        points = np.array(self.points) if self.points else None
        box = None if self.box is None else np.array(self.box)
        return np.stack([clean_mask(m, points, np.array(self.labels), box, self.cleanup) for m in masks])

    def prompt_record(self) -> PromptRecord:
        """The current prompts as they are stored with an accepted object."""
        return PromptRecord("click", tuple(self.points), tuple(self.labels), self.box)

    # ------------------------------------------------------------------ objects

    def add_category(self, name: str) -> None:
        self.store.add_category(name)

    def accept(self, category: str | None = None) -> AnnotatedObject:
        """Turn the preview into an object and clear the prompts."""
        if self.preview is None:
            raise SessionError("nothing to accept: add a point or a box first")
        if not self.preview.mask.any():
            raise SessionError("the preview mask is empty; add a point or pick another candidate")
        obj = AnnotatedObject(self.store.next_id, self.store.category(category), self.preview.score, self.prompt_record(),
                              mask=self.preview.mask.copy())
        self.store.add([obj])
        self.clear_prompts()
        return obj

    def add_objects(self, masks: list[np.ndarray], scores: list[float | None], category: str | None = None,
                    prompts: list[PromptRecord] | None = None) -> list[AnnotatedObject]:
        """Add many objects as one undo step (everything mode, imports)."""
        category = self.store.category(category)
        first = self.store.next_id
        new = [
            AnnotatedObject(first + i, category, s, (prompts[i] if prompts else PromptRecord("import")),
                            mask=np.asarray(m, dtype=bool))
            for i, (m, s) in enumerate(zip(masks, scores, strict=True))
        ]
        for obj in new:
            if obj.mask.shape != (self.height, self.width):
                raise SessionError(f"mask of shape {obj.mask.shape} does not fit the {self.height} x {self.width} image")
        self.store.add(new)
        return new

    def delete(self, object_id: int) -> None:
        self.store.delete(object_id)

    def relabel(self, object_id: int, category: str) -> None:
        self.store.relabel(object_id, category)

    def clear_objects(self) -> None:
        self.store.clear()

    def segment_everything(self, generator_factory: Callable[[Any], Any], category: str | None = None,
                           progress: Callable[[int, int], None] | None = None,
                           should_stop: Callable[[], bool] | None = None) -> list[AnnotatedObject]:
        """Run a mask generator (``generator_factory(predictor)``) on the image and add its masks as one undo step."""
        generator = generator_factory(self.predictor)  # shares the embedding already computed
        records = generator.generate(self.image, progress=progress, should_stop=should_stop)
        prompts = [PromptRecord("everything", tuple((float(p[0]), float(p[1])) for p in r["point_coords"]),
                                (1,) * len(r["point_coords"])) for r in records]
        return self.add_objects([r["segmentation"] for r in records], [float(r["predicted_iou"]) for r in records],
                                category, prompts)

    # ------------------------------------------------------------------ export / import

    def to_coco(self, use_polygons: bool = False) -> dict[str, Any]:
        category_ids = {name: i + 1 for i, name in enumerate(self.categories)}
        records = [
            ObjectRecord(o.mask, category_ids[o.category], o.score, {"object_id": o.object_id, "prompts": o.prompts.to_json()})
            for o in self.objects
        ]
        image = {"id": 1, "file_name": self.image_name, "height": self.height, "width": self.width}
        categories = [{"id": i, "name": name} for name, i in category_ids.items()]
        return build_coco([image], [records], categories, use_polygons=use_polygons)

    def export_coco(self, path: str | os.PathLike, use_polygons: bool = False) -> Path:
        return write_coco(path, self.to_coco(use_polygons))

    def label_image(self) -> np.ndarray:
        """H x W uint16 (uint32 past 65,535) labels; each object's pixels hold its object_id."""
        labels = masks_to_labels([o.mask for o in self.objects], (self.height, self.width))
        ids = np.array([0] + [o.object_id for o in self.objects], dtype=np.uint64)
        if ids.max() > np.iinfo(labels.dtype).max:
            labels = labels.astype(np.uint32)
        return ids[labels].astype(labels.dtype)

    def export_labels(self, path: str | os.PathLike) -> Path:
        return write_label_image(path, self.label_image())

    def import_coco(self, path: str | os.PathLike, image_id: int | None = None) -> list[AnnotatedObject]:
        """Add the objects of a COCO file's image (the only one, or ``image_id``) as one undo step; all or nothing:
        a bad file raises CocoFormatError (or SessionError for another image's file) and changes nothing.

        The structure is checked and the image size compared before any mask is decoded."""
        coco = read_coco(path, validate=False)
        if image_id is None:
            if len(coco["images"]) != 1:
                raise SessionError(f"{path} holds {len(coco['images'])} images; say which image_id to import")
            image_id = coco["images"][0]["id"]
        info = next((i for i in coco["images"] if i["id"] == image_id), None)
        if info is None:
            raise SessionError(f"{path} has no image with id {image_id}")
        if (info["height"], info["width"]) != (self.height, self.width):
            raise SessionError(f"{path} annotates a {info['width']} x {info['height']} image; this one is {self.width} x {self.height}")
        names = {c["id"]: c["name"] for c in coco["categories"]}
        records = objects_of_image(coco, image_id)
        first = self.store.next_id
        new = [AnnotatedObject(first + i, names[r.category_id], r.score, PromptRecord.from_json(r.attributes.get("prompts")),
                               mask=r.mask)
               for i, r in enumerate(records)]
        self.store.add(new, categories=[obj.category for obj in new])
        return new

    @classmethod
    def restore(cls, predictor: SamPredictor, image: np.ndarray, autosave_path: str | os.PathLike,
                image_name: str = "image.png") -> "AnnotationSession":
        """A session that continues from its autosave file (when the file exists)."""
        session = cls(predictor, image, image_name, autosave_path=None)
        if Path(autosave_path).exists():
            session.import_coco(autosave_path)
            session.store.forget_history()
        session.autosave_path = Path(autosave_path)
        return session

    def _autosave(self) -> None:
        if self.autosave_path is not None:
            write_coco(self.autosave_path, self.to_coco())
