# The two commands: `make run` (the whole system on this machine) and `make test`.
# Each installs what it needs first (apt: redis-server, nodejs; npm: s3rver; the .venv;
# for tests also apt: chromium).
.PHONY: install run test unit screenshots clean-data

PY := .venv/bin/python
PYTEST_ARGS ?=

install:
	@bash infra/install.sh

run: install
	@$(PY) -m infra.run

test:
	@bash infra/install.sh --browser
	@bash infra/test.sh $(PYTEST_ARGS)

# Rewrite docs/screenshots/*.png from the browser test that takes them.
screenshots:
	@bash infra/install.sh --browser
	@CHAT_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots bash infra/test.sh tests/e2e/test_web_client.py -k screenshots

unit: install
	@bash infra/test.sh tests/unit

# Forget every conversation and message of `make run` (its broker, Redis and store data).
clean-data:
	rm -rf .data
