"""``benchmarks/claims.py`` end to end on a tiny model: the four claims' JSON, tables and plots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_claims_write_every_table(tiny_cola_dir: Path, tmp_path: Path) -> None:
    suite = tmp_path / "suite.toml"
    suite.write_text(
        f"budget = 8\neval_points = 1\neval_problems = 2\nseeds = [0, 1]\nn_envs = 2\n"
        f'task = ["CoLA-Countdown-Easy-v0"]\n'
        f'[env_kwargs]\nmodel = "{tiny_cola_dir}"\nmax_episode_steps = 4\n'
        f'[algorithms.grpo]\ngroup_size = 2\n[algorithms.grpo-kl]\nalgorithm = "grpo"\ngroup_size = 2\nkl_coef = 0.1\n'
        f'[algorithms.grpo-token]\nalgorithm = "grpo"\nactions = "token"\ngroup_size = 2\n'
    )
    out = tmp_path / "claims"
    command = [sys.executable, str(REPO / "benchmarks" / "claims.py"), "--suite", str(suite), "--out", str(out),
               "--reps", "100", "--sample-problems", "2", "--group", "2"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("latent_vs_token", "compute", "collapse", "diversity"):
        assert (out / f"{name}.json").is_file() and (out / f"{name}.md").is_file() and (out / f"{name}.png").is_file()
    latent = json.loads((out / "latent_vs_token.json").read_text())
    assert set(latent["final"]) == {"grpo", "grpo-token"}  # the KL variant is not part of claim 1
    compute = json.loads((out / "compute.json").read_text())
    assert all(entry["success"]["runs"] == 2 for entry in compute["algorithms"].values())
    collapse = json.loads((out / "collapse.json").read_text())
    assert set(collapse["agents"]) == {"prior", "grpo", "grpo-kl", "grpo-token"}
    assert collapse["agents"]["prior"]["samples"] == 4 and collapse["agents"]["grpo"]["samples"] == 8  # 2 seeds
    # RL never trains the decoder: held-out text scores the same under every agent
    assert len({entry["held_out_text_perplexity"] for entry in collapse["agents"].values()}) == 1
    diversity = json.loads((out / "diversity.json").read_text())
    assert all(entry["mean_similarity"] <= 1.0 + 1e-6 for entry in diversity["agents"].values())
    rerun = subprocess.run([*command, "--parts", "runs"], capture_output=True, text=True, timeout=600, check=False)
    assert rerun.returncode == 0 and "6/6" in rerun.stderr  # every run was finished: nothing trains again
