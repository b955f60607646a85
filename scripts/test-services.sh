#!/usr/bin/env bash
# Prepares what the test suite talks to, where this machine allows it:
# - Debian's chromium (headless browser test of the web page);
# - a PostgreSQL database `traylens_test` on 127.0.0.1:5432 (service tests run on it too).
# Nothing here is fatal: a test whose service is missing skips and says why.
set -u
# fonts-nanum: Korean dish names render in the page screenshots.
if { ! command -v chromium >/dev/null 2>&1 || [ ! -d /usr/share/fonts/truetype/nanum ]; } \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian chromium and Korean fonts for the browser test..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-nanum >/dev/null) \
    || echo "could not install chromium: the browser test will skip"
fi
if command -v psql >/dev/null 2>&1; then
  if ! psql -h 127.0.0.1 -U postgres -tAc "select 1" >/dev/null 2>&1 && [ "$(id -u)" = 0 ] \
     && command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  if psql -h 127.0.0.1 -U postgres -tAc "select 1" >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -tAc "select 1 from pg_database where datname='traylens_test'" \
      | grep -q 1 || psql -h 127.0.0.1 -U postgres -c "create database traylens_test" >/dev/null
    echo "PostgreSQL ready: postgresql+psycopg://postgres@127.0.0.1:5432/traylens_test"
  else
    echo "no PostgreSQL on 127.0.0.1:5432: PostgreSQL tests will skip"
  fi
fi
exit 0
