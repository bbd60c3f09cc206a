"""``benchmarks/rl_speed.py`` and ``benchmarks/host_time.py`` on a tiny model: they run and report what they claim."""

from __future__ import annotations

import json
from pathlib import Path


def test_rl_speed_compares_grpo_with_the_vector_env(benchmark_script, tiny_cola_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "rl_speed.json"
    benchmark_script("rl_speed").main(["--model", str(tiny_cola_dir), "--n-envs", "4", "--group-size", "2",
                                       "--max-steps", "4", "--vector-steps", "3", "--rounds", "1",
                                       "--profile", str(tmp_path / "profile"), "--out", str(out)])  # fmt: skip
    report = json.loads(out.read_text())
    medians = report["median_tokens_per_s"]
    assert set(medians) == {"vector_env", "grpo", "grpo_token"} and all(v > 0 for v in medians.values())
    assert report["ratios"]["grpo/vector_env"] == medians["grpo"] / medians["vector_env"]
    assert "collect_rollouts" in (tmp_path / "profile" / "grpo.txt").read_text()
    assert out.with_suffix(".png").is_file()


def test_host_time_measures_both_decoding_paths(
    benchmark_script, tiny_cola_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "host_time.json"
    benchmark_script("host_time").main(["--model", str(tiny_cola_dir), "--data-dir", str(data_dir),
                                        "--lengths", "40", "200", "--out", str(out)])  # fmt: skip
    report = json.loads(out.read_text())
    assert set(report["ms_per_token"]) == {"incremental", "full decode"}
    assert all(set(v) == {"40", "200"} and min(v.values()) > 0 for v in report["ms_per_token"].values())
