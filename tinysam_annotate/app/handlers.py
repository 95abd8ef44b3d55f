"""The app's actions as plain functions over a per-session :class:`AppState` (no Gradio imports).

Each returns the new state; the UI layer turns states into widgets. Errors are the library's typed
errors (ValueError subclasses); the UI shows their messages.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..amg import GenerationCancelled
from ..errors import TinySamAnnotateError
from ..io.image import DEFAULT_MAX_PIXELS, load_image, read_image
from ..io.labels import label_image_name
from ..service import everything_generator
from ..session import DEFAULT_CLEANUP, AnnotationSession, SessionError
from ..visualize import id_colours
from .engine import Engine
from .memory import MemoryBudget, pixel_limit
from .view import ZOOMS, View, ViewError, fit_view, pan

MODES = ("positive", "negative", "box")


CANVASES_KEPT = 3  # the newest canvas files of a session; older ones are deleted (the browser may still be loading one)


def new_session_folder(root: str | Path | None = None) -> Path:
    """A not yet created folder with an unguessable name under ``root`` (the system temp folder by default): files
    under it are only reachable by someone who was handed their URL."""
    return Path(root or tempfile.gettempdir()) / f"tinysam-app-{secrets.token_urlsafe(16)}"


@dataclass
class AppState:
    """Everything one browser session owns. Its folder (:attr:`folder`) holds its canvases, exports and autosave; it
    is named and created by the first write (a session that never writes leaves nothing behind) and deleted with the
    uploads the session received when the session ends (:func:`close`). Copies of a fresh state (Gradio deep-copies
    one per browser session) share nothing."""

    workdir: Path | None = None  # the session's folder once named (a new unguessable one under folder_root)
    folder_root: Path | None = None  # where session folders go (None: the system temp folder)
    uploads: list[Path] = field(default_factory=list)  # files the browser uploaded for this session (deleted by close)
    canvases: list[Path] = field(default_factory=list)  # canvas files written for this session, oldest first
    session: AnnotationSession | None = None
    engine: Engine | None = None
    mode: str = "positive"
    box_corner: tuple[float, float] | None = None
    message: str = ""
    cancel_requested: bool = False  # set by the Cancel button while everything mode runs
    clean_masks: bool = True  # previews keep the parts the prompts point at, small holes filled
    view: View | None = None  # the part of the image the canvas shows (set when an image opens)
    embedding_seconds: float = 0.0  # the open image's embedding with the current engine (later set_image calls hit the cache)
    everything_seconds: float | None = None  # the last everything run on the open image

    @property
    def folder(self) -> Path:
        """The session's folder (named on first use; created by whoever writes into it)."""
        if self.workdir is None:
            self.workdir = new_session_folder(self.folder_root)
        return self.workdir


EXAMPLES = {"coins": "coins", "cells": "cell", "tissue": "immunohistochemistry"}  # name -> skimage.data function


def example_image(name: str) -> np.ndarray:
    """A bundled example (scikit-image data installed with it, no download): coins, cells, or tissue (stained
    nuclei, immunohistochemistry). Its fluorescence nuclei (human_mitosis) would need a download: not used."""
    from skimage import data

    if name not in EXAMPLES:
        raise SessionError(f"unknown example {name!r}; examples: {', '.join(EXAMPLES)}")
    img = getattr(data, EXAMPLES[name])()
    return load_image(img).rgb


@contextmanager
def names_only(path: str | Path) -> Iterator[None]:
    """Re-raise user errors about an uploaded file with its name in place of its server path (Gradio's temp
    folder tells a visitor nothing useful and tells an attacker where uploads live)."""
    try:
        yield
    except TinySamAnnotateError as exc:
        full, name = str(path), Path(path).name
        text = str(exc).replace(full, name).replace(str(Path(full).parent), "")
        if text == str(exc):
            raise
        try:
            cleaned = type(exc)(text)
        except TypeError:  # an error type with another constructor
            cleaned = TinySamAnnotateError(text)
        raise cleaned from None


