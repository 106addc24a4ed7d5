"""The lessons on MNIST itself: each trains a few short runs in this process and reads their own files
(metrics.json, the CSV log) for its figure and numbers."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib.pyplot as plt

from ..config.compose import compose
from ..training.fit import train
from .book import Context, Page, lesson

# Each run logs to CSV (what the figures read); no pictures, bar or summary table: the book prints its own.
QUIET = ["logger=csv", "callbacks.tensorboard_visuals=null", "callbacks.progress_bar=null",
         "callbacks.model_summary=null", "callbacks.cross_writer=null"]
QUICK = ["++trainer.limit_train_batches=2", "++trainer.limit_val_batches=2", "++trainer.limit_test_batches=2",
         "trainer.max_epochs=1", "++trainer.max_steps=-1", "trainer.log_every_n_steps=1"]


def run(ctx: Context, name: str, overrides: list[str]) -> tuple[dict, list[dict]]:
    """One training run, in ``<runs_dir>/<name>``: its metrics.json values and its CSV log's rows."""
    run_dir = ctx.runs_dir / name
    data = [f"data.data_dir={ctx.data_dir}"] if ctx.data_dir else []
    cfg = compose([*overrides, *QUIET, *data, *(QUICK if ctx.quick else []), f"hydra.run.dir={run_dir}"],
                  output_dir=run_dir)
    metrics = train(cfg)
    with open(next(Path(run_dir).rglob("metrics.csv"))) as f:
        return metrics, list(csv.DictReader(f))


