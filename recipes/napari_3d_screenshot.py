"""Screenshot of a 3D object in the napari plugin on the shipped model: a generated nuclei stack, one box on a
nucleus's middle slice, Commit in 3D, shown in napari's 3D view (the stack itself hidden, the widget beside it).

    xvfb-run -a -s "-screen 0 1600x1000x24" python -m recipes.napari_3d_screenshot recipes/results/napari_3d.png
"""

from __future__ import annotations

import sys

import napari
import numpy as np
from tinysam_napari.widget import TinySamWidget

from tinysam_annotate.loading import load_model
from tinysam_annotate.mask_geometry import mask_box
from tinysam_annotate.predictor import SamPredictor

from .bench.propagation_3d import FIRST_SEED
from .data.scenes import generate_stack


def main(out: str) -> None:
    from qtpy.QtWidgets import QApplication

    stack = generate_stack(FIRST_SEED)
    tallest = max(stack.masks, key=lambda m: (m.any(axis=(1, 2)).sum(), m.sum()))
    slices = np.flatnonzero(tallest.any(axis=(1, 2)))
    middle = int(slices[len(slices) // 2])
    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1500, 950)
    widget = TinySamWidget(viewer, predictor=SamPredictor(load_model("tinysam-synth", backend="onnx", precision="int8")))
    viewer.window.add_dock_widget(widget, name="TinySAM")
    viewer.add_image(stack.image[..., 1], name="nuclei stack", colormap="gray", scale=(3, 1, 1))
    app = QApplication.instance()

    def idle() -> None:
        while widget.busy:
            app.processEvents()

    widget.image.value = "nuclei stack"
    widget.channel_axis.value = -1
    viewer.dims.set_current_step(0, middle)
    widget.start()
    idle()
    x0, y0, x1, y1 = (float(v) for v in mask_box(tallest[middle]))
    widget.layers.box.add_rectangles(np.array([[middle, y0, x0], [middle, y0, x1], [middle, y1, x1], [middle, y1, x0]]))
    idle()
    widget.commit_in_3d()
    idle()
    print(widget.status.value)
    viewer.layers["nuclei stack"].visible = False
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    z, y, x = (float(c.mean()) for c in np.nonzero(widget.layers.labels.data == 1))
    viewer.camera.center = (3 * z, y, x)  # the layer's z scale is 3
    viewer.camera.angles = (-15, 40, 110)
    viewer.camera.zoom *= 4
    for _ in range(30):
        app.processEvents()
    viewer.screenshot(path=out, canvas_only=False)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "napari_3d.png")
