#!/usr/bin/env bash
# Idempotent installer for `make run` and `make test`: redis-server, Java and Maven, Apache
# Kafka's jars (from Maven Central, once, into .cache/jars/kafka), the Python venv.
#   --cassandra  also Apache Cassandra's jars (.cache/jars/cassandra)
#   --cluster    also Cassandra's jars and Debian's haproxy (`make cluster`, `make test-cluster`)
#   --test       all of the above, plus what only the tests use: Node/npm and s3rver (the S3
#                media backend's tests) and Debian's chromium (Playwright drives
#                /usr/bin/chromium; `playwright install` is never run)
# Each step prints one line; a step with nothing to do says so and is skipped.
set -euo pipefail

TESTS=0
CASSANDRA=0
CLUSTER=0
for arg in "$@"; do
  case "$arg" in
    --test) TESTS=1; CASSANDRA=1 ;;
    --cassandra) CASSANDRA=1 ;;
    --cluster) CLUSTER=1; CASSANDRA=1 ;;
    *) echo "usage: $0 [--cassandra] [--test] [--cluster]" >&2; exit 2 ;;
  esac
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFRA="$REPO/infra"
VENV="$REPO/.venv"
PYTHON="${PYTHON:-python3}"

step() { printf '[install] %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" -eq 0 ]; then
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# 1. Redis (Debian's redis-server; no service manager is needed, infra/ starts it itself).
if command -v redis-server >/dev/null 2>&1; then
  step "redis-server: $(redis-server --version | sed -E 's/.* v=([^ ]+).*/\1/') already installed"
else
  step "redis-server: installing (apt-get)"
  apt_install redis-server
fi

# 2. Java and Maven (the brokers are Java programs; Maven fetches their jars).
if command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then
  step "java and mvn: already installed"
else
  step "java/mvn: installing openjdk-17-jre-headless maven (apt-get)"
  apt_install openjdk-17-jre-headless maven
fi

# 3. The servers' jars, each set from its pom in infra/maven/NAME into .cache/jars/NAME;
# fetched again only when that pom changes (its copy is kept beside the jars as the stamp).
fetch_jars() {
  local name="$1" pom="$INFRA/maven/$1/pom.xml" dest="$REPO/.cache/jars/$1"
  if [ -f "$dest/pom.xml" ] && cmp -s "$pom" "$dest/pom.xml"; then
    step "$name jars: up to date in .cache/jars/$name"
    return
  fi
  step "$name jars: fetching from Maven Central into .cache/jars/$name"
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  local out
  if ! out=$(mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
               -DoutputDirectory="$dest.tmp" 2>&1); then
    printf '%s\n' "$out" >&2
    echo "[install] fetching the $name jars failed (is Maven Central reachable?)" >&2
    exit 1
  fi
  cp "$pom" "$dest.tmp/pom.xml"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
}
fetch_jars kafka
if [ "$CASSANDRA" -eq 1 ]; then
  fetch_jars cassandra
fi

if [ "$TESTS" -eq 1 ]; then
  # 4. Node.js and npm, for s3rver.
  if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    step "node: $(node --version) and npm $(npm --version 2>/dev/null) already installed"
  else
    step "node/npm: installing nodejs npm (apt-get)"
    apt_install nodejs npm
  fi

  # 5. s3rver (a filesystem-backed S3 for the S3 media backend's tests), pinned by infra/package-lock.json.
  if [ -x "$INFRA/node_modules/.bin/s3rver" ]; then
    step "s3rver: already in infra/node_modules"
  else
    step "s3rver: npm ci in infra/"
    (cd "$INFRA" && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error;
                    else npm install --no-audit --no-fund --loglevel=error; fi) >/dev/null
  fi
fi

# 6. The Python venv with the project and its test extras; redone when pyproject.toml changes.
if [ ! -x "$VENV/bin/python" ]; then
  step "venv: creating .venv"
  if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    apt_install python3 python3-venv  # Debian splits venv/ensurepip out of python3
  fi
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$VENV/.installed" ] || [ "$REPO/pyproject.toml" -nt "$VENV/.installed" ]; then
  step "venv: pip install -e '.[test]'"
  (cd "$REPO" && "$VENV/bin/python" -m pip install -q -e '.[test]')
  touch "$VENV/.installed"
else
  step "venv: up to date"
fi

# 7. Debian's chromium and an emoji font, for the browser tests only (`make run` does not need it).
if [ "$TESTS" -eq 1 ]; then
  if [ -x /usr/bin/chromium ]; then
    step "chromium: already installed"
  else
    step "chromium: installing (apt-get)"
    apt_install chromium
  fi
  # The web client's reactions are emoji: without a colour emoji font Chromium draws boxes.
  if [ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]; then
    step "emoji font: already installed"
  else
    step "emoji font: installing (apt-get)"
    apt_install fonts-noto-color-emoji
  fi
fi

# 8. Debian's HAProxy, the reverse proxy in front of the gateways of `make cluster`.
if [ "$CLUSTER" -eq 1 ]; then
  if command -v haproxy >/dev/null 2>&1; then
    step "haproxy: $(haproxy -v | head -1 | awk '{print $3}') already installed"
  else
    step "haproxy: installing (apt-get)"
    apt_install haproxy
  fi
fi
