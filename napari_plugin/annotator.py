"""Qt-free annotation of an nD image into a labels array: prompts -> preview -> committed label ids.

The widget is a thin layer over :class:`StackAnnotator`. Everything here is in plane pixels: a plane is
one 2D slice of the stack, addressed by its key (see :mod:`planes`), and prompts are (x, y) pixels of that
plane. Each (plane, tile) gets its own :class:`AnnotationSession` for the prompts, the multimask preview
and the mask feedback; committed objects' pixels live in the labels array (what napari shows and users edit) and their records
(score, prompts) in the package's :class:`~tinysam_annotate.object_store.ObjectStore`, which undoes and redoes
each change's pixel patches with them, so that hand edits elsewhere survive an undo.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from tinysam_annotate.amg.generator import GenerationCancelled
from tinysam_annotate.cleanup import MaskCleanup
from tinysam_annotate.errors import PromptError
from tinysam_annotate.io.prompt_record import PromptRecord
from tinysam_annotate.object_store import ObjectInfo, ObjectStore
from tinysam_annotate.predictor import SamPredictor
from tinysam_annotate.service import EVERYTHING_MODES, everything_generator
from tinysam_annotate.session import DEFAULT_CLEANUP, AnnotationSession, Preview, SessionError

from .history import LabelsEdit, Recording
from .planes import PlaneKey, PlaneSource
from .propagate import DEFAULT_LIMITS, PropagationLimits, follow_object
from .tiles import Box, TileGrid, filter_areas, paste_merged

GeneratorFactory = Callable[[SamPredictor], Any]
Progress = Callable[[int, int], None]
PromptProgress = Callable[[int, int, int, int], None]  # tiles done, tiles in all, prompts done, prompts in all

DEFAULT_TILE_SIZE = 1024
TILE_WHEN_LONGER_THAN = 2048  # planes up to this size are embedded whole (downscaled to 1024)
UNDO_LIMIT = 100  # undo steps kept: each holds the changed pixels, up to whole planes


def _object_store() -> ObjectStore[ObjectInfo]:
    return ObjectStore(limit=UNDO_LIMIT)


@dataclass(frozen=True)
class PlanePrompts:
    """Prompts on one plane: points (x, y, positive) and an optional box (x0, y0, x1, y1), in plane pixels."""

    key: PlaneKey
    points: tuple[tuple[float, float, bool], ...] = ()
    box: tuple[float, float, float, float] | None = None

    def __bool__(self) -> bool:
        return bool(self.points) or self.box is not None

    def region(self) -> tuple[float, float, float, float]:
        """The extent that must fit in one tile: the box, else the positive points (all points if none)."""
        if self.box is not None:
            return self.box
        chosen = [p for p in self.points if p[2]] or list(self.points)
        xs, ys = [p[0] for p in chosen], [p[1] for p in chosen]
        return min(xs), min(ys), max(xs), max(ys)


@dataclass
class PlanePreview:
    """The preview of the current prompts: the session's multimask preview placed at ``tile`` in ``key``."""

    key: PlaneKey
    tile: Box
    preview: Preview
    prompts: PlanePrompts

    @property
    def mask(self) -> np.ndarray:
        """The selected candidate, tile-sized (rows, cols)."""
        return self.preview.mask


def everything_factory(mode: str = "hierarchical", pred_iou_thresh: float | None = None,
                       stability_score_thresh: float | None = None, points_per_side: int = 32) -> GeneratorFactory:
    """A factory of everything-mode generators ("hierarchical", TinySAM's, or SAM's "grid") over a predictor;
    unset thresholds are the ones the predictor's model was tuned for (``tinysam_annotate.service``)."""
    if mode not in EVERYTHING_MODES:
        raise ValueError(f"everything mode must be 'hierarchical' or 'grid', got {mode!r}")
    params = dict(points_per_side=points_per_side, pred_iou_thresh=pred_iou_thresh,
                  stability_score_thresh=stability_score_thresh)
    return lambda predictor: everything_generator(predictor, mode, **params)


hierarchical_everything = everything_factory()


# Stands for "no labels given" (a dataclass default cannot depend on the source); never written to.
_NEW_LABELS = np.zeros(0, dtype=np.uint32)


