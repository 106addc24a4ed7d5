"""From a composed config to a finished run: building the Trainer, callbacks, checkpoints, pre-flight."""
