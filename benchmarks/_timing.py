"""Shared timing helper of the benchmark scripts."""

from __future__ import annotations

import time
from typing import Callable


def timeit(fn: Callable[[], object], repeats: int) -> float:
    """Mean seconds per call of ``fn`` over ``repeats`` calls, after one warm-up call."""
    fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats
