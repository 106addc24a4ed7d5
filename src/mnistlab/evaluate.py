"""``python -m mnistlab.evaluate ckpt_path=PATH``: test-set metrics, confusion matrix, worst errors."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from .cli import hydra_command
from .config import rules
from .core.io import write_json

if TYPE_CHECKING:
    import torch


def test_metrics(logits: torch.Tensor, labels: torch.Tensor, class_names) -> dict[str, Any]:
    import torch
    from torchmetrics.functional.classification import multiclass_f1_score, multiclass_precision, multiclass_recall

    from .models.classifier import eval_loss

    num_classes = len(class_names)
    predictions = logits.argmax(-1)
    kwargs = dict(num_classes=num_classes, average="none")
    precision = multiclass_precision(predictions, labels, **kwargs)
    recall = multiclass_recall(predictions, labels, **kwargs)
    f1 = multiclass_f1_score(predictions, labels, **kwargs)
    support = torch.bincount(labels, minlength=num_classes)
    return {
        "test/loss": eval_loss(logits, labels).item(),  # the training run's own test/loss
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


# A grid of 8 per row: 200 is 25 rows, about 3,000 pixels tall.
MAX_WORST = 200


def evaluate(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    from .config.devices import resolve_device
    from .core.plots import confusion_figure, digits_figure, save
    from .data.datamodule import MNISTDataModule
    from .models import inference
    from .models.checkpoint import load_model

    rules.check("num_worst", cfg.num_worst, lambda v: 0 <= v <= MAX_WORST, f"must be in 0-{MAX_WORST}", whole=True)
    rules.positive("batch_size", cfg.batch_size, whole=True)
    module, checkpoint = load_model(cfg.ckpt_path, map_location=resolve_device(cfg.device))
    datamodule = MNISTDataModule.for_checkpoint(checkpoint, cfg.data_dir, cfg.dataset, cfg.batch_size)
    datamodule.setup("test")
    images, labels = datamodule.test_set
    logits = inference.logits(module, images, cfg.batch_size)
    probs = logits.softmax(-1)
    names = list(datamodule.classes)
    metrics = test_metrics(logits, labels, names)
    metrics.update(ckpt_path=str(cfg.ckpt_path), dataset=datamodule.info.name, test_images=len(labels))

    run_dir.mkdir(parents=True, exist_ok=True)
    written = dict(metrics)
    matrix = multiclass_confusion_matrix(probs.argmax(-1), labels, num_classes=len(names))
    metrics["confusion_matrix"] = matrix.tolist()
    save(confusion_figure(matrix, names), run_dir / "confusion_matrix.png")
    worst = worst_errors(probs, labels, cfg.num_worst)
    if len(worst):
        images = datamodule.test_set[0][worst].float().div(255).cpu()
        fig = digits_figure(images, labels[worst], probs[worst].argmax(-1), names, probs=probs[worst].max(-1).values,
                            title="most confidently wrong test images (true → predicted, confidence)")
        save(fig, run_dir / "worst_errors.png")
    write_json(run_dir / "metrics.json", written)  # last: a folder with metrics.json is a finished evaluation
    return metrics


def print_report(metrics: dict[str, Any], run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    header = (f"{metrics['dataset']} test set: accuracy {metrics['test/acc']:.4f}, loss {metrics['test/loss']:.4f}, "
              f"{metrics['errors']} errors")
    table = Table()
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, row in metrics["per_class"].items():
        table.add_row(name, f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", str(row["support"]))
    console = Console()
    console.print(header, soft_wrap=True)  # a line of its own: a table title wraps mid-phrase
    console.print(table)
    console.print(f"written to {run_dir}: metrics.json, confusion_matrix.png, worst_errors.png")


def run(cfg: DictConfig) -> float:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    metrics = evaluate(cfg, run_dir)
    print_report(metrics, run_dir)
    return metrics["test/acc"]


main = hydra_command("evaluate", run)

if __name__ == "__main__":
    main()
