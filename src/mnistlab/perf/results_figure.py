"""The results figure: every recipe's test accuracy against its fit time, and one recipe's learning curves.

Drawn from the runs' own ``metrics.json`` (their ``history`` rows for the curves), never by hand.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .runs import FLOAT32, precisions

DATASET_TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}


def _spread(values: Sequence[float]) -> tuple[float, list[list[float]]]:
    """Mean and the matplotlib error bar reaching the lowest and highest seed."""
    mean = statistics.fmean(values)
    # never below zero: the mean of equal seeds can round a hair past them, which matplotlib refuses
    return mean, [[max(0.0, mean - min(values))], [max(0.0, max(values) - mean)]]


def pareto_front(points: Mapping[str, tuple[float, float]]) -> list[str]:
    """The recipes no other beats on both counts (as fast or faster and as accurate or more, better in one),
    fastest first: ``points`` maps a name to its (fit seconds, accuracy)."""
    def beaten(name: str) -> bool:
        x, y = points[name]
        return any(ox <= x and oy >= y and (ox, oy) != (x, y) for other, (ox, oy) in points.items() if other != name)

    return sorted((name for name in points if not beaten(name)), key=lambda name: points[name])


# Where a point's label may go, in points from the point: right and above first, then the other corners.
LABEL_OFFSETS = ((6, 4), (6, -12), (-6, 4), (-6, -12))


def _marker_box(ax, point: tuple[float, float], half: float = 5.0):
    """The display box of the marker at data ``point`` (markersize 5 is 5 points across, padded)."""
    from matplotlib.transforms import Bbox

    x, y = ax.transData.transform(point)
    half *= ax.figure.dpi / 72
    return Bbox([[x - half, y - half], [x + half, y + half]])


def _place_label(ax, text: str, point: tuple[float, float], taken: list) -> None:
    """Annotate ``point`` at the first offset whose box stays inside the panel and overlaps no label placed
    before; else the first that overlaps nothing (a label past the panel's edge runs into the next panel)."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    tried = []  # (label, its box, overlaps nothing, inside the panel)
    for dx, dy in LABEL_OFFSETS:
        label = ax.annotate(text, point, textcoords="offset points", xytext=(dx, dy), fontsize=8,
                            ha="left" if dx > 0 else "right")
        box = label.get_window_extent(renderer)
        inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        tried.append((label, box, not any(box.overlaps(other) for other in taken), inside))
    kept = next((t for t in tried if t[2] and t[3]), next((t for t in tried if t[2]), tried[0]))
    for label, *_ in tried:
        if label is not kept[0]:
            label.remove()
    taken.append(kept[1])


def _accuracy_panel(ax, rows: Mapping[str, Sequence[Mapping[str, Any]]], dataset: str) -> dict[str, tuple]:
    """Draw the points; return each one's label and place, labelled once the figure's layout is final."""
    accuracies = [r["test/acc"] * 100 for runs in rows.values() for r in runs]
    low, high = min(accuracies), max(accuracies)
    pad = max(0.25, (high - low) * 0.15)  # one recipe alone still gets a readable axis
    ax.set_ylim(low - pad, min(100.0, high + pad))
    ax.set_xscale("log")
    seconds = [math.log10(r["fit_seconds"]) for runs in rows.values() for r in runs]
    # two decades wide at least: a narrower log axis labels its minor ticks, which crowd one another
    x_pad = max(0.25, (2.0 - (max(seconds) - min(seconds))) / 2)
    ax.set_xlim(10 ** (min(seconds) - x_pad), 10 ** (max(seconds) + x_pad))
    # the seed count once in the title, in a label only where it differs: short labels sit by their point
    # (with the count in each, handwriting's label had to go left of its point and read as one_minute's)
    common = Counter(len(runs) for runs in rows.values()).most_common(1)[0][0]
    points = {}
    for experiment, runs in rows.items():
        x, xerr = _spread([r["fit_seconds"] for r in runs])
        y, yerr = _spread([r["test/acc"] * 100 for r in runs])
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", capsize=3, markersize=5)
        n = len(runs)
        notes = [f"{n} seed{'s' if n > 1 else ''}"] if n != common else []
        notes += [p.removesuffix("-mixed") for p in precisions(runs) if p != FLOAT32]  # its fit time's reason
        points[f"{experiment} ({', '.join(notes)})" if notes else experiment] = (x, y)
    front = [points[name] for name in pareto_front(points)]
    if len(front) > 1:  # each step: the best accuracy reached by that fit time
        ax.step([x for x, _ in front], [y for _, y in front], where="post", color="grey", linestyle="--",
                linewidth=1, zorder=0, label="Pareto front: the most accurate by each fit time")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel("fit time (s, log scale)")
    ax.set_ylabel("test accuracy (%)")
    seeds = "one seed" if common == 1 else f"mean of {common} seeds; bars reach the lowest and highest"
    ax.set_title(f"{DATASET_TITLES.get(dataset, dataset)}: accuracy against fit time\n({seeds})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    return points


def _curves_panel(ax, experiment: str, runs: Sequence[Mapping[str, Any]]) -> None:
    tail: list[float] = []
    for run in runs:
        history = [h for h in run.get("history") or [] if "val/acc" in h]
        epochs = [h["epoch"] for h in history]
        accuracy = [h["val/acc"] * 100 for h in history]
        tail += accuracy[len(accuracy) // 2:]
        ax.plot(epochs, accuracy, marker=".", markersize=3,
                label=f"seed {run.get('seed', '?')} (test {run['test/acc'] * 100:.2f}%)")
    if tail:  # the interesting part: the second half of training, not the first epoch's climb
        low, high = min(tail), max(tail)
        ax.set_ylim(low - max(0.3, (high - low) * 0.5), min(100.0, high + max(0.1, (high - low) * 0.3)))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{experiment}: learning curves, one per seed", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def draw(rows: Mapping[str, Sequence[Mapping[str, Any]]], curves: str | None):
    """The figure for ``rows`` (experiment → its runs' metrics): one accuracy panel per dataset, then the
    learning curves of experiment ``curves`` when its runs have a history."""
    import matplotlib.pyplot as plt  # here: matplotlib and torch (plots) stay out of the command's --help

    by_dataset: dict[str, dict[str, Sequence[Mapping[str, Any]]]] = {}
    for experiment, runs in rows.items():
        by_dataset.setdefault(runs[0].get("dataset", "mnist"), {})[experiment] = runs
    with_curves = curves in rows and any(r.get("history") for r in rows[curves])
    panels = len(by_dataset) + with_curves
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.2), squeeze=False)
    labels = [(ax, _accuracy_panel(ax, dataset_rows, dataset))
              for ax, (dataset, dataset_rows) in zip(axes[0], by_dataset.items(), strict=False)]
    if with_curves:
        _curves_panel(axes[0][-1], curves, rows[curves])
    fig.tight_layout()
    fig.canvas.draw()  # the final limits and layout, so that a label's box is measured where it is drawn
    for ax, points in labels:
        _label_points(ax, points)
    return fig


def _label_points(ax, points: Mapping[str, tuple[float, float]], tries: int = 3) -> None:
    """Label every point; where a label can only sit past the panel's left or right edge (it would run into
    the next panel: ``ten_minutes (bf16)`` beside handwriting's label), widen the log axis on that side by what
    it lacks and place them all again."""
    renderer = ax.figure.canvas.get_renderer()
    for attempt in range(tries):
        taken = [_marker_box(ax, point) for point in points.values()]  # a label covers no point either
        for text, point in points.items():
            _place_label(ax, text, point, taken)
        frame = ax.get_window_extent(renderer)
        left, right = frame.x0 - min(box.x0 for box in taken), max(box.x1 for box in taken) - frame.x1
        if max(left, right) <= 0 or attempt == tries - 1:
            return
        for label in list(ax.texts):
            label.remove()
        low, high = (math.log10(limit) for limit in ax.get_xlim())
        per_pixel = (high - low) / frame.width  # decades a pixel; widening shrinks them, hence the 10% more
        ax.set_xlim(10 ** (low - 1.1 * max(left, 0) * per_pixel), 10 ** (high + 1.1 * max(right, 0) * per_pixel))


def write(rows: Mapping[str, Sequence[Mapping[str, Any]]], curves: str | None, paths: Sequence[Path]) -> None:
    """Draw the figure once and write it, whole, to every path in ``paths``."""
    from ..core.io import write_bytes
    from ..core.plots import save

    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
    save(draw(rows, curves), paths[0])
    for path in paths[1:]:
        write_bytes(path, paths[0].read_bytes())
