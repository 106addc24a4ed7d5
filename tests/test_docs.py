"""Every command the README and docs/ show, run as written in a fresh folder: a line that crashes is a defect.

Each command is taken from the Markdown itself (code blocks, and inline code that starts a command), so a
new line in the docs is a new test. What the test may add is listed in ``LIMITS``: arguments appended to
shorten a run (fewer batches, one seed, two trials), never anything that changes what the line does.
Placeholders a reader fills in (``<run>``, ``PATH``) are filled in with real files of the same kind.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import command

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
VENV_BIN = Path(sys.executable).parent

TRAIN_LIMITS = ["++trainer.limit_train_batches=2", "++trainer.limit_val_batches=2", "++trainer.limit_test_batches=2",
                "++trainer.max_epochs=1"]
# The Keras tutorial's own code, timed beside keras_cnn: a script that needs TensorFlow, not a mnistlab command.
KERAS_SCRIPT = "scripts/keras_tutorial.py"
# What each command may have appended: a shorter run, nothing else.
LIMITS = {
    "mnistlab.train": TRAIN_LIMITS,
    "mnistlab.results": ["seeds=[0]", "seeds_per_experiment=null",
                         "overrides=[" + ",".join(f"'{o}'" for o in TRAIN_LIMITS) + "]"],
    "mnistlab.speedrun": ["seeds=[0]", "overrides=[" + ",".join(f"'{o}'" for o in TRAIN_LIMITS[:3]) + "]"],
    "mnistlab.bench": ["--rounds", "1", "--steps", "2", "--warmup", "1"],
    "mnistlab.lessons": ["--quick"],
    KERAS_SCRIPT: ["--seeds", "0", "--epochs", "1"],
}
OPTUNA_LIMITS = ["hydra.sweeper.n_trials=2"]
SERVERS = {"tensorboard": 6006, "mlflow ui": 5000, "optuna-dashboard": 8080, "mnistlab.demo": 7860}


def _lines(markdown: str) -> list[str]:
    """Commands of a Markdown text: code-block lines (continuations joined, comments and the layout block's
    tree left out) and inline code that starts a command."""
    found = []
    for language, block in re.findall(r"```([\w-]*)\n(.*?)```", markdown, re.S):
        if language not in ("", "bash", "sh"):  # a ```text block shows output, not commands
            continue
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#") and re.match(r"(python|make|tensorboard|mlflow|optuna|for |srun|"
                                                              r"\.venv|eval|[A-Z_]+=)", line):
                found.append(" ".join(line.split()))
    prose = re.sub(r"\s+", " ", re.sub(r"```.*?```", "", markdown, flags=re.S))  # a command may wrap anywhere
    for snippet in re.findall(r"`((?:python -m mnistlab\.|make |MNISTLAB_\w+=|\.venv/bin/|pip )[^`]*)`", prose):
        found.append(" ".join(snippet.split()))
    return found


def documented_commands() -> list[str]:
    seen: dict[str, None] = {}
    for path in DOCS:
        for line in _lines(path.read_text()):
            seen.setdefault(line)
    return list(seen)


def why_not_here(line: str) -> str | None:
    """The reason a documented line cannot run on this machine, or None."""
    if "<tool>" in line:
        return "a pattern (python -m mnistlab.<tool>), not a command"
    if line.split()[:2] in (["make", "test"], ["make", "test-all"]) and "ARGS" not in line:
        return "the test suite itself: CI runs make test-all"
    if line.startswith("srun ") and shutil.which("srun") is None:
        return "needs SLURM (srun is not installed here)"
    if KERAS_SCRIPT in line and importlib.util.find_spec("tensorflow") is None:
        return "the Keras tutorial's own code needs TensorFlow (pip install tensorflow-cpu), not installed here"
    if line.startswith("mlflow ui") and importlib.util.find_spec("flask") is None:
        return "the MLflow UI needs the full mlflow package (pip install mlflow, as the README says), not installed"
    gpu = ("trainer=gpu", "speedrun_gpu", "--device gpu", "trainer.accelerator=gpu")
    if any(g in line for g in gpu) and not torch.cuda.is_available():
        return "needs a CUDA GPU"
    return None


COMMANDS = documented_commands()
INSTALLS = [c for c in COMMANDS if re.match(r"(\.venv/bin/)?pip install", c)]
# Lines that read what an earlier line wrote (a study's storage, a tracking store, the results tool's runs,
# which its tables and ablations reuse): one test runs them in order.
SHARED = {"digits_0_4": "transfer-source", "optuna.db": "optuna-storage", "optuna.journal": "optuna-storage",
          "mlflow.db": "mlflow-store",
          "python -m mnistlab.results": "results-runs"}
GROUPS: dict[str, list[str]] = {}
for _line in COMMANDS:
    _group = next((g for key, g in SHARED.items() if key in _line), None)
    if _group:
        GROUPS.setdefault(_group, []).append(_line)
ALONE = [c for c in COMMANDS if c not in INSTALLS and not any(c in lines for lines in GROUPS.values())]


def test_the_docs_show_the_commands_this_test_runs():
    """The extraction itself: the README's own lines are found, the layout tree is not."""
    assert "python -m mnistlab.train -m model=dnn,cnn regularization=none,l2,dropout trainer.max_epochs=5" in COMMANDS
    assert 'make train ARGS="experiment=speedrun"' in COMMANDS
    assert not [c for c in COMMANDS if c.startswith(("conf/", "src/"))]
    assert _lines("- a bullet's probe (`python -m\n  mnistlab.train seed=1`)") == ["python -m mnistlab.train seed=1"]
    assert len(COMMANDS) > 60


