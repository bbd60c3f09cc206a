"""The default decoder quantized on the CPU against fp32: speed, agreement, perplexity, world model.

For the default model (SmolLM2-135M-Instruct with its shipped CoLA heads, which stay in full
precision) and each decoder setting, in one run:

- ``tokens/s`` of a cached greedy decode (HF ``generate``, timed from its first decoding step to
  its last) at batch 1, 16 and 64 on GSM8K test questions;
- ``agreement``: how often the setting's next-token argmax equals fp32's, teacher-forced over
  held-out GSM8K solutions (chat-rendered question and answer);
- ``perplexity`` of those solutions under the decoder;
- ``world model accuracy``: the shipped heads on the setting's hidden states (the inverse
  dynamics model picks each step's code, the world model must write the true next token).

Settings: ``fp32``; PyTorch's dynamic int8 (``torch.ao.quantization.quantize_dynamic``, every
``nn.Linear`` of the decoder body, the LM head kept) with per-tensor and with per-channel
weight scales, and per-channel with the layers that suffer most kept in fp32 (the MLP's
``down_proj``, or the whole MLP). Weight-only int8 (``torch._weight_int8pack_mm``) was tried
too: on this AVX2 CPU it is 7x slower than fp32 at batch 1, so it is not a candidate.
bitsandbytes' int8 and nf4 run on the CPU too but at about half fp32's speed
(they exist there to test the GPU code path), so they are left out unless ``--bnb``.

    python benchmarks/quantization.py --examples 32 --out quantization.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from _report import pyplot, save_figure, write_report
from torch import nn
from transformers import LogitsProcessorList

from cola_gym.model import CoLAModel, DecoderSettings, shared_model
from cola_gym.model.generation import left_pad
from cola_gym.text.chat import render_exchange
from cola_gym.training.objectives import collate, evaluation_metrics


def quantized(model: CoLAModel, scheme: str, keep: tuple[str, ...] = ()) -> CoLAModel:
    """A copy of ``model`` whose decoder body runs PyTorch's dynamic int8 (heads and LM head
    untouched); linear layers whose name contains a string of ``keep`` stay in fp32."""
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    copied = copy.deepcopy(model)
    qconfig = per_channel_dynamic_qconfig if scheme == "channel" else default_dynamic_qconfig
    chosen = {
        name: qconfig
        for name, module in copied.decoder_base.named_modules()
        if isinstance(module, nn.Linear) and not any(part in name for part in keep)
    }
    quantize_dynamic(copied.decoder_base, chosen, dtype=torch.qint8, inplace=True)
    return copied


def decode_tokens_per_s(model: CoLAModel, prompts: list[list[int]], tokens: int) -> float:
    ids, mask = left_pad(prompts, pad_id=model.tokenizer.pad_token_id or 0)
    stamps: list[float] = []

    def note_time(input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        stamps.append(time.perf_counter())
        return scores

    with torch.inference_mode():
        model.decoder.generate(input_ids=ids, attention_mask=mask, max_new_tokens=tokens + 1,
                               min_new_tokens=tokens + 1, do_sample=False, pad_token_id=model.tokenizer.pad_token_id,
                               logits_processor=LogitsProcessorList([note_time]))  # fmt: skip
    return len(prompts) * tokens / (stamps[-1] - stamps[0])


@torch.inference_mode()
def accuracy(model: CoLAModel, examples: list[tuple[list[int], int]]) -> tuple[dict[str, float], torch.Tensor]:
    """Token-weighted world-model and decoder metrics, and the decoder's argmax at every counted target."""
    totals: dict[str, float] = {}
    weight = 0
    argmaxes = []
    for first in range(0, len(examples), 8):
        rows = [(ids, None, ((start, len(ids)),)) for ids, start in examples[first : first + 8]]
        batch = collate(rows, only_responses=True)
        metrics, _ = evaluation_metrics(model, batch)
        count = batch.num_targets
        for key in ("acc/world_model_idm_actions", "acc/decoder", "loss/decoder_ce"):
            totals[key] = totals.get(key, 0.0) + float(metrics[key]) * count
        weight += count
        hidden = model.hidden_states(batch.ids, batch.attention_mask)
        argmaxes.append(model.decoder_logits(hidden[:, :-1][batch.loss_mask.bool()]).argmax(-1))
    result = {key: value / weight for key, value in totals.items()}
    result["perplexity"] = float(torch.tensor(result.pop("loss/decoder_ce")).exp())
    return result, torch.cat(argmaxes)


