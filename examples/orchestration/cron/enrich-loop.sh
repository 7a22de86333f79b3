#!/usr/bin/env bash
# One pass of the batch-enrich loop, for cron: dbt build, enrich sync, dbt build.
# Two passes never overlap: each takes an exclusive lock on a lock file first
# (`flock -n`); a pass that finds it held prints one line and exits 0 having run nothing.
#
# crontab (every 10 minutes; cron's PATH is short, so give it the venv's bin):
#
#   */10 * * * * DBT_PROJECT_DIR=/srv/analytics PATH=/srv/venv/bin:/usr/bin:/bin /srv/analytics/enrich-loop.sh >> /var/log/enrich-loop.log 2>&1
#
# Environment (all optional):
#   DBT_PROJECT_DIR   the dbt project; both dbt and enrich read it (default: the current
#                     directory). The pass runs in it, so a relative DuckDB path in
#                     profiles.yml means the same file to dbt and to enrich.
#   DBT_PROFILES_DIR  where profiles.yml is (read by dbt and enrich, as usual)
#   ENRICH_LOCK_FILE  the lock file (default: $DBT_PROJECT_DIR/.enrich-loop.lock)
#   DBT, ENRICH       the commands (default: dbt and enrich from PATH)
#   DBT_BUILD_ARGS    more arguments for both dbt builds, e.g. "--target prod"
#   ENRICH_SYNC_ARGS  more arguments for enrich sync, e.g. "--target prod --max-usd 20"
#
# Exit codes (enrich sync's own are in docs/running.md):
#   0  done; or another pass holds the lock; or enrich sync exited 5 (another sync of
#      the ledger, or on DuckDB another process, holds it: that one does the work)
#   1  enrich sync: an error stopped part of the work; the next pass retries it
#   2  enrich sync: usage or configuration; fix the project, retrying will not help
#   3  enrich sync: the API refused the account (key, billing); fix it
#   4  enrich sync: a budget held rows back; what fit was submitted (see the message)
#   6  a dbt build failed (its output above says why)
# The second dbt build runs after sync exits 0, 1, 3 or 4 (what landed is built), not
# after 2 or 5.
set -uo pipefail

project="${DBT_PROJECT_DIR:-$PWD}"
cd "$project" || exit 2
export DBT_PROJECT_DIR="$PWD"
lock="${ENRICH_LOCK_FILE:-$PWD/.enrich-loop.lock}"
read -ra dbt <<< "${DBT:-dbt}"
read -ra enrich <<< "${ENRICH:-enrich}"
read -ra dbt_args <<< "${DBT_BUILD_ARGS:-}"
read -ra sync_args <<< "${ENRICH_SYNC_ARGS:-}"

log() { printf '%s enrich-loop[%d]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$$" "$*"; }

# fd 9 stays open (and the lock held) until this pass and everything it started exit
exec 9>>"$lock" || { log "cannot open the lock file $lock"; exit 2; }
if ! flock -n 9; then
    log "another pass holds $lock; nothing run"
    exit 0
fi

log "dbt build (flag rows, parse what landed)"
"${dbt[@]}" build "${dbt_args[@]}" || { log "dbt build failed"; exit 6; }

log "enrich sync"
"${enrich[@]}" sync "${sync_args[@]}"
code=$?
case "$code" in
    0) log "enrich sync: done" ;;
    1) log "enrich sync exited 1: an error stopped part of the work; the next pass retries" ;;
    2) log "enrich sync exited 2: fix the project or profile; retrying will not help"; exit 2 ;;
    3) log "enrich sync exited 3: the API refused the account; fix the key or billing" ;;
    4) log "enrich sync exited 4: a budget held rows back; they go first next pass" ;;
    5) log "enrich sync exited 5: another sync holds the ledger; it does the work"; exit 0 ;;
    *) log "enrich sync exited $code"; code=1 ;;
esac

log "dbt build (build what landed)"
"${dbt[@]}" build "${dbt_args[@]}" || { log "dbt build failed"; exit 6; }
exit "$code"
