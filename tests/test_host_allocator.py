"""Host-allocator tuning (mubundle.host_allocator): fewer page faults, clear reports."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from mubundle import host_allocator

# The sampling pattern in miniature: ~4 MiB (16 384 x 64 float32) activations allocated and
# freed in overlapping lifetimes. Prints the minor page faults of 50 rounds after warm-up.
_FAULT_PROBE = """
import resource, sys, torch
if sys.argv[1] == "tuned":
    from mubundle.host_allocator import tune_host_allocator
    print(tune_host_allocator(), file=sys.stderr)
torch.set_num_threads(1)
x = torch.ones(16384, 64)
def rounds(n):
    for _ in range(n):
        y = x * 2; z = y + 1; w = z * y; del y; v = w + z; del z, w, v
rounds(3)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(50)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _FAULT_PROBE, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt tuning is glibc-only")
def test_tuning_cuts_page_faults_of_the_activation_pattern():
    # glibc's dynamic mmap threshold makes single default runs vary (0 to 2e5 faults measured on
    # one machine), so three probes of each are summed; tuned: 0-5 000, freed 4 MiB blocks are
    # reused instead of faulted in again
    untuned = [_page_faults("default") for _ in range(3)]
    tuned = [_page_faults("tuned") for _ in range(3)]
    assert sum(tuned) * 2 < sum(untuned), (tuned, untuned)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt tuning is glibc-only")
def test_tuning_reports_the_thresholds():
    line = subprocess.run(
        [sys.executable, "-c", "from mubundle.host_allocator import tune_host_allocator as t; print(t(1 << 24, 1 << 27))"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert line.strip() == "host allocator tuned: glibc mmap threshold 16 MiB, trim threshold 128 MiB"


def test_other_c_libraries_are_reported_not_touched(monkeypatch):
    monkeypatch.setattr(host_allocator.platform, "libc_ver", lambda: ("", ""))
    assert host_allocator.tune_host_allocator() == "host allocator not tuned: C library is unknown, not glibc"


@pytest.mark.parametrize("value", [-1, 2**31])
def test_thresholds_outside_a_c_int_are_refused(value):
    with pytest.raises(ValueError, match="outside 0 .. 2"):
        host_allocator.tune_host_allocator(mmap_threshold_bytes=value)
