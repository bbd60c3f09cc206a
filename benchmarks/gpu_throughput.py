"""GPU decoding throughput: HF ``generate`` vs the vector env vs the bare ``CoLAModel.step`` loop.

On one CUDA device, for decoders of three real shapes with random weights drawn directly on
the device (nothing is downloaded; the tokenizer is SmolLM2's, the embedded default's):

- ``smollm2-135m``: SmolLM2-135M (576 wide, 30 layers, 9 / 3 KV heads, vocabulary 49,152, tied);
- ``llama-3.2-1b``: Llama-3.2-1B (2048 wide, 16 layers, 32 / 8 KV heads, vocabulary 128,256, tied);
- ``llama-3.1-8b``: Llama-3.1-8B (4096 wide, 32 layers, 32 / 8 KV heads, MLP 14,336, vocabulary 128,256);

each in bf16 and in nf4 (bitsandbytes ``Linear4bit``, compute dtype bf16, no double
quantization, LM head kept in bf16: the modules ``load_decoder(..., quantization="4bit")``
builds, made here by quantizing the bf16 layers in place instead of writing 16 GB to disk and
loading them again), at batch sizes 1, 8, 32, 64 and 128, with 256-token prompts and 128 decoded
tokens per row. In the same run, for every setting:

- ``generate``: Hugging Face ``generate`` of the bare decoder, greedy, forced to decode every
  token (``min_new_tokens``), timed from its first decoding step to its last (prefill excluded);
- ``vector_env``: a ``LatentActionVectorEnv`` of N rows stepped with random latent actions
  (``reset``, the prefill, excluded); its task is a 256-token chat prompt and a turn that never ends;
- ``step_loop``: ``CoLAModel.step`` in a loop on the same prompts, actions drawn on the device
  (no env bookkeeping, policy not tracked: the env's device work without its host work).

The world model's merge gets small random weights, so the actions change the tokens. LM-head
rows of end-of-sequence and of ids the tokenizer lacks are zero: greedy decoding never ends a
turn early nor writes a token the env cannot spell.

Reported for every setting and mode:

- tokens/s (rows x steps / wall time) and the ratios vector env / generate and step loop / generate;
- wall ms per step, split into device time (the CUDA kernels' and copies' own time per step,
  from ``torch.profiler``'s CUDA activity over ``--profile-steps`` steps in the middle of the
  decode) and host time (the rest: the device waiting for the host); ``gpu_elapsed_ms_per_step``
  is the timed run's device timeline between two CUDA events;
- device syncs per step (``torch.cuda.set_sync_debug_mode("warn")``, over ``--sync-steps`` steps;
  blocking host<->device copies count);
- peak GPU memory of the mode, prefill included (``torch.cuda.max_memory_allocated``);
- the memory-bandwidth bound: the bytes a step must read (every decoder weight but the input
  embedding, the LM head, the merge for the env and the step loop, and every row's KV cache at
  the timed steps' mean length) over the device's copy bandwidth (measured at the start: read +
  written bytes per second of a 1 GiB device-to-device copy), and the share of it the step reaches.

RoPE scaling is left at the default (it does not change the cost). Run from the repository root:

    python benchmarks/gpu_throughput.py                      # the whole matrix, about 5 minutes on an H100
    python benchmarks/gpu_throughput.py --quick              # batches 1 and 32, 32 tokens: about a minute
    python benchmarks/gpu_throughput.py --shapes llama-3.1-8b --quantizations nf4 --batch-sizes 64
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _report import pyplot, save_figure, write_report

from cola_gym.envs import LatentActionVectorEnv, Task, TaskStart, TurnOutcome
from cola_gym.envs.episode import start_episode
from cola_gym.model import CoLAConfig, CoLAModel
from cola_gym.model.generation import left_pad
from cola_gym.model.heads import MergeMLP
from cola_gym.text.chat import TextCodec

SHAPES: dict[str, dict[str, Any]] = {
    "smollm2-135m": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                     "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
                     "tie_word_embeddings": True, "max_position_embeddings": 8192},
    "llama-3.2-1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
                     "tie_word_embeddings": True, "max_position_embeddings": 131072},
    "llama-3.1-8b": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
                     "tie_word_embeddings": False, "max_position_embeddings": 131072},
}  # fmt: skip
QUANTIZATIONS = ("bf16", "nf4")
MODES = ("generate", "vector_env", "step_loop")
GIB = 2**30


# ------------------------------------------------------------------ the task and the models
class EndlessTask(Task[None]):
    """A chat prompt of random one-token words, ``prompt_tokens`` tokens in all; the turn never ends."""

    def __init__(self, tokenizer: Any, stop_ids: Iterable[int], prompt_tokens: int) -> None:
        codec = TextCodec(tokenizer, stop_ids)
        vocabulary = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        candidates = [t[1:] for t in vocabulary if t.startswith("Ġ") and t[1:].isascii() and t[1:].isalpha()
                      and 3 <= len(t) <= 9]  # fmt: skip
        # words that are one token with and without the space before them: n words, n tokens
        self.words = [w for w in candidates[:4000] if len(codec.encode(w)) == 1 and len(codec.encode(" " + w)) == 1]
        if len(self.words) < 100:
            raise RuntimeError(f"found only {len(self.words)} one-token words in the tokenizer")
        overhead = len(codec.encode(codec.render(self._messages(self.words[:1])), first=True)) - 1
        self.count = prompt_tokens - overhead
        if self.count < 1:
            raise ValueError(f"the chat template alone takes {overhead} tokens; ask for a longer prompt")

    @staticmethod
    def _messages(words: Sequence[str]) -> tuple[dict[str, str], ...]:
        return ({"role": "user", "content": " ".join(words)},)

    def begin(self, options: Mapping[str, Any], rng: np.random.Generator) -> TaskStart[None]:
        picks = rng.integers(0, len(self.words), size=self.count)
        return TaskStart(None, self._messages([self.words[i] for i in picks]))

    def end_turn(self, state: None, turn_text: str) -> TurnOutcome[None]:
        return TurnOutcome(None, reward=0.0)


def build_model(shape: str, tokenizer: Any, device: torch.device, seed: int) -> CoLAModel:
    """A random bf16 decoder of ``shape`` made on ``device``, with CoLA heads (one-block IDM and
    policy: the env steps through the decoder, the LM head and the merge only)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**SHAPES[shape], rms_norm_eps=1e-5, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    torch.manual_seed(seed)
    with torch.device(device):
        decoder = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    decoder.requires_grad_(False)
    decoder.eval()
    model = CoLAModel(CoLAConfig(idm_num_layers=1, policy_num_layers=1), decoder, tokenizer,
                      decoder_name_or_path=f"random {shape}")  # fmt: skip
    with torch.no_grad():
        head = decoder.get_output_embeddings().weight
        head[len(tokenizer) :] = 0  # ids the tokenizer cannot spell never win the argmax
        head[sorted(model.stop_token_ids())] = 0  # nor does end-of-sequence: every row decodes throughout
        for module in model.world_model.modules():
            if isinstance(module, MergeMLP):
                module.down_proj.weight.normal_(0.0, 0.02)  # the actions change the tokens
    return model