def open_image(state: AppState, engine: Engine, image: str | Path | np.ndarray, name: str = "image.png",
               max_pixels: int | None = None, channels: tuple[int, ...] | int | None = None,
               categories: list[str] | None = None, budget: MemoryBudget | None = None) -> AppState:
    """Load a file (size checked from its header before decoding) or an array and start annotating it, once
    ``budget`` (the app's memory shared by all sessions) has room for the session's work on it.
    ``max_pixels`` (per image, checked before decoding): None takes the budget's limit, or the reader's default."""
    if max_pixels is None:
        max_pixels = pixel_limit(budget.budget_bytes) if budget is not None else DEFAULT_MAX_PIXELS
    if isinstance(image, (str, Path)):
        with names_only(image):
            source = read_image(image, max_pixels=max_pixels)
        if source.n_slices > 1:
            raise SessionError(f"{Path(image).name} is a stack of {source.n_slices} slices; the web app annotates 2D images")
        rgb = source.model_view(0, channels)
        name = Path(image).name if name == "image.png" else name
    else:
        rgb = load_image(image, channels=channels).rgb
    keep = list(state.session.categories) if state.session is not None and categories is None else categories
    previous = budget.held(state) if budget is not None else None  # the open image's, if this one fails
    if budget is not None:
        budget.reserve(state, rgb.shape[1], rgb.shape[0], name)
    try:
        session = AnnotationSession(engine.predictor(), rgb, name, keep, autosave_path=state.folder / "autosave.json",
                                    cleanup=DEFAULT_CLEANUP if state.clean_masks else None)
    except Exception:
        if budget is not None:  # the session keeps the image it had, and with it only that image's memory
            budget.restore(state, previous)
        raise
    state.engine, state.session = engine, session
    state.box_corner = None
    state.view = fit_view(rgb.shape[1], rgb.shape[0])
    state.embedding_seconds, state.everything_seconds = session.predictor.last_encode_seconds, None
    state.message = f"{name}: {rgb.shape[1]} x {rgb.shape[0]} px, embedding {state.embedding_seconds * 1000:.0f} ms"
    return state


def switch_engine(state: AppState, engine: Engine) -> AppState:
    """Use another model / backend / precision for the open image; accepted objects stay, prompts are cleared."""
    state.engine = engine
    if state.session is not None:
        session = state.session
        session.predictor = engine.predictor()
        session.predictor.set_image(session.image)
        session.clear_prompts()
        state.box_corner = None
        state.embedding_seconds, state.everything_seconds = session.predictor.last_encode_seconds, None
        state.message = f"now using {engine.description} (embedding {state.embedding_seconds * 1000:.0f} ms)"
    return state


def require_session(state: AppState) -> AnnotationSession:
    if state.session is None:
        raise SessionError("open an image first (upload one or pick an example)")
    return state.session


def require_view(state: AppState) -> View:
    """The view of the open image (open_image sets the session and its view together)."""
    require_session(state)
    assert state.view is not None, "an open session always has a view"
    return state.view


def set_mode(state: AppState, mode: str) -> AppState:
    if mode not in MODES:
        raise SessionError(f"mode must be one of {MODES}, got {mode!r}")
    state.mode, state.box_corner = mode, None
    return state


def set_clean_masks(state: AppState, clean: bool) -> AppState:
    """Clean previews (the parts the prompts point at, small holes filled) or show the model's raw masks."""
    state.clean_masks = bool(clean)
    if state.session is not None:
        state.session.set_cleanup(DEFAULT_CLEANUP if state.clean_masks else None)
    state.message = "masks cleaned" if state.clean_masks else "raw model masks"
    return state


def click(state: AppState, x: float, y: float) -> AppState:
    """A click at (x, y) image pixels: a point in point modes; in box mode the first click is one corner,
    the second closes the box."""
    session = require_session(state)
    if state.mode == "box":
        if state.box_corner is None:
            session.check_point(x, y)
            state.box_corner = (float(x), float(y))
            state.message = "box: click the opposite corner"
            return state
        x0, y0 = state.box_corner
        state.box_corner = None
        preview = session.set_box(x0, y0, x, y)
    else:
        preview = session.add_point(x, y, positive=state.mode == "positive")
    state.message = f"{describe_prompts(session)} · candidate {preview.selected + 1}/3, predicted IoU {preview.score:.2f}"
    return state


def describe_prompts(session: AnnotationSession) -> str:
    """E.g. "3 points, last at (37, 21) + box": what the preview was made from."""
    parts = []
    if session.points:
        n, (x, y) = len(session.points), session.points[-1]
        parts.append(f"{n} point{'s' if n != 1 else ''}, last at ({x:g}, {y:g})")
    if session.box is not None:
        parts.append("box")
    return " + ".join(parts)


