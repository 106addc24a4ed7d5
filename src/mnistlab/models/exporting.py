"""Networks as standalone files: ONNX (the dynamo exporter) and TorchScript, written atomically, and the
largest difference between an exported file's outputs and PyTorch's on the same digits."""

from __future__ import annotations

import math
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from ..core.errors import CheckpointError
from ..core.io import write_bytes
from . import inference
from .checkpoint import METRIC_STATE, SAFETENSORS_KEY, load_model


def network_of(module: nn.Module) -> nn.Module:
    """A classifier's plain network (pixels in, logits out), in eval mode."""
    return module.net.to(memory_format=torch.contiguous_format).eval()


def network_from_checkpoint(ckpt_path: str | Path) -> tuple[nn.Module, dict]:
    """The checkpoint's plain network and the checkpoint."""
    module, checkpoint = load_model(ckpt_path)
    return network_of(module), checkpoint


def export_safetensors(module: nn.Module, checkpoint: dict, output: Path, record: dict) -> None:
    """The classifier's weights (its metrics' state aside) as safetensors, its class, config and ``record``
    (accuracies, the training command) in the header: a model file that loads without pickle."""
    import json

    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items() if not k.startswith(METRIC_STATE)}
    header = {"module": type(module).__name__, "hyper_parameters": checkpoint.get("hyper_parameters"),
              "datamodule_hyper_parameters": checkpoint.get("datamodule_hyper_parameters"), "record": record}
    write_bytes(output, save(state, metadata={SAFETENSORS_KEY: json.dumps(header)}))


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
    if fmt == "safetensors":
        return inference.logits(load_model(path)[0], images)
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
