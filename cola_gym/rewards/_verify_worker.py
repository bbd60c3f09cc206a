"""Worker process for :mod:`cola_gym.rewards.verifier`: graders of untrusted text over stdin/stdout.

Run as a script (not imported by the parent) with the grader's name as its argument:

* ``math``: requests ``{"gold": ..., "predicted": ...}``, replies ``{"equal": bool}``
  (math-verify);
* ``reasoning-gym``: requests ``{"dataset", "config", "seed", "size", "index", "answer"}``,
  replies ``{"score": float}``: the library's scorer of item ``index`` of that data set
  (built once per worker and kept).

A failure replies ``{"error": "..."}``. The parent owns the time limit and kills this
process when a request runs over it, which is why math-verify's own signal-based timeouts
are off. It dies with its parent, even in the middle of a request that holds the interpreter.
"""

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_PR_SET_PDEATHSIG = 1
_SIGKILL = 9


def _as_latex(answer: str) -> str:
    if "$" in answer or "\\boxed" in answer or "\\(" in answer:
        return answer
    return f"${answer}$"


def _limit_memory(max_bytes: int) -> None:
    # A hostile answer must not exhaust the machine's memory before the time limit hits.
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    except (ImportError, OSError, ValueError):
        pass


def _die_with(parent: int) -> None:
    """Exits when ``parent`` does, even while a comparison holds the interpreter lock."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            # The kernel SIGKILLs this process when the thread that started it ends (the
            # parent starts it from a thread that lives as long as the parent process).
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(0)

    def watch() -> None:  # other platforms, and a second line of defence
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _math_grader() -> Callable[[dict[str, Any]], dict[str, Any]]:
    from math_verify import parse, verify

    def grade(request: dict[str, Any]) -> dict[str, Any]:
        gold = parse(_as_latex(request["gold"]), parsing_timeout=None)
        predicted = parse(_as_latex(request["predicted"]), parsing_timeout=None)
        return {"equal": bool(gold and predicted and verify(gold, predicted, timeout_seconds=None))}

    return grade


def _reasoning_gym_grader() -> Callable[[dict[str, Any]], dict[str, Any]]:
    import reasoning_gym
    from reasoning_gym.composite import DatasetSpec

    datasets: dict[str, Any] = {}
    entries: dict[tuple[str, int], Any] = {}

    def grade(request: dict[str, Any]) -> dict[str, Any]:
        key = json.dumps([request["dataset"], request["config"], request["seed"], request["size"]], sort_keys=True)
        if key not in datasets:
            config = dict(request["config"])
            if request["dataset"] == "composite":
                config["datasets"] = [DatasetSpec(**member) for member in config["datasets"]]
            datasets[key] = reasoning_gym.create_dataset(
                request["dataset"], seed=request["seed"], size=request["size"], **config
            )
        data, index = datasets[key], request["index"]
        if (key, index) not in entries:
            if len(entries) >= 1024:
                entries.pop(next(iter(entries)))
            entries[key, index] = data[index]  # some generators take 100 ms an item
        score = float(data.score_answer(answer=request["answer"], entry=entries[key, index]))
        return {"score": score}

    return grade


GRADERS = {"math": _math_grader, "reasoning-gym": _reasoning_gym_grader}


def main() -> None:
    logging.disable(logging.CRITICAL)
    _die_with(int(os.environ.get("COLA_GYM_VERIFIER_PARENT", os.getppid())))
    _limit_memory(int(os.environ.get("COLA_GYM_VERIFIER_MEMORY", 4 << 30)))
    sys.path.extend(p for p in json.loads(os.environ.get("COLA_GYM_VERIFIER_PATH", "[]")) if p not in sys.path)
    replies, sys.stdout = sys.stdout, sys.stderr  # a grader that prints must not corrupt the replies
    grade = GRADERS[sys.argv[1] if len(sys.argv) > 1 else "math"]()
    replies.write(json.dumps({"ready": True}) + "\n")
    replies.flush()
    for line in sys.stdin:
        try:
            reply = grade(json.loads(line))
        except Exception as err:  # noqa: BLE001 - any grader failure scores the answer wrong
            reply = {"error": f"{type(err).__name__}: {err}"[:500]}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
