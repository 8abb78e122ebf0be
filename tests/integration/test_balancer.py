"""
The balancer as a user sees it: real nginx with the module in front of a
real backend nginx.  Routing is read from what the clients get and from
the access logs of both sides ($pid, $upstream_addr, the $tce_*
variables; $connection_requests at the backend).
"""

import collections
import json
import os
import re
import sys
import threading
import time

import pytest

from conftest import (SERVICE, DEFAULT_UPSTREAM, SLOW, file_size, instance,
                      read_from, wait_for)


def start(nginx, services, upstreams=DEFAULT_UPSTREAM, location='',
          **kw):
    nginx.write_state(services)
    nginx.configure(upstreams=upstreams, location=location, **kw)
    nginx.start()


def upstream(params='', extra=''):
    return ('    upstream api {\n        tce_service %s%s;\n%s    }\n'
            % (SERVICE, (' ' + params) if params else '', extra))


def fetch(nginx, prefix, n, headers=None):
    return [nginx.get('%s/%d' % (prefix, i), headers=headers)
            for i in range(n)]


def per_worker(entries):
    """{pid: [address of the instance that answered, in order]}"""
    seqs = collections.defaultdict(list)
    for e in entries:
        seqs[e['pid']].append(e['addrs'][-1] if e['addrs'] else None)
    return seqs


def max_run(seq):
    """Longest run of one value in seq read as a cycle."""
    best = 0
    doubled = seq + seq
    run = 0
    prev = object()
    for v in doubled:
        run = run + 1 if v == prev else 1
        prev = v
        best = max(best, min(run, len(seq)))
    return best


def error_line_naming(nginx, since, service, cluster):
    word = re.compile(r'(?<![\w.-])%s(?![\w.-])' % re.escape(cluster))
    return nginx.wait_error_line(
        lambda l: (service in nginx.masked(l)
                   and word.search(nginx.masked(l))), since,
        what='an error log line naming %s and cluster %s'
        % (service, cluster))


# ------------------------------------------------------------ weights

