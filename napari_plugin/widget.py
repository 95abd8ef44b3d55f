"""The dock widget: napari layers and buttons wired to a :class:`StackAnnotator` (no model logic here).

Layers made for an image layer ``NAME``: ``NAME labels`` (committed objects), ``NAME preview`` (the live
mask), ``NAME points`` (clicks; green positive, red negative, ``t`` switches) and ``NAME box`` (rectangles).
Keys: ``c`` commit, ``Shift-C`` commit in 3D (one id through the stack), ``x`` clear prompts, ``u`` undo,
``y`` redo, ``m`` next candidate, ``t`` toggle negative, bound on the viewer and on the image and plugin layers
(napari asks the selected layer first), so they work whatever layer is selected. Slow work (model loading,
embeddings, everything mode, 3D commits) runs in thread workers with progress and a Cancel button; a user error
or a failed worker is one notification. On a tiled plane, the tiles around the last click are embedded in a
background worker that gives way to any foreground work.
"""

from __future__ import annotations

import contextlib
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import napari
import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, LineEdit, ProgressBar, PushButton, SpinBox
from napari.layers import Image, Labels, Points, Shapes
from napari.utils.notifications import show_error, show_warning
from superqt.utils import ensure_main_thread
from superqt.utils import thread_worker as _thread_worker

from tinysam_annotate.errors import TinySamAnnotateError
from tinysam_annotate.predictor import SamPredictor
from tinysam_annotate.registry import DEFAULT_MODEL, MODEL_SPECS, everything_thresholds
from tinysam_annotate.service import default_engine
from tinysam_annotate.session import DEFAULT_CLEANUP, SessionError

from .annotator import PlanePreview, PlanePrompts, StackAnnotator, everything_factory, points_in_plane
from .autosave import autosave_dir, autosave_info, autosave_path
from .labels_io import export_coco, import_coco
from .planes import PlaneSource, guess_channel_axis, inside, is_blank, parse_channels
from .propagate import DEFAULT_LIMITS

PROGRESS_STEPS = 1000  # progress-bar steps per tile, so that one tile's prompts move the bar smoothly

POSITIVE_COLOUR, NEGATIVE_COLOUR = "lime", "red"

MARKER_SCREEN_PIXELS = (8, 16)  # click markers stay this size on screen at any zoom (not 133 px discs on 8000 px)

KEYS = "c commit · Shift-C commit in 3D · x clear · u undo · y redo · m next mask · t negative clicks"


def thread_worker(work: Callable[..., Any]) -> Callable[..., Any]:
    """superqt's worker without napari's error relay and re-raise: the widget reports a worker's error once (a
    notification and the status line) and the process goes on (napari's re-raise aborts a scripted session)."""
    return _thread_worker(work, ignore_errors=True)


@dataclass(frozen=True)
class AnnotationLayers:
    """The layers one annotation runs on, made together by Start annotating."""

    image: Image
    labels: Labels  # the objects (ids), edited in place by the annotator
    preview: Labels  # the current candidate mask
    points: Points  # clicks; feature "positive"
    box: Shapes  # box prompts


