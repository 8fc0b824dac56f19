"""How the engine's arrays come back: freed memory kept by the C allocator for the next step's arrays."""

import ctypes
import os


def keep_freed_memory():
    """Let glibc's malloc keep up to 256 MB of freed memory for reuse (unless MALLOC_TRIM_THRESHOLD_ is set).
    Its default returns a step's freed arrays to the system and faults them back in on the next step."""
    if "MALLOC_TRIM_THRESHOLD_" in os.environ or not hasattr(libc := ctypes.CDLL(None), "mallopt"):
        return
    libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD: arrays up to 32 MB come from the reusable heap
    libc.mallopt(-1, 256 * 2**20)  # M_TRIM_THRESHOLD: give memory back only past 256 MB free