def click_on_canvas(state: AppState, view: str | View | None, u: float, v: float) -> AppState:
    """A click at display pixel (u, v) of the canvas as the browser showed it (``view``, the JSON sent with that
    canvas; the state's current view when None): mapped to image pixels exactly as the canvas was drawn, so a click
    made while an earlier one was still running lands where the user saw it."""
    current = require_view(state)
    if isinstance(view, str):
        view = View.from_json(view) if view else current
    x, y = (view or current).to_image(u, v)
    return click(state, x, y)


def last_prompt_position(state: AppState) -> tuple[float, float] | None:
    """Image (x, y) of the newest prompt: a half-drawn box corner, the last point, or the box centre."""
    session = state.session
    if state.box_corner is not None:
        return state.box_corner
    if session is not None and session.points:
        x, y = session.points[-1]
        return (float(x), float(y))
    if session is not None and session.box is not None:
        x0, y0, x1, y1 = session.box
        return (x0 + x1) / 2, (y0 + y1) / 2
    return None


def set_zoom(state: AppState, zoom: int | str) -> AppState:
    """Show the image at ``zoom`` (1, 2, 4 or 8; "2x" works too) centred on the newest prompt, else on what the
    canvas shows now."""
    session = require_session(state)
    try:
        level = int(str(zoom).rstrip("x")) if str(zoom) != "fit" else 1
    except ValueError:
        raise ViewError(f"zoom must be one of {ZOOMS} or 'fit', got {zoom!r}") from None
    height, width = session.image.shape[:2]
    current = require_view(state)
    centre = last_prompt_position(state) or (current.x0 + current.width / 2, current.y0 + current.height / 2)
    state.view = fit_view(width, height, level, centre)
    state.message = "whole image" if level == 1 else f"zoom {level}x around ({centre[0]:.0f}, {centre[1]:.0f})"
    return state


def zoom_level(state: AppState) -> int:
    """The zoom (one of ZOOMS) of the state's view; 1 before an image is open."""
    if state.session is None or state.view is None:
        return 1
    height, width = state.session.image.shape[:2]
    ratio = state.view.scale / fit_view(width, height).scale
    return min(ZOOMS, key=lambda z: abs(z - ratio))


def pan_view(state: AppState, dx: int, dy: int) -> AppState:
    """Move a zoomed view by (dx, dy) half windows (-1, 0 or 1 each)."""
    height, width = require_session(state).image.shape[:2]
    state.view = pan(require_view(state), width, height, int(dx), int(dy))
    return state


def cycle(state: AppState) -> AppState:
    preview = require_session(state).cycle_candidate()
    state.message = f"candidate {preview.selected + 1}/3, predicted IoU {preview.score:.2f}"
    return state


def clear(state: AppState) -> AppState:
    require_session(state).clear_prompts()
    state.box_corner, state.message = None, "prompts cleared"
    return state


def accept(state: AppState, category: str | None) -> AppState:
    obj = require_session(state).accept(category)
    state.message = f"object {obj.object_id} ({obj.category}) accepted"
    return state


def undo(state: AppState) -> AppState:
    require_session(state).undo()
    state.message = "undone"
    return state


def redo(state: AppState) -> AppState:
    require_session(state).redo()
    state.message = "redone"
    return state


def delete(state: AppState, object_id: int) -> AppState:
    require_session(state).delete(int(object_id))
    state.message = f"object {object_id} deleted"
    return state


def relabel(state: AppState, object_id: int, category: str) -> AppState:
    require_session(state).relabel(int(object_id), category)
    state.message = f"object {object_id} is now {category}"
    return state


def add_category(state: AppState, name: str) -> AppState:
    require_session(state).add_category(name)
    return state


