"""``python -m mnistlab.export ckpt_path=PATH format=onnx|torchscript|safetensors output=FILE``: a model file.

ONNX and TorchScript hold the network itself: it takes a float32 batch ``[N, 1, 28, 28]`` of pixels in [0, 1]
(it standardizes them itself) and returns logits ``[N, 10]``; the batch size is dynamic. Safetensors holds
the weights with the model's config and its run's record (accuracies, the training command) in the header:
what every mnistlab tool loads as ``ckpt_path=`` without pickle, and the packaged default model's format.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from omegaconf import DictConfig

from .cli import hydra_command
from .config.rundir import output_path
from .core.errors import ConfigError

FORMATS = ("onnx", "torchscript", "safetensors")


def run(cfg: DictConfig) -> None:
    from .data.datamodule import MNISTDataModule  # torch loads only to run
    from .models.checkpoint import load_model
    from .models.exporting import export, export_safetensors, max_difference, network_of

    if cfg.format not in FORMATS:
        raise ConfigError(f"format={cfg.format}: choose one of {', '.join(FORMATS)}")
    output = output_path("output", cfg.output, cfg.overwrite)
    module, checkpoint = load_model(cfg.ckpt_path)
    model = network_of(module)
    if cfg.format == "safetensors":
        export_safetensors(module, checkpoint, output, run_record(cfg.ckpt_path))
    else:
        export(model, cfg.format, output)
    message = f"exported {cfg.format} to {output} ({output.stat().st_size / 1e6:.2f} MB)"
    if cfg.verify:
        datamodule = MNISTDataModule.for_checkpoint(checkpoint, cfg.data_dir)
        datamodule.setup("test")
        images = datamodule.test_set[0][:256].float().div(255).unsqueeze(1)
        message += f"; max |difference| to PyTorch on {len(images)} test digits: " \
                   f"{max_difference(model, cfg.format, output, images):.2e}"
    print(message, file=sys.stderr)


def run_record(ckpt_path) -> dict:
    """What a safetensors export keeps of its run: the test accuracies (MNIST, other writers) from the run's
    metrics.json and the command that trained it: its .hydra/ overrides less where it ran and what only
    changed how it was shown or resumed (the results tool's runs add ``callbacks.progress_bar.refresh_rate=0``)."""
    import json
    from datetime import date

    from omegaconf import OmegaConf

    from .config.resume import override_key, run_of
    from .perf.runs import part_of_the_recipe

    run = run_of(ckpt_path)
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    overrides_file = run / ".hydra" / "overrides.yaml"
    recorded = OmegaConf.load(overrides_file) if overrides_file.is_file() else None
    overrides = [o for o in recorded or [] if part_of_the_recipe(override_key(o))]
    return {"accuracy": {"MNIST test": metrics.get("test/acc"), "UCI digits": metrics.get("test/uci_acc")},
            "trained_by": shlex.join(["python", "-m", "mnistlab.train", *overrides]) if recorded is not None else None,
            "from": Path(ckpt_path).name, "exported": f"{date.today():%Y-%m-%d}"}


main = hydra_command("export", run)

if __name__ == "__main__":
    main()
