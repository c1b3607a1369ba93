"""Large CPU tensors on transparent huge pages (2 MiB pages instead of 4 KiB).

torch's CPU allocator asks the kernel for transparent huge pages (`madvise(MADV_HUGEPAGE)`) on
every block of 2 MiB or more when the environment variable THP_MEM_ALLOC_ENABLE is 1. It reads
the variable once, when the process allocates its first CPU tensor, so the engine's package sets
it (unless it is set already; 0 turns it off) before any of its modules imports torch. In a
process that allocated tensors before importing the engine, the request comes too late and
nothing changes; `in_effect()` tells.

Why: one d16 image at batch 1 allocates about 0.8 GB of short-lived activations (each of the
decoder's 160-channel 256² maps is 42 MB). glibc maps blocks that large afresh on every use and
unmaps them when freed, so the kernel faults in and zeroes each 4 KiB page again: about 200,000
page faults per image. On the AVX-512 Intel Xeon of 2026-11-27 (`benchmarks/README.md`), huge
pages took decoding from 1.17-1.24 to 1.07-1.17 s and the image from 4.11-4.19 to 3.96-4.07 s
(three pairs of processes, median of five images each), with the same peak RSS (2.78-2.81
against 2.83-2.87 GB). Keeping freed memory in the process instead (`training/heap.py`) saved a
little more (3.91-3.97 s) but raised peak RSS to 3.16-3.20 GB, over the engine's 3 GB budget.

The setting changes where memory comes from, not what is computed. Where the kernel's THP mode
is "never" (or there is no such kernel), nothing changes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ENV = "THP_MEM_ALLOC_ENABLE"
KERNEL_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")
PROBE_BYTES = 4 << 20  # above torch's 2 MiB threshold for huge-page blocks


def request() -> None:
    """Ask torch for huge pages on large CPU blocks, unless the environment already decides."""
    os.environ.setdefault(ENV, "1")


def kernel_mode() -> str | None:
    """The kernel's THP mode ("always", "madvise" or "never"); None where there is none."""
    try:
        text = KERNEL_SETTING.read_text()
    except OSError:
        return None
    chosen = re.search(r"\[(\w+)\]", text)
    return chosen.group(1) if chosen else None


def kernel_allows() -> bool:
    """Whether the kernel gives huge pages to memory that asks for them."""
    return kernel_mode() in ("always", "madvise")


def in_effect() -> bool:
    """Whether this process's large CPU tensors may get huge pages: the kernel allows them and
    the memory of a fresh 4 MiB tensor lies in a mapping marked eligible for them."""
    if not kernel_allows():
        return False
    import torch

    probe = torch.empty(PROBE_BYTES, dtype=torch.uint8)
    return _thp_eligible(probe.data_ptr())


def _thp_eligible(address: int) -> bool:
    """The THPeligible flag of the mapping in /proc/self/smaps that holds `address`."""
    return smaps_field(address, "THPeligible") == "1"


def smaps_field(address: int, name: str) -> str | None:
    """Field `name` (e.g. "Rss", in kB) of the mapping in /proc/self/smaps that holds
    `address`; None where there is no such mapping or field, or no smaps."""
    try:
        lines = Path("/proc/self/smaps").read_text().splitlines()
    except OSError:
        return None
    inside = False
    for line in lines:
        span = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line)
        if span:
            inside = int(span.group(1), 16) <= address < int(span.group(2), 16)
        elif inside and line.startswith(name + ":"):
            return line.split()[1]
    return None
