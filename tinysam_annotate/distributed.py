"""Dataset-scale batch annotation on Ray: everything mode, box prompts and embedding precompute.

Ray Data runs an actor pool (``ActorPoolStrategy``), each actor holding one engine (model + generator)
built once; the driver streams finished images into the output's journal (:mod:`.io.coco_journal`, the
local engine's too: one fsynced line per image) and writes the COCO file from it at the end, or when
interrupted. A rerun reads the COCO file and any journal a crash left and submits only the missing images, so
an interrupted run loses nothing. Actors that die are restarted by Ray and their images retried; the journal
keeps the first result of each image, so a retried image is never counted twice.

Ray is optional (``pip install tinysam-annotate[distributed]``); this module imports it lazily.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from tqdm import tqdm

from .batch import BatchResult, annotate_image, check_unique_names
from .errors import TinySamAnnotateError
from .io.coco_journal import CocoJournal, ImageAnnotations

RAY_HINT = "the Ray engine needs Ray: pip install 'tinysam-annotate[distributed]' (or pip install 'ray[data]')"


class RayUnavailableError(TinySamAnnotateError):
    """``--engine ray`` was asked for but Ray is not installed."""


def require_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayUnavailableError(RAY_HINT) from exc
    return ray


@dataclass(frozen=True)
class EngineSpec:
    """What each actor loads: a model (registry name, checkpoint or ONNX folder) and the generator options."""

    model: str | None = None
    backend: str | None = None  # None: service.default_engine (ONNX INT8 when onnxruntime is installed)
    precision: str | None = None
    mode: str = "hierarchical"
    options: dict[str, Any] = field(default_factory=dict)
    threads: int = 1  # intra-op threads per actor (one actor per CPU is the usual layout)
    loader: Callable[[], Any] | None = None  # a picklable factory for a custom engine (replaces model/backend)

    def load_backend(self) -> Any:
        if self.loader is not None:
            return self.loader()
        from .service import open_engine

        return open_engine(self.model, self.backend, self.precision)


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start a local cluster; "auto" or "ray://host:10001": join one
    num_actors: int = 2
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0


# ------------------------------------------------------------------------------------------ actors


def _limit_threads(threads: int) -> None:
    """Keep each actor to its CPU share (torch and ONNX Runtime would otherwise each take every core)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["TINYSAM_ANNOTATE_THREADS"] = str(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass


class EverythingActor:
    """A Ray Data callable class: one engine per actor; a batch of image paths -> one JSON result per image."""

    def __init__(self, spec: EngineSpec, labels_dir: str | None = None, fault: Callable[[str], None] | None = None) -> None:
        _limit_threads(spec.threads)
        from .service import everything_generator

        self.generator = everything_generator(spec.load_backend(), spec.mode, output_mode="coco_rle", **spec.options)
        self.labels_dir = labels_dir
        self.fault = fault  # tests inject actor deaths here

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        results = []
        for path in batch["path"]:
            if self.fault is not None:
                self.fault(str(path))
            results.append(json.dumps(asdict(annotate_image(Path(str(path)), self.generator, self.labels_dir))))
        return {"path": [str(p) for p in batch["path"]], "result": results}


class BoxesActor:
    """A Ray Data callable class: image path + its detections (JSON) -> box-prompt masks (JSON result)."""

    def __init__(self, spec: EngineSpec, fault: Callable[[str], None] | None = None) -> None:
        from .predictor import SamPredictor

        _limit_threads(spec.threads)
        self.predictor = SamPredictor(spec.load_backend())
        self.fault = fault

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        from .batch import Detection, annotate_boxes_image

        results = []
        for path, payload in zip(batch["path"], batch["payload"], strict=True):
            if self.fault is not None:
                self.fault(str(path))
            detections = [Detection(tuple(d["bbox"]), d["category_id"], d["score"]) for d in json.loads(str(payload))]
            results.append(json.dumps(asdict(annotate_boxes_image(Path(str(path)), detections, self.predictor))))
        return {"path": [str(p) for p in batch["path"]], "result": results}


class EmbedActor:
    """Computes embeddings into a shared disk cache (the format the GUIs read)."""

    def __init__(self, spec: EngineSpec, cache_dir: str) -> None:
        from .cache import EmbeddingCache
        from .predictor import SamPredictor

        _limit_threads(spec.threads)
        self.predictor = SamPredictor(spec.load_backend(), cache=EmbeddingCache(cache_dir))

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        from .batch import embed_image

        paths = [str(p) for p in batch["path"]]
        return {"path": paths, "result": [embed_image(Path(p), self.predictor) for p in paths]}


def run_actor_pool(ray_options: RayOptions, paths: list[str], actor: type, constructor_kwargs: dict[str, Any],
                   payloads: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Stream {"path", "result"} rows of ``actor`` over ``paths`` (with per-path ``payloads``) on a Ray actor pool."""
    ray = require_ray()
    if not ray.is_initialized():
        if ray_options.address:
            ray.init(address=ray_options.address, ignore_reinit_error=True, log_to_driver=False)
        else:
            ray.init(num_cpus=max(1, int(ray_options.num_actors * ray_options.cpus_per_actor)), include_dashboard=False,
                     ignore_reinit_error=True, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours counts images
    items = [{"path": p} if payloads is None else {"path": p, "payload": q} for p, q in zip(paths, payloads or paths, strict=True)]
    dataset = ray.data.from_items(items, override_num_blocks=max(1, len(paths)))
    mapped = dataset.map_batches(
        actor,
        fn_constructor_kwargs=constructor_kwargs,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=ray_options.num_actors),
        num_cpus=ray_options.cpus_per_actor,
        num_gpus=ray_options.gpus_per_actor or None,
    )  # Ray Data's actor pools default to max_restarts=-1 and max_task_retries=-1: dead actors are replaced and
    # the images they held are retried (tests/test_distributed.py kills one to check)
    yield from mapped.iter_rows()


# ------------------------------------------------------------------------------------------ driver


def annotate_folder_ray(images: list[Path], out: str | os.PathLike, spec: EngineSpec, ray_options: RayOptions,
                        labels_dir: str | os.PathLike | None = None, progress: bool = True,
                        fault: Callable[[str], None] | None = None) -> BatchResult:
    """Everything mode on a Ray actor pool into one COCO file; resumable; the same COCO as the local engine.

    Images already in ``out`` or in its journal are skipped. The COCO file lists images in input order,
    whatever order the actors finish in.
    """
    if labels_dir is not None:
        Path(labels_dir).mkdir(parents=True, exist_ok=True)
    kwargs = {"spec": spec, "labels_dir": str(labels_dir) if labels_dir else None, "fault": fault}
    return _pool_to_coco(images, Path(out), ray_options, EverythingActor, kwargs, None, "everything (ray)", progress)


def annotate_boxes_ray(images: list[Path], detections: dict[str, list[Any]], categories: list[dict[str, Any]],
                       out: str | os.PathLike, spec: EngineSpec, ray_options: RayOptions, progress: bool = True,
                       fault: Callable[[str], None] | None = None) -> BatchResult:
    """Box-prompt masks for every image with detections, on a Ray actor pool; resumable like everything mode."""
    with_boxes = [p for p in images if p.name in detections]
    payloads = {p.name: json.dumps([asdict(d) for d in detections[p.name]]) for p in with_boxes}
    result = _pool_to_coco(with_boxes, Path(out), ray_options, BoxesActor, {"spec": spec, "fault": fault}, payloads,
                           "boxes (ray)", progress, categories)
    result.skipped += [p.name for p in images if p.name not in detections]
    return result


def _pool_to_coco(images: list[Path], out: Path, ray_options: RayOptions, actor: type, kwargs: dict[str, Any],
                  payloads: dict[str, str] | None, desc: str, progress: bool,
                  categories: list[dict[str, Any]] | None = None) -> BatchResult:
    check_unique_names(images)
    coco = CocoJournal(out, categories)
    result = BatchResult([], [], {}, 0)
    todo = [p for p in images if not coco.is_done(p.name)]
    result.skipped = [p.name for p in images if coco.is_done(p.name)]
    try:
        with tqdm(total=len(todo), desc=desc, unit="image", disable=not progress) as bar:
            if todo:
                rows = run_actor_pool(ray_options, [str(p) for p in todo], actor, kwargs,
                                      [payloads[p.name] for p in todo] if payloads is not None else None)
                for row in rows:
                    record = ImageAnnotations(**json.loads(row["result"]))
                    if coco.add(record):  # a retried image's second result is dropped
                        bar.update(1)
                        if record.error is None:
                            result.processed.append(record.file_name)
                            result.annotations += len(record.annotations)
                        else:
                            result.failed[record.file_name] = record.error
    finally:
        coco.finish([p.name for p in images])  # input order, whatever order the actors finished in
    return result


def embed_folder_ray(images: list[Path], cache_dir: str | os.PathLike, spec: EngineSpec, ray_options: RayOptions,
                     progress: bool = True) -> dict[str, str]:
    """Precompute embeddings of ``images`` into ``cache_dir`` on a Ray actor pool; {file: computed|cached|error}."""
    status: dict[str, str] = {}
    kwargs = {"spec": spec, "cache_dir": str(cache_dir)}
    with tqdm(total=len(images), desc="embed (ray)", unit="image", disable=not progress) as bar:
        for row in run_actor_pool(ray_options, [str(p) for p in images], EmbedActor, kwargs):
            if row["path"] not in status:
                status[row["path"]] = row["result"]
                bar.update(1)
    return status