def everything(state: AppState, mode: str = "hierarchical", points_per_side: int = 32, pred_iou_thresh: float | None = None,
               stability_score_thresh: float | None = None, min_area: int = 0, category: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> AppState:
    """Segment everything (hierarchical by default) and add the masks as one undo step; unset thresholds are the
    ones the open model was tuned for."""
    session = require_session(state)
    params = dict(points_per_side=int(points_per_side), min_mask_region_area=int(min_area),
                  pred_iou_thresh=None if pred_iou_thresh is None else float(pred_iou_thresh),
                  stability_score_thresh=None if stability_score_thresh is None else float(stability_score_thresh))
    state.cancel_requested = False
    started = time.perf_counter()
    try:
        added = session.segment_everything(lambda predictor: everything_generator(predictor, mode, **params), category,
                                           progress, should_stop=lambda: state.cancel_requested)
    except GenerationCancelled:
        state.message = "everything cancelled: no objects added"
        return state
    state.everything_seconds = time.perf_counter() - started
    state.message = f"everything ({mode}): {len(added)} objects added in {state.everything_seconds:.1f} s"
    return state


def cancel(state: AppState) -> AppState:
    """Ask a running everything mode of this session to stop (it checks between decoder batches)."""
    state.cancel_requested = True
    state.message = "cancelling..."
    return state


def export(state: AppState, use_polygons: bool = False) -> tuple[Path, Path]:
    """COCO JSON and label TIFF of the session, written into the session's own folder."""
    session = require_session(state)
    stem = Path(session.image_name).stem or "annotations"
    return (session.export_coco(state.folder / f"{stem}.coco.json", use_polygons),
            session.export_labels(state.folder / label_image_name(session.image_name)))


def import_coco(state: AppState, path: str | Path) -> AppState:
    with names_only(path):
        added = require_session(state).import_coco(path)
    state.message = f"imported {len(added)} objects"
    return state


def objects_table(state: AppState) -> list[list]:
    """Rows of [id, colour swatch (HTML), category, predicted IoU, area px] for the object list."""
    if state.session is None:
        return []
    objects = state.session.objects
    colours = id_colours([o.object_id for o in objects])
    return [[o.object_id, f'<span style="color:rgb({r},{g},{b});font-size:1.3em">&#9632;</span>', o.category,
             None if o.score is None else round(o.score, 3), int(o.mask.sum())]
            for o, (r, g, b) in zip(objects, colours.tolist(), strict=True)]


def status(state: AppState) -> str:
    if state.engine is None:
        return "no image yet"
    if state.session is None:
        return state.engine.description
    # This session's own predictor: the engine's timings are whichever session used it last.
    line = f"{state.engine.description} · embedding {state.embedding_seconds * 1000:.0f} ms"
    decode_seconds = state.session.predictor.last_decode_seconds
    if decode_seconds > 0:  # 0 until this session's first click
        line += f" · last decode {decode_seconds * 1000:.1f} ms"
    if state.everything_seconds is not None:
        line += f" · last everything {state.everything_seconds:.1f} s"
    return line


def canvas_file(state: AppState, image: np.ndarray) -> Path:
    """Write a canvas (H x W x 3 uint8) as a new PNG in the session's folder and return its path; only the newest
    :data:`CANVASES_KEPT` are kept, so a long session does not pile up one file per click."""
    from PIL import Image

    state.folder.mkdir(parents=True, exist_ok=True)
    path = state.folder / f"canvas-{secrets.token_hex(8)}.png"
    Image.fromarray(image).save(path)
    state.canvases.append(path)
    while len(state.canvases) > CANVASES_KEPT:
        state.canvases.pop(0).unlink(missing_ok=True)
    return path


def close(state: AppState) -> None:
    """Delete everything the session wrote (canvases, exports, autosave) and the files it was sent. The annotations
    stay in memory: a browser that reconnects keeps working (its autosave and exports go to the same folder again)."""
    if state.workdir is not None:
        shutil.rmtree(state.workdir, ignore_errors=True)
    state.canvases.clear()
    for upload in state.uploads:
        upload.unlink(missing_ok=True)
        with suppress(OSError):  # not empty: another session uploaded the same file
            upload.parent.rmdir()  # Gradio stores each upload in a folder of its own
    state.uploads.clear()


__all__ = ["AppState", "MODES", "TinySamAnnotateError", "accept", "add_category", "cancel", "clear", "click",
           "canvas_file", "click_on_canvas", "close", "cycle", "delete", "everything", "example_image", "export", "import_coco",
           "new_session_folder", "objects_table", "open_image", "pan_view", "redo", "relabel", "set_mode", "set_zoom", "status",
           "switch_engine", "undo", "zoom_level"]
