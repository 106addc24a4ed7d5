"""``python -m mnistlab.predict ckpt_path=PATH inputs=FILE|DIR|GLOB``: classify images people have."""

from __future__ import annotations

import glob
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from .checkpoints import dataset_of, load_model, normalization_of
from .config import CONFIG_DIR, output_path, preflight_overrides
from .datasets import dataset_info
from .errors import ConfigError, DataError, report_errors
from .idx import read_idx
from .plots import digits_figure, save
from .preprocess import read_gray, to_mnist

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def is_idx(path: Path) -> bool:
    if "idx" in path.name and "ubyte" in path.name:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return len(head) == 4 and head[:3] == b"\x00\x00\x08" and head[3] == 3


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
            for i, image in enumerate(images):
                yield f"{path}#{i}", image.float() / 255.0, None
            continue
        try:
            yield str(path), to_mnist(read_gray(path)), None
        except DataError as err:
            yield str(path), None, str(err)


def predict(module, digits: torch.Tensor, mean: float, std: float, batch_size: int = 1000) -> torch.Tensor:
    """Class probabilities for ``[N, 28, 28]`` digits in [0, 1]."""
    device = module.device
    out = []
    with torch.inference_mode():
        for start in range(0, len(digits), batch_size):
            x = (digits[start : start + batch_size, None].to(device) - mean) / std
            out.append(module(x).softmax(-1).float().cpu())
    return torch.cat(out) if out else torch.empty(0, 10)


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


@report_errors
def run(cfg: DictConfig) -> None:
    output, plot = output_path(cfg.output, cfg.overwrite), output_path(cfg.plot, cfg.overwrite)
    files = expand_inputs(str(cfg.inputs))
    module, checkpoint = load_model(cfg.ckpt_path, map_location="cpu")
    if cfg.accelerator in ("gpu", "cuda") or (cfg.accelerator == "auto" and torch.cuda.is_available()):
        module = module.cuda()
    info = dataset_info(dataset_of(checkpoint))
    loaded = list(load_inputs(files))
    names = [name for name, _, _ in loaded]
    errors = [error for _, _, error in loaded]
    good = [digit for _, digit, error in loaded if error is None]
    digits = torch.stack(good) if good else torch.empty(0, 28, 28)
    probs = predict(module, digits, *normalization_of(checkpoint))
    rows = records(names, errors, probs, info.classes)

    lines = "".join(json.dumps(row) + "\n" for row in rows)
    if output is None:
        sys.stdout.write(lines)
    else:
        output.write_text(lines)
    if plot is not None and len(digits):
        shown = min(len(digits), 64)
        ok_rows = [r for r in rows if "error" not in r][:shown]
        titles = [f"{Path(r['path']).name[:14]}\n{r.get('class_name', r['label'])} ({r['prob']:.0%})" for r in ok_rows]
        save(digits_figure(digits[:shown], titles=titles), plot)
    failed = sum(e is not None for e in errors)
    where = f" -> {output}" if output else ""
    print(f"{len(rows) - failed} predicted, {failed} unreadable{where}" + (f", plot {plot}" if plot else ""),
          file=sys.stderr)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    preflight_overrides(sys.argv[1:], "predict")
    main()
