"""The results figure, drawn in-process from metrics shaped like the runs' own metrics.json."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from mnistlab.perf import results_figure


def _run(seed, acc, seconds, dataset="mnist", curve=()):
    history = [{"epoch": i + 1, "step": 10 * (i + 1), "fit_seconds": i, "val/acc": a} for i, a in enumerate(curve)]
    return {"seed": seed, "test/acc": acc, "fit_seconds": seconds, "dataset": dataset, "history": history}


ROWS = {
    "speedrun": [_run(0, 0.990, 4.0), _run(1, 0.992, 6.0)],
    "cnn_best": [_run(0, 0.9967, 1500, curve=[0.98, 0.99, 0.995]), _run(1, 0.9961, 1700, curve=[0.97, 0.99, 0.996])],
    "fashion_cnn": [_run(0, 0.93, 900, dataset="fashion_mnist")],
}


def test_one_accuracy_panel_per_dataset_then_the_learning_curves():
    fig = results_figure.draw(ROWS, curves="cnn_best")
    mnist, fashion, curves = fig.axes
    assert "MNIST" in mnist.get_title() and "Fashion-MNIST" in fashion.get_title()
    assert mnist.get_xscale() == "log" and fashion.get_xscale() == "log"
    # each recipe is a point at its seeds' mean, its bars reaching the lowest and highest seed
    points = sorted(tuple(np.round(line.get_xydata()[0], 4)) for line in mnist.lines if line.get_marker() == "o")
    assert points == [(5.0, 99.1), (1600.0, 99.64)]
    labels = sorted(t.get_text() for t in mnist.texts)
    assert labels == ["cnn_best", "speedrun"] and "mean of 2 seeds" in mnist.get_title()  # the count said once
    assert [t.get_text() for t in fashion.texts] == ["fashion_cnn"] and "one seed" in fashion.get_title()
    # a label says where a row differs from the rest: its seed count, a precision other than float32
    bf16 = [{**_run(seed, 0.997, 280), "precision": "bf16-mixed"} for seed in (0, 1)]
    mixed = results_figure.draw({**ROWS, "lenet5": [_run(0, 0.991, 80)], "ten_minutes": bf16}, curves=None).axes[0]
    assert sorted(t.get_text() for t in mixed.texts) == ["cnn_best", "lenet5 (1 seed)", "speedrun",
                                                         "ten_minutes (bf16)"]
    low, high = fashion.get_xlim()  # one recipe alone still gets a log axis labelled at its decades
    fig.canvas.draw()
    assert low < 900 < high and high / low >= 100 and not any(t.get_text() for t in fashion.get_xticklabels(minor=True))
    drawn = {line.get_label(): line.get_ydata().tolist() for line in curves.lines}
    assert drawn == {"seed 0 (test 99.67%)": pytest.approx([98.0, 99.0, 99.5]),
                     "seed 1 (test 99.61%)": pytest.approx([97.0, 99.0, 99.6])}
    low, high = curves.get_ylim()
    assert low < 99.0 and 99.6 < high <= 100.0  # framed on the second half of training
    plt.close(fig)


TABLE_2026_12_03 = (("tf_dnn", 0.9795, 291), ("tf_dnn_tuned", 0.9894, 415), ("keras_cnn", 0.9885, 71),
                    ("lenet5", 0.9919, 143), ("speedrun", 0.9910, 5.9), ("cnn_best", 0.9961, 2303))
# the afternoon of 2026-12-07: ten_minutes' label, pushed out by handwriting's, ran past the panel
TABLE_2026_12_07 = (("tf_dnn", 0.9795, 161), ("tf_dnn_tuned", 0.9890, 194), ("keras_cnn", 0.9891, 44.5),
                    ("lenet5", 0.9918, 80.6), ("speedrun", 0.9915, 2.9), ("one_minute", 0.9954, 57.4),
                    ("handwriting", 0.9963, 270), ("ten_minutes", 0.9971, 551))
# its evening: ten_minutes trained in bf16, 282 s beside handwriting's 217, and its longer label ran past the panel
TABLE_2026_12_07_BF16 = (("tf_dnn", 0.9795, 111), ("tf_dnn_tuned", 0.9896, 170), ("keras_cnn", 0.9885, 29.7),
                         ("lenet5", 0.9919, 57.8), ("speedrun", 0.9910, 2.4), ("one_minute", 0.9956, 43.9),
                         ("handwriting", 0.9965, 217), ("ten_minutes", 0.9969, 282))


@pytest.mark.parametrize("table", [TABLE_2026_12_03, TABLE_2026_12_07, TABLE_2026_12_07_BF16])
def test_labels_of_nearby_points_do_not_overlap(table):
    # the 2026-12-03 table: keras_cnn's label, right of its point, ran into tf_dnn_tuned's
    rows = {name: [_run(seed, acc, seconds) for seed in range(3)] for name, acc, seconds in table}
    if table is TABLE_2026_12_07_BF16:
        rows["ten_minutes"] = [{**run, "precision": "bf16-mixed"} for run in rows["ten_minutes"]]
    curves = table[-1][0]
    rows[curves] = [{**run, "history": _run(0, 0, 0, curve=[0.99, 0.996])["history"]} for run in rows[curves]]
    rows["fashion_cnn"] = [_run(0, 0.9346, 1450, dataset="fashion_mnist")]
    fig = results_figure.draw(rows, curves=curves)
    mnist = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in mnist.texts]
    assert len(boxes) == len(rows) - 1  # fashion_cnn is in the next panel
    assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    markers = [mnist.transData.transform(line.get_xydata()[0]) for line in mnist.lines if line.get_marker() == "o"]
    assert len(markers) == len(boxes)
    assert not [(box, xy) for box in boxes for xy in markers if box.contains(*xy)]  # no label covers a point
    frame = mnist.get_window_extent(renderer)  # the rightmost label, right of its point, ran into the next panel
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
    plt.close(fig)


def test_no_curves_panel_without_that_experiment_or_its_history():
    for rows, curves in ((ROWS, "lenet5"), ({"speedrun": ROWS["speedrun"]}, "speedrun"), (ROWS, None)):
        fig = results_figure.draw(rows, curves=curves)
        datasets = {r[0]["dataset"] for r in rows.values()}
        assert len(fig.axes) == len(datasets) and all(ax.get_xscale() == "log" for ax in fig.axes)
        plt.close(fig)


def test_written_whole_to_every_path(tmp_path):
    paths = [tmp_path / "a" / "results.png", tmp_path / "docs" / "images" / "results.png"]
    results_figure.write(ROWS, "cnn_best", paths)
    first = paths[0].read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes() == first
    height, width = plt.imread(paths[0]).shape[:2]
    assert width > 2.5 * height  # three panels side by side
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["results.png", "results.png"]


def test_pareto_front_keeps_the_recipes_nothing_beats_on_both_counts():
    points = {"speedrun": (4.0, 99.15), "one_minute": (45.0, 99.55), "lenet5": (53.0, 99.19),
              "keras_cnn": (31.0, 98.95), "cnn_best": (1609.0, 99.71), "tf_dnn": (291.0, 97.95)}
    assert results_figure.pareto_front(points) == ["speedrun", "one_minute", "cnn_best"]
    assert results_figure.pareto_front({"a": (10.0, 99.0), "b": (10.0, 99.0)}) == ["a", "b"]  # a tie beats none


def test_the_front_is_drawn_through_its_recipes_in_each_panel():
    rows = {**ROWS, "slow_and_worse": [_run(0, 0.985, 900)]}
    fig = results_figure.draw(rows, curves=None)
    mnist, fashion = fig.axes
    fronts = [line for line in mnist.lines if line.get_label().startswith("Pareto front")]
    assert len(fronts) == 1 and fronts[0].get_xdata().tolist() == [5.0, 1600.0]
    assert fronts[0].get_ydata().tolist() == pytest.approx([99.1, 99.64])
    assert not [line for line in fashion.lines if line.get_label().startswith("Pareto")]  # one recipe: no front
    plt.close(fig)
