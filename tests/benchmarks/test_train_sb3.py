"""The SB3 training script, run as users run it, on the tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_train_sb3_writes_results_curve_agent_and_logs(tiny_cola_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [
        sys.executable, str(REPO / "benchmarks" / "train_sb3.py"), "--algo", "PPO", "--env", "CoLA-GSM8K-Train-v0",
        "--steps", "64", "--n-envs", "4", "--prior", "--prior-kl", "0.05", "--max-episode-steps", "8",
        "--eval-problems", "4", "--eval-every", "32", "--model", str(tiny_cola_dir), "--data-dir", str(data_dir),
        "--out", str(out),
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=REPO, capture_output=True, timeout=600)
    results = json.loads((out / "results.json").read_text())
    steps = [point["timesteps"] for point in results["curve"]]
    assert steps[0] == 0 and steps[-1] >= 64 and steps == sorted(steps) and len(steps) >= 3  # start, periodic, end
    assert results["final_eval"]["episodes"] == 4.0 and 0.0 <= results["final_eval"]["accuracy"] <= 1.0
    assert (out / "learning_curve.png").stat().st_size > 0 and (out / "agent.zip").is_file()
    assert any((out / "tensorboard").rglob("events.out.tfevents.*"))
