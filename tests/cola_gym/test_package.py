"""Packaging: a light import that registers the ids, and task specs that ship in the wheel."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import cola_gym

REPO = Path(__file__).resolve().parents[2]


def _python(code: str, **kwargs) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, **kwargs)
    return result.stdout


def test_import_registers_ids_without_torch() -> None:
    out = _python(
        "import json, sys, gymnasium as gym, cola_gym\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'transformers': 'transformers' in sys.modules,\n"
        "                  'ids': [i for i in cola_gym.ENV_IDS if i in gym.registry]}))"
    )
    report = json.loads(out)
    assert report == {"torch": False, "transformers": False, "ids": list(cola_gym.ENV_IDS)}


def test_the_wheel_carries_the_task_specs(tmp_path: Path) -> None:
    source = tmp_path / "source"  # build from a copy: setuptools writes build/ and egg-info/ into the tree
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "runs"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("cola_gym-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "cola_gym/specs/math.toml" in names
    assert "cola_gym/rewards/_verify_worker.py" in names
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    out = _python(
        "import json, cola_gym\nfrom cola_gym.registration import spec_dir\n"
        "first_spec = str(next(iter(spec_dir().iterdir())))\n"
        "print(json.dumps({'file': cola_gym.__file__, 'specs': first_spec, 'ids': cola_gym.ENV_IDS}))",
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    )
    report = json.loads(out)
    assert report["file"].startswith(str(site)) and report["specs"].startswith(str(site))
    assert tuple(report["ids"]) == cola_gym.ENV_IDS
