"""ONNX Runtime engine (FP32 / FP16 / INT8 encoder files; TensorRT, CUDA or CPU). Imports no torch.

A folder made by :func:`tinysam_annotate.export.export_onnx` holds encoder/decoder files and a
manifest; the backend reports the provider actually in use (``provider``), and ``strict=True`` turns a
fallback into an error.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..errors import ModelNotFoundError, ProviderError
from ..export.manifest import OnnxManifest
from ..transforms import normalize_and_pad
from .base import LowResExtent, ModelIdentity, ScoredPrompts, feature_extent, top_left
from .providers import CPU, ProviderPlan, physical_cores, plan_providers


class OnnxBackend:
    """Encoder + decoder ONNX sessions shared by all callers (ORT's run() is thread-safe)."""

    def __init__(
        self,
        folder: str | os.PathLike,
        precision: str = "fp32",
        providers: list[str] | None = None,
        strict: bool = False,
        threads: int | None = None,
        engine_cache_dir: str | os.PathLike | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.manifest = OnnxManifest.read(self.folder)
        files = self.manifest.files.get(precision)
        if files is None:
            raise ModelNotFoundError(
                f"{self.folder} has no {precision} files (has {', '.join(self.manifest.files)}); "
                "export or quantize them with `tinysam-annotate export`"
            )
        self.precision = precision
        self.image_size = self.manifest.image_size
        self.low_res_size = self.manifest.low_res_size
        self.always_multimask = self.manifest.always_multimask
        self.identity = ModelIdentity(self.manifest.model_id, self.manifest.weights_hash, "onnx", precision)

        self.plan: ProviderPlan = plan_providers(
            providers, ort.get_available_providers(), precision, strict, engine_cache_dir or self.folder / "trt_cache"
        )
        self._files = {role: self.folder / name for role, name in files.items()}
        intra_threads = threads or physical_cores()
        options = session_options(intra_threads)
        self.decoder = self._session("decoder", options)
        # Export version 5 on: the decoder stops before the masks and this small graph makes them.
        self.masks = self._session("masks", options) if "masks" in files else None
        self.scores_first = self.masks is not None
        # The encoder runs once per image: its CPU arena would keep its peak (~400 MB more resident for TinySAM
        # INT8) for nothing; without it encoding is as fast. The decoder, called per click and per everything-
        # mode batch, keeps its arena (~30% faster batches).
        self.encoder = self._session("encoder", session_options(intra_threads, arena=False))
        used = self.encoder.get_providers()
        self.provider = used[0]
        if strict and self.provider != self.plan.names[0]:
            raise ProviderError(f"onnxruntime could not start {self.plan.names[0]} (it chose {self.provider})")
        self.fallbacks = list(self.plan.missing) + [p for p in self.plan.names if p not in used]
        # Everything mode's batches are independent: on CPU, one batch per core on one thread each runs 1.1-1.17x
        # faster end to end than one batch at a time on every core (2 cores, coins; ORT's per-op hand-offs between
        # threads cost more than the ops of a 64 x 64 x 256 image side), with the same prompts in flight.
        self.concurrent_batches = intra_threads if self.scores_first and self.provider == CPU else 1
        self._batch_sessions: tuple[ort.InferenceSession, ort.InferenceSession | None] | None = None
        self._batch_sessions_lock = threading.Lock()
        self._mask_broadcasts = self.manifest.broadcasts_mask_input
        self._upscales_blocks = self.manifest.upscales_blocks
        self._decodes_blocks = self.manifest.decodes_blocks

    def _session(self, role: str, options: ort.SessionOptions) -> ort.InferenceSession:
        """A session on the precision's ``role`` file ("encoder", "decoder", "masks") with the planned providers."""
        return ort.InferenceSession(str(self._files[role]), options, providers=self.plan.providers)

    @property
    def device(self) -> str:
        return "cuda" if self.provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else "cpu"

    def as_native(self, array: np.ndarray) -> np.ndarray:
        return array

    @property
    def device_description(self) -> str:
        return self.provider if not self.fallbacks else f"{self.provider} (fallback from {', '.join(self.fallbacks)})"

    def encode(self, resized_image: np.ndarray) -> np.ndarray:
        image = normalize_and_pad(resized_image, self.image_size)
        return self.encoder.run(None, {"image": image})[0]

    def decode(
        self,
        embedding: np.ndarray,
        coords: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray | None,
        multimask_output: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        scored = self._scored(self._feeds(embedding, coords, labels, mask_input), multimask_output, self.decoder, self.masks)
        return scored.masks_of(np.arange(len(scored.iou))), scored.iou

    def score_prompts(
        self, embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray, multimask_output: bool,
        block: LowResExtent | None = None,
    ) -> ScoredPrompts:
        """Safe to call from :attr:`concurrent_batches` threads at once (everything mode's batches), each run then
        on one thread of its own. ``block`` is honoured from export version 8 on (older graphs: the whole frame)."""
        if block is not None and self._decodes_blocks:
            rows, columns = feature_extent(block, (embedding.shape[-2], embedding.shape[-1]))
            embedding = embedding[..., :rows, :columns]
        decoder, masks = self._sessions_for_batches()
        return self._scored(self._feeds(embedding, coords, labels, None), multimask_output, decoder, masks)

    def upscaler_feeds(self, embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        """The mask upscaler's (masks.onnx) inputs for B prompts of N points, ``coords`` B x N x 2 (x, y) in the
        model's input frame and ``labels`` B x N: mask features B x 64 x 64 x C and the multimask outputs' weights
        B x 3 x C/8. What the INT8 upscaler's activation ranges are calibrated on."""
        if self.masks is None:
            raise ValueError(f"{self.folder}'s decoder makes its masks itself (export version 4 and older): no upscaler")
        _, features, weights = self.decoder.run(None, self._feeds(embedding, coords, labels, None))
        return {"mask_features": features, "mask_weights": np.ascontiguousarray(weights[:, self._token_slice(True)])}

    def _sessions_for_batches(self) -> tuple[ort.InferenceSession, ort.InferenceSession | None]:
        """The decoder and upscaler sessions for everything-mode batches: with concurrent batches, one-thread
        sessions made at the first batch (a click keeps the sessions that spread one run over every core)."""
        if self.concurrent_batches == 1:
            return self.decoder, self.masks
        with self._batch_sessions_lock:
            if self._batch_sessions is None:
                one_thread = session_options(1)
                self._batch_sessions = self._session("decoder", one_thread), self._session("masks", one_thread)
            return self._batch_sessions

    def _scored(
        self,
        feeds: dict[str, np.ndarray],
        multimask_output: bool,
        decoder: ort.InferenceSession,
        upscaler: ort.InferenceSession | None,
    ) -> ScoredPrompts:
        """Run the ``decoder`` session; the masks of the rows asked for come from the ``upscaler`` session
        (masks.onnx, version 5 on) or, for older exports (no upscaler), from the decoder's own output."""
        keep = self._token_slice(multimask_output)
        outputs = decoder.run(None, feeds)
        if upscaler is None:  # export version 4 and older: the masks came with the scores
            masks, iou = outputs
            return ScoredPrompts(iou[:, keep], lambda rows, extent=None: top_left(_rows(masks, rows)[:, keep], extent))
        iou, features, weights = outputs
        weights = weights[:, keep]
        return ScoredPrompts(
            iou[:, keep], lambda rows, extent=None: self._masks(features, weights, rows, extent, upscaler)
        )

    def _token_slice(self, multimask_output: bool) -> slice:
        """The graphs give all four mask tokens: 1..3 for multimask output (always, for TinySAM), else 0."""
        return slice(1, None) if (multimask_output or self.always_multimask) else slice(0, 1)

    def _masks(
        self,
        features: np.ndarray,
        weights: np.ndarray,
        rows: np.ndarray,
        extent: LowResExtent | None,
        upscaler: ort.InferenceSession,
    ) -> np.ndarray:
        """Low-res logits len(rows) x M x L x L (or their top-left ``extent``) of the batch's mask features
        B x r x c x C and weights B x M x C/8 at ``rows``, made by the ``upscaler`` session (masks.onnx)."""
        if self._upscales_blocks:  # only the feature pixels under the extent are copied and upscaled
            feature_rows, feature_columns = feature_extent(extent, (features.shape[1], features.shape[2]))
            features = features[:, :feature_rows, :feature_columns]
        feeds = {"mask_features": np.ascontiguousarray(_rows(features, rows)), "mask_weights": np.ascontiguousarray(_rows(weights, rows))}
        return top_left(upscaler.run(None, feeds)[0], extent)

    def _feeds(
        self, embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray, mask_input: np.ndarray | None
    ) -> dict[str, np.ndarray]:
        batch = coords.shape[0]
        if coords.shape[1] == 0:
            # Mask-only prompt: the graph needs at least one token, so send a padding point (torch sends none;
            # the padding token shifts logits slightly).
            coords = np.zeros((batch, 1, 2), np.float32)
            labels = np.full((batch, 1), -1, np.int64)
        has_mask = mask_input is not None
        # The zero mask matches the embedding's rows and columns (a block of the grid, export version 8 on).
        mask_rows, mask_columns = 4 * embedding.shape[-2], 4 * embedding.shape[-1]
        return {
            "image_embeddings": np.ascontiguousarray(embedding, dtype=np.float32),
            "point_coords": np.ascontiguousarray(coords, dtype=np.float32),
            "point_labels": np.ascontiguousarray(labels, dtype=np.float32),
            "mask_input": (
                np.ascontiguousarray(mask_input, dtype=np.float32)
                if has_mask
                else np.zeros((1 if self._mask_broadcasts else batch, 1, mask_rows, mask_columns), np.float32)
            ),
            "has_mask_input": np.array([1.0 if has_mask else 0.0], np.float32),
        }


def session_options(threads: int, arena: bool = True) -> ort.SessionOptions:
    """Options of every session: all graph optimizations, ``threads`` intra-op threads, the CPU memory arena on or
    off, denormals flushed and no spinning after a run."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = arena
    # Softmax over peaked attention scores yields denormal floats, which x86 multiplies up to 5x slower
    # (the first decoder layer took 2.1 ms instead of 0.4 ms on some embeddings); values below 1e-38 do
    # not change a mask. ORT applies this to its threads and to the thread creating its first session.
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    # Each session has its own pool of intra-op threads, which by default spin for work after a run: in
    # everything mode the decoder's and the mask upscaler's runs alternate, and the idle pool's spinning
    # threads took the cores from the busy one (coins: 19.3 s -> 16.5 s end to end with this, 2 cores).
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


def _rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``array[rows]``, without a copy when ``rows`` are all of them in order (a mask feature is 4 MB a prompt)."""
    return array if np.array_equal(rows, np.arange(len(array))) else array[rows]
