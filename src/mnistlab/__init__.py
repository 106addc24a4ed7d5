"""mnistlab: the classic MNIST lessons as a PyTorch Lightning + Hydra project."""

__version__ = "0.1.0"
