"""
The Consul watcher against agents that behave like real ones: where a
watch resumes after a reload or a takeover, consistency modes, backoff
during an outage, failover, the blocking read timeout with the server's
jitter on.  Consul's side is read from the double's request log
(time, path, index, client port of every /v1/ request), nginx's from
what clients get and /tce/status.  Every wait polls with a deadline.
"""

import http.client
import os
import signal
import sys
import time

import pytest

from conftest import SERVICE, SLOW, read_from, wait_for
from test_consul import (HEALTH, consul, discovery, owner_pid,  # noqa: F401
                         register, routes_to, start)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'doubles'))

from consul_double import ConsulDouble  # noqa: E402


def blocking_open(consul, service=SERVICE, n=1):
    wait_for(lambda: consul.open_requests(service) == n, 5,
             what='%d open blocking query(ies) on %s' % (n, service))


# ------------------------------------------- resume from the zone's index

@pytest.mark.parametrize('how', ['reload', 'takeover'])
def test_watch_resumes_from_zone_index(backend, nginx, consul, how):
    start(nginx, consul, params='wait=60s')
    register(consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])
    blocking_open(consul)
    index = consul.service_index(SERVICE)
    pid = owner_pid(nginx)
    consul.reset_counts()

    if how == 'reload':
        nginx.reload()
    else:
        nginx.allowed_log.add('exited on signal 9')
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: owner_pid(nginx) not in (None, pid), 5,
                 what='another watcher')

    # the new watcher blocks at once with the index the zone holds:
    # no query starts over at index 0 (which answers at once, for every
    # service, and is the load a reload must not cause)
    # (the old watcher's query is still counted open by the double
    # until its wait ends: it never writes to the closed connection)
    wait_for(lambda: consul.requests(HEALTH), 5, what='a new query')
    log = consul.requests(HEALTH)
    assert [r['index'] for r in log] == [index], log

    # and it still follows changes
    register(consul, backend, 2, 1)
    routes_to(nginx, [backend.ok4[0], backend.ok4[1]])
    assert all(r['index'] > 0 for r in consul.requests(HEALTH)), \
        consul.requests(HEALTH)


def test_failing_service_restarts_at_zero_after_reload(backend, nginx,
                                                       consul):
    # a service whose last answer was an error holds no trustworthy
    # index: after a reload its watch asks afresh
    start(nginx, consul, params='wait=1s')
    register(consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])
    consul.add_fault('status', count=-1, path=HEALTH, status=500)
    wait_for(lambda: discovery(nginx)['last_error'], 10,
             what='the error in the status')
    consul.reset_counts()
    nginx.reload()
    wait_for(lambda: consul.requests(HEALTH), 5, what='a new query')
    assert consul.requests(HEALTH)[0]['index'] == 0
    consul.clear_faults()
    register(consul, backend, 2, 1)
    routes_to(nginx, [backend.ok4[0], backend.ok4[1]], timeout=20)


# ------------------------------------------------------------ consistency

@pytest.mark.parametrize('mode', ['default', 'stale', 'consistent'])
def test_consistency_mode(backend, nginx, consul, mode):
    start(nginx, consul, params='wait=1s consistency=%s' % mode)
    register(consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])
    wait_for(lambda: len(consul.requests(HEALTH)) >= 3, 5,
             what='three queries')
    for r in consul.requests('/v1/'):
        assert r['stale'] == (mode == 'stale'), r
        assert r['consistent'] == (mode == 'consistent'), r


def test_consistency_refused_when_unknown(nginx, consul):
    nginx.configure(http_extra='    tce_consul %s consistency=eventual;\n'
                    % consul.url, state=False)
    rc, err = nginx.check()
    assert rc != 0 and 'consistency=eventual' in err, err
    assert 'default, stale or consistent' in err, err


# ---------------------------------------------------- errors and backoff

