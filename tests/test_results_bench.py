"""The results table and the benchmark, built from real (small) runs."""

import json
import shutil
import statistics
import subprocess
import sys

import matplotlib.pyplot as plt
import pytest
import torch

from mnistlab import bench, results
from mnistlab.perf import benchmark
from mnistlab.speedrun import trainer_choice

from helpers import command, synthetic_overrides


@pytest.mark.slow
@pytest.mark.parallel
def test_results_table_from_a_small_real_multirun(synthetic_root, tmp_path):
    overrides = [*synthetic_overrides(synthetic_root), "trainer.max_epochs=1", "trainer.accelerator=cpu"]
    quoted = "[" + ",".join(f"'{o}'" for o in overrides) + "]"
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- results:start -->\nold\n<!-- results:end -->\n\nafter\n")
    args = [sys.executable, "-m", "mnistlab.results", "experiments=[keras_cnn,lenet5]", "seeds=[0,1]",
            f"overrides={quoted}", f"runs_dir={tmp_path / 'runs'}", f"output={tmp_path / 'results.md'}",
            "readme=true", f"readme_path={readme}", f"readme_figure={tmp_path / 'docs' / 'images' / 'results.png'}"]
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
    # readme_figure is written with the table and the README's section shows it
    figure = tmp_path / "docs" / "images" / "results.png"
    assert figure.read_bytes() == (tmp_path / "results.png").read_bytes()
    assert "the most accurate recipe by each fit time)](docs/images/results.png)\n<!-- results:end -->" in text
    # a second call reuses the finished runs instead of training again
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "(at " not in again.stderr  # no job started
    assert again.stderr.count("finished before, reused") == 4
    partial = subprocess.run([*args[:3], "experiments=[keras_cnn,tf_dnn]", *args[4:7], "run_missing=false",
                              f"output={tmp_path / 'partial.md'}"], capture_output=True, text=True, timeout=300)
    assert partial.returncode == 0, partial.stderr[-3000:]
    assert "tf_dnn: only seeds [] of [0, 1] have finished" in partial.stderr
    assert "| `keras_cnn`" in partial.stdout and "| `tf_dnn`" not in partial.stdout


@pytest.mark.slow
@pytest.mark.parallel
def test_ablation_table_reports_what_each_lesson_buys(synthetic_root, tmp_path):
    overrides = [*synthetic_overrides(synthetic_root), "trainer.max_epochs=1", "trainer.accelerator=cpu"]
    quoted = "[" + ",".join(f"'{o}'" for o in overrides) + "]"
    readme = tmp_path / "README.md"
    readme.write_text("<!-- ablation:start -->\n<!-- ablation:end -->\n")
    runs = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, "-m", "mnistlab.results", "ablation=tf_dnn_tuned", "seeds=[0]",
         "ablation.without={dropout: ['model.net.dropout=0']}", f"overrides={quoted}", f"runs_dir={runs}",
         "readme=true", f"readme_path={readme}"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    full = json.loads((runs / "tf_dnn_tuned" / "seed_0" / "metrics.json").read_text())["test/acc"] * 100
    without = json.loads((runs / "tf_dnn_tuned" / "without_dropout" / "seed_0" / "metrics.json").read_text())
    assert without["parameters"] == 266610
    for folder, dropout in (runs / "tf_dnn_tuned", 0.2), (runs / "tf_dnn_tuned" / "without_dropout", 0):
        checkpoint = torch.load(folder / "seed_0" / "checkpoints" / "last.ckpt", weights_only=True)
        assert checkpoint["hyper_parameters"]["net"]["dropout"] == dropout
    table = (runs / "ablation_tf_dnn_tuned.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| without dropout"))
    assert f"| {full - without['test/acc'] * 100:+.2f} |" in row and "`model.net.dropout=0`" in row
    assert f"| full recipe | {full:.2f} |" in table and table in readme.read_text()


