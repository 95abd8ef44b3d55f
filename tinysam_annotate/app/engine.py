"""One shared model per (model, backend, precision), serialised by a lock, for all app sessions."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..backends.base import Backend
from ..cache import EmbeddingCache
from ..predictor import SamPredictor
from ..service import default_engine
from .memory import pixel_limit


@dataclass(frozen=True)
class AppConfig:
    """Server limits and defaults. Everything a public deployment needs to bound is here."""

    model: str = "tinysam-synth"
    backend: str = field(default_factory=lambda: default_engine()[0])  # the CLI's default too
    precision: str = field(default_factory=lambda: default_engine()[1])
    max_file_size: str = "25mb"  # refused by the upload route before the handler runs
    memory_budget_bytes: int = 4 * 2**30  # the working memory of all sessions' images together (app/memory.py)
    queue_size: int = 16  # requests waiting beyond this get a "busy" error
    cache_bytes: int = 512 * 2**20
    examples: tuple[str, ...] = ("coins", "cells", "tissue")  # handlers.EXAMPLES: bundled, no download
    session_lifetime_s: int = 6 * 3600  # an idle session's state and any file the app served are deleted after this

    @property
    def max_pixels(self) -> int:
        """Per image (plane), checked from the file's header before decoding; derived from the memory budget."""
        return pixel_limit(self.memory_budget_bytes)


class LockedBackend:
    """A backend whose encode/decode calls run one at a time (sessions time their own calls: SamPredictor)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.identity, self.image_size = inner.identity, inner.image_size
        self.low_res_size, self.always_multimask = inner.low_res_size, inner.always_multimask
        self.device, self.device_description = inner.device, inner.device_description
        self.as_native = inner.as_native

    def encode(self, image: np.ndarray) -> np.ndarray:
        with self.lock:
            return self.inner.encode(image)

    def decode(self, *args: Any) -> Any:
        with self.lock:
            return self.inner.decode(*args)


class Engine:
    """A loaded model shared by every session; each session gets its own predictor over it."""

    def __init__(self, backend: Backend, cache: EmbeddingCache) -> None:
        self.backend = LockedBackend(backend)
        self.cache = cache

    def predictor(self) -> SamPredictor:
        return SamPredictor(self.backend, cache=self.cache)

    @property
    def description(self) -> str:
        ident = self.backend.identity
        return f"{ident.model_id} · {ident.backend} {ident.precision} · {self.backend.device_description}"


class EngineRegistry:
    """Engines by (model, backend, precision), loaded on first use; shared by all sessions of one app."""

    def __init__(self, config: AppConfig, loader: Callable[[str, str, str], Backend] | None = None) -> None:
        from ..loading import load_model

        self.config = config
        self.cache = EmbeddingCache(directory=None, memory_bytes=config.cache_bytes)  # memory only: nothing per user on disk
        self._loader = loader or (lambda m, b, p: load_model(m, backend=b, precision=p))
        self._engines: dict[tuple[str, str, str], Engine] = {}
        self._loading: dict[tuple[str, str, str], threading.Lock] = {}
        self._lock = threading.Lock()  # guards the two dicts only, never held while a model loads

    def get(self, model: str | None = None, backend: str | None = None, precision: str | None = None) -> Engine:
        """The engine for the key, loaded by the first caller; a load (an ONNX export takes seconds) holds up only
        the sessions that want that same engine."""
        key = (model or self.config.model, backend or self.config.backend, precision or self.config.precision)
        with self._lock:
            if key in self._engines:
                return self._engines[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                if key in self._engines:  # loaded by the caller this one waited for
                    return self._engines[key]
            engine = Engine(self._loader(*key), self.cache)
            with self._lock:
                self._engines[key] = engine
                self._loading.pop(key, None)
            return engine
