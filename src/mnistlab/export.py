"""``python -m mnistlab.export ckpt_path=PATH format=onnx|torchscript output=FILE``: a standalone model.

The exported graph takes a float32 batch ``[N, 1, 28, 28]`` of pixels in [0, 1] (normalization is
inside it) and returns logits ``[N, 10]``; the batch size is dynamic.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from torch import nn

from .checkpoints import datamodule_for, load_model, normalization_of
from .config import CONFIG_DIR, output_path, preflight_overrides
from .errors import ConfigError, report_errors

FORMATS = ("onnx", "torchscript")


class Standalone(nn.Module):
    """Pixels in [0, 1] -> logits: the dataset's normalization followed by the network."""

    def __init__(self, net: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((images - self.mean) / self.std)


def standalone_from_checkpoint(ckpt_path: str | Path) -> tuple[Standalone, dict]:
    module, checkpoint = load_model(ckpt_path)
    net = module.net.to(memory_format=torch.contiguous_format)
    return Standalone(net, *normalization_of(checkpoint)).eval(), checkpoint


def export(model: Standalone, fmt: str, output: Path) -> None:
    example = torch.rand(4, 1, 28, 28)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter deprecation chatter
        if fmt == "onnx":
            batch = torch.export.Dim("batch")
            program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"],
                                        output_names=["logits"], dynamic_shapes={"images": {0: batch}},
                                        verbose=False)
            program.save(str(output))
        else:
            torch.jit.save(torch.jit.trace(model, example), str(output))


def run_exported(fmt: str, path: Path, images: torch.Tensor) -> torch.Tensor:
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: images.numpy()})[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path))(images)


def max_difference(model: Standalone, fmt: str, path: Path, images: torch.Tensor) -> float:
    with torch.inference_mode():
        expected = model(images)
    return (run_exported(fmt, path, images) - expected).abs().max().item()


@report_errors
def run(cfg: DictConfig) -> None:
    if cfg.format not in FORMATS:
        raise ConfigError(f"format={cfg.format}: choose one of {', '.join(FORMATS)}")
    output = output_path(cfg.output, cfg.overwrite)
    model, checkpoint = standalone_from_checkpoint(cfg.ckpt_path)
    export(model, cfg.format, output)
    message = f"exported {cfg.format} to {output} ({output.stat().st_size / 1e6:.2f} MB)"
    if cfg.verify:
        datamodule = datamodule_for(checkpoint, cfg.data_dir)
        datamodule.setup("test")
        images = datamodule.test_set[0][:256].float().div(255).unsqueeze(1)
        message += f"; max |difference| to PyTorch on {len(images)} test digits: " \
                   f"{max_difference(model, cfg.format, output, images):.2e}"
    print(message, file=sys.stderr)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    preflight_overrides(sys.argv[1:], "export")
    main()
