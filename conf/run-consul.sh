#!/bin/sh
# `make run-consul`: the Consul API double on 127.0.0.1:8500 and nginx
# in Consul mode, both in the foreground.  Ctrl-C stops both.

set -e

nginx=$1
top=$2
python=${3:-/usr/bin/python3}
run=$top/build/demo-consul
consul=http://127.0.0.1:8500

mkdir -p "$run/logs" "$run/snapshot"
# the watcher (a worker, not root) writes the snapshot there
chmod 777 "$run/snapshot"
sed -e "s|@TOP@|$top|g" -e "s|@RUN@|$run|g" "$top/conf/demo-consul.conf" \
    > "$run/nginx.conf"

"$nginx" -q -t -p "$run" -c "$run/nginx.conf"

"$python" "$top/tests/doubles/consul_double.py" --host 127.0.0.1 \
    --port 8500 &
double=$!
nginx_pid=

stop() {
    trap - INT TERM EXIT
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
    kill "$double" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap stop INT TERM EXIT

i=0
until curl -sf "$consul/v1/status/leader" >/dev/null; do
    i=$((i + 1))
    [ $i -gt 100 ] && { echo "the Consul double did not start" >&2; exit 1; }
    sleep 0.05
done

register() {
    curl -sf -X PUT "$consul/v1/agent/service/register" -d "{\"Name\":
        \"demo.shop.api\", \"ID\": \"$1\", \"Address\": \"127.0.0.1\",
        \"Port\": $2, \"Weights\": {\"Passing\": $3, \"Warning\": 1},
        \"Meta\": {\"version\": \"v1\"},
        \"Check\": {\"TTL\": \"30s\", \"Status\": \"passing\"}}"
}

register api-1 8081 5
register api-2 8082 3

cat <<MSG

TCE front door, Consul mode, on http://127.0.0.1:8080 (Ctrl-C stops it)
Consul API double on $consul; service demo.shop.api: api-1 (weight 5),
api-2 (weight 3); snapshot: $run/snapshot/consul.json

Try:
  for i in \$(seq 16); do curl -s http://127.0.0.1:8080/; done | sort | uniq -c
  # add an instance: routing follows within milliseconds, no reload
  curl -X PUT $consul/v1/agent/service/register -d '{"Name":
    "demo.shop.api", "ID": "api-3", "Address": "127.0.0.1", "Port": 8083}'
  # fail its check, then deregister it
  curl -X PUT $consul/v1/agent/check/fail/service:api-1
  curl -X PUT $consul/v1/agent/service/deregister/api-3
  # a Consul fault: the last known good set keeps being served
  curl -X POST $consul/_double/fault -d '{"kind": "status", "count": -1}'
  curl -X POST $consul/_double/clear
  curl -s http://127.0.0.1:8080/tce/status     # discovery status per service

MSG

"$nginx" -p "$run" -c "$run/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
wait "$nginx_pid"
