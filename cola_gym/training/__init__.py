"""Training the CoLA parts: stage 1a (latent action space), 1b (behaviour cloning), 2 (FTA)."""

from cola_gym.training.config import TrainConfig
from cola_gym.training.data import TextSource, TokenizedExample, load_examples
from cola_gym.training.trainer import CoLATrainer

__all__ = ["CoLATrainer", "TextSource", "TokenizedExample", "TrainConfig", "load_examples"]
