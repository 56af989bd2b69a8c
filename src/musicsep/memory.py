"""Process-wide memory allocator settings for the CPU work of training and separation."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_LARGEST = 2**31 - 1


def reuse_freed_memory() -> bool:
    """Keep freed blocks in the process's heap for the next allocation instead
    of giving them back to the system.

    glibc's malloc serves every block above its mmap threshold (at most 32 MB)
    with fresh pages from the kernel and unmaps it on free; separation and
    training allocate blocks of tens to hundreds of megabytes (a batch of
    spectrograms, masks, LSTM gate buffers) at every step, so each step pays a
    page fault per 4 KiB page again. Raising the mmap and trim thresholds to
    2 GiB makes freed blocks reusable, so the steps stop paying those page
    faults and the system time they cost. The cost is memory: the process
    keeps its heap until it exits, and glibc's aligned allocations fragment
    it, so its peak grows (the speed-up and the peak, measured on
    separations: ``benchmarks/RESULTS.md``, allocator).

    Applied by the command line (so by every workflow job); the environment
    variable ``MUSICSEP_MALLOC=system`` keeps glibc's defaults. A no-op
    returning False there and where the C library is not glibc (macOS, musl).
    """
    if not sys.platform.startswith("linux") or os.environ.get("MUSICSEP_MALLOC") == "system":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _LARGEST)) and bool(mallopt(_M_TRIM_THRESHOLD, _LARGEST))
