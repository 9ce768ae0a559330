"""Training: the epoch loop (loop.py) and what it is made of: its settings (config.py, torch-free), the data it is
given, the joint loss, the optimiser, evaluation, best-epoch selection, checkpoints for resuming, torchrun
processes, and metrics and plots."""
