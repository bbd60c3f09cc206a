"""Packaging: a light import that registers the ids, and a wheel that carries every module, the specs
and the command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import cola_gym

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("cola_gym", "cola_agents")


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


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel and installed, alone, into a folder of its own."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # build from a copy: setuptools writes build/ and egg-info/ into the tree
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "runs"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root), str(source)],
        check=True,
        capture_output=True,
    )
    wheel = next(root.glob("cola_gym-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"cola_gym/tasks/{family}/spec.toml" for family in ("math", "countdown", "reasoning", "household")} <= set(
        names
    )
    assert "cola_gym/rewards/_verify_worker.py" in names
    shipped = [p for p in (REPO / "cola_gym" / "pretrained").rglob("*") if p.is_file()]
    assert {p.relative_to(REPO).as_posix() for p in shipped} <= set(names)  # every model file, adapters too
    assert wheel.stat().st_size < 100e6  # PyPI's limit
    for model in (REPO / "cola_gym" / "pretrained").iterdir():
        assert sum(p.stat().st_size for p in model.rglob("*") if p.is_file()) <= 30e6, model
    site = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    return site


def _isolated(site: Path, *args: str) -> str:
    """Runs Python with the installed wheel and the dependencies only: ``-S`` skips the ``.pth``
    files, so the editable install of this checkout cannot stand in for the wheel."""
    dependencies = [p for p in sysconfig.get_paths().values() if p.endswith("site-packages")]
    result = subprocess.run(
        [sys.executable, "-S", *args],
        capture_output=True,
        text=True,
        cwd=site.parent,
        env={"PYTHONPATH": os.pathsep.join([str(site), *dict.fromkeys(dependencies)]), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_wheel_carries_every_module(installed_wheel: Path) -> None:
    source_modules = sorted(
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for package in PACKAGES
        for path in (REPO / package).rglob("*.py")
    )
    out = _isolated(
        installed_wheel,
        "-c",
        "import importlib, json, pkgutil\n"
        "found = {}\n"
        f"for name in {PACKAGES!r}:\n"
        "    package = importlib.import_module(name)\n"
        "    found[name] = package.__file__\n"
        "    for info in pkgutil.walk_packages(package.__path__, name + '.'):\n"
        "        found[info.name] = importlib.import_module(info.name).__file__\n"
        "from cola_gym.registration import SPEC_FILE, tasks_dir\n"
        "import cola_gym\n"
        "specs = str(tasks_dir() / 'math' / SPEC_FILE)\n"
        "print(json.dumps({'modules': found, 'specs': specs, 'ids': cola_gym.ENV_IDS}))",
    )
    report = json.loads(out)
    assert sorted(report["modules"]) == source_modules
    assert all(file.startswith(str(installed_wheel)) for file in report["modules"].values())
    assert report["specs"].startswith(str(installed_wheel))
    assert tuple(report["ids"]) == cola_gym.ENV_IDS


@pytest.mark.parametrize("command", [["--help"], ["train", "--help"], ["episode", "--help"]])
def test_the_wheels_command_runs(installed_wheel: Path, command: list[str]) -> None:
    out = _isolated(installed_wheel, str(installed_wheel / "bin" / "cola-gym"), *command)
    assert out.startswith("usage: cola-gym")
