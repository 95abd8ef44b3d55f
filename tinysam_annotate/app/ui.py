"""Gradio layout and wiring. Every callback is a thin wrapper over :mod:`.handlers`; no model logic here."""

from __future__ import annotations

import logging
from typing import Any, Callable

import gradio as gr

from ..errors import ChannelError, TinySamAnnotateError
from ..registry import DEFAULT_MODEL, MODEL_SPECS, SAM_THRESHOLDS, everything_thresholds, find_model_file
from . import handlers as h
from .engine import AppConfig, EngineRegistry
from .render import canvas

SHORTCUTS_JS = """
<script>
document.addEventListener('keydown', (e) => {
  const tag = (document.activeElement && document.activeElement.tagName) || '';
  if (['INPUT', 'TEXTAREA', 'SELECT'].includes(tag)) return;
  const press = (id) => { const el = document.querySelector('#' + id); if (el) { el.click(); e.preventDefault(); } };
  const mode = (v) => { const el = document.querySelector('#mode input[value="' + v + '"]'); if (el) { el.click(); e.preventDefault(); } };
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 'z') return e.shiftKey ? press('btn-redo') : press('btn-undo');
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 'y') return press('btn-redo');
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  ({a: () => press('btn-accept'), c: () => press('btn-cycle'), Escape: () => press('btn-clear'),
    p: () => mode('positive'), n: () => mode('negative'), b: () => mode('box')}[e.key] || (() => {}))();
});
</script>
"""

CSS = """
#canvas img { cursor: crosshair; }
.tsa-title { margin-bottom: 0 !important; }
footer { display: none !important; }
"""

log = logging.getLogger(__name__)

HELP = ("**Click** the image to add points · **P / N / B** positive, negative, box mode · **A** accept · "
        "**C** next candidate · **Esc** clear · **Ctrl+Z / Ctrl+Y** undo / redo")


def available_models() -> list[str]:
    return [name for name, spec in MODEL_SPECS.items() if find_model_file(spec) is not None]


