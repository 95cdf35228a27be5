# The two commands of the README:
#   make demo   installs everything and runs the gateway end to end on the sample slides
#   make test   installs everything (test peers included) and runs the whole check
# `.ci/run` calls `make test`.

.PHONY: demo test check lint typecheck unit install install-test clean

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

clean:
	rm -rf .venv sample_data/generated demo-output .mypy_cache .ruff_cache .pytest_cache
