"""Worker process for :mod:`cola_gym.rewards.verifier`: math-verify over stdin/stdout.

Run as a script (not imported by the parent): reads one JSON request per line,
``{"gold": ..., "predicted": ...}``, and answers ``{"equal": bool}`` or
``{"error": "..."}``. The parent owns the time limit and kills this process when a
comparison runs over it, which is why math-verify's own signal-based timeouts are off.
It dies with its parent, even in the middle of a comparison that holds the interpreter.
"""

import json
import logging
import os
import sys
import threading
import time

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


def main() -> None:
    logging.disable(logging.CRITICAL)
    _die_with(int(os.environ.get("COLA_GYM_VERIFIER_PARENT", os.getppid())))
    _limit_memory(int(os.environ.get("COLA_GYM_VERIFIER_MEMORY", 4 << 30)))
    sys.path.extend(p for p in json.loads(os.environ.get("COLA_GYM_VERIFIER_PATH", "[]")) if p not in sys.path)
    from math_verify import parse, verify

    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            gold = parse(_as_latex(request["gold"]), parsing_timeout=None)
            predicted = parse(_as_latex(request["predicted"]), parsing_timeout=None)
            reply: dict[str, object] = {
                "equal": bool(gold and predicted and verify(gold, predicted, timeout_seconds=None))
            }
        except Exception as err:  # noqa: BLE001 - any verifier failure scores the answer wrong
            reply = {"error": f"{type(err).__name__}: {err}"[:500]}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