def test_a_documented_overrides_list_keeps_its_items_beside_the_limits():
    """Hydra keeps the last ``overrides=``: a probe documented with its own list runs with it, limits added."""
    line = shortened("""python -m mnistlab.results 'experiments=[ten_minutes]' 'overrides=["data.batch_size=64"]' """
                     "runs_dir=outputs/probes/batch64")
    args = shlex.split(line)
    assert [a for a in args if a.startswith("overrides=")] == [
        'overrides=["data.batch_size=64",' + ",".join(f"'{o}'" for o in TRAIN_LIMITS) + "]"]
    assert args[:4] == ["python", "-m", "mnistlab.results", "experiments=[ten_minutes]"]
    assert "seeds=[0]" in args and "runs_dir=outputs/probes/batch64" in args
    plain = shlex.split(shortened("python -m mnistlab.results 'experiments=[ten_minutes]'"))
    assert plain[-1] == LIMITS["mnistlab.results"][-1]


# ---------------------------------------------------------------------------------------------------
# The workspace: a fresh folder with what the commands refer to


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, mnist_root):
    """A fresh folder laid out as a clone (README, docs, Makefile; the venv, sources and tests linked), with
    a CNN run, a speedrun run and a folder of people's digits for the placeholders."""
    root = tmp_path_factory.mktemp("docs")
    for name in ("README.md", "Makefile", "pyproject.toml"):
        shutil.copy2(REPO / name, root / name)  # copy2: make sees the venv as up to date
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))  # make default-model
    for name in (".venv", "tests", "conf"):  # writes into src/: the workspace's own copy, never this clone's
        (root / name).symlink_to(REPO / name)
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(mnist_root), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
           "HOME": str(root)}  # ~/.cache and tools' own settings stay in the workspace
    with pytest.MonkeyPatch.context() as patch:  # in this process: no interpreter start-up per run
        patch.chdir(root)
        for key in ("MNISTLAB_DATA_DIR", "HOME"):
            patch.setenv(key, env[key])
        for run in ("", "experiment=speedrun"):
            done = command("train", *run.split(), *TRAIN_LIMITS)
            assert done.returncode == 0, done.stderr[-3000:]
    digits = root / "my_digits"
    digits.mkdir()
    images = np.frombuffer((mnist_root / "MNIST" / "raw" / "t10k-images-idx3-ubyte").read_bytes()[16:16 + 784 * 3],
                           np.uint8).reshape(3, 28, 28)
    for i, image in enumerate(images):
        Image.fromarray(255 - image).resize((120, 90)).save(digits / f"digit_{i}.png")  # dark ink on paper
    return root, env


