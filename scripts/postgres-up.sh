#!/usr/bin/env bash
# A PostgreSQL server on localhost for lmexp's shared-Optuna-study test (Debian's `postgresql`),
# with a user and database `lmexp`. Run as root; scripts/postgres-down.sh stops it. Prints the URL:
#   export LMEXP_TEST_POSTGRES_URL=$(scripts/postgres-up.sh)
set -euo pipefail
if [ "$(id -u)" != 0 ]; then echo "postgres-up.sh: run as root" >&2; exit 1; fi
if ! command -v pg_lsclusters >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends postgresql >/dev/null
fi
read -r version cluster _ < <(pg_lsclusters -h | head -1)
if pg_lsclusters -h | head -1 | grep -q down; then
  pg_ctlcluster "$version" "$cluster" start
  touch /run/lmexp-postgres-started        # postgres-down.sh stops only a server this script started
fi
runuser -u postgres -- psql -q -tc "SELECT 1 FROM pg_roles WHERE rolname='lmexp'" | grep -q 1 \
  || runuser -u postgres -- psql -q -c "CREATE ROLE lmexp LOGIN PASSWORD 'lmexp'" >&2
runuser -u postgres -- psql -q -tc "SELECT 1 FROM pg_database WHERE datname='lmexp'" | grep -q 1 \
  || runuser -u postgres -- createdb -O lmexp lmexp >&2
echo "postgresql://lmexp:lmexp@localhost:5432/lmexp"