class TinySamWidget(Container):
    """TinySAM annotator dock widget; ``predictor`` skips model loading (tests pass a tiny model)."""

    def __init__(self, viewer: napari.viewer.Viewer, predictor: SamPredictor | None = None) -> None:
        super().__init__(labels=True)
        self.viewer = viewer
        self.predictor = predictor
        self.annotator: StackAnnotator | None = None
        self.layers: AnnotationLayers | None = None  # made by Start annotating
        self.worker: Any = None
        self._prefetches: set[Any] = set()  # workers embedding the tiles around the last click (stopped ones finish their tile)
        self._prefetch_target: tuple[Any, ...] | None = None  # (plane, tile) the running prefetch surrounds
        self._cancel = threading.Event()
        self._shown: PlanePreview | None = None
        self._pending_prompts = False
        self.autosave_folder: Path | None = None  # None: autosave_dir(); tests point it elsewhere
        self._offered_autosave: Path | None = None  # an earlier autosave offered at Start and not restored
        self.propagation_limits = DEFAULT_LIMITS  # when Commit in 3D stops following an object
        self._build()
        viewer.layers.events.inserted.connect(self._refresh_images)
        viewer.layers.events.removed.connect(self._refresh_images)
        viewer.dims.events.current_step.connect(self._on_slice)
        actions = {"c": self.commit, "Shift-C": self.commit_in_3d, "x": self.clear_prompts, "u": self.undo, "y": self.redo,
                   "m": self.cycle, "t": self.toggle_negative}
        self.key_actions = {key: _quiet(action) for key, action in actions.items()}  # handlers for viewer and layers
        for key, handler in self.key_actions.items():
            viewer.bind_key(key, handler, overwrite=True)
        self.image.changed.connect(self._guess_channels)

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        names = list(MODEL_SPECS)
        self.model = ComboBox(label="model", choices=names, value=DEFAULT_MODEL if DEFAULT_MODEL in names else names[0])
        backend, precision = default_engine()  # the app's and the CLI's default
        self.backend = ComboBox(label="backend", choices=["onnx", "torch"], value=backend)
        self.precision = ComboBox(label="precision", choices=["int8", "fp32", "fp16"], value=precision)
        self.load_button = PushButton(text="Load model")
        self.image = ComboBox(label="image", choices=self._image_names)
        self.channel_axis = SpinBox(label="channel axis", min=-1, max=5, value=-1, tooltip="-1: no channel axis")
        self.channels = LineEdit(label="channels", value="", tooltip="e.g. 0, or 0,1 for red/green; empty: natural view")
        self.tile_size = SpinBox(label="tile", min=0, max=8192, step=256, value=0,
                                 tooltip="tile size in pixels for large images; 0: automatic (tiles past 2048 px)")
        self.start_button = PushButton(text="Start annotating")
        self.negative = CheckBox(text="negative clicks [t]", value=False)
        self.clean = CheckBox(text="clean masks (keep the parts you pointed at, fill small holes)", value=True)
        self.commit_button = PushButton(text="Commit [c]")
        self.commit_3d_button = PushButton(text="Commit in 3D [C]",
                                           tooltip="commit, then follow the object through the neighbouring slices")
        self.cycle_button = PushButton(text="Next mask [m]")
        self.clear_button = PushButton(text="Clear [x]")
        self.undo_button = PushButton(text="Undo [u]")
        self.redo_button = PushButton(text="Redo [y]")
        self.mode = ComboBox(label="mode", choices=["hierarchical", "grid"], value="hierarchical")
        tuned = everything_thresholds(DEFAULT_MODEL)
        self.pred_iou = FloatSpinBox(label="min IoU", min=0.0, max=1.0, step=0.05, value=tuned.pred_iou, tooltip="predicted IoU")
        self.stability = FloatSpinBox(label="min stability", min=0.0, max=1.0, step=0.05, value=tuned.stability)
        self.min_area = SpinBox(label="min area", min=0, max=10**9, value=0, tooltip="pixels")
        self.max_area = SpinBox(label="max area", min=0, max=10**9, value=0, tooltip="pixels; 0: no limit")
        self.everything_button = PushButton(text="Everything: this slice")
        self.stack_button = PushButton(text="all slices")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.path = FileEdit(label="file", mode=FileDialogMode.OPTIONAL_FILE, filter="*.json *.tif *.tiff")
        self.export_coco_button = PushButton(text="Export COCO")
        self.export_tiff_button = PushButton(text="Export TIFF")
        self.import_button = PushButton(text="Import")
        self.restore_button = PushButton(text="Restore autosave", enabled=False)
        self.status = Label(value="Load a model, pick an image layer, then Start annotating.")
        self.keys_help = Label(value=f"keys (any layer selected): {KEYS}")

        def row(*widgets: Any, labels: bool = False) -> Container:
            return Container(widgets=list(widgets), layout="horizontal", labels=labels)

        self.extend([
            self.model, self.backend, self.precision, self.load_button,
            self.image, row(self.channel_axis, self.channels, labels=True), self.tile_size, self.start_button,
            self.negative, self.clean, row(self.commit_button, self.commit_3d_button),
            row(self.cycle_button, self.clear_button),
            row(self.undo_button, self.redo_button),
            self.mode, row(self.pred_iou, self.stability, labels=True), row(self.min_area, self.max_area, labels=True),
            row(self.everything_button, self.stack_button, self.cancel_button), self.progress,
            self.path, row(self.export_coco_button, self.export_tiff_button, self.import_button),
            self.restore_button, self.status,
            self.keys_help,
        ])
        self.max_width = 460  # leave the canvas most of the window
        self.status.native.setWordWrap(True)
        self.keys_help.native.setWordWrap(True)
        self.load_button.changed.connect(lambda: self.load_model())
        self.start_button.changed.connect(self.start)
        self.negative.changed.connect(self._apply_point_mode)
        self.clean.changed.connect(self._apply_cleanup)
        self.commit_button.changed.connect(_quiet(self.commit))
        self.commit_3d_button.changed.connect(_quiet(self.commit_in_3d))
        self.cycle_button.changed.connect(_quiet(self.cycle))
        self.clear_button.changed.connect(_quiet(self.clear_prompts))
        self.undo_button.changed.connect(_quiet(self.undo))
        self.redo_button.changed.connect(_quiet(self.redo))
        self.everything_button.changed.connect(lambda: self.segment_everything(all_slices=False))
        self.stack_button.changed.connect(lambda: self.segment_everything(all_slices=True))
        self.cancel_button.changed.connect(self.cancel)
        self.export_coco_button.changed.connect(_quiet(lambda: self.export(self._chosen_file(), "coco")))
        self.export_tiff_button.changed.connect(_quiet(lambda: self.export(self._chosen_file(), "tiff")))
        self.import_button.changed.connect(_quiet(lambda: self.import_file(self._chosen_file())))
        self.restore_button.changed.connect(_quiet(self.restore_autosave))

    def _chosen_file(self) -> Path:
        """The file box's path (an empty path when nothing is chosen: export and import then say so)."""
        value = self.path.value
        return value if isinstance(value, Path) else Path()

    def _image_names(self, _widget: Any = None) -> list[str]:
        return [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]

    def _refresh_images(self, _event: Any = None) -> None:
        with contextlib.suppress(RuntimeError):  # the dock widget is already gone (viewer closing)
            self.image.reset_choices()

    def _say(self, text: str) -> None:
        self.status.value = text

    def _guess_channels(self, _value: Any = None) -> None:
        """Set the channel axis for the chosen layer (channels last or a short first axis), and say so."""
        if not self.image.value or self.image.value not in self.viewer.layers:
            return
        layer = self.viewer.layers[self.image.value]
        shape = tuple(layer.data.shape)
        axis = guess_channel_axis(shape, bool(layer.rgb))
        self.channel_axis.value = -1 if axis is None else axis
        if axis is not None:
            self._say(f"{layer.name} {shape}: axis {axis} ({shape[axis]} values) is read as channels; set the channel "
                      "axis to -1 to annotate it as a stack of planes instead.")

    def _bind_keys(self, layer: Any) -> None:
        """The plugin's keys on a layer, over napari's own (e.g. c = contrast limits on images, m = new label):
        napari asks the selected layer's keymap before the viewer's."""
        for key, handler in self.key_actions.items():
            layer.bind_key(key, handler, overwrite=True)

    # ------------------------------------------------------------------ model and image

    def load_model(self, then: Callable[[], None] | None = None) -> Any:
        """Load the chosen model in a worker; the provider in use is shown when it is ready."""
        from tinysam_annotate.loading import load_model

        name, backend, precision = self.model.value, self.backend.value, self.precision.value

        def work() -> SamPredictor:
            from tinysam_annotate.cache import EmbeddingCache, default_cache_dir

            # The user's disk cache: `tinysam-annotate embed DIR` fills it ahead of time, and images come back instantly.
            cache = EmbeddingCache(default_cache_dir())
            return SamPredictor(load_model(name, backend=backend, precision=precision), cache=cache)

        def ready(predictor: SamPredictor) -> None:
            self._model_ready(predictor)
            if then is not None:
                then()

        return self._run(thread_worker(work)(), f"Loading {name} ({backend}, {precision})...", ready)

    def _model_ready(self, predictor: SamPredictor) -> None:
        self.predictor = predictor
        if self.annotator is not None:
            self.annotator.predictor = predictor
            self.annotator.clear_prompts()
        self._say(f"Model ready on {predictor.backend.device_description}.")

    def start(self) -> None:
        """Make the annotation layers for the chosen image layer and embed the current slice."""
        if self.predictor is None and self.image.value:
            self.load_model(then=self.start)  # the chosen (default: shipped) model, then start
            return
        try:
            if not self.image.value:
                raise SessionError("add an image layer first")
            if self.predictor is None:
                raise SessionError("no model loaded: press Load model")
            layer = self.viewer.layers[self.image.value]
            axis = None if self.channel_axis.value < 0 else int(self.channel_axis.value)
            source = PlaneSource(layer.data, rgb=bool(layer.rgb), channel_axis=axis, channels=parse_channels(self.channels.value))
            layers = self._make_layers(layer, source)
            previous = self.annotator
            self.annotator = StackAnnotator(self.predictor, source, labels=layers.labels.data,
                                            tile_size=int(self.tile_size.value) or None,
                                            cleanup=DEFAULT_CLEANUP if self.clean.value else None)
            if previous is not None and previous.labels is layers.labels.data:
                # Start again on the same labels: their objects (records and undo steps) go on with them.
                self.annotator.store = previous.store
            self.annotator.store.on_change = self._store_changed
        except (TinySamAnnotateError, ValueError, KeyError) as exc:
            show_error(str(exc))
            return
        tiles = len(self.annotator.grid)
        self._say(f"Annotating {layer.name}: {len(source.plane_keys())} plane(s), {tiles} tile(s) each.")
        if is_blank(source.raw_plane(self.current_key())):
            show_warning(f"{layer.name}: this plane is blank (one value everywhere, or no finite values): "
                         "there is nothing for the model to find")
        self._offer_autosave()
        if self.annotator.tiled:  # embedding every tile up front takes seconds per tile: a click embeds its own
            self._say(f"Annotating {layer.name}: a large plane in {tiles} tiles; each tile is embedded when you "
                      "first click in it.")
            return
        self.embed(self.current_key())

    def _spatial(self, values: Any, source: PlaneSource) -> tuple[float, ...]:
        values = list(values)
        if source.channel_axis is not None:
            del values[source.channel_axis]
        return tuple(values)

    def _make_layers(self, image: Image, source: PlaneSource) -> AnnotationLayers:
        """The plugin's layers for ``image``; a labels layer of the same name and shape (an earlier Start) is kept
        with its objects, never replaced by an empty one."""
        name = f"{image.name} labels"
        existing = next((layer for layer in self.viewer.layers if layer.name == name), None)
        keep = existing if (isinstance(existing, Labels) and existing.data.shape == source.labels_shape
                            and np.issubdtype(existing.data.dtype, np.integer)) else None
        old = [] if self.layers is None else [self.layers.labels, self.layers.preview, self.layers.points, self.layers.box]
        for layer in [*old, existing]:
            if layer is not None and layer is not keep and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        ndim = len(source.labels_shape)
        place = {"scale": self._spatial(image.scale, source)[-ndim:], "translate": self._spatial(image.translate, source)[-ndim:]}
        labels = keep if keep is not None else self.viewer.add_labels(
            np.zeros(source.labels_shape, np.uint32), name=name, **place)
        preview = self.viewer.add_labels(np.zeros(source.labels_shape, np.uint8), name=f"{image.name} preview",
                                         opacity=0.6, **place)
        box = self.viewer.add_shapes(ndim=ndim, name=f"{image.name} box", shape_type="rectangle",
                                     edge_color="yellow", face_color="transparent", edge_width=2, **place)
        points = self.viewer.add_points(ndim=ndim, name=f"{image.name} points", features={"positive": np.zeros(0, bool)},
                                        feature_defaults={"positive": True}, face_color=POSITIVE_COLOUR,
                                        size=max(4, min(source.plane_shape) // 60),
                                        canvas_size_limits=MARKER_SCREEN_PIXELS, **place)
        points.mode = "add"
        box.mode = "add_rectangle"
        self.layers = AnnotationLayers(image, labels, preview, points, box)
        for layer in (image, labels, preview, points, box):
            self._bind_keys(layer)
        points.events.data.connect(self._on_prompts)
        box.events.data.connect(self._on_prompts)
        self._apply_point_mode()
        return self.layers

    def current_key(self) -> tuple[int, ...]:
        """The plane the viewer shows (for a stack: the current slice of the labels layer)."""
        labels = None if self.layers is None else self.layers.labels
        if labels is None or labels.ndim <= 2:
            return ()
        position = labels.world_to_data(self.viewer.dims.point[-labels.ndim:])
        shape = labels.data.shape
        return tuple(int(np.clip(round(p), 0, n - 1)) for p, n in zip(position[:-2], shape[:-2], strict=True))

    def _on_slice(self, _event: Any = None) -> None:
        """Embed a newly shown slice in the background so that the first click on it is instant."""
        if self.annotator is None or self.layers is None or self.busy or self.annotator.tiled \
                or self.layers.labels not in self.viewer.layers:
            return  # (layers leave the viewer first when it closes)
        key = self.current_key()
        if self.annotator.needs_embedding(key):
            self.embed(key)

    # ------------------------------------------------------------------ prompts

    def toggle_negative(self) -> None:
        self.negative.value = not self.negative.value

    def _apply_point_mode(self, _value: Any = None) -> None:
        if self.layers is not None:
            self.layers.points.feature_defaults = {"positive": not self.negative.value}
            self.layers.points.current_face_color = NEGATIVE_COLOUR if self.negative.value else POSITIVE_COLOUR

    def _apply_cleanup(self, _value: Any = None) -> None:
        if self.annotator is not None:
            self._show(self.annotator.set_cleanup(DEFAULT_CLEANUP if self.clean.value else None))

    def _layer_to_labels(self, layer: Any, coords: np.ndarray) -> np.ndarray:
        """Data coordinates of a prompt layer -> data coordinates of the labels (honours scale/translate)."""
        labels = self._started()[1].labels
        mapped = [labels.world_to_data(layer.data_to_world(c)) for c in coords]
        return np.array(mapped).reshape(len(coords), labels.ndim)

    def current_prompts(self) -> PlanePrompts | None:
        """The prompts on the plane of the newest prompt (points and the newest box there)."""
        if self.annotator is None or self.layers is None:
            return None
        layers = self.layers
        plane_ndim = layers.labels.ndim - 2
        points = self._layer_to_labels(layers.points, layers.points.data)
        positive = layers.points.features["positive"].to_numpy(dtype=bool) if len(points) else []
        grouped = points_in_plane(points, positive, plane_ndim)
        boxes = [self._layer_to_labels(layers.box, np.asarray(s)) for s in layers.box.data]
        key = None
        if len(points):
            key = tuple(int(round(c)) for c in points[-1][:plane_ndim])
        elif boxes:
            key = tuple(int(round(c)) for c in boxes[-1][0][:plane_ndim])
        if key is None:
            return None
        box = None
        for corners in reversed(boxes):
            if tuple(int(round(c)) for c in corners[0][:plane_ndim]) == key:
                (y0, x0), (y1, x1) = corners[:, -2:].min(axis=0), corners[:, -2:].max(axis=0)
                box = (float(x0), float(y0), float(x1), float(y1))
                break
        return PlanePrompts(key, tuple(grouped.get(key, [])), box)

    def _on_prompts(self, event: Any = None) -> None:
        if getattr(event, "action", None) in ("adding", "removing", "changing"):
            return  # napari announces an edit before making it; act once it is done
        if self.annotator is None:
            return
        if self.busy:  # applied when the running task (usually this slice's embedding) ends
            self._pending_prompts = True
            self._say("Working... your prompt is applied when the current task ends.")
            return
        self._drop_prompts_outside()
        try:
            prompts = self.current_prompts()
            if prompts is None:
                self._show(None)
                self.annotator.clear_prompts()
                return
            self.annotator.source.check_key(prompts.key)
            tile = self.annotator.tile_for(prompts)
            if self.annotator.needs_embedding(prompts.key, tile):
                self.embed(prompts.key, then=self._on_prompts, tiles=[tile])  # only the tile this prompt needs
                return
            self._show(self.annotator.update(prompts))
            if self.annotator.tiled:
                self.prefetch_around(prompts.key, tile)
        except (TinySamAnnotateError, IndexError) as exc:
            show_error(str(exc))

    def _drop_prompts_outside(self) -> None:
        """Remove clicks (and boxes with no corner) outside the image from their layers, and say so: a kept click
        outside would make every later prompt fail."""
        layers = self._started()[1]
        shape = layers.labels.data.shape
        points = self._layer_to_labels(layers.points, layers.points.data)
        keep_points = inside(points, shape) if len(points) else np.zeros(0, bool)
        boxes = [self._layer_to_labels(layers.box, np.asarray(corners)) for corners in layers.box.data]
        keep_boxes = [bool(inside(corners, shape).any()) for corners in boxes]
        if keep_points.all() and all(keep_boxes):
            return
        with layers.points.events.data.blocker(), layers.box.events.data.blocker():
            if not keep_points.all():
                layers.points.selected_data = set(np.flatnonzero(~keep_points).tolist())
                layers.points.remove_selected()
            if not all(keep_boxes):
                layers.box.selected_data = {i for i, keep in enumerate(keep_boxes) if not keep}
                layers.box.remove_selected()
        height, width = shape[-2:]
        show_error(f"a click outside the image ({width} x {height} pixels"
                   + (f", {' x '.join(map(str, shape[:-2]))} planes" if len(shape) > 2 else "") + ") was not kept")

    def _show(self, preview: PlanePreview | None) -> None:
        """Draw the preview mask into its plane of the preview layer (clearing the previous one)."""
        annotator, layers = self._started()
        data = layers.preview.data
        if self._shown is not None:
            x0, y0, x1, y1 = self._shown.tile
            (data[self._shown.key] if self._shown.key else data)[y0:y1, x0:x1] = 0
        if preview is not None:
            x0, y0, x1, y1 = preview.tile
            (data[preview.key] if preview.key else data)[y0:y1, x0:x1] = preview.mask
            self._say(f"Candidate {preview.preview.selected + 1}/3, predicted IoU {preview.preview.score:.2f}, "
                      f"encoder {annotator.predictor.last_encode_seconds * 1000:.0f} ms "
                      f"(cache {'hit' if annotator.predictor.last_cache_hit else 'miss'}).")
        self._shown = preview
        layers.preview.refresh()

    # ------------------------------------------------------------------ actions

    def _started(self) -> tuple[StackAnnotator, AnnotationLayers]:
        """The annotator and its layers; SessionError before Start annotating."""
        if self.annotator is None or self.layers is None:
            raise SessionError("press Start annotating first")
        return self.annotator, self.layers

    def _require(self) -> StackAnnotator:
        """The annotator when it may take a new action: started, and no task running."""
        annotator = self._started()[0]
        if self.busy:
            raise SessionError("busy: wait for the running task or press Cancel")
        return annotator

    def commit(self) -> int:
        object_id = self._require().commit()
        self._clear_prompt_layers()
        self._started()[1].labels.refresh()
        self._say(f"Committed object {object_id}.")
        return object_id

    def commit_in_3d(self) -> Any:
        """Commit the preview and follow the object through the neighbouring slices (one id, one undo step), in a
        worker: slices not embedded yet are embedded on the way; Cancel stops the walk and keeps what it found."""
        annotator = self._require()
        if annotator.current is None:
            raise SessionError("nothing to commit: add a point or a box first")

        def work():
            return annotator.commit_in_3d(self.propagation_limits, should_stop=self._cancel.is_set)
            yield  # a generator worker, like the others (Cancel, progress)

        def done(result: tuple[int, list]) -> None:
            object_id, planes = result
            self._clear_prompt_layers()
            slices = sorted(key[-1] for key in planes)
            self._say(f"Committed object {object_id} on {len(planes)} slice(s), {slices[0]} to {slices[-1]}.")

        return self._run(thread_worker(work)(), "Following the object through the stack...", done)

    def cycle(self) -> None:
        self._show(self._require().cycle())

    def clear_prompts(self) -> None:
        self._require().clear_prompts()
        self._clear_prompt_layers()

    def _clear_prompt_layers(self) -> None:
        layers = self._started()[1]
        with layers.points.events.data.blocker(), layers.box.events.data.blocker():
            layers.points.data = np.zeros((0, layers.points.ndim))
            layers.box.data = []
        self._show(None)

    def undo(self) -> None:
        self._require().undo()
        self._started()[1].labels.refresh()

    def redo(self) -> None:
        self._require().redo()
        self._started()[1].labels.refresh()

    # ------------------------------------------------------------------ autosave

    def autosave_file(self) -> Path:
        """This image's autosave (:func:`.autosave.autosave_path`)."""
        layers = self._started()[1]
        return autosave_path(self.autosave_folder or autosave_dir(), layers.image.name,
                             tuple(layers.labels.data.shape), self._source_path())

    def _offer_autosave(self) -> None:
        """At Start: an autosave with objects for this image, and labels still empty, is offered for restoring."""
        layers = self._started()[1]
        info = autosave_info(self.autosave_file())
        offered = info if info is not None and not layers.labels.data.any() else None
        self._offered_autosave = offered.path if offered is not None else None
        self.restore_button.enabled = offered is not None
        if offered is not None:
            self.restore_button.tooltip = f"{offered.describe()} for {layers.image.name}: press Restore autosave to load it."
            self._say(self.restore_button.tooltip)

    @ensure_main_thread
    def _store_changed(self) -> None:
        """The object store's hook after every change, undo and redo: autosave. A change made by a worker (everything
        mode, a 3D commit) is queued to the GUI thread, which owns the buttons and, by then, the labels."""
        with _widget_may_be_gone():
            self.autosave()

    def autosave(self) -> None:
        """Write the labels and objects to this image's autosave (atomically). An offered autosave that was not
        restored is kept beside it (``.previous.json``) rather than overwritten."""
        if self.annotator is None:
            return
        path = self.autosave_file()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if self._offered_autosave is not None and self._offered_autosave.exists():
                self._offered_autosave.replace(self._offered_autosave.with_suffix(".previous.json"))
            self._offered_autosave = None
            self.restore_button.enabled = False
            export_coco(path, self.annotator.labels, self.source_file_name(), self.annotator.object_prompts,
                        scores=self.annotator.object_scores)
        except (OSError, TinySamAnnotateError) as exc:
            self._say(f"Autosave to {path} failed: {exc}")

    def restore_autosave(self) -> None:
        """Add the offered autosave's objects to the labels as one undo step."""
        path = self._offered_autosave or self.autosave_file()
        self._offered_autosave = None  # restored: the import's own autosave may now replace it
        self.restore_button.enabled = False
        self.import_file(path)

    # ------------------------------------------------------------------ long work

    @property
    def busy(self) -> bool:
        return self.worker is not None

    @property
    def prefetching(self) -> bool:
        """Whether a background prefetch is still running (a stopped one until its tile in progress ends)."""
        return bool(self._prefetches)

    def prefetch_around(self, key: tuple[int, ...], tile: tuple[int, int, int, int]) -> Any:
        """Embed the tiles around ``tile`` of a tiled plane in the background, so that the next click nearby is
        instant. It gives way to any foreground work (a click on an unembedded tile, everything mode, Cancel),
        which waits at most for the one tile in progress; it is not "busy": prompts go on meanwhile."""
        if self._prefetch_target == (key, tile) and self.prefetching:
            return None  # already on it (another click in the same tile)
        self._stop_prefetch()
        if self.annotator is None:
            return None
        self._prefetch_target = (key, tile)
        tiles = self.annotator.prefetcher(key, tile)

        def work() -> Iterator[tuple[int, int]]:
            yield from tiles

        worker = thread_worker(work)()

        def finished() -> None:
            self._prefetches.discard(worker)

        def errored(exc: BaseException) -> None:  # the click that needs the tile will say it again, with context
            with _widget_may_be_gone():
                self._say(f"Embedding the tiles around the last click failed: {type(exc).__name__}: {exc}")

        worker.finished.connect(finished)
        worker.errored.connect(errored)
        self._prefetches.add(worker)
        worker.start()
        return worker

    def _stop_prefetch(self) -> None:
        """Ask background prefetches to stop after the tile in progress (each holds the encoder until then)."""
        self._prefetch_target = None
        for worker in self._prefetches:
            worker.quit()

    def _run(self, worker: Any, message: str, on_done: Callable[[Any], None] | None = None) -> Any:
        """Start a worker: progress from its (done, total) yields, errors as notifications, Cancel enabled.
        Foreground work first stops the background prefetch."""
        self._stop_prefetch()
        self._cancel.clear()
        self.worker = worker
        self.cancel_button.enabled = True
        self.progress.value = 0
        self._say(message)

        def progress(value: Any) -> None:
            if isinstance(value, tuple) and len(value) == 2:
                with _widget_may_be_gone():
                    self.progress.max = max(1, value[1])
                    self.progress.value = value[0]

        def finished() -> None:  # also arrives after `returned`, possibly once the viewer has closed
            if self.worker is worker:
                self.worker = None
            with _widget_may_be_gone():
                self.cancel_button.enabled = self.busy
                if self.layers is not None:
                    self.layers.labels.refresh()

        def returned(result: Any) -> None:
            finished()  # before on_done, which may start the next step
            if on_done is not None:
                on_done(result)
            if self._pending_prompts and not self.busy:
                self._pending_prompts = False
                self._on_prompts()

        def errored(exc: BaseException) -> None:
            show_error(f"{type(exc).__name__}: {exc}")
            self._say(f"Failed: {exc}")

        if hasattr(worker, "yielded"):
            worker.yielded.connect(progress)
        worker.errored.connect(errored)
        worker.finished.connect(finished)
        worker.returned.connect(returned)
        worker.start()
        return worker

    def cancel(self) -> None:
        self._stop_prefetch()
        self._cancel.set()
        self._say("Cancelling...")

    def embed(self, key: tuple[int, ...], then: Callable[[], None] | None = None, tiles: list | None = None) -> Any:
        """Compute the embeddings of one plane, or of some of its tiles, in a worker (cached: revisiting is
        instant); ``then`` runs once they are ready, not after a Cancel."""
        annotator = self._require()
        what = f"plane {key or ''}".strip() if tiles is None else \
            f"{len(tiles)} of the {len(annotator.grid)} tiles of plane {key or ''}".strip()

        def work():
            yield from annotator.iter_embed(key, should_stop=self._cancel.is_set, tiles=tiles)

        def done(_result: Any = None) -> None:
            if self._cancel.is_set():
                self._say(f"Cancelled: {what} is not embedded yet; a click there embeds what it needs.")
                return
            offer = f" {self.restore_button.tooltip}" if self.restore_button.enabled else ""
            self._say(f"{what[0].upper()}{what[1:]} ready: click to add points, draw a box, press c to commit.{offer}")
            if then is not None:
                then()

        return self._run(thread_worker(work)(), f"Computing the embedding of {what}...", done)

    def segment_everything(self, all_slices: bool = False) -> Any:
        """Everything mode into the labels layer (this slice or every slice), with area filters; cancellable."""
        try:
            annotator = self._require()
        except SessionError as exc:
            show_error(str(exc))
            return None
        keys = annotator.all_planes() if all_slices else [self.current_key()]
        annotator.generator_factory = everything_factory(self.mode.value, float(self.pred_iou.value),
                                                         float(self.stability.value))
        min_area, max_area = int(self.min_area.value), int(self.max_area.value) or None
        started = time.perf_counter()

        @ensure_main_thread
        def on_prompts(tiles_done: int, tiles: int, done: int, total: int) -> None:
            with _widget_may_be_gone():
                self.progress.max = PROGRESS_STEPS * tiles
                self.progress.value = int(PROGRESS_STEPS * (tiles_done + done / max(total, 1)))
                where = f"tile {tiles_done + 1} of {tiles}: " if tiles > 1 else ""
                self._say(f"Segmenting everything, {where}{done} of {total} prompts done, {total - done} left...")

        def work():
            found: dict = {}
            for _ in annotator.iter_everything(keys, min_area, max_area, self._cancel.is_set, found, on_prompts):
                yield None  # progress comes from on_prompts; the yield lets the worker pause or quit between tiles
            return found

        def done(found: dict) -> None:
            count = sum(len(v) for v in found.values())
            self._say(f"Everything mode: {count} objects on {len(found)} plane(s) in {time.perf_counter() - started:.1f} s"
                      + (" (cancelled)" if self._cancel.is_set() else "") + ".")

        return self._run(thread_worker(work)(), f"Segmenting everything on {len(keys)} plane(s)...", done)

    # ------------------------------------------------------------------ files

    def export(self, path: Path, kind: str) -> Path:
        annotator = self._require()
        _require_file_choice(path, "export to", "a .json for COCO, a .tif for labels")
        if kind == "coco":
            out = export_coco(path, annotator.labels, self.source_file_name(), annotator.object_prompts,
                              scores=annotator.object_scores)
        else:
            from tinysam_annotate.io.labels import write_label_image

            out = write_label_image(path, annotator.labels)
        self._say(f"Wrote {out}.")
        return out

    def source_file_name(self) -> str:
        """The image's file name for COCO ``file_name``: the layer's source file (with its extension) when napari
        read it from one, else the layer name."""
        source = self._source_path()
        return Path(source).name if source else self._started()[1].image.name

    def _source_path(self) -> str | None:
        """The file napari read the image layer from, if any."""
        image = None if self.layers is None else self.layers.image
        return getattr(getattr(image, "source", None), "path", None)

    def import_file(self, path: Path) -> None:
        """Add the objects of a COCO file or a label TIFF as one undo step (ids shifted past the current ones)."""
        annotator = self._require()
        _require_file_choice(path, "import", "a COCO .json or a label .tif")
        prompts = None
        if path.suffix.lower() == ".json":
            labels, prompts = import_coco(path)
        else:
            from tinysam_annotate.io.labels import read_label_image

            labels = read_label_image(path, max_ndim=annotator.labels.ndim)
        count = annotator.add_labels(labels, prompts)
        self._started()[1].labels.refresh()
        self._say(f"Imported {count} objects from {path.name}.")


def _require_file_choice(path: Path, action: str, kinds: str) -> None:
    """The file box's path names a file, not nothing or a folder (the empty box reads as ".", a folder)."""
    if not str(path).strip() or Path(path).is_dir():
        chosen = "nothing is chosen" if str(path).strip() in ("", ".") else f"{path} is a folder"
        raise SessionError(f"choose a file to {action} first (the file box: {kinds}; {chosen})")


@contextmanager
def _widget_may_be_gone() -> Iterator[None]:
    """Late worker signals can reach a dock widget whose Qt objects were deleted with the viewer."""
    try:
        yield
    except RuntimeError as exc:
        if "deleted" not in str(exc):
            raise


def _quiet(action: Callable[[], Any]) -> Callable[..., None]:
    """A key or button handler: user errors become notifications instead of tracebacks."""

    def handler(*_args: Any) -> None:
        try:
            action()
        except (TinySamAnnotateError, ValueError, OSError) as exc:
            show_error(str(exc))

    return handler
