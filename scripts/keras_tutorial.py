"""The Keras CNN tutorial's own code on TensorFlow, timed side by side with ``experiment=keras_cnn``.

Run it with a Python that has TensorFlow (``pip install tensorflow-cpu`` in an environment of its own:
nothing of TensorFlow enters mnistlab's dependencies); mnistlab trains with its own environment
(``--mnistlab-python``, by default this clone's ``.venv/bin/python``):

    python scripts/keras_tutorial.py --seeds 0 1 2

For each seed the tutorial trains in a fresh TensorFlow process, then ``python -m mnistlab.train
experiment=keras_cnn seed=N`` in a fresh mnistlab process, back to back, so each pair sees the machine at the
same moment (a shared machine drifts by tens of percent within minutes). Both read the same IDX files
(``--data-dir``, else ``MNISTLAB_DATA_DIR``, torchvision's layout ``<dir>/MNIST/raw/``). The fit time on
each side is training with its per-epoch validation: Keras' ``model.fit`` against mnistlab's
``fit_seconds``. It prints a table and, last, one JSON line with every run and the median ratio.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def read_idx(path: Path):
    """An IDX file (uncompressed or .gz) as a numpy array."""
    import numpy as np

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def find(raw: Path, stem: str) -> Path:
    for name in (stem, f"{stem}.gz"):
        if (raw / name).is_file():
            return raw / name
    raise SystemExit(f"error: --data-dir: no {stem}[.gz] in {raw}")


def tutorial(seed: int, epochs: int, data_dir: Path) -> dict:
    """The tutorial as written: Conv16-Pool-Conv32-Pool-Dense128-Dense10, Adam, batch 64, 20% validation."""
    import tensorflow as tf
    from tensorflow import keras

    raw = data_dir / "MNIST" / "raw"
    x_train = read_idx(find(raw, "train-images-idx3-ubyte"))[..., None].astype("float32") / 255.0
    y_train = read_idx(find(raw, "train-labels-idx1-ubyte"))
    x_test = read_idx(find(raw, "t10k-images-idx3-ubyte"))[..., None].astype("float32") / 255.0
    y_test = read_idx(find(raw, "t10k-labels-idx1-ubyte"))
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, validation_split=0.2, verbose=2)
    fit_seconds = time.perf_counter() - start
    _, test_acc = model.evaluate(x_test, y_test, verbose=0)
    return {"fit_seconds": fit_seconds, "test_acc": float(test_acc), "parameters": int(model.count_params()),
            "tensorflow": tf.__version__}


def last_json(output: str, what: str) -> dict:
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit(f"error: {what} printed no result:\n{output[-3000:]}")


def run(command: list[str], what: str, env: dict | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"error: {what} failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout


def mnistlab_run(python: str, seed: int, epochs: int, data_dir: Path, folder: Path) -> dict:
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(data_dir)}
    run([python, "-m", "mnistlab.train", "experiment=keras_cnn", f"seed={seed}", f"trainer.max_epochs={epochs}",
         f"hydra.run.dir={folder}", "callbacks.progress_bar.refresh_rate=0"], f"mnistlab (seed {seed})", env)
    metrics = json.loads((folder / "metrics.json").read_text())
    return {"fit_seconds": metrics["fit_seconds"], "test_acc": metrics["test/acc"]}


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up notes about CPU instructions
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=5, help="the tutorial trains 5")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("MNISTLAB_DATA_DIR", "data")))
    parser.add_argument("--mnistlab-python", default=str(REPO / ".venv" / "bin" / "python"))
    parser.add_argument("--child", type=int, metavar="SEED", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs < 1:
        raise SystemExit(f"error: --epochs must be at least 1, got {args.epochs}")
    if args.child is not None:  # one tutorial run in a fresh process
        print(json.dumps(tutorial(args.child, args.epochs, args.data_dir)))
        return
    try:
        import tensorflow  # noqa: F401  (checked here, before any run: the children need it)
    except ImportError:
        raise SystemExit(f"error: {sys.executable} has no TensorFlow: run this script with a Python that has it "
                         "(pip install tensorflow-cpu)") from None
    if not Path(args.mnistlab_python).is_file():
        raise SystemExit(f"error: --mnistlab-python: no such file {args.mnistlab_python}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="keras-tutorial-") as tmp:
        for seed in args.seeds:
            keras = last_json(run([sys.executable, __file__, "--child", str(seed), "--epochs", str(args.epochs),
                                   "--data-dir", str(args.data_dir)], f"the Keras tutorial (seed {seed})"),
                              "the Keras tutorial")
            ours = mnistlab_run(args.mnistlab_python, seed, args.epochs, args.data_dir, Path(tmp) / f"seed_{seed}")
            rows.append({"seed": seed, "keras": keras, "mnistlab": ours,
                         "ratio": ours["fit_seconds"] / keras["fit_seconds"]})
            print(f"seed {seed}: Keras (TensorFlow {keras['tensorflow']}) {keras['fit_seconds']:.1f} s, "
                  f"{100 * keras['test_acc']:.2f}% | mnistlab keras_cnn {ours['fit_seconds']:.1f} s, "
                  f"{100 * ours['test_acc']:.2f}% | ratio {rows[-1]['ratio']:.2f}", flush=True)
    print(json.dumps({"epochs": args.epochs, "runs": rows,
                      "median_ratio": round(statistics.median(r["ratio"] for r in rows), 3)}))


if __name__ == "__main__":
    main()
