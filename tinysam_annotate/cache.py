"""Content-addressed embedding cache: an in-memory LRU in front of an optional on-disk store.

The key hashes the model-view pixels (H x W x 3 uint8 RGB), their shape, the model identity
(architecture, weights hash, backend, precision) and the preprocessing version, so one changed pixel
or another model/precision is a miss. A disk entry's header names its key (which hashes the model
identity) and shape, and one checksum covers header and payload: a truncated or bit-flipped file, an
entry copied under another key's name or one whose shape the engine cannot use is counted, deleted and
recomputed (the README suggests shared cache folders on clusters, where that matters). Writes go to a temp
file that is renamed into place, so concurrent writers of one key never expose a partial file. A read-only or full directory
turns the disk store off with a warning; the memory cache keeps working.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends.base import ModelIdentity
from .io.atomic import atomic_write
from .paths import app_home

# Bump when resizing, normalisation or padding change: old embeddings then stop matching.
PREPROCESS_VERSION = "1"
_MAGIC = b"TSAEMB3\n"
_HEADER_LEN = struct.Struct("<I")

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``embeddings`` under :func:`~tinysam_annotate.paths.app_home`."""
    return app_home() / "embeddings"


def embedding_key(pixels: np.ndarray, identity: ModelIdentity) -> str:
    """Hex key of an H x W x 3 uint8 model view for one model identity."""
    digest = hashlib.sha256()  # hardware-accelerated (SHA-NI) on current x86 and ARM CPUs: ~1.6 GB/s here
    meta = [PREPROCESS_VERSION, identity.model_id, identity.weights_hash, identity.backend, identity.precision]
    digest.update(json.dumps(meta + [list(pixels.shape), str(pixels.dtype)]).encode())
    digest.update(np.ascontiguousarray(pixels).data)
    return digest.hexdigest()[:40]


@dataclass
class CacheStats:
    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    corrupt_entries: int = 0
    evictions: int = 0


class EmbeddingCache:
    """Memory LRU (``memory_bytes``) plus optional disk store (``directory``, capped at ``max_disk_bytes``)."""

    def __init__(
        self,
        directory: str | os.PathLike | None = None,
        memory_bytes: int = 256 << 20,
        max_disk_bytes: int = 2 << 30,
    ) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.memory_bytes = memory_bytes
        self.max_disk_bytes = max_disk_bytes
        self.stats = CacheStats()
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memory_used = 0
        self._lock = threading.Lock()
        self.disk_enabled = self.directory is not None
        if self.directory is not None:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                self._disable_disk(exc)

    # -- public API --------------------------------------------------------------------------

    def get(self, key: str, expected_shape: tuple[int | None, ...] | None = None) -> np.ndarray | None:
        """The cached embedding for ``key``, or None; with ``expected_shape`` (None entries match any size), an
        entry of another shape is a miss (counted in ``stats.corrupt_entries`` and deleted)."""
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
                self.stats.memory_hits += 1
                return hit
        loaded = self._read_disk(key, expected_shape) if self.disk_enabled else None
        if loaded is None:
            self.stats.misses += 1
            return None
        self.stats.disk_hits += 1
        self._remember(key, loaded)
        return loaded

    def put(self, key: str, embedding: np.ndarray) -> None:
        """Store an embedding in memory and, when enabled, on disk (atomically)."""
        embedding = np.ascontiguousarray(embedding, dtype=np.float32)
        embedding.setflags(write=False)
        self._remember(key, embedding)
        if self.disk_enabled:
            self._write_disk(key, embedding)

    def __contains__(self, key: str) -> bool:
        """Whether ``key`` is cached (in memory or on disk) without loading or counting it."""
        with self._lock:
            if key in self._memory:
                return True
        return self.disk_enabled and self.path_for(key).exists()

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()
            self._memory_used = 0

    def path_for(self, key: str) -> Path:
        if self.directory is None:
            raise ValueError("this cache has no disk directory")
        return self.directory / key[:2] / f"{key}.emb"

    # -- memory ------------------------------------------------------------------------------

    def _remember(self, key: str, embedding: np.ndarray) -> None:
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return
            self._memory[key] = embedding
            self._memory_used += embedding.nbytes
            while self._memory_used > self.memory_bytes and self._memory:
                _, old = self._memory.popitem(last=False)
                self._memory_used -= old.nbytes

    # -- disk --------------------------------------------------------------------------------

    def _disable_disk(self, exc: BaseException) -> None:
        if self.disk_enabled:  # warn once
            log.warning("embedding cache directory %s is not writable (%s); caching in memory only", self.directory, exc)
        self.disk_enabled = False

    def _read_disk(self, key: str, expected_shape: tuple[int | None, ...] | None) -> np.ndarray | None:
        path = self.path_for(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read cache entry %s: %s", path, exc)
            return None
        embedding = _decode_entry(data, key)
        if embedding is not None and expected_shape is not None and not _shape_fits(embedding.shape, expected_shape):
            embedding = None
        if embedding is None:
            self.stats.corrupt_entries += 1
            log.warning("cache entry %s is truncated, corrupted, another key's or of the wrong shape; recomputing", path)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # mtime is the LRU clock of the disk store
        return embedding

    def _write_disk(self, key: str, embedding: np.ndarray) -> None:
        try:
            with atomic_write(self.path_for(key)) as fh:
                fh.write(_encode_entry(key, embedding))
        except OSError as exc:
            self._disable_disk(exc)
            return
        self._evict_disk()

    def _evict_disk(self) -> None:
        assert self.directory is not None
        entries = []
        for path in self.directory.glob("*/*.emb"):
            try:
                st = path.stat()
            except OSError:
                continue
            entries.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_disk_bytes:
                break
            try:
                path.unlink()
                total -= size
                self.stats.evictions += 1
            except OSError:
                pass


def _shape_fits(shape: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    return len(shape) == len(expected) and all(e is None or e == n for n, e in zip(shape, expected, strict=True))


def _encode_entry(key: str, embedding: np.ndarray) -> bytes:
    payload = embedding.tobytes()
    fields = {"key": key, "shape": list(embedding.shape), "dtype": "float32"}
    header = json.dumps({**fields, "sha256": _checksum(fields, payload)}).encode()
    return _MAGIC + _HEADER_LEN.pack(len(header)) + header + payload


def _checksum(fields: dict, payload: bytes) -> str:
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    digest.update(payload)
    return digest.hexdigest()


def _decode_entry(data: bytes, key: str) -> np.ndarray | None:
    """The embedding in a disk entry, or None when the entry is truncated, corrupted, another key's or malformed."""
    start = len(_MAGIC) + _HEADER_LEN.size
    if len(data) < start or not data.startswith(_MAGIC):
        return None
    (header_len,) = _HEADER_LEN.unpack_from(data, len(_MAGIC))
    try:
        header = json.loads(data[start : start + header_len])
        entry_key, dims, dtype = str(header["key"]), [int(n) for n in header["shape"]], str(header["dtype"])
        checksum = str(header["sha256"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    fields = {"key": entry_key, "shape": dims, "dtype": dtype}
    shape = tuple(dims)
    if entry_key != key or dtype != "float32" or not 1 <= len(shape) <= 8 or min(shape) < 1:
        return None
    payload = data[start + header_len :]
    if len(payload) != 4 * int(np.prod(shape)) or _checksum(fields, payload) != checksum:
        return None
    return np.frombuffer(payload, dtype=np.float32).reshape(shape)
