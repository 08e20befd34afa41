#!/bin/sh
# See Legion's dashboards locally, in one command:
#
#   grafana/run-local.sh [--port 9464] [--no-demo]
#
# starts Prometheus (scraping 127.0.0.1:PORT every 5 s) and Grafana (this folder's provisioning and
# dashboards, anonymous admin) and, unless --no-demo, the offline demo workload (grafana/demo.py: a
# scripted model, no API key) whose node serves /metrics on 127.0.0.1:PORT. With --no-demo, point
# your own node there instead: `legion node --socket S --metrics-port 9464`.
# Grafana: http://127.0.0.1:3000 (folder "Legion"); Prometheus: http://127.0.0.1:9090 (other ports:
# GRAFANA_PORT=..., PROMETHEUS_PORT=...; the demo runs with `uv run`, or $PYTHON if set).
#
# It uses, in this order:
#   1. Docker with the compose plugin (grafana/docker-compose.yml, host network);
#   2. `prometheus` and `grafana` (or `grafana-server`) installed on this machine (Debian:
#      `apt-get install prometheus`; Grafana from apt.grafana.com), run from a temporary folder;
#   3. `prometheus` alone: the demo and Prometheus, whose UI (Graph tab) runs the dashboards'
#      queries (`python grafana/build.py --queries` prints them).
# Ctrl-C stops everything it started.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
port=9464
prometheus_port=${PROMETHEUS_PORT:-9090}
grafana_port=${GRAFANA_PORT:-3000}
demo=1
while [ $# -gt 0 ]; do
    case "$1" in
        --port) port=$2; shift 2 ;;
        --no-demo) demo=0; shift ;;
        *) echo "run-local.sh: unknown argument $1 (use --port N or --no-demo)" >&2; exit 2 ;;
    esac
done

pids=""
cleanup() {
    trap - EXIT INT TERM
    for pid in $pids; do kill "$pid" 2>/dev/null || true; done
    for pid in $pids; do wait "$pid" 2>/dev/null || true; done
    if [ "${compose:-0}" = 1 ]; then
        LEGION_PROMETHEUS_YML="$tmp/prometheus.yml" docker compose -f "$here/docker-compose.yml" down
    fi
    if [ -n "${tmp:-}" ]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

grafana_bin=""
for candidate in grafana grafana-server; do
    if command -v "$candidate" >/dev/null 2>&1; then grafana_bin=$candidate; break; fi
done

if docker compose version >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    echo "run-local.sh: Prometheus and Grafana in Docker (grafana/docker-compose.yml)"
    compose=1
    tmp=$(mktemp -d)
    sed "s/127.0.0.1:9464/127.0.0.1:$port/" "$here/prometheus.yml" > "$tmp/prometheus.yml"
    LEGION_PROMETHEUS_YML="$tmp/prometheus.yml" PROMETHEUS_PORT=$prometheus_port \
    GRAFANA_PORT=$grafana_port docker compose -f "$here/docker-compose.yml" up -d
elif command -v prometheus >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    sed "s/127.0.0.1:9464/127.0.0.1:$port/" "$here/prometheus.yml" > "$tmp/prometheus.yml"
    prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/prometheus-data" \
        --web.listen-address="127.0.0.1:$prometheus_port" > "$tmp/prometheus.log" 2>&1 &
    pids="$pids $!"
    echo "run-local.sh: Prometheus on http://127.0.0.1:$prometheus_port (log: $tmp/prometheus.log)"
    if [ -n "$grafana_bin" ]; then
        home=${GRAFANA_HOME:-/usr/share/grafana}
        mkdir -p "$tmp/grafana/data" "$tmp/grafana/logs" "$tmp/grafana/plugins"
        if [ "$grafana_bin" = grafana ]; then set -- grafana server; else set -- grafana-server; fi
        GF_PATHS_DATA="$tmp/grafana/data" GF_PATHS_LOGS="$tmp/grafana/logs" \
        GF_PATHS_PLUGINS="$tmp/grafana/plugins" GF_PATHS_PROVISIONING="$here/provisioning" \
        GF_SERVER_HTTP_ADDR=127.0.0.1 GF_SERVER_HTTP_PORT="$grafana_port" \
        GF_AUTH_ANONYMOUS_ENABLED=true GF_AUTH_ANONYMOUS_ORG_ROLE=Admin \
        PROMETHEUS_URL="http://127.0.0.1:$prometheus_port" LEGION_DASHBOARDS="$here/dashboards" \
            "$@" --homepath "$home" > "$tmp/grafana.log" 2>&1 &
        pids="$pids $!"
        echo "run-local.sh: Grafana on http://127.0.0.1:$grafana_port, folder Legion" \
            "(log: $tmp/grafana.log)"
    else
        echo "run-local.sh: no grafana binary on PATH: Prometheus only; run the dashboards'"
        echo "  queries in its Graph tab (python grafana/build.py --queries lists them)"
    fi
else
    echo "run-local.sh: needs Docker with the compose plugin, or Prometheus on this machine" >&2
    echo "  (Debian: apt-get install prometheus; Grafana: https://apt.grafana.com)" >&2
    exit 1
fi

if [ "$demo" = 1 ]; then
    cd "$here/.."
    if [ -n "${PYTHON:-}" ]; then set -- "$PYTHON"
    elif command -v uv >/dev/null 2>&1; then set -- uv run --locked --extra dev python
    else set -- python3; fi
    "$@" grafana/demo.py --port "$port" &
    pids="$pids $!"
    wait $!
else
    echo "run-local.sh: waiting for a node on 127.0.0.1:$port; Ctrl-C to stop"
    while :; do sleep 3600; done
fi
