# drawbridge — the two commands a newcomer needs are `make test` and `make run`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Pinned, hash-checked dependencies (Python 3.11): the image installs LOCK, `make` TEST_LOCK.
LOCK := requirements.lock
TEST_LOCK := requirements-test.lock
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras --all-build-deps \
	--no-emit-find-links --no-emit-index-url

.PHONY: run test lint bench dev-webui clean lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml $(TEST_LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r $(TEST_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Refresh both locks from pyproject.toml: `make lock` keeps existing pins and adds what changed,
# `make lock LOCK_ARGS=--upgrade` moves everything to the newest versions. Commit both files.
lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet "pip-tools>=7.4"
	$(BIN)/pip-compile $(LOCK_FLAGS) $(LOCK_ARGS) -o $(LOCK) pyproject.toml
	$(BIN)/pip-compile $(LOCK_FLAGS) $(LOCK_ARGS) --extra test -o $(TEST_LOCK) pyproject.toml

run: $(STAMP)
	$(BIN)/drawbridge run

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m bench

dev-webui: $(STAMP)
	$(BIN)/drawbridge dev-webui --port 7860

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
