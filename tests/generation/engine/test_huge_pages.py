"""huge_pages.py: importing the engine asks torch for transparent huge pages on large CPU
tensors, the environment can say no, a request made too late is reported as not in effect,
and where it is in effect a large tensor's pages fault in tens of times less often (81,956
against 2,751 faults for five 64 MiB tensors on the AVX-512 Xeon of 2026-11-27)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from generation.engine.huge_pages import ENV, kernel_allows, kernel_mode

THP_ALLOWED = kernel_allows()

# Allocate, touch and free a 64 MiB tensor five times, counting the page faults it takes.
PROBE = """
import json, os, resource, sys
if sys.argv[1] == "engine-first":
    import generation.engine
import torch
if sys.argv[1] == "torch-first":
    torch.ones(8 << 20)
    import generation.engine
from generation.engine.huge_pages import in_effect
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.ones(16 << 20)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"in_effect": in_effect(), "faults": faults, "env": os.environ.get(sys.argv[2])}))
"""


def probe(order: str, env_value: str | None = None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if env_value is not None:
        env[ENV] = env_value
    out = subprocess.run(
        [sys.executable, "-c", PROBE, order, ENV],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_importing_the_engine_requests_huge_pages_unless_the_environment_says_no() -> None:
    assert probe("engine-first")["env"] == "1"
    assert probe("engine-first", "0")["env"] == "0"


@pytest.mark.skipif(not THP_ALLOWED, reason=f"the kernel's THP mode is {kernel_mode()}")
def test_huge_pages_cut_the_page_faults_of_large_tensors() -> None:
    on = probe("engine-first")
    off = probe("engine-first", "0")
    assert on["in_effect"] is True and off["in_effect"] is False
    # Five 64 MiB tensors: 5 × 16,384 faults on 4 KiB pages, about 5 × 32 on 2 MiB pages.
    assert off["faults"] > 5 * 16_000 // 2
    assert on["faults"] < off["faults"] // 10


@pytest.mark.skipif(not THP_ALLOWED, reason=f"the kernel's THP mode is {kernel_mode()}")
def test_a_request_after_torch_allocated_is_reported_as_not_in_effect() -> None:
    late = probe("torch-first")
    assert late["env"] == "1" and late["in_effect"] is False
