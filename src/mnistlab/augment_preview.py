"""``python -m mnistlab.augment_preview [augment=NAME] output=FILE.png``: the augmentation lesson's picture.

Test digits as they are, then each as the chosen augment config draws it, a labelled row per draw.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig, OmegaConf

from .cli import hydra_command
from .config import rules
from .config.rundir import output_path


def run(cfg: DictConfig) -> None:
    import torch  # torch loads only to run (--help stays fast)

    from .core.plots import digits_figure, save
    from .data.augment import BatchAugment
    from .data.datasets import dataset_info, load_split

    output = output_path("output", cfg.output, cfg.overwrite, suffix=".png")
    count = rules.check("count", cfg.count, lambda v: 1 <= v <= 20, "must be 1 to 20 digits", whole=True)
    variants = rules.check("variants", cfg.variants, lambda v: 1 <= v <= 8, "must be 1 to 8 rows", whole=True)
    settings = OmegaConf.to_container(cfg.augment, resolve=True)
    augment = BatchAugment(**settings)
    info = dataset_info(cfg.dataset)
    images, labels = load_split(info.name, "test", cfg.data_dir)
    firsts = [int((labels == k).nonzero()[0]) for k in range(len(info.classes)) if (labels == k).any()]
    chosen = torch.tensor((firsts + list(range(len(labels))))[:count])  # one of each class first
    pixels = images[chosen].float().div(255).unsqueeze(1)
    generator = torch.Generator().manual_seed(rules.whole_number("seed", cfg.seed))
    rows = [pixels, *(augment(pixels, generator=generator) for _ in range(variants))]
    names = [info.classes[int(labels[i])] for i in chosen]
    titles = [f"{name} as is" for name in names]
    titles += [f"{name} draw {r}" for r in range(1, variants + 1) for name in names]
    defaults = BatchAugment().settings
    changed = ", ".join(f"{k}={v}" for k, v in augment.settings.items() if v != defaults[k]) or "none"
    save(digits_figure(torch.cat(rows), titles=titles, columns=count, title=f"augmentation: {changed}"), output)
    print(f"wrote {output}: {count} test digits as they are, then {variants} draws of {changed}", file=sys.stderr)


main = hydra_command("augment_preview", run)

if __name__ == "__main__":
    main()
