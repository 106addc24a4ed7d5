"""``python -m mnistlab.inspect PATH [--values] [--tensor NAME] [--json]``: what a checkpoint holds, without
building a model.

The tutorial's checkpoint reader: every stored tensor with its shape, dtype, size and statistics, the
parameter count, the hyperparameters and the training state. Loads with ``weights_only=True`` only.
"""

from __future__ import annotations

import argparse
from typing import Any

from .core.errors import report_errors
from .core.io import json_line


@report_errors
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m mnistlab.inspect", description=" ".join(__doc__.split("\n\n")[0].split())
    )
    parser.add_argument("path", help="a checkpoint (.ckpt) written by mnistlab.train")
    parser.add_argument("--values", action="store_true", help="also print every tensor's values")
    parser.add_argument(
        "--tensor",
        metavar="NAME",
        help="one tensor's statistics and values, long dimensions shortened (e.g. state_dict.net.features.0.weight)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args(argv)
    from .training.checkpoint_report import inspect_checkpoint, print_report  # torch loads only to run

    report = inspect_checkpoint(args.path, values=args.values, tensor=args.tensor)
    if args.json:
        print(json_line(report))
    else:
        print_report(report, args.values)
    return report


if __name__ == "__main__":
    main()
