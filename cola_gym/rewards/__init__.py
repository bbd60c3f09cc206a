"""Task rewards: pure functions of the model's text."""
