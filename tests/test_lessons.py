"""The lesson book: lessons built end to end into a book (their figure, numbers and reading), and its
refusals in one line."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from mnistlab import lessons
from mnistlab.teaching import LESSONS

BOOK = "# Lessons\n\n" + "".join(f"<!-- lesson-{n}:start -->\n<!-- lesson-{n}:end -->\n\n" for n in LESSONS)


def build(tmp_path, capsys, *args):
    book = tmp_path / "docs" / "lessons.md"
    book.parent.mkdir(exist_ok=True)
    if not book.exists():
        book.write_text(BOOK)
    lessons.main([*args, "--book", str(book), "--runs-dir", str(tmp_path / "runs")])
    return book.read_text(), capsys.readouterr().err


def section(text: str, name: str) -> str:
    return re.search(rf"<!-- lesson-{name}:start -->(.*?)<!-- lesson-{name}:end -->", text, re.S).group(1)


def test_the_xor_lesson_measures_what_a_hidden_layer_buys(tmp_path, capsys):
    text, err = build(tmp_path, capsys, "xor")
    page = section(text, "xor")
    assert "python -m mnistlab.lessons xor" in page and "](images/lessons/xor.png)" in page
    linear = float(re.search(r"\| linear \(no hidden layer\) \| ([\d.]+)% of the 200 points", page).group(1))
    hidden = float(re.search(r"\| hidden layer of 8 tanh units \| ([\d.]+)% of the 200 points", page).group(1))
    assert linear <= 75 and hidden == 100  # a line parts at most 3 of XOR's 4 corners
    assert Image.open(tmp_path / "docs" / "images" / "lessons" / "xor.png").size[0] > 500
    assert section(text, "gradient_descent").strip() == ""  # only the named lesson is rewritten
    assert err.strip().endswith("wrote " + str(tmp_path / "docs" / "lessons.md") + " (1 lesson)")


def test_the_gradient_descent_lesson_finds_the_line_and_the_divergence(tmp_path, capsys):
    page = section(build(tmp_path, capsys, "gradient_descent")[0], "gradient_descent")
    w, b = map(float, re.search(r"\| lr=0.5 \| w=([\d.-]+), b=([\d.-]+)", page).groups())
    assert w == pytest.approx(3, abs=0.05) and b == pytest.approx(2, abs=0.05)  # y = 3x + 2
    assert float(re.search(r"\| lr=1.05 \| .* loss ([\d.e+]+) after", page).group(1)) > 1e3


def test_a_training_lesson_builds_from_its_runs_files(tmp_path, capsys, synthetic_root):
    text, err = build(tmp_path, capsys, "vanishing_gradients", "--quick", "--data-dir", str(synthetic_root))
    page = section(text, "vanishing_gradients")
    for name in ("sigmoid", "ReLU", "sigmoid + batch norm"):
        assert re.search(rf"\| {re.escape(name)} \| test accuracy [\d.]+%; lowest layer's gradient [\d.e+-]+x", page)
    assert (tmp_path / "docs" / "images" / "lessons" / "vanishing_gradients.png").stat().st_size > 10_000
    assert len(list((tmp_path / "runs").glob("*/vanishing_gradients/*/csv/metrics.csv"))) == 3
    assert "runs in " in err


def test_an_unknown_lesson_or_a_book_without_its_section_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build(tmp_path, capsys, "nope")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: no lesson 'nope'; the lessons are {', '.join(LESSONS)}"
    book = tmp_path / "other.md"
    book.write_text("# no sections\n")
    with pytest.raises(SystemExit):
        lessons.main(["xor", "--book", str(book)])
    assert capsys.readouterr().err.strip() == f"error: {book}: no <!-- lesson-xor:start --> ... end section to fill"
    assert book.read_text() == "# no sections\n"


@pytest.mark.parametrize("name", ["learning_rates", "batch_size", "kernels", "checkpoints"])
def test_the_runs_a_lesson_shows_are_the_runs_it_trains(name, tmp_path, capsys, synthetic_root, monkeypatch):
    from mnistlab.teaching import mnist_lessons

    trained, real_run = [], mnist_lessons.run

    def recording(ctx, folder, overrides):
        trained.append(" ".join(overrides))
        return real_run(ctx, folder, overrides)

    monkeypatch.setattr(mnist_lessons, "run", recording)
    page = section(build(tmp_path, capsys, name, "--quick", "--data-dir", str(synthetic_root))[0], name)
    shown = re.findall(r"^- `([^`]+)`$", page, re.M)
    assert shown == LESSONS[name].runs and trained == shown
