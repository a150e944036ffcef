#!/usr/bin/env bash
# Stops the PostgreSQL server that scripts/postgres-up.sh started (not one that was already running).
set -uo pipefail
if [ -f /run/lmexp-postgres-started ]; then
  read -r version cluster _ < <(pg_lsclusters -h | head -1)
  pg_ctlcluster "$version" "$cluster" stop && rm -f /run/lmexp-postgres-started
  echo "postgres-down.sh: stopped"
fi
