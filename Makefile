# zmq-chat: every target bootstraps .venv on first use; nothing to install by hand.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

BIND        ?= tcp://127.0.0.1:5555
SERVER      ?= tcp://127.0.0.1:5555
NICK        ?=
ADMIN_TOKEN ?=

.PHONY: help venv broker client test lint typecheck unit clean

help:
	@echo "make broker [BIND=tcp://127.0.0.1:5555] [ADMIN_TOKEN=secret]"
	@echo "make client NICK=alice [SERVER=tcp://127.0.0.1:5555]"
	@echo "make test    ruff + mypy + pytest"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

broker: $(STAMP)
	$(PY) -m broker --bind '$(BIND)' $(if $(ADMIN_TOKEN),--admin-token '$(ADMIN_TOKEN)')

client: $(STAMP)
	$(PY) -m client --server '$(SERVER)' $(if $(NICK),--nick '$(NICK)')

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q

test: lint typecheck unit

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
