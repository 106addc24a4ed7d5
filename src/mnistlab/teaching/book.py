"""The lesson book: each lesson trains what it shows, draws its figure from what the runs wrote, and fills
its own section of ``docs/lessons.md`` (the TensorFlow idea, the command, the figure, the measured numbers
and a reading of them)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from ..config.devices import machine
from ..core.errors import ConfigError
from ..core.plots import save
from ..perf.doc_sections import update_section


@dataclass
class Context:
    """Where a lesson's runs go and how long they may be: ``quick`` shortens every run to a few batches
    (the book's own test, CI), which builds the same pages with numbers that mean nothing."""

    runs_dir: Path
    quick: bool = False
    data_dir: str | None = None

    def steps(self, full: int, quick: int = 3) -> int:
        return quick if self.quick else full


@dataclass
class Page:
    figure: object  # a matplotlib Figure
    numbers: dict[str, str]  # what was measured -> its value, a table row each
    reading: str  # what the numbers say, in two sentences


@dataclass
class Lesson:
    name: str
    title: str
    tensorflow: str  # the TensorFlow tutorials' idea, in one sentence
    build: Callable[[Context], Page]
    runs: list[str] = field(default_factory=list)  # the runs it trains, as train overrides a reader can paste

    @property
    def number(self) -> int:
        """Its place in the book: lessons are numbered in the order they are registered."""
        return list(LESSONS).index(self.name) + 1

    def section(self, page: Page, seconds: float, figure: str) -> str:
        rows = "\n".join(f"| {name} | {value} |" for name, value in page.numbers.items())
        runs = "".join(f"\n- `{overrides}`" for overrides in self.runs)
        trained = f"\n\nIts runs, as `python -m mnistlab.train` overrides:{runs}" if runs else ""
        return (f"## {self.number}. {self.title}\n\n*In TensorFlow:* {self.tensorflow}\n\n```bash\n"
                f"python -m mnistlab.lessons {self.name}\n```{trained}\n\n![{self.title}]({figure})\n\n"
                f"| measured | |\n|---|---|\n{rows}\n\n{page.reading}\n\n"
                f"*Built {date.today().isoformat()} in {seconds:.0f} s on {machine()}.*\n")


LESSONS: dict[str, Lesson] = {}


def lesson(name: str, title: str, tensorflow: str, runs: list[str] | None = None):
    """Registers the decorated ``build(context) -> Page`` as a lesson of the book, in definition order."""
    def register(build: Callable[[Context], Page]) -> Callable[[Context], Page]:
        LESSONS[name] = Lesson(name, title, tensorflow, build, runs or [])
        return build
    return register


def chosen(names: list[str]) -> list[Lesson]:
    unknown = [n for n in names if n not in LESSONS]
    if unknown:
        raise ConfigError(f"no lesson {unknown[0]!r}; the lessons are {', '.join(LESSONS)}")
    return [LESSONS[n] for n in (names or LESSONS)]


def write(lessons: list[Lesson], book: Path, runs_dir: Path, quick: bool, data_dir: str | None) -> list[str]:
    """Builds each lesson and writes its figure (``images/lessons/<name>.png`` beside the book) and section;
    returns a line per lesson. Each section's markers must be in the book already (checked first)."""
    text = book.read_text() if book.is_file() else ""
    missing = [ln.name for ln in lessons if f"<!-- lesson-{ln.name}:start -->" not in text]
    if missing:
        raise ConfigError(f"{book}: no <!-- lesson-{missing[0]}:start --> ... end section to fill")
    done = []
    for item in lessons:
        started = time.perf_counter()
        page = item.build(Context(runs_dir / item.name, quick, data_dir or os.environ.get("MNISTLAB_DATA_DIR")))
        figure = Path("images") / "lessons" / f"{item.name}.png"
        (book.parent / figure).parent.mkdir(parents=True, exist_ok=True)
        page.figure.tight_layout()
        save(page.figure, book.parent / figure)
        seconds = time.perf_counter() - started
        update_section(book, f"lesson-{item.name}", item.section(page, seconds, figure.as_posix()))
        done.append(f"{item.name}: {'; '.join(f'{k} {v}' for k, v in page.numbers.items())} ({seconds:.0f} s)")
    return done
