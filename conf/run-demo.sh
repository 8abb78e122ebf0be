#!/bin/sh
# `make run`: nginx in the foreground with the demo configuration.
# Ctrl-C stops it and everything it started (its own workers).

set -e

nginx=$1
top=$2
run=$top/build/demo

mkdir -p "$run/logs"
cp "$top/conf/demo-state.json" "$run/state.json"
# a fresh admin token for each run (the admin API's writes need one)
token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf '%s demo\n' "$token" > "$run/admin.tokens"
# the admin API writes state.json from the workers: started as root,
# nginx runs them as its default user (nobody unless built --user=...),
# who must own the directory
if [ "$(id -u)" = 0 ]; then
    wuser=$("$nginx" -V 2>&1 | sed -n 's/.*--user=\([^ ]*\).*/\1/p')
    chown "${wuser:-nobody}" "$run" "$run/state.json"
fi
sed -e "s|@TOP@|$top|g" -e "s|@RUN@|$run|g" "$top/conf/demo.conf" \
    > "$run/nginx.conf"

"$nginx" -q -t -p "$run" -c "$run/nginx.conf"

cat <<MSG

TCE front door demo on http://127.0.0.1:8080 (Ctrl-C stops it)

  service demo.shop.api, env prod: api-1 (weight 5), api-2 (3),
  api-3 on IPv6 (2), api-4 draining (gets no new requests);
  env canary: api-5 (v2), 20% of users by their uid cookie.
  State file: $run/state.json

Try:
  curl -i http://127.0.0.1:8080/                  # X-TCE-Instance, X-TCE-Env
  for i in \$(seq 20); do curl -s http://127.0.0.1:8080/; done | sort | uniq -c
  for u in \$(seq 10); do curl -s -b uid=\$u http://127.0.0.1:8080/; done
  curl -s -H 'X-Canary: canary' http://127.0.0.1:8080/   # force the canary
  curl -i http://127.0.0.1:8080/missing           # service with no instance: 503
  curl -s http://127.0.0.1:8080/tce/status        # the registry as JSON
  curl -s http://127.0.0.1:8080/metrics           # Prometheus
  curl -s http://127.0.0.1:8080/api/v1/services   # the admin API
  curl -s -X PUT -H 'Authorization: Bearer $token' \\
       -H 'Content-Type: application/json' -d '{"weight": 50}' \\
       http://127.0.0.1:8080/api/v1/services/demo.shop.api/clusters/default/canary
  tail -f $run/logs/access.log                    # \$tce_* variables

Edit $run/state.json, then
  nginx -p $run -c $run/nginx.conf -s reload
and the routing follows, without dropping a request.

Dashboard: http://127.0.0.1:8080/api/dashboard/
A deploy walk-through (bad canary rolled back, good one promoted):
  $top/conf/deploy-demo.sh $run
Admin token of this run (writes need it): $token

MSG

exec "$nginx" -p "$run" -c "$run/nginx.conf" -g 'daemon off;'
