"""Task families, one folder each: the task, its data or generator, its grading and its ``spec.toml``.

- :mod:`~cola_gym.tasks.math`: MATH-500, MATH and GSM8K problems, graded by value;
- :mod:`~cola_gym.tasks.countdown`: Countdown puzzles (generated), graded by an exact evaluator;
- :mod:`~cola_gym.tasks.reasoning`: reasoning-gym's procedural data sets, vetted scorers;
- :mod:`~cola_gym.tasks.household`: ALFWorld-style household games, a native engine or ALFWorld.

Every family builds on the generic machine in :mod:`cola_gym.envs` (the :class:`~cola_gym.envs.task.Task`
contract) and the shared text pieces in :mod:`cola_gym.text`; procedural families derive from
:class:`~cola_gym.tasks.procedural.ProceduralTask`. Its ``spec.toml`` declares the family's ids
(:mod:`cola_gym.registration`). This package imports nothing on purpose: registration reads the
specs without loading any family.
"""
