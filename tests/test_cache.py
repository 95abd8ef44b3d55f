"""Embedding cache: keys, corruption detection, atomic concurrent writes, degraded modes."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
from dataclasses import replace

import numpy as np
import pytest

from tinysam_annotate import SamPredictor
from tinysam_annotate.backends.base import ModelIdentity
from tinysam_annotate.cache import EmbeddingCache, embedding_key

from .conftest import CountingBackend

IDENTITY = ModelIdentity("vit_t", "abc123", "torch", "fp32")


def test_one_changed_pixel_misses(scene):
    changed = scene.copy()
    changed[5, 7, 1] ^= 1
    assert embedding_key(scene, IDENTITY) != embedding_key(changed, IDENTITY)
    assert embedding_key(scene, IDENTITY) == embedding_key(scene.copy(), IDENTITY)


@pytest.mark.parametrize("field, value", [("model_id", "vit_b"), ("weights_hash", "def"), ("backend", "onnx"), ("precision", "int8")])
def test_other_model_or_precision_misses(scene, field, value):
    assert embedding_key(scene, IDENTITY) != embedding_key(scene, replace(IDENTITY, **{field: value}))


def test_shape_is_part_of_the_key():
    flat = np.zeros((4, 6, 3), np.uint8)
    assert embedding_key(flat, IDENTITY) != embedding_key(flat.reshape(6, 4, 3), IDENTITY)


def test_predictor_hit_skips_the_encoder(tiny_backend, scene, tmp_path):
    backend = CountingBackend(tiny_backend)
    cache = EmbeddingCache(tmp_path)
    p = SamPredictor(backend, cache=cache)
    p.set_image(scene)
    first = p.features
    p.set_image(scene.copy())
    assert backend.encodes == 1 and p.last_cache_hit and cache.stats.memory_hits == 1
    changed = scene.copy()
    changed[0, 0, 0] += 1
    p.set_image(changed)
    assert backend.encodes == 2 and not p.last_cache_hit
    # A new process-like cache over the same directory reads from disk.
    p2 = SamPredictor(backend, cache=EmbeddingCache(tmp_path))
    p2.set_image(scene)
    assert backend.encodes == 2 and p2.cache.stats.disk_hits == 1
    assert np.array_equal(p2.features, first)


@pytest.mark.parametrize("damage", ["truncate", "bitflip", "garbage"])
def test_damaged_entry_is_detected_and_recomputed(tiny_backend, scene, tmp_path, damage):
    backend = CountingBackend(tiny_backend)
    p = SamPredictor(backend, cache=EmbeddingCache(tmp_path))
    p.set_image(scene)
    reference = p.features.copy()
    path = p.cache.path_for(embedding_key(scene, backend.identity))
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) - 1000]
    elif damage == "bitflip":
        data[len(data) // 2] ^= 0x10
    else:
        data = bytearray(b"\x00" * 64)
    path.write_bytes(bytes(data))

    fresh = SamPredictor(backend, cache=EmbeddingCache(tmp_path))
    fresh.set_image(scene)
    assert backend.encodes == 2 and fresh.cache.stats.corrupt_entries == 1
    assert np.allclose(fresh.features, reference)
    # The recomputed entry replaced the damaged one.
    assert EmbeddingCache(tmp_path).get(embedding_key(scene, backend.identity)) is not None


def _rewrite_header(path, key=None, shape=None):
    """A well-formed entry whose header says another key or shape, with a valid checksum (a copied or forged file)."""
    from tinysam_annotate import cache as cache_module

    data = path.read_bytes()
    start = len(cache_module._MAGIC) + cache_module._HEADER_LEN.size
    (header_len,) = cache_module._HEADER_LEN.unpack_from(data, len(cache_module._MAGIC))
    header = json.loads(data[start : start + header_len])
    payload = data[start + header_len :]
    fields = {"key": key or header["key"], "shape": shape or header["shape"], "dtype": "float32"}
    new_header = json.dumps({**fields, "sha256": cache_module._checksum(fields, payload)}).encode()
    path.write_bytes(cache_module._MAGIC + cache_module._HEADER_LEN.pack(len(new_header)) + new_header + payload)


def test_entries_are_bound_to_their_key_and_shape(tiny_backend, scene, tmp_path):
    """An entry copied under another key's name, or whose header claims a shape the engine cannot use, is a
    counted miss that is recomputed and replaced, never served."""
    backend = CountingBackend(tiny_backend)
    p = SamPredictor(backend, cache=EmbeddingCache(tmp_path))
    p.set_image(scene)
    other = np.ascontiguousarray(scene[::-1])
    p.set_image(other)
    assert backend.encodes == 2
    here, there = (p.cache.path_for(embedding_key(img, backend.identity)) for img in (scene, other))
    there.write_bytes(here.read_bytes())  # scene's embedding under other's name
    _, channels, side, _ = p.features.shape
    # Copied; a header whose shape has the right size but the wrong layout; negative dimensions.
    for damage in ("copied", dict(shape=[1, side, channels, side]), dict(shape=[-1, -channels, side, side])):
        if damage != "copied":
            _rewrite_header(there, **damage)  # on the recomputed, valid entry: its own key, a forged shape
        fresh = SamPredictor(backend, cache=EmbeddingCache(tmp_path))
        fresh.set_image(other)
        assert fresh.cache.stats.corrupt_entries == 1 and fresh.cache.stats.disk_hits == 0
        assert fresh.features.shape[2:] == (tiny_backend.low_res_size // 4,) * 2
        assert EmbeddingCache(tmp_path).get(embedding_key(other, backend.identity)) is not None  # replaced
    assert backend.encodes == 2 + 3


def _writer(directory: str, key: str, value: float, rounds: int) -> None:
    cache = EmbeddingCache(directory, memory_bytes=0)
    payload = np.full((1, 256, 64, 64), value, np.float32)
    for _ in range(rounds):
        cache.put(key, payload)


@pytest.mark.slow
def test_concurrent_writers_never_expose_a_partial_file(tmp_path):
    key = "ab" + "0" * 38
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_writer, args=(str(tmp_path), key, float(v), 40)) for v in (1.0, 2.0)]
    for w in writers:
        w.start()
    reader = EmbeddingCache(tmp_path, memory_bytes=0)
    seen = set()
    while any(w.is_alive() for w in writers):
        got = reader.get(key)
        if got is not None:
            values = np.unique(got)
            assert len(values) == 1 and values[0] in (1.0, 2.0)
            seen.add(float(values[0]))
    for w in writers:
        w.join()
        assert w.exitcode == 0
    assert reader.stats.corrupt_entries == 0
    assert reader.get(key) is not None
    assert not list(tmp_path.glob("*/.*.tmp"))


def test_unusable_directory_falls_back_to_memory(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = EmbeddingCache(blocker / "cache")
    assert not cache.disk_enabled
    cache.put("k" * 40, np.ones((1, 4), np.float32))
    assert cache.get("k" * 40) is not None


def test_full_disk_falls_back_to_memory(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    cache.put("ab" * 20, np.ones((1, 8), np.float32))
    assert not cache.disk_enabled
    assert cache.get("ab" * 20) is not None
    assert not list(tmp_path.glob("*/*"))  # no temp file left behind


def test_disk_size_cap_evicts_least_recently_used(tmp_path):
    entry = np.zeros((1, 1000), np.float32)  # ~4 kB per entry
    cache = EmbeddingCache(tmp_path, memory_bytes=0, max_disk_bytes=3 * 4200)
    keys = [f"{i:02d}" + "0" * 38 for i in range(5)]
    for i, key in enumerate(keys):
        cache.put(key, entry)
        os.utime(cache.path_for(key), (1000 + i, 1000 + i))
    cache.put("99" + "0" * 38, entry)
    remaining = {p.stem for p in tmp_path.glob("*/*.emb")}
    assert keys[0] not in remaining and keys[1] not in remaining
    assert "99" + "0" * 38 in remaining and cache.stats.evictions >= 2


def test_memory_lru_is_bounded():
    cache = EmbeddingCache(None, memory_bytes=3 * 400)
    for i in range(10):
        cache.put(str(i), np.zeros((100,), np.float32))
    assert cache.get("0") is None and cache.get("9") is not None


def test_zero_memory_budget_disables_the_memory_cache():
    cache = EmbeddingCache(None, memory_bytes=0)
    cache.put("a" * 40, np.zeros((4,), np.float32))
    assert cache.get("a" * 40) is None and cache.stats.misses == 1
