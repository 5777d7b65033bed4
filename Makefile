# Two entry points a fresh machine needs (see README "Quick start"):
#   make demo  - create .venv, install raftkv, run the main job
#   make test  - create .venv, install raftkv with its dev extras, run every test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install system-deps clean

# The real etcd 3.4 and etcdctl from Debian: the compatibility tests run raftkv beside them.
system-deps:
	@command -v etcd >/dev/null && command -v etcdctl >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq etcd-server etcd-client; }

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m sim run --out runs/demo

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) build *.egg-info
