# The two commands of the README:
#   make demo   installs everything and runs the gateway end to end on the sample slides
#   make test   installs everything (test peers included) and runs the whole check
# `.ci/run` calls `make test`.

.PHONY: demo test check lint typecheck unit install install-test clean image gpu-wheels gpu-run gpu-dry-run

demo: install
	.venv/bin/ihgamp demo

test: install-test
	scripts/check

install:
	scripts/bootstrap.sh demo

install-test:
	scripts/bootstrap.sh test

# Faster loops while developing (assume `make install-test` has run).
lint:
	.venv/bin/ruff format --check src tests sample_data scripts bench
	.venv/bin/ruff check src tests sample_data scripts bench

typecheck:
	.venv/bin/mypy

unit:
	.venv/bin/python -m pytest -m unit -q

# The gateway image without a registry: offline base, pinned wheelhouse, BuildKit build
# (docs/deployment.md). Needs a running Docker engine (DOCKER_HOST is honoured). Debian's
# docker.io client is preferred: it drives the engine's BuildKit without the buildx plug-in.
DOCKER ?= $(shell [ -x /usr/bin/docker ] && echo /usr/bin/docker || echo docker)
image:
	DOCKER=$(DOCKER) deploy/docker/build-base-offline.sh
	PYTHON=.venv/bin/python deploy/docker/wheelhouse.sh
	version=$$(.venv/bin/python -c 'import ihgamp_core; print(ihgamp_core.__version__)'); \
	revision=$$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown); \
	DOCKER_BUILDKIT=1 $(DOCKER) build -f deploy/docker/Dockerfile \
		--build-arg VERSION=$$version --build-arg REVISION=$$revision -t ihgamp/gateway:$$version .

# The prepared GPU run (docs/benchmarks.md, "GPU run"):
#   make gpu-wheels    here: the wheels the GPU machine lacks, into .whl/ (carried)
#   make gpu-run       on the GPU machine: bench/gpu_run.sh (figures into $$OUT or bench-out/)
#   make gpu-dry-run   here: the same steps on the CPU with a small slide
gpu-wheels:
	.venv/bin/python -m bench.gpu.wheels download --dest .whl

gpu-run:
	bash bench/gpu_run.sh

gpu-dry-run:
	PYTHON=.venv/bin/python bash bench/gpu_run.sh --dry-run

clean:
	rm -rf .venv .tools sample_data/generated demo-output .mypy_cache .ruff_cache .pytest_cache bench-out .whl
	rm -f deploy/docker/wheelhouse/*.whl deploy/docker/wheelhouse/.inputs
