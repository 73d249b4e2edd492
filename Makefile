# zmq-chat: every target bootstraps .venv on first use; nothing to install by hand.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

BIND        ?= tcp://127.0.0.1:5555
SERVER      ?= tcp://127.0.0.1:5555
NICK        ?=
ADMIN_TOKEN ?=
SECURE      ?=
STATE_DIR   ?=

# SECURE=1 turns on CurveZMQ; STATE_DIR says where the broker's key pair lives.
SECURITY = $(if $(SECURE),--secure) $(if $(STATE_DIR),--state-dir '$(STATE_DIR)')

.PHONY: help venv broker client test lint typecheck unit reliability clean

help:
	@echo "make broker [BIND=tcp://127.0.0.1:5555] [ADMIN_TOKEN=secret] [SECURE=1]"
	@echo "make client NICK=alice [SERVER=tcp://127.0.0.1:5555] [SECURE=1]"
	@echo "make test    ruff + mypy + pytest"
	@echo "make reliability   figures for docs/RELIABILITY.md (restarts, bad input, slow reader, flood)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

broker: $(STAMP)
	$(PY) -m broker --bind '$(BIND)' $(if $(ADMIN_TOKEN),--admin-token '$(ADMIN_TOKEN)') $(SECURITY)

client: $(STAMP)
	$(PY) -m client --server '$(SERVER)' $(if $(NICK),--nick '$(NICK)') $(SECURITY)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q

test: lint typecheck unit

reliability: $(STAMP)
	$(PY) -m tests.figures

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
