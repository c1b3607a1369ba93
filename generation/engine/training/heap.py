"""Keep freed heap memory in the training process instead of handing it back to the kernel.

A training step allocates and frees the same large activations and gradients every step. With
glibc's defaults, blocks above its dynamic mmap threshold are mapped and unmapped on each use,
and freed memory at the top of the heap is trimmed, so every step faults its pages in again and
the kernel zeroes them: 3.6-3.8 million page faults and 8 s of system time for 30 steps of the
demo recipe's stage 2 in float32 on the 2-vCPU AMD EPYC of 2026-11-27 (`/usr/bin/time` on
`train var --var-steps 30 --train-images 2000`). Keeping freed memory in the process cut that
to 0.5-0.8 million faults and 2-2.5 s, and the wall time by 2.5, 6 and 9 % in three A/B pairs,
for 0.12 GB more peak RSS (2.33 against 2.21 GB).

Sampling gained nothing measurable from a first version of it on that machine (mmap threshold at
glibc's 32 MiB cap instead of no mmap, otherwise the same): 14.1-14.2 s per d16 image either way,
with peak RSS 0.25 GB higher. On the AVX-512 Intel Xeon of the same day this version saved about
0.15 s of 4.1 s per image, but a worker's peak RSS rose to 3.16-3.20 GB, over the engine's 3 GB
budget; huge pages (`generation/engine/huge_pages.py`) took most of that gain at no memory
cost. So only the training CLI (its evaluation included) turns it on. The setting
is process-wide and has no effect on results: it changes where memory comes from, not what is
computed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# mallopt(3) parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4

# Every block from the heap (M_MMAP_MAX 0: glibc caps the mmap threshold at 32 MiB, and mapped
# blocks above it were faulted in anew each step), grown 256 MiB at a time and never trimmed
# (mallopt takes a C int, so "never" is INT_MAX).
TOP_PAD = 256 << 20
TRIM_THRESHOLD = 2**31 - 1


def retain_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (process-wide); True where it was applied.

    Elsewhere (musl, macOS, Windows) nothing changes and False is returned."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    settings = (
        (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (M_TOP_PAD, TOP_PAD),
        (M_MMAP_MAX, 0),
    )
    # mallopt returns 1 on success, 0 for a value it refuses.
    return all(libc.mallopt(param, value) == 1 for param, value in settings)
