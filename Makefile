# The two commands: `make run` (the whole system on this machine) and `make test`.
# Each installs what it needs first (apt: redis-server, nodejs; npm: s3rver; the .venv).
.PHONY: install run test unit clean-data

PY := .venv/bin/python
PYTEST_ARGS ?=

install:
	@bash infra/install.sh

run: install
	@$(PY) -m infra.run

test: install
	@bash infra/test.sh $(PYTEST_ARGS)

unit: install
	@bash infra/test.sh tests/unit

# Forget every conversation and message of `make run` (its broker, Redis and store data).
clean-data:
	rm -rf .data
