"""Process-level settings that make CPU inference and training faster.

glibc serves every allocation above 32 MiB with a fresh ``mmap`` and gives it back on free,
so each large activation of a network is page-faulted and zeroed by the kernel again on every
forward pass. At 512×512 LR that doubled ICONet's fp32 forward time on our 2-core CPU
(benchmarks/complexity.py). :func:`keep_freed_memory` tells glibc to serve large blocks from
its heap and keep freed memory for reuse — the effect that PyTorch's CPU performance guide
gets from jemalloc or tcmalloc. It costs resident memory (freed blocks are not returned to
the OS). Call it once, at the start of a process that you own (the CLI, a benchmark); a
library import never calls it.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Make glibc reuse freed memory instead of unmapping it. Returns False where not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_MAX, 0) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1 and ok
    return ok