def test_backoff_during_outage(backend, nginx, consul):
    # 500 answers: each retry waits longer (250 ms doubling, half of it
    # jitter), so the gaps between queries grow and their count stays
    # small; a watcher retrying at once would send dozens
    start(nginx, consul, params='wait=1s')
    register(consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])
    consul.reset_counts()
    consul.add_fault('status', count=-1, path=HEALTH, status=500)
    wait_for(lambda: len(consul.requests(HEALTH)) >= 5, 10,
             what='five queries during the outage')
    log = consul.requests(HEALTH)
    t = [r['t'] for r in log[:5]]
    gaps = [b - a for a, b in zip(t, t[1:])]
    # retry k waits 125..250 ms * 2^k: the 4th gap is at least 1 s
    assert gaps[3] >= 0.9, gaps
    assert gaps[3] >= 2.5 * gaps[0], gaps
    assert gaps[2] >= 0.45 and gaps[1] >= 0.2, gaps
    # no more than the schedule allows within the first 1.8 s
    early = [x for x in t if x - t[0] < 1.8]
    assert len(early) <= 5, gaps
    assert ports_kept(nginx, backend)


def ports_kept(nginx, backend):
    r = nginx.get('/')
    return r.status == 200 and int(r.text) == backend.ok4[0]


def test_failover_on_5xx(backend, nginx):
    # the first agent answers 500 to everything: instances are learned
    # from the second
    first = ConsulDouble(jitter=False).start()
    second = ConsulDouble(jitter=False).start()
    try:
        first.add_fault('status', count=-1, path='/v1/', status=500,
                        body='rpc error: No cluster leader')
        register(first, backend, 9, 3)      # never answered: not routed
        start(nginx, second, urls=[first.url, second.url])
        register(second, backend, 1, 0)
        routes_to(nginx, [backend.ok4[0]])
        register(second, backend, 2, 1)
        routes_to(nginx, [backend.ok4[0], backend.ok4[1]])
        assert first.count(HEALTH) >= 1
    finally:
        first.stop()
        second.stop()


# ------------------------------------------ the blocking read, jitter on

def test_blocking_read_with_server_jitter(backend, nginx):
    # Consul holds a blocking query up to wait + wait/16: the read
    # timeout must allow it, or every watch times out and reconnects
    d = ConsulDouble(jitter=True).start()
    try:
        start(nginx, d, params='wait=1s')
        register(d, backend, 1, 0)
        routes_to(nginx, [backend.ok4[0]])
        d.reset_counts()
        wait_for(lambda: len([r for r in d.requests(HEALTH)
                              if r['index'] > 0]) >= 4, 10,
                 what='four blocking queries answered at the end of wait')
        disc = discovery(nginx)
        assert disc['errors'] == 0 and disc['last_error'] == '', disc
        log = read_from(nginx.error_log)
        assert 'timed out' not in log, log
        # the same connection carried them all: no reconnection
        ports = set(r['port'] for r in d.requests(HEALTH))
        assert len(ports) == 1, ports
    finally:
        d.stop()



# ---------------------------------------------- URLs: failback, secrets

def test_back_to_first_url_once_it_serves(backend, nginx):
    # the first agent fails, the watcher moves to the second; once the
    # first serves again the watcher returns to it (each double holds
    # its own instance here, so where the set comes from is visible)
    first = ConsulDouble(jitter=False).start()
    second = ConsulDouble(jitter=False).start()
    try:
        first.add_fault('status', count=-1, path='/v1/', status=500,
                        body='No cluster leader')
        register(first, backend, 1, 0)
        register(second, backend, 2, 1)
        start(nginx, second, urls=[first.url, second.url])
        routes_to(nginx, [backend.ok4[1]])
        since = os.path.getsize(nginx.error_log)
        first.clear_faults()
        # probed every 5 s, then the blocking query (wait=2s) moves
        routes_to(nginx, [backend.ok4[0]], timeout=15)
        nginx.wait_error_line(lambda l: first.url in l
                              and 'serves again' in l, since)
        # and stays there: the second no longer gets health queries
        second.reset_counts()
        register(first, backend, 3, 2)
        routes_to(nginx, [backend.ok4[0], backend.ok4[2]])
        assert second.count(HEALTH) == 0
    finally:
        first.stop()
        second.stop()


def keepalive_timers(port):
    """Seconds until the keepalive timer of each established connection
    to 127.0.0.1:port fires (None where no keepalive timer runs), from
    /proc/net/tcp (timer 2 = keepalive, in clock ticks of 1/100 s)."""
    out = []
    with open('/proc/net/tcp') as f:
        next(f)
        for line in f:
            fields = line.split()
            rem, st, timer = fields[2], fields[3], fields[5]
            if st != '01' or rem != '0100007F:%04X' % port:
                continue
            kind, when = timer.split(':')
            out.append(int(when, 16) / 100.0 if kind == '02' else None)
    return out


