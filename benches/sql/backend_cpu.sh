#!/usr/bin/env bash
# The CPU (in ticks of 10 ms) of the PostgreSQL backend running the CALL of
# benches/sql/claim_variants.sql, read from /proc around it: run as root on
# the server's machine, with the test servers up (scripts/services.sh up).
#   benches/sql/backend_cpu.sh lock|nolock|tid
set -euo pipefail
variant=${1:?lock, nolock or tid}
uri=postgres://postgres:postgres@127.0.0.1:5432/postgres
here=$(dirname "$0")
out=$(mktemp)
PGAPPNAME=backend_cpu psql "$uri" -q -v variant="$variant" -v pause=1 \
  -f "$here/claim_variants.sql" >"$out" 2>&1 &
psql_pid=$!
query() { psql "$uri" -qAtc "SELECT pid FROM pg_stat_activity WHERE application_name = 'backend_cpu' AND state = 'active' AND query LIKE '$1%'"; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
until pid=$(query "SELECT pg_sleep") && [ -n "$pid" ]; do sleep 0.1; done
before=$(ticks "$pid")
until [ -n "$(query CALL)" ]; do sleep 0.1; done
until [ -n "$(query "SELECT pg_sleep")" ]; do sleep 0.1; done
after=$(ticks "$pid")
wait "$psql_pid"
echo "$variant: $((after - before)) ticks; $(grep -o "$variant: .*" "$out")"
rm -f "$out"
