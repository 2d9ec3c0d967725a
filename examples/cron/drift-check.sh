#!/bin/sh
# Drift check for cron: compares what exists (mirror tags, node files,
# containerd config) with mirrorplan's state, without changing anything.
#
#   drift-check.sh CONFIG_DIR [STATE_FILE]
#
# Exit codes of `mirrorplan plan --refresh-only --detailed-exitcode`:
#   0  nothing drifted                    -> silent
#   2  something changed outside mirrorplan -> alert "drift" with the JSON
#   1  error, e.g. a node or the registry could not be reached
#      (mirrorplan::refresh::unreachable)  -> alert "check failed": this is
#      NOT "no drift", the comparison did not happen
#
# Alerts go to $ALERT_COMMAND (reads the message on stdin), default: mail to
# $ALERT_TO (default root). The registry password comes from the environment
# (MIRRORPLAN_VAR_mirror_password), never from the command line.
set -u

dir=${1:?usage: drift-check.sh CONFIG_DIR [STATE_FILE]}
state=${2:-}
alert_to=${ALERT_TO:-root}
alert() { # $1 = subject, message on stdin
    if [ -n "${ALERT_COMMAND:-}" ]; then
        sh -c "$ALERT_COMMAND" -- "$1"
    else
        mail -s "$1" "$alert_to"
    fi
}

out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT

set -- -C "$dir" plan --refresh-only --detailed-exitcode --json --lock=false
[ -n "$state" ] && set -- "$@" --state "$state"
NO_COLOR=1 mirrorplan "$@" >"$out" 2>"$err" </dev/null
code=$?

case $code in
    0) exit 0 ;;
    2)
        # one line per drifted instance: address and what differs
        summary=$(jq -r '.drift[] | "\(.address): " + (if .gone then "deleted" else ([.changes[].attribute] | join(", ")) end)' "$out" 2>/dev/null)
        { echo "mirrorplan: drift in $dir"; echo; echo "$summary"; echo; cat "$out"; } \
            | alert "mirrorplan drift: $(echo "$summary" | wc -l) object(s) changed outside mirrorplan"
        exit 2 ;;
    *)
        if grep -q 'mirrorplan::refresh::unreachable' "$err"; then
            subject="mirrorplan drift check FAILED: a node or registry is unreachable (drift unknown)"
        else
            subject="mirrorplan drift check FAILED (exit $code)"
        fi
        { echo "mirrorplan: the drift check in $dir did not run to the end"; echo; cat "$err"; } | alert "$subject"
        exit 1 ;;
esac
