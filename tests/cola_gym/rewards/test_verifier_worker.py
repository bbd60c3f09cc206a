"""The grading worker: dies with its parent, keeps its memory cap, and is recycled."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cola_gym.rewards.verifier import MathVerifier

linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")

_PARENT = """
import sys, threading
from cola_gym.rewards.verifier import MathVerifier
verifier = MathVerifier(timeout_s=600)
verifier.compare("1", "1")
print(verifier.worker_pid, flush=True)
comparison = threading.Thread(target=verifier.compare, args=("1", sys.argv[1]))
comparison.start()
comparison.join()
"""


def _state(pid: int) -> str:
    """The process's state letter (``R``, ``S``, ``Z``...), or ``"gone"``."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _state(pid) in ("gone", "Z"):  # a zombie has exited; only its reaper is missing
            return True
        time.sleep(0.05)
    return False


@linux_only
def test_the_worker_dies_with_its_parent_mid_comparison() -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, r"9^{9^{9^{9}}}"], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    try:
        time.sleep(1.0)
        assert _state(worker) in ("R", "S", "D")  # busy with the comparison
        parent.kill()
        parent.wait()
        assert _gone_within(worker, 5.0), f"worker {worker} still {_state(worker)} 5 s after its parent died"
    finally:
        parent.kill()
        subprocess.run(["kill", "-9", str(worker)], capture_output=True)


@linux_only
def test_a_worker_started_from_a_short_lived_thread_outlives_the_thread() -> None:
    verifier = MathVerifier(timeout_s=30)
    try:
        starter = threading.Thread(target=verifier.compare, args=("1", "1"))
        starter.start()
        starter.join()
        worker = verifier.worker_pid
        assert worker is not None
        time.sleep(0.5)
        assert verifier.compare("2", r"\frac{4}{2}").equal
        assert verifier.worker_pid == worker
    finally:
        verifier.close()


@linux_only
def test_the_memory_cap_takes_effect() -> None:
    verifier = MathVerifier(timeout_s=30)
    try:
        verifier.compare("1", "1")
        limits = Path(f"/proc/{verifier.worker_pid}/limits").read_text()
        address_space = next(line for line in limits.splitlines() if line.startswith("Max address space"))
        assert address_space.split()[3:5] == [str(4 << 30)] * 2
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{verifier.worker_pid}/status").read_text().splitlines()
        )
        peak = int(status["VmPeak"].split()[0]) * 1024
    finally:
        verifier.close()
    # 2^(2^32) needs 512 MiB: under a cap just above the worker's own size it fails at once
    # instead of computing until the time limit
    capped = MathVerifier(timeout_s=60, memory_limit_bytes=peak + (64 << 20))
    try:
        started = time.monotonic()
        verdict = capped.compare("1", "2^{2^{32}}")
        assert verdict.status != "timeout" and not verdict.equal
        assert time.monotonic() - started < 30
        assert capped.compare("2", "2").equal  # and the worker goes on grading
    finally:
        capped.close()


def test_the_worker_is_recycled_after_its_quota() -> None:
    verifier = MathVerifier(timeout_s=30, comparisons_per_worker=3)
    try:
        workers = []
        for n in range(7):
            assert verifier.compare(str(n), f"{n}.0").equal
            workers.append(verifier.worker_pid)
        assert len(set(workers[:3])) == 1 and len(set(workers[3:6])) == 1
        assert len(set(workers)) == 3
    finally:
        verifier.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout_s": 0}, "timeout_s"),
        ({"memory_limit_bytes": 1 << 20}, "64 MiB"),
        ({"comparisons_per_worker": 0}, ">= 1"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MathVerifier(**kwargs)
