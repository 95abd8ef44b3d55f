"""File digests for cache keys and manifests (torch-free: the ONNX path needs them)."""

from __future__ import annotations

import hashlib
import os
from typing import Any


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def state_dict_digest(model: Any) -> str:
    """A stable hex digest of a torch module's weights, for cache keys of models not loaded from a file.

    Duck-typed (``model.state_dict()`` of tensors with ``.detach().cpu().numpy()``): this module stays torch-free."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