def column(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    """The steps and values of one logged metric."""
    found = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
    return [s for s, _ in found], [v for _, v in found]


VANISHING = {"sigmoid": ["model.net.activation=sigmoid"], "ReLU": ["model.net.activation=relu"],
             "sigmoid + batch norm": ["model.net.activation=sigmoid", "model.net.batch_norm=true"]}
DEEP_DNN = ["model=dnn", "model.net.hidden=[100,100,100,100,100]", "optimizer=sgd", "optimizer.lr=0.1",
            "data.normalize=false", "++trainer.max_steps=300", "trainer.log_every_n_steps=10", "test_best=false"]


@lesson("vanishing_gradients", "3. Activations and vanishing gradients",
        "deep networks of sigmoids barely train: the gradient shrinks layer by layer toward the input; ReLU "
        "(`tf.nn.relu`) and `tf.layers.batch_normalization` fix it.",
        runs=[" ".join([*DEEP_DNN, *extra]) for extra in VANISHING.values()])
def vanishing_gradients(ctx: Context) -> Page:
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    numbers, ratios = {}, {}
    for name, extra in VANISHING.items():
        metrics, rows = run(ctx, name.replace(" + ", "_").replace(" ", "_"), [*DEEP_DNN, *extra])
        layers = sorted({k for r in rows for k in r if k.startswith("grad_norm/layers.")},
                        key=lambda k: int(k.rsplit(".", 1)[1]))
        means = [sum(column(rows, k)[1]) / max(1, len(column(rows, k)[1])) for k in layers]
        axes[0].semilogy(range(1, len(layers) + 1), means, marker="o", label=name)
        axes[1].plot(*column(rows, "train/loss"), label=name)
        ratios[name] = means[0] / means[-1] if means and means[-1] else float("nan")
        numbers[name] = (f"test accuracy {metrics.get('test/acc', float('nan')):.1%}; lowest layer's gradient "
                         f"{ratios[name]:.3g}x the output layer's")
    axes[0].set(xlabel="layer (1: next to the input, 6: the output)", ylabel="mean gradient norm",
                title="grad_norm/<layer>, averaged over the run")
    axes[1].set(xlabel="step", ylabel="training loss", title="the training loss")
    for ax in axes:
        ax.legend()
    reading = (f"Each sigmoid passes back at most a quarter of its gradient, so in five of them the lowest "
               f"layer gets {ratios['sigmoid']:.2g}x the output layer's gradient and the network barely moves "
               f"in 300 steps. ReLU passes gradients through unchanged where it is active ({ratios['ReLU']:.2g}x); "
               f"batch norm keeps the sigmoids in their steep middle ({ratios['sigmoid + batch norm']:.2g}x).")
    return Page(figure, numbers, reading)


NORMALIZATION = ["model=dnn", "optimizer=sgd", "optimizer.lr=0.05", "++trainer.max_steps=300",
                 "trainer.log_every_n_steps=10", "test_best=false"]


@lesson("normalization", "4. Input normalization",
        "the tutorials feed pixels scaled to [0, 1]; standardizing them (mean 0, standard deviation 1) is "
        "`(x - mean) / std` before the first layer.",
        runs=[" ".join([*NORMALIZATION, f"data.normalize={v}"]) for v in ("false", "true")])
def normalization(ctx: Context) -> Page:
    figure, ax = plt.subplots(figsize=(6.5, 3.8))
    accuracy = {}
    for value, name in (("false", "pixels in [0, 1]"), ("true", "standardized")):
        metrics, rows = run(ctx, f"normalize_{value}", [*NORMALIZATION, f"data.normalize={value}"])
        accuracy[name] = metrics.get("test/acc", float("nan"))
        ax.plot(*column(rows, "train/loss"), label=f"{name}: {accuracy[name]:.1%} test")
    ax.set(xlabel="step", ylabel="training loss", title="784-300-100-10, SGD lr 0.05, 300 steps")
    ax.legend()
    raw, standard = accuracy.values()
    reading = (f"MNIST's pixels average 0.13 with a spread of 0.31: unstandardized, every first-layer unit sees "
               f"inputs of one sign and its weights' gradients share a sign too, so SGD zig-zags. Standardized, "
               f"the same 300 steps reach {standard:.1%} against {raw:.1%} (mnistlab standardizes by default; "
               f"`data.normalize=false` is the tutorials' way).")
    return Page(figure, {k: f"test accuracy {v:.2%} after 300 steps" for k, v in accuracy.items()}, reading)


TRANSFER_SEEDS = (0, 1, 2)


@lesson("transfer", "5. Reusing a trained network's lower layers",
        "restore some layers with a `Saver` over their variables, and leave them out of `minimize(var_list=...)` "
        "for a while.",
        runs=["experiment=digits_0_4",
              "experiment=digits_5_9 data.train_per_class=30 transfer.ckpt_path=null seed=0",
              "experiment=digits_5_9 data.train_per_class=30 transfer.ckpt_path=<the 0-4 run>/checkpoints/last.ckpt "
              "seed=0"])
def transfer(ctx: Context) -> Page:
    source, _ = run(ctx, "digits_0_4", ["experiment=digits_0_4"])
    checkpoint = ctx.runs_dir / "digits_0_4" / "checkpoints" / "last.ckpt"
    figure, ax = plt.subplots(figsize=(6.5, 3.8))
    accuracy: dict[str, list[float]] = {}
    variants = (("from scratch", "null", "C0"), ("from the 0-4 layers", str(checkpoint), "C1"))
    for name, path, color in variants:
        for seed in TRANSFER_SEEDS:
            metrics, rows = run(ctx, f"{name.replace(' ', '_').replace('-', '_')}/seed_{seed}",
                                ["experiment=digits_5_9", "data.train_per_class=30", f"transfer.ckpt_path={path}",
                                 f"seed={seed}"])
            accuracy.setdefault(name, []).append(metrics.get("test/acc", float("nan")))
            epochs = [int(r["epoch"]) for r in rows if r.get("val/acc")]
            label = f"{name} (seeds 0, 1, 2)" if seed == TRANSFER_SEEDS[0] else None
            ax.plot(epochs, [float(r["val/acc"]) for r in rows if r.get("val/acc")], color=color, alpha=0.7,
                    label=label)
    ax.axvline(20, color="0.6", linestyle=":", label="the copied layers thaw")
    ax.set(xlabel="epoch (3 steps each: 150 images)", ylabel="validation accuracy",
           title="digits 5-9, 30 labelled images each")
    ax.legend()
    mean = {k: sum(v) / len(v) for k, v in accuracy.items()}
    numbers = {"the 0-4 network": f"{source.get('test/acc', float('nan')):.2%} on the 0-4 test digits",
               **{k: f"{mean[k]:.2%} on the 5-9 test digits, mean of seeds "
                     f"({' / '.join(f'{a:.2%}' for a in v)})" for k, v in accuracy.items()}}
    scratch, reused = mean.values()
    reading = (f"With 30 labelled images per digit, the hidden layers learned on 0-4 give {reused:.1%} against "
               f"{scratch:.1%} from random weights ({(reused - scratch) * 100:+.1f} points, mean of 3 seeds; two "
               f"more label counts and the frozen variants in [transfer-learning.md](transfer-learning.md)). "
               f"While frozen only the output layer learns, slower than a whole network would; the dip at epoch "
               f"20 is the thaw, the copied layers' first updates at the full learning rate.")
    return Page(figure, numbers, reading)
