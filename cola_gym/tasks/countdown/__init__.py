"""Countdown: reach a target with the given numbers (generator, exact grader, task, ids)."""
