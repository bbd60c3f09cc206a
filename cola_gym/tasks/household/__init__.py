"""A household text-game engine in ALFWorld's image: rooms, rules, wording, splits and an expert.

Pure Python, knowing nothing of models or Gymnasium: games are values
(:class:`~cola_gym.tasks.household.world.Game`), the engine maps a world state and a command to
the next state and ALFWorld 0.4's text (:mod:`~cola_gym.tasks.household.engine`), the generator
draws games in ALFWorld's splits (:mod:`~cola_gym.tasks.household.generator`), and the expert
writes shortest plans (:mod:`~cola_gym.tasks.household.planner`).
"""

from cola_gym.tasks.household.engine import StepResult, admissible_commands, intro, is_won, normalize_command, step
from cola_gym.tasks.household.generator import SPLIT_SIZES, SPLITS, generate_game
from cola_gym.tasks.household.planner import expert_plan
from cola_gym.tasks.household.vocabulary import TASK_TYPES
from cola_gym.tasks.household.world import Game, Goal, Household, WorldState

__all__ = [
    "SPLITS",
    "SPLIT_SIZES",
    "TASK_TYPES",
    "Game",
    "Goal",
    "Household",
    "StepResult",
    "WorldState",
    "admissible_commands",
    "expert_plan",
    "generate_game",
    "intro",
    "is_won",
    "normalize_command",
    "step",
]
