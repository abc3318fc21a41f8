#!/usr/bin/env bash
# The demo: installs dependencies, builds outboxd, then runs it against a
# throwaway PostgreSQL 15 and a local mock Kafka cluster (DEMO_KAFKA=real:
# a real Apache Kafka broker) under a demo workload, printing live progress.
# DURATION=seconds RATE=events/s DEMO_PLUGIN=pgoutput|wal2json.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
[ -d build ] || meson setup build --buildtype=release >/dev/null
ninja -C build
exec /usr/bin/python3 scripts/demo.py
