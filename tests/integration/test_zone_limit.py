"""
The zone at its limit (README "Reliability", tests/chaos/limits.py for
the figures): a change the tce_zone has no room for is refused whole,
with a clear error, by each path that writes the registry (a reload of
the state file, a Consul answer, an admin API write); what was served
before is still served, exactly; the refusal is counted in
tce_zone_writes_refused_total, and the exposition stays promtool-clean.
"""

import json
import os
import sys

import pytest

from admin_helpers import TOKEN, call, check_error, snapshot, start_admin
from conftest import SERVICE, SLOW, instance, read_from, wait_for
from test_metrics import metrics, promtool_check, scrape, total

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'doubles'))

from consul_double import ConsulDouble  # noqa: E402


UPSTREAMS = ('    map $http_x_service $tce_svc { default $http_x_service; }\n'
             '    upstream api { tce_service $tce_svc; }\n')
METRICS = '        location = /metrics { tce_metrics; }\n'
FULL = 'is full'
NAMES = ['lim.s%d.api' % i for i in range(8)]


@pytest.fixture
def consul():
    d = ConsulDouble(jitter=False).start()
    yield d
    d.stop()


def refused(nginx):
    return total(metrics(nginx), 'tce_zone_writes_refused_total')


def ids(nginx, name):
    svc = nginx.status()['services'].get(name, {})
    return sorted(i['id'] for i in svc.get('instances', ()))


def routes(nginx, name, ports):
    """Every answer of a few requests to name comes from one of ports."""
    for _ in range(6):
        r = nginx.get('/', headers={'X-Service': name})
        assert r.status == 200 and int(r.text) in ports, (name, r)


def test_reload_past_the_zone_refused_whole(backend, nginx):
    # 8 services of 2 instances; the next file gives each 200 (dead
    # addresses): the zone has room for the first few, not for all
    nginx.write_state({n: {'default': [
        instance('a', backend.addr(backend.ok4[0])),
        instance('b', backend.addr(backend.ok4[1]))]} for n in NAMES})
    nginx.configure(upstreams=UPSTREAMS, zone='tce_zone tce 256k;',
                    server_extra=METRICS)
    nginx.start()
    nginx.allowed_log.add(FULL)
    nginx.allowed_log.add('too small for tce_state')
    ports = set(backend.ok4[:2])
    for n in NAMES:
        routes(nginx, n, ports)
    gens = {n: nginx.status()['services'][n]['generation'] for n in NAMES}
    before = refused(nginx)

    nginx.write_state({n: {'default': [
        instance('i%03d' % k, '127.0.0.1:%d' % (20000 + k))
        for k in range(200)]} for n in NAMES})
    log = nginx.reload_refused()
    assert 'tce zone "tce" is too small for tce_state' in log, log

    # nothing of the file applied: every service as it was, routed
    st = nginx.status()['services']
    for n in NAMES:
        assert ids(nginx, n) == ['a', 'b'], n
        assert st[n]['generation'] == gens[n], n
        routes(nginx, n, ports)
    assert refused(nginx) > before
    rc, out = promtool_check(scrape(nginx).text)
    assert (rc, out) == (0, '')


def test_consul_answer_past_the_zone_refused(backend, nginx, consul):
    name = 'lim.consul.api'
    nginx.configure(
        upstreams=UPSTREAMS, state=False, zone='tce_zone tce 128k;',
        server_extra=METRICS,
        http_extra='    tce_consul %s wait=1s;\n'
                   '    tce_consul_services tag=edge;\n' % consul.url)
    nginx.start()
    nginx.allowed_log.add(FULL)
    for i in range(2):
        consul.register(name, 'k%d' % i, '127.0.0.1', backend.ok4[i],
                        tags=['edge'])
    kept = wait_for(lambda: len(ids(nginx, name)) == 2 and ids(nginx, name),
                    10 * SLOW, what='the first set')
    ports = set(backend.ok4[:2])
    routes(nginx, name, ports)
    before = refused(nginx)

    consul.register_many([(name, 'x%03d' % k, '127.0.0.1', 20000 + k,
                           ('edge',)) for k in range(400)])

    def said_full():
        svc = nginx.status()['services'][name]
        return 'full' in svc['discovery']['last_error'] and svc
    svc = wait_for(said_full, 10 * SLOW, what='the zone to refuse the set')
    assert svc['discovery']['last_error'] == 'the tce zone is full'
    assert ids(nginx, name) == kept
    routes(nginx, name, ports)
    assert refused(nginx) > before
    assert ('instances of service "%s" not stored' % name
            in read_from(nginx.error_log))
    rc, out = promtool_check(scrape(nginx).text)
    assert (rc, out) == (0, '')


def test_admin_write_past_the_zone_refused(backend, nginx):
    start_admin(nginx, backend, zone='tce_zone tce 128k;',
                server_extra=METRICS)
    nginx.allowed_log.add(FULL)
    before_snap = snapshot(nginx)
    before = refused(nginx)
    body = {'instances': [{'id': 'n%03d' % k,
                           'address': '127.0.0.1:%d' % (20000 + k)}
                          for k in range(500)]}
    r = call(nginx, 'PUT', '/api/v1/services/%s/clusters/default/envs/prod/'
             'instances' % SERVICE, body, token=TOKEN)
    e = check_error(r, 507, 'zone_full')
    assert 'full' in e['text'], e
    # the service as the API shows it and the state file's bytes
    assert snapshot(nginx) == before_snap
    assert refused(nginx) > before
    ports = {int(nginx.get('/').text) for _ in range(8)}
    assert ports <= set(backend.ok4[:2]), ports
    assert json.loads(before_snap[1])['services'][SERVICE]