def quantize_nf4(decoder: Any) -> None:
    """Replaces every linear layer of the decoder's blocks by bitsandbytes' nf4 ``Linear4bit``, in place,
    as ``load_decoder(quantization="4bit")`` builds them (compute dtype bf16, no double quantization)."""
    import bitsandbytes as bnb

    for block in decoder.get_decoder().layers:
        for name, module in list(block.named_modules()):
            if type(module) is not torch.nn.Linear:
                continue
            parent_name, _, child = name.rpartition(".")
            quantized = bnb.nn.Linear4bit(module.in_features, module.out_features, bias=module.bias is not None,
                                          compute_dtype=torch.bfloat16, compress_statistics=False, quant_type="nf4",
                                          device="meta")  # fmt: skip
            weight: Any = bnb.nn.Params4bit(module.weight.data, requires_grad=False, compress_statistics=False,
                                       quant_type="nf4", module=quantized)  # fmt: skip
            quantized.weight = weight.to(module.weight.device)  # quantizes
            if module.bias is not None:
                quantized.bias = module.bias
            setattr(block.get_submodule(parent_name) if parent_name else block, child, quantized)
    gc.collect()
    torch.cuda.empty_cache()


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of distinct tensors (nf4 weights: their packed bytes plus their scales)."""
    seen: set[int] = set()
    total = 0
    for tensor in tensors:
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel() * tensor.element_size()
        state = getattr(tensor, "quant_state", None)
        if state is not None and getattr(state, "absmax", None) is not None:
            total += state.absmax.numel() * state.absmax.element_size()
    return total


def decoder_bytes_per_step(decoder: Any) -> int:
    """Weights one decoding step reads: all but the input embedding (only B rows of it are read),
    unless it is the LM head too."""
    embedding = decoder.get_input_embeddings().weight
    tied = embedding.data_ptr() == decoder.get_output_embeddings().weight.data_ptr()
    skip = set() if tied else {embedding.data_ptr()}
    return tensor_bytes(t for t in itertools.chain(decoder.parameters(), decoder.buffers()) if t.data_ptr() not in skip)


def kv_bytes_per_position(config: Any) -> int:
    """Bytes of keys and values (bf16) one position holds across the decoder's layers."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return config.num_hidden_layers * 2 * config.num_key_value_heads * head_dim * 2


