"""What the canvas shows: accepted objects in their colours, the preview mask, prompts and a half box, drawn at
display resolution through a :class:`~.view.View` (so markers keep their size on screen at any zoom)."""

from __future__ import annotations

import numpy as np

from ..session import AnnotationSession
from ..visualize import id_colours, render_objects, render_overlay
from .view import View, fit_view

PREVIEW_COLOUR = (255, 200, 0)


def canvas(session: AnnotationSession, view: View | None = None,
           box_corner: tuple[float, float] | None = None) -> np.ndarray:
    """display H x W x 3 uint8 (the view's display size; the whole image fitted when ``view`` is None): objects,
    then the current preview with its points and box on top."""
    height, width = session.image.shape[:2]
    view = view or fit_view(width, height)
    ids = [o.object_id for o in session.objects]
    out = render_objects(view.render_image(session.image), [view.sample(o.mask) for o in session.objects], alpha=0.4,
                         colours=id_colours(ids))
    preview = session.preview
    mask = view.sample(preview.mask) if preview is not None else np.zeros(out.shape[:2], bool)
    points = view.to_display(np.array(session.points)) if session.points else None
    labels = np.array(session.labels) if session.points else None
    box = view.to_display(np.array(session.box).reshape(2, 2)).reshape(4) if session.box is not None else None
    out = render_overlay(out, mask, points, labels, box, color=PREVIEW_COLOUR, alpha=0.45)
    if box_corner is not None:
        out = render_overlay(out, np.zeros_like(mask), view.to_display(np.array([box_corner])), np.array([2]))
    return out
