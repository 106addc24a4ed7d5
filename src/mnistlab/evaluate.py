"""``python -m mnistlab.evaluate ckpt_path=PATH``: test-set metrics, confusion matrix, worst errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table
from torchmetrics.functional.classification import (
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from .checkpoints import datamodule_for, load_model
from .config import CONFIG_DIR, preflight_overrides
from .errors import report_errors
from .plots import confusion_figure, digits_figure, save
from .train import write_json


def predict_test_set(module, datamodule, accelerator: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities ``[N, C]`` and labels ``[N]`` for the whole test set, in order."""
    trainer = pl.Trainer(accelerator=accelerator, devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    batches = trainer.predict(module, datamodule=datamodule)
    return torch.cat(batches).float().cpu(), datamodule.test_set[1].cpu()


def test_metrics(probs: torch.Tensor, labels: torch.Tensor, class_names) -> dict[str, Any]:
    num_classes = len(class_names)
    predictions = probs.argmax(-1)
    kwargs = dict(num_classes=num_classes, average="none")
    precision = multiclass_precision(predictions, labels, **kwargs)
    recall = multiclass_recall(predictions, labels, **kwargs)
    f1 = multiclass_f1_score(predictions, labels, **kwargs)
    support = torch.bincount(labels, minlength=num_classes)
    return {
        "test/loss": F.nll_loss(probs.clamp_min(1e-12).log(), labels).item(),
        "test/acc": (predictions == labels).float().mean().item(),
        "macro_f1": f1.mean().item(),
        "errors": int((predictions != labels).sum()),
        "per_class": {
            name: {"precision": precision[i].item(), "recall": recall[i].item(), "f1": f1[i].item(),
                   "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
    }


def worst_errors(probs: torch.Tensor, labels: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the wrong predictions made with the highest confidence, most confident first."""
    confidence, predictions = probs.max(-1)
    wrong = (predictions != labels).nonzero().flatten()
    return wrong[confidence[wrong].argsort(descending=True)][:count]


def evaluate(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    module, checkpoint = load_model(cfg.ckpt_path)
    datamodule = datamodule_for(checkpoint, cfg.data_dir, cfg.dataset, cfg.batch_size)
    datamodule.setup("test")
    probs, labels = predict_test_set(module, datamodule, cfg.accelerator)
    names = list(datamodule.classes)
    metrics = test_metrics(probs, labels, names)
    metrics.update(ckpt_path=str(cfg.ckpt_path), dataset=datamodule.info.name, test_images=len(labels))

    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "metrics.json", metrics)
    matrix = multiclass_confusion_matrix(probs.argmax(-1), labels, num_classes=len(names))
    metrics["confusion_matrix"] = matrix.tolist()
    save(confusion_figure(matrix, names), run_dir / "confusion_matrix.png")
    worst = worst_errors(probs, labels, cfg.num_worst)
    if len(worst):
        images = datamodule.test_set[0][worst].float().div(255).cpu()
        fig = digits_figure(images, labels[worst], probs[worst].argmax(-1), names, probs=probs[worst].max(-1).values,
                            title="most confidently wrong test images (true → predicted, confidence)")
        save(fig, run_dir / "worst_errors.png")
    return metrics


def print_report(metrics: dict[str, Any], run_dir: Path) -> None:
    table = Table(title=f"{metrics['dataset']} test set: accuracy {metrics['test/acc']:.4f}, "
                        f"loss {metrics['test/loss']:.4f}, {metrics['errors']} errors")
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, row in metrics["per_class"].items():
        table.add_row(name, f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", str(row["support"]))
    console = Console()
    console.print(table)
    console.print(f"written to {run_dir}: metrics.json, confusion_matrix.png, worst_errors.png")


@report_errors
def run(cfg: DictConfig) -> float:
    run_dir = Path(hydra.core.hydra_config.HydraConfig.get().runtime.output_dir)
    metrics = evaluate(cfg, run_dir)
    print_report(metrics, run_dir)
    return metrics["test/acc"]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> float:
    return run(cfg)


if __name__ == "__main__":
    preflight_overrides(sys.argv[1:], "evaluate")
    main()
