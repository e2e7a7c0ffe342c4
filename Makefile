# The two commands: `make run` (the whole system on this machine) and `make test`.
# Each installs what it needs first (apt: redis-server, Java and Maven; Maven Central: Kafka's
# jars, and Cassandra's when asked for; the .venv; for tests also Cassandra's jars, apt:
# nodejs and chromium, npm: s3rver).
.PHONY: install run cluster cluster-secured test test-cluster unit screenshots clean-data bench

PY := .venv/bin/python
PYTEST_ARGS ?=

# CHAT_TIMELINE_BACKEND=cassandra make run: a local Apache Cassandra node keeps the timelines.
install:
	@bash infra/install.sh $(if $(filter cassandra,$(CHAT_TIMELINE_BACKEND)),--cassandra)

run: install
	@$(PY) -m infra.run

# The same system as a small cluster on this machine (infra/cluster.py): 3 Kafka brokers, a
# Redis Cluster, Cassandra, 2 workers, 2 gateways behind HAProxy at http://127.0.0.1:8080/.
cluster:
	@bash infra/install.sh --cluster
	@$(PY) -m infra.cluster

# The same cluster secured (Kafka SASL_SSL + SCRAM, Redis ACL + TLS, Cassandra password + TLS),
# data under .data/cluster-secured; its chat.env holds the settings a client needs.
cluster-secured:
	@bash infra/install.sh --cluster
	@$(PY) -m infra.cluster --secured

test:
	@bash infra/install.sh --test
	@bash infra/test.sh $(PYTEST_ARGS)

# The faults against `make cluster`'s deployment, and its secured mode once (tests/cluster/):
# about 5 minutes (184 s and 96 s on the shared 2-core machine, each cluster's start included);
# .ci/run runs it after `make test`.
test-cluster:
	@bash infra/install.sh --test --cluster
	@bash infra/test.sh tests/cluster $(PYTEST_ARGS)

# Rewrite docs/screenshots/*.png from the browser test that takes them.
screenshots:
	@bash infra/install.sh --test
	@CHAT_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots bash infra/test.sh tests/e2e/test_web_client.py tests/e2e/test_web_client_11.py -k screenshots

unit: install
	@bash infra/test.sh tests/unit

# Every figure of the speed targets (bench/README.md), each on a fresh local system, about 35
# minutes: scenarios a, b (bench/latency_vs_load.png) and d; one message to 10,000 members on two
# gateways; idle connections on two gateways; Artillery at 1,000 msg/s; what consuming an event
# costs. Appends to bench/RESULTS.md. Not part of `make test`.
bench: install
	@$(PY) -c 'import matplotlib' 2>/dev/null || $(PY) -m pip install -q -e '.[bench]'
	@$(PY) -m bench.scenarios all
	@$(PY) -m bench.scenarios d --members 10000 --gateways 2 --procs 4 --fanout-rates 1,2,5 \
		--fanout-duration 40 --settle 15 --setup-timeout 400 --drain-timeout 60
	@$(PY) -m bench.idle --connections 39000 --clients 4 --gateways 2 --hold 20
	@$(PY) -m bench.artillery_run --vus 100 --rate 1000 --duration 30 --group-size 10
	@$(PY) -m bench.consume_cost --runs 2 --readers faust-stock,faust,decode,raw --results bench/RESULTS.md
	@$(PY) -m bench.snapshot_encoding --results bench/RESULTS.md

# Forget every conversation and message of `make run` (its broker, Redis and store data).
clean-data:
	rm -rf .data
