#!/usr/bin/env bash
# Installs the system packages Firstline needs when they are missing: PostgreSQL's server
# binaries (initdb, pg_ctl) for the throwaway/dev cluster. Python packages come from pip.
set -euo pipefail
have_pg() { command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }
if have_pg; then exit 0; fi
if [ -n "${DATABASE_URL:-}" ]; then exit 0; fi
echo "PostgreSQL server binaries not found; installing them with apt-get" >&2
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
