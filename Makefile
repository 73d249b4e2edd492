# zmq-chat: every target bootstraps .venv on first use; nothing to install by hand.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Running the chat needs only the runtime dependencies (seconds to install); the checks and
# tools (make test, reliability, bench) need the dev extras too. One stamp each, so that a
# first `make broker` does not wait for mypy and ruff.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

BIND        ?= tcp://127.0.0.1:5555
SERVER      ?= tcp://127.0.0.1:5555
NICK        ?=
# pytest processes for `make test` (pytest-xdist): the suite waits on sockets and processes
# most of the time, so two share two CPUs well. The cluster's tests (a nats-server and two
# brokers each) go to one of them (--dist loadgroup), one at a time.
TEST_WORKERS ?= 2
ADMIN_TOKEN_FILE ?=
BENCH_ARGS  ?=
ATTACK_ARGS ?=
SECURE      ?=
STATE_DIR   ?=
# NATS=nats://127.0.0.1:4222 makes `make broker` join the cluster of brokers on that NATS
# server (docs/CLUSTER.md); BROKER_ID names the broker in it (default: host and port).
NATS        ?=
BROKER_ID   ?=
# `make nats`: a local nats-server with JetStream, its data in the state directory.
NATS_PORT   ?= 4222
NATS_DIR    ?= $(or $(STATE_DIR),$(ZMQ_CHAT_STATE_DIR),$(HOME)/.local/state/zmq-chat)/nats

# SECURE=1 turns on CurveZMQ; STATE_DIR says where the broker's key pair lives.
SECURITY = $(if $(SECURE),--secure) $(if $(STATE_DIR),--state-dir '$(STATE_DIR)')

.PHONY: help venv broker client nats nats-server test lint typecheck unit reliability bench bench-full bench-cluster bench-peers bench-profile bench-typing screenshots attack clean

help:
	@echo "make broker [BIND=tcp://127.0.0.1:5555] [ADMIN_TOKEN_FILE=path] [SECURE=1]"
	@echo "            (or ZMQ_CHAT_ADMIN_TOKEN=... make broker; default: a token generated into a file)"
	@echo "make client NICK=alice [SERVER=tcp://127.0.0.1:5555] [SECURE=1]"
	@echo "make nats    a local nats-server with JetStream on port 4222 [NATS_PORT=...]"
	@echo "make broker NATS=nats://127.0.0.1:4222 BIND=tcp://127.0.0.1:5565"
	@echo "             a broker in the cluster of every broker on that NATS (docs/CLUSTER.md)"
	@echo "make test    ruff + mypy + pytest"
	@echo "make reliability   figures for docs/RELIABILITY.md (restarts, bad input, slow reader, flood)"
	@echo "make attack        attacks on a fresh broker: does it hold, a bystander's PING, RSS"
	@echo "make bench         benchmark against a raw pyzmq ceiling and IRC servers (~8 min)"
	@echo "make bench-full    the same with 10,000 idle clients (~15 min)"
	@echo "make bench-cluster one broker against two behind one NATS, and failover (~4 min)"
	@echo "make bench-peers   install ngIRCd and InspIRCd to compare against (root, apt)"
	@echo "make bench-typing  key latency in the full-screen client, quiet and under 1,000 msgs/s"
	@echo "make screenshots   docs/screenshots/*.png from a real broker and clients in tmux"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	@touch $@

# The dev extras include the runtime dependencies: the runtime stamp is good too.
$(DEV_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@ $(RUN_STAMP)

venv: $(DEV_STAMP)

broker: $(RUN_STAMP)
	$(if $(ADMIN_TOKEN),$(error ADMIN_TOKEN= puts the operator token in the process list, for \
		every user to read: run ZMQ_CHAT_ADMIN_TOKEN=... make broker, or make broker \
		ADMIN_TOKEN_FILE=path))
	$(PY) -m broker --bind '$(BIND)' $(if $(ADMIN_TOKEN_FILE),--admin-token-file '$(ADMIN_TOKEN_FILE)') $(SECURITY) \
		$(if $(NATS),--nats '$(NATS)') $(if $(BROKER_ID),--broker-id '$(BROKER_ID)')

client: $(RUN_STAMP)
	$(PY) -m client --server '$(SERVER)' $(if $(NICK),--nick '$(NICK)') $(SECURITY)

# nats-server from Debian's packages (root and apt-get), installed on first use: the cluster's
# tests start their own.
nats-server:
	@command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || { \
		if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then \
			echo "installing nats-server (Debian's package)"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null 2>&1 || \
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server; }; \
		else \
			echo "nats-server is missing: install Debian's nats-server package (apt-get install nats-server, as root)" >&2; \
			exit 1; \
		fi; }

nats: nats-server
	mkdir -p '$(NATS_DIR)'
	@echo "NATS with JetStream on nats://127.0.0.1:$(NATS_PORT), data in $(NATS_DIR); stop with Ctrl-C"
	$$(command -v nats-server || echo /usr/sbin/nats-server) -js -sd '$(NATS_DIR)' -a 127.0.0.1 -p $(NATS_PORT)

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(DEV_STAMP)
	$(VENV)/bin/mypy

unit: $(DEV_STAMP) nats-server
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

test: lint typecheck unit

reliability: $(DEV_STAMP)
	$(PY) -m tests.figures

attack: $(DEV_STAMP)
	$(PY) -m tests.attacks $(ATTACK_ARGS)

bench: $(DEV_STAMP)
	$(PY) -m bench.run $(BENCH_ARGS)

bench-full: $(DEV_STAMP)
	$(PY) -m bench.run --idle-clients 10000 --idle-limit 60 --window 3 $(BENCH_ARGS)

# One broker against two behind one NATS (nats-server installed as `make nats` does),
# and the time to fail over: docs/PERFORMANCE.md, "Cluster".
bench-cluster: $(DEV_STAMP) nats-server
	$(PY) -m bench.cluster $(BENCH_ARGS)

bench-profile: $(DEV_STAMP)
	mkdir -p /tmp/zmq-chat-profiles
	$(PY) -m bench.run --systems chat --runs 1 --scenarios direct-50,fanout-1000,idle \
		--profile /tmp/zmq-chat-profiles --json /tmp/zmq-chat-profiles/results.json $(BENCH_ARGS)

bench-typing: $(DEV_STAMP)
	$(PY) -m bench.typing $(BENCH_ARGS)

bench-peers: $(DEV_STAMP)
	@if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ngircd inspircd; \
	else \
		echo "bench-peers: installing ngircd and inspircd needs root and apt-get; skipped"; \
	fi
	$(PY) -m bench.peers --check

screenshots: $(DEV_STAMP)
	$(PY) -m pip install --quiet -e '.[screenshots]'
	$(PY) docs/screenshots/make_screenshots.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
