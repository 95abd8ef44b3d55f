"""npe2 contributions other than the widget: a COCO reader and writer for labels, and sample data."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .labels_io import coco_to_labels, export_coco

LayerData = tuple[Any, dict[str, Any], str]


def _looks_like_coco(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096).decode("utf-8", errors="ignore")
    except OSError:
        return False
    return '"images"' in head or '"annotations"' in head


def get_coco_reader(path: str | list[str]) -> Callable[[str], list[LayerData]] | None:
    """napari asks for a reader; we take single COCO .json files only."""
    if isinstance(path, list) or not str(path).endswith(".json") or not _looks_like_coco(Path(path)):
        return None
    return read_coco_labels


def read_coco_labels(path: str) -> list[LayerData]:
    from tinysam_annotate.io.coco import read_coco

    labels = coco_to_labels(read_coco(path))
    return [(labels, {"name": Path(path).stem}, "labels")]


def write_coco_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a Labels layer (2D or a stack) as COCO JSON, one COCO image per plane."""
    name = str(meta.get("name") or Path(path).stem)
    from tinysam_annotate.io.prompt_record import PromptRecord

    stored = (meta.get("metadata") or {}).get("tinysam_prompts") or {}
    prompts = {int(k): v if isinstance(v, PromptRecord) else PromptRecord.from_json(v) for k, v in stored.items()}
    export_coco(path, np.asarray(data), name, prompts)
    return [path]


def sample_nuclei() -> list[LayerData]:
    """A 16-bit synthetic fluorescence image of 30 nuclei (blurred, noisy; deterministic)."""
    from skimage.draw import ellipse
    from skimage.filters import gaussian

    rng = np.random.default_rng(7)
    h, w = 384, 512
    image = np.zeros((h, w), dtype=np.float64)
    for _ in range(30):
        r, c = rng.uniform(20, h - 20), rng.uniform(20, w - 20)
        rr, cc = ellipse(r, c, rng.uniform(9, 16), rng.uniform(9, 16), shape=(h, w), rotation=rng.uniform(0, np.pi))
        image[rr, cc] = np.maximum(image[rr, cc], rng.uniform(0.5, 1.0))
    image = gaussian(image, 1.5) + rng.normal(0, 0.03, (h, w)) + 0.1
    data = np.clip(image * 20000 + 500, 0, 65535).astype(np.uint16)
    return [(data, {"name": "nuclei", "colormap": "gray"}, "image")]


def sample_coins() -> list[LayerData]:
    from skimage import data

    return [(data.coins(), {"name": "coins"}, "image")]
