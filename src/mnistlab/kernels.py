"""``python -m mnistlab.kernels [ckpt_path=PATH] [index=N] output=FILE.png``: the convolution lesson.

A test digit filtered by the classic image kernels side by side; with a CNN checkpoint also its
first-layer learned filters and the feature maps they produce on that digit.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from .cli import hydra_command
from .config import rules
from .config.rundir import output_path
from .core.errors import ConfigError


def run(cfg: DictConfig) -> None:
    from .core.plots import save
    from .data.datasets import dataset_info, load_split  # torch loads only to run (--help stays fast)
    from .models.checkpoint import dataset_of, load_model
    from .models.filters import kernels_figure

    output = output_path("output", cfg.output, cfg.overwrite, suffix=".png")
    module, dataset = None, cfg.dataset
    if cfg.ckpt_path:
        module, checkpoint = load_model(cfg.ckpt_path)
        dataset = dataset_of(checkpoint)
    info = dataset_info(dataset)
    images, labels = load_split(info.name, "test", cfg.data_dir)
    if not 0 <= rules.whole_number("index", cfg.index) < len(labels):
        raise ConfigError(f"index={cfg.index}: the test set has images 0 to {len(labels) - 1}")
    image = images[cfg.index].float() / 255
    save(kernels_figure(image, info.classes[int(labels[cfg.index])], module), output)
    print(f"wrote {output}", file=sys.stderr)


main = hydra_command("kernels", run)

if __name__ == "__main__":
    main()
