"""zeroserve: the PyTorch Zero to All course models, trained, exported, served by Triton and verified."""

__version__ = "0.1.0"
