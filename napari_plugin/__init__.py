"""napari plugin of tinysam-annotate (import name ``tinysam_napari``): click-and-box segmentation for microscopy.

Qt-free logic lives in :mod:`planes`, :mod:`tiles`, :mod:`history`, :mod:`annotator` and :mod:`labels_io`;
:mod:`widget` wires it to napari layers; :mod:`hooks` holds the npe2 reader, writer and sample data.
"""

from .annotator import PlanePrompts, StackAnnotator
from .planes import PlaneSource

__all__ = ["PlaneSource", "PlanePrompts", "StackAnnotator"]
