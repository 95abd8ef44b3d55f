"""How many prompts one everything-mode decoder batch may hold so that the process stays within a memory budget.

The decoder's peak memory grows with the batch: every prompt carries its own copy of the image tokens through
the two-way transformer and the upscaling. Measured with ONNX Runtime on the shipped TinySAM (CPU arena on,
``recipes/results/everything_memory.md``): ~54 MB per prompt, i.e. about 13 float32 copies of one prompt's
256 x 64 x 64 image-token tensor; the estimate below uses 14. A fixed batch of 128 took a 512 x 512 image to
7 GB resident; batches of 16 decode as fast per prompt as batches of 64.
"""

from __future__ import annotations

import os

DEFAULT_MEMORY_BUDGET = int(1.5 * 2**30)  # bytes, for the whole process
MAX_POINTS_PER_BATCH = 64
TOKEN_COPIES_PER_PROMPT = 14
EMBEDDING_CHANNELS = 256  # every SAM-family mask decoder


def decoder_bytes_per_prompt(low_res_size: int) -> int:
    """Peak decoder bytes one prompt adds to a batch, for low-res logits of ``low_res_size`` (256: 64 x 64 tokens)."""
    tokens = (low_res_size // 4) ** 2
    return TOKEN_COPIES_PER_PROMPT * EMBEDDING_CHANNELS * tokens * 4


def resident_bytes() -> int:
    """This process's resident memory now (Linux /proc); its peak so far elsewhere (a safe over-estimate)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux KiB


def points_per_batch_within(budget: int, low_res_size: int, resident: int | None = None) -> int:
    """The largest batch (1..MAX_POINTS_PER_BATCH) whose decoder peak fits in ``budget`` minus what the process
    already holds (``resident``, measured when not given)."""
    free = budget - (resident_bytes() if resident is None else resident)
    return max(1, min(MAX_POINTS_PER_BATCH, free // decoder_bytes_per_prompt(low_res_size)))
