"""Work on a few items at once and hand the results back in the items' order."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_in_order(function: Callable[[Item], Result], items: Iterable[Item], workers: int) -> Generator[Result, None, None]:
    """``function(item)`` for each item, yielded in the items' order, with up to ``workers`` items computed at once
    on threads (``workers`` <= 1: one after the other on the caller's thread).

    The caller may stop early (an exception in its loop, or ``close()``): items not started are dropped and the
    running ones finish before this returns, so no work outlives the loop. An exception raised by ``function`` is
    raised here, at its item's turn.
    """
    if workers <= 1:
        yield from map(function, items)
        return
    pending: deque[Future[Result]] = deque()
    queue = iter(items)
    with ThreadPoolExecutor(workers, thread_name_prefix="tinysam-batch") as pool:
        try:
            pending.extend(pool.submit(function, item) for item in itertools.islice(queue, workers))
            while pending:
                result = pending.popleft().result()
                for item in queue:  # keep every worker busy while the caller handles this result
                    pending.append(pool.submit(function, item))
                    break
                yield result
        finally:
            for future in pending:
                future.cancel()