# ------------------------------------------------------------------ measuring
def copy_bandwidth(device: torch.device, size: int = GIB, repeats: int = 20) -> float:
    """Bytes read and written per second by a device-to-device copy of ``size`` bytes."""
    source = torch.empty(size, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    target.copy_(source)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        target.copy_(source)
    end.record()
    end.synchronize()
    bandwidth = 2 * size * repeats / (start.elapsed_time(end) / 1e3)
    del source, target
    torch.cuda.empty_cache()
    return bandwidth


def _is_sync(warning: warnings.WarningMessage) -> bool:
    return "synchroniz" in str(warning.message)


@contextlib.contextmanager
def counting_syncs() -> Iterator[list[warnings.WarningMessage]]:
    """Records every warning, device syncs included (``torch.cuda.set_sync_debug_mode("warn")``)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield caught
        finally:
            torch.cuda.set_sync_debug_mode("default")


def device_seconds(run: Callable[[], Any]) -> float:
    """Seconds of CUDA kernels and copies ``run()`` puts on the device (``torch.profiler``)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiler:
        run()
        torch.cuda.synchronize()
    events = profiler.events() or []
    micros = sum(e.time_range.elapsed_us() for e in events
                 if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False))  # fmt: skip
    return micros / 1e6


@contextlib.contextmanager
def _profiling_may_fail(result: dict[str, Any]) -> Iterator[None]:
    """Records a profiler failure (no CUPTI, say) in ``result`` instead of ending the run."""
    try:
        yield
    except RuntimeError as error:
        result["device_time_error"] = str(error).splitlines()[0] if str(error) else type(error).__name__


@dataclass
class Timing:
    """Timed decoding steps: wall seconds, device timeline (CUDA events), cache positions read."""

    seconds: float = 0.0
    gpu_ms: float = 0.0
    steps: int = 0
    positions: int = 0

    def run(self, step: Callable[[], int], steps: int) -> None:
        """Times ``steps`` calls of ``step()``, which decodes one token per row and returns the
        cache length it read."""
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        began = time.perf_counter()
        for _ in range(steps):
            self.positions += step()
        end.record()
        end.synchronize()
        self.seconds += time.perf_counter() - began
        self.gpu_ms += start.elapsed_time(end)
        self.steps += steps


