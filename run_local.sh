#!/usr/bin/env bash
# osmosis-beam local runner.
#   ./run_local.sh          set up .venv, install the package, run the demo pipeline on the DirectRunner
#   ./run_local.sh test     set up .venv with the test extra and run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
VENV="${OSMOSIS_VENV:-.venv}"

setup_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo ">> creating $VENV" >&2
    "$PYTHON" -m venv "$VENV"
  fi
  local extra="$1"
  local stamp="$VENV/.osmosis-installed$extra"
  if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo ">> installing osmosis-beam$extra into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
    # An upgrade in place (say, a new Beam pin) can leave packages that no longer fit together: pip resolves
    # only what it installs. Then start the venv afresh, where pip resolves everything at once.
    if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".$extra" >&2 \
        || ! "$VENV/bin/python" -m pip check >/dev/null 2>&1; then
      echo ">> $VENV holds conflicting packages after the upgrade; recreating it" >&2
      rm -rf "$VENV"
      "$PYTHON" -m venv "$VENV"
      "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
      "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".$extra" >&2
    fi
    touch "$stamp"
  fi
}

free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

demo() {
  setup_venv ""
  local port; port="$(free_port)"
  "$VENV/bin/python" -m http.server "$port" --bind 127.0.0.1 --directory pipelines/feeds >/dev/null 2>&1 &
  FEED_SERVER_PID=$!
  trap 'kill "$FEED_SERVER_PID" 2>/dev/null || true' EXIT
  for _ in $(seq 1 50); do
    if "$VENV/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/tech_news.xml', timeout=1)" 2>/dev/null; then break; fi
    sleep 0.1
  done
  export DEMO_FEED_URL="http://127.0.0.1:$port/tech_news.xml"
  local home="${OSMOSIS_HOME:-pipelines/.osmosis}"
  echo ">> osmosis run pipelines/tech_news.yaml   (feed served at $DEMO_FEED_URL, home $home)"
  "$VENV/bin/osmosis" --home "$home" run pipelines/tech_news.yaml
  local output="${DEMO_OUTPUT:-pipelines/data/tech_news}"
  echo ">> output files under $output:"
  if [ -d "$output" ]; then
    find "$output" -name 'part-*.jsonl' -not -path '*/_*' | sort | sed 's/^/   /'
  fi
  echo ">> osmosis history"
  "$VENV/bin/osmosis" --home "$home" history --pipeline tech_news
}

have_pg_server() {
  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

ensure_test_services() {
  # The suite starts a throwaway PostgreSQL cluster, a MongoDB-wire server (Node.js), Chromium, and Flink and
  # Spark clusters (Java) itself; on a fresh machine, install their packages when we can (root with apt-get).
  local missing=()
  if [ -z "${OSMOSIS_TEST_PG_DSN:-}" ] && ! have_pg_server; then missing+=(postgresql); fi
  if [ -z "${OSMOSIS_TEST_MONGO_URI:-}" ] && ! command -v node >/dev/null 2>&1; then missing+=(nodejs); fi
  if [ -z "${OSMOSIS_TEST_MONGO_URI:-}" ] && ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi
  # The dashboard's browser tests drive Debian's chromium through Playwright (never `playwright install`).
  if [ ! -x /usr/bin/chromium ]; then missing+=(chromium); fi
  # The Flink and Spark cluster tests run JVMs; Beam's runner jars come from Maven Central through mvn.
  if ! command -v java >/dev/null 2>&1; then missing+=(openjdk-17-jre-headless); fi
  if ! command -v mvn >/dev/null 2>&1; then missing+=(maven); fi
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      echo ">> installing ${missing[*]} for the test services" >&2
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    else
      echo ">> warning: ${missing[*]} not installed; tests needing them will skip (or fail under CI=true)" >&2
    fi
  fi
  # FerretDB (the second MongoDB-wire server) is built from the Go module proxy into ~/.cache/osmosis-beam,
  # once (2-4 minutes); here rather than in a test fixture, so the build does not count against a test's timeout.
  if command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ] || [ -n "${GO:-}" ]; then
    bash tests/services/ferretdb/install.sh >/dev/null || echo ">> warning: building FerretDB failed; its tests will skip (or fail under CI=true)" >&2
  else
    echo ">> warning: Go not found; FerretDB cannot be built, its tests will skip (or fail under CI=true)" >&2
  fi
}

run_tests() {
  ensure_test_services
  setup_venv "[test]"
  # Flink and Spark (from PyPI), Beam's Flink and Spark runners (Maven Central) and the Prism binary (Go proxy),
  # into ~/.cache/osmosis-beam once; here, so a fresh machine's downloads do not count against a test's timeout.
  "$VENV/bin/python" -m tests.services.jars >&2 || echo ">> warning: fetching the cluster jars failed; the cluster tests will fail under CI=true" >&2
  shift || true
  "$VENV/bin/python" -m pytest "$@"
}

case "${1:-demo}" in
  demo) demo ;;
  test) run_tests "$@" ;;
  *) echo "usage: $0 [test [PYTEST_ARGS...]]" >&2; exit 2 ;;
esac
