"""
Services leave the zone: catalog mode against the Consul double with a
small tce_zone, services registered and deregistered many times more
than the zone holds.  Each new service is routed (through one
`tce_service $var` upstream), the zone's service count stays bounded,
names the zone had no room for are counted (tce_status and the
metrics), and the services that left are reclaimed.
"""

import os
import signal
import sys

import pytest

from conftest import SLOW, VALGRIND, read_from, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'doubles'))

from consul_double import ConsulDouble  # noqa: E402


ZONE_SERVICES = 24
ZONE_SIZE = "256k"

UPSTREAMS = ('    map $http_x_service $tce_svc { default $http_x_service; }\n'
             '    upstream api { tce_service $tce_svc; }\n')


@pytest.fixture
def consul():
    d = ConsulDouble(jitter=False).start()
    yield d
    d.stop()


def start(nginx, consul, zone_size, extra=''):
    nginx.configure(
        upstreams=UPSTREAMS, state=False, zone='tce_zone tce %s;' % zone_size,
        http_extra='    tce_consul %s wait=1s;\n'
                   '    tce_consul_services tag=edge;\n%s'
                   % (consul.url, extra))
    nginx.start()


def answer(nginx, svc):
    r = nginx.get('/', headers={'X-Service': svc})
    return int(r.text) if r.status == 200 else r.status


def zone_status(nginx):
    return nginx.status()['zone']


def test_churned_catalog_keeps_routing_in_a_small_zone(backend, nginx,
                                                      consul):
    # a zone of 96 KB holds about a dozen services of one instance (a
    # service, its set and its schedule's page); 8 rounds of 6 new
    # services, the previous round's deregistered, go through 48 names
    start(nginx, consul, '96k')
    nginx.allowed_log.add('is full')
    rounds, per_round = (4, 6) if VALGRIND else (8, 6)
    peak = 0
    prev = []
    for r in range(rounds):
        names = ['churn.r%d.s%d' % (r, i) for i in range(per_round)]
        for i, name in enumerate(names):
            consul.register(name, 'i-%d-%d' % (r, i), '127.0.0.1',
                            backend.ok4[i % 4], tags=['edge'])
        for i in range(len(prev)):
            consul.deregister('i-%d-%d' % (r - 1, i))
        for i, name in enumerate(names):
            port = backend.ok4[i % 4]
            wait_for(lambda: answer(nginx, name) == port, 30 * SLOW,
                     what='%s routed (round %d)' % (name, r))
        z = zone_status(nginx)
        peak = max(peak, z['services'])
        prev = names
    # bounded by what the zone can hold, although rounds * per_round
    # names went through it; the departed ones are reclaimed
    assert peak <= 4 * per_round, peak
    # every name but those the zone holds now went through and out
    want = max(1, (rounds - 4) * per_round)
    z = wait_for(lambda: (lambda z: z['services_reclaimed'] >= want and z)(
                     zone_status(nginx)), 20 * SLOW,
                 what='the departed services reclaimed')
    assert z['services_skipped'] >= 1, z
    log = read_from(nginx.error_log)
    assert 'service(s) of the catalog skipped' in log
    assert log.count('service(s) of the catalog skipped') < rounds * 2


def test_reclaimed_counts_in_metrics(backend, nginx, consul):
    from test_metrics import METRICS_LOCATION, parse, promtool_check, total
    nginx.configure(
        upstreams=UPSTREAMS, state=False, zone='tce_zone tce 1m;',
        http_extra='    tce_consul %s wait=1s;\n'
                   '    tce_consul_services tag=edge;\n'
                   '    tce_consul_allow_empty on;\n' % consul.url,
        server_extra=METRICS_LOCATION)
    nginx.start()
    consul.register('gone.soon.api', 'g-1', '127.0.0.1', backend.ok4[0],
                    tags=['edge'])
    wait_for(lambda: answer(nginx, 'gone.soon.api') == backend.ok4[0],
             10 * SLOW, what='gone.soon.api routed')
    consul.deregister('g-1')
    # left the catalog, emptied (allow_empty), unused: reclaimed
    wait_for(lambda: zone_status(nginx)['services_reclaimed'] == 1,
             20 * SLOW, what='the departed service reclaimed')
    assert 'gone.soon.api' not in nginx.status()['services']
    assert answer(nginx, 'gone.soon.api') == 503
    text = nginx.get('/metrics').text
    promtool_check(text)
    s = parse(text)
    assert total(s, 'tce_zone_services_reclaimed_total') == 1
    assert total(s, 'tce_zone_services_skipped_total') == 0
    assert total(s, 'tce_zone_services') == 0
    # registered again: a new entry, routed
    consul.register('gone.soon.api', 'g-2', '127.0.0.1', backend.ok4[1],
                    tags=['edge'])
    wait_for(lambda: answer(nginx, 'gone.soon.api') == backend.ok4[1],
             10 * SLOW, what='gone.soon.api routed again')


