"""``python -m mnistlab.export ckpt_path=PATH format=onnx|torchscript output=FILE``: a standalone model.

The exported graph is the network itself: it takes a float32 batch ``[N, 1, 28, 28]`` of pixels in [0, 1]
(it standardizes them itself) and returns logits ``[N, 10]``; the batch size is dynamic.
"""

from __future__ import annotations

import math
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from .cli import hydra_command
from .config.rundir import output_path
from .errors import CheckpointError, ConfigError
from .io import write_bytes
from .models import inference
from .training.checkpoints import datamodule_for, load_model

FORMATS = ("onnx", "torchscript")


def network_from_checkpoint(ckpt_path: str | Path) -> tuple[nn.Module, dict]:
    """The checkpoint's plain network (pixels in, logits out), in eval mode, and the checkpoint."""
    module, checkpoint = load_model(ckpt_path)
    return module.net.to(memory_format=torch.contiguous_format).eval(), checkpoint


def export(model: nn.Module, fmt: str, output: Path) -> None:
    """Write ``model`` as ONNX or TorchScript; the file appears whole or not at all."""
    example = torch.rand(4, 1, 28, 28)
    with warnings.catch_warnings(), tempfile.TemporaryDirectory(dir=output.parent, prefix=".export-") as scratch:
        warnings.simplefilter("ignore")  # exporter deprecation chatter
        # the exporters write by path: into a scratch folder beside the output, then copied in atomically
        tmp = Path(scratch) / output.name
        if fmt == "onnx":
            batch = torch.export.Dim("batch")
            program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"],
                                        output_names=["logits"], dynamic_shapes=({0: batch},),
                                        verbose=False)
            program.save(str(tmp))
        else:
            torch.jit.save(torch.jit.trace(model, example), str(tmp))
        write_bytes(output, tmp.read_bytes())


def run_exported(fmt: str, path: Path, images: torch.Tensor) -> torch.Tensor:
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: images.numpy()})[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path))(images)


def max_difference(model: nn.Module, fmt: str, path: Path, images: torch.Tensor) -> float:
    expected = inference.logits(model, images)
    difference = (run_exported(fmt, path, images) - expected).abs().max().item()
    if not math.isfinite(difference):  # NaN compares as "not larger": never a pass
        raise CheckpointError(f"{path}: the exported model's outputs are not finite numbers")
    return difference


def run(cfg: DictConfig) -> None:
    if cfg.format not in FORMATS:
        raise ConfigError(f"format={cfg.format}: choose one of {', '.join(FORMATS)}")
    output = output_path("output", cfg.output, cfg.overwrite)
    model, checkpoint = network_from_checkpoint(cfg.ckpt_path)
    export(model, cfg.format, output)
    message = f"exported {cfg.format} to {output} ({output.stat().st_size / 1e6:.2f} MB)"
    if cfg.verify:
        datamodule = datamodule_for(checkpoint, cfg.data_dir)
        datamodule.setup("test")
        images = datamodule.test_set[0][:256].float().div(255).unsqueeze(1)
        message += f"; max |difference| to PyTorch on {len(images)} test digits: " \
                   f"{max_difference(model, cfg.format, output, images):.2e}"
    print(message, file=sys.stderr)


main = hydra_command("export", run)

if __name__ == "__main__":
    main()
