"""reasoning-gym's procedural data sets as tasks (vetted scorers, task, ids)."""
