"""Gradio layout and wiring. Every callback is a thin wrapper over :mod:`.handlers`; no model logic here."""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import anyio.to_thread
import gradio as gr

from ..errors import ChannelError, TinySamAnnotateError
from ..registry import DEFAULT_MODEL, MODEL_SPECS, SAM_THRESHOLDS, everything_thresholds, find_model_file
from . import handlers as h
from .engine import AppConfig, EngineRegistry
from .memory import MemoryBudget
from .render import canvas
from .view import ZOOMS

BROWSER_JS = "<script>\n" + (Path(__file__).with_name("browser.js")).read_text(encoding="utf-8") + "</script>\n"

CSS = """
#canvas img { cursor: crosshair; image-rendering: pixelated; }
#view-row { align-items: center; }
.tsa-progress-slot { height: 44px; }
#view-row button { min-width: 2.5em; max-width: 3.5em; }
.tsa-title { margin-bottom: 0 !important; }
footer { display: none !important; }
"""

log = logging.getLogger(__name__)

HELP = ("**Click** the image to add points · **P / N / B** positive, negative, box mode · **A** accept · "
        "**C** next candidate · **Esc** clear · **Ctrl+Z / Ctrl+Y** undo / redo · **+ / −** zoom · **arrows** pan")

ZOOM_CHOICES = ["fit", *(f"{z}x" for z in ZOOMS[1:])]


class SessionTurns:
    """One FIFO lock per browser session: a session's events (clicks queued while an earlier click still decodes,
    key presses, buttons) run one at a time in the order the browser sent them; other sessions run alongside."""

    def __init__(self) -> None:
        self._locks: dict[int, asyncio.Lock] = {}
        self._waiting: dict[int, int] = {}

    def queued(self, state: h.AppState) -> int:
        """How many events of this session wait for their turn (shown to the user as work pending)."""
        return self._waiting.get(id(state), 0)

    def lock(self, state: h.AppState) -> asyncio.Lock:
        return self._locks.setdefault(id(state), asyncio.Lock())

    def forget(self, state: h.AppState) -> None:
        self._locks.pop(id(state), None)
        self._waiting.pop(id(state), None)

    def serial(self, fn: Callable[..., tuple]) -> Callable[..., Any]:
        """``fn(state, *inputs)`` run in a worker thread holding its session's turn. ``functools.wraps`` keeps
        ``fn``'s signature visible to Gradio, which fills ``gr.SelectData`` / ``gr.Progress`` parameters from it.

        A generator, so that the turn is held until Gradio has sent the outputs: released when ``fn`` returns, the
        next event's outputs could overtake these and the browser would end on a stale canvas."""

        @functools.wraps(fn)
        async def run(state: h.AppState, *args: Any) -> AsyncIterator[tuple]:
            key = id(state)
            self._waiting[key] = self._waiting.get(key, 0) + 1
            async with self.lock(state):  # asyncio locks wake waiters first come, first served
                self._waiting[key] -= 1
                yield await anyio.to_thread.run_sync(fn, state, *args)

        return run


def remove_empty_upload_temp_files(cache_root: Path) -> int:
    """Delete the empty ``tmp*`` files directly in Gradio's cache folder; returns how many went.

    Gradio 6's ``gr.File(type="filepath")`` opens a ``NamedTemporaryFile(delete=False)`` there on every upload and
    never uses or removes it (components/file.py, ``_process_single_file``): one stray empty file per upload."""
    removed = 0
    for path in cache_root.glob("tmp*"):
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_size == 0:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def available_models() -> list[str]:
    return [name for name, spec in MODEL_SPECS.items() if find_model_file(spec) is not None]


