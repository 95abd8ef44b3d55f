"""The one small interface every inference engine implements: encode an image, decode prompts.

Coordinates are (x, y) pixels of the model's input frame (the resized image, longest side
``image_size``); point labels use the unified convention -1 padding, 0 background, 1 foreground,
2/3 box top-left/bottom-right corners.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class ModelIdentity:
    """What makes two embeddings comparable: feeds the embedding-cache key."""

    model_id: str  # architecture name, e.g. "vit_t"
    weights_hash: str  # sha256 of the checkpoint file, or a digest of the weights
    backend: str  # "torch" or "onnx"
    precision: str  # "fp32", "bf16", "fp16", "int8"


@runtime_checkable
class Backend(Protocol):
    """An inference engine. Implementations: TorchBackend (and OnnxBackend)."""

    identity: ModelIdentity
    image_size: int  # side of the square model input, 1024 for official models
    low_res_size: int  # side of the low-res logits, 256 for official models
    always_multimask: bool  # TinySAM: three masks whatever multimask_output says

    @property
    def device(self) -> str:
        """Where it computes: "cpu", "cuda", "cuda:0", ..."""
        ...

    @property
    def device_description(self) -> str:
        """What it runs on in words, e.g. "cpu", "cuda:0", "CPUExecutionProvider"."""
        ...

    def encode(self, resized_image: np.ndarray) -> np.ndarray:
        """h x w x 3 RGB image (uint8 or float in 0..255) with max(h, w) == image_size -> 1 x C x e x e float32."""
        ...

    def decode(
        self,
        embedding: np.ndarray,
        coords: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray | None,
        multimask_output: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decode a batch of B prompts against one image embedding.

        embedding: 1 x C x e x e; coords: B x N x 2 float32 (x, y) input-frame pixels; labels: B x N int;
        mask_input: B x 1 x 256 x 256 logits or None. Returns low-res logits B x M x 256 x 256 and
        IoU predictions B x M (M = 3, or 1 when a single mask is asked for and allowed).
        """
        ...

    def as_native(self, array: np.ndarray) -> Any:
        """``array`` as the engine's own tensor type (a torch tensor on its device for the torch engine; the
        array itself for ONNX Runtime): what segment-anything's torch-facing calls return."""
        ...


LowResExtent = tuple[int, int]  # (rows, columns) of low-res logits from the top left


class MasksOf(Protocol):
    """:attr:`ScoredPrompts.masks_of`: the low-res logits of some prompts of a scored batch."""

    def __call__(self, rows: np.ndarray, extent: LowResExtent | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class ScoredPrompts:
    """A decoded batch of B prompts before its masks: ``iou`` B x M predictions, and ``masks_of(rows, extent)``
    giving the low-res logits of the prompts at ``rows`` (an int array into the batch): len(rows) x M x L x L, or
    with ``extent`` (h, w) only their top-left h x w block (what a caller reads when the image does not fill the
    square frame; engines that can, compute no more than that)."""

    iou: np.ndarray
    masks_of: MasksOf


@runtime_checkable
class ScoresFirst(Protocol):
    """An engine that predicts the IoUs of a batch before computing any mask, so a caller upscales only the
    prompts it keeps (everything mode keeps those with a mask past its IoU threshold).

    ``scores_first`` is False when the engine offers the call but its model makes every mask anyway (ONNX folders
    of export version 4 and older): the masks then cost time and memory for every prompt.
    """

    scores_first: bool

    def score_prompts(
        self, embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray, multimask_output: bool,
        block: LowResExtent | None = None,
    ) -> ScoredPrompts:
        """Same inputs as :meth:`Backend.decode` without a mask input.

        ``block`` (rows, columns) of low-res logits from the top left: the decoder attends only to the feature
        pixels whose upscaling covers it (:func:`feature_extent`), not to the rest of the square frame (the padding
        of a non-square image), and ``masks_of`` gives at most that block. Faster, and not the same numbers as the
        whole frame's (SAM's decoder attends to the padding too). Engines that cannot (ONNX folders before export
        version 8) decode the whole frame.
        """
        ...


def concurrent_batches(backend: Backend) -> int:
    """How many everything-mode batches ``backend`` runs best at once, from as many threads (engines that say
    nothing: one; ONNX Runtime on CPU: one per core, each on one thread)."""
    return max(1, int(getattr(backend, "concurrent_batches", 1)))


def score_prompts(backend: Backend, embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray,
                  multimask_output: bool, block: LowResExtent | None = None) -> ScoredPrompts:
    """``backend``'s scores-first decoding (over ``block`` only, see :meth:`ScoresFirst.score_prompts`), or its full
    decode of the whole frame (every mask computed) for engines without one."""
    if isinstance(backend, ScoresFirst):
        return backend.score_prompts(embedding, coords, labels, multimask_output, block)
    logits, iou = backend.decode(embedding, coords, labels, None, multimask_output)
    return ScoredPrompts(iou, lambda rows, extent=None: top_left(logits[rows], extent))


def top_left(logits: np.ndarray, extent: LowResExtent | None) -> np.ndarray:
    """... x L x L logits -> their top-left ``extent`` block (all of them for None)."""
    return logits if extent is None else logits[..., : extent[0], : extent[1]]


def feature_extent(extent: LowResExtent | None, grid: tuple[int, int]) -> tuple[int, int]:
    """The feature rows and columns (of a ``grid`` of rows x columns) whose upscaling covers a low-res ``extent``:
    each feature pixel makes 4 x 4 low-res logits."""
    if extent is None:
        return grid
    return min(grid[0], -(-extent[0] // 4)), min(grid[1], -(-extent[1] // 4))