def test_keepalive_detects_dead_agent_early(backend, nginx, consul):
    # a blocking query waits 60 s: TCP keepalive probes the silent
    # connection after 10 s idle (then 3 probes 5 s apart), so a dead
    # agent is detected in about 25 s, not at the read timeout (69 s)
    start(nginx, consul, params='wait=60s')
    register(consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])
    blocking_open(consul)
    # (right after a write the retransmit timer may run until the ACK)
    def probed_soon():
        timers = keepalive_timers(consul.port)
        return timers and all(t is not None and t <= 10.0 for t in timers)
    wait_for(probed_soon, 5, what='a keepalive timer of at most 10 s on '
             'the connection to Consul (curl\'s default: 60 s)')


TOKEN_URLS = [
    # (URL, token sent in clear to another host)
    ('http://192.0.2.10:8500', True),
    ('http://consul.example:8500', True),
    ('http://127.0.0.1:8500', False),
    ('http://127.8.9.10:8500', False),
    ('http://localhost:8500', False),
    ('http://[::1]:8500', False),
    ('https://192.0.2.10:8501', False),
]


@pytest.mark.parametrize('url,clear', TOKEN_URLS,
                         ids=[u[0] for u in TOKEN_URLS])
def test_token_never_sent_in_clear(nginx, url, clear):
    nginx.configure(http_extra='    tce_consul %s token=t0ken;\n' % url,
                    state=False)
    rc, err = nginx.check()
    if clear:
        assert rc != 0 and 'token_over_http=on' in err, err
        assert 'in clear' in err and url in err, err
    else:
        assert rc == 0 and 'in clear' not in err, err

    # explicitly allowed: accepted, with a warning naming the URL
    nginx.configure(http_extra='    tce_consul %s token=t0ken '
                    'token_over_http=on;\n' % url, state=False)
    rc, err = nginx.check()
    assert rc == 0, err
    assert ('[warn]' in err and 'in clear' in err) == clear, err
    assert 't0ken' not in err


def test_url_credentials_never_logged(backend, nginx, consul):
    secret = 'pw-Zq9xK'
    dead = 'http://alice:%s@127.0.0.1:%d' % (secret, backend.dead)
    good = consul.url.replace('http://', 'http://bob:%s@' % secret)
    start(nginx, consul, urls=[dead, good], params='wait=1s')
    register(consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])
    consul.add_fault('status', count=3, path=HEALTH, status=500,
                     body='denied for bob:%s' % secret)
    wait_for(lambda: discovery(nginx)['errors'] >= 3, 10,
             what='failed queries')
    status = nginx.get('/tce/status').text
    log = read_from(nginx.error_log)
    assert 'tce consul' in log and '***@127.0.0.1' in log, log
    assert secret not in log and secret not in status, (log, status)

    # nginx -t: a URL it refuses is printed masked
    nginx.configure(http_extra='    tce_consul %s HTTP://carol:%s@h:1;\n'
                    % (consul.url, secret), state=False)
    rc, err = nginx.check()
    assert rc != 0 and 'HTTP://***@h:1' in err and secret not in err, err


# ------------------------------------- scale: connections stay bounded

# README: "at most 10 connections to Consul per nginx instance"
MAX_CONNS = 10

CATALOG_UPSTREAM = (
    '    map $http_x_service $tce_svc { default $http_x_service; }\n'
    '    upstream api { tce_service $tce_svc; }\n')


def start_catalog(nginx, consul, params='wait=2s', zone='tce_zone tce 1m;'):
    nginx.configure(http_extra='    tce_consul %s %s;\n'
                    '    tce_consul_services tag=edge;\n'
                    % (consul.url, params),
                    upstreams=CATALOG_UPSTREAM, state=False, zone=zone)
    nginx.start()


def answer(conn, svc):
    conn.request('GET', '/', headers={'X-Service': svc})
    r = conn.getresponse()
    body = r.read()
    return int(body) if r.status == 200 else r.status


