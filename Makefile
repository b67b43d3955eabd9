# Quick start: `make run` (set up and audit the sample rulesets), `make test`.
# While editing: `make test-fast` (the pure suite: no namespaces, no slow tests) and `make lint`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-fast lint bench docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/system-deps.sh
	@sh scripts/system-deps.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	@# -qq: errors only (a pip configured with find-links that do not exist here warns on every package)
	@$(BIN)/python -m pip install -qq -e '.[test,iptc,dev]'
	@touch $(STAMP)

run: setup
	@for f in rules/examples/*.rules rules/examples/*.v4 rules/examples/*.v6 rules/examples/*.nft; do \
	  [ -e "$$f" ] || continue; \
	  echo "== lbfw audit $$f"; \
	  $(BIN)/lbfw audit "$$f" --fail-on never || exit $$?; \
	done

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not kernel and not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python tests/benchmarks/bench.py --write docs/performance.md

docs: setup
	$(BIN)/python -m lbfw.checks.docs > docs/checks.md
	$(BIN)/python -m lbfw.doctor.docs > docs/doctor.md

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