def test_distribution_by_weight_exact_per_worker(backend, nginx):
    ports = backend.ok4[:3]
    weights = dict(zip((backend.addr(p) for p in ports), (5, 3, 2)))
    total = sum(weights.values())
    start(nginx, {SERVICE: {'default': [
        instance('api-%d' % i, a, weight=w)
        for i, (a, w) in enumerate(weights.items())]}})

    n = 1000
    rs = fetch(nginx, '/dist', n)
    assert [r.status for r in rs] == [200] * n

    # what the clients got: each instance within 3% of its share
    got = collections.Counter(int(r.body) for r in rs)
    for p, (a, w) in zip(ports, weights.items()):
        share = n * w / total
        assert abs(got[p] - share) <= 0.03 * n, (a, got[p], share, got)
    assert set(got) == set(ports), got

    entries = nginx.wait_entries('/dist/', n)
    assert all(len(e['addrs']) == 1 for e in entries), \
        [e for e in entries if len(e['addrs']) != 1][:5]
    seqs = per_worker(entries)
    assert len(seqs) == 2, 'expected both workers to serve: %s' % {
        p: len(s) for p, s in seqs.items()}

    for pid, seq in seqs.items():
        assert len(seq) >= 5 * total, (pid, len(seq))
        # every full cycle from the worker's first pick: exact weights
        for k in range(len(seq) // total):
            window = seq[k * total:(k + 1) * total]
            assert collections.Counter(window) == weights, (
                'worker %d cycle %d: %s' % (pid, k, window))
        # smooth: the weight-5 instance is spread over the cycle, never
        # picked more than twice in a row (a blocky WRR gives 5)
        cycle = seq[:total]
        assert max_run(cycle) <= 2, ('not smooth', pid, cycle)


def first_cycles(nginx, prefix, n, since, weights):
    """n requests; checks exact cycles per worker; returns each
    worker's first cycle."""
    total = sum(weights.values())
    assert all(r.status == 200 for r in fetch(nginx, prefix, n))
    entries = wait_for(
        lambda: (lambda es: len(es) >= n and es)(
            [e for e in nginx.access_entries(since)
             if e['uri'].startswith(prefix + '/')]),
        what='%d access log entries' % n)
    seqs = per_worker(entries)
    assert len(seqs) == nginx.nworkers, {p: len(s) for p, s in seqs.items()}
    for pid, seq in seqs.items():
        assert len(seq) >= total, (pid, len(seq))
        for k in range(len(seq) // total):
            assert collections.Counter(seq[total * k:total * (k + 1)]) \
                == weights, (pid, k, seq[total * k:total * (k + 1)])
    return {pid: tuple(seq[:total]) for pid, seq in seqs.items()}


def test_each_worker_starts_at_a_different_position(backend, nginx):
    # 8 workers on a cycle of 10 (weights 5,3,2: no shorter period, so
    # different start positions give different first cycles).  Random
    # start positions would pass with a probability under 2%.
    ports = backend.ok4[:3]
    weights = dict(zip((backend.addr(p) for p in ports), (5, 3, 2)))
    start(nginx, {SERVICE: {'default': [
        instance('api-%d' % i, a, weight=w)
        for i, (a, w) in enumerate(weights.items())]}}, workers=8)
    for phase in ('start', 'reload'):
        if phase == 'reload':
            nginx.reload()
        starts = first_cycles(nginx, '/' + phase, 400,
                              file_size(nginx.access_log), weights)
        same = collections.defaultdict(list)
        for pid, cycle in starts.items():
            same[cycle].append(pid)
        clash = {c: p for c, p in same.items() if len(p) > 1}
        assert not clash, (
            'after %s, workers start at the same position: %d distinct '
            'first cycles for %d workers; %s' % (
                phase, len(same), len(starts),
                ['pids %s: %s' % (p, [a.rsplit(':', 1)[1] for a in c])
                 for c, p in clash.items()]))


def test_override_weight_replaces_weight(backend, nginx):
    a1, a2 = backend.addr(backend.ok4[0]), backend.addr(backend.ok4[1])
    start(nginx, {SERVICE: {'default': [
        instance('api-1', a1, weight=1),
        instance('api-2', a2, weight=1,
                 override={'weight': 3, 'drain': False, 'down': False})]}})
    n = 200
    assert all(r.status == 200 for r in fetch(nginx, '/ow', n))
    for pid, seq in per_worker(nginx.wait_entries('/ow/', n)).items():
        for k in range(len(seq) // 4):
            assert collections.Counter(seq[4 * k:4 * k + 4]) == \
                {a1: 1, a2: 3}, (pid, k, seq[4 * k:4 * k + 4])


def test_only_routable_prod_instances_get_requests(backend, nginx):
    up = backend.addr(backend.ok4[0])
    others = {
        'draining': instance('api-drain', backend.addr(backend.ok4[1]),
                             weight=10, state='draining'),
        'down': instance('api-down', backend.addr(backend.ok4[2]),
                         weight=10, state='down'),
        'override drain': instance(
            'api-odrain', backend.addr(backend.ok4[3]), weight=10,
            override={'drain': True}),
        'override down': instance(
            'api-odown', backend.addr(backend.ok6[0], v6=True), weight=10,
            override={'down': True}),
        'canary env': instance('api-canary',
                               backend.addr(backend.ok6[1], v6=True),
                               weight=10, env='canary'),
    }
    start(nginx, {SERVICE: {
        'default': [instance('api-up', up, weight=1)] + list(others.values()),
        'blue': [instance('api-blue', backend.addr(backend.p500))]}})

    n = 40
    rs = fetch(nginx, '/route', n)
    assert [r.status for r in rs] == [200] * n
    entries = nginx.wait_entries('/route/', n)
    wrong = collections.Counter(a for e in entries for a in e['addrs']
                                if a != up)
    names = {i['address']: k for k, i in others.items()}
    names[backend.addr(backend.p500)] = 'other cluster'
    assert not wrong, 'non-routable instances got requests: %s' % {
        names.get(a, a): c for a, c in wrong.items()}


def test_ipv6_instances(backend, nginx):
    v6 = backend.addr(backend.ok6[0], v6=True)
    v4 = backend.addr(backend.ok4[0])
    start(nginx, {SERVICE: {'default': [instance('api-6', v6),
                                        instance('api-4', v4)]}})
    n = 20
    rs = fetch(nginx, '/v6', n)
    assert [r.status for r in rs] == [200] * n
    got = collections.Counter(int(r.body) for r in rs)
    assert got[backend.ok6[0]] >= n // 2 - 2, got
    assert got[backend.ok4[0]] >= n // 2 - 2, got
    entries = nginx.wait_entries('/v6/', n)
    assert {e['addrs'][-1] for e in entries} == {v6, v4}
    v6_entries = [e for e in entries if e['addrs'] == [v6]]
    assert v6_entries and all(e['tce_instance'] == 'api-6'
                              for e in v6_entries)
    st = nginx.status()
    addrs = {i['id']: i['address']
             for i in st['services'][SERVICE]['instances']}
    assert addrs == {'api-6': v6, 'api-4': v4}


# ------------------------------------------------------ retries, health

def test_retry_never_repeats_an_instance(backend, nginx):
    ok = backend.addr(backend.ok4[0])
    failing = [backend.addr(backend.dead), backend.addr(backend.p502),
               backend.addr(backend.p500)]
    # max_fails=0: failures are not counted, every request meets them
    start(nginx, {SERVICE: {'default': [
        instance('api-%d' % i, a) for i, a in enumerate(failing + [ok])]}},
        upstreams=upstream('max_fails=0'),
        location='            proxy_next_upstream error http_502 '
                 'http_500;\n')

    n = 40
    rs = fetch(nginx, '/retry', n)
    assert [r.status for r in rs] == [200] * n, rs
    assert {int(r.body) for r in rs} == {backend.ok4[0]}
    entries = nginx.wait_entries('/retry/', n)
    for e in entries:
        assert len(e['addrs']) == len(set(e['addrs'])), (
            'instance repeated within one request', e['upstream_addr'])
        assert e['addrs'][-1] == ok, e['upstream_addr']
    tried = collections.Counter(a for e in entries for a in e['addrs'])
    for a in failing:
        assert tried[a] > 0, ('failing instance never tried', a, tried)


def test_retry_gives_up_after_every_instance_once(backend, nginx):
    failing = [backend.addr(backend.dead), backend.addr(backend.p502),
               backend.addr(backend.p500)]
    start(nginx, {SERVICE: {'default': [
        instance('api-%d' % i, a) for i, a in enumerate(failing)]}},
        upstreams=upstream('max_fails=0'),
        location='            proxy_next_upstream error http_502 '
                 'http_500;\n')
    n = 12
    rs = fetch(nginx, '/giveup', n)
    assert all(r.status in (500, 502) for r in rs), rs
    for e in nginx.wait_entries('/giveup/', n):
        assert sorted(e['addrs']) == sorted(failing), (
            'expected each instance tried exactly once', e['upstream_addr'])


def test_retry_on_timeout(backend, nginx):
    hung = backend.addr(backend.hung)
    ok = backend.addr(backend.ok4[1])
    start(nginx, {SERVICE: {'default': [instance('api-hung', hung),
                                        instance('api-ok', ok)]}},
          upstreams=upstream('max_fails=1 fail_timeout=30s'),
          # the healthy instance must answer within it: scaled like
          # every limit of the suite (nginx under valgrind is slow)
          location='            proxy_next_upstream error timeout;\n'
                   '            proxy_read_timeout %dms;\n' % (300 * SLOW))
    n = 12
    rs = fetch(nginx, '/slow', n)
    assert [r.status for r in rs] == [200] * n
    entries = nginx.wait_entries('/slow/', n)
    for e in entries:
        assert len(e['addrs']) == len(set(e['addrs'])), e['upstream_addr']
        assert e['addrs'][-1] == ok
    hung_by_worker = collections.Counter(
        e['pid'] for e in entries if hung in e['addrs'])
    assert hung_by_worker, 'the hung instance was never tried'
    assert all(c == 1 for c in hung_by_worker.values()), hung_by_worker


@pytest.mark.parametrize('max_fails', [1, 3])
def test_passive_health_per_worker(backend, nginx, max_fails):
    dead = backend.addr(backend.dead)
    ok = backend.addr(backend.ok4[0])
    start(nginx, {SERVICE: {'default': [instance('api-dead', dead),
                                        instance('api-ok', ok)]}},
          upstreams=upstream('max_fails=%d fail_timeout=30s' % max_fails),
          location='            proxy_next_upstream error;\n')
    n = 60
    rs = fetch(nginx, '/health', n)
    assert [r.status for r in rs] == [200] * n
    entries = nginx.wait_entries('/health/', n)
    served = collections.Counter(e['pid'] for e in entries)
    dead_tries = collections.Counter(e['pid'] for e in entries
                                     for a in e['addrs'] if a == dead)
    busy = [pid for pid, c in served.items() if c >= 20]
    assert busy, 'no worker served 20 requests: %s' % served
    for pid in busy:
        # tried until max_fails failures, then left alone for 30s
        assert dead_tries[pid] == max_fails, (
            'worker %d tried the dead instance %d times (max_fails=%d)'
            % (pid, dead_tries[pid], max_fails))
    for pid in served:
        assert dead_tries[pid] <= max_fails, (pid, dead_tries)


def test_passive_health_window_expires(backend, nginx):
    dead = backend.addr(backend.dead)
    ok = backend.addr(backend.ok4[0])
    start(nginx, {SERVICE: {'default': [instance('api-dead', dead),
                                        instance('api-ok', ok)]}},
          upstreams=upstream('max_fails=1 fail_timeout=1s'),
          location='            proxy_next_upstream error;\n')
    times = {}                          # uri -> (sent, answered)
    i = [0]

    def dead_tried_again():
        uri = '/window/%d' % i[0]
        i[0] += 1
        t0 = time.monotonic()
        r = nginx.get(uri)
        times[uri] = (t0, time.monotonic())
        assert r.status == 200, r
        tries = collections.defaultdict(list)
        for e in nginx.access_entries():
            if dead in e['addrs'] and e['uri'] in times:
                tries[e['pid']].append(times[e['uri']])
        return any(len(t) >= 2 for t in tries.values()) and tries

    tries = wait_for(dead_tried_again, 8, interval=0.02,
                     what='the dead instance to be tried again after '
                          'fail_timeout=1s')
    for pid, t in tries.items():
        for (s0, e0), (s1, e1) in zip(t, t[1:]):
            # the next try by this worker starts >= 1s after the failure
            assert e1 - s0 >= 0.95, (
                'worker %d tried the dead instance again after %.2fs'
                % (pid, e1 - s0))


# ------------------------------------------------------------- 503

NO_INSTANCE_CASES = {
    'service absent': ({'demo.web.other': {'default': [
        instance('o-1', '127.0.0.1:{ok}')]}}, 'default'),
    'cluster absent': ({SERVICE: {'default': [
        instance('a-1', '127.0.0.1:{ok}')]}}, 'blue'),
    'all down': ({SERVICE: {'default': [
        instance('a-1', '127.0.0.1:{ok}', state='down'),
        instance('a-2', '127.0.0.1:{ok2}', state='down')]}}, 'default'),
    'all draining': ({SERVICE: {'default': [
        instance('a-1', '127.0.0.1:{ok}', state='draining'),
        instance('a-2', '127.0.0.1:{ok2}', state='draining')]}}, 'default'),
    'override down and drain': ({SERVICE: {'default': [
        instance('a-1', '127.0.0.1:{ok}', override={'down': True}),
        instance('a-2', '127.0.0.1:{ok2}', override={'drain': True})]}},
        'default'),
    'canary only': ({SERVICE: {'default': [
        instance('a-1', '127.0.0.1:{ok}', env='canary')]}}, 'default'),
    'missing state file': (None, 'default'),
}


@pytest.mark.parametrize('case', list(NO_INSTANCE_CASES))
def test_no_usable_instance_503(backend, nginx, case):
    services, cluster = NO_INSTANCE_CASES[case]
    if services is None:
        nginx.configure(upstreams=upstream())
    else:
        text = json.dumps(services).replace(
            '{ok}', str(backend.ok4[0])).replace('{ok2}',
                                                 str(backend.ok4[1]))
        nginx.write_state(json.loads(text))
        nginx.configure(upstreams=upstream(
            '' if cluster == 'default' else 'cluster=' + cluster))
    nginx.start()
    since = file_size(nginx.error_log)
    rs = fetch(nginx, '/none', 4)
    assert [r.status for r in rs] == [503] * 4, rs
    error_line_naming(nginx, since, SERVICE, cluster)
    assert not backend.entries(), 'a backend got a request'


def test_missing_state_file_is_empty_registry(nginx):
    nginx.configure()
    rc, out = nginx.check()
    assert rc == 0, out
    nginx.start()
    # services the config names may be listed, but with no instance
    st = nginx.status()
    assert set(st['services']) <= {SERVICE}, st
    assert all(s['instances'] == [] for s in st['services'].values()), st
    assert nginx.get('/x').status == 503


# ------------------------------------------------------------ keepalive

@pytest.mark.parametrize('keepalive', [True, False],
                         ids=['keepalive', 'no-keepalive'])
def test_keepalive_to_backends(backend, nginx, keepalive):
    a = [backend.addr(backend.ok4[0]), backend.addr(backend.ok4[1])]
    start(nginx, {SERVICE: {'default': [
        instance('api-%d' % i, x) for i, x in enumerate(a)]}},
        upstreams=upstream('', '        keepalive 8;\n' if keepalive
                           else ''))
    n = 40
    assert all(r.status == 200 for r in fetch(nginx, '/ka', n))
    got = wait_for(lambda: (lambda es: len(es) >= n and es)(
        [e for e in backend.entries() if e['uri'].startswith('/ka/')]),
        what='%d backend log entries' % n)
    assert {e['port'] for e in got} == set(backend.ok4[:2])
    conns = {(e['port'], e['connection']) for e in got}
    if keepalive:
        # 2 workers x 2 instances, sequential requests: <= 4 connections
        assert len(conns) <= 4, conns
        assert max(e['connection_requests'] for e in got) > 1
    else:
        assert all(e['connection_requests'] == 1 for e in got)
        assert len(conns) == n


# ------------------------------------------------------------ variables

def test_variables_in_access_log(backend, nginx):
    blue = {backend.addr(backend.ok4[0]): 'api-blue-1',
            backend.addr(backend.ok4[1]): 'api-blue-2'}
    start(nginx, {SERVICE: {
        'blue': [instance(i, a, version='v7') for a, i in blue.items()],
        'default': [instance('api-def', backend.addr(backend.ok4[2]))]}},
        upstreams=upstream('cluster=blue'))
    n = 6
    assert all(r.status == 200 for r in fetch(nginx, '/vars', n))
    for e in nginx.wait_entries('/vars/', n):
        assert e['tce_service'] == SERVICE, e
        assert e['tce_cluster'] == 'blue', e
        assert e['tce_env'] == 'prod', e
        assert e['tce_instance'] == blue[e['addrs'][-1]], e


def test_cluster_from_variable(backend, nginx):
    d, b = backend.addr(backend.ok4[0]), backend.addr(backend.ok4[1])
    start(nginx, {SERVICE: {'default': [instance('api-d', d)],
                            'blue': [instance('api-b', b)]}},
          http_extra='    map $http_x_cluster $api_cluster {\n'
                     '        default default;\n'
                     '        blue    blue;\n    }\n',
          upstreams=upstream('cluster=$api_cluster'))
    for i in range(6):
        hdr = {'X-Cluster': 'blue'} if i % 2 else {}
        r = nginx.get('/cv/%d' % i, headers=hdr)
        assert r.status == 200, r
        assert int(r.body) == backend.ok4[i % 2], (i, r)
    for e in nginx.wait_entries('/cv/', 6):
        i = int(e['uri'].rsplit('/', 1)[1])
        assert e['tce_cluster'] == ('blue' if i % 2 else 'default'), e
        assert e['tce_instance'] == ('api-b' if i % 2 else 'api-d'), e


# ------------------------------------------------------------- status

def test_status_json(backend, nginx):
    t0 = int(time.time())
    insts = [
        instance('api-1', backend.addr(backend.ok4[0]), weight=5, env='prod',
                 version='v1', state='up'),
        instance('api-2', backend.addr(backend.ok6[0], v6=True)),
        instance('api-3', backend.addr(backend.ok4[1]), weight=7,
                 env='canary', version='v2', state='draining'),
    ]
    start(nginx, {SERVICE: {'default': insts[:2], 'blue': insts[2:]},
                  'demo.web.other': {'default': [
                      instance('o-1', backend.addr(backend.ok4[2]))]}})
    st = nginx.status()
    zone = st['zone']
    assert zone['name'] == 'tce'
    assert zone['size'] == 1024 * 1024
    assert t0 - 1 <= zone['created'] <= time.time() + 1, zone
    assert set(st['services']) == {SERVICE, 'demo.web.other'}
    svc = st['services'][SERVICE]
    assert isinstance(svc['generation'], int) and svc['generation'] >= 1
    got = {i['id']: i for i in svc['instances']}
    assert set(got) == {'api-1', 'api-2', 'api-3'}
    for i in got.values():
        assert set(i) >= {'id', 'cluster', 'env', 'address', 'weight',
                          'state', 'version'}, i
    assert {k: got['api-1'][k] for k in ('cluster', 'env', 'address',
                                         'weight', 'state', 'version')} \
        == {'cluster': 'default', 'env': 'prod', 'weight': 5, 'state': 'up',
            'address': insts[0]['address'], 'version': 'v1'}
    # defaults: weight 1, env prod, state up
    assert {k: got['api-2'][k] for k in ('cluster', 'env', 'address',
                                         'weight', 'state')} \
        == {'cluster': 'default', 'env': 'prod', 'weight': 1, 'state': 'up',
            'address': insts[1]['address']}
    assert {k: got['api-3'][k] for k in ('cluster', 'env', 'weight',
                                         'state', 'version')} \
        == {'cluster': 'blue', 'env': 'canary', 'weight': 7,
            'state': 'draining', 'version': 'v2'}


# ------------------------------------------------------------- reload

def two_services(backend, api_port, weight=1):
    return {SERVICE: {'default': [
                instance('api-1', backend.addr(api_port), weight=weight)]},
            'demo.web.other': {'default': [
                instance('o-1', backend.addr(backend.ok4[3]))]}}


def test_reload_keeps_serving(backend, nginx):
    start(nginx, {SERVICE: {'default': [
        instance('api-%d' % i, backend.addr(p))
        for i, p in enumerate(backend.ok4[:3])]}})
    stop = threading.Event()
    results = []

    def client():
        i = 0
        while not stop.is_set():
            try:
                r = nginx.get('/loop/%d' % i, timeout=5)
                results.append((r.status, r.body))
            except Exception as e:      # any client error is a failure
                results.append(('error', repr(e)))
            i += 1

    t = threading.Thread(target=client)
    t.start()
    try:
        for k in range(3):
            before = len(results)
            wait_for(lambda: len(results) >= before + 20,
                     what='client requests before reload %d' % k)
            nginx.reload()
        before = len(results)
        wait_for(lambda: len(results) >= before + 20,
                 what='client requests after the last reload')
    finally:
        stop.set()
        t.join(10 * SLOW)
    bad = [r for r in results if r[0] != 200
           or int(r[1]) not in backend.ok4[:3]]
    assert not bad, ('%d of %d requests failed during reloads: %s'
                     % (len(bad), len(results), bad[:5]))


def test_reload_keeps_zone_and_unchanged_generations(backend, nginx):
    start(nginx, two_services(backend, backend.ok4[0]))
    st0 = nginx.status()
    gen0 = {s: v['generation'] for s, v in st0['services'].items()}

    nginx.reload()                      # same state file
    st1 = nginx.status()
    assert st1['zone'] == st0['zone']
    assert {s: v['generation'] for s, v in st1['services'].items()} == gen0

    nginx.write_state(two_services(backend, backend.ok4[0], weight=4))
    nginx.reload()                      # one service changed
    st2 = nginx.status()
    assert st2['zone'] == st0['zone'], 'zone recreated on reload'
    assert st2['services']['demo.web.other']['generation'] == \
        gen0['demo.web.other'], 'unchanged service got a new generation'
    assert st2['services'][SERVICE]['generation'] > gen0[SERVICE], \
        'changed service kept its generation'
    assert st2['services'][SERVICE]['instances'][0]['weight'] == 4


def test_zone_size_change_gives_new_zone(backend, nginx):
    services = two_services(backend, backend.ok4[0])
    start(nginx, services)
    z0 = nginx.status()['zone']
    # the new zone must be created in a later second than the old one
    wait_for(lambda: int(time.time()) > z0['created'], 3,
             what='the clock to pass zone.created')
    nginx.configure(zone='tce_zone tce 2m;')
    nginx.reload()
    st = nginx.status()
    assert st['zone']['name'] == 'tce'
    assert st['zone']['size'] == 2 * 1024 * 1024
    assert st['zone']['created'] > z0['created'], (z0, st['zone'])
    assert set(st['services']) == set(services)
    r = nginx.get('/after')
    assert r.status == 200 and int(r.body) == backend.ok4[0]


def test_state_change_and_reload_changes_routing(backend, nginx):
    start(nginx, two_services(backend, backend.ok4[0]))
    assert {int(r.body) for r in fetch(nginx, '/before', 6)} == \
        {backend.ok4[0]}
    nginx.write_state(two_services(backend, backend.ok4[1]))
    nginx.reload()
    rs = fetch(nginx, '/after', 10)
    assert [r.status for r in rs] == [200] * 10
    assert {int(r.body) for r in rs} == {backend.ok4[1]}


def test_reload_with_bad_state_file_changes_nothing(backend, nginx):
    start(nginx, two_services(backend, backend.ok4[0]))
    st0 = nginx.status()
    nginx.write_state(raw='{"version": 1, "services": {\n')
    log = nginx.masked(nginx.reload_refused())
    assert '<state-file>' in log, log
    rs = fetch(nginx, '/still', 6)
    assert [r.status for r in rs] == [200] * 6
    assert {int(r.body) for r in rs} == {backend.ok4[0]}
    assert nginx.status() == st0


def test_bad_state_file_nginx_t_names_file_line_column(nginx):
    lines = ['{"version": 1,',
             ' "services": {',
             '  "demo.web.api": {"clusters": {"default": {"instances": '
             '[{"id": "a", "address": "127.0.0.1:1",}]}}}}}']
    col = lines[2].index(',}') + 2          # 1-based column of the '}'
    nginx.write_state(raw='\n'.join(lines) + '\n')
    nginx.configure()
    rc, out = nginx.check()
    assert rc != 0, out
    out = nginx.masked(out)
    line = [l for l in out.splitlines() if '<state-file>' in l]
    assert line, 'the state file path is not named:\n' + out
    text = line[0]
    m = (re.search(r'line\D{0,3}(\d+)\D{1,16}col(?:umn)?\D{0,3}(\d+)', text)
         or re.search(r'<state-file>:(\d+):(\d+)', text))
    assert m, 'no line/column in: ' + text
    assert int(m.group(1)) == 3, text
    assert col - 1 <= int(m.group(2)) <= col + 1, (col, text)
    # the reason, from the parser
    assert re.search(r'expected|unexpected|invalid', text, re.I), text


def test_inflight_requests_survive_reload_removing_their_instance(
        backend, nginx):
    hung = backend.addr(backend.hung)
    ok = backend.addr(backend.ok4[0])
    new_ok = backend.addr(backend.ok4[1])
    # the hung instance takes almost every first pick; its requests wait
    # for proxy_read_timeout, then retry on another instance
    start(nginx, {SERVICE: {'default': [
        instance('api-hung', hung, weight=1000),
        instance('api-ok', ok, weight=1)]}},
        upstreams=upstream('max_fails=0'),
        # long enough for the requests to be in flight at the reload
        location='            proxy_next_upstream error timeout;\n'
                 '            proxy_read_timeout %dms;\n' % (1500 * SLOW))
    k = 6
    results = [None] * k

    def client(j):
        try:
            r = nginx.get('/inflight/%d' % j, timeout=15)
            results[j] = (r.status, int(r.body) if r.status == 200 else r)
        except Exception as e:
            results[j] = ('error', repr(e))

    threads = [threading.Thread(target=client, args=(j,)) for j in range(k)]
    for t in threads:
        t.start()
    wait_for(lambda: backend.hung_requests
             + sum(r is not None for r in results) >= k,
             what='requests in flight on the hung instance')
    assert backend.hung_requests >= k - 1

    # the reload removes both instances the requests are using
    nginx.write_state({SERVICE: {'default': [instance('api-new', new_ok)]}})
    nginx.reload(timeout=15)
    for t in threads:
        t.join(15 * SLOW)
    assert all(r is not None and r[0] == 200 for r in results), results
    assert {r[1] for r in results} <= {backend.ok4[0], backend.ok4[1]}
    for e in nginx.wait_entries('/inflight/', k):
        assert len(e['addrs']) == len(set(e['addrs'])), e['upstream_addr']
    # new requests go to the new instance only
    assert {int(r.body) for r in fetch(nginx, '/new', 6)} == \
        {backend.ok4[1]}


# ------------------------------------ names from requests in the error log

# cluster=$var and tce_service $var take names from the request: the
# error log gets them escaped (printable ASCII, \xHH) and cut, on a
# bounded number of lines (5 per 10 s per upstream and worker).  (No
# regex map here: nginx 1.22 leaks a PCRE2 context at exit, which
# memcheck would report.)

def error_lines(nginx, since, word):
    return [l for l in read_from(nginx.error_log, since).splitlines()
            if word in l]


def test_request_cluster_name_escaped(backend, nginx):
    start(nginx, {SERVICE: {'default': [
        instance('api-1', backend.addr(backend.ok4[0]))]}},
          upstreams=upstream('cluster=$uri'))
    since = file_size(nginx.error_log)
    # $uri is decoded: a newline, an escape sequence, a byte > 0x7e
    r = nginx.get('/x%0A2026/12/01%2000:00:00%20[error]%20FORGED%1B[31m%FF'
                  + 'y' * 300)
    assert r.status == 503, r
    line = nginx.wait_error_line(lambda l: 'FORGED' in l, since,
                                 what='the line naming the cluster')
    assert ('cluster "/x\\x0A2026/12/01 00:00:00 [error] FORGED\\x1B[31m'
            '\\xFF' in line), line
    # cut: 64 bytes of the name at most, then "..."
    name = re.search(r'cluster "(.*?)" env', line).group(1)
    assert name.endswith('y' * 20 + '...'), name
    assert name.count('y') == 64 - len('/x\n2026/12/01 00:00:00 [error] '
                                       'FORGED\x1b[31m\xff'), name
    # one line: the newline did not start a new one
    assert not [l for l in read_from(nginx.error_log, since).splitlines()
                if l.startswith('2026/12/01 00:00:00')]
    assert all(0x20 <= b < 0x7f for b in line.encode('utf-8')), line


def test_request_service_name_escaped_and_resolved(backend, nginx):
    start(nginx, {SERVICE: {'default': [
        instance('api-1', backend.addr(backend.ok4[0]))]}},
          upstreams=('    upstream api {\n        tce_service $http_x_service '
                     'cluster=$http_x_cluster;\n    }\n'))
    since = file_size(nginx.error_log)
    r = nginx.get('/n/1', headers={'X-Service': SERVICE,
                                   'X-Cluster': 'default'})
    assert r.status == 200, r

    # a service not in the registry: its name, escaped, not the variable
    r = nginx.get('/n/2', headers={'X-Service': b'ghost\x1b[2J.web.api'})
    assert r.status == 503, r
    line = nginx.wait_error_line(lambda l: 'ghost' in l, since,
                                 what='the line naming the service')
    assert 'service "ghost\\x1B[2J.web.api"' in line, line
    assert 'upstream "api"' in line and 'not in the registry' in line, line

    # a registered service, a cluster it does not have (with control
    # bytes): the resolved service is named
    r = nginx.get('/n/3', headers={'X-Service': SERVICE,
                                   'X-Cluster': b'b\x01lue\x7f'})
    assert r.status == 503, r
    line = nginx.wait_error_line(lambda l: 'lue' in l, since,
                                 what='the line naming the cluster')
    assert ('service "%s" cluster "b\\x01lue\\x7F"' % SERVICE) in line, line
    assert '$http_x_service' not in read_from(nginx.error_log, since)
    # by URI: two workers write their lines in no set order (a line is
    # written after its answer is sent)
    es = sorted(nginx.wait_entries('/n/', 3), key=lambda e: e['uri'])
    assert [e['tce_service'] for e in es] == [
        SERVICE, 'ghost\\x1B[2J.web.api', SERVICE], es


@pytest.mark.parametrize('what', ['cluster', 'service'])
def test_request_name_misses_rate_limited(backend, nginx, what):
    if what == 'cluster':
        up = upstream('cluster=$uri')
        word = 'no instance available'
    else:
        up = ('    upstream api {\n        tce_service $http_x_service;\n'
              '    }\n')
        word = 'not in the registry'
    start(nginx, {SERVICE: {'default': [
        instance('api-1', backend.addr(backend.ok4[0]))]}}, upstreams=up)
    since = file_size(nginx.error_log)
    t0 = time.monotonic()
    n = 100
    rs = [nginx.get('/miss/%d' % i, headers={'X-Service': 'm%d.web.api' % i})
          for i in range(n)]
    elapsed = time.monotonic() - t0
    assert [r.status for r in rs] == [503] * n, rs
    nginx.wait_entries('/miss/', n)
    lines = error_lines(nginx, since, word)
    # 5 lines per 10 s window, per worker
    bound = 5 * nginx.nworkers * (2 + int(elapsed // 10))
    assert 1 <= len(lines) <= bound, (len(lines), bound, lines)


# ------------------------------------------- metrics of tce_service $var

@pytest.fixture
def consul():
    sys.path.insert(0, os.path.join(os.path.dirname(
        os.path.abspath(__file__)), '..', 'doubles'))
    from consul_double import ConsulDouble
    d = ConsulDouble(jitter=False).start()
    yield d
    d.stop()


def test_metrics_timer_refreshes_services_named_per_request(backend, nginx,
                                                            consul):
    # no reload: the registry changes under a worker that routed to the
    # service through a tce_service $var upstream, and no request comes
    # after; its metrics timer alone allocates the new instance's series
    # and lets the departed one's expire, as for a static upstream
    from test_metrics import METRICS_LOCATION, parse

    def instances():
        m = parse(nginx.get('/metrics').text)
        return {dict(k[1]).get('instance') for k in m
                if k[0].startswith('tce_instance_')}

    def answers():
        rs = [nginx.get('/n/', headers={'X-Service': SERVICE})
              for _ in range(4)]
        return {int(r.text) if r.status == 200 else r.status for r in rs}

    # catalog mode: every service tagged "edge"
    ok = backend.ok4
    consul.register(SERVICE, 'a', '127.0.0.1', ok[0], tags=['edge'])
    consul.register(SERVICE, 'b', '127.0.0.1', ok[1], tags=['edge'])
    nginx.configure(
        upstreams='    upstream api {\n        tce_service $http_x_service;'
                  '\n    }\n',
        http_extra='    tce_consul %s wait=2s;\n'
                                '    tce_consul_services tag=edge;\n'
                                '    tce_metrics_expire 2s;\n' % consul.url,
        server_extra=METRICS_LOCATION, state=False, workers=1)
    nginx.start()
    wait_for(lambda: answers() == {ok[0], ok[1]},
             what='both instances routed')
    names = instances()
    assert len(names) == 2, names

    consul.register(SERVICE, 'c', '127.0.0.1', ok[2], tags=['edge'])
    grown = wait_for(lambda: (lambda n: len(n) == 3 and n)(instances()),
                     what="the new instance's series, with no request")
    (new,) = grown - names

    consul.deregister('b')
    left = wait_for(lambda: (lambda n: len(n) == 2 and n)(instances()),
                    what="the departed instance's series to expire")
    assert new in left and len(left & names) == 1, (names, left)


# ---------------------------------------------- every instance failing

def test_every_instance_failing_gives_nginx_502_no_live_upstreams(
        backend, nginx):
    # each instance fails once (max_fails=1): from then on, for
    # fail_timeout, nginx answers 502 itself and logs "no live upstreams";
    # no backend is asked
    failing = [backend.addr(backend.p500), backend.addr(backend.p502),
               backend.addr(backend.dead)]
    start(nginx, {SERVICE: {'default': [
        instance('api-%d' % i, a) for i, a in enumerate(failing)]}},
        upstreams=upstream('max_fails=1 fail_timeout=60s'),
        location='            proxy_next_upstream error http_502 '
                 'http_500;\n', workers=1)
    first = nginx.get('/fail/0')
    assert first.status in (500, 502), first
    # the first request tried all three: the two that answer log it,
    # each after its answer (a line may land after nginx's own reply)
    asked = wait_for(lambda: len(backend.entries()) == 2 and 2,
                     what='both answering backends asked once')
    since = file_size(nginx.error_log)
    rs = fetch(nginx, '/fail/next', 4)
    for r in rs:
        assert r.status == 502, r
        # nginx's own page, not a backend's "bad gateway <port>"
        assert b'<center>nginx' in r.body and b'bad gateway 1' not in \
            r.body, r
    wait_for(lambda: len(error_lines(nginx, since, 'no live upstreams'))
             >= 4, what='"no live upstreams" for each request')
    assert len(backend.entries()) == asked, 'a backend was asked again'