def build_app(config: AppConfig = AppConfig(), registry: EngineRegistry | None = None) -> gr.Blocks:
    """The Blocks app; launch it with :func:`launch_kwargs` (limits, head script, CSS)."""
    registry = registry or EngineRegistry(config)

    def views(state: h.AppState) -> tuple:
        image = canvas(state.session, state.box_corner) if state.session is not None else None
        categories = list(state.session.categories) if state.session is not None else ["object"]
        return state, image, h.objects_table(state), h.status(state), state.message, gr.update(choices=categories)

    def user_error(state: h.AppState, exc: TinySamAnnotateError) -> tuple:
        """A user's mistake: a toast and the message line, one log line; the image stays visible and clickable
        (gr.Error would put an error badge over every output, the picture included)."""
        log.info("user error: %s", exc)
        gr.Warning(str(exc))
        state.message = f"⚠ {exc}"
        return views(state)

    def action(fn: Callable[..., Any]) -> Callable[..., tuple]:
        def run(state: h.AppState | None, *args: Any) -> tuple:
            state = state if state is not None else h.AppState()
            try:
                fn(state, *args)
            except TinySamAnnotateError as exc:
                return user_error(state, exc)
            return views(state)

        return run

    with gr.Blocks(title="tinysam-annotate", fill_width=True, analytics_enabled=False) as app:
        state = gr.State(None, delete_callback=lambda s: h.close(s) if s is not None else None, time_to_live=6 * 3600)
        gr.Markdown("## tinysam-annotate · interactive segmentation", elem_classes="tsa-title")
        gr.Markdown(HELP)
        with gr.Row():
            with gr.Column(scale=3):
                image_view = gr.Image(label="image", type="numpy", interactive=False, format="png", elem_id="canvas",
                                      buttons=["fullscreen"], height=640)
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

        # A click by coordinates, for API clients (gradio_client) and scripted use; the canvas uses .select.
        click_x = gr.Number(visible=False)
        click_y = gr.Number(visible=False)
        click_api = gr.Button(visible=False)

        outputs = [state, image_view, objects, status, message, category]

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
                return views(state if state is not None else h.AppState())
            progress(0.1, desc="computing the image embedding")
            engine = registry.get(model_name, backend_name, precision_name)
            return action(lambda s: h.open_image(s, engine, path, max_pixels=config.max_pixels,
                                                 channels=parse_channels(chans)))(state)

        def open_named_example(state, name, model_name, backend_name, precision_name, progress=gr.Progress()):
            progress(0.1, desc="computing the image embedding")
            engine = registry.get(model_name, backend_name, precision_name)
            return action(lambda s: h.open_image(s, engine, h.example_image(name), name=f"{name}.png"))(state)

        def on_click(state, evt: gr.SelectData):
            x, y = evt.index[0], evt.index[1]
            return action(lambda s: h.click(s, x, y))(state)

        def on_everything(state, strategy, n, iou_t, stab_t, area, cat, progress=gr.Progress()):
            def report(done: int, total: int) -> None:
                progress(done / max(total, 1), desc=f"everything: {done}/{total} prompts")

            return action(lambda s: h.everything(s, strategy, n, iou_t, stab_t, area or 0, cat, report))(state)

        def on_export(state):
            state = state if state is not None else h.AppState()
            try:
                coco, labels = h.export(state)
            except TinySamAnnotateError as exc:
                return (*user_error(state, exc), gr.update())
            state.message = f"exported {len(state.session.objects)} objects"
            return (*views(state), [str(coco), str(labels)])

        def on_model(state, model_name, backend_name, precision_name, progress=gr.Progress()):
            progress(0.1, desc="loading the model and embedding the image")
            try:
                engine = registry.get(model_name, backend_name, precision_name)
            except TinySamAnnotateError as exc:
                return user_error(state if state is not None else h.AppState(), exc)
            return action(lambda s: h.switch_engine(s, engine))(state)

        model_inputs = [model, backend, precision]
        for control in model_inputs:
            control.change(on_model, [state, *model_inputs], outputs)
        upload.upload(open_file, [state, upload, channels, *model_inputs], outputs, api_name="open")
        open_example.click(open_named_example, [state, example, *model_inputs], outputs, api_name="open_example")
        image_view.select(on_click, [state], outputs, api_visibility="private")
        click_api.click(action(lambda s, x, y: h.click(s, x, y)), [state, click_x, click_y], outputs, api_name="click")
        mode.change(action(lambda s, m: h.set_mode(s, m)), [state, mode], outputs, api_name="mode")
        clean.change(action(lambda s, c: h.set_clean_masks(s, c)), [state, clean], outputs, api_name="clean_masks")
        accept.click(action(lambda s, c: h.accept(s, c)), [state, category], outputs, api_name="accept")
        cycle.click(action(h.cycle), [state], outputs, api_name="cycle")
        clear.click(action(h.clear), [state], outputs, api_name="clear")
        undo.click(action(h.undo), [state], outputs, api_name="undo")
        redo.click(action(h.redo), [state], outputs, api_name="redo")
        add_category.click(action(lambda s, n: h.add_category(s, n)), [state, new_category], outputs)
        delete.click(action(lambda s, i: h.delete(s, i)), [state, object_id], outputs)
        relabel.click(action(lambda s, i, c: h.relabel(s, i, c)), [state, object_id, category], outputs)
        run_everything.click(on_everything, [state, ev_mode, points, iou_thresh, stab_thresh, min_area, category], outputs)
        # Outside the queue so that it runs while everything mode holds this session's queue slot.
        def on_cancel(state):
            if state is not None:
                h.cancel(state)
            return "cancelling..."

        cancel_everything.click(on_cancel, [state], [message], queue=False)
        export.click(on_export, [state], [*outputs, files], api_name="export")
        import_file.upload(action(lambda s, p: h.import_coco(s, p)), [state, import_file], outputs)
    app.queue(max_size=config.queue_size, default_concurrency_limit=4)
    return app


def launch_kwargs(config: AppConfig) -> dict[str, Any]:
    """Safe defaults for a public server: upload size cap, no extra file access, no flagging, no footer links (the
    API docs link included; the API itself, /gradio_api/info and the named endpoints, stays on for gradio_client)."""
    return dict(max_file_size=config.max_file_size, allowed_paths=[], head=SHORTCUTS_JS, css=CSS,
                footer_links=[], show_error=True, theme=gr.themes.Soft())


def launch(config: AppConfig = AppConfig(), host: str = "127.0.0.1", port: int = 7860, **kwargs: Any) -> None:
    app = build_app(config)
    app.launch(server_name=host, server_port=port, **{**launch_kwargs(config), **kwargs})