@dataclass
class StackAnnotator:
    """Annotate every plane of ``source`` into ``labels`` (shape ``source.labels_shape``, ints, edited in place)."""

    predictor: SamPredictor
    source: PlaneSource
    labels: np.ndarray = field(default_factory=lambda: _NEW_LABELS)  # not given: zeros of the source's labels shape
    tile_size: int | None = None  # None: tile only planes longer than TILE_WHEN_LONGER_THAN; 0: never
    tile_overlap: int = 256
    generator_factory: GeneratorFactory = hierarchical_everything
    max_sessions: int = 16
    store: ObjectStore[ObjectInfo] = field(default_factory=_object_store)  # the labels' objects, undo, autosave hook
    cleanup: MaskCleanup | None = DEFAULT_CLEANUP  # how previews are cleaned; None: the model's raw masks

    def __post_init__(self) -> None:
        if self.labels is _NEW_LABELS:
            self.labels = np.zeros(self.source.labels_shape, dtype=np.uint32)
        elif tuple(self.labels.shape) != self.source.labels_shape:
            raise ValueError(f"labels of shape {self.labels.shape} do not fit the image (need {self.source.labels_shape})")
        h, w = self.source.plane_shape
        tile = self.tile_size
        if tile is None:
            tile = DEFAULT_TILE_SIZE if max(h, w) > TILE_WHEN_LONGER_THAN else 0
        self.grid = TileGrid(h, w, tile, min(self.tile_overlap, tile // 2)) if tile and max(h, w) > tile else \
            TileGrid(h, w, max(h, w, 16), 0)
        self._sessions: OrderedDict[tuple[PlaneKey, Box], AnnotationSession] = OrderedDict()
        self.current: PlanePreview | None = None
        # One encoder pass at a time: a click's embedding waits for a background prefetch's tile in progress
        # (two passes at once would each take twice as long on a laptop's cores).
        self._encoding = threading.Lock()

    # ------------------------------------------------------------------ embeddings

    @property
    def tiled(self) -> bool:
        return len(self.grid) > 1

    def tile_image(self, key: PlaneKey, tile: Box) -> np.ndarray:
        x0, y0, x1, y1 = tile
        return np.ascontiguousarray(self.source.model_view(key)[y0:y1, x0:x1])

    def tile_for(self, prompts: PlanePrompts) -> Box:
        return self.grid.tile_for(*prompts.region())

    def needs_embedding(self, key: PlaneKey, tile: Box | None = None) -> bool:
        """Whether the (plane, tile) has no cached embedding yet (computing it takes the encoder's time)."""
        tiles = [tile] if tile is not None else self.grid.boxes
        return any((key, t) not in self._sessions and not self.predictor.is_cached(self.tile_image(key, t)) for t in tiles)

    def session(self, key: PlaneKey, tile: Box) -> AnnotationSession:
        """The session of one (plane, tile), made the predictor's current image (embedding from the cache)."""
        key = self.source.check_key(key)
        found = self._sessions.get((key, tile))
        if found is None:
            found = AnnotationSession(self.predictor, self.tile_image(key, tile), image_name=f"plane {key} tile {tile}",
                                      cleanup=self.cleanup)
            self._sessions[(key, tile)] = found
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end((key, tile))
            self.predictor.set_image(found.image)
        return found

    def iter_embed(self, key: PlaneKey, should_stop: Callable[[], bool] | None = None,
                   tiles: Sequence[Box] | None = None) -> Iterator[tuple[int, int]]:
        """Compute (or load) the embeddings of ``tiles`` of one plane (default: all); yields (tiles done, tiles)."""
        tiles = list(self.grid.boxes if tiles is None else tiles)
        for done, tile in enumerate(tiles):
            if should_stop is not None and should_stop():
                return
            if self.needs_embedding(key, tile):
                with self._encoding:
                    self.predictor.set_image(self.tile_image(key, tile))
            yield done + 1, len(tiles)

    def prefetcher(self, key: PlaneKey, tile: Box) -> Iterator[tuple[int, int]]:
        """Embed the tiles around ``tile`` of plane ``key`` that are not cached yet, nearest first, into the
        cache only (the predictor's current image stays); yields (tiles embedded, tiles looked at) after each encoder pass.

        Call it on the thread that owns the annotator (it reads the plane there); iterate it on a worker and
        stop between tiles by no longer iterating. A click's :meth:`iter_embed` waits for the tile in progress.
        """
        view = self.source.model_view(key)
        # The cache is consulted on the worker: hashing eight tiles here would hold up the GUI thread.
        todo = [t for t in self.grid.neighbours(tile) if (key, t) not in self._sessions]

        def run() -> Iterator[tuple[int, int]]:
            encoded = 0
            for x0, y0, x1, y1 in todo:
                with self._encoding:
                    ran = self.predictor.precompute(np.ascontiguousarray(view[y0:y1, x0:x1]))
                if ran:
                    encoded += 1
                    yield encoded, len(todo)

        return run()

    # ------------------------------------------------------------------ prompts

    def update(self, prompts: PlanePrompts) -> PlanePreview | None:
        """Predict the preview for the current prompts (None when there are none).

        Adding one point to the previous prompts refines the previous preview (its logits are fed back);
        any other change replays the prompts from scratch.
        """
        if not prompts:
            self.clear_prompts()
            return None
        h, w = self.source.plane_shape
        corners = [(x, y) for x, y, _ in prompts.points] + ([prompts.box[:2], prompts.box[2:]] if prompts.box else [])
        outside = [(x, y) for x, y in corners if not (0 <= x <= w and 0 <= y <= h)]
        if outside:
            raise PromptError(f"prompt ({outside[0][0]:.0f}, {outside[0][1]:.0f}) is outside the {w} x {h} image")
        tile = self.tile_for(prompts)
        session = self.session(prompts.key, tile)
        dx, dy = tile[0], tile[1]
        points = [(x - dx, y - dy, positive) for x, y, positive in prompts.points]
        current = self.current
        previous = current.prompts if current is not None else None
        extends = (current is not None and previous is not None and previous.key == prompts.key
                   and previous.box == prompts.box and current.tile == tile
                   and prompts.points[: len(previous.points)] == previous.points
                   and len(prompts.points) == len(previous.points) + 1)
        if not extends:
            session.clear_prompts()
            if prompts.box is not None:
                bx0, by0, bx1, by1 = prompts.box
                session.set_box(bx0 - dx, by0 - dy, bx1 - dx, by1 - dy)
            todo = points
        else:
            todo = points[-1:]
        for x, y, positive in todo:
            session.add_point(x, y, positive)
        assert session.preview is not None
        self.current = PlanePreview(prompts.key, tile, session.preview, prompts)
        return self.current

    def set_cleanup(self, cleanup: MaskCleanup | None) -> PlanePreview | None:
        """Clean previews with ``cleanup`` (None: raw masks), the current one included; returns it."""
        self.cleanup = cleanup
        for session in self._sessions.values():
            session.set_cleanup(cleanup)
        return self.current

    def cycle(self) -> PlanePreview:
        """Show the next multimask candidate."""
        if self.current is None:
            raise SessionError("no preview to cycle: add a point or a box first")
        self.current.preview.selected = (self.current.preview.selected + 1) % len(self.current.preview.scores)
        return self.current

    def clear_prompts(self) -> None:
        for session in self._sessions.values():
            session.clear_prompts()
        self.current = None

    # ------------------------------------------------------------------ objects

    def _plane(self, key: PlaneKey) -> np.ndarray:
        return self.labels[key] if key else self.labels

    def next_id(self) -> int:
        """An id no pixel and no object (of any undo step) has: past the labels' largest and the store's."""
        return max(int(self.labels.max()) + 1 if self.labels.size else 1, self.store.next_id)

    @property
    def object_prompts(self) -> dict[int, PromptRecord]:
        """The prompts of each object, by label id."""
        return {obj.object_id: obj.prompts for obj in self.store.objects}

    @property
    def object_scores(self) -> dict[int, float]:
        """The predicted IoU of each object the model made from prompts, by label id."""
        return {obj.object_id: obj.score for obj in self.store.objects if obj.score is not None}

    @contextmanager
    def _labels_edit(self) -> Iterator[tuple[Recording, list[ObjectInfo]]]:
        """One undo step: the body notes the regions it may change (``recording.before``) and appends the objects
        it makes; the changed pixels and the objects go to the store together, also when the body is interrupted
        (cancelled work stays)."""
        recording = Recording(self.labels)
        new: list[ObjectInfo] = []
        try:
            yield recording, new
        finally:
            patches = recording.patches()
            if patches or new:
                self.store.add(new, pixels=LabelsEdit(self.labels, patches))

    def commit(self) -> int:
        """Write the preview into the labels of its plane as a new object id (unlabelled pixels only)."""
        if self.current is None:
            raise SessionError("nothing to commit: add a point or a box first")
        current = self.current
        x0, y0, x1, y1 = current.tile
        window = self._plane(current.key)[y0:y1, x0:x1]
        free = current.mask & (window == 0)
        if not free.any():
            raise SessionError("the preview adds no unlabelled pixels; add a point or pick another candidate")
        object_id = self.next_id()
        with self._labels_edit() as (rec, new):
            rec.before(current.key, current.tile)
            window[free] = object_id
            new.append(_committed(object_id, current))
        self.clear_prompts()
        return object_id

    def commit_in_3d(self, limits: PropagationLimits = DEFAULT_LIMITS,
                     should_stop: Callable[[], bool] | None = None) -> tuple[int, list[PlaneKey]]:
        """Commit the preview and follow its object through the neighbouring planes of the stack's last leading
        axis (:func:`.propagate.follow_object`), writing one new id on every plane it reaches (unlabelled pixels
        only) as one undo step. Returns the id and the planes it was written on. Embeds planes it visits."""
        if self.current is None:
            raise SessionError("nothing to commit: add a point or a box first")
        current = self.current
        if not current.key:
            raise SessionError("3D needs a stack: this image has one plane")
        if self.tiled:
            raise SessionError("3D objects need untiled planes: set the tile size to 0 or use smaller planes")
        plane = self._plane(current.key)
        start = current.mask & (plane == 0)
        if not start.any():
            raise SessionError("the preview adds no unlabelled pixels; add a point or pick another candidate")
        tile = self.grid.boxes[0]

        def segment(key: PlaneKey, box: tuple[float, float, float, float], point: tuple[float, float]):
            session = self.session(key, tile)
            session.clear_prompts()
            session.set_box(*box)
            preview = session.add_point(*point, positive=True)
            mask, score = preview.mask.copy(), preview.score
            session.clear_prompts()
            return mask & (self._plane(key) == 0), score

        masks = follow_object(current.key, start, self.labels.shape[len(current.key) - 1], segment, limits, should_stop)
        object_id = self.next_id()
        with self._labels_edit() as (rec, new):
            for key, mask in masks.items():
                rec.before(key, None)
                self._plane(key)[mask] = object_id
            new.append(_committed(object_id, current))
        self.clear_prompts()
        return object_id, sorted(masks)

    def add_labels(self, labels: np.ndarray, prompts: dict[int, PromptRecord] | None = None) -> int:
        """Add the objects of a labels array of the same shape as one undo step (ids shifted past ours).

        Imported objects go to unlabelled pixels only; ``prompts`` (by imported id) follow their objects (the others
        are recorded as imports). Returns the number of objects added.
        """
        if tuple(labels.shape) != tuple(self.labels.shape):
            raise SessionError(f"the imported labels have shape {labels.shape}; this image needs {self.labels.shape}")
        ids = np.unique(labels)
        ids = ids[ids > 0]
        if not ids.size:
            return 0
        first = self.next_id()
        lookup = np.zeros(int(ids.max()) + 1, dtype=np.int64)
        lookup[ids] = np.arange(first, first + ids.size)
        if lookup.max() > np.iinfo(self.labels.dtype).max:
            raise SessionError(f"{int(lookup.max())} labels do not fit the labels layer's {self.labels.dtype}")
        prompts = prompts or {}
        with self._labels_edit() as (rec, new):
            for key in self.source.plane_keys():
                rec.before(key, None)
                plane, incoming = self._plane(key), (labels[key] if key else labels)
                free = (incoming > 0) & (plane == 0)
                plane[free] = lookup[incoming[free]]
            new.extend(ObjectInfo(int(lookup[old_id]), prompts=prompts.get(int(old_id), PromptRecord("import")))
                       for old_id in ids)
        return int(ids.size)

    def undo(self) -> None:
        """Undo the newest change: its pixels and its objects; SessionError when there is none."""
        self.store.undo()

    def redo(self) -> None:
        self.store.redo()

    # ------------------------------------------------------------------ everything

    def segment_everything(self, keys: Sequence[PlaneKey], min_area: int = 0, max_area: int | None = None,
                           progress: Progress | None = None,
                           should_stop: Callable[[], bool] | None = None) -> dict[PlaneKey, list[int]]:
        """Everything mode on each plane; see :meth:`iter_everything`. Returns the object ids per plane."""
        found: dict[PlaneKey, list[int]] = {}
        for done, total in self.iter_everything(keys, min_area, max_area, should_stop, found):
            if progress is not None:
                progress(done, total)
        return found

    def iter_everything(self, keys: Sequence[PlaneKey], min_area: int = 0, max_area: int | None = None,
                        should_stop: Callable[[], bool] | None = None,
                        found: dict[PlaneKey, list[int]] | None = None,
                        on_prompts: PromptProgress | None = None) -> Iterator[tuple[int, int]]:
        """Everything mode on each plane, per tile with objects merged across tile borders; one undo step.

        Yields (tiles done, tiles in all) after every tile; ``on_prompts(tiles done, tiles in all, prompts done,
        prompts in all)`` follows the prompts of the current tile after every decoder batch. Objects only go to unlabelled pixels; objects
        outside [min_area, max_area] pixels are dropped. should_stop() cancels between and inside tiles;
        the tiles finished so far stay (still one undo step). ``found`` collects the ids per plane.
        """
        keys = [self.source.check_key(k) for k in keys]
        tiles = self.grid.boxes
        total, done = len(keys) * len(tiles), 0
        found = found if found is not None else {}
        stopped = should_stop or (lambda: False)
        with self._labels_edit() as (rec, new):
            for key in keys:
                if stopped():
                    return
                rec.before(key, None)
                plane = self._plane(key)
                next_id, ids = self.next_id(), []
                try:
                    for tile in tiles:
                        session = self.session(key, tile)
                        generator = self.generator_factory(self.predictor)
                        report = None if on_prompts is None else partial(on_prompts, done, total)
                        try:
                            records = generator.generate(session.image, progress=report, should_stop=should_stop)
                        except GenerationCancelled:
                            return
                        masks = [np.asarray(r["segmentation"], dtype=bool) for r in records]
                        written, next_id = paste_merged(plane, tile, masks, next_id)
                        ids.extend(written)
                        done += 1
                        yield done, total
                finally:  # a plane cut short by Cancel keeps the tiles it finished, with their records
                    found[key] = filter_areas(plane, ids, min_area, max_area)
                    new.extend(ObjectInfo(object_id, prompts=PromptRecord("everything", plane=tuple(key) or None))
                               for object_id in found[key])

    def all_planes(self) -> list[PlaneKey]:
        return self.source.plane_keys()


def _committed(object_id: int, preview: PlanePreview) -> ObjectInfo:
    """The record of an object committed from ``preview``: its predicted IoU and its prompts."""
    return ObjectInfo(object_id, score=preview.preview.score, prompts=_prompt_record(preview.prompts))


def _prompt_record(prompts: PlanePrompts) -> PromptRecord:
    return PromptRecord("click", tuple((float(x), float(y)) for x, y, _ in prompts.points),
                        tuple(int(p) for _, _, p in prompts.points), prompts.box, tuple(prompts.key) or None)


def points_in_plane(
    points: Iterable[Sequence[float]], positive: Iterable[bool], plane_ndim: int
) -> dict[PlaneKey, list[tuple[float, float, bool]]]:
    """Group image-data coordinates (..., row, col) by plane key -> [(x, y, positive)] (row/col flipped here only)."""
    grouped: dict[PlaneKey, list[tuple[float, float, bool]]] = {}
    for coords, pos in zip(points, positive, strict=True):
        coords = list(coords)
        key = tuple(int(round(c)) for c in coords[:plane_ndim])
        grouped.setdefault(key, []).append((float(coords[-1]), float(coords[-2]), bool(pos)))
    return grouped


__all__ = ["StackAnnotator", "PlanePrompts", "PlanePreview", "PromptError", "points_in_plane"]
