# The two commands of the README, plus what they need. Everything installs into ./.venv.
#   make demo   install, then run the whole job offline (sweep -> soup -> card -> publish -> from_pretrained)
#   make test   install, then run the test-suite
VENV ?= .venv
PY := $(VENV)/bin/python
GLUE_DIR ?= ../shared/glue

.PHONY: install demo test lint

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: the pinned CPU build on disk; an unpinned torch would pull a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) scripts/demo.py --glue_dir $(GLUE_DIR)

test: install
	$(PY) -m pytest -q -n auto --dist loadfile || { rc=$$?; [ $$rc -ne 5 ] || echo 'pytest collected no tests: failing' >&2; exit 1; }

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
