"""Time-limited grading of untrusted text: math-verify and reasoning-gym's scorers.

math-verify's own time limit uses ``signal.alarm``, which only works in the main thread.
Some inputs (``9^{9^{9^{9}}}``) make sympy run for ever, some library scorers build huge
numbers from the answer (``Fraction("1e999999999")``), and model output is untrusted, so
grading runs in a worker process that is killed when a request overruns. The worker is a
plain script started with ``sys.executable`` (not ``multiprocessing``), so user scripts
need no ``__main__`` guard, and it works from any thread.

The worker never outlives its parent: on Linux the kernel kills it when the parent dies
(``PR_SET_PDEATHSIG``), elsewhere a watchdog thread in the worker notices the new parent.
Its address space is capped, and it is replaced after a fixed number of requests, which
bounds sympy's slow growth (its caches keep about 0.75 MB per 1,000 comparisons).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar, Literal

logger = logging.getLogger(__name__)

_WORKER = Path(__file__).with_name("_verify_worker.py")
_PATH_VARIABLE = "COLA_GYM_VERIFIER_PATH"
_PARENT_VARIABLE = "COLA_GYM_VERIFIER_PARENT"
_MEMORY_VARIABLE = "COLA_GYM_VERIFIER_MEMORY"


@dataclass(frozen=True)
class Verdict:
    """Outcome of one comparison.

    Attributes:
        equal: whether the answers are mathematically equivalent (``False`` unless proven).
        status: ``"ok"``, ``"timeout"`` (killed at the time limit) or ``"error"``
            (unparseable input or a crashed worker).
    """

    equal: bool
    status: Literal["ok", "timeout", "error"]


class GraderWorker:
    """A grader of untrusted text in a worker process with a hard time limit per request.

    Subclasses name their worker's ``grader`` (``"math"`` or ``"reasoning-gym"``, see
    ``_verify_worker.py``).

    Args:
        timeout_s: time limit of one request, in seconds.
        startup_timeout_s: time limit for starting the worker (imports the grader's library).
        memory_limit_bytes: the worker's address-space cap (``RLIMIT_AS``, where the
            platform has it); a request that needs more scores ``"error"``.
        requests_per_worker: the worker is replaced after this many requests.

    Thread-safe; one request at a time. The worker starts on first use, again after a
    timeout, and after ``requests_per_worker`` requests.
    """

    grader: ClassVar[str]

    def __init__(
        self,
        timeout_s: float = 5.0,
        startup_timeout_s: float = 120.0,
        memory_limit_bytes: int = 4 << 30,
        requests_per_worker: int = 5_000,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s}")
        if memory_limit_bytes < 64 << 20:
            raise ValueError(f"memory_limit_bytes must be at least 64 MiB (sympy needs it), got {memory_limit_bytes}")
        if requests_per_worker < 1:
            raise ValueError(f"requests per worker must be >= 1, got {requests_per_worker}")
        self.timeout_s = timeout_s
        self.startup_timeout_s = startup_timeout_s
        self.memory_limit_bytes = memory_limit_bytes
        self.requests_per_worker = requests_per_worker
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._replies: queue.Queue[str | None] = queue.Queue()
        self._requests = 0

    @property
    def worker_pid(self) -> int | None:
        """The process id of the running worker, or ``None`` when none runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def request(self, payload: dict[str, Any]) -> tuple[Literal["ok", "timeout", "error"], dict[str, Any]]:
        """Sends one request; returns its status and the worker's reply (``{}`` unless ``"ok"``)."""
        line = json.dumps(payload) + "\n"
        with self._lock:
            if self._requests >= self.requests_per_worker:
                self._stop_worker()
            process = self._ensure_worker()
            self._requests += 1
            try:
                assert process.stdin is not None
                process.stdin.write(line)
                process.stdin.flush()
                reply = self._replies.get(timeout=self.timeout_s)
            except queue.Empty:
                logger.info("the %s grader ran over %.1f s; answer scored wrong", self.grader, self.timeout_s)
                self._stop_worker()
                return "timeout", {}
            except OSError:
                self._stop_worker()
                return "error", {}
            if reply is None:
                self._stop_worker()
                return "error", {}
        answer = json.loads(reply)
        return ("error", {}) if "error" in answer else ("ok", answer)

    def close(self) -> None:
        """Stops the worker process (a later request starts a new one)."""
        with self._lock:
            self._stop_worker()

    def _ensure_worker(self) -> subprocess.Popen[str]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._stop_worker()
        self._replies = queue.Queue()
        self._requests = 0
        # Isolated mode (-I): neither the script's folder (which holds a ``math.py``) nor the
        # working directory may shadow the standard library; the parent's path is passed on.
        search_path = [p for p in sys.path if p and Path(p).resolve() != _WORKER.parent]
        environment = {
            **os.environ,
            _PATH_VARIABLE: json.dumps(search_path),
            _PARENT_VARIABLE: str(os.getpid()),
            _MEMORY_VARIABLE: str(self.memory_limit_bytes),
        }
        process = _spawn([sys.executable, "-I", "-u", str(_WORKER), self.grader], environment)
        assert process.stdout is not None
        threading.Thread(target=_pump, args=(process.stdout, self._replies), daemon=True).start()
        try:
            ready = self._replies.get(timeout=self.startup_timeout_s)
        except queue.Empty:
            ready = None
        if ready is None:
            process.kill()
            raise RuntimeError(
                f"The {self.grader} grading worker did not start within {self.startup_timeout_s:.0f} s; "
                f"check that its library is installed ({_LIBRARIES.get(self.grader, self.grader)})."
            )
        self._process = process
        return process

    def _stop_worker(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            for stream in (self._process.stdin, self._process.stdout):
                if stream is not None:
                    stream.close()
            self._process = None


_LIBRARIES = {"math": "pip install math-verify", "reasoning-gym": "pip install 'cola-gym[reasoning]'"}


class MathVerifier(GraderWorker):
    """math-verify in a worker process with a hard time limit per comparison.

    Args:
        timeout_s: time limit of one comparison, in seconds.
        startup_timeout_s: time limit for starting the worker (imports sympy).
        memory_limit_bytes: the worker's address-space cap (``RLIMIT_AS``, where the
            platform has it); a comparison that needs more scores ``"error"``.
        comparisons_per_worker: the worker is replaced after this many comparisons.

    Thread-safe; one comparison at a time. The worker starts on first use, again after a
    timeout, and after ``comparisons_per_worker`` comparisons.
    """

    grader = "math"

    def __init__(
        self,
        timeout_s: float = 5.0,
        startup_timeout_s: float = 120.0,
        memory_limit_bytes: int = 4 << 30,
        comparisons_per_worker: int = 5_000,
    ) -> None:
        super().__init__(timeout_s, startup_timeout_s, memory_limit_bytes, comparisons_per_worker)

    def compare(self, gold: str, predicted: str) -> Verdict:
        """Whether ``predicted`` is equivalent to ``gold`` (both LaTeX or plain math)."""
        status, reply = self.request({"gold": gold, "predicted": predicted})
        return Verdict(status == "ok" and bool(reply["equal"]), status)


@dataclass(frozen=True)
class Score:
    """A library scorer's score (0 unless ``status`` is ``"ok"``) and how the request went."""

    score: float
    status: Literal["ok", "timeout", "error"]


class ReasoningGymScorer(GraderWorker):
    """reasoning-gym's scorers in a worker process with a hard time limit per answer.

    The worker rebuilds the data set from its name, config, seed and size (once) and scores
    item ``index``; model text never reaches a scorer in this process. Arguments as
    :class:`GraderWorker`'s.
    """

    grader = "reasoning-gym"

    def score(self, dataset: str, config: Mapping[str, Any], seed: int, size: int, index: int, answer: str) -> Score:
        """The library's score of ``answer`` for item ``index`` of the data set (JSON-able ``config``)."""
        request = {"dataset": dataset, "config": config, "seed": seed, "size": size, "index": index, "answer": answer}
        status, reply = self.request(request)
        return Score(float(reply["score"]) if status == "ok" else 0.0, status)


def _spawn(command: list[str], environment: dict[str, str]) -> subprocess.Popen[str]:
    """Starts the worker from the spawner thread, which lives as long as this process.

    Linux sends the parent-death signal when the *thread* that started a child ends, not
    the process: a worker started from a short-lived user thread would die with it.
    """
    global _SPAWNER
    with _SPAWNER_LOCK:
        if _SPAWNER is None or _SPAWNER[0] != os.getpid() or not _SPAWNER[1].is_alive():
            requests: queue.Queue[tuple[list[str], dict[str, str], queue.Queue[object]]] = queue.Queue()
            thread = threading.Thread(target=_serve_spawns, args=(requests,), name="cola-gym-verifier", daemon=True)
            thread.start()
            _SPAWNER = (os.getpid(), thread, requests)
        requests = _SPAWNER[2]
    answer: queue.Queue[object] = queue.Queue(maxsize=1)
    requests.put((command, environment, answer))
    result = answer.get()
    if isinstance(result, BaseException):
        raise result
    return result  # type: ignore[return-value]


def _serve_spawns(requests: queue.Queue[tuple[list[str], dict[str, str], queue.Queue[object]]]) -> None:
    while True:
        command, environment, answer = requests.get()
        try:
            answer.put(
                subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    env=environment,
                )
            )
        except OSError as err:
            answer.put(err)


_SPAWNER: tuple[int, threading.Thread, queue.Queue[tuple[list[str], dict[str, str], queue.Queue[object]]]] | None = None
_SPAWNER_LOCK = threading.Lock()


def _pump(stream: IO[str], replies: queue.Queue[str | None]) -> None:
    try:
        for line in stream:
            replies.put(line)
    except (OSError, ValueError):
        pass
    replies.put(None)


_DEFAULTS: dict[str, GraderWorker] = {}
_DEFAULT_LOCK = threading.Lock()


def _default(kind: type[MathVerifier] | type[ReasoningGymScorer]) -> Any:
    with _DEFAULT_LOCK:
        if kind.__name__ not in _DEFAULTS:
            _DEFAULTS[kind.__name__] = worker = kind()
            atexit.register(worker.close)
        return _DEFAULTS[kind.__name__]


def default_verifier() -> MathVerifier:
    """The process-wide math verifier (5 s per comparison), shared by every env."""
    return _default(MathVerifier)


def default_reasoning_scorer() -> ReasoningGymScorer:
    """The process-wide reasoning-gym scorer (5 s per answer), shared by every env."""
    return _default(ReasoningGymScorer)
