"""The results table and the benchmark, built from real (small) runs."""

import json
import statistics
import subprocess
import sys

import pytest

from helpers import synthetic_overrides


def test_results_table_from_a_small_real_multirun(synthetic_root, tmp_path):
    overrides = [*synthetic_overrides(synthetic_root), "trainer.max_epochs=1", "trainer.accelerator=cpu"]
    quoted = "[" + ",".join(f"'{o}'" for o in overrides) + "]"
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- results:start -->\nold\n<!-- results:end -->\n\nafter\n")
    args = [sys.executable, "-m", "mnistlab.results", "experiments=[keras_cnn,lenet5]", "seeds=[0,1]",
            f"overrides={quoted}", f"runs_dir={tmp_path / 'runs'}", f"output={tmp_path / 'results.md'}",
            "readme=true", f"readme_path={readme}"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    table = (tmp_path / "results.md").read_text()
    for experiment in ("keras_cnn", "lenet5"):
        accs = [json.loads((tmp_path / "runs" / experiment / f"seed_{s}" / "metrics.json").read_text())["test/acc"]
                for s in (0, 1)]
        row = next(line for line in table.splitlines() if line.startswith(f"| `{experiment}`"))
        assert f"{statistics.fmean(accs) * 100:.2f} ± {statistics.stdev(accs) * 100:.2f}" in row
        assert f"python -m mnistlab.train -m experiment={experiment} seed=0,1" in row
    assert "206922" in table  # the Keras CNN's parameter count
    assert "cores" in table and "torch" in table
    text = readme.read_text()
    assert "old" not in text and table in text and text.endswith("after\n")
    # a second call reuses the finished runs instead of training again
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "[results]" not in again.stderr
    partial = subprocess.run([*args[:3], "experiments=[keras_cnn,tf_dnn]", *args[4:7], "run_missing=false",
                              f"output={tmp_path / 'partial.md'}"], capture_output=True, text=True, timeout=300)
    assert partial.returncode == 0, partial.stderr[-3000:]
    assert "tf_dnn: only seeds [] of [0, 1] have finished" in partial.stderr
    assert "| `keras_cnn`" in partial.stdout and "| `tf_dnn`" not in partial.stdout
    bad = subprocess.run([sys.executable, "-m", "mnistlab.results", "experiments=[nope]"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "unknown experiment(s) ['nope']" in bad.stderr


def test_bench_reports_every_variant(mnist_root, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- bench:start -->\n<!-- bench:end -->\n")
    result = subprocess.run([sys.executable, "-m", "mnistlab.bench", "--json", "--models", "dnn", "--warmup", "2",
                             "--steps", "5", "--device", "cpu", "--readme", str(readme),
                             "--overrides", f"data.data_dir={mnist_root}"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    row = summary["dnn"]
    assert all(row[v] > 0 for v in ("textbook", "mnistlab", "bare", "inference_img_s"))
    assert row["mnistlab/bare"] == pytest.approx(row["mnistlab"] / row["bare"], abs=0.01)
    assert row["mnistlab/textbook"] == pytest.approx(row["mnistlab"] / row["textbook"], abs=0.01)
    assert row["memory_mb"]["mnistlab"]["peak_rss_mb"] > 100
    assert "| dnn |" in readme.read_text() and summary["machine"] in readme.read_text()
