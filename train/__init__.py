"""Stage 1: train the course models on real data (`zeroserve train`)."""

from zeroserve.train.trainer import train_model

__all__ = ["train_model"]