def stepwise(step: Callable[[], int], steps: int, profile_steps: int, sync_steps: int) -> dict[str, Any]:
    """Times ``steps`` steps in two halves; between them (mid-decode), counts syncs and profiles."""
    timing = Timing()
    step()  # warm-up: the first step of a shape sets up kernels
    timing.run(step, steps // 2)
    result: dict[str, Any] = {}
    if sync_steps:
        with counting_syncs() as caught:
            for _ in range(sync_steps):
                step()
        result["syncs_per_step"] = sum(map(_is_sync, caught)) / sync_steps
    if profile_steps:

        def run() -> None:
            for _ in range(profile_steps):
                step()

        with _profiling_may_fail(result):
            result["device_ms_per_step"] = device_seconds(run) / profile_steps * 1e3
    timing.run(step, steps - steps // 2)
    return {**result, **_timing_report(timing)}


def _timing_report(timing: Timing) -> dict[str, Any]:
    return {"ms_per_step": timing.seconds / timing.steps * 1e3, "gpu_elapsed_ms_per_step": timing.gpu_ms / timing.steps,
            "mean_cache_positions": timing.positions / timing.steps, "timed_steps": timing.steps}  # fmt: skip


def run_generate(decoder: Any, ids: torch.Tensor, mask: torch.Tensor, new_tokens: int,
                 processor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> None:  # fmt: skip
    from transformers import LogitsProcessorList

    pad = decoder.generation_config.pad_token_id
    decoder.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                     do_sample=False, pad_token_id=pad,
                     logits_processor=LogitsProcessorList([processor] if processor else []))  # fmt: skip


@torch.inference_mode()
def measure_generate(decoder: Any, prompts: list[list[int]], tokens: int, profile_steps: int,
                     sync_steps: int) -> dict[str, Any]:  # fmt: skip
    """HF ``generate``: ``tokens + 1`` new tokens, timed over the ``tokens`` steps after the first
    (each step's logits processor call notes the time)."""
    device = decoder.device
    ids, mask = (t.to(device) for t in left_pad(prompts, pad_id=decoder.generation_config.pad_token_id or 0))
    run_generate(decoder, ids[:, :8], mask[:, :8], 3)  # warm-up
    stamps: list[float] = []
    events: list[torch.cuda.Event] = []

    def note_time(input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        stamps.append(time.perf_counter())
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        events.append(event)
        return scores

    torch.cuda.synchronize()
    run_generate(decoder, ids, mask, tokens + 1, note_time)
    torch.cuda.synchronize()
    result: dict[str, Any] = {
        "ms_per_step": (stamps[-1] - stamps[0]) / tokens * 1e3,
        "gpu_elapsed_ms_per_step": events[0].elapsed_time(events[-1]) / tokens,
        "mean_cache_positions": ids.shape[1] + (tokens + 1) / 2,
        "timed_steps": tokens,
    }
    if sync_steps:
        marks: list[int] = []
        with counting_syncs() as caught:

            def note_syncs(input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
                marks.append(sum(map(_is_sync, caught)))
                return scores

            run_generate(decoder, ids, mask, sync_steps + 1, note_syncs)
        result["syncs_per_step"] = (marks[-1] - marks[0]) / sync_steps
    if profile_steps:  # the same prefill twice: the difference is profile_steps decoding steps mid-decode
        middle = max(1, (tokens - profile_steps) // 2)
        with _profiling_may_fail(result):
            longer = device_seconds(lambda: run_generate(decoder, ids, mask, middle + profile_steps))
            shorter = device_seconds(lambda: run_generate(decoder, ids, mask, middle))
            result["device_ms_per_step"] = (longer - shorter) / profile_steps * 1e3
    return result


def measure_step_loop(model: CoLAModel, prompts: list[list[int]], tokens: int, profile_steps: int,
                      sync_steps: int) -> dict[str, Any]:  # fmt: skip
    """``CoLAModel.step`` on the prompts' prefill, actions drawn on the device beforehand."""
    ids, mask = left_pad(prompts)
    total = tokens + profile_steps + sync_steps + 1
    actions = torch.randint(0, model.num_actions, (total, len(prompts)), device=model.device)
    state = model.start(ids, mask, track_policy=False)
    taken = 0

    def step() -> int:
        nonlocal state, taken
        length = state.length
        _, state = model.step(state, actions[taken])
        taken += 1
        return length

    return stepwise(step, tokens, profile_steps, sync_steps)


def measure_vector_env(model: CoLAModel, task: EndlessTask, batch: int, tokens: int, profile_steps: int,
                       sync_steps: int, seed: int) -> dict[str, Any]:  # fmt: skip
    """The vector env of ``batch`` rows, random latent actions; ``reset`` (the prefill) not timed."""
    vector = LatentActionVectorEnv(num_envs=batch, task=task, model=model)
    vector.reset(seed=seed)
    rng = np.random.default_rng(seed)
    total = tokens + profile_steps + sync_steps + 1
    actions = iter(rng.integers(0, model.num_actions, size=(total, batch)))

    def step() -> int:
        state = vector.decoding_state
        assert state is not None
        length = state.length
        _, _, terminated, truncated, _ = vector.step(next(actions))
        if terminated.any() or truncated.any():
            raise RuntimeError("an episode ended: the measurement assumes every row decodes throughout")
        return length

    try:
        return stepwise(step, tokens, profile_steps, sync_steps)
    finally:
        vector.close()


def prompts_of(task: EndlessTask, model: CoLAModel, batch: int, seed: int) -> list[list[int]]:
    """The prompts the vector env's rows start with after ``reset(seed=seed)``."""
    from gymnasium.utils import seeding

    codec = TextCodec(model.tokenizer, model.stop_token_ids())
    return [
        list(start_episode(task, codec, {}, seeding.np_random(seed + row)[0], 1).prompt_ids) for row in range(batch)
    ]


def _finish_mode(result: dict[str, Any], bytes_per_step: float, bandwidth: float, batch: int) -> dict[str, Any]:
    ms = result["ms_per_step"]
    result["tokens_per_s"] = batch / (ms / 1e3)
    if "device_ms_per_step" in result:
        result["host_ms_per_step"] = max(0.0, ms - result["device_ms_per_step"])
    result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / GIB
    result["bytes_per_step_gb"] = bytes_per_step / 1e9
    result["bandwidth_bound_ms"] = bytes_per_step / bandwidth * 1e3
    result["bandwidth_share"] = result["bandwidth_bound_ms"] / ms
    return result


def measure_setting(model: CoLAModel, task: EndlessTask, batch: int, args: argparse.Namespace,
                    bandwidth: float, shape: str, quantization: str) -> dict[str, Any]:  # fmt: skip
    """Every mode at one batch size."""
    decoder = model.decoder
    prompts = prompts_of(task, model, batch, args.seed)
    weights = decoder_bytes_per_step(decoder)
    merge = tensor_bytes(model.world_model.parameters())
    per_position = kv_bytes_per_position(decoder.config)
    row: dict[str, Any] = {"shape": shape, "quantization": quantization, "batch": batch,
                           "prompt_tokens": [min(map(len, prompts)), max(map(len, prompts))],
                           "new_tokens": args.tokens}  # fmt: skip
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "generate": lambda: measure_generate(decoder, prompts, args.tokens, args.profile_steps, args.sync_steps),
        "step_loop": lambda: measure_step_loop(model, prompts, args.tokens, args.profile_steps, args.sync_steps),
        "vector_env": lambda: measure_vector_env(model, task, batch, args.tokens, args.profile_steps,
                                                 args.sync_steps, args.seed),
    }  # fmt: skip
    for mode, run in runners.items():
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            result = run()
        except torch.cuda.OutOfMemoryError as error:
            row[mode] = {"error": f"out of memory: {str(error).splitlines()[0]}"}
            continue
        read = weights + (merge if mode != "generate" else 0) + batch * result["mean_cache_positions"] * per_position
        row[mode] = _finish_mode(result, read, bandwidth, batch)
    speeds = {mode: row[mode].get("tokens_per_s") for mode in MODES}
    row["ratios"] = {
        f"{a}/{b}": speeds[a] / speeds[b]
        for a, b in (("vector_env", "generate"), ("step_loop", "generate"), ("vector_env", "step_loop"))
        if speeds[a] and speeds[b]
    }
    return row


def _line(row: dict[str, Any]) -> str:
    parts = [f"{row['shape']} {row['quantization']} batch {row['batch']}:"]
    for mode in MODES:
        r = row[mode]
        if "error" in r:
            parts.append(f"{mode} {r['error']}")
            continue
        split = (
            f" = {r['device_ms_per_step']:.2f} device + {r['host_ms_per_step']:.2f} host"
            if "host_ms_per_step" in r
            else ""
        )
        syncs = f", {r['syncs_per_step']:.1f} syncs" if "syncs_per_step" in r else ""
        parts.append(
            f"{mode} {r['tokens_per_s']:.0f} tok/s ({r['ms_per_step']:.2f} ms{split}{syncs}, "
            f"{r['bandwidth_share']:.0%} of the bandwidth bound, peak {r['peak_memory_gib']:.1f} GiB)"
        )
    if "vector_env/generate" in row["ratios"]:
        parts.append(f"vector env / generate {row['ratios']['vector_env/generate']:.2f}")
    return "\n  ".join(parts)


# ------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--quantizations", nargs="+", choices=QUANTIZATIONS, default=list(QUANTIZATIONS))
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=None, help="default 1 8 32 64 128 (--quick: 1 32)"
    )
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=None, help="decoded tokens per row (default 128, --quick: 32)")
    parser.add_argument(
        "--profile-steps",
        type=int,
        default=None,
        help="steps profiled for the device time, 0: no profile (default 16, --quick: 8)",
    )
    parser.add_argument(
        "--sync-steps",
        type=int,
        default=None,
        help="steps whose syncs are counted, 0: no count (default 8, --quick: 4)",
    )
    parser.add_argument("--quick", action="store_true", help="batches 1 and 32, 32 tokens, shorter profiles")
    parser.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the embedded SmolLM2's)")
    parser.add_argument("--device", default="cuda", help="a CUDA device: cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/gpu_throughput.json")
    args = parser.parse_args(argv)
    quick = {"batch_sizes": [1, 32], "tokens": 32, "profile_steps": 8, "sync_steps": 4}
    full = {"batch_sizes": [1, 8, 32, 64, 128], "tokens": 128, "profile_steps": 16, "sync_steps": 8}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.tokens < 2 or min(args.batch_sizes) < 1 or args.profile_steps < 0 or args.sync_steps < 0:
        parser.error("need --tokens >= 2, batch sizes >= 1, --profile-steps and --sync-steps >= 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit(f"gpu_throughput.py measures a CUDA device, and this machine has none "
                 f"(torch {torch.__version__}: torch.cuda.is_available() is False).")  # fmt: skip
    device = torch.device(args.device)
    if device.type != "cuda":
        sys.exit(f"--device must be a CUDA device (cuda or cuda:N), got {args.device!r}")
    torch.cuda.set_device(device)
    quantizations = list(args.quantizations)
    skipped = []
    if "nf4" in quantizations:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            quantizations.remove("nf4")
            skipped.append("nf4: bitsandbytes is not installed")
            print("nf4 skipped: bitsandbytes is not installed (pip install bitsandbytes)", flush=True)
    import transformers
    from transformers import AutoTokenizer

    from cola_gym.model.decoders import embedded_decoder_path

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or embedded_decoder_path())
    began = time.perf_counter()
    bandwidth = copy_bandwidth(device)
    print(f"{torch.cuda.get_device_name(device)}: copy bandwidth {bandwidth / 1e9:.0f} GB/s", flush=True)
    results, models = [], {}
    for shape in args.shapes:
        built = time.perf_counter()
        model = build_model(shape, tokenizer, device, args.seed)
        task = EndlessTask(tokenizer, model.stop_token_ids(), args.prompt_tokens)
        for quantization in quantizations:
            if quantization == "nf4":
                quantize_nf4(model.decoder)  # after the bf16 measurements: the same weights, quantized
            gc.collect()
            torch.cuda.empty_cache()
            models[f"{shape} {quantization}"] = {
                "decoder_params": sum(p.numel() for p in model.decoder.parameters()),
                "decoder_gib": tensor_bytes(model.decoder.parameters()) / GIB,
                "heads_gib": tensor_bytes(p for part in model.heads().values() for p in part.parameters()) / GIB,
                "allocated_gib": torch.cuda.memory_allocated() / GIB,
                "build_s": time.perf_counter() - built,
            }
            for batch in args.batch_sizes:
                row = measure_setting(model, task, batch, args, bandwidth, shape, quantization)
                results.append(row)
                print(_line(row), f"\n  [{time.perf_counter() - began:.0f} s]", flush=True)
            built = time.perf_counter()
        del model, task
        gc.collect()
        torch.cuda.empty_cache()
    report = {
        "device": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "copy_bandwidth_gb_s": bandwidth / 1e9,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.tokens,
        "profile_steps": args.profile_steps,
        "sync_steps": args.sync_steps,
        "models": models,
        "skipped": skipped,
        "seconds": time.perf_counter() - began,
        "results": results,
    }
    write_report(report, args.out, _plot)


def _plot(report: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    shapes = list(dict.fromkeys(r["shape"] for r in report["results"]))
    if not shapes:
        return
    fig, axes = plt.subplots(2, len(shapes), figsize=(4.4 * len(shapes), 6.4), squeeze=False)
    colors = {"generate": "#888888", "vector_env": "#1f77b4", "step_loop": "#2ca02c"}
    styles = {"bf16": "-", "nf4": "--"}
    for column, shape in enumerate(shapes):
        top, bottom = axes[0][column], axes[1][column]
        for quantization, style in styles.items():
            rows = [r for r in report["results"] if r["shape"] == shape and r["quantization"] == quantization]
            for mode, color in colors.items():
                points = [(r["batch"], r[mode]["tokens_per_s"]) for r in rows if "tokens_per_s" in r[mode]]
                if points:
                    top.plot(*zip(*points, strict=True), style, color=color, marker="o", label=f"{mode} {quantization}")
            ratios = [
                (r["batch"], r["ratios"]["vector_env/generate"]) for r in rows if "vector_env/generate" in r["ratios"]
            ]
            if ratios:
                bottom.plot(*zip(*ratios, strict=True), style, color="#1f77b4", marker="s", label=quantization)
        top.set_title(shape, fontsize=9)
        top.set_xscale("log", base=2)
        top.set_yscale("log")
        top.set_ylabel("tokens / s")
        top.legend(fontsize=6)
        bottom.axhline(1.0, color="#888888", linewidth=0.8)
        bottom.set_xscale("log", base=2)
        bottom.set_xlabel("batch (rows)")
        bottom.set_ylabel("vector env / generate")
        bottom.legend(fontsize=7)
    fig.suptitle(f"{report['device']}: {report['prompt_tokens']}-token prompts, {report['new_tokens']} new tokens",
                 fontsize=9)  # fmt: skip
    save_figure(fig, path)


if __name__ == "__main__":
    main()
