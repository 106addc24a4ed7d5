"""``python -m mnistlab.export ckpt_path=PATH format=onnx|torchscript output=FILE``: a standalone model.

The exported graph is the network itself: it takes a float32 batch ``[N, 1, 28, 28]`` of pixels in [0, 1]
(it standardizes them itself) and returns logits ``[N, 10]``; the batch size is dynamic.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from .cli import hydra_command
from .config.rundir import output_path
from .errors import ConfigError

FORMATS = ("onnx", "torchscript")


def run(cfg: DictConfig) -> None:
    from .data.datamodule import MNISTDataModule  # torch loads only to run
    from .models.exporting import export, max_difference, network_from_checkpoint

    if cfg.format not in FORMATS:
        raise ConfigError(f"format={cfg.format}: choose one of {', '.join(FORMATS)}")
    output = output_path("output", cfg.output, cfg.overwrite)
    model, checkpoint = network_from_checkpoint(cfg.ckpt_path)
    export(model, cfg.format, output)
    message = f"exported {cfg.format} to {output} ({output.stat().st_size / 1e6:.2f} MB)"
    if cfg.verify:
        datamodule = MNISTDataModule.for_checkpoint(checkpoint, cfg.data_dir)
        datamodule.setup("test")
        images = datamodule.test_set[0][:256].float().div(255).unsqueeze(1)
        message += f"; max |difference| to PyTorch on {len(images)} test digits: " \
                   f"{max_difference(model, cfg.format, output, images):.2e}"
    print(message, file=sys.stderr)


main = hydra_command("export", run)

if __name__ == "__main__":
    main()
