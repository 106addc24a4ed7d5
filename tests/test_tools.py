"""The look-inside tools, run through their real entry points on a small real-MNIST model."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from fake_data import write_idx
from PIL import Image

from mnistlab.data.datasets import load_split
from mnistlab.data.preprocess import to_mnist
from mnistlab.models import nets
from mnistlab.models.checkpoint import load_model
from mnistlab.models.classifier import CNNClassifier
from mnistlab.models.exporting import export, max_difference, network_from_checkpoint
from mnistlab.models.filters import classic_kernels, filter_image, learned_panels

from helpers import SPEEDRUN_NET, Payload, command, run_train


@pytest.fixture(scope="session")
def real_checkpoint(mnist_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cnn")
    run_train(run_dir, [f"data.data_dir={mnist_root}", "model=cnn", "trainer.max_epochs=1",
                        "++trainer.limit_train_batches=80", "++trainer.limit_val_batches=2"])
    return run_dir / "checkpoints" / "last.ckpt"


def tool(name, *args, env_dir=None):
    env = {**os.environ}
    if env_dir:
        env["MNISTLAB_DATA_DIR"] = str(env_dir)
    return subprocess.run([sys.executable, "-m", f"mnistlab.{name}", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.mark.parametrize("args, message", [
    ([], "ckpt_path is required: python -m mnistlab.evaluate ckpt_path=..."),
    (["ckpt_path=x.ckpt", "split=val"],
     "split: no such setting of mnistlab.evaluate; it has ckpt_path, dataset, data_dir, batch_size, num_worst, "
     "device"),
])
def test_tool_settings_missing_or_unknown_are_one_line(args, message, tmp_path):
    result = command("evaluate", *args, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {message}"]
    assert not any(tmp_path.iterdir())  # refused before Hydra made anything


def test_evaluate_writes_metrics_and_pictures(real_checkpoint, mnist_root, tmp_path):
    result = tool("evaluate", f"ckpt_path={real_checkpoint}", f"hydra.run.dir={tmp_path}", env_dir=mnist_root)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    module, _ = load_model(real_checkpoint)
    images, labels = load_split("mnist", "test", mnist_root)
    with torch.no_grad():
        x = images[:, None].float() / 255  # pixels: the network standardizes them itself
        predictions = torch.cat([module(b).argmax(-1) for b in x.split(2000)])
    assert metrics["test/acc"] == pytest.approx((predictions == labels).float().mean().item(), abs=1e-6)
    assert metrics["test/acc"] > 0.9 and metrics["errors"] == int((predictions != labels).sum())
    assert sum(row["support"] for row in metrics["per_class"].values()) == 10000
    recall_3 = ((predictions == 3) & (labels == 3)).sum() / (labels == 3).sum()
    assert metrics["per_class"]["3"]["recall"] == pytest.approx(recall_3.item(), abs=1e-6)
    for picture in ("confusion_matrix.png", "worst_errors.png"):
        assert Image.open(tmp_path / picture).size[0] > 300
    assert "precision" in result.stdout


def paper_scan(digit: np.ndarray, offset: tuple[int, int], rgb: bool, scale: int = 4) -> Image.Image:
    """A digit as someone might photograph it: bigger, dark ink on light paper, off-centre."""
    big = np.asarray(Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.BILINEAR))
    canvas = np.zeros((220, 180), np.uint8)
    canvas[offset[0] : offset[0] + big.shape[0], offset[1] : offset[1] + big.shape[1]] = big
    image = Image.fromarray(255 - canvas)
    return image.convert("RGB") if rgb else image


def test_preprocessing_recovers_the_mnist_digit(mnist_root):
    images, _ = load_split("mnist", "test", mnist_root)
    similarities = []
    for i in range(20):
        scan = paper_scan(images[i].numpy(), offset=(5 + 7 * (i % 10), 3 + 5 * (i % 10)), rgb=i % 2 == 0)
        gray = torch.from_numpy(np.asarray(scan.convert("L"), np.float32) / 255)
        recovered, original = to_mnist(gray), images[i].float() / 255
        assert recovered.shape == (28, 28) and recovered.min() >= 0 and recovered.max() <= 1
        similarities.append(torch.nn.functional.cosine_similarity(recovered.flatten(), original.flatten(), dim=0))
    # a one-pixel misplacement of a thin stroke drops this well below 0.7
    assert min(similarities) > 0.75 and sum(similarities) / len(similarities) > 0.93


def test_predict_files_folders_globs_and_idx(real_checkpoint, mnist_root, tmp_path):
    images, _ = load_split("mnist", "test", mnist_root)
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(12):
        suffix = ("png", "jpg", "bmp")[i % 3]
        paper_scan(images[i].numpy(), offset=(10 + 4 * i, 20), rgb=i % 2 == 1).save(folder / f"digit{i:02d}.{suffix}")
    (folder / "broken.png").write_bytes(b"not an image")
    write_idx(tmp_path / "few-idx3-ubyte", images[:5].numpy())

    out = tmp_path / "predictions.jsonl"
    result = tool("predict", f"ckpt_path={real_checkpoint}", f"inputs={folder}", f"output={out}",
                  f"plot={tmp_path / 'plot.png'}")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 13 and rows[0] == {"path": str(folder / "broken.png"), "error": rows[0]["error"]}
    module, _ = load_model(real_checkpoint)
    with torch.no_grad():
        direct = module(images[:12, None].float() / 255).argmax(-1).tolist()  # pixels: the network normalizes
    predicted = [row["label"] for row in rows[1:]]
    assert sum(p == d for p, d in zip(predicted, direct, strict=True)) >= 10  # same answer as on the original digits
    assert all(set(row) == {"path", "label", "prob", "top3"} and len(row["top3"]) == 3 for row in rows[1:])
    assert all(row["top3"][0] == [row["label"], row["prob"]] for row in rows[1:])
    assert Image.open(tmp_path / "plot.png").size[0] > 300

    result = command("predict", f"ckpt_path={real_checkpoint}", f"inputs={tmp_path / 'few-idx3-ubyte'}")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["label"] for row in rows] == direct[:5] and rows[4]["path"].endswith("#4")

    result = command("predict", f"ckpt_path={real_checkpoint}", f"inputs={folder / 'digit*.png'}")
    assert len(result.stdout.splitlines()) == 4

    again = command("predict", f"ckpt_path={real_checkpoint}", f"inputs={folder}", f"output={out}")
    assert again.returncode == 2 and "already exists" in again.stderr and len(again.stderr.splitlines()) == 1


def test_inspect_reports_without_building_the_model(real_checkpoint, capsys):
    from mnistlab.inspect import main

    report = main([str(real_checkpoint), "--json"])
    printed = json.loads(capsys.readouterr().out)
    smoke = tool("inspect", real_checkpoint, "--json")  # the command as a user starts it
    assert smoke.returncode == 0 and json.loads(smoke.stdout) == printed
    assert printed["parameters"] == report["parameters"] == 206_922
    names = {row["name"]: row for row in printed["tensors"]}
    weight = torch.load(real_checkpoint, weights_only=True)["state_dict"]["net.features.0.weight"]
    row = names["state_dict.net.features.0.weight"]
    assert row["shape"] == [16, 1, 3, 3] and row["numel"] == 144 and row["dtype"] == "float32"
    assert row["mean"] == pytest.approx(weight.mean().item()) and row["max"] == pytest.approx(weight.max().item())
    assert printed["state"]["global_step"] == 80 and printed["state"]["model_class"] == "CNNClassifier"
    assert printed["hyper_parameters"]["net"]["channels"] == [16, 32]
    main([str(real_checkpoint), "--values"])
    assert "state_dict.net.classifier.3.bias = [" in capsys.readouterr().out


def test_inspect_raises_no_false_alarm_and_shows_one_tensor_shortened(real_checkpoint, capsys):
    from mnistlab.inspect import main

    main([str(real_checkpoint)])
    out = capsys.readouterr().out
    assert "NaN or infinite" not in out  # Lightning's kth_value of inf is no divergence
    assert "ModelCheckpoint(val/acc).kth_value" in out and "ModelCheckpoint(none).kth_value" in out
    names = [row["name"] for row in main([str(real_checkpoint), "--json"])["tensors"]]
    assert len(names) == len(set(names))
    capsys.readouterr()
    report = main([str(real_checkpoint), "--tensor", "state_dict.net.classifier.1.weight"])
    out = capsys.readouterr().out
    weight = torch.load(real_checkpoint, weights_only=True)["state_dict"]["net.classifier.1.weight"]
    assert f"state_dict.net.classifier.1.weight: {'x'.join(map(str, weight.shape))} float32" in out
    assert "..." in report["tensor"]["shortened"] and len(out) < 3000  # not 100,000 floats
    assert f"[[{weight[0, 0].item():.4f}," in out.replace(" ", "")
    broken = tool("inspect", real_checkpoint, "--tensor", "net.classifier.1.weight")
    assert broken.returncode == 2 and broken.stderr.strip().startswith("error: --tensor net.classifier.1.weight:")
    assert "did you mean state_dict.net.classifier.1.weight" in broken.stderr


def test_a_diverged_checkpoint_is_named_by_inspect(real_checkpoint, tmp_path, capsys):
    from mnistlab.inspect import main

    checkpoint = torch.load(real_checkpoint, weights_only=True)
    checkpoint["state_dict"]["net.classifier.1.bias"][0] = float("nan")
    torch.save(checkpoint, tmp_path / "diverged.ckpt")
    main([str(tmp_path / "diverged.ckpt")])
    assert "1 tensors hold NaN or infinite values (a diverged run): state_dict.net.classifier.1.bias" in \
        capsys.readouterr().out


@pytest.mark.parametrize("name", ["inspect", "evaluate", "predict", "export"])
def test_pickle_payloads_are_refused_by_every_tool(name, tmp_path, real_checkpoint):
    marker = tmp_path / "code-ran"
    crafted = tmp_path / "evil.ckpt"
    checkpoint = torch.load(real_checkpoint, weights_only=True)
    checkpoint["hyper_parameters"]["payload"] = Payload(str(marker))
    with open(crafted, "wb") as f:
        torch.save(checkpoint, f, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    args = {"inspect": [crafted], "evaluate": [f"ckpt_path={crafted}", f"hydra.run.dir={tmp_path / 'ev'}"],
            "predict": [f"ckpt_path={crafted}", f"inputs={real_checkpoint}"],
            "export": [f"ckpt_path={crafted}", f"output={tmp_path / 'm.onnx'}"]}[name]
    result = command(name, *args)
    assert result.returncode == 2
    assert "refused" in result.stderr and str(crafted) in result.stderr and len(result.stderr.splitlines()) == 1
    assert not marker.exists()


def test_classic_kernels_do_what_they_say():
    kernels = classic_kernels()
    assert kernels["Gaussian blur 5x5 σ=1"].sum().item() == pytest.approx(1.0)
    assert kernels["LoG 9x9 σ=1.4"].sum().item() == pytest.approx(0.0, abs=1e-5)
    edge = torch.zeros(28, 28)
    edge[:, 14:] = 1.0  # a vertical edge
    sobel_x, sobel_y = filter_image(edge, kernels["Sobel x"]), filter_image(edge, kernels["Sobel y"])
    assert sobel_x[5:23, 13:15].min() == 4.0 and sobel_y[5:23, 5:23].abs().max() == 0.0
    flat = torch.ones(28, 28)
    assert filter_image(flat, kernels["Laplacian"])[5:23, 5:23].abs().max() == 0.0


def test_learned_feature_maps_are_what_the_network_computes():
    # with a center crop first, the first convolution sees the cropped digit: 24 px, 12x12 maps at stride 2
    module = CNNClassifier(net=dict(channels=[8, 16], kernel_size=[5, 3], pool=["stride", "max"],
                                    center_crop=24), channels_last=True, input_mean=0.5, input_std=0.25).eval()
    image = torch.rand(28, 28)
    kind, filters, maps = learned_panels(module, image)  # pixels in: the network standardizes them
    conv = module.net.features[1]
    assert kind == "filters" and filters.shape == (8, 5, 5)
    expected = conv(((image - 0.5) / 0.25)[None, None, 2:26, 2:26])[0]
    assert maps.shape == (8, 12, 12)
    torch.testing.assert_close(maps, expected)


def test_kernels_figure_with_and_without_checkpoint(real_checkpoint, mnist_root, tmp_path):
    result = command("kernels", f"output={tmp_path / 'classic.png'}", "index=7", f"data_dir={mnist_root}")
    assert result.returncode == 0, result.stderr[-2000:]
    result = tool("kernels", f"ckpt_path={real_checkpoint}", f"output={tmp_path / 'learned.png'}", env_dir=mnist_root)
    assert result.returncode == 0, result.stderr[-2000:]
    classic, learned = Image.open(tmp_path / "classic.png"), Image.open(tmp_path / "learned.png")
    assert learned.size[1] > 3 * classic.size[1]  # 16 filters and 16 feature maps below the classic row
    bad = command("kernels", "index=10000", f"output={tmp_path / 'x.png'}", f"data_dir={mnist_root}")
    assert bad.returncode == 2 and "index=10000" in bad.stderr


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch_on_real_digits(fmt, real_checkpoint, mnist_root, tmp_path):
    output = tmp_path / f"model.{fmt}"
    run = tool if fmt == "onnx" else command  # one process start for the command's smoke test
    result = run("export", f"ckpt_path={real_checkpoint}", f"format={fmt}", f"output={output}",
                 f"data_dir={mnist_root}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "max |difference| to PyTorch on 256 test digits" in result.stderr
    model, _ = network_from_checkpoint(real_checkpoint)
    images, _ = load_split("mnist", "test", mnist_root)
    for n in (1, 7, 300):  # dynamic batch size
        batch = images[:n, None].float() / 255
        assert max_difference(model, fmt, output, batch) < 1e-4


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_keeps_the_center_crop(fmt, tmp_path):
    # the speedrun's network: the crop must survive tracing with a dynamic batch
    model = nets.CNN(**SPEEDRUN_NET, pool_before_norm=True, center_crop=24, input_mean=0.1307, input_std=0.3081).eval()
    output = tmp_path / f"model.{fmt}"
    export(model, fmt, output)
    for n in (1, 9):
        assert max_difference(model, fmt, output, torch.rand(n, 1, 28, 28)) < 1e-4


@pytest.mark.parametrize("name", ["evaluate", "predict", "export", "kernels", "demo"])
def test_tool_help_explains_its_own_settings(name):
    from mnistlab.config.compose import tool_settings

    result = command(name, "--help")
    assert result.returncode == 0 and result.stdout.startswith(f"usage: python -m mnistlab.{name}")
    for key in tool_settings(name):
        line = next(ln for ln in result.stdout.splitlines() if ln.strip().startswith(f"{key} "))
        assert ": " in line  # a default or "(required)", then what it means
    assert "Configuration groups" not in result.stdout and "model/" not in result.stdout


COMMANDS = ("train", "evaluate", "predict", "inspect", "kernels", "export", "demo", "bench", "results", "speedrun",
            "augment_preview")
HELP_WITHOUT_TORCH = """\
import runpy, sys
for name in sys.argv[1:]:
    sys.argv = [name, "--help"]
    try:
        runpy.run_module(f"mnistlab.{name}", run_name="__main__")
    except SystemExit as done:
        assert done.code in (0, None), (name, done.code)
    heavy = [m for m in ("torch", "pytorch_lightning", "matplotlib", "optuna", "gradio") if m in sys.modules]
    assert not heavy, (name, heavy)