def test_two_thousand_services_few_connections(backend, nginx):
    # like a real agent: more than MAX_CONNS connections from one
    # address get 429 and are closed
    d = ConsulDouble(jitter=False, max_conns_per_client=MAX_CONNS).start()
    try:
        names = ['scale.svc%04d.api' % i for i in range(2000)]
        d.register_many((n, 'i-%d' % i, '127.0.0.1', backend.ok4[i % 4],
                         ['edge']) for i, n in enumerate(names))
        start_catalog(nginx, d, zone='tce_zone tce 64m;')

        t0 = time.monotonic()

        def synced():
            svcs = nginx.status()['services']
            return sum(1 for n in names
                       if svcs.get(n, {}).get('instances')) == len(names)
        wait_for(synced, 60, interval=0.5, what='2,000 services learned')
        t1 = time.monotonic()

        conn = http.client.HTTPConnection('127.0.0.1', nginx.port,
                                          timeout=10 * SLOW)
        try:
            for i, n in enumerate(names):
                assert answer(conn, n) == backend.ok4[i % 4], n
        finally:
            conn.close()

        t2 = time.monotonic()
        print('2,000 services: learned in %.1f s, all routed in %.1f s'
              % (t1 - t0, t2 - t1))
        st = d.state()
        assert st['refused'] == 0, st
        assert 1 <= d.peak_connections() <= MAX_CONNS, st['peak_conns']
        # one fetch per service, not a blocking query each
        health = d.requests('/v1/health/service/')
        assert len(health) <= 2 * len(names), len(health)
        assert all(r['index'] == 0 for r in health)
    finally:
        d.stop()


def test_change_detection_fetches_what_changed(backend, nginx):
    d = ConsulDouble(jitter=False, max_conns_per_client=MAX_CONNS).start()
    try:
        names = ['det.svc%02d.api' % i for i in range(12)]
        d.register_many((n, 'i-%d' % i, '127.0.0.1', backend.ok4[0],
                         ['edge']) for i, n in enumerate(names))
        start_catalog(nginx, d, params='wait=2s resync=1h')
        conn = http.client.HTTPConnection('127.0.0.1', nginx.port,
                                          timeout=10 * SLOW)
        try:
            for n in names:
                wait_for(lambda: answer(conn, n) == backend.ok4[0], 10,
                         what='%s routed' % n)

            # a check changes: that service alone is fetched again
            d.reset_counts()
            d.register(names[3], 'j-3', '127.0.0.1', backend.ok4[1],
                       tags=['edge'])
            wait_for(lambda: set(answer(conn, names[3]) for _ in range(8))
                     == {backend.ok4[0], backend.ok4[1]}, 10,
                     what='both instances routed')
            fetched = set(r['path'] for r in d.requests('/v1/health/service/'))
            assert fetched == {'/v1/health/service/' + names[3]}, fetched

            # a reload fetches nothing that did not change
            d.reset_counts()
            nginx.reload()
            wait_for(lambda: d.requests('/v1/health/state/any'), 10,
                     what='the checks watched again')
            wait_for(lambda: d.open_requests('health/state') >= 1, 10,
                     what='the checks watch blocking')
            assert d.requests('/v1/health/service/') == [], \
                d.requests('/v1/health/service/')
            r = nginx.get('/', headers={'X-Service': names[5]})
            assert r.status == 200 and int(r.text) == backend.ok4[0], r
        finally:
            conn.close()
    finally:
        d.stop()


def test_resync_catches_what_no_check_shows(backend, nginx):
    # an instance registered without any check changes no check: only
    # the periodic resync (resync=2s here) finds it
    d = ConsulDouble(jitter=False).start()
    try:
        names = ['rs.svc%02d.api' % i for i in range(10)]
        d.register_many((n, 'i-%d' % i, '127.0.0.1', backend.ok4[0],
                         ['edge']) for i, n in enumerate(names))
        start_catalog(nginx, d, params='wait=2s resync=2s')
        conn = http.client.HTTPConnection('127.0.0.1', nginx.port,
                                          timeout=10 * SLOW)
        try:
            wait_for(lambda: answer(conn, names[0]) == backend.ok4[0], 10,
                     what='routed')
            with d.cond:
                d.reg.register_service('node1', {
                    'Name': names[0], 'ID': 'nocheck', 'Port':
                    backend.ok4[2], 'Address': '127.0.0.1',
                    'Tags': ['edge']})
                # not a check: the checks' index must not move for it
                d.cond.notify_all()
            wait_for(lambda: set(answer(conn, names[0]) for _ in range(8))
                     == {backend.ok4[0], backend.ok4[2]}, 10,
                     what='the unchecked instance found by the resync')
        finally:
            conn.close()
    finally:
        d.stop()
