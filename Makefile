PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint fmt bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@# the PDF report's font (Vietnamese glyphs); CI runs as root on a clean clone
	@command -v apt-get >/dev/null && [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] && { apt-get install -y -q fonts-dejavu-core || { apt-get update -q && apt-get install -y -q fonts-dejavu-core; }; } || true
	@# the dashboard's browser tests drive Debian's Chromium (Playwright never downloads a browser here)
	@command -v apt-get >/dev/null && [ ! -x /usr/bin/chromium ] && { apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; } || true
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy events services projections infra bench tests examples
	$(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	CI=$${CI:-} $(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/antq demo $(SET)

bench: $(STAMP)
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.projection
	$(BIN)/python -m bench.live_lag
	$(BIN)/python -m bench.replay
	$(BIN)/python -m bench.web

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
