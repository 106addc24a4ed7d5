"""The draw-a-digit page: a sketchpad and an upload, the 28x28 digit the model receives, its top 3 classes,
which ink counts for the answer (Integrated Gradients) and the first convolution's feature maps (Gradio
Blocks)."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported: no phoning home

import gradio as gr
import numpy as np
import torch
from PIL import Image

from ..config import rules
from ..core.errors import DataError
from ..core.io import write_bytes
from ..data.datamodule import MNISTDataModule
from ..data.datasets import dataset_info
from ..data.preprocess import digit_from_image
from ..models import explain, inference
from ..models.checkpoint import DEFAULT_MODEL, dataset_of, recorded_accuracy

PREVIEW_SCALE = 8  # 28 px -> 224 px, nearest neighbour: every model pixel stays visible
NUM_EXAMPLES = 6


def _upscale(pixels: np.ndarray, scale: int) -> np.ndarray:
    return np.kron(pixels, np.ones((scale, scale) + (1,) * (pixels.ndim - 2), dtype=pixels.dtype))


def _to_uint8(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(x, dtype=np.float32), 0, 1) * 255).round().astype(np.uint8)


def preview_image(digit: torch.Tensor) -> np.ndarray:
    return _upscale(_to_uint8(digit), PREVIEW_SCALE)


def attribution_image(digit: torch.Tensor, attribution: torch.Tensor) -> np.ndarray:
    """The digit in gray, the ink that speaks for the answer in red over it, the ink against it in blue."""
    gray = digit.numpy() * 0.5
    speaks_for, against = attribution.clamp(min=0).numpy(), (-attribution).clamp(min=0).numpy()
    rgb = np.stack([np.maximum(gray, speaks_for), gray * (1 - speaks_for), np.maximum(gray, against)], axis=-1)
    return _upscale(_to_uint8(rgb), PREVIEW_SCALE)


def feature_map_grid(maps: torch.Tensor, columns: int = 8, width_px: int = 480) -> np.ndarray:
    """Feature maps ``[C, H, W]``, each scaled to its own range, tiled with a one-pixel gap, enlarged to
    about ``width_px``."""
    count, height, width = maps.shape
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    scale = max(1, width_px // (columns * (width + 1)))
    grid = np.ones((rows * (height + 1) - 1, columns * (width + 1) - 1), dtype=np.float32)
    for i, fmap in enumerate(maps):
        low, high = fmap.min(), fmap.max()
        scaled = (fmap - low) / (high - low) if high > low else torch.zeros_like(fmap)
        r, c = divmod(i, columns)
        grid[r * (height + 1): r * (height + 1) + height, c * (width + 1): c * (width + 1) + width] = scaled.numpy()
    return _upscale(_to_uint8(grid), scale)


class DigitDemo:
    """What the page computes for one image, independent of Gradio (the tests call it directly too)."""

    def __init__(self, module, checkpoint: dict[str, Any], ckpt_path: str | Path | None, data_dir: str | None = None,
                 unsure_below: float = 0.5):
        self.module, self.checkpoint = module, checkpoint
        self.ckpt_path = DEFAULT_MODEL if ckpt_path is None else Path(ckpt_path)
        self.info = dataset_info(dataset_of(checkpoint))
        self.data_dir = data_dir
        self.unsure_below = rules.probability("unsure_below", unsure_below)

    def classify(self, image: Image.Image | dict | str | Path | None):
        """``(preview, top-3 label dict, saliency, feature maps, note)`` for a drawing or an upload (a file)."""
        if isinstance(image, dict):  # the sketchpad: background, layers and their composite
            image = image.get("composite")
        if image is None:
            return None, None, None, None, "Draw a digit or upload an image."
        if isinstance(image, (str, Path)):  # an upload: any file a person picks (empty, an SVG, a PDF...)
            try:
                with Image.open(image) as opened:
                    opened.load()
                    image = opened.copy()
            except (OSError, ValueError, Image.DecompressionBombError) as err:
                return None, None, None, None, f"Could not read {Path(image).name} as an image ({err}); " \
                                               "upload a PNG, JPEG, BMP or similar."
        try:
            digit = digit_from_image(image)
        except DataError as err:
            return None, None, None, None, f"Nothing to classify: {err}."
        probs = inference.logits(self.module, digit[None])[0].softmax(-1)
        top = probs.topk(3)
        label = {self.info.classes[int(i)]: float(p) for p, i in zip(top.values, top.indices, strict=True)}
        maps = explain.feature_maps(self.module, digit)
        note = "" if maps is not None else "This model has no convolution: no feature maps to show."
        if probs.max() < self.unsure_below:
            note = (f"Unsure: at most {float(probs.max()):.0%} for any class (below {self.unsure_below:.0%}); "
                    f"is it a digit, drawn larger and centred? {note}").strip()
        return (preview_image(digit), label, attribution_image(digit, explain.attribution(self.module, digit)),
                feature_map_grid(maps) if maps is not None else None, note)

    def description(self) -> str:
        hparams = self.checkpoint.get("hyper_parameters") or {}
        parameters = sum(p.numel() for p in self.module.net.parameters())
        recorded = recorded_accuracy(self.checkpoint)  # a safetensors model's own record
        metrics_file = self.ckpt_path.resolve().parent.parent / "metrics.json"
        accuracy = "not recorded"
        if recorded is not None:
            accuracy = ", ".join(f"{v:.2%} on {k}" for k, v in recorded.items()) or accuracy
        elif metrics_file.is_file():
            try:
                value = json.loads(metrics_file.read_text()).get("test/acc")
                accuracy = f"{value:.2%}" if isinstance(value, (int, float)) else accuracy
            except (OSError, ValueError):
                pass
        model = type(self.module).__name__.removesuffix("Classifier")
        layers = (hparams.get("net") or {}).get("channels") or (hparams.get("net") or {}).get("hidden")
        shape = f" {list(layers)}" if layers else ""
        name = f"the default model ({self.ckpt_path.name})" if self.ckpt_path == DEFAULT_MODEL else self.ckpt_path
        step = self.checkpoint.get("global_step")  # a .safetensors model keeps its weights, not its steps
        return (f"**{name}** · {model}{shape} · {parameters:,} parameters · trained on "
                f"{self.info.name} · test accuracy {accuracy}" + (f" · step {step}" if step is not None else ""))

    def example_files(self, folder: Path) -> list[str]:
        """A few test-set digits as PNG files (the page's examples); none when the data is not at hand."""
        try:
            datamodule = MNISTDataModule.for_checkpoint(self.checkpoint, self.data_dir)
            datamodule.hparams.download = False
            datamodule.setup("test")
        except DataError:
            return []
        images, labels = datamodule.test_set
        files = []
        for label in range(min(NUM_EXAMPLES, len(self.info.classes))):
            index = int((labels == label).nonzero()[0]) if (labels == label).any() else label
            path = folder / f"test_{index}_{self.info.classes[int(labels[index])].replace('/', '-')}.png"
            Image.fromarray(images[index].cpu().numpy()).resize((112, 112), Image.NEAREST).save(path)
            files.append(str(path))
        return files


# System fonts only: Gradio's default theme would fetch Google Fonts, which an offline machine cannot.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def as_files(classify, scratch: Path):
    """``classify`` with its images handed to Gradio as PNG files, each written whole under its own hash.

    Gradio caches an image output by rewriting a file named by the image's hash in place, which another
    request for the same picture may be downloading at that moment: under 200 requests from 8 threads, 6
    responses came back truncated. A file output is copied into its cache by rename, never rewritten.
    """
    def handler(image):
        outputs = []
        for value in classify(image):
            if isinstance(value, np.ndarray):
                buffer = io.BytesIO()
                Image.fromarray(value).save(buffer, format="png")
                data = buffer.getvalue()
                path = scratch / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
                if not path.exists():
                    write_bytes(path, data)
                value = str(path)
            outputs.append(value)
        return tuple(outputs)

    return handler


def build_app(demo: DigitDemo, scratch: Path) -> gr.Blocks:
    """The page; its example PNGs are written into ``scratch``."""
    with gr.Blocks(title="mnistlab: draw a digit", analytics_enabled=False) as app:
        gr.Markdown(f"## Draw a digit\n{demo.description()}")
        with gr.Row():
            with gr.Column():
                sketch = gr.Sketchpad(label="draw here", type="pil", image_mode="RGBA", canvas_size=(280, 280),
                                      brush=gr.Brush(default_size=20, colors=["#000000"], color_mode="fixed"),
                                      elem_id="sketchpad")
                classify_drawing = gr.Button("Classify the drawing", variant="primary", elem_id="classify")
                # a file path: the page reads it itself, so any file a person picks gets a message back
                upload = gr.Image(label="or upload a photo or scan", type="filepath", sources=["upload", "clipboard"],
                                  elem_id="upload")
            with gr.Column():
                label = gr.Label(label="prediction (top 3)", num_top_classes=3, elem_id="prediction")
                note = gr.Markdown(elem_id="note")
                with gr.Row():
                    preview = gr.Image(label="what the model receives (28x28)", elem_id="preview",
                                       interactive=False)
                    saliency = gr.Image(label="which ink counts: red for the answer, blue against",
                                        elem_id="saliency", interactive=False)
                maps = gr.Image(label="first convolution's feature maps", elem_id="feature_maps", interactive=False,
                                height=260)
        outputs = [preview, label, saliency, maps, note]
        classify = as_files(demo.classify, scratch)
        classify_drawing.click(classify, inputs=sketch, outputs=outputs, api_name="classify_drawing")
        sketch.change(classify, inputs=sketch, outputs=outputs, api_name=False, show_progress="hidden")
        # preprocess=False: the file as uploaded, opened by classify, so an empty file or an SVG gets a message
        # (Gradio's own preprocessing would open it first and fail with a traceback)
        upload.change(lambda payload: classify((payload or {}).get("path")), inputs=upload, outputs=outputs,
                      api_name="classify_upload", preprocess=False)
        examples = demo.example_files(scratch)
        if examples:
            gr.Examples(examples=[[f] for f in examples], inputs=upload, label="test-set digits")
    return app
