"""What every benchmark script does with its results: print, write JSON, draw a PNG beside it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """matplotlib's pyplot on a file-only backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> None:
    """Lays out ``fig``, writes it to ``path`` (PNG, 120 dpi) and frees it."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot().close(fig)


def write_report(report: dict[str, Any], out: str | Path, plot: Callable[[dict[str, Any], Path], None]) -> Path:
    """Prints ``report``, writes it to ``out`` (JSON) and its plot to ``out`` with a ``.png`` suffix."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    print(json.dumps(report, indent=2))
    path.write_text(json.dumps(report, indent=2))
    plot(report, path.with_suffix(".png"))
    return path
