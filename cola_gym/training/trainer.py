"""The training loop shared by all stages, on Hugging Face ``accelerate``.

One :class:`CoLATrainer` runs one stage into a run directory::

    run_dir/
      run.json                  the stage config, model, data and command (a re-run must match)
      checkpoints/step-NNNNNN/  loadable CoLA checkpoints + optimizer and trainer state
      latest                    name of the newest complete checkpoint
      tensorboard/              scalars: losses, code usage, accuracies, learning rate, tokens/s
      final/                    the trained model and its model card (README.md)

Running the same stage on the same run directory again resumes from ``latest`` and ends
with the same weights as an uninterrupted run: data order and Gumbel noise are functions
of (seed, step, process), and the optimizer state is checkpointed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cola_gym.errors import CheckpointError
from cola_gym.model import CoLAModel
from cola_gym.model.checkpoint import ADAPTER_DIR, DECODER_DIR, HEADS_FILE, load_heads
from cola_gym.training.config import TrainConfig
from cola_gym.training.data import TokenizedExample, examples_fingerprint
from cola_gym.training.hidden_cache import HiddenStateCache
from cola_gym.training.model_card import write_model_card
from cola_gym.training.objectives import Batch, collate, evaluate_examples, evaluation_metrics, q_ranking_metrics
from cola_gym.training.stages import STAGE_OBJECTIVES, StageObjective, stage_objective
from cola_gym.training.state import (
    STATE_FILE,
    latest_checkpoint,
    load_optimizer,
    remove_partial_checkpoints,
    save_optimizer,
    write_checkpoint,
)

logger = logging.getLogger(__name__)

EXTRA_STATE_FILE = "objective_state.safetensors"


class CoLATrainer:
    """Trains one stage of a :class:`~cola_gym.model.CoLAModel`.

    Args:
        model: the model to train (updated in place).
        config: the stage configuration.
        examples: tokenized training examples.
        run_dir: where checkpoints, logs and the final model go.
        eval_examples: held-out examples evaluated every ``config.eval_every`` steps and at the end
            (stage q: held-out logged episodes, ranked by the Q-network, :func:`q_ranking_metrics`).
        cache_root: where hidden-state caches live (default ``run_dir/../hidden-cache``).
        accelerator: an ``accelerate.Accelerator`` (one is made if ``None``).
        description: extra facts for the model card (data sources, command line).
        show_progress: draw a progress bar on the main process.
    """

    def __init__(
        self,
        model: CoLAModel,
        config: TrainConfig,
        examples: Sequence[TokenizedExample],
        run_dir: str | os.PathLike[str],
        *,
        eval_examples: Sequence[TokenizedExample] = (),
        cache_root: str | os.PathLike[str] | None = None,
        accelerator: Any = None,
        description: dict[str, Any] | None = None,
        show_progress: bool = True,
    ) -> None:
        from accelerate import Accelerator

        if config.trains_decoder:
            # Stage 2 learns responses only: an example cut before its response teaches nothing.
            kept = [e for e in examples if e.response_spans[0][0] < len(e.ids) - 1]
            if len(kept) < len(examples):
                logger.warning(
                    "%d of %d examples have no response within seq_len; skipped",
                    len(examples) - len(kept),
                    len(examples),
                )
            examples = kept
        if not examples:
            raise ValueError("no training examples (for stage 2: none with a response within seq_len)")
        self.model = model
        self.config = config
        self.examples = list(examples)
        self.eval_examples = list(eval_examples)
        self.run_dir = Path(run_dir)
        self.cache_root = Path(cache_root) if cache_root is not None else self.run_dir.parent / "hidden-cache"
        self.accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        self.description = dict(description or {})
        self.show_progress = show_progress and self.accelerator.is_main_process
        self.cache: HiddenStateCache | None = None
        self._elapsed_before = 0.0
        self._started = time.perf_counter()
        self.compute_dtype = model.head_dtype

    # ------------------------------------------------------------------ public
    def train(self, until_step: int | None = None) -> dict[str, float]:
        """Runs (or resumes) the stage; returns the final evaluation metrics.

        Args:
            until_step: stop after this many optimizer steps in total (``None``: the
                configured ``steps``); a later call resumes from the last checkpoint.
        """
        config, accelerator = self.config, self.accelerator
        self._check_run_dir()
        self._prepare_parameters()
        if config.use_hidden_cache and not config.trains_decoder:
            self.cache = HiddenStateCache.build(
                self.model,
                self.examples,
                self.cache_root,
                batch_size=config.batch_size,
                rank=accelerator.process_index,
                world_size=accelerator.num_processes,
                barrier=accelerator.wait_for_everyone,
                show_progress=self.show_progress,
            )
        objective = stage_objective(self.model, config)
        parameters = [p for p in objective.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=config.peak_learning_rate, weight_decay=config.weight_decay)
        objective, optimizer = accelerator.prepare(objective, optimizer)
        start = self._resume(optimizer, accelerator.unwrap_model(objective))
        end = min(config.steps, until_step if until_step is not None else config.steps)
        writer = self._tensorboard()
        bar = self._progress_bar(start, end)
        started, tokens = time.perf_counter(), 0
        self._started = started
        for step in range(start, end):
            batch = self._batch(step).to(accelerator.device)
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate_at(step)
            generator = torch.Generator().manual_seed(
                config.seed * 1_000_003 + step * 1_009 + accelerator.process_index
            )
            accelerator.unwrap_model(objective).before_step(step)
            with self._autocast():
                loss, metrics = objective(batch, generator)
            accelerator.backward(loss)
            if config.grad_clip > 0:
                metrics["grad_norm"] = torch.as_tensor(accelerator.clip_grad_norm_(parameters, config.grad_clip))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            metrics.update(accelerator.unwrap_model(objective).after_step(step))
            tokens += batch.num_targets
            done = step + 1
            if done % config.log_every == 0 or done == end:
                elapsed = time.perf_counter() - started
                metrics.update(self._batch_evaluation(batch))
                metrics["loss/total"] = loss.detach()
                logged = self._log(
                    writer,
                    done,
                    metrics,
                    tokens * accelerator.num_processes / max(elapsed, 1e-9),
                    config.learning_rate_at(step),
                )
                if bar is not None:
                    bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in logged.items() if k.startswith("loss")})
            if config.eval_every and done % config.eval_every == 0 and done < config.steps:
                self._log_eval(writer, done)
            if done % config.checkpoint_every == 0 or done == end:
                self._checkpoint(done, optimizer, accelerator.unwrap_model(objective))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        final_metrics: dict[str, float] = {}
        if end == config.steps:
            final_metrics = self._log_eval(writer, end)
        self._heads_to(self.compute_dtype)  # trained in fp32, used and exported in the compute dtype
        if end == config.steps:
            self._finish(final_metrics)
        if writer is not None:
            writer.close()
        accelerator.wait_for_everyone()
        return final_metrics

    @property
    def elapsed_s(self) -> float:
        """Training wall time of this run so far, resumed sessions included."""
        return self._elapsed_before + time.perf_counter() - self._started

    # ------------------------------------------------------------------ parts
    def _prepare_parameters(self) -> None:
        STAGE_OBJECTIVES[self.config.stage].prepare(self.model, self.config)
        self.compute_dtype = self.model.head_dtype
        # fp32 master weights: at stage-1 learning rates most AdamW updates of a bf16 weight are
        # below half its unit in the last place and would round away; the forward runs under
        # autocast in the compute dtype instead.
        self._heads_to(torch.float32)
        self.model.train()
        if not self.config.trains_decoder:
            self.model.decoder.eval()

    def _check_run_dir(self) -> None:
        record = {
            "config": self.config.to_dict(),
            "cola_config": self.model.config.to_dict(),
            "model": self.description.get("model"),
            "examples": {"count": len(self.examples), "fingerprint": examples_fingerprint(self.examples)},
        }
        path = self.run_dir / "run.json"
        existing = json.loads(path.read_text()) if path.is_file() else None
        # Every process looks before the main one writes, and all pass the same barriers either way.
        if self.accelerator.is_main_process:
            for leftover in remove_partial_checkpoints(self.run_dir):
                logger.warning("removed %s, a checkpoint left half-written by an interrupted run", leftover)
        self.accelerator.wait_for_everyone()
        if existing is None and self.accelerator.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**record, "description": self.description}, indent=2))
        self.accelerator.wait_for_everyone()
        if existing is None:
            return
        mismatched = sorted(k for k in record if existing.get(k) != record[k])
        if mismatched:
            raise CheckpointError(
                f"{self.run_dir} holds a run with a different {', '.join(mismatched)}; "
                "resume it with the same arguments, or choose another output directory."
            )

    def _resume(self, optimizer: Any, objective: StageObjective) -> int:
        checkpoint = latest_checkpoint(self.run_dir)
        if checkpoint is None:
            return 0

        state = json.loads((checkpoint / STATE_FILE).read_text())
        self._elapsed_before = float(state.get("elapsed_s", 0.0))
        load_heads(self.model, checkpoint / HEADS_FILE)
        if self.config.trains_decoder:
            self._load_decoder_weights(checkpoint)
        load_optimizer(optimizer, checkpoint)
        if (checkpoint / EXTRA_STATE_FILE).is_file():
            from safetensors.torch import load_file

            objective.load_extra_state(load_file(str(checkpoint / EXTRA_STATE_FILE)))
        logger.info("resuming %s from step %d", self.run_dir, state["step"])
        return int(state["step"])

    def _load_decoder_weights(self, checkpoint: Path) -> None:
        from safetensors.torch import load_file

        decoder = self.model.decoder
        if hasattr(decoder, "peft_config"):
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(decoder, load_file(str(checkpoint / ADAPTER_DIR / "adapter_model.safetensors")))
            return
        weights: dict[str, torch.Tensor] = {}
        for file in sorted((checkpoint / DECODER_DIR).glob("*.safetensors")):
            weights.update(load_file(str(file)))
        missing, unexpected = decoder.load_state_dict(weights, strict=False)
        tied = {"lm_head.weight"} if getattr(decoder.config, "tie_word_embeddings", False) else set()
        if set(missing) - tied or unexpected:
            raise CheckpointError(
                f"decoder weights in {checkpoint} do not fit the model ({missing[:3]}, {unexpected[:3]})"
            )

    @functools.lru_cache(maxsize=4)  # noqa: B019 - one trainer per run; the cache dies with it
    def _permutation(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.config.seed, epoch])
        if not self.config.q_ranking_weight:
            return rng.permutation(len(self.examples))
        # the pairwise loss compares one prompt's episodes: keep each prompt's together, in a random order
        groups = [members[rng.permutation(len(members))] for members in self._prompt_members]
        return np.concatenate([groups[g] for g in rng.permutation(len(groups))])

    @functools.cached_property
    def _prompt_members(self) -> list[np.ndarray]:
        """The indices of the examples of each prompt (ids before the response), prompts in first-seen order."""
        members: dict[bytes, list[int]] = {}
        for index, example in enumerate(self.examples):
            members.setdefault(np.asarray(example.ids[: example.response_start]).tobytes(), []).append(index)
        return [np.asarray(indices) for indices in members.values()]

    @functools.cached_property
    def _prompt_of(self) -> np.ndarray:
        """``[N]`` the prompt number of each example (:attr:`_prompt_members`' order)."""
        prompt = np.zeros(len(self.examples), dtype=np.int64)
        for number, indices in enumerate(self._prompt_members):
            prompt[indices] = number
        return prompt

    def _batch(self, step: int) -> Batch:
        config, accelerator = self.config, self.accelerator
        first = (step * accelerator.num_processes + accelerator.process_index) * config.batch_size
        rows, indices = [], []
        for position in range(first, first + config.batch_size):
            epoch, offset = divmod(position, len(self.examples))
            index = int(self._permutation(epoch)[offset])
            indices.append(index)
            example = self.examples[index]
            if self.cache is not None:
                ids, hidden, _ = self.cache.example(index)
            else:
                ids, hidden = example.ids, None
            rows.append((ids, hidden, example.response_spans, example.transitions))
        batch = collate(rows, only_responses=config.counts_only_responses)
        if config.q_ranking_weight:
            batch.groups = torch.from_numpy(self._prompt_of[indices])
        return batch

    def _heads_to(self, dtype: torch.dtype) -> None:
        for part in self.model.heads().values():
            part.to(dtype)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Forward passes in the compute dtype over the fp32 heads (nothing to do in fp32)."""
        if self.compute_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.model.device.type, dtype=self.compute_dtype)

    @contextlib.contextmanager
    def _evaluating(self) -> Iterator[None]:
        """The model in eval mode (and under autocast) for the block, back in its training modes after it."""
        self.model.eval()
        try:
            with self._autocast():
                yield
        finally:
            self.model.train()
            if not self.config.trains_decoder:
                self.model.decoder.eval()

    def _batch_evaluation(self, batch: Batch) -> dict[str, torch.Tensor]:
        if STAGE_OBJECTIVES[self.config.stage].data == "episodes":
            return {}  # the objective's own metrics (TD loss, Q of right and wrong answers) say it all
        with self._evaluating():
            return evaluation_metrics(self.model, batch)[0]

    def _log(self, writer: Any, step: int, metrics: dict[str, torch.Tensor], tokens_per_s: float, lr: float) -> dict:
        reduced = {
            k: float(self.accelerator.reduce(v.detach().float().reshape(()), "mean"))
            for k, v in sorted(metrics.items())
        }
        reduced["speed/tokens_per_s"] = tokens_per_s
        reduced["learning_rate"] = lr
        if writer is not None:
            for key, value in reduced.items():
                writer.add_scalar(f"train/{key}", value, step)
        return reduced

    def _log_eval(self, writer: Any, step: int) -> dict[str, float]:
        if not self.eval_examples or not self.accelerator.is_main_process:
            return {}
        with self._evaluating():
            if STAGE_OBJECTIVES[self.config.stage].data == "episodes":
                metrics = q_ranking_metrics(self.model, self.eval_examples, self.config.batch_size)
            else:
                metrics = evaluate_examples(
                    self.model, self.eval_examples, self.config.batch_size, self.config.counts_only_responses
                )
        if writer is not None:
            for key, value in metrics.items():
                writer.add_scalar(f"eval/{key}", value, step)
        logger.info("step %d eval: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        return metrics

    def _checkpoint(self, step: int, optimizer: Any, objective: StageObjective) -> None:
        if self.accelerator.is_main_process:
            elapsed = self.elapsed_s

            def write(directory: Path) -> None:
                self.model.save_pretrained(directory, store_decoder=self.config.trains_decoder)
                save_optimizer(optimizer, directory)
                extra = objective.extra_state()
                if extra:
                    from safetensors.torch import save_file

                    save_file({k: v.detach().cpu().contiguous() for k, v in extra.items()},
                              str(directory / EXTRA_STATE_FILE))  # fmt: skip
                state = {"step": step, "config": self.config.to_dict(), "elapsed_s": elapsed}
                (directory / STATE_FILE).write_text(json.dumps(state, indent=2))

            write_checkpoint(self.run_dir, step, write, keep=self.config.keep_checkpoints)
        self.accelerator.wait_for_everyone()

    def _finish(self, metrics: dict[str, float]) -> None:
        if not self.accelerator.is_main_process:
            return
        final = self.run_dir / "final"
        self.model.eval()
        self.model.save_pretrained(final, store_decoder=self.config.trains_decoder)
        description = {**self.description, "training_seconds": round(self.elapsed_s, 1)}
        write_model_card(final, self.config, self.model, self.examples, metrics, description)

    def _tensorboard(self) -> Any:
        if not self.accelerator.is_main_process:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.run_dir / "tensorboard"))

    def _progress_bar(self, start: int, end: int) -> Any:
        if not self.show_progress:
            return None
        from tqdm import tqdm

        return tqdm(total=end, initial=start, desc=f"stage {self.config.stage}", unit="step")
