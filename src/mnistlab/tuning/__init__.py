"""Hyperparameter search: the Optuna sweeper over Hydra jobs, its search spaces, trial reports, sweep summaries."""
