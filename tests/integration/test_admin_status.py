"""
GET v1/status as a deploy script uses it after a change: the generation
each worker has applied per service (the pids checked against the
process list), "everywhere" once every worker routes by the change; the
API's write counters.  GET canary without a policy in the zone shows
nginx.conf's tce_canary (what DELETE gives back), per upstream.
"""

from admin_helpers import TOKEN, call, start_admin
from conftest import SERVICE, SLOW, wait_for


CANARY = '/api/v1/services/%s/clusters/default/canary' % SERVICE


def applied(nginx):
    r = call(nginx, 'GET', '/api/v1/status')
    assert r.status == 200, r
    return r.json['applied'][SERVICE]


def test_workers_applied_generation(nginx, backend):
    start_admin(nginx, backend)
    pids = nginx.workers()
    assert len(pids) == 2

    # a worker is listed once it has a view: after its first request or
    # the metrics timer's first tick (tce_admin turns counting on: drains
    # wait for the in-flight gauges)

    def both_listed():
        nginx.get('/')
        a = applied(nginx)
        return {w['pid'] for w in a['workers']} == pids and a['everywhere']
    wait_for(both_listed, 10 * SLOW, what='both workers in v1/status')
    a = applied(nginx)
    assert sorted(w['worker'] for w in a['workers']) == [0, 1]
    assert all(w['generation'] == a['generation'] for w in a['workers'])

    r = call(nginx, 'PUT', CANARY, body={'weight': 50}, token=TOKEN)
    assert r.status == 200, r
    gen = r.json['generation']
    assert applied(nginx)['generation'] == gen

    # a worker applies it at its next request: send some to both
    def live_everywhere():
        for _ in range(4):
            nginx.get('/')
        a = applied(nginx)
        return a['everywhere'] and all(w['generation'] >= gen
                                       for w in a['workers']) \
            and {w['pid'] for w in a['workers']} == pids
    wait_for(live_everywhere, 10 * SLOW, what='the change on both workers')


def test_canary_shows_nginx_conf_values(nginx, backend):
    start_admin(nginx, backend, canary='weight=12.5')
    r = call(nginx, 'GET', CANARY)
    assert r.status == 200, r
    assert r.json['source'] == 'nginx.conf'
    assert r.json['canary']['weight_bp'] == 1250, r.json
    assert r.json['canary']['weight'] == 12.5
    assert r.json['nginx_conf'] == [{'upstream': 'api',
                                     'canary': r.json['canary']}]
    r = call(nginx, 'PUT', CANARY, body={'weight': 1}, token=TOKEN)
    assert r.status == 200, r
    assert r.json['source'] == 'state'
    assert r.json['canary']['weight_bp'] == 100
    # what DELETE would give back stays visible
    assert r.json['nginx_conf'][0]['canary']['weight_bp'] == 1250
    r = call(nginx, 'DELETE', CANARY, token=TOKEN)
    assert r.status == 200, r
    assert r.json['source'] == 'nginx.conf'
    assert r.json['canary']['weight_bp'] == 1250
