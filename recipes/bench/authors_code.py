"""Load the TinySAM authors' own code (a checkout of github.com/xinghaochen/TinySAM) for side-by-side benchmarks.

Their code imports torchvision (batched NMS, PIL resize) and timm (three layer helpers), neither of which has a
CPU build here; when they are missing, small stand-ins with the same behaviour are installed for the benchmark
process only: NMS is ours (torchvision's greedy rule, tested against it in the conformance suite), the resize is
Pillow's bilinear (what torchvision does for PIL images), DropPath is the identity (inference only).
Nothing of theirs is copied into this repository: the checkout is read from ``--authors-repo`` at run time.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from tinysam_annotate.amg.masks import nms


def _batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """torchvision.ops.batched_nms: NMS within each category (idxs), kept indexes by decreasing score."""
    keep_all: list[int] = []
    for category in torch.unique(idxs).tolist():
        members = torch.nonzero(idxs == category).flatten().numpy()
        kept = nms(boxes[members].double().numpy(), scores[members].double().numpy(), iou_threshold)
        keep_all += members[kept].tolist()
    keep = torch.as_tensor(keep_all, dtype=torch.long)
    return keep[torch.argsort(scores[keep], descending=True, stable=True)] if len(keep) else keep


def _box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _resize(image: Image.Image, size: list[int] | tuple[int, int]) -> Image.Image:
    """torchvision.transforms.functional.resize for a PIL image and an explicit (h, w): bilinear."""
    h, w = size
    return image.resize((w, h), Image.BILINEAR)


class _DropPath(torch.nn.Module):
    """timm's DropPath at inference: the identity."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _module(name: str, **attributes: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules[name] = module
    return module


def install_stand_ins() -> list[str]:
    """Put stand-ins for the missing torchvision / timm pieces in ``sys.modules``; returns what was stood in."""
    installed = []
    if "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None:
        _module("torchvision")
        _module("torchvision.ops", batched_nms=_batched_nms, box_area=_box_area)
        _module("torchvision.ops.boxes", batched_nms=_batched_nms, box_area=_box_area)
        _module("torchvision.transforms")
        _module("torchvision.transforms.functional", resize=_resize,
                to_pil_image=lambda array: Image.fromarray(np.asarray(array)))
        installed.append("torchvision")
    if "timm" not in sys.modules and importlib.util.find_spec("timm") is None:
        _module("timm")
        _module("timm.models")
        _module("timm.models.layers", DropPath=_DropPath, to_2tuple=lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v),
                trunc_normal_=torch.nn.init.trunc_normal_)
        _module("timm.models.registry", register_model=lambda fn: fn)
        installed.append("timm")
    return installed


def import_authors_package(repo: Path) -> types.ModuleType:
    """The checkout's ``tinysam`` package (imported under that name; our package is ``tinysam_annotate``)."""
    if not (Path(repo) / "tinysam" / "hierarchical_mask_generator.py").is_file():
        raise FileNotFoundError(f"{repo} is not a checkout of the TinySAM repository (no tinysam/hierarchical_mask_generator.py)")
    install_stand_ins()
    sys.path.insert(0, str(Path(repo).resolve()))
    try:
        return importlib.import_module("tinysam")
    finally:
        sys.path.pop(0)


def authors_model(repo: Path, checkpoint: Path) -> Any:
    """The authors' TinySAM (vit_t) in eval mode, FP32, with the weights of an official-layout checkpoint."""
    tinysam = import_authors_package(repo)
    model = tinysam.sam_model_registry["vit_t"]()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()
