"""Screenshot of the napari plugin on the shipped model: nuclei_256 (../shared/data), everything mode, one click.

    xvfb-run -a -s "-screen 0 1600x1000x24" python -m recipes.napari_screenshot recipes/results/napari_plugin.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari
import numpy as np
import tifffile
from tinysam_napari.widget import TinySamWidget

from tinysam_annotate.loading import load_model
from tinysam_annotate.predictor import SamPredictor

NUCLEI = Path(__file__).resolve().parents[2] / "shared" / "data" / "nuclei_256.tif"


def main(out: str) -> None:
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1500, 950)
    widget = TinySamWidget(viewer, predictor=SamPredictor(load_model("tinysam-synth", backend="onnx", precision="int8")))
    viewer.window.add_dock_widget(widget, name="TinySAM")
    viewer.add_image(tifffile.imread(NUCLEI), name="nuclei_256", colormap="gray")
    app = QApplication.instance()

    def idle() -> None:
        while widget.busy:
            app.processEvents()

    widget.image.value = "nuclei_256"
    widget.start()
    idle()
    widget.segment_everything()
    idle()
    widget.layers.points.add(np.array([110.0, 130.0]))  # a click on a nucleus: the live preview
    idle()
    viewer.reset_view()
    for _ in range(20):
        app.processEvents()
    viewer.screenshot(path=out, canvas_only=False)
    print(widget.status.value)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "napari_plugin.png")
