"""The teacher's image embeddings, computed once per (image, flip) and cached on disk as fp16 .npy files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from tinysam_annotate.build import state_dict_digest
from tinysam_annotate.io.atomic import atomic_write
from tinysam_annotate.modeling import Sam

from .data import TrainSample


class TeacherEmbeddings:
    """``get(sample)`` -> C x g x g float32 teacher embedding; keyed by teacher weights and sample key."""

    def __init__(self, teacher: Sam, folder: str | os.PathLike) -> None:
        self.teacher = teacher
        self.folder = Path(folder) / f"{state_dict_digest(teacher)[:16]}-{teacher.img_size}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.computed = 0

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npy"

    def get(self, sample: TrainSample) -> torch.Tensor:
        path = self.path(sample.key)
        if path.exists():
            return torch.from_numpy(np.load(path).astype(np.float32))
        with torch.no_grad():
            device = next(self.teacher.parameters()).device
            embedding = self.teacher.image_encoder(sample.image[None].to(device))[0].float().cpu()
        with atomic_write(path) as fh:
            np.save(fh, embedding.numpy().astype(np.float16))
        self.computed += 1
        return embedding.half().float()  # the same rounding as a cache hit

    def precompute(self, samples, total: int | None = None, progress: bool = True) -> int:
        """Fill the cache for an iterable of TrainSamples; returns how many were computed."""
        before = self.computed
        for sample in tqdm(samples, total=total, desc="teacher embeddings", disable=not progress):
            self.get(sample)
        return self.computed - before
