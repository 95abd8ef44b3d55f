"""Choice of ONNX Runtime execution providers: TensorRT -> CUDA -> CPU, fallbacks reported, never silent.

Pure logic over the list of providers onnxruntime reports, so it is unit-tested without a GPU.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ProviderError

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEFAULT_ORDER = (TENSORRT, CUDA, CPU)
_ALIASES = {"tensorrt": TENSORRT, "trt": TENSORRT, "cuda": CUDA, "gpu": CUDA, "cpu": CPU}

log = logging.getLogger(__name__)


@dataclass
class ProviderPlan:
    """What will be asked of onnxruntime, and what was requested but is absent."""

    providers: list[tuple[str, dict]]
    requested: list[str]
    missing: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.providers]


def canonical_provider(name: str) -> str:
    """'cuda' -> 'CUDAExecutionProvider' etc.; full names pass through."""
    if name in DEFAULT_ORDER or name.endswith("ExecutionProvider"):
        return name
    try:
        return _ALIASES[name.lower()]
    except KeyError:
        raise ProviderError(f"unknown execution provider {name!r}; use one of tensorrt, cuda, cpu or a full ORT name") from None


def plan_providers(
    requested: list[str] | None,
    available: list[str],
    precision: str = "fp32",
    strict: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> ProviderPlan:
    """Order and configure providers.

    ``requested=None`` means TensorRT -> CUDA -> CPU, each only if available (absence is not a fallback).
    Explicitly requested providers that are absent raise ProviderError with ``strict``, else they are
    dropped, logged, and listed in ``missing``. CPU is always appended as the last resort unless strict.
    """
    explicit = requested is not None
    wanted = [canonical_provider(p) for p in requested] if requested is not None else list(DEFAULT_ORDER)
    missing = [p for p in wanted if p not in available]
    if explicit and missing and strict:
        raise ProviderError(
            f"requested execution providers not available: {', '.join(missing)}; this onnxruntime offers {', '.join(available)}"
        )
    chosen = [p for p in wanted if p in available]
    if not strict and CPU not in chosen and CPU in available:
        chosen.append(CPU)
    if not chosen:
        raise ProviderError(f"none of the requested providers {wanted} is available (available: {available})")
    if explicit and missing:
        log.warning("execution providers %s are not available; falling back to %s", ", ".join(missing), ", ".join(chosen))
    return ProviderPlan([(p, provider_options(p, precision, cache_dir)) for p in chosen], wanted, missing if explicit else [])


def provider_options(provider: str, precision: str, cache_dir: str | os.PathLike | None) -> dict:
    """Options per provider: TensorRT gets FP16/INT8 flags and persistent engine and timing caches."""
    if provider != TENSORRT:
        return {}
    options: dict = {"trt_fp16_enable": precision in ("fp16", "int8"), "trt_int8_enable": precision == "int8"}
    if cache_dir is not None:
        path = Path(cache_dir)
        path.mkdir(parents=True, exist_ok=True)
        options.update(
            trt_engine_cache_enable=True,
            trt_engine_cache_path=str(path),
            trt_timing_cache_enable=True,
            trt_timing_cache_path=str(path),
        )
    return options


def physical_cores() -> int:
    """Physical CPU cores available to this process (hyper-threads do not help ORT's GEMMs).

    ``$TINYSAM_ANNOTATE_THREADS`` caps it (batch workers sharing a machine set it to their CPU share).
    """
    cap = os.environ.get("TINYSAM_ANNOTATE_THREADS", "").strip()
    if cap.isdigit() and int(cap) > 0:
        return int(cap)
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:
        allowed = set(range(os.cpu_count() or 1))
    cores: set[tuple[str, str]] = set()
    try:
        processor = physical = core = None
        for line in Path("/proc/cpuinfo").read_text().splitlines() + [""]:
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "processor":
                processor = int(value)
            elif key == "physical id":
                physical = value
            elif key == "core id":
                core = value
            elif not line.strip() and processor is not None:
                if processor in allowed:
                    cores.add((physical or "0", core or str(processor)))
                processor = physical = core = None
    except (OSError, ValueError):
        pass
    return max(1, min(len(cores) or len(allowed), len(allowed)))
