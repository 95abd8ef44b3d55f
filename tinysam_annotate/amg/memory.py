"""How many prompts everything mode's decoder batches may hold at once so that the process stays within a memory
budget (engines that run several batches at once share these prompts out among them).

The decoder's peak memory grows with the batch: every prompt carries its own copy of the image tokens through
the two-way transformer and the upscaling. Measured with ONNX Runtime on the shipped TinySAM (CPU arena on,
``recipes/results/everything_memory.md``): ~54 MB per prompt for one decoder graph that upscales every prompt,
i.e. about 13 float32 copies of one prompt's 256 x 64 x 64 image-token tensor; the estimate below uses 14.
Engines that score first (ONNX folders of export version 5 on, the torch engine) hold more, measured the same way
with the scoring graph and the upscaling graph each keeping its arena and a batch's mask features held between
the two calls (coins at 512 x 512, where about half the prompts keep a mask; ~285 MB resident before the first
batch): 72-82 MB per prompt (batch 16: 1.44 GB, 22: 2.10 GB, 64: 5.34 GB; the arenas grow in steps); the
estimate uses 20 copies. Without the upscaling's arena the peak is lower but the upscaling runs at half speed.
End to end a batch of 64 is only a few percent faster than one of 16, so a conservative estimate costs little.
A fixed batch of 128 took a 512 x 512 image to 7 GB resident. With two batches at once on one-thread sessions
(2 cores) the same holds per prompt in flight: 7 + 7 prompts peaked at 1.11 GB, 10 + 10 at 1.57 GB (76 MB per
prompt), and larger batches were not faster (coins at 512 x 512: 12.4 s at 7 + 7, 12.1 s at 14 + 14).

ONNX Runtime's arenas keep a batch's peak for the next batch, and for the next image: what an engine's batches
left resident is credited to it (:func:`note_kept_memory`, :func:`kept_by`) so that its later images run the same
batch in the memory it already holds instead of counting that memory twice (a second image in one process had
dropped to batches of 1-4; coins in a process holding a second model: batch 1, 21.3 s instead of 13.1 s).
"""

from __future__ import annotations

import contextlib
import os
import weakref

DEFAULT_MEMORY_BUDGET = int(1.5 * 2**30)  # bytes, for the whole process
MAX_POINTS_PER_BATCH = 64
TOKEN_COPIES_PER_PROMPT = 14  # one decoder graph: every prompt's masks made in the same call
SCORES_FIRST_COPIES_PER_PROMPT = 20  # a scoring graph and an upscaling graph, the batch's features held between
EMBEDDING_CHANNELS = 256  # every SAM-family mask decoder


def decoder_bytes_per_prompt(low_res_size: int, scores_first: bool = False) -> int:
    """Peak decoder bytes one prompt adds to a batch, for low-res logits of ``low_res_size`` (256: 64 x 64 tokens),
    for an engine that scores before it upscales (``scores_first``) or one that makes every mask at once."""
    tokens = (low_res_size // 4) ** 2
    copies = SCORES_FIRST_COPIES_PER_PROMPT if scores_first else TOKEN_COPIES_PER_PROMPT
    return copies * EMBEDDING_CHANNELS * tokens * 4


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


_kept_by_engine: "weakref.WeakKeyDictionary[object, int]" = weakref.WeakKeyDictionary()


def kept_by(engine: object) -> int:
    """Bytes that ``engine``'s everything-mode batches left resident in this process (0 for one never run)."""
    try:
        return _kept_by_engine.get(engine, 0)
    except TypeError:  # an engine that cannot be weakly referenced gets no credit
        return 0


def note_kept_memory(engine: object, resident_before: int) -> None:
    """Credit ``engine`` with what the process holds now beyond ``resident_before``, measured just before its
    batches for an image started (its allocators' pools: ONNX Runtime's arenas keep their peak)."""
    with contextlib.suppress(TypeError):  # an engine that cannot be weakly referenced gets no credit
        _kept_by_engine[engine] = kept_by(engine) + max(0, resident_bytes() - resident_before)


def points_per_batch_within(budget: int, low_res_size: int, resident: int | None = None,
                            scores_first: bool = False) -> int:
    """The largest batch (1..MAX_POINTS_PER_BATCH) whose decoder peak fits in ``budget`` minus what the process
    already holds (``resident``, measured when not given)."""
    free = budget - (resident_bytes() if resident is None else resident)
    return max(1, min(MAX_POINTS_PER_BATCH, free // decoder_bytes_per_prompt(low_res_size, scores_first)))


def batch_for_engine(engine: object, budget: int, low_res_size: int, scores_first: bool = False) -> tuple[int, int]:
    """(batch, resident bytes now) for ``engine``'s next image: :func:`points_per_batch_within` with what the
    engine's earlier batches keep resident counted as available to it."""
    resident = resident_bytes()
    batch = points_per_batch_within(budget, low_res_size, resident=max(0, resident - kept_by(engine)),
                                    scores_first=scores_first)
    return batch, resident
