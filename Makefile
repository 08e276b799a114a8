# Two commands matter: `make demo` and `make test`. Both set the machine up first.
# Set-up is idempotent: apt runs only when a Debian package is missing, pip only when
# pyproject.toml changed since the last install.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lathe-installed
APT_PACKAGES := gcc libc6-dev libgomp1 python3-venv pocl-opencl-icd ocl-icd-libopencl1 libegl1 libegl-mesa0 \
	libgl1-mesa-dri libvulkan1 mesa-vulkan-drivers chromium clang lld

.PHONY: setup demo test fuzz bench lint loc clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	  echo "installing Debian packages: $(APT_PACKAGES)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(PY) examples/demo.py

test: setup
	$(PY) -m ruff check lathe tests bench examples
	$(PY) -m pytest tests

# nightly: 10,000 mutated models (full ResNet-18 included) in 2 worker processes (make test runs 500 of them in tests/test_fuzz.py)
fuzz: setup
	$(PY) -m tests.fuzz_models --count 10000 --jobs 2 --seed $${FUZZ_SEED:-0} --full-zoo --save build/fuzz-findings

bench: setup
	$(PY) bench/matmul.py
	$(PY) bench/models.py
	cd bench/web && npm install --no-audit --no-fund
	$(PY) bench/web.py --runs $${WEB_RUNS:-10}  # SwiftShader: a ResNet-18 run of all columns takes ~40 s; WEB_RUNS=100 on a GPU

lint: setup
	$(PY) -m ruff check lathe tests bench examples

loc:
	@for d in lathe/*/ ; do printf '%-22s %6s\n' $$d "$$(cat $$d*.py | grep -cv '^\s*\(#.*\)\?$$')"; done
	@printf '%-22s %6s\n' total "$$(cat lathe/*.py lathe/*/*.py | grep -cv '^\s*\(#.*\)\?$$')"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
