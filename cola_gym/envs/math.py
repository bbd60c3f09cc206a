"""Math word problems (MATH-500, MATH, GSM8K) as latent-action envs.

The prompt is the problem plus the data set's instruction, through the model's chat
template. The episode terminates at an end-of-sequence token or as soon as the answer is
complete (a closed ``\\boxed{}``, or a ``#### n`` line for GSM8K). The last step's
reward is 1 when the answer is right and 0 otherwise; a truncated episode earns 0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from cola_gym.data.math import MathDataset, MathProblem, load_math_problems
from cola_gym.envs.base import LatentActionEnv, Message, ModelArg, TurnOutcome
from cola_gym.envs.vector import LatentActionVectorEnv
from cola_gym.rewards.math import answer_is_complete, grade_text


class MathEnv(LatentActionEnv):
    """Solve a math problem, one latent action per token.

    Args:
        dataset: the data set definition (a table of ``envs/math.toml`` or a
            :class:`~cola_gym.data.math.MathDataset`).
        split: ``"test"`` or ``"train"`` (where the data set has it).
        data_dir: folder holding the data files; else ``$COLA_DATA_DIR``, else the Hub.
        model: see :class:`~cola_gym.envs.base.LatentActionEnv`.
        **env_kwargs: ``device``, ``quantization``, ``dtype``, ``track_policy``, ``render_mode``.

    ``reset(options={"problem_index": i})`` picks problem ``i``;
    ``reset(options={"problem": text, "answer": reference})`` poses your own problem
    (``problem_index`` -1); otherwise the problem is drawn from the env's seeded RNG.

    ``info`` carries ``text``, ``answer`` (the extracted answer, ``""`` until the episode
    ends), ``is_correct``, ``problem_index`` and ``num_tokens``.
    """

    def __init__(
        self,
        dataset: Mapping[str, Any] | MathDataset,
        split: str = "test",
        data_dir: str | os.PathLike[str] | None = None,
        model: ModelArg = None,
        **env_kwargs: Any,
    ) -> None:
        self.dataset = MathDataset.from_spec(dataset)
        self.split = split
        self._data_dir = data_dir
        self.problems: tuple[MathProblem, ...] = load_math_problems(self.dataset, split, data_dir)
        self.problem: MathProblem | None = None
        super().__init__(model, **env_kwargs)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        del state["problems"]  # reloaded (from the per-process cache) on unpickling
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.problems = load_math_problems(self.dataset, self.split, self._data_dir)

    def _begin_episode(self, options: Mapping[str, Any]) -> Sequence[Message]:
        self.problem = self._choose_problem(options)
        content = self.problem.problem
        if self.dataset.instruction:
            content = f"{content}\n{self.dataset.instruction}"
        return [{"role": "user", "content": content}]

    def _choose_problem(self, options: Mapping[str, Any]) -> MathProblem:
        if "problem" in options:
            problem, answer = options["problem"], options.get("answer")
            if not isinstance(problem, str) or not isinstance(answer, str) or not problem.strip() or not answer.strip():
                raise ValueError("options['problem'] needs options['answer'] too; both non-empty strings")
            return MathProblem(index=-1, problem=problem, answer=answer.strip())
        index = options.get("problem_index")
        if index is None:
            index = int(self.np_random.integers(len(self.problems)))
        elif isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.problems):
            raise ValueError(
                f"options['problem_index'] must be an int in [0, {len(self.problems)}) for "
                f"{self.dataset.name}/{self.split}, got {index!r}"
            )
        return self.problems[index]

    def _turn_complete(self, turn_text: str) -> bool:
        return answer_is_complete(turn_text, self.dataset.answer_format)

    def _end_turn(self, turn_text: str) -> TurnOutcome:
        assert self.problem is not None
        grade = grade_text(turn_text, self.problem.answer, self.dataset.answer_format)
        return TurnOutcome(
            reward=float(grade.is_correct),
            terminated=True,
            info={"answer": grade.answer or "", "is_correct": grade.is_correct},
        )

    def _initial_info(self) -> dict[str, Any]:
        assert self.problem is not None
        return {"answer": "", "is_correct": False, "problem_index": self.problem.index}


class MathVectorEnv(LatentActionVectorEnv):
    """N math episodes decoded as one batch: what ``gym.make_vec(id, num_envs=N)`` builds."""

    env_class = MathEnv
