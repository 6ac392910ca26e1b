"""Training with accelerate: ``vistok train tokenizer|generator`` and ``vistok tokenize``."""

from .config import GeneratorTrainConfig, TokenizerTrainConfig, load_train_config
from .trainer import NonFiniteLossError, Trainer, list_checkpoints

__all__ = ["GeneratorTrainConfig", "TokenizerTrainConfig", "load_train_config", "NonFiniteLossError", "Trainer",
           "list_checkpoints", "TokenizerTrainer", "GeneratorTrainer"]


def __getattr__(name):
    if name == "TokenizerTrainer":
        from .tokenizer import TokenizerTrainer

        return TokenizerTrainer
    if name == "GeneratorTrainer":
        from .generator import GeneratorTrainer

        return GeneratorTrainer
    raise AttributeError(name)
