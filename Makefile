# Two commands do all the set-up: `make train` and `make test` (each creates .venv when missing).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: train test test-all lint bench speedrun default-model clean-venv

$(BIN)/mnistlab-ready: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

train: $(BIN)/mnistlab-ready
	$(BIN)/python -m mnistlab.train $(ARGS)

# The tests start with the lint: ruff takes a second and fails before a long suite would.
# test: the dev loop, slow tests left out (pyproject's addopts), one pytest worker per core (most of its
# time is interpreter start-up and imports, which two cores share well: 3m25s serial, 2m18s on two);
# test-all: every test, as CI runs them: the fast ones as in `test`, then the slow ones serially (they
# start processes, send signals and race them, which a second worker on two cores would only disturb), then
# on every core the documented commands and the slow pipelines that race nothing (`parallel`: the results,
# bench and speedrun tools end to end); lines sharing a store run in order, as one test, started first.
# A test that a documented line runs (`run_by_docs`: the browser's screenshot) runs there only.
test: lint
	$(BIN)/python -m pytest -n auto $(ARGS)

test-all: lint
	$(BIN)/python -m pytest -n auto $(ARGS)
	$(BIN)/python -m pytest -m "slow and not docs and not parallel and not run_by_docs" $(ARGS)
	$(BIN)/python -m pytest -m "slow and (docs or parallel)" -n auto $(ARGS)

lint: $(BIN)/mnistlab-ready
	$(BIN)/python -m ruff check src tests

bench: $(BIN)/mnistlab-ready
	$(BIN)/python -m mnistlab.bench $(ARGS)

speedrun: $(BIN)/mnistlab-ready
	$(BIN)/python -m mnistlab.speedrun $(ARGS)

# The packaged default model (predict and the demo without ckpt_path): the handwriting recipe at seed 0,
# trained into outputs/default-model/<time>/, then written as safetensors with its accuracies and command.
DEFAULT_MODEL ?= src/mnistlab/models/default/handwriting.safetensors
default-model: $(BIN)/mnistlab-ready
	run=outputs/default-model/$$(date +%Y-%m-%d_%H-%M-%S); \
	$(BIN)/python -m mnistlab.train experiment=handwriting seed=0 hydra.run.dir=$$run $(ARGS) && \
	$(BIN)/python -m mnistlab.export ckpt_path=$$run/checkpoints/last.ckpt format=safetensors \
		output=$(DEFAULT_MODEL) overwrite=true

clean-venv:
	rm -rf $(VENV)