def fill_in(line: str, root: Path) -> list[str]:
    """The line with its placeholders filled in as a reader would; a line of alternatives (``[--json]``)
    gives one line per alternative."""
    cnn = max((root / "outputs" / "cnn").glob("*/checkpoints/last.ckpt"))
    speedrun = max((root / "outputs" / "speedrun").glob("*/checkpoints/last.ckpt"))
    line = (line.replace("outputs/speedrun/<date_time>/checkpoints/last.ckpt", str(speedrun))
            .replace("outputs/cnn/<run>/checkpoints/last.ckpt", str(cnn))
            .replace("ckpt_path=PATH", f"ckpt_path={cnn}").replace("ckpt_path=...", f"ckpt_path={speedrun}")
            .replace("experiment=<recipe> <overrides> seed=<n>", "experiment=speedrun seed=0")
            .replace("seed=N", "seed=0").replace("python scripts/", f"python {REPO}/scripts/"))
    options = re.findall(r"\[(--[^\]]+)\]", line)
    if not options:
        return [line]
    base = re.sub(r"\s*\[--[^\]]+\]", "", line)
    named = {"--tensor NAME": "--tensor state_dict.net.features.0.weight"}
    return [base, *(f"{base} {named.get(o, o)}" for o in options)]


def shortened(line: str) -> str:
    """``line`` with the limits of its command appended (inside ``make``'s ARGS, after each ``python -m``)."""
    def extra(module: str, args: str) -> list[str]:
        limits = list(LIMITS.get(module, []))
        if module == "mnistlab.train" and "hparams_search=" in args:
            limits += OPTUNA_LIMITS
        return limits

    if line.startswith("make "):
        module = {"train": "mnistlab.train", "bench": "mnistlab.bench", "speedrun": "mnistlab.speedrun",
                  "default-model": "mnistlab.train"}.get(line.split()[1])
        if module is None:
            return line
        # make hands ARGS to a shell of its own: each limit quoted for that shell, the whole for this one
        limits = " ".join(shlex.quote(a) for a in extra(module, line))
        if "ARGS=" in line:
            return re.sub(r'ARGS="([^"]*)"', lambda m: f'ARGS="{m.group(1)} {limits}"', line)
        return f"{line} ARGS={shlex.quote(limits)}"

    def append(match: re.Match) -> str:
        command, module, args = match.group(0), match.group(1), match.group(2)
        limits, words = extra(module, args), shlex.split(args)
        documented = [a for a in words if a.startswith("overrides=[")]
        limit = next((a for a in limits if a.startswith("overrides=[")), None)
        if documented and limit:  # Hydra keeps the last overrides=: the line's own and the limits go in one list
            items = [a[len("overrides=["):-1] for a in (documented[-1], limit)]
            merged = "overrides=[" + ",".join(i for i in items if i) + "]"
            words = [merged if a == documented[-1] else a for a in words]
            limits = [a for a in limits if a != limit]
            return " ".join(["python", "-m", module, *(shlex.quote(a) for a in [*words, *limits])])
        return f"{command} {' '.join(shlex.quote(a) for a in limits)}".rstrip()

    if KERAS_SCRIPT in line:
        return f"{line} {' '.join(LIMITS[KERAS_SCRIPT])}"
    return re.sub(r"python -m (mnistlab\.\w+)((?:\s+(?![&;|])\S+)*)", append, line)