print("ok")
"""


def test_help_of_every_command_loads_no_torch():
    # --help answers from the configs alone: importing torch and Lightning costs ~12 s on this machine
    result = subprocess.run([sys.executable, "-c", HELP_WITHOUT_TORCH, *COMMANDS], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


COMPLETE = """\
eval "$(mnistlab-$1 -sc install=bash)"
COMP_LINE="mnistlab-$1 $2"; COMP_POINT=${#COMP_LINE}; COMP_WORDS=($COMP_LINE); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
hydra_bash_completion
echo "${COMPREPLY[@]}"
"""


@pytest.mark.parametrize("name, typed, offered", [
    ("train", "model=d", "model=dnn"),
    ("train", "hydra/sweeper/pruner=h", "hydra/sweeper/pruner=hyperband"),
    ("evaluate", "num_w", "num_worst="),
])
def test_console_scripts_complete_in_bash(name, typed, offered):
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", COMPLETE, "complete", name, typed], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [offered]


def test_confusion_figure_fits_four_digit_counts_and_keeps_digit_labels_upright():
    from mnistlab.core.plots import confusion_figure

    matrix = torch.diag(torch.tensor([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]))
    fig = confusion_figure(matrix, [str(d) for d in range(10)])
    ax = fig.axes[0]
    assert {t.get_fontsize() for t in ax.texts} == {7}  # 11 points minus one a digit
    assert {t.get_rotation() for t in ax.get_xticklabels() + ax.get_yticklabels()} == {0}
    fashion = confusion_figure(matrix, ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                        "Sneaker", "Bag", "Ankle boot"])
    assert {t.get_rotation() for t in fashion.axes[0].get_xticklabels()} != {0}


def test_digits_figure_captions_each_image_above_it_and_marks_the_wrong_ones_red():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from mnistlab.core.plots import digits_figure

    images = torch.zeros(10, 1, 28, 28)
    images[:, :, 10:18, 12:16] = 1.0
    labels, predictions = torch.arange(10), torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 3])
    fig = digits_figure(images, labels, predictions, probs=torch.full((10,), 0.5), columns=4, title="worst")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == [f"{d} → {d}\n50%" for d in range(9)] + ["9 → 3\n50%"]
    assert [t.get_color() for t in ax.texts] == ["black"] * 9 + ["red"]
    renderer = FigureCanvasAgg(fig).get_renderer()
    for text, image in zip(ax.texts, ax.images, strict=True):  # each caption sits just above its own image
        caption, picture = text.get_window_extent(renderer), image.get_window_extent(renderer)
        assert picture.x0 < (caption.x0 + caption.x1) / 2 < picture.x1 and 0 <= caption.y0 - picture.y1 < 15
    assert len({round(t.get_window_extent(renderer).y0) for t in ax.texts}) == 3  # 10 images in rows of 4
    assert fig.get_suptitle() == "worst"

def test_tool_help_lists_defaults_on_one_line():
    result = tool("results", "--help")
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and lines[1].strip().startswith("python -m mnistlab.results ablation=")
    assert any(ln.split()[:3] == ["experiments", "default", "[tf_dnn,keras_cnn,lenet5]"] for ln in lines)


def test_augment_preview_draws_the_digits_as_they_are_then_as_augmented(synthetic_root, tmp_path):
    import matplotlib.pyplot as plt

    output = tmp_path / "preview.png"
    result = tool("augment_preview", "augment=handwriting", "count=5", "variants=2", f"output={output}",
                  f"data_dir={synthetic_root}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.strip() == (f"wrote {output}: 5 test digits as they are, then 2 draws of rotation=10.0, "
                                     "shift=2.0, scale=0.1, shear=15.0, stroke_p=0.5, stroke_thinner=0.0, "
                                     "stroke_partial=1.0, blur_p=0.5")
    height, width = plt.imread(output).shape[:2]
    assert 1.2 * height < width < 2.5 * height  # 5 columns, 3 rows (as they are, 2 draws)
    bad = command("augment_preview", "augment.stroke_p=2", f"output={tmp_path / 'x.png'}")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: augment.stroke_p is a probability and must be in [0, 1], got 2"
