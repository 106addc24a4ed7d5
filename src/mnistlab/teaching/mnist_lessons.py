"""The lessons on MNIST itself: each trains a few short runs in this process and reads their own files
(metrics.json, the CSV log) for its figure and numbers."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import matplotlib.pyplot as plt
from omegaconf import OmegaConf

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


def folder(name: str) -> str:
    """The run folder of a variant's name: ``"L1 (1e-4)"`` -> ``l1_1e_4``."""
    return re.sub(r"\W+", "_", name).strip("_").lower()


def commands(base: list[str], choices: dict[str, list[str]]) -> list[str]:
    """The overrides of each variant, as the book shows them: exactly what ``variants`` trains."""
    return [" ".join([*base, *extra]) for extra in choices.values()]


def variants(ctx: Context, base: list[str], choices: dict[str, list[str]]) -> dict[str, tuple[dict, list[dict]]]:
    """Each variant (``base`` plus its own overrides) trained in its own folder, one after the other: its
    metrics.json values and CSV rows, by name."""
    return {name: run(ctx, folder(name), [*base, *extra]) for name, extra in choices.items()}


def tested_accuracy(metrics: dict) -> float:
    return metrics.get("test/acc", float("nan"))


def last_checkpoint(ctx: Context, run_folder: str) -> Path:
    """The ``last.ckpt`` of the run ``run`` trained in ``run_folder`` (a variant's: ``folder(name)``)."""
    return ctx.runs_dir / run_folder / "checkpoints" / "last.ckpt"


