"""Graders that run untrusted text under limits: worker processes with a time and memory cap."""
