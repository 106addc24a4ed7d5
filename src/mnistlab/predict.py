"""``python -m mnistlab.predict ckpt_path=PATH inputs=FILE|DIR|GLOB``: classify images people have."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from .cli import hydra_command
from .config.rundir import distinct_outputs, output_path
from .core.errors import DataError
from .core.io import json_line, write_text


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
    import torch  # torch and the model load only to run (--help stays fast)

    from .config.devices import resolve_device
    from .core.plots import digits_figure, save
    from .data.datasets import dataset_info
    from .data.inputs import expand_inputs, load_inputs
    from .models import inference
    from .models.checkpoint import dataset_of, default_model_line, load_model

    output = output_path("output", cfg.output, cfg.overwrite)
    plot = output_path("plot", cfg.plot, cfg.overwrite, suffix=".png")
    distinct_outputs(output=output, plot=plot)
    files = expand_inputs(str(cfg.inputs))
    module, checkpoint = load_model(cfg.ckpt_path, map_location=resolve_device(cfg.device))
    if cfg.ckpt_path is None:
        print(default_model_line(checkpoint), file=sys.stderr)
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
    if not good:  # the rows say why each failed; a script must not take "nothing read" for success
        raise DataError(f"inputs={cfg.inputs}: none of the {failed} inputs could be read as an image "
                        f"(each one's reason is in its row{f' in {output}' if output else ''})")
    where = f" -> {output}" if output else ""
    print(f"{len(rows) - failed} predicted, {failed} unreadable{where}" + (f", plot {plot}" if plot else ""),
          file=sys.stderr)


main = hydra_command("predict", run)

if __name__ == "__main__":
    main()
