"""Training checkpoints: model + optimizer state in safetensors/JSON, written atomically.

A checkpoint directory is a loadable CoLA checkpoint (``CoLAModel.from_pretrained``) plus
``optimizer.safetensors``, ``optimizer.json`` and ``trainer_state.json``. It is written
under a temporary name and renamed into place, and ``latest`` (a one-line file) is
replaced only afterwards, so a kill at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from cola_gym.errors import CheckpointError

LATEST = "latest"
STATE_FILE = "trainer_state.json"


def save_optimizer(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    """Writes an optimizer's state dict: tensors to safetensors, the rest to JSON."""
    from safetensors.torch import save_file

    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    save_file(tensors, str(directory / "optimizer.safetensors"))
    (directory / "optimizer.json").write_text(json.dumps({"param_groups": state["param_groups"], "scalars": scalars}))


def load_optimizer(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    """Restores what :func:`save_optimizer` wrote."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(directory / "optimizer.safetensors"))
        meta = json.loads((directory / "optimizer.json").read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"optimizer state in {directory} is missing or corrupt ({err})") from err
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def write_checkpoint(run_dir: Path, step: int, write: Any, keep: int) -> Path:
    """Calls ``write(tmp_dir)``, renames the directory to ``checkpoints/step-NNNNNN``, updates ``latest``."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"step-{step:06d}"
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        write(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    pointer = Path(tempfile.mkstemp(prefix=".latest-", dir=run_dir)[1])
    pointer.write_text(target.name + "\n")
    os.replace(pointer, run_dir / LATEST)
    for old in sorted(root.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def remove_partial_checkpoints(run_dir: Path) -> list[Path]:
    """Removes what a kill during :func:`write_checkpoint` left behind; returns the paths removed.

    Only the staging folders (``checkpoints/.tmp-*``) and pointer files (``.latest-*``) go:
    complete checkpoints and ``latest`` are never touched.
    """
    leftovers = [*(run_dir / "checkpoints").glob(".tmp-*"), *run_dir.glob(".latest-*")]
    for path in leftovers:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return leftovers


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The directory ``latest`` points to, or ``None`` for a fresh run."""
    pointer = run_dir / LATEST
    if not pointer.is_file():
        return None
    target = run_dir / "checkpoints" / pointer.read_text().strip()
    if not (target / STATE_FILE).is_file():
        raise CheckpointError(f"{pointer} points to {target}, which is not a complete checkpoint; remove {pointer}")
    return target
