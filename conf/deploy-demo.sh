#!/bin/sh
# The deploy walk-through on the demo of `make run` (in another shell):
#
#   1. a bad canary (v3: 10% of its answers are 500) is deployed: the
#      front door rolls it back by itself within its first step;
#   2. a good canary (v2) is deployed: every step passes, promoted.
#
# Traffic comes from curl in the background; the deploy is followed
# through the admin API; the webhook's events (logs/webhook.log) are
# shown at the end.  Exit status 0 when both ended as they should.
#
#   conf/deploy-demo.sh [run-dir] [base-url]
#
# run-dir: the demo's (build/demo: admin.tokens, logs/); base-url:
# http://127.0.0.1:8080.  STEP_SECONDS (default 5) sets the steps' length;
# BAD_ADDR and GOOD_ADDR the canaries' addresses (127.0.0.1:8086 and
# 127.0.0.1:8085, served by the demo's nginx).

set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
run=${1:-$top/build/demo}
base=${2:-http://127.0.0.1:8080}
step_seconds=${STEP_SECONDS:-5}
bad_addr=${BAD_ADDR:-127.0.0.1:8086}
good_addr=${GOOD_ADDR:-127.0.0.1:8085}
svc=demo.shop.api
api=$base/api/v1/services/$svc/clusters/default
token=$(awk '$1 !~ /^#/ && NF { print $1; exit }' "$run/admin.tokens")
tmp=$(mktemp -d)
loader=

cleanup() {
    touch "$tmp/stop"
    [ -n "$loader" ] && wait "$loader" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

say() {
    printf '%s\n' "$*"
}

# call METHOD PATH [BODY]: the admin API with the demo's token
call() {
    curl -s -X "$1" -H "Authorization: Bearer $token" \
         -H 'Content-Type: application/json' ${3:+-d "$3"} "$api$2"
}

# json EXPR: a field of the JSON on stdin (python3 reads it)
json() {
    python3 -c 'import json, sys; d = json.load(sys.stdin); print('"$1"')'
}

# traffic in the background, 100 requests per curl (one connection),
# the statuses in $tmp/codes.<phase>, until $tmp/stop exists
traffic() {
    rm -f "$tmp/stop"
    : > "$tmp/codes.$1"
    (
        while [ ! -e "$tmp/stop" ]; do
            curl -s -o /dev/null -w '%{http_code}\n' \
                 "$base/?n=[1-100]" >> "$tmp/codes.$1" 2>/dev/null || true
        done
    ) &
    loader=$!
}

traffic_stop() {
    touch "$tmp/stop"
    wait "$loader" 2>/dev/null || true
    loader=
}

# follow: prints the deploy every second until it is no longer running
follow() {
    start=$(date +%s)
    while :; do
        call GET /deploys/current > "$tmp/current"
        state=$(json 'd["state"]' < "$tmp/current")
        line=$(json '"step %d/%d at %g%%: %-8s canary %d requests %d 5xx,'\
' prod %d requests %d 5xx" % (d["step"] + 1, len(d["steps"]),'\
' d["steps"][d["step"]]["weight"],'\
' d["steps"][d["step"]]["verdict"],'\
' (d["steps"][d["step"]].get("figures") or {}).get("canary_requests", 0),'\
' (d["steps"][d["step"]].get("figures") or {}).get("canary_errors", 0),'\
' (d["steps"][d["step"]].get("figures") or {}).get("prod_requests", 0),'\
' (d["steps"][d["step"]].get("figures") or {}).get("prod_errors", 0))' \
               < "$tmp/current")
        say "  $(( $(date +%s) - start ))s  $state  $line"
        case $state in
        running|paused) sleep 1 ;;
        *) break ;;
        esac
    done
}

# deploy PHASE ID ADDRESS VERSION: the canary env becomes that one
# instance, then a deploy of it; prints how it ends
deploy() {
    say ""
    say "== $1: canary $2 ($4) on $3"
    say "PUT $api/envs/canary/instances"
    call PUT /envs/canary/instances "{\"instances\": [{\"id\": \"$2\",
        \"address\": \"$3\", \"weight\": 1, \"version\": \"$4\"}]}" \
        > /dev/null
    traffic "$1"
    body="{\"steps\": [10, 50, 100], \"step_seconds\": $step_seconds,
           \"min_requests\": 20}"
    say "POST $api/deploys"
    say "     $body"
    call POST /deploys "$body" > "$tmp/started"
    id=$(json 'd.get("id", d)' < "$tmp/started")
    say "deploy $id started"
    follow
    traffic_stop
    json '"-> %s%s" % (d["state"], (": gate %s: %s" % (d["failed_gate"],'\
' d["reason"])) if d["failed_gate"] else "")' < "$tmp/current"
    say "   clients: $(wc -l < "$tmp/codes.$1") requests," \
        "$(grep -c '^5' "$tmp/codes.$1" || true) answered 5xx"
    envs=$(for i in 1 2 3 4 5 6 7 8 9 10; do
               curl -s -o /dev/null -D - "$base/" | tr -d '\r' \
                   | sed -n 's/^X-TCE-Env: //p'
           done | sort | uniq -c | tr -s ' \n' ' ')
    say "   10 requests now go to:$envs"
    final=$(json 'd["state"]' < "$tmp/current")
}

say "TCE front door: progressive deploys of $svc (admin API at $base/api/)"
webhook_lines=$(wc -l < "$run/logs/webhook.log" 2>/dev/null || echo 0)

deploy "bad canary" api-6 "$bad_addr" v3
bad=$final

deploy "good canary" api-5 "$good_addr" v2
good=$final

say ""
say "== the webhook's events (tce_deploy_webhook -> $run/logs/webhook.log)"
sleep 1
tail -n +"$((webhook_lines + 1))" "$run/logs/webhook.log" 2>/dev/null \
    | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    print("  #%d %-20s deploy %d %-11s step %d weight %5.1f%% by %s%s" % (
        e["seq"], e["event"], e["deploy_id"], e["state"], e["step"] + 1,
        e["weight_bp"] / 100.0, e["by"],
        " (gate %s)" % e["failed_gate"] if e["failed_gate"] else ""))'

say ""
if [ "$bad" = rolled_back ] && [ "$good" = promoted ]; then
    say "OK: the bad canary was rolled back, the good one promoted."
    exit 0
fi
say "UNEXPECTED: bad canary $bad, good canary $good."
exit 1