def test_killed_workers_hold_given_back(backend, nginx, consul):
    # a worker's tce_service $var entry holds its service; a worker
    # killed by SIGKILL never releases it: the watcher gives its holds
    # back once it is gone, and the service is reclaimed
    nginx.configure(
        upstreams=UPSTREAMS, state=False, zone='tce_zone tce 1m;',
        location='            add_header X-Worker $pid always;\n',
        http_extra='    tce_consul %s wait=1s;\n'
                   '    tce_consul_services tag=edge;\n'
                   '    tce_consul_allow_empty on;\n' % consul.url)
    nginx.start()
    nginx.allowed_log.add('exited on signal 9')
    consul.register('held.then.killed', 'h-1', '127.0.0.1', backend.ok4[0],
                    tags=['edge'])
    wait_for(lambda: answer(nginx, 'held.then.killed') == backend.ok4[0],
             10 * SLOW, what='held.then.killed routed')
    r = nginx.get('/', headers={'X-Service': 'held.then.killed'})
    assert r.status == 200
    pid = int(r.headers['X-Worker'])
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: pid not in nginx.workers() and len(nginx.workers())
             == 2, 10 * SLOW, what='worker %d replaced' % pid)
    consul.deregister('h-1')
    # left the catalog, emptied, held only by the dead worker: reclaimed
    wait_for(lambda: zone_status(nginx)['services_reclaimed'] == 1,
             20 * SLOW, what='the service held by a killed worker reclaimed')
    assert 'held.then.killed' not in nginx.status()['services']
    assert 'given back' in read_from(nginx.error_log)


@pytest.mark.parametrize('how', ['takeover', 'reload'])
def test_service_gone_while_nobody_watched_found_gone(backend, nginx, consul,
                                                     how):
    # catalog mode: a service leaves the catalog while no worker watches
    # (the watcher stopped, then killed; or between the old workers and
    # the new ones of a reload): the next watcher's first catalog answer
    # finds it gone (emptied under tce_consul_allow_empty) instead of
    # serving its deregistered instance for good
    from test_consul import owner_pid
    nginx.configure(
        upstreams=UPSTREAMS, state=False, zone='tce_zone tce 1m;',
        http_extra='    tce_consul %s wait=1s;\n'
                   '    tce_consul_services tag=edge;\n'
                   '    tce_consul_allow_empty on;\n' % consul.url)
    nginx.start()
    nginx.allowed_log.add('exited on signal 9')
    consul.register('gone.while.away', 'g-1', '127.0.0.1', backend.ok4[0],
                    tags=['edge'])
    wait_for(lambda: answer(nginx, 'gone.while.away') == backend.ok4[0],
             10 * SLOW, what='gone.while.away routed')
    pid = owner_pid(nginx)
    os.kill(pid, signal.SIGSTOP)
    try:
        consul.deregister('g-1')
        if how == 'reload':
            # the stopped worker cannot exit: new workers, then the kill
            old = nginx.workers()
            nginx.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: len(nginx.workers() - old) == 2, 10 * SLOW,
                     what='the reload\'s workers')
    finally:
        os.kill(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: owner_pid(nginx) not in (None, pid), 10 * SLOW,
             what='another watcher')
    wait_for(lambda: answer(nginx, 'gone.while.away') == 503, 10 * SLOW,
             what='gone.while.away emptied')
    assert 'gone.while.away" left the catalog' in read_from(nginx.error_log)


def frag_state(nginx, backend, names, big=0):
    from conftest import instance
    services = {}
    for name in names:
        services[name] = {'default': [
            instance('i-%d' % k, '127.0.0.1:%d' % (20000 + k))
            for k in range(10)]}
    if big:
        services['frag.big.api'] = {'default': [
            instance('b-%d' % k, backend.addr(backend.ok4[k % 4]))
            for k in range(big)]}
    nginx.write_state(services)


def free_bytes(nginx):
    from test_metrics import parse, total
    return total(parse(nginx.get('/metrics').text), 'tce_zone_free_bytes')


def test_fragmented_zone_takes_a_set_as_large_as_its_free_space(backend,
                                                                nginx):
    # services of 10 instances each, every other one then removed: the
    # free pages are scattered between those in use.  A set needing
    # about as many pages as are free must still be stored (a set is
    # kept in chunks of a page, never one allocation of many pages)
    from test_metrics import METRICS_LOCATION
    names = ['frag.s%d.api' % i for i in range(ZONE_SERVICES)]
    frag_state(nginx, backend, names)
    nginx.configure(upstreams='    upstream api { tce_service '
                    'frag.big.api; }\n', zone='tce_zone tce %s;' % ZONE_SIZE,
                    http_extra='    tce_state_allow_empty on;\n',
                    server_extra=METRICS_LOCATION)
    nginx.start()
    full = free_bytes(nginx)
    frag_state(nginx, backend, names[::2])
    nginx.reload()
    free = free_bytes(nginx)
    assert free > full + 10 * 4096, (full, free)
    # what the set and its schedule need, in pages, within what is free
    big = int((free - 3 * 4096) // 4096) * 10
    assert big >= 40, free
    frag_state(nginx, backend, names[::2], big=big)
    nginx.reload()
    status = nginx.status()['services']['frag.big.api']
    assert len(status['instances']) == big, status
    assert nginx.get('/').status == 200