def build_app(config: AppConfig = AppConfig(), registry: EngineRegistry | None = None) -> gr.Blocks:
    """The Blocks app; launch it with :func:`launch_kwargs` (limits, head script, CSS)."""
    registry = registry or EngineRegistry(config)
    turns = SessionTurns()
    budget = MemoryBudget(config.memory_budget_bytes)

    def views(state: h.AppState) -> tuple:
        session = state.session
        # Drawn into the session's own folder (Gradio serves files under its cache folder in place): deleting the
        # folder when the session ends takes every canvas, export and autosave of it off the server.
        image = str(h.canvas_file(state, canvas(session, state.view, state.box_corner))) if session is not None else None
        categories = list(session.categories) if session is not None else ["object"]
        view = state.view.to_json() if state.view is not None else ""
        zoom = h.zoom_level(state)
        queued = turns.queued(state)
        message = state.message + (f" · {queued} more action{'s' if queued > 1 else ''} queued…" if queued else "")
        return (state, image, h.objects_table(state), h.status(state), message, gr.update(choices=categories),
                view, ZOOM_CHOICES[ZOOMS.index(zoom)])

    def user_error(state: h.AppState, exc: TinySamAnnotateError) -> tuple:
        """A user's mistake: a toast and the message line, one log line; the image stays visible and clickable
        (gr.Error would put an error badge over every output, the picture included)."""
        log.info("user error: %s", exc)
        gr.Warning(str(exc))
        state.message = f"⚠ {exc}"
        return views(state)

    def action(fn: Callable[..., Any]) -> Callable[..., Any]:
        """An event handler running ``fn(state, *inputs)`` in its session's turn, then redrawing."""

        @functools.wraps(fn)
        def run(state: h.AppState, *args: Any) -> tuple:
            try:
                fn(state, *args)
            except TinySamAnnotateError as exc:
                return user_error(state, exc)
            return views(state)

        return turns.serial(run)

    open_sessions: dict[str, h.AppState] = {}  # browser session hash -> its state, from page load to unload

    def forget(state: h.AppState) -> None:
        """Gradio dropped the state (idle past its lifetime, or an hour after the tab closed): files and memory go."""
        turns.forget(state)
        for key in [k for k, v in open_sessions.items() if v is state]:  # a tab whose unload never came
            del open_sessions[key]
        h.close(state)
        state.session = None
        budget.release(state)

    def remember(state: h.AppState, request: gr.Request) -> h.AppState:
        if request.session_hash is not None:
            open_sessions[request.session_hash] = state
        return state

    def evict(state: h.AppState) -> None:
        """Another session needs the memory a closed tab's session still held."""
        state.session = None
        state.message = "This session was closed and its memory given to another; open the image again."

    async def on_unload(request: gr.Request) -> None:
        """The tab closed: its files go now, after the session's running event (the annotations stay in memory until
        Gradio drops the state, so a browser that only lost its connection keeps its work)."""
        state = open_sessions.pop(request.session_hash, None) if request.session_hash is not None else None
        if state is not None:
            async with turns.lock(state):
                h.close(state)
                budget.mark_closed(state, functools.partial(evict, state))
        remove_empty_upload_temp_files(cache_root)

    cache_root = Path(gr.utils.get_upload_folder())
    with gr.Blocks(title="tinysam-annotate", fill_width=True, analytics_enabled=False,
                   delete_cache=(config.session_lifetime_s // 6, config.session_lifetime_s)) as app:
        # Gradio deep-copies this fresh state once per browser session, on its first event, so concurrent first events
        # of a session share one state and one turn lock. (A callable value would be re-run by a load event Gradio adds,
        # replacing the state that the session's first events and remember() may already hold.) Session folders sit
        # in Gradio's cache, which Gradio serves in place.
        state = gr.State(h.AppState(folder_root=cache_root), delete_callback=forget,
                         time_to_live=config.session_lifetime_s)
        gr.Markdown("## tinysam-annotate · interactive segmentation", elem_classes="tsa-title")
        gr.Markdown(HELP)
        with gr.Row():
            with gr.Column(scale=3):
                image_view = gr.Image(label="image", type="numpy", interactive=False, format="png", elem_id="canvas",
                                      buttons=["fullscreen"], height=640)
                with gr.Row(elem_id="view-row"):
                    zoom = gr.Radio(ZOOM_CHOICES, value="fit", label="zoom (+ / −), centred on the last prompt",
                                    elem_id="zoom", scale=4)
                    pans = {name: gr.Button(arrow, elem_id=f"btn-pan-{name}", size="sm", scale=0, min_width=40)
                            for name, arrow in (("left", "◀"), ("up", "▲"), ("down", "▼"), ("right", "▶"))}
                # The browser sends the view it is showing with every click: a click queued behind a slow one is
                # mapped through the canvas the user clicked on, not whatever the server drew since.
                view_json = gr.Textbox(visible="hidden", elem_id="view")
                # Long work draws its progress here only: the image, message line and table stay visible.
                progress_line = gr.HTML('<div class="tsa-progress-slot"></div>', elem_id="progress", padding=False)
                message = gr.Markdown("Upload an image or open an example.", elem_id="message")
                status = gr.Markdown("", elem_id="status")
            with gr.Column(scale=2, min_width=360):
                with gr.Group():
                    upload = gr.File(label="upload (PNG, JPEG, TIFF incl. 16-bit / multichannel)", file_count="single",
                                     type="filepath", elem_id="upload")
                    channels = gr.Textbox(label="channels for multichannel images (e.g. 0 or 2,1,0)", value="", max_lines=1)
                    with gr.Row(equal_height=True):  # else the button leaves an empty grey cell under it
                        example = gr.Dropdown(list(config.examples), value=config.examples[0], label="example", scale=2)
                        open_example = gr.Button("Open example", elem_id="btn-example", scale=1)
                mode = gr.Radio(list(h.MODES), value="positive", label="click mode", elem_id="mode")
                clean = gr.Checkbox(value=True, label="clean masks: keep the parts you pointed at, fill small holes",
                                    elem_id="clean")
                with gr.Row():
                    accept = gr.Button("Accept (A)", variant="primary", elem_id="btn-accept")
                    cycle = gr.Button("Next candidate (C)", elem_id="btn-cycle")
                    clear = gr.Button("Clear (Esc)", elem_id="btn-clear")
                with gr.Row():
                    undo = gr.Button("Undo", elem_id="btn-undo")
                    redo = gr.Button("Redo", elem_id="btn-redo")
                with gr.Row():
                    category = gr.Dropdown(["object"], value="object", label="category", allow_custom_value=False, scale=2)
                    new_category = gr.Textbox(label="new category", max_lines=1, scale=2)
                    add_category = gr.Button("Add", scale=1)
                objects = gr.Dataframe(headers=["id", "", "category", "score", "area"],
                                       datatype=["number", "html", "str", "number", "number"],
                                       interactive=False, label="objects", elem_id="objects", max_height=240)
                with gr.Row():
                    object_id = gr.Number(value=1, label="object id", precision=0, minimum=1)  # ids start at 1
                    delete = gr.Button("Delete")
                    relabel = gr.Button("Set category")
                with gr.Accordion("Segment everything", open=False):
                    ev_mode = gr.Radio(["hierarchical", "grid"], value="hierarchical", label="strategy")
                    points = gr.Slider(8, 64, value=32, step=4, label="points per side")
                    tuned = everything_thresholds(DEFAULT_MODEL)
                    iou_thresh = gr.Slider(0.0, 1.0, value=tuned.pred_iou, step=0.01,
                                           label=f"predicted IoU threshold (SAM: {SAM_THRESHOLDS.pred_iou})")
                    stab_thresh = gr.Slider(0.0, 1.0, value=tuned.stability, step=0.01,
                                            label=f"stability threshold (SAM: {SAM_THRESHOLDS.stability})")
                    min_area = gr.Number(value=0, precision=0, label="min object area (px)", minimum=0)
                    with gr.Row():
                        run_everything = gr.Button("Segment everything", elem_id="btn-everything", scale=2)
                        cancel_everything = gr.Button("Cancel", elem_id="btn-cancel", scale=1)
                with gr.Accordion("Export / import", open=True):
                    export = gr.Button("Export COCO + label TIFF", elem_id="btn-export")
                    files = gr.File(label="downloads", file_count="multiple", interactive=False, elem_id="downloads")
                    import_file = gr.File(label="import COCO JSON", file_types=[".json"], type="filepath")
                with gr.Accordion("Model", open=False):
                    model = gr.Dropdown(list(dict.fromkeys([config.model, *available_models()])), value=config.model, label="model")
                    backend = gr.Radio(["onnx", "torch"], value=config.backend, label="backend")
                    precision = gr.Radio(["fp32", "int8"], value=config.precision, label="precision")

        # A click by image coordinates, for API clients (gradio_client) and scripted use; the canvas uses .select.
        click_x = gr.Number(visible=False)
        click_y = gr.Number(visible=False)
        click_api = gr.Button(visible=False)

        outputs = [state, image_view, objects, status, message, category, view_json, zoom]

        def received(state: h.AppState, path: str) -> None:
            """An uploaded file (Gradio's copy in its cache) is the session's: deleted when the session ends."""
            if Path(path).resolve().is_relative_to(cache_root.resolve()):
                state.uploads.append(Path(path))

        def import_upload(state: h.AppState, path: str) -> None:
            received(state, path)
            h.import_coco(state, path)

        def parse_channels(text: str) -> tuple[int, ...] | None:
            text = (text or "").strip()
            if not text:
                return None
            try:
                return tuple(int(v) for v in text.split(","))
            except ValueError:
                raise ChannelError(f"channels must be integers separated by commas, got {text!r}") from None

        def open_file(state, path, chans, model_name, backend_name, precision_name, progress=gr.Progress()):
            if not path:
                return
            received(state, path)
            progress(0.1, desc="computing the image embedding")
            engine = registry.get(model_name, backend_name, precision_name)
            h.open_image(state, engine, path, channels=parse_channels(chans), budget=budget)

        def open_named_example(state, name, model_name, backend_name, precision_name, progress=gr.Progress()):
            progress(0.1, desc="computing the image embedding")
            engine = registry.get(model_name, backend_name, precision_name)
            h.open_image(state, engine, h.example_image(name), name=f"{name}.png", budget=budget)

        def on_click(state, view, click_mode, evt: gr.SelectData):
            if click_mode != state.mode:  # the mode the user saw when clicking, even if its change is still queued
                h.set_mode(state, click_mode)
            h.click_on_canvas(state, view, evt.index[0], evt.index[1])

        def on_everything(state, strategy, n, iou_t, stab_t, area, cat, progress=gr.Progress()):
            def report(done: int, total: int) -> None:
                progress(done / max(total, 1), desc=f"everything: {done}/{total} prompts")

            h.everything(state, strategy, n, iou_t, stab_t, area or 0, cat, report)

        def on_export(state: h.AppState) -> tuple:
            try:
                coco, labels = h.export(state)
            except TinySamAnnotateError as exc:
                return (*user_error(state, exc), gr.update())
            state.message = f"exported {len(h.require_session(state).objects)} objects"
            return (*views(state), [str(coco), str(labels)])

        def on_model(state, model_name, backend_name, precision_name, progress=gr.Progress()):
            progress(0.1, desc="loading the model and embedding the image")
            h.switch_engine(state, registry.get(model_name, backend_name, precision_name))

        # Every event of a session runs in its turn and in order; "multiple" lets the browser send a click while an
        # earlier one is still running (Gradio's default drops it). Progress shows on one line under the image only, so
        # the image, the message line and the table stay visible and clickable.
        def on(trigger: Any, fn: Callable[..., Any], inputs: list, out: list | None = None, **kwargs: Any) -> None:
            handler = action(fn) if out is None else turns.serial(fn)
            trigger(handler, [state, *inputs], out or outputs, trigger_mode="multiple", show_progress_on=[progress_line],
                    **kwargs)

        model_inputs: list[Any] = [model, backend, precision]
        for control in model_inputs:
            on(control.input, on_model, model_inputs)
        on(upload.upload, open_file, [upload, channels, *model_inputs], api_name="open")
        on(open_example.click, open_named_example, [example, *model_inputs], api_name="open_example")
        on(image_view.select, on_click, [view_json, mode], api_visibility="private")
        on(click_api.click, lambda s, x, y: h.click(s, x, y), [click_x, click_y], api_name="click")
        on(mode.input, lambda s, m: h.set_mode(s, m), [mode], api_name="mode")
        on(clean.input, lambda s, c: h.set_clean_masks(s, c), [clean], api_name="clean_masks")
        on(zoom.input, lambda s, z: h.set_zoom(s, z), [zoom], api_name="zoom")
        for name, (dx, dy) in {"left": (-1, 0), "up": (0, -1), "down": (0, 1), "right": (1, 0)}.items():
            on(pans[name].click, functools.partial(h.pan_view, dx=dx, dy=dy), [])
        on(accept.click, lambda s, c: h.accept(s, c), [category], api_name="accept")
        on(cycle.click, h.cycle, [], api_name="cycle")
        on(clear.click, h.clear, [], api_name="clear")
        on(undo.click, h.undo, [], api_name="undo")
        on(redo.click, h.redo, [], api_name="redo")
        on(add_category.click, lambda s, n: h.add_category(s, n), [new_category])
        on(delete.click, lambda s, i: h.delete(s, i), [object_id])
        on(relabel.click, lambda s, i, c: h.relabel(s, i, c), [object_id, category])
        on(run_everything.click, on_everything, [ev_mode, points, iou_thresh, stab_thresh, min_area, category])
        on(export.click, on_export, [], [*outputs, files], api_name="export")
        on(import_file.upload, import_upload, [import_file])

        # Outside the queue and the session's turn, so that it runs while everything mode holds both.
        def on_cancel(state):
            h.cancel(state)
            return "cancelling..."

        cancel_everything.click(on_cancel, [state], [message], queue=False)
        app.load(remember, [state], [state])
        app.unload(on_unload)
    app.queue(max_size=config.queue_size, default_concurrency_limit=8)
    return app


def launch_kwargs(config: AppConfig) -> dict[str, Any]:
    """Safe defaults for a public server: upload size cap, no extra file access, no flagging, no footer links (the
    API docs link included; the API itself, /gradio_api/info and the named endpoints, stays on for gradio_client)."""
    return dict(max_file_size=config.max_file_size, allowed_paths=[], head=BROWSER_JS, css=CSS,
                footer_links=[], show_error=True, theme=gr.themes.Soft())


def launch(config: AppConfig = AppConfig(), host: str = "127.0.0.1", port: int = 7860, **kwargs: Any) -> None:
    app = build_app(config)
    app.launch(server_name=host, server_port=port, **{**launch_kwargs(config), **kwargs})
