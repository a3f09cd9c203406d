"""Keep a long-running process's resident memory flat (glibc's allocator; a no-op elsewhere).

A server that runs requests on many threads gets one malloc arena per thread (up to 8 per core),
and freed buffers (decoded frames, MTCNN batches of ever new shapes) stay resident in them:
`limit_arenas` (call once at start-up, before the worker threads start) caps the arenas and
`release_memory` (call after a request) hands freed heap pages back to the system.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_ARENA_MAX = -8  # glibc's mallopt parameter


@functools.lru_cache(maxsize=1)
def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim, libc.mallopt  # glibc only
        return libc
    except (OSError, AttributeError):
        return None


def limit_arenas(n: int = 2) -> bool:
    """At most n malloc arenas for this process from now on (MALLOC_ARENA_MAX without restarting)."""
    libc = _libc()
    return bool(libc and libc.mallopt(M_ARENA_MAX, int(n)))


def release_memory() -> bool:
    """Return freed heap memory to the system (glibc's malloc_trim(0)); True when some was."""
    libc = _libc()
    return bool(libc and libc.malloc_trim(0))