def column(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    """The steps and values of one logged metric."""
    found = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
    return [s for s, _ in found], [v for _, v in found]


VANISHING = {"sigmoid": ["model.net.activation=sigmoid"], "ReLU": ["model.net.activation=relu"],
             "sigmoid + batch norm": ["model.net.activation=sigmoid", "model.net.batch_norm=true"]}
DEEP_DNN = ["model=dnn", "model.net.hidden=[100,100,100,100,100]", "optimizer=sgd", "optimizer.lr=0.1",
            "data.normalize=false", "++trainer.max_steps=300", "trainer.log_every_n_steps=10", "test_best=false"]


@lesson("vanishing_gradients", "Activations and vanishing gradients",
        "deep networks of sigmoids barely train: the gradient shrinks layer by layer toward the input; ReLU "
        "(`tf.nn.relu`) and `tf.layers.batch_normalization` fix it.",
        runs=commands(DEEP_DNN, VANISHING))
def vanishing_gradients(ctx: Context) -> Page:
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    numbers, ratios = {}, {}
    for name, (metrics, rows) in variants(ctx, DEEP_DNN, VANISHING).items():
        layers = sorted({k for r in rows for k in r if k.startswith("grad_norm/layers.")},
                        key=lambda k: int(k.rsplit(".", 1)[1]))
        means = [sum(column(rows, k)[1]) / max(1, len(column(rows, k)[1])) for k in layers]
        axes[0].semilogy(range(1, len(layers) + 1), means, marker="o", label=name)
        axes[1].plot(*column(rows, "train/loss"), label=name)
        ratios[name] = means[0] / means[-1] if means and means[-1] else float("nan")
        numbers[name] = (f"test accuracy {tested_accuracy(metrics):.1%}; lowest layer's gradient "
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
SCALINGS = {"pixels in [0, 1]": ["data.normalize=false"], "standardized": ["data.normalize=true"]}


@lesson("normalization", "Input normalization",
        "the tutorials feed pixels scaled to [0, 1]; standardizing them (mean 0, standard deviation 1) is "
        "`(x - mean) / std` before the first layer.",
        runs=commands(NORMALIZATION, SCALINGS))
def normalization(ctx: Context) -> Page:
    figure, ax = plt.subplots(figsize=(6.5, 3.8))
    accuracy = {}
    for name, (metrics, rows) in variants(ctx, NORMALIZATION, SCALINGS).items():
        accuracy[name] = tested_accuracy(metrics)
        ax.plot(*column(rows, "train/loss"), label=f"{name}: {accuracy[name]:.1%} test")
    ax.set(xlabel="step", ylabel="training loss", title="784-300-100-10, SGD lr 0.05, 300 steps")
    ax.legend()
    raw, standard = accuracy.values()
    reading = (f"MNIST's pixels average 0.13 with a spread of 0.31: unstandardized, every first-layer unit sees "
               f"inputs of one sign and its weights' gradients share a sign too, so SGD zig-zags. Standardized, "
               f"the same 300 steps reach {standard:.1%} against {raw:.1%} (mnistlab standardizes by default; "
               f"`data.normalize=false` is the tutorials' way).")
    return Page(figure, {k: f"test accuracy {v:.2%} after 300 steps" for k, v in accuracy.items()}, reading)


def first_nan(rows: list[dict], key: str = "train/loss") -> int | None:
    steps, values = column(rows, key)
    return next((s for s, v in zip(steps, values, strict=True) if v != v), None)  # NaN != NaN


SHORT_DNN = ["model=dnn", "optimizer=sgd", "++trainer.max_steps=300", "trainer.log_every_n_steps=10",
             "test_best=false"]
# logged every step: the blow-up is quick
EVERY_STEP = ["trainer.log_every_n_steps=1" if o.startswith("trainer.log_every_n_steps=") else o for o in SHORT_DNN]
# The divergence guard would stop a run at its first NaN, with advice; here the NaN is the lesson
RATES = {"lr=0.001": ["optimizer.lr=0.001"], "lr=0.01": ["optimizer.lr=0.01"], "lr=0.1": ["optimizer.lr=0.1"],
         "lr=1": ["optimizer.lr=1.0", "callbacks.divergence_guard=null"],
         "lr=1, gradients clipped to norm 1": ["optimizer.lr=1.0", "trainer.gradient_clip_val=1.0",
                                                "callbacks.divergence_guard=null"]}


@lesson("learning_rates", "Learning rates, from too small to NaN, and clipping",
        "`GradientDescentOptimizer(learning_rate)`; too large and the loss turns to NaN, which "
        "`tf.clip_by_global_norm` on the gradients can prevent.",
        runs=commands(EVERY_STEP, RATES))
def learning_rates(ctx: Context) -> Page:
    figure, ax = plt.subplots(figsize=(7, 4))
    numbers, accuracy = {}, {}
    for name, (metrics, rows) in variants(ctx, EVERY_STEP, RATES).items():
        nan = first_nan(rows)
        accuracy[name] = tested_accuracy(metrics)
        line, = ax.semilogy(*column(rows, "train/loss"), label=name + (f" (NaN from step {nan})" if nan is not None
                                                                       else ""), linewidth=0.8)
        if nan is not None:
            ax.plot([nan], [1e4], "x", color=line.get_color(), markersize=10)
        numbers[name] = f"test accuracy {accuracy[name]:.1%}" + (f"; loss NaN from step {nan}" if nan is not None
                                                                 else "")
    ax.set(xlabel="step", ylabel="training loss (log)", title="784-300-100-10, plain SGD, 300 steps (x: NaN)",
           ylim=(0.03, 2e4))
    ax.legend(fontsize=8)
    best = max((k for k in accuracy if "clipped" not in k), key=lambda k: accuracy[k])
    reading = (f"Too small a rate barely moves in 300 steps ({accuracy['lr=0.001']:.1%}); {best} is the best "
               f"here ({accuracy[best]:.1%}). At lr=1 one step overshoots, the logits overflow and the loss "
               f"becomes NaN: the network is lost ({accuracy['lr=1']:.1%}, chance). Clipping each step's gradient "
               f"to norm 1 bounds how far a step goes, and the same rate trains "
               f"({accuracy['lr=1, gradients clipped to norm 1']:.1%}). Without `callbacks.divergence_guard=null` "
               f"mnistlab stops such a run at its first NaN and says which setting to change.")
    return Page(figure, numbers, reading)


LOSSES = {"cross-entropy": ["model.loss=cross_entropy"], "squared error": ["model.loss=squared_error"]}
LOSS_RUN = ["model=dnn", "optimizer=sgd", "optimizer.lr=0.1", "++trainer.max_steps=300",
            "trainer.log_every_n_steps=10", "test_best=false"]


@lesson("losses", "Losses: cross-entropy against squared error",
        "`tf.nn.softmax_cross_entropy_with_logits` against `tf.losses.mean_squared_error(one_hot, softmax)`: the "
        "same predictions, different gradients.",
        runs=commands(LOSS_RUN, LOSSES))
def losses(ctx: Context) -> Page:
    figure, ax = plt.subplots(figsize=(7, 4))
    accuracy = {}
    for name, (metrics, rows) in variants(ctx, LOSS_RUN, LOSSES).items():
        accuracy[name] = tested_accuracy(metrics)
        ax.plot(*column(rows, "train/acc"), marker=".", label=f"{name}: {accuracy[name]:.1%} test")
    ax.set(xlabel="step", ylabel="training accuracy", title="784-300-100-10, SGD lr 0.1, 300 steps")
    ax.legend()
    entropy, squared = accuracy.values()
    reading = (f"Cross-entropy's gradient on the logits is softmax minus one-hot: a confidently wrong answer gets "
               f"the largest push. The squared error passes through the softmax's slope, which is nearly flat "
               f"when the softmax is sure, wrong or right, so learning slows: after 300 steps {squared:.1%} "
               f"against {entropy:.1%}.")
    return Page(figure, {f"{k} loss": f"test accuracy {v:.2%} after 300 steps" for k, v in accuracy.items()},
                reading)


OPTIMIZERS = {"SGD": ["optimizer=sgd"], "momentum 0.9": ["optimizer=momentum"], "Nesterov": ["optimizer=nesterov"],
              "RMSprop": ["optimizer=rmsprop"], "Adam": ["optimizer=adam"]}


@lesson("optimizers", "Optimizers",
        "`GradientDescentOptimizer`, `MomentumOptimizer(use_nesterov=...)`, `RMSPropOptimizer`, `AdamOptimizer`: "
        "the same gradients, different steps.",
        runs=commands(SHORT_DNN, OPTIMIZERS))
def optimizers(ctx: Context) -> Page:
    figure, ax = plt.subplots(figsize=(7, 4))
    accuracy = {}
    for name, (metrics, rows) in variants(ctx, SHORT_DNN, OPTIMIZERS).items():
        accuracy[name] = tested_accuracy(metrics)
        ax.plot(*column(rows, "train/loss"), label=f"{name}: {accuracy[name]:.1%}")
    ax.set(xlabel="step", ylabel="training loss", title="784-300-100-10, 300 steps, each at its default rate")
    ax.legend()
    ranked = sorted(accuracy, key=accuracy.get, reverse=True)
    reading = (f"After 300 steps: {', '.join(f'{k} {accuracy[k]:.1%}' for k in ranked)}. Momentum keeps a "
               f"running direction, so steps add up where gradients agree; RMSprop and Adam scale each weight's "
               f"step by its gradients' recent size, which is why their default rate is 0.001, not SGD's 0.01.")
    return Page(figure, {k: f"test accuracy {v:.2%} after 300 steps" for k, v in accuracy.items()}, reading)


DECAY = ["model=dnn", "optimizer=adam", "trainer.max_epochs=5", "test_best=false"]
SCHEDULES = {"constant lr 0.001": [],
             "staircase: x0.5 every 500 steps": ["scheduler=exponential", "scheduler.scheduler.staircase=true",
                                                 "scheduler.scheduler.decay_steps=500",
                                                 "scheduler.scheduler.decay_rate=0.5"]}


@lesson("lr_decay", "Learning-rate decay",
        "`tf.train.exponential_decay(lr, global_step, decay_steps, decay_rate, staircase=True)`: big steps "
        "first, small ones to settle.",
        runs=commands(DECAY, SCHEDULES))
def lr_decay(ctx: Context) -> Page:
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    accuracy = {}
    for name, (metrics, rows) in variants(ctx, DECAY, SCHEDULES).items():
        accuracy[name] = tested_accuracy(metrics)
        axes[0].plot(*column(rows, "lr-Adam"), label=name)
        axes[1].semilogy(*column(rows, "train/loss"), label=f"{name}: {accuracy[name]:.2%}", alpha=0.8)
    axes[0].set(xlabel="step", ylabel="learning rate", title="lr-Adam, as the LR monitor logged it")
    axes[1].set(xlabel="step", ylabel="training loss (log)", title="784-300-100-10, Adam, 5 epochs")
    for ax in axes:
        ax.legend()
    constant, decayed = accuracy.values()
    verdict = ("the smaller late steps settle lower" if decayed > constant
               else "at this length the constant rate did as well: decay pays once a run reaches its noise floor")
    reading = (f"The staircase halves the rate every 500 steps (0.001, 0.0005, 0.00025, ...): early steps cover "
               f"ground, late ones stop bouncing around the minimum. After 5 epochs: {decayed:.2%} against "
               f"{constant:.2%} at a constant rate ({(decayed - constant) * 100:+.2f} points): {verdict}.")
    return Page(figure, {k: f"test accuracy {v:.2%} after 5 epochs" for k, v in accuracy.items()}, reading)


PENALTIES = {"no penalty": ["regularization=none"], "L1 (1e-4)": ["regularization=l1", "regularization.l1=1e-4"],
             "L2 (1e-3)": ["regularization=l2", "regularization.l2=1e-3"]}
THREE_EPOCHS = ["model=dnn", "optimizer=sgd", "optimizer.lr=0.1", "trainer.max_epochs=3", "test_best=false"]


@lesson("l1_l2", "L1 and L2 penalties on the weights",
        "`tf.contrib.layers.l1_regularizer` / `l2_regularizer` added to the loss: L1 pushes weights to zero, L2 "
        "keeps them all small.",
        runs=commands(THREE_EPOCHS, PENALTIES))
def l1_l2(ctx: Context) -> Page:
    from ..models.checkpoint import load_checkpoint

    figure, ax = plt.subplots(figsize=(7, 4))
    numbers, sparsity = {}, {}
    for name, (metrics, _) in variants(ctx, THREE_EPOCHS, PENALTIES).items():
        weights = load_checkpoint(last_checkpoint(ctx, folder(name)))["state_dict"]
        first = weights["net.layers.1.weight"].flatten()
        sparsity[name] = (first.abs() < 1e-3).float().mean().item()
        ax.hist(first.numpy(), bins=200, range=(-0.15, 0.15), histtype="step", label=name, density=True)
        numbers[name] = (f"test accuracy {tested_accuracy(metrics):.2%}; first layer: "
                         f"{sparsity[name]:.0%} of weights under 0.001, L2 norm {first.norm():.1f}")
    ax.set(xlabel="weight of the first layer (784 -> 300)", ylabel="density", title="after 3 epochs", yscale="log")
    ax.legend()
    reading = (f"L1's pull is the same size for every weight, so the many weights that carry nothing (the "
               f"pixels at the border are always 0) end at zero: {sparsity['L1 (1e-4)']:.0%} of the first layer "
               f"under 0.001 against {sparsity['no penalty']:.0%} without. L2 pulls in proportion to a weight's "
               f"size: it shrinks the large ones and leaves few exactly at zero ({sparsity['L2 (1e-3)']:.0%}).")
    return Page(figure, numbers, reading)


SMALL = ["model=dnn", "data.train_per_class=100", "optimizer=adam", "trainer.max_epochs=200",
         "trainer.log_every_n_steps=4",
         "callbacks.early_stopping.patience=15", "callbacks.early_stopping.monitor=val/loss",
         "callbacks.early_stopping.mode=min"]
DROPOUTS = {"no dropout": ["model.net.dropout=0"], "dropout 0.5": ["model.net.dropout=0.5"]}


@lesson("dropout_early_stopping", "Overfitting, dropout and early stopping",
        "on few images a network learns them by heart; `tf.layers.dropout(rate=0.5, training=...)` and stopping "
        "when the validation loss stops improving fight it.",
        runs=commands(SMALL, DROPOUTS))
def dropout_early_stopping(ctx: Context) -> Page:
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    numbers, lowest, accuracy = {}, {}, {}
    for ax, (name, (metrics, rows)) in zip(axes, variants(ctx, SMALL, DROPOUTS).items(), strict=True):
        train = [(int(r["epoch"]), float(r["train/loss"])) for r in rows if r.get("train/loss")]
        val = [(int(r["epoch"]), float(r["val/loss"])) for r in rows if r.get("val/loss")]
        best = min(val, key=lambda v: v[1]) if val else (0, float("nan"))
        ax.plot([e for e, _ in train], [v for _, v in train], ".", markersize=2, alpha=0.4, label="training loss")
        ax.plot([e for e, _ in val], [v for _, v in val], label="validation loss")
        ax.axvline(best[0], color="0.5", linestyle=":", label=f"best validation: epoch {best[0]}")
        ax.set(xlabel="epoch (8 steps: 1,000 images)", ylabel="loss", title=name, yscale="log")
        ax.legend(fontsize=8)
        stopped = metrics.get("stopped_early")
        lowest[name] = best[1]
        accuracy[name] = tested_accuracy(metrics)
        numbers[name] = (f"validation loss lowest ({best[1]:.3f}) at epoch {best[0]}; "
                         f"{'stopped early' if stopped else 'ran out of epochs'} after {metrics.get('epochs')} "
                         f"epochs; test accuracy {accuracy[name]:.2%} (the best val/acc checkpoint)")
    plain, dropped = DROPOUTS
    reading = (f"With 100 images per digit the training loss keeps falling while the validation loss turns back "
               f"up: the network is memorizing. Early stopping keeps the best checkpoint and stops 15 epochs "
               f"after the turn. Dropout makes memorizing harder: lowest validation loss {lowest[dropped]:.3f} "
               f"against {lowest[plain]:.3f}, test accuracy {accuracy[dropped]:.2%} against {accuracy[plain]:.2%}.")
    return Page(figure, numbers, reading)


def parameters(ctx: Context, run_folder: str) -> int:
    from ..models.checkpoint import load_checkpoint

    state = load_checkpoint(last_checkpoint(ctx, run_folder))["state_dict"]
    return sum(v.numel() for k, v in state.items() if k.startswith("net."))


EMA_RUN = ["model=dnn", "optimizer=sgd", "optimizer.lr=0.2", "trainer.max_epochs=3", "++trainer.val_check_interval=0.2",
           "test_best=false"]
AVERAGES = {"the weights": [], "their moving average (decay 0.999)": ["callbacks=ema"]}


@lesson("moving_averages", "Moving averages of the weights",
        "`tf.train.ExponentialMovingAverage(0.999).apply(variables)`, then evaluating with the averages: the "
        "noise of the last steps averaged out.",
        runs=commands(EMA_RUN, AVERAGES))
def moving_averages(ctx: Context) -> Page:
    figure, ax = plt.subplots(figsize=(7, 4))
    accuracy = {}
    for name, (metrics, rows) in variants(ctx, EMA_RUN, AVERAGES).items():
        accuracy[name] = tested_accuracy(metrics)
        ax.plot(*column(rows, "val/acc"), marker=".", label=f"validating {name}: {accuracy[name]:.2%} test")
    ax.set(xlabel="step", ylabel="validation accuracy", title="784-300-100-10, SGD lr 0.2, 3 epochs")
    ax.legend()
    plain, averaged = accuracy.values()
    reading = (f"At a large rate the weights jump around the minimum from step to step; their average over the "
               f"last ~1,000 steps sits nearer its middle. The same run tested with the averaged weights: "
               f"{averaged:.2%} against {plain:.2%} ({(averaged - plain) * 100:+.2f} points), at the cost of one "
               f"copy of the weights.")
    return Page(figure, {f"testing {k}": f"{v:.2%}" for k, v in accuracy.items()}, reading)


TWO_EPOCHS = ["trainer.max_epochs=2", "test_best=false"]
ARCHITECTURES = {"DNN 784-300-100-10": ["model=dnn", *TWO_EPOCHS], "Keras CNN": ["model=cnn", *TWO_EPOCHS],
                 "LeNet-5": ["model=lenet5", *TWO_EPOCHS]}


@lesson("architectures", "DNN, CNN and LeNet-5",
        "the tutorials' dense network against their convolutional one (`tf.layers.conv2d`, `max_pooling2d`), and "
        "LeNet-5, the first CNN for digits.",
        runs=commands([], ARCHITECTURES))
def architectures(ctx: Context) -> Page:
    figure, ax = plt.subplots(figsize=(7, 4))
    numbers, found = {}, {}
    for name, (metrics, _) in variants(ctx, [], ARCHITECTURES).items():
        found[name] = (parameters(ctx, folder(name)), metrics.get("fit_seconds", 0.0), tested_accuracy(metrics))
        count, seconds, acc = found[name]
        ax.scatter(seconds, acc * 100, s=30 + count / 2000)
        ax.annotate(f"{name}\n{count:,} parameters", (seconds, acc * 100), textcoords="offset points", xytext=(8, -4))
        numbers[name] = f"{count:,} parameters; {seconds:.0f} s for 2 epochs; test accuracy {acc:.2%}"
    ax.set(xlabel="seconds to train 2 epochs (2-core CPU)", ylabel="test accuracy %", title="same data, 2 epochs, Adam")
    dnn, cnn, _ = found.values()
    reading = (f"The CNN has {cnn[0] / dnn[0]:.2f}x the DNN's parameters but shares each 3x3 or 5x5 filter across "
               f"the whole image, so it sees strokes wherever they are: {cnn[2]:.2%} against {dnn[2]:.2%}, for "
               f"{cnn[1] / max(dnn[1], 1e-9):.1f}x the time. Convolutions cost compute, not parameters.")
    return Page(figure, numbers, reading)


ONE_CNN_EPOCH = ["model=cnn", "trainer.max_epochs=1", "test_best=false"]


@lesson("kernels", "Convolution kernels",
        "`tf.nn.conv2d(image, kernel)` with hand-made kernels (edges, blur), then the kernels a CNN learned in "
        "its first layer.",
        runs=[" ".join(ONE_CNN_EPOCH)])
def kernels(ctx: Context) -> Page:
    from ..data.datasets import load_split
    from ..models.checkpoint import load_model
    from ..models.filters import kernels_figure

    metrics, _ = run(ctx, "cnn", ONE_CNN_EPOCH)
    module, _ = load_model(last_checkpoint(ctx, "cnn"))
    images, labels = load_split("mnist", "test", ctx.data_dir)
    figure = kernels_figure(images[0].float().div(255), str(int(labels[0])), module)
    first = module.net.features[0].weight
    reading = (f"A kernel is a small weight grid slid over the image: the hand-made ones (top row) find edges in "
               f"one direction or blur. The CNN's first layer learned {first.shape[0]} kernels of "
               f"{first.shape[2]}x{first.shape[3]} in one epoch ({tested_accuracy(metrics):.2%} test): "
               f"many are edge and stroke detectors of their own, and the feature maps below show where each fires. "
               f"The kernels tool (`mnistlab.kernels`) draws this for any CNN checkpoint.")
    return Page(figure, {"the CNN after one epoch": f"test accuracy {tested_accuracy(metrics):.2%}",
                         "its first layer": f"{first.shape[0]} kernels of {first.shape[2]}x{first.shape[3]}"}, reading)


ONE_PASS = ["model=dnn", "optimizer=sgd", "optimizer.lr=0.05", "trainer.max_epochs=1", "test_best=false"]
# about 3,000 images between logged losses, whatever the batch
BATCH_SIZES = (16, 128, 1024)
BATCHES = {f"batch {b}": [f"data.batch_size={b}", f"trainer.log_every_n_steps={max(1, 3000 // b)}"]
           for b in BATCH_SIZES}


@lesson("batch_size", "Batch size, steps and epochs",
        "`batch_size` images per `sess.run(train_op)`: one step; an epoch is one pass over the training set, "
        "however many steps that takes.",
        runs=commands(ONE_PASS, BATCHES))
def batch_size(ctx: Context) -> Page:
    figure, ax = plt.subplots(figsize=(7, 4))
    numbers, accuracy = {}, {}
    for batch, (name, (metrics, rows)) in zip(BATCH_SIZES, variants(ctx, ONE_PASS, BATCHES).items(), strict=True):
        steps, losses = column(rows, "train/loss")
        accuracy[batch] = tested_accuracy(metrics)
        ax.plot([s * batch for s in steps], losses, label=f"{name}: {metrics.get('global_step')} steps")
        numbers[name] = (f"{metrics.get('global_step')} steps = {metrics.get('epochs')} epoch; "
                         f"{metrics.get('fit_seconds', 0):.1f} s; test accuracy {accuracy[batch]:.2%}")
    ax.set(xlabel="training images seen", ylabel="training loss", title="one epoch, SGD lr 0.05")
    ax.legend()
    small, large = accuracy[BATCH_SIZES[0]], accuracy[BATCH_SIZES[-1]]
    verdict = "get further in one pass" if small > large else "do not get further in one pass here"
    reading = (f"One epoch is 54,000 images whatever the batch: {54_000 // 16:,} steps of 16 or {54_000 // 1024} of "
               f"1,024. At the same learning rate small batches take many more (noisier) steps and {verdict} "
               f"({small:.2%} against {large:.2%}); large batches use the CPU better per image but need a larger "
               f"rate or more epochs.")
    return Page(figure, numbers, reading)


FEW = ["model=cnn", "data.train_per_class=100", "trainer.max_epochs=40", "callbacks.early_stopping.patience=10"]
AUGMENTS = {"as they are": ["augment=none"], "augmented (augment=digits)": ["augment=digits"]}


@lesson("augmentation", "Data augmentation",
        "Keras' `ImageDataGenerator(rotation_range=10, width_shift_range=0.1, zoom_range=0.1)`: every epoch sees "
        "slightly different digits.",
        runs=commands(FEW, AUGMENTS))
def augmentation(ctx: Context) -> Page:
    import torch

    from ..core.plots import digits_figure
    from ..data.augment import BatchAugment
    from ..data.datasets import load_split

    accuracy = {name: tested_accuracy(metrics) for name, (metrics, _) in variants(ctx, FEW, AUGMENTS).items()}
    images, labels = load_split("mnist", "test", ctx.data_dir)
    pixels = images[:8].float().div(255).unsqueeze(1)
    augment = BatchAugment(**OmegaConf.to_container(compose(["augment=digits"]).augment, resolve=True))
    generator = torch.Generator().manual_seed(0)
    rows = [pixels, augment(pixels, generator=generator), augment(pixels, generator=generator)]
    titles = [f"{int(y)} as is" for y in labels[:8]] + [f"{int(y)} drawn" for y in labels[:8]] * 2
    figure = digits_figure(torch.cat(rows), titles=titles, columns=8, title="augment=digits: rotation, shift, zoom")
    plain, augmented = accuracy.values()
    reading = (f"With 100 images per digit the CNN memorizes them; drawn anew each epoch they stop being the same "
               f"images: {augmented:.2%} against {plain:.2%} on the test set ({(augmented - plain) * 100:+.2f} "
               f"points). The picture is what the network saw: the first row as is, then two draws of each.")
    return Page(figure, {f"100 per digit, {k}": f"test accuracy {v:.2%}" for k, v in accuracy.items()}, reading)


TWO_DNN_EPOCHS = ["model=dnn", "trainer.max_epochs=2", "test_best=false"]


@lesson("checkpoints", "Checkpoints: saved, read and restored",
        "`tf.train.Saver().save(sess, path)`, `NewCheckpointReader(path)` to read it, `saver.restore(sess, path)` "
        "to continue.",
        runs=[" ".join(TWO_DNN_EPOCHS)])
def checkpoints(ctx: Context) -> Page:
    import io

    import torch

    from ..data.datasets import load_split
    from ..models.checkpoint import load_checkpoint, load_model
    from ..models.inference import logits
    from ..training.checkpoint_report import inspect_checkpoint

    metrics, _ = run(ctx, "dnn", TWO_DNN_EPOCHS)
    path = last_checkpoint(ctx, "dnn")
    checkpoint = load_checkpoint(path)
    sizes = {}
    for key, value in checkpoint.items():
        buffer = io.BytesIO()
        torch.save(value, buffer)
        sizes[key] = buffer.tell() / 1e6
    figure, ax = plt.subplots(figsize=(7, 3.8))
    shown = sorted(sizes.items(), key=lambda kv: kv[1])
    ax.barh([k for k, _ in shown], [v for _, v in shown])
    ax.set(xscale="log", xlabel="MB (log)", title=f"what {path.name} holds ({path.stat().st_size / 1e6:.1f} MB)")
    report = inspect_checkpoint(str(path))
    module, _ = load_model(path)
    images, labels = load_split("mnist", "test", ctx.data_dir)
    restored = (logits(module, images).argmax(-1) == labels).float().mean().item()
    recorded = tested_accuracy(metrics)
    state = report["state"]
    numbers = {"saved": f"{path.name}: {path.stat().st_size / 1e6:.2f} MB after epoch {state['epoch']}, step "
                        f"{state['global_step']}",
               "read": f"{report['parameters']:,} parameters in {len(report['tensors'])} tensors",
               "restored": f"test accuracy {restored:.2%} from the file against {recorded:.2%} the run reported"}
    reading = (f"A Lightning checkpoint is a dictionary: the weights (state_dict, {sizes.get('state_dict', 0):.2f} "
               f"MB), the optimizer's state, the callbacks' (best score, early stopping's patience), the loops' "
               f"counters and the hyperparameters, which is what lets `ckpt_path=` continue a run where it stopped. "
               f"Read back with `torch.load(weights_only=True)` (the `mnistlab.inspect` tool), its weights give "
               f"{restored:.2%} on the test set, the {recorded:.2%} the run reported.")
    return Page(figure, numbers, reading)


TRANSFER_SEEDS = (0, 1, 2)


@lesson("transfer", "Reusing a trained network's lower layers",
        "restore some layers with a `Saver` over their variables, and leave them out of `minimize(var_list=...)` "
        "for a while.",
        runs=["experiment=digits_0_4",
              "experiment=digits_5_9 data.train_per_class=30 transfer.ckpt_path=null seed=0",
              "experiment=digits_5_9 data.train_per_class=30 transfer.ckpt_path=<the 0-4 run>/checkpoints/last.ckpt "
              "seed=0"])
def transfer(ctx: Context) -> Page:
    source, _ = run(ctx, "digits_0_4", ["experiment=digits_0_4"])
    checkpoint = last_checkpoint(ctx, "digits_0_4")
    figure, ax = plt.subplots(figsize=(6.5, 3.8))
    accuracy: dict[str, list[float]] = {}
    starts = (("from scratch", "null", "C0"), ("from the 0-4 layers", str(checkpoint), "C1"))
    for name, path, color in starts:
        for seed in TRANSFER_SEEDS[:1] if ctx.quick else TRANSFER_SEEDS:
            metrics, rows = run(ctx, f"{folder(name)}/seed_{seed}",
                                ["experiment=digits_5_9", "data.train_per_class=30", f"transfer.ckpt_path={path}",
                                 f"seed={seed}"])
            accuracy.setdefault(name, []).append(tested_accuracy(metrics))
            epochs = [int(r["epoch"]) for r in rows if r.get("val/acc")]
            label = f"{name} (seeds 0, 1, 2)" if seed == TRANSFER_SEEDS[0] else None
            ax.plot(epochs, [float(r["val/acc"]) for r in rows if r.get("val/acc")], color=color, alpha=0.7,
                    label=label)
    ax.axvline(20, color="0.6", linestyle=":", label="the copied layers thaw")
    ax.set(xlabel="epoch (3 steps each: 150 images)", ylabel="validation accuracy",
           title="digits 5-9, 30 labelled images each")
    ax.legend()
    mean = {k: sum(v) / len(v) for k, v in accuracy.items()}
    numbers = {"the 0-4 network": f"{tested_accuracy(source):.2%} on the 0-4 test digits",
               **{k: f"{mean[k]:.2%} on the 5-9 test digits, mean of seeds "
                     f"({' / '.join(f'{a:.2%}' for a in v)})" for k, v in accuracy.items()}}
    scratch, reused = mean.values()
    reading = (f"With 30 labelled images per digit, the hidden layers learned on 0-4 give {reused:.1%} against "
               f"{scratch:.1%} from random weights ({(reused - scratch) * 100:+.1f} points, mean of 3 seeds; two "
               f"more label counts and the frozen variants in [transfer-learning.md](transfer-learning.md)). "
               f"While frozen only the output layer learns, slower than a whole network would; the dip at epoch "
               f"20 is the thaw, the copied layers' first updates at the full learning rate.")
    return Page(figure, numbers, reading)