@pytest.mark.slow
@pytest.mark.parallel
def test_bench_reports_every_variant(mnist_root, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- bench:start -->\n<!-- bench:end -->\n")
    # textbook's own process is the documented bench lines' to run; here the rounds' arithmetic on the other two
    result = subprocess.run([sys.executable, "-m", "mnistlab.bench", "--json", "--models", "dnn", "--warmup", "2",
                             "--variants", "mnistlab", "bare",
                             "--steps", "5", "--rounds", "2", "--device", "cpu", "--readme", str(readme),
                             "--overrides", f"data.data_dir={mnist_root}"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    row = summary["dnn"]
    assert all(row[v] > 0 for v in ("mnistlab", "bare", "inference_img_s"))
    rounds = row["rounds_img_s"]
    for a, b in (("mnistlab", "bare"),):  # the median (here: mean) of each round's ratio
        per_round = [x / y for x, y in zip(rounds[a], rounds[b], strict=True)]
        assert row[f"{a}/{b}"] == pytest.approx(statistics.median(per_round), abs=0.01)
    assert row["memory_mb"]["mnistlab"]["peak_rss_mb"] > 100
    for variant in ("mnistlab", "bare"):  # each figure is the median of its two rounds
        assert len(rounds[variant]) == 2 and row[variant] == pytest.approx(statistics.median(rounds[variant]), abs=0.1)
    assert "| dnn |" in readme.read_text() and summary["machine"] in readme.read_text()
    assert "lightning" not in row  # Lightning's floor runs only when asked for


@pytest.mark.parametrize("args, message", [
    (["--overrides", "data.batch_size=0"], "error: data.batch_size must be > 0, got 0"),
    (["--overrides", "data.foo=1"], "error: data.foo: no such config key (to add a new key write +data.foo=...)"),
    (["--rounds", "0"], "error: --rounds must be >= 1, got 0"),
    (["--steps", "-3"], "error: --steps must be >= 1, got -3"),
    (["--warmup", "-1"], "error: --warmup must be >= 0, got -1"),
    (["--augment", "nope"], "error: --augment: unknown experiment(s) ['nope']; choose from ['cnn_best', "
                            "'digits_0_4', 'digits_5_9', 'fashion_cnn', 'handwriting', 'keras_cnn', 'lenet5', "
                            "'one_minute', 'speedrun', 'speedrun_gpu', 'ten_minutes', 'tf_dnn', 'tf_dnn_tuned']"),
    pytest.param(["--device", "gpu"], "error: --device gpu: PyTorch sees no CUDA GPU here; use --device auto or cpu",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")),
])
def test_bench_refuses_bad_input_in_one_line_before_measuring(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--models", "dnn", *args])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and captured.err.strip().splitlines() == [message]
    assert captured.out == ""  # no variant was measured


def test_bench_figures_and_ratios_are_medians_that_ignore_a_burst():
    # Round 3 ran in a burst of machine speed (bare 40k against 27-28k): a best-of-rounds ratio would
    # read 25,000 / 40,000 = 0.62; the median of each round's ratio keeps to what rounds 1 and 2 agree on.
    rounds = {"mnistlab": [20_000, 25_000, 24_000], "bare": [27_000, 28_000, 40_000]}
    results = {"dnn": {v: benchmark.combine_rounds([{"train_img_s": f, "peak_rss_mb": 800 + i}
                                                for i, f in enumerate(figures)])
                       for v, figures in rounds.items()}}
    row = benchmark.summarize(results)["dnn"]
    assert row["mnistlab"] == 24_000 and row["bare"] == 28_000
    assert row["mnistlab/bare"] == round(statistics.median([20 / 27, 25 / 28, 24 / 40]), 2) == 0.74
    assert row["memory_mb"]["bare"] == {"peak_rss_mb": 802}  # memory: the peak over rounds
    assert row["rounds_img_s"]["bare"] == [27_000, 28_000, 40_000]


@pytest.mark.slow
@pytest.mark.parallel
def test_bench_measures_lightnings_floor_when_asked(mnist_root, capsys):
    summary = bench.main(["--json", "--models", "dnn", "--variants", "lightning", "bare", "--warmup", "2",
                          "--steps", "5", "--rounds", "1", "--device", "cpu",
                          "--overrides", f"data.data_dir={mnist_root}"])
    row = summary["dnn"]
    assert row["lightning"] > 0 and row["bare"] > 0 and "mnistlab" not in row
    assert row["lightning/bare"] == pytest.approx(row["lightning"] / row["bare"], abs=0.01)
    header = next(line for line in capsys.readouterr().out.splitlines() if "lightning/bare" in line)
    assert "lightning img/s" in header and "mnistlab" not in header


def test_speedrun_reference_trains_on_the_experiments_trainer():
    assert trainer_choice("speedrun_gpu", []) == "gpu"
    assert trainer_choice("speedrun", []) == "default"
    assert trainer_choice("speedrun", ["trainer=cpu"]) == "cpu"


@pytest.mark.slow
@pytest.mark.parallel
def test_speedrun_times_each_seed_against_its_reference(synthetic_root, tmp_path):
    quoted = "[" + ",".join(f"'{o}'" for o in [*synthetic_overrides(synthetic_root), "trainer=cpu"]) + "]"
    readme = tmp_path / "README.md"
    readme.write_text("<!-- speedrun:start -->\nold\n<!-- speedrun:end -->\n")
    runs = tmp_path / "runs"
    result = subprocess.run([sys.executable, "-m", "mnistlab.speedrun", "seeds=[0,1]", f"overrides={quoted}",
                             "recipe_overrides=['trainer.max_steps=12']", f"runs_dir={runs}", "target_accuracy=0.5",
                             "readme=true", f"readme_path={readme}"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = runs.iterdir()  # one fresh folder per call
    summary = json.loads((folder / "speedrun.json").read_text())
    assert summary == json.loads(result.stdout.strip().splitlines()[-1])
    metrics = {name: [json.loads((folder / name / f"seed_{s}" / "metrics.json").read_text()) for s in (0, 1)]
               for name in ("reference", "speedrun")}
    # recipe_overrides cut the speedrun to 12 of its 19 steps (594 synthetic training images at batch 32)...
    assert [m["global_step"] for m in metrics["speedrun"]] == [12, 12]
    assert [m["epochs"] for m in metrics["reference"]] == [1, 1]  # ...and left the reference's one epoch
    for name in ("reference", "speedrun"):  # the overrides reached both runs
        assert "- trainer=cpu" in (folder / name / "seed_0" / ".hydra" / "overrides.yaml").read_text()
    pairs = zip(metrics["speedrun"], metrics["reference"], strict=True)
    ratios = [s["fit_seconds"] / r["fit_seconds"] for s, r in pairs]
    assert summary["ratios"] == pytest.approx(ratios)
    assert summary["median_ratio"] == pytest.approx(statistics.median(ratios))
    accuracy = statistics.fmean(m["test/acc"] for m in metrics["speedrun"])
    assert summary["speedrun_accuracy"] == pytest.approx(accuracy)
    assert summary["accuracy_met"] == (accuracy >= 0.5)
    table = (folder / "speedrun.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| `speedrun` `trainer.max_steps=12` |"))
    assert " / ".join(f"{m['test/acc'] * 100:.2f}" for m in metrics["speedrun"]) in row
    assert f"median **{statistics.median(ratios):.2f}**" in table
    assert "old" not in readme.read_text() and table in readme.read_text()
    bad = command("speedrun", "recipe=nope", f"runs_dir={runs}")
    assert bad.returncode == 2 and list(runs.iterdir()) == [folder]  # a refused call leaves nothing behind


@pytest.mark.parametrize("key", ["reference", "recipe"])  # both can be named on the command line
def test_speedrun_refuses_an_unknown_experiment_before_training(key, tmp_path):
    bad = command("speedrun", f"{key}=nope", f"runs_dir={tmp_path / 'runs'}")
    assert bad.returncode == 2 and bad.stderr.strip() == (
        f"error: {key}: unknown experiment(s) ['nope']; choose from ['cnn_best', 'digits_0_4', 'digits_5_9', "
        "'fashion_cnn', 'handwriting', 'keras_cnn', 'lenet5', 'one_minute', 'speedrun', 'speedrun_gpu', 'ten_minutes', "
        "'tf_dnn', 'tf_dnn_tuned']")
    assert not (tmp_path / "runs").exists()


def test_speedrun_refuses_a_bad_seed_before_training(tmp_path):
    from omegaconf import OmegaConf

    from mnistlab import speedrun
    from mnistlab.core.errors import ConfigError

    cfg = OmegaConf.create({"seeds": [0, "a"], "recipe": "speedrun", "reference": "keras_cnn"})
    with pytest.raises(ConfigError, match=r"^seeds must be a whole number, got 'a'$"):
        speedrun.measure(cfg, tmp_path)
    assert not list(tmp_path.iterdir())


def test_results_tabulates_finished_runs_without_training(tiny_run, tmp_path):
    # the command's smoke test: two finished runs (the session's tiny run, as two seeds) and nothing to train
    runs = tmp_path / "runs"
    for seed in (0, 1):
        (runs / "keras_cnn" / f"seed_{seed}").mkdir(parents=True)
        shutil.copy(tiny_run / "metrics.json", runs / "keras_cnn" / f"seed_{seed}" / "metrics.json")
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    result = subprocess.run([sys.executable, "-m", "mnistlab.results", "experiments=[keras_cnn]", "seeds=[0,1]",
                             f"runs_dir={runs}", f"output={tmp_path / 'results.md'}", "run_missing=false",
                             "curves=keras_cnn"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # the figure beside the table: the accuracy panel and keras_cnn's learning curves, from metrics.json
    height, width = plt.imread(tmp_path / "results.png").shape[:2]
    assert 1.8 * height < width < 3.5 * height and f"figure: {tmp_path / 'results.png'}" in result.stderr
    row = next(line for line in (tmp_path / "results.md").read_text().splitlines() if line.startswith("| `keras_cnn`"))
    assert f"| {metrics['test/acc'] * 100:.2f} ± 0.00 |" in row and f"| {metrics['parameters']} |" in row
    assert f"| {metrics['test/uci_acc'] * 100:.1f} ± 0.0 |" in row  # other writers' digits, beside MNIST's
    assert "(at " not in result.stderr and result.stderr.count("reused") == 2  # nothing was trained
    bad = command("results", "experiments=[nope]")
    assert bad.returncode == 2 and "unknown experiment(s) ['nope']" in bad.stderr
    bad = command("results", "curves=nope")  # a misspelt curves drew no curves, silently
    assert bad.returncode == 2 and "curves: unknown experiment(s) ['nope']" in bad.stderr


def test_the_results_table_says_which_rows_trained_in_bf16(tiny_run):
    # bf16_where_native trains a recipe in bf16-mixed only where the hardware computes it, which changes its fit
    # time: the table names such rows (here one seed of two) and says nothing where every run trained in float32
    float32 = json.loads((tiny_run / "metrics.json").read_text())
    assert float32["precision"] == "32-true"
    bf16 = {**float32, "precision": "bf16-mixed"}
    text = results.table({"keras_cnn": [float32, float32], "ten_minutes": [bf16, float32]},
                         {"keras_cnn": [0, 1], "ten_minutes": [0, 1]}, [], ["experiments=[keras_cnn,ten_minutes]"])
    assert "\nTrained in float32 (`32-true`) except `ten_minutes` in 32-true and bf16-mixed. Measured " in text
    # rows that trained alike share one clause
    rows = {"keras_cnn": [float32], "cnn_best": [bf16], "ten_minutes": [bf16], "lenet5": [bf16],
            "one_minute": [bf16, float32]}
    three = results.table(rows, {name: list(range(len(runs))) for name, runs in rows.items()}, [],
                          ["experiments=[keras_cnn]"])
    assert ("\nTrained in float32 (`32-true`) except `cnn_best`, `ten_minutes` and `lenet5` in bf16-mixed; "
            "`one_minute` in 32-true and bf16-mixed. Measured ") in three
    only_float32 = results.table({"keras_cnn": [float32]}, {"keras_cnn": [0]}, [], ["experiments=keras_cnn"])
    assert "Trained in" not in only_float32 and "\nMeasured " in only_float32


def test_progress_says_job_of_total_and_beats_while_a_child_runs(tmp_path, capsys):
    from mnistlab.perf.progress import Progress, checkpoint_status

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best-epoch004-val_acc0.9912.ckpt").write_bytes(b"")
    progress = Progress("results", total=2, every=0.3)
    progress.skip("cnn seed 0")
    done = progress.run([sys.executable, "-c", "import time; time.sleep(1.5); print('out')"], "cnn seed 1",
                        checkpoint_status(tmp_path), capture=True)
    assert done.returncode == 0 and done.stdout.strip() == "out"
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "[results] 1/2 cnn seed 0: finished before, reused"
    assert lines[1].startswith("[results] 2/2 cnn seed 1 (at 0m0")
    beats = [ln for ln in lines if "running for" in ln]
    assert len(beats) >= 2 and beats[0].endswith("best so far: epoch 4, val/acc 0.9912")
    assert lines[-1].startswith("[results] 2/2 cnn seed 1: done in 0m01s")


def test_ablation_worth_is_what_removing_costs_or_adding_buys(tiny_run, tmp_path):
    from omegaconf import OmegaConf

    from mnistlab import results

    metrics = json.loads((tiny_run / "metrics.json").read_text())
    base = tmp_path / "cnn_best"
    for folder, acc in ((base, 0.9960), (base / "without_dropout", 0.9950), (base / "with_elastic", 0.9930)):
        (folder / "seed_0").mkdir(parents=True)
        (folder / "seed_0" / "metrics.json").write_text(json.dumps({**metrics, "test/acc": acc}))
    cfg = OmegaConf.create({"ablation": {"experiment": "cnn_best", "without": {"dropout": ["model.net.dropout=0"]},
                                         "with": {"elastic": ["augment.elastic_alpha=34"]}},
                            "seeds": [0], "overrides": [], "runs_dir": str(tmp_path), "run_missing": False})
    rows = {line.split(" | ")[0]: line for line in results.ablation(cfg, []).splitlines() if line.startswith("| ")}
    assert rows["| full recipe"].startswith("| full recipe | 99.60 |  |")
    assert rows["| without dropout"].startswith("| without dropout | 99.50 | +0.10 |")  # dropout is worth 0.1
    assert rows["| with elastic"].startswith("| with elastic | 99.30 | -0.30 |")  # elastic costs 0.3
    assert rows["| with elastic"].endswith("| `augment.elastic_alpha=34` |")
    cfg.ablation.without, cfg.ablation["with"] = None, None
    with pytest.raises(results.ConfigError, match=r"ablation\.without"):
        results.ablation(cfg, [])


def test_tabulating_finished_runs_when_none_has_finished_is_one_line(tmp_path):
    from omegaconf import OmegaConf

    from mnistlab import results

    cfg = OmegaConf.create({"experiments": ["cnn_best", "fashion_cnn"], "seeds": [0, 1],
                            "seeds_per_experiment": {"cnn_best": [0]}, "overrides": [],
                            "runs_dir": str(tmp_path), "run_missing": False})
    with pytest.raises(results.ConfigError, match=r"holds no finished runs of cnn_best, fashion_cnn"):
        results.collect(cfg)


@pytest.mark.parametrize("change, message", [
    ({"seeds_per_experiment": {"keras_cn": [0]}},  # a misspelt name would train every seed of keras_cnn
     "seeds_per_experiment names ['keras_cn'], which experiments does not list: ['keras_cnn', 'lenet5']"),
    ({"seeds_per_experiment": [0]}, "seeds_per_experiment maps experiments to their seeds, e.g. {fashion_cnn:[0]}"),
    ({"seeds_per_experiment": {"lenet5": [1.5]}}, "seeds_per_experiment.lenet5 must be a whole number, got 1.5"),
    ({"seeds": [-1]}, "seeds must be in [0, 4294967295]"),
    ({"seeds": ["a"]}, "seeds must be a whole number, got 'a'"),
    ({"seeds": []}, "seeds must name at least one seed"),
    ({"experiments": []}, "experiments must name at least one experiment"),
    ({"experiments": ["nope"]}, "unknown experiment(s) ['nope']"),
])
def test_the_results_settings_are_refused_in_one_line(change, message, tmp_path):
    from omegaconf import OmegaConf

    from mnistlab import results

    cfg = OmegaConf.create({"experiments": ["keras_cnn", "lenet5"], "seeds": [0], "seeds_per_experiment": None,
                            "overrides": [], "runs_dir": str(tmp_path), "run_missing": False, **change})
    with pytest.raises(results.ConfigError) as refused:
        results.collect(cfg)
    assert str(refused.value).startswith(message)


def test_one_experiment_or_one_seed_needs_no_brackets(tiny_run, tmp_path):
    from omegaconf import OmegaConf

    from mnistlab import results

    (tmp_path / "keras_cnn" / "seed_3").mkdir(parents=True)
    shutil.copy(tiny_run / "metrics.json", tmp_path / "keras_cnn" / "seed_3" / "metrics.json")
    cfg = OmegaConf.create({"experiments": "keras_cnn", "seeds": 3, "seeds_per_experiment": None, "overrides": [],
                            "runs_dir": str(tmp_path), "run_missing": False})
    rows, seeds = results.collect(cfg)
    assert seeds == {"keras_cnn": [3]} and len(rows["keras_cnn"]) == 1  # not k, e, r, a, s...


def test_a_run_is_reused_or_continued_only_if_todays_recipe_trained_it(tiny_run, tmp_path, capsys):
    from omegaconf import OmegaConf

    from mnistlab.config.compose import compose
    from mnistlab.core.errors import MnistlabError
    from mnistlab.perf.progress import Progress
    from mnistlab.perf.runs import run_one

    recipe = OmegaConf.to_container(compose(["experiment=keras_cnn", "seed=1"]), resolve=False)
    recipe.pop("hydra")
    recipe["callbacks"]["progress_bar"]["refresh_rate"] = 0  # how results shows progress: not the recipe
    finished, older, interrupted = tmp_path / "finished", tmp_path / "older", tmp_path / "interrupted"
    for run in (finished, older, interrupted):
        (run / ".hydra").mkdir(parents=True)
        OmegaConf.save(OmegaConf.create(recipe), run / ".hydra" / "config.yaml")
    # finished before bf16_where_native existed: a switch added since and off is no change of recipe
    OmegaConf.save(OmegaConf.create({k: v for k, v in recipe.items() if k != "bf16_where_native"}),
                   finished / ".hydra" / "config.yaml")
    for run in (finished, older):
        shutil.copy(tiny_run / "metrics.json", run / "metrics.json")
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    progress = Progress("results", total=4)

    assert run_one("keras_cnn", 1, [], finished, progress) == metrics
    assert "1/4 keras_cnn seed 1: finished before, reused" in capsys.readouterr().err
    # the recipe has changed since that run (or the run was made with other overrides): never passed off as today's
    with pytest.raises(MnistlabError, match=r"older was trained by another recipe than keras_cnn seed 1 is today "
                                            r"\(trainer.max_epochs: 5 -> 7\); move that folder away"):
        run_one("keras_cnn", 1, ["trainer.max_epochs=7"], older, progress)
    # an interrupted run of an older recipe is not continued under today's either: refused before training
    OmegaConf.save(OmegaConf.create({**recipe, "seed": 2}), interrupted / ".hydra" / "config.yaml")
    (interrupted / "checkpoints").mkdir()
    with pytest.raises(MnistlabError, match=r"\(seed: 2 -> 1\)"):
        run_one("keras_cnn", 1, [], interrupted, progress)
    assert "(at " not in capsys.readouterr().err  # nothing was started
    # a setting absent from the record and on today is a change: a callback added since
    callbacks = {k: v for k, v in recipe["callbacks"].items() if k != "divergence_guard"}
    OmegaConf.save(OmegaConf.create({**recipe, "callbacks": callbacks}), interrupted / ".hydra" / "config.yaml")
    with pytest.raises(MnistlabError, match=r"\(callbacks.divergence_guard._target_: '<absent>' -> "
                                            r"'mnistlab.training.reliability.DivergenceGuard'"):
        run_one("keras_cnn", 1, [], interrupted, progress)
    # ... but not one that only reads the run (the gradient norms it logs)
    callbacks = {k: v for k, v in recipe["callbacks"].items() if k != "gradient_norms"}
    OmegaConf.save(OmegaConf.create({**recipe, "callbacks": callbacks}), finished / ".hydra" / "config.yaml")
    assert run_one("keras_cnn", 1, [], finished, progress) == metrics
    # a run that recorded no config is reused, with a line saying it could not be checked
    shutil.rmtree(older / ".hydra")
    assert run_one("keras_cnn", 1, ["trainer.max_epochs=7"], older, progress) == metrics
    assert f"{older}: no .hydra/config.yaml, so its recipe cannot be checked" in capsys.readouterr().err


# -- scripts/keras_tutorial.py: the Keras tutorial on TensorFlow, timed beside keras_cnn ---------------------


@pytest.fixture(scope="module")
def keras_tutorial():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "keras_tutorial.py"
    spec = importlib.util.spec_from_file_location("keras_tutorial", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_keras_script_reads_the_idx_files_mnistlab_reads(keras_tutorial, synthetic_root, tmp_path):
    import gzip

    from mnistlab.data.datasets import SPLIT_FILES
    from mnistlab.data.idx import read_images_and_labels

    raw = synthetic_root / "MNIST" / "raw"
    images_file, labels_file = SPLIT_FILES["train"]
    ours, labels = read_images_and_labels(raw / images_file, raw / labels_file)
    theirs = keras_tutorial.read_idx(raw / images_file)
    assert theirs.shape == (600, 28, 28)
    assert (torch.from_numpy(theirs.copy()) == ours.reshape(600, 28, 28)).all()
    zipped = tmp_path / f"{labels_file}.gz"  # Fashion-MNIST's and the downloads' gzipped layout
    zipped.write_bytes(gzip.compress((raw / labels_file).read_bytes()))
    assert (torch.from_numpy(keras_tutorial.read_idx(zipped).copy()) == labels).all()


@pytest.mark.parametrize("argv, says", [
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--mnistlab-python", "/nowhere/python"], "no TensorFlow"),
])
def test_the_keras_script_refuses_in_one_line(keras_tutorial, monkeypatch, argv, says):
    import importlib.util

    if says == "no TensorFlow" and importlib.util.find_spec("tensorflow") is not None:
        says = "--mnistlab-python: no such file /nowhere/python"
    monkeypatch.setattr(sys, "argv", ["keras_tutorial.py", *argv])
    with pytest.raises(SystemExit) as exit_:
        keras_tutorial.main()
    assert str(exit_.value).startswith("error: ") and says in str(exit_.value)
    assert "\n" not in str(exit_.value)