def serve(line: str, root: Path, env: dict) -> None:
    """Start a server as written, wait until its page answers, then stop it with Ctrl+C."""
    port = next(p for name, p in SERVERS.items() if name in line)
    process = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=root, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline, answer = time.time() + 120, None
    try:
        while time.time() < deadline and answer is None:
            assert process.poll() is None, process.communicate()[0][-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    answer = response.status
            except OSError:
                time.sleep(0.5)
    finally:  # Ctrl+C for mnistlab's own server (it must stop cleanly), SIGTERM for the others
        os.killpg(process.pid, signal.SIGINT if "mnistlab" in line else signal.SIGTERM)
        try:
            output = process.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output = process.communicate()[0]
    assert answer == 200, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


# Subprocesses only where the line needs a shell or starts processes of its own (DDP re-runs the command
# line, joblib's workers import the task); every other `python -m mnistlab.<tool>` line runs in this process
# with the same argv, which saves the 5-6 s of interpreter and import start-up a line.
NEEDS_PROCESS = ("trainer=ddp", "hydra/launcher=joblib")


def in_process(line: str) -> bool:
    return (re.fullmatch(r"python -m mnistlab\.\w+( .*)?", line) is not None and not re.search(r"[&;|<>]", line)
            and not any(n in line for n in (*NEEDS_PROCESS, *SERVERS)))


def run_line(line: str, root: Path, env: dict, monkeypatch) -> tuple[int, str]:
    if in_process(line):
        monkeypatch.chdir(root)
        for key in ("MNISTLAB_DATA_DIR", "HOME"):
            monkeypatch.setenv(key, env[key])
        monkeypatch.setenv("PWD", str(root))
        argv = shlex.split(os.path.expandvars(line))  # as bash splits it: quotes removed, $PWD expanded
        result = command(argv[2].removeprefix("mnistlab."), *argv[3:])
        return result.returncode, result.stdout + result.stderr
    # an install installs this clone, never the workspace (its links go when the test ends)
    where = REPO if re.match(r"(\.venv/bin/)?pip ", line) else root
    done = subprocess.run(["bash", "-c", line], cwd=where, env=env, capture_output=True, text=True, timeout=900)
    return done.returncode, done.stdout + done.stderr


def run_documented(documented: str, workspace, monkeypatch) -> None:
    root, env = workspace
    for line in fill_in(documented, root):
        line = shortened(line)
        if any(name in line for name in SERVERS) and not line.startswith(("python -m mnistlab.train", "make")):
            assert _port_free(next(p for n, p in SERVERS.items() if n in line)), "the port is taken"
            serve(line, root, env)
            continue
        before = {p.name for p in root.iterdir()}
        code, output = run_line(line, root, env, monkeypatch)
        assert code == 0, f"{line}\n{output[-4000:]}"
        assert "Traceback" not in output, f"{line}\n{output[-4000:]}"
        # a shell loop's `wait` returns 0 whatever its jobs did: their error lines tell
        assert not re.search(r"^error: ", output, re.M), f"{line}\n{output[-4000:]}"
        for made in {p.name for p in root.iterdir()} - before:  # named outputs (kernels.png): as in a fresh folder
            if (root / made).is_file():
                (root / made).unlink()


def run_or_skip(documented: str, workspace, monkeypatch) -> None:
    reason = why_not_here(documented)
    if reason:
        pytest.skip(reason)
    run_documented(documented, workspace, monkeypatch)


@pytest.mark.slow
@pytest.mark.docs
@pytest.mark.parametrize("group", sorted(GROUPS))
# First in the file, so first to start: the results tool's lines (4-5 minutes, one after another, reusing each
# other's runs) run while the other worker takes the lines that stand alone, instead of after them
@pytest.mark.timeout(1500)
def test_documented_lines_sharing_a_store_run_in_order(group, workspace, monkeypatch):
    ran = []
    for documented in GROUPS[group]:
        if why_not_here(documented) is None:  # a line this machine cannot run is reported by its reason below
            run_documented(documented, workspace, monkeypatch)
            ran.append(documented)
    assert ran  # the lines that write the store ran, and the ones that read it after them
    skipped = [f"{line}: {why_not_here(line)}" for line in GROUPS[group] if line not in ran]
    if skipped:
        print("not run here:", *skipped, sep="\n  ")


@pytest.mark.slow
@pytest.mark.parametrize("documented", INSTALLS)
def test_every_documented_install_runs_as_written(documented, workspace, monkeypatch):
    """Installs reinstall this clone into the venv: they run in make test-all's serial part, since another
    process importing mnistlab meanwhile could find it half installed."""
    run_or_skip(documented, workspace, monkeypatch)


@pytest.mark.slow
@pytest.mark.docs
@pytest.mark.parametrize("documented", ALONE)
def test_every_documented_command_runs_as_written(documented, workspace, monkeypatch):
    run_or_skip(documented, workspace, monkeypatch)
