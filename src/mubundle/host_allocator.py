"""glibc malloc tuning for CPU sampling: keep freed activation buffers for reuse.

Sampling on the CPU allocates and frees (M, 64) float32 activations of ~4 MiB (2^14 muons
per generator call) several hundred times per second. glibc's malloc serves blocks that large
with ``mmap`` or trims them off the top of the heap when they are freed, so most new
activations are fresh pages that the kernel must fault in and zero one 4 KiB page at a time.
Measured on 2 cores (20 000 default primaries, ~148 000 muons, the shipped `full` model): 41 000
minor page faults and 0.16 s of system time per sample of 0.30-0.40 s. With the thresholds
below freed blocks stay in the heap: ~700 faults, 0.005 s system time, 20-30 % more events/s
(``benchmarks/generate_throughput.py``; ``--default-allocator`` measures without). Training
steps are unchanged within noise (``benchmarks/train_step.py``).

The cost: the process keeps up to ``trim_threshold_bytes`` of freed memory instead of
returning it to the system. The ``mubundle`` command applies this at start-up; Python API
users call :func:`tune_host_allocator` once (or set the environment variables
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` before starting Python).
"""

from __future__ import annotations

import ctypes
import platform

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: blocks below this come from the heap, not mmap (32 MiB: glibc's own maximum for its
#: dynamic threshold, accepted by every glibc)
MMAP_THRESHOLD_BYTES = 32 << 20
#: freed memory at the top of the heap kept for reuse before it is returned to the system
TRIM_THRESHOLD_BYTES = 256 << 20


def tune_host_allocator(
    mmap_threshold_bytes: int = MMAP_THRESHOLD_BYTES, trim_threshold_bytes: int = TRIM_THRESHOLD_BYTES
) -> str:
    """Set glibc's mmap and trim thresholds for this process; returns what was done (one line).

    A no-op with the reason in the returned line where the C library is not glibc (macOS,
    musl) or refuses a value. Process-wide and idempotent; it changes speed, never results.
    """
    for value in (mmap_threshold_bytes, trim_threshold_bytes):
        if not 0 <= int(value) < 2**31:
            raise ValueError(f"allocator threshold {value} bytes is outside 0 .. 2^31 - 1 (a C int)")
    library, _ = platform.libc_ver()
    if library != "glibc":
        return f"host allocator not tuned: C library is {library or 'unknown'}, not glibc"
    try:
        libc = ctypes.CDLL(None)  # the running process's own symbols (glibc's mallopt)
        mallopt = libc.mallopt
    except (OSError, AttributeError) as error:
        return f"host allocator not tuned: mallopt unavailable ({error})"
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    refused = [
        name
        for name, parameter, value in (
            ("M_MMAP_THRESHOLD", _M_MMAP_THRESHOLD, mmap_threshold_bytes),
            ("M_TRIM_THRESHOLD", _M_TRIM_THRESHOLD, trim_threshold_bytes),
        )
        if mallopt(parameter, int(value)) != 1
    ]
    if refused:
        return f"host allocator partly tuned: glibc refused {', '.join(refused)}"
    return (
        f"host allocator tuned: glibc mmap threshold {mmap_threshold_bytes >> 20} MiB, "
        f"trim threshold {trim_threshold_bytes >> 20} MiB"
    )
