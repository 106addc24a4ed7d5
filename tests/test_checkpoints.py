"""Checkpoints written before the package layout moved (and before the network normalized its own input)
still load and give the same answers.

``data/pre_layout_checkpoints.json`` was made with mnistlab at commit 1e07cd0 (the flat layout): for three
small trained models (a DNN with ``regularization=dropout``, a center-cropped CNN, a DNN on unnormalized
pixels) their stored hyperparameters, DataModule settings and state-dict shapes, and the logits that
version's model gave on two fixed images, with the weights set as ``pre_layout_weights`` sets them.
"""

import json
from pathlib import Path

import pytest
import torch

from mnistlab.config.devices import resolve_device
from mnistlab.models import inference
from mnistlab.models.checkpoint import build_module, load_checkpoint

PRE_LAYOUT = json.loads((Path(__file__).parent / "data" / "pre_layout_checkpoints.json").read_text())
PIXELS = (torch.arange(2 * 28 * 28, dtype=torch.float32).reshape(2, 1, 28, 28) % 29) / 28


def pre_layout_weights(shapes: dict, dtypes: dict) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {name: torch.randn(shapes[name], generator=generator) * 0.1 if dtypes[name].startswith("float")
            else torch.zeros(shapes[name], dtype=getattr(torch, dtypes[name])) for name in sorted(shapes)}


@pytest.mark.parametrize("name", sorted(PRE_LAYOUT))
def test_a_checkpoint_from_before_the_move_loads_and_answers_the_same(name, tmp_path):
    entry = PRE_LAYOUT[name]
    checkpoint = {key: entry[key] for key in ("hyper_parameters", "datamodule_hyper_parameters", "mnistlab")}
    checkpoint["state_dict"] = pre_layout_weights(entry["state_dict"], entry["state_dict_dtypes"])
    path = tmp_path / "old.ckpt"
    torch.save(checkpoint, path)
    module = build_module(load_checkpoint(path), path)
    expected = torch.tensor(entry["expected_logits"])
    # the tools fed that version standardized pixels; this one takes pixels and standardizes them itself
    assert torch.allclose(inference.logits(module, PIXELS), expected, atol=1e-5)
    normalized = entry["datamodule_hyper_parameters"]["normalize"]
    assert (module.net.normalize.mean, module.net.normalize.std) == ((0.1307, 0.3081) if normalized else (0.0, 1.0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tools_load_the_model_onto_the_device_they_infer_on(tiny_run):
    from mnistlab.models.checkpoint import load_model

    module, _ = load_model(tiny_run / "checkpoints" / "last.ckpt", map_location=resolve_device("cuda"))
    assert next(module.parameters()).device.type == "cuda"
    assert inference.logits(module, torch.zeros(3, 28, 28, dtype=torch.uint8)).device.type == "cpu"


def test_tools_load_the_model_onto_the_cpu_when_asked(tiny_run):
    from mnistlab.models.checkpoint import load_model

    module, _ = load_model(tiny_run / "checkpoints" / "last.ckpt", map_location=resolve_device("cpu"))
    assert next(module.parameters()).device.type == "cpu"
    logits = inference.logits(module, torch.zeros(3, 28, 28, dtype=torch.uint8))
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_asking_for_a_missing_gpu_or_an_unknown_device_is_one_line():
    from mnistlab.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^device=cuda: PyTorch sees no CUDA GPU here; use auto or cpu$"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match=r"^device=tpu: choose one of auto, cpu, cuda, mps$"):
        resolve_device("tpu")
    assert resolve_device("auto").type == "cpu"
