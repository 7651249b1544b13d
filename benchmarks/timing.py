"""Timing helper shared by the benchmarks."""

from __future__ import annotations

import time
from typing import Callable


def best_time(fn: Callable[[], object], repeats: int) -> float:
  """Best wall time (seconds) of ``fn()`` over ``repeats`` runs, after one warm-up.

  ``fn`` must block until its result is ready (wrap JAX calls in
  ``jax.block_until_ready``).
  """
  fn()  # warm-up / compile
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return min(times)
