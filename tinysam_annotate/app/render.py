"""What the canvas shows: accepted objects in their colours, the preview mask, prompts and a half box."""

from __future__ import annotations

import numpy as np

from ..session import AnnotationSession
from ..visualize import id_colours, render_objects, render_overlay

PREVIEW_COLOUR = (255, 200, 0)


def canvas(session: AnnotationSession, box_corner: tuple[float, float] | None = None) -> np.ndarray:
    """H x W x 3 uint8: objects, then the current preview with its points and box on top."""
    ids = [o.object_id for o in session.objects]
    out = render_objects(session.image, [o.mask for o in session.objects], alpha=0.4, colours=id_colours(ids))
    preview = session.preview
    mask = preview.mask if preview is not None else np.zeros(session.image.shape[:2], bool)
    points = np.array(session.points) if session.points else None
    labels = np.array(session.labels) if session.points else None
    box = np.array(session.box) if session.box is not None else None
    out = render_overlay(out, mask, points, labels, box, color=PREVIEW_COLOUR, alpha=0.45)
    if box_corner is not None:
        out = render_overlay(out, np.zeros_like(mask), np.array([box_corner]), np.array([2]))
    return out
