"""``python -m mnistlab.lessons [NAME ...] [--quick]``: the lesson book (docs/lessons.md), from real runs.

Each lesson trains what it shows (``outputs/lessons/<time>/<lesson>/``), draws its figure from the runs' own
files (``docs/images/lessons/<lesson>.png``) and rewrites its section of the book: the TensorFlow idea, the
command, the figure, the measured numbers and a reading of them. Without names, every lesson, in order.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from .core.errors import report_errors


def parse(argv: list[str] | None) -> argparse.Namespace:
    from .teaching import LESSONS

    parser = argparse.ArgumentParser(prog="python -m mnistlab.lessons", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"lessons to build: {', '.join(LESSONS)}")
    parser.add_argument("--book", default="docs/lessons.md", help="the book to fill (default: %(default)s)")
    parser.add_argument("--runs-dir", default="outputs/lessons", help="where runs go (default: %(default)s)")
    parser.add_argument("--data-dir", default=None, help="the MNIST folder (default: $MNISTLAB_DATA_DIR)")
    parser.add_argument("--quick", action="store_true",
                        help="a few batches a run: the same pages, with numbers that mean nothing (tests)")
    return parser.parse_args(argv)


@report_errors
def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    from .teaching import write
    from .teaching.book import chosen

    lessons = chosen(args.names)
    runs_dir = Path(args.runs_dir) / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    for line in write(lessons, Path(args.book), runs_dir, args.quick, args.data_dir):
        print(line, file=sys.stderr)
    runs = f"; runs in {runs_dir}" if runs_dir.is_dir() else ""  # the first lessons train nothing
    print(f"wrote {args.book} ({len(lessons)} lesson{'s' * (len(lessons) != 1)}){runs}", file=sys.stderr)


if __name__ == "__main__":
    main()
