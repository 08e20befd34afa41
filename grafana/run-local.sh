#!/bin/sh
# See Legion's dashboards locally, in one command (needs Docker with compose):
#   grafana/run-local.sh
# starts Prometheus and Grafana (grafana/docker-compose.yml) and an offline demo workload whose
# node serves /metrics on 127.0.0.1:9464; open http://127.0.0.1:3000 (folder "Legion").
# Ctrl-C stops everything.
set -e
here=$(cd "$(dirname "$0")" && pwd)
docker compose -f "$here/docker-compose.yml" up -d
trap 'docker compose -f "$here/docker-compose.yml" down' EXIT INT TERM
echo "Grafana: http://127.0.0.1:3000   Prometheus: http://127.0.0.1:9090"
cd "$here/.." && uv run python grafana/demo.py
