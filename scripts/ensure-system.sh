#!/usr/bin/env bash
# Installs the system packages Firstline needs when they are missing: PostgreSQL's server
# binaries (initdb, pg_ctl) for the throwaway/dev cluster, and Dovecot's IMAP and POP3 servers,
# which ingest's mailbox-polling tests run on loopback ports, and Debian's Chromium (with a font),
# which the browser tests (tests/e2e/test_browser.py) drive through Playwright: Playwright's own
# browser download is never used. Python packages come from pip.
set -euo pipefail
have_pg() { command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }
have_chromium() { [ -x /usr/bin/chromium ]; }
have_dovecot() { command -v dovecot >/dev/null 2>&1 && [ -x /usr/lib/dovecot/imap ] && [ -x /usr/lib/dovecot/pop3 ]; }
packages=()
if ! have_pg && [ -z "${DATABASE_URL:-}" ]; then packages+=(postgresql); fi
if ! have_dovecot; then packages+=(dovecot-imapd dovecot-pop3d); fi
if ! have_chromium; then packages+=(chromium fonts-liberation); fi
if [ ${#packages[@]} -eq 0 ]; then exit 0; fi
echo "installing missing system packages with apt-get: ${packages[*]}" >&2
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
