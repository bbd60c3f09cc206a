"""The frozen decoder's hidden states of a whole corpus, computed once, memory-mapped.

Stages 1a and 1b never change the decoder, so running it again every step and epoch
wastes most of the compute. The cache holds h (float16) for every token, next to the
token ids, in flat files under a directory named by a fingerprint of the decoder and the
corpus: a changed decoder or corpus never reads stale states.

Building is sharded over processes (each writes its own examples into the shared file)
and resumable: every process records how many of its batches are on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cola_gym.model import CoLAModel
from cola_gym.training.data import TokenizedExample, examples_fingerprint

_META = "meta.json"


def decoder_weights_fingerprint(model: CoLAModel) -> str:
    """Identifies the decoder's weights cheaply (reference, shapes and a few weight sums)."""
    decoder = model.decoder
    parts = [str(model.decoder_name_or_path), str(decoder.config.to_json_string(use_diff=False))]
    with torch.no_grad():
        for name, param in list(decoder.named_parameters())[:: max(1, len(list(decoder.parameters())) // 8)]:
            parts.append(f"{name}:{tuple(param.shape)}:{float(param.float().sum()):.6e}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class HiddenStateCache:
    """Read access to a built cache.

    Args:
        path: the cache directory (as returned by :meth:`build`).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        meta = json.loads((self.path / _META).read_text())
        if not meta.get("complete"):
            raise RuntimeError(f"hidden-state cache {self.path} is incomplete; build it again to finish it")
        self.meta = meta
        self.offsets = np.fromfile(self.path / "offsets.i64", dtype=np.int64)
        self.starts = np.fromfile(self.path / "starts.i64", dtype=np.int64)
        self.tokens = np.memmap(self.path / "tokens.i32", dtype=np.int32, mode="r")
        self.hidden = np.memmap(
            self.path / "hidden.f16",
            dtype=np.float16,
            mode="r",
            shape=(int(meta["num_tokens"]), int(meta["hidden_size"])),
        )

    def __len__(self) -> int:
        return len(self.starts)

    def example(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        """``(ids [T], h [T, d] float16, response_start)`` of example ``index``."""
        lo, hi = self.offsets[index], self.offsets[index + 1]
        return np.array(self.tokens[lo:hi]), np.array(self.hidden[lo:hi]), int(self.starts[index])

    @classmethod
    def build(
        cls,
        model: CoLAModel,
        examples: Sequence[TokenizedExample],
        root: str | os.PathLike[str],
        batch_size: int = 8,
        rank: int = 0,
        world_size: int = 1,
        barrier: Callable[[], None] = lambda: None,
        show_progress: bool = True,
    ) -> HiddenStateCache:
        """Computes (or finishes, or reuses) the cache of ``examples`` under ``root``.

        Every process calls this with its ``rank``; ``barrier`` synchronises them.
        """
        key = hashlib.sha256(
            f"{decoder_weights_fingerprint(model)}:{examples_fingerprint(examples)}:{len(examples)}".encode()
        ).hexdigest()[:20]
        path = Path(root) / key
        if (path / _META).is_file() and json.loads((path / _META).read_text()).get("complete"):
            return cls(path)
        lengths = np.array([len(e.ids) for e in examples], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        width = int(model.hidden_size)
        if rank == 0:
            path.mkdir(parents=True, exist_ok=True)
            if not (path / _META).is_file():
                offsets.tofile(path / "offsets.i64")
                np.array([e.response_start for e in examples], dtype=np.int64).tofile(path / "starts.i64")
                np.concatenate([e.ids for e in examples]).astype(np.int32).tofile(path / "tokens.i32")
                np.memmap(path / "hidden.f16", dtype=np.float16, mode="w+", shape=(int(offsets[-1]), width)).flush()
                meta = {
                    "num_examples": len(examples),
                    "num_tokens": int(offsets[-1]),
                    "hidden_size": width,
                    "decoder": str(model.decoder_name_or_path),
                    "complete": False,
                }
                (path / _META).write_text(json.dumps(meta, indent=2))
        barrier()
        hidden = np.memmap(path / "hidden.f16", dtype=np.float16, mode="r+", shape=(int(offsets[-1]), width))
        mine = sorted(range(rank, len(examples), world_size), key=lambda i: lengths[i])
        batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
        progress_file = path / f"progress-rank{rank}-of-{world_size}.json"
        done = json.loads(progress_file.read_text())["batches"] if progress_file.is_file() else 0
        bar = tqdm(
            total=len(batches),
            initial=done,
            desc=f"caching decoder states (rank {rank})",
            unit="batch",
            disable=not show_progress,
        )
        for number in range(done, len(batches)):
            _write_batch(model, examples, batches[number], offsets, hidden)
            hidden.flush()
            progress_file.write_text(json.dumps({"batches": number + 1}))
            bar.update(1)
        bar.close()
        barrier()
        if rank == 0:
            meta = json.loads((path / _META).read_text())
            meta["complete"] = True
            (path / _META).write_text(json.dumps(meta, indent=2))
        barrier()
        return cls(path)


@torch.inference_mode()
def _write_batch(
    model: CoLAModel, examples: Sequence[TokenizedExample], indices: list[int], offsets: np.ndarray, hidden: np.memmap
) -> None:
    width = max(len(examples[i].ids) for i in indices)
    ids = torch.zeros(len(indices), width, dtype=torch.long)
    mask = torch.zeros(len(indices), width, dtype=torch.long)
    for row, index in enumerate(indices):
        tokens = torch.as_tensor(examples[index].ids, dtype=torch.long)
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    states = model.hidden_states(ids.to(model.device), mask.to(model.device)).float().cpu().numpy()
    for row, index in enumerate(indices):
        lo, hi = offsets[index], offsets[index + 1]
        hidden[lo:hi] = states[row, : hi - lo].astype(np.float16)
