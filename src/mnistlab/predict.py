"""``python -m mnistlab.predict ckpt_path=PATH inputs=FILE|DIR|GLOB``: classify images people have."""

from __future__ import annotations

import glob
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from .cli import hydra_command
from .config.rundir import distinct_outputs, output_path
from .data.datasets import dataset_info
from .data.idx import IDX_TYPES, read_idx
from .data.preprocess import read_gray, to_mnist
from .errors import ConfigError, DataError
from .io import json_line, write_text
from .models import inference
from .plots import digits_figure, save
from .training.checkpoints import dataset_of, load_model

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def is_idx(path: Path) -> bool:
    if "idx" in path.name and "ubyte" in path.name:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return len(head) == 4 and head[:2] == b"\x00\x00" and head[2] in IDX_TYPES and head[3] == 3


def idx_pixels(images: torch.Tensor) -> torch.Tensor:
    """IDX images as floats in [0, 1]: integers are 0-255 pixels; floats already in [0, 1] stay, floats up
    to 255 are pixels too."""
    if not images.is_floating_point():
        return images.float() / 255.0
    finite = images[torch.isfinite(images)]
    scale = 255.0 if finite.numel() and finite.max() > 1.0 else 1.0
    return (images.float() / scale).nan_to_num(0.0).clamp(0.0, 1.0)


def expand_inputs(spec: str) -> list[Path]:
    """A file, a folder (its image and IDX files, sorted) or a glob pattern."""
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and (p.suffix.lower() in IMAGE_SUFFIXES or is_idx(p)))
    else:
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    if not files:
        raise ConfigError(f"inputs={spec}: no image files found there")
    return files


def load_inputs(files: list[Path]) -> Iterator[tuple[str, torch.Tensor | None, str | None]]:
    """``(name, 28x28 digit or None, error or None)`` for every image, IDX files expanded."""
    for path in files:
        if is_idx(path):
            try:
                images = read_idx(path)
                if images.ndim != 3:
                    raise DataError(f"{path}: expected images [N, H, W], found shape {tuple(images.shape)}")
            except DataError as err:
                yield str(path), None, str(err)
                continue
            pixels = idx_pixels(images)
            for i, image in enumerate(pixels):
                name = f"{path}#{i}"
                if tuple(image.shape) == (28, 28):  # MNIST-family files are MNIST digits already
                    yield name, image, None
                    continue
                try:  # another size: the same MNIST-style preprocessing as an image file
                    yield name, to_mnist(image), None
                except DataError as err:
                    yield name, None, str(err)
            continue
        try:
            yield str(path), to_mnist(read_gray(path)), None
        except DataError as err:
            yield str(path), None, str(err)


def records(names, errors, probs, class_names) -> list[dict[str, Any]]:
    rows, k = [], 0
    for name, error in zip(names, errors, strict=True):
        if error is not None:
            rows.append({"path": name, "error": error})
            continue
        p = probs[k]
        k += 1
        top = p.topk(3)
        row = {
            "path": name,
            "label": int(top.indices[0]),
            "prob": round(float(top.values[0]), 6),
            "top3": [[int(i), round(float(v), 6)] for v, i in zip(top.values, top.indices, strict=True)],
        }
        if not class_names[0].isdigit():  # Fashion-MNIST: say what label 3 means
            row["class_name"] = class_names[row["label"]]
        rows.append(row)
    return rows


def run(cfg: DictConfig) -> None:
    output = output_path("output", cfg.output, cfg.overwrite)
    plot = output_path("plot", cfg.plot, cfg.overwrite, suffix=".png")
    distinct_outputs(output=output, plot=plot)
    files = expand_inputs(str(cfg.inputs))
    module, checkpoint = load_model(cfg.ckpt_path, map_location=inference.inference_device(cfg.accelerator))
    info = dataset_info(dataset_of(checkpoint))
    loaded = list(load_inputs(files))
    names = [name for name, _, _ in loaded]
    errors = [error for _, _, error in loaded]
    good = [digit for _, digit, error in loaded if error is None]
    digits = torch.stack(good) if good else torch.empty(0, 28, 28)
    probs = inference.logits(module, digits).softmax(-1)
    rows = records(names, errors, probs, info.classes)

    lines = "".join(json_line(row) + "\n" for row in rows)
    if output is None:
        sys.stdout.write(lines)
    else:
        write_text(output, lines)
    if plot is not None and len(digits):
        shown = min(len(digits), 64)
        ok_rows = [r for r in rows if "error" not in r][:shown]
        titles = [f"{Path(r['path']).name[:14]}\n{r.get('class_name', r['label'])} ({r['prob']:.0%})" for r in ok_rows]
        save(digits_figure(digits[:shown], titles=titles), plot)
    failed = sum(e is not None for e in errors)
    where = f" -> {output}" if output else ""
    print(f"{len(rows) - failed} predicted, {failed} unreadable{where}" + (f", plot {plot}" if plot else ""),
          file=sys.stderr)


main = hydra_command("predict", run)

if __name__ == "__main__":
    main()