def plot(report: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    fig, (speed, quality) = plt.subplots(1, 2, figsize=(9, 3.4))
    settings = list(report["settings"])
    for batch in report["batch_sizes"]:
        speed.plot(settings, [report["settings"][s]["tokens_per_s"][str(batch)] for s in settings], "o-",
                   label=f"batch {batch}")  # fmt: skip
    speed.set_ylabel("decode tokens/s")
    speed.set_yscale("log")
    speed.legend(fontsize=8)
    quality.bar(settings, [report["settings"][s]["agreement_with_fp32"] for s in settings], color="#1f77b4")
    quality.axhline(0.95, color="black", linestyle=":", linewidth=1)
    quality.set_ylabel("next-token agreement with fp32")
    quality.set_ylim(0, 1)
    for axis in (speed, quality):
        axis.tick_params(axis="x", labelsize=8, rotation=15)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="CoLA checkpoint (default: the default model)")
    parser.add_argument("--data-dir", default=os.environ.get("COLA_DATA_DIR"), help="folder with gsm8k/test.jsonl")
    parser.add_argument("--examples", type=int, default=32, help="held-out solutions for agreement and accuracy")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--tokens", type=int, default=16, help="decoded tokens per speed measurement")
    parser.add_argument("--bnb", action="store_true", help="also bitsandbytes int8 and nf4 (slow on CPUs)")
    parser.add_argument("--out", default="quantization.json")
    args = parser.parse_args(argv)
    if args.data_dir is None:
        raise SystemExit("give --data-dir or set COLA_DATA_DIR (the folder with gsm8k/test.jsonl)")
    path = Path(args.data_dir) / "gsm8k" / "test.jsonl"
    if not path.exists():
        raise SystemExit(f"no GSM8K test file at {path}")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[-args.examples :]]
    torch.manual_seed(0)
    base = shared_model(args.model)
    tokenizer = base.tokenizer
    examples = []
    for row in rows:
        prompt, response = render_exchange(tokenizer, [{"role": "user", "content": row["question"]}], row["answer"])
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        examples.append((prompt_ids + tokenizer(response, add_special_tokens=False)["input_ids"], len(prompt_ids)))
    questions = [ids[:start] for ids, start in examples]
    prompts = [questions[i % len(questions)] for i in range(max(args.batch_sizes))]

    settings: dict[str, Any] = {"fp32": lambda: base,
                                "int8 dynamic, per-tensor": lambda: quantized(base, "tensor"),
                                "int8 dynamic, per-channel": lambda: quantized(base, "channel"),
                                "int8 per-channel, down_proj fp32": lambda: quantized(base, "channel", ("down_proj",)),
                                "int8 per-channel, attention only": lambda: quantized(base, "channel", ("mlp",)),
                                }  # fmt: skip
    if args.bnb:
        for name, value in (("bnb int8", "8bit"), ("bnb nf4", "4bit")):
            settings[name] = lambda value=value: CoLAModel.from_pretrained(
                args.model or base.name_or_path, settings=DecoderSettings(quantization=value)
            )
    report: dict[str, Any] = {"examples": len(examples), "batch_sizes": args.batch_sizes, "tokens": args.tokens,
                              "torch_threads": torch.get_num_threads(), "settings": {}}  # fmt: skip
    reference = None
    for name, build in settings.items():
        model = build()
        metrics, argmax = accuracy(model, examples)
        reference = argmax if reference is None else reference
        speeds = {str(b): decode_tokens_per_s(model, prompts[:b], args.tokens) for b in args.batch_sizes}
        agreement = float((argmax == reference).float().mean())
        report["settings"][name] = {"tokens_per_s": speeds, "agreement_with_fp32": agreement, **metrics}
        print(name, json.dumps(report["settings"][name]))
        del model
    fp32 = report["settings"]["fp32"]["tokens_per_s"]
    report["speed_vs_fp32"] = {
        name: {b: value["tokens_per_s"][b] / fp32[b] for b in fp32} for name, value in report["settings"].items()
    }
    write_report(report, args.out, plot)


if __name__ == "__main__":
    main()
