# Two commands do all set-up on a fresh machine:
#   make demo   train on the built-in synthetic dataset, evaluate, export, predict
#   make test   run the test suite
# and, for contributors: make lint (ruff), make docs (the MkDocs site, strict, into site/)
PYTHON ?= python3
VENV ?= .venv
EXTRA ?= cpu
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: install graphviz test demo bench lint docs clean

$(STAMP): setup.cfg pyproject.toml rfcn_tf/_version.py
	@command -v dot >/dev/null || $(MAKE) --no-print-directory graphviz
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRA),dev]"
	touch $(STAMP)

install: $(STAMP)

# keras.utils.plot_model draws with Graphviz's `dot`, a system package (not on PyPI).
graphviz:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq graphviz >/dev/null; \
	else \
		echo "note: Graphviz (dot) is missing; keras.utils.plot_model and its test need it" \
		     "(apt-get install graphviz / brew install graphviz)"; \
	fi

test: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pytest tests -q $(PYTEST_ARGS)

demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/rfcn-tf demo $(DEMO_ARGS)

bench: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python benchmarks/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRA),dev,docs]"
	touch $(DOCS_STAMP)

# The API pages are read from the source (griffe: nothing imported); the notebooks are rendered, not run.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) build *.egg-info demo_output site
