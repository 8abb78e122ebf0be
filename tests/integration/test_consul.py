"""
Consul discovery as a user sees it: real nginx (2+ workers) with the
module, real backend nginx, and the Consul API double in this process.
Routing is read from what clients get (the backend answers its port);
discovery status from /tce/status; Consul's side from the double's
counters.  Every wait polls with a deadline.
"""

import json
import os
import signal
import sys
import time

import pytest

from conftest import (SERVICE, SLOW, VALGRIND, file_size, read_from,
                      stop_process, wait_for)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'doubles'))

from consul_double import ConsulDouble  # noqa: E402


HEALTH = '/v1/health/service/' + SERVICE
OTHER = 'demo.web.other'


@pytest.fixture
def consul():
    d = ConsulDouble(jitter=False).start()
    yield d
    d.stop()


def start(nginx, consul, params='wait=2s', urls=None, extra='',
          upstreams=None, workers=2, state=False, snapshot=True):
    urls = urls or [consul.url]
    http_extra = '    tce_consul %s %s;\n' % (' '.join(urls), params)
    if snapshot:
        http_extra += '    tce_consul_snapshot %s/snap.json;\n' % nginx.dir
    http_extra += extra
    kw = {}
    if upstreams:
        kw['upstreams'] = upstreams
    nginx.configure(http_extra=http_extra, state=state, workers=workers,
                    **kw)
    nginx.start()


def register(consul, backend, n, port_index, **kw):
    return consul.register(SERVICE, 'api-%d' % n, '127.0.0.1',
                           backend.ok4[port_index], **kw)


def ports_seen(nginx, n=12):
    """The set of backend ports answering n fresh requests (None for a
    request that did not get a 200)."""
    out = set()
    for _ in range(n):
        r = nginx.get('/')
        out.add(int(r.text) if r.status == 200 else None)
    return out


def routes_to(nginx, ports, timeout=5):
    want = set(ports)
    wait_for(lambda: ports_seen(nginx) == want, timeout,
             what='routing to exactly %s' % sorted(want))


def discovery(nginx, service=SERVICE):
    return nginx.status()['services'].get(service, {}).get('discovery', {})


def owner_lines(nginx):
    return [l for l in read_from(nginx.error_log).splitlines()
            if 'watches Consul' in l]


def owner_pid(nginx):
    lines = owner_lines(nginx)
    return int(lines[-1].split('worker ')[1].split()[0]) if lines else None


# -------------------------------------------------------- registration

def test_registration_and_removal_follow_consul(backend, nginx, consul):
    start(nginx, consul)
    register(consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])

    register(consul, backend, 2, 1)
    routes_to(nginx, [backend.ok4[0], backend.ok4[1]])

    # deregistration removes an instance
    consul.deregister('api-1')
    routes_to(nginx, [backend.ok4[1]])

    # a failing check removes it too (critical), and it comes back
    register(consul, backend, 3, 2)
    routes_to(nginx, [backend.ok4[1], backend.ok4[2]])
    consul.set_check('service:api-2', 'critical')
    routes_to(nginx, [backend.ok4[2]])
    consul.set_check('service:api-2', 'passing')
    routes_to(nginx, [backend.ok4[1], backend.ok4[2]])

    d = discovery(nginx)
    assert d['watched'] and d['last_error'] == '' and d['syncs'] >= 5, d
    assert d['index'] == consul.service_index(SERVICE), d
    assert nginx.status()['services'][SERVICE]['source'] == 'consul'


def test_weights_and_meta_mapped(backend, nginx, consul):
    start(nginx, consul)
    register(consul, backend, 1, 0, weight=3)
    register(consul, backend, 2, 1, weight=1,
             meta={'cluster': 'default', 'env': 'prod', 'version': 'v7'})
    consul.register(SERVICE, 'api-blue', '127.0.0.1', backend.ok4[2],
                    meta={'cluster': 'blue', 'env': 'canary'})

    def mapped():
        insts = {i['id']: i for i in
                 nginx.status()['services'][SERVICE]['instances']}
        return len(insts) == 3 and insts
    insts = wait_for(mapped, 5, what='three instances in the status')
    assert insts['node1/api-1']['weight'] == 3
    assert insts['node1/api-2']['weight'] == 1
    assert insts['node1/api-2']['version'] == 'v7'
    assert insts['node1/api-blue']['cluster'] == 'blue'
    assert insts['node1/api-blue']['env'] == 'canary'

    # each worker runs an exact weighted cycle: 3:1 within a cycle each
    counts = {}
    for _ in range(80):
        r = nginx.get('/')
        assert r.status == 200, r
        counts[int(r.text)] = counts.get(int(r.text), 0) + 1
    assert set(counts) == {backend.ok4[0], backend.ok4[1]}, counts
    assert abs(counts[backend.ok4[0]] - 60) <= 4, counts


def test_bad_entry_skipped_with_one_warning(backend, nginx, consul):
    start(nginx, consul)
    register(consul, backend, 1, 0)
    consul.register(SERVICE, 'api-bad', 'not-an-ip', 80)
    routes_to(nginx, [backend.ok4[0]])
    line = nginx.wait_error_line(
        lambda l: 'tce consul' in l and 'skipped' in l, 0,
        what='a warning about the skipped entry')
    assert SERVICE in line and '[warn]' in line


def test_token_sent(backend, nginx, tmp_path):
    d = ConsulDouble(token='s3cret', jitter=False).start()
    try:
        tok = tmp_path / 'token'
        tok.write_text('s3cret\n')
        start(nginx, d, params='wait=2s token_file=%s' % tok)
        register(d, backend, 1, 0)
        routes_to(nginx, [backend.ok4[0]])
        assert d.last_token == 's3cret'
    finally:
        d.stop()


def test_wrong_token_keeps_serving_and_says_why(backend, nginx, consul):
    consul.token = 'right'
    start(nginx, consul, params='wait=2s token=wrong')
    wait_for(lambda: 'ACL' in discovery(nginx).get('last_error', ''), 5,
             what='the ACL error in the status')


def test_failover_between_urls(backend, nginx, consul):
    dead = 'http://127.0.0.1:%d' % backend.dead
    start(nginx, consul, urls=[dead, consul.url])
    register(consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])
    assert discovery(nginx)['last_error'] == ''


def test_config_errors(nginx, consul):
    for line, words in (
            ('tce_consul ftp://x;', 'ftp://x'),
            ('tce_consul %s wait=0s;' % consul.url, 'wait='),
            ('tce_consul %s bogus=1;' % consul.url, 'bogus=1'),
            ('tce_consul %s token=a token=b;' % consul.url, 'token_file'),
            ('tce_consul %s token_file=/nonexistent/t;' % consul.url,
             'token_file'),
            ('tce_consul_services tag;', 'tag=')):
        nginx.configure(http_extra='    %s\n' % line, state=False)
        rc, err = nginx.check()
        assert rc != 0 and words in err and 'tce_consul' in err, (line, err)


# -------------------------------------------------------------- faults

FAULTS = [
    ('status', {'status': 500, 'body': 'rpc error'}, 'HTTP 500'),
    ('malformed', {}, ''),
    ('truncated', {}, ''),
    ('drop', {}, ''),
]


@pytest.mark.parametrize('kind,kw,text', FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_keeps_last_good_set(backend, nginx, consul, kind, kw, text):
    start(nginx, consul, params='wait=1s')
    register(consul, backend, 1, 0)
    register(consul, backend, 2, 1)
    good = [backend.ok4[0], backend.ok4[1]]
    routes_to(nginx, good)
    since = file_size(nginx.error_log)

    consul.add_fault(kind, count=-1, path=HEALTH, **kw)
    wait_for(lambda: discovery(nginx)['errors'] >= 3, 10,
             what='three failed queries')
    assert ports_seen(nginx) == set(good)
    d = discovery(nginx)
    assert d['last_error'] and text in d['last_error'], d

    # one error line for the state change, not one per retry
    lines = [l for l in read_from(nginx.error_log, since).splitlines()
             if 'tce consul' in l and '[error]' in l]
    assert len(lines) == 1, lines

    consul.clear_faults()
    register(consul, backend, 3, 2)
    routes_to(nginx, good + [backend.ok4[2]])
    wait_for(lambda: discovery(nginx)['last_error'] == '', 5,
             what='in sync again')
    nginx.wait_error_line(lambda l: 'in sync again' in l, since)


def test_hang_keeps_serving(backend, nginx, consul):
    start(nginx, consul, params='wait=1s')
    register(consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])
    consul.add_fault('hang', count=-1, path=HEALTH)
    wait_for(lambda: consul.state()['hung'] >= 1, 5, what='a hung query')
    assert ports_seen(nginx) == {backend.ok4[0]}
    consul.clear_faults()
    register(consul, backend, 2, 1)
    routes_to(nginx, [backend.ok4[0], backend.ok4[1]], timeout=15)


def test_consul_down_keeps_serving(backend, nginx, consul):
    start(nginx, consul)
    register(consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])
    consul.stop()
    wait_for(lambda: discovery(nginx)['errors'] >= 1, 10,
             what='a failed query')
    assert ports_seen(nginx) == {backend.ok4[0]}


def test_empty_answer_kept_unless_allowed(backend, nginx, consul):
    start(nginx, consul)
    register(consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])
    consul.deregister('api-1')
    wait_for(lambda: discovery(nginx)['empty_answers'] >= 1, 5,
             what='an empty answer')
    assert ports_seen(nginx) == {backend.ok4[0]}
    assert 'allow_empty' in discovery(nginx)['last_error']


def test_empty_answer_applied_when_allowed(backend, nginx, consul):
    start(nginx, consul, extra='    tce_consul_allow_empty on;\n')
    register(consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])
    consul.deregister('api-1')
    wait_for(lambda: nginx.get('/').status == 503, 5, what='503')


def test_index_going_back_and_restart(backend, nginx, consul):
    start(nginx, consul)
    register(consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])

    # a snapshot restore: the index goes back; the watcher starts over
    consul.set_index(1)
    register(consul, backend, 2, 1)
    routes_to(nginx, [backend.ok4[0], backend.ok4[1]])

    # restart with state lost: empty registry, the last set is kept
    consul.restart()
    wait_for(lambda: discovery(nginx)['empty_answers'] >= 1, 10,
             what='the empty answer after the restart')
    assert ports_seen(nginx) == {backend.ok4[0], backend.ok4[1]}
    register(consul, backend, 3, 2)
    routes_to(nginx, [backend.ok4[2]])


# ---------------------------------------------------- snapshot, restart

def test_restart_during_outage_serves_snapshot(backend, nginx, consul):
    start(nginx, consul)
    register(consul, backend, 1, 0)
    register(consul, backend, 2, 1)
    routes_to(nginx, [backend.ok4[0], backend.ok4[1]])
    snap = os.path.join(nginx.dir, 'snap.json')
    wait_for(lambda: read_from(snap).count('"node1/api-') == 2, 5,
             what='the snapshot holding both instances')

    err = stop_process(nginx.proc)
    assert err is None, err
    nginx.stderr.close()
    consul.stop()

    nginx.start()
    routes_to(nginx, [backend.ok4[0], backend.ok4[1]])
    d = wait_for(lambda: discovery(nginx).get('errors', 0) >= 1 and
                 discovery(nginx), 10, what='the outage in the status')
    assert d['last_success'] == 0, d


# ------------------------------------------------- one watcher, election

def test_one_blocking_query_per_service(backend, nginx, consul):
    ups = ('    upstream api { tce_service %s; }\n'
           '    upstream other { tce_service %s; }\n'
           '    upstream api2 { tce_service %s; }\n'
           % (SERVICE, OTHER, SERVICE))
    start(nginx, consul, params='wait=60s', upstreams=ups, workers=4)
    register(consul, backend, 1, 0)
    consul.register(OTHER, 'o-1', '127.0.0.1', backend.ok4[1])
    routes_to(nginx, [backend.ok4[0]])
    wait_for(lambda: consul.open_requests(SERVICE) == 1
             and consul.open_requests(OTHER) == 1, 5,
             what='one open blocking query per service')

    # over several election periods: still one, and no new request
    before = consul.count(HEALTH)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        assert consul.open_requests(SERVICE) == 1
        assert consul.open_requests(OTHER) == 1
        time.sleep(0.05)
    assert consul.count(HEALTH) == before
    assert len(set(owner_lines(nginx))) == 1


def test_killed_watcher_replaced_quickly(backend, nginx, consul):
    start(nginx, consul, params='wait=60s')
    register(consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])
    pid = wait_for(lambda: owner_pid(nginx), 5, what='a watcher')
    nginx.allowed_log.add('exited on signal 9')

    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    new = wait_for(lambda: owner_pid(nginx) != pid and owner_pid(nginx),
                   5, interval=0.01, what='another watcher')
    elapsed = time.monotonic() - t0
    # the staleness limit (1.5 s) plus an election tick, stretched
    # like every other deadline on a slow run
    assert elapsed < 2.0 * SLOW, elapsed
    assert new != pid

    register(consul, backend, 2, 1)
    routes_to(nginx, [backend.ok4[0], backend.ok4[1]])
    wait_for(lambda: consul.open_requests(SERVICE) == 1, 5,
             what='one open blocking query')


def test_reload_leaves_no_old_worker(backend, nginx, consul):
    # long polls open: old workers must still exit at once
    start(nginx, consul, params='wait=60s')
    register(consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])
    wait_for(lambda: consul.open_requests(SERVICE) == 1, 5,
             what='an open blocking query')
    for _ in range(1 if VALGRIND else 2):    # a reload: ~10 s in memcheck
        t0 = time.monotonic()
        nginx.reload(timeout=5)
        assert time.monotonic() - t0 < 3 * SLOW
    register(consul, backend, 2, 1)
    routes_to(nginx, [backend.ok4[0], backend.ok4[1]])


# ------------------------------------------------------- catalog mode

def test_catalog_mode_one_upstream_for_all_services(backend, nginx, consul):
    ups = ('    map $http_x_service $tce_svc { default $http_x_service; }\n'
           '    upstream api { tce_service $tce_svc; }\n')
    start(nginx, consul, upstreams=ups,
          extra='    tce_consul_services tag=edge;\n')
    consul.register('shop.cart.api', 'c-1', '127.0.0.1', backend.ok4[0],
                    tags=['edge'])
    consul.register('shop.user.api', 'u-1', '127.0.0.1', backend.ok4[1],
                    tags=['edge'])
    consul.register('shop.secret.api', 's-1', '127.0.0.1', backend.ok4[2])

    def answer(svc):
        r = nginx.get('/', headers={'X-Service': svc})
        return int(r.text) if r.status == 200 else r.status

    wait_for(lambda: answer('shop.cart.api') == backend.ok4[0], 5,
             what='shop.cart.api routed')
    wait_for(lambda: answer('shop.user.api') == backend.ok4[1], 5,
             what='shop.user.api routed')

    # untagged, and unknown: 503 with a clear line, nothing watched
    since = file_size(nginx.error_log)
    assert answer('shop.secret.api') == 503
    assert answer('no.such.svc') == 503
    nginx.wait_error_line(lambda l: '"no.such.svc"' in l
                          and 'not in the registry' in l, since)
    assert consul.count('/v1/health/service/no.such.svc') == 0
    assert consul.count('/v1/health/service/shop.secret.api') == 0

    # a newly tagged service is picked up without reload
    consul.register('shop.new.api', 'n-1', '127.0.0.1', backend.ok4[3],
                    tags=['edge'])
    wait_for(lambda: answer('shop.new.api') == backend.ok4[3], 5,
             what='the new service routed')


# ------------------------------------------------------------- metrics

def test_discovery_figures_in_prometheus(backend, nginx, consul):
    from test_metrics import METRICS_LOCATION, parse, promtool_check, total

    nginx.configure(http_extra='    tce_consul %s wait=1s;\n' % consul.url,
                    server_extra=METRICS_LOCATION, state=False)
    nginx.start()
    register(consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])

    def synced():
        m = parse(nginx.get('/metrics').text)
        ok = total(m, 'tce_discovery_syncs_total', service=SERVICE,
                   result='ok')
        return m if ok >= 1 else None

    m = wait_for(synced, 10, what='a discovery success counted')
    assert total(m, 'tce_discovery_index', service=SERVICE) \
        == discovery(nginx)['index'] > 0
    assert total(m, 'tce_discovery_last_success_timestamp_seconds',
                 service=SERVICE) == discovery(nginx)['last_success'] > 0
    rc, out = promtool_check(nginx.get('/metrics').text)
    assert rc == 0 and out.strip() == '', out

    # a failing Consul shows in the failure count; the set is kept
    consul.add_fault('status', count=-1, path=HEALTH, status=500)
    wait_for(lambda: total(parse(nginx.get('/metrics').text),
                           'tce_discovery_syncs_total', service=SERVICE,
                           result='failure') >= 2,
             10, what='failures counted')
    assert ports_seen(nginx) == {backend.ok4[0]}


# ---------------------------------------------------------------- HTTPS

# Certificates made at test time with the openssl command line
# (tests/doubles/tls_certs.py): a test CA, a server certificate for IP
# 127.0.0.1 signed by it, one for another name signed by it, and
# another CA that signed nothing of ours.  libcurl verifies the peer
# and the host against ca= only.

@pytest.fixture
def tls(tmp_path):
    from tls_certs import make_ca, make_server_cert
    d = str(tmp_path / 'tls')
    os.makedirs(d)
    ca = make_ca(d, 'ca')
    cert, key = make_server_cert(d, ca, 'server')
    wcert, wkey = make_server_cert(d, ca, 'wronghost',
                                   san='DNS:consul.example')
    other = make_ca(d, 'other-ca')
    return {'dir': d, 'ca': ca.cert, 'cert': cert, 'key': key,
            'wrong_host': (wcert, wkey), 'other_ca': other.cert,
            'other': make_server_cert(d, other, 'other-server')}


def tls_double(cert_key, **kw):
    return ConsulDouble(jitter=False, certfile=cert_key[0],
                        keyfile=cert_key[1], **kw).start()


@pytest.fixture
def tls_consul(tls):
    d = tls_double((tls['cert'], tls['key']))
    yield d
    d.stop()


@pytest.mark.parametrize('relative', [
    pytest.param(False, marks=pytest.mark.novalgrind(
        'the relative case runs the same TLS watch under memcheck, plus '
        'the path resolution'), id='absolute'),
    pytest.param(True, id='relative')])
def test_https_with_ca_file(backend, nginx, tls, tls_consul, relative):
    assert tls_consul.url.startswith('https://127.0.0.1:')
    ca = tls['ca']
    if relative:
        # like nginx's own file paths: relative to the configuration
        # prefix (the directory of nginx.conf)
        with open(ca, 'rb') as src, \
                open(os.path.join(nginx.dir, 'ca.pem'), 'wb') as dst:
            dst.write(src.read())
        ca = 'ca.pem'
    start(nginx, tls_consul, params='wait=2s ca=%s' % ca)
    register(tls_consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])
    register(tls_consul, backend, 2, 1)
    routes_to(nginx, [backend.ok4[0], backend.ok4[1]])
    d = discovery(nginx)
    assert d['last_error'] == '' and d['errors'] == 0, d
    assert d['index'] == tls_consul.service_index(SERVICE), d
    wait_for(lambda: tls_consul.open_requests(SERVICE) == 1, 5,
             what='one blocking query open over TLS')


BAD_TLS = [
    # (case, curl's error text (OpenSSL backend) in last_error and log)
    pytest.param('untrusted-ca', 'SSL certificate problem: unable to get '
                 'local issuer certificate', id='untrusted-ca'),
    # the module's path is untrusted-ca's (a handshake refused by curl);
    # only curl's text differs
    pytest.param('wrong-host', "SSL: no alternative certificate subject "
                 "name matches target host name '127.0.0.1'",
                 marks=pytest.mark.novalgrind(
                     'same module path as untrusted-ca, which runs under '
                     'memcheck'), id='wrong-host'),
]


@pytest.mark.parametrize('case,words', BAD_TLS)
def test_https_certificate_refused_keeps_last_good_set(
        backend, nginx, tls, tls_consul, case, words):
    # learn a set over verified HTTPS, written to the snapshot
    start(nginx, tls_consul, params='wait=1s ca=%s' % tls['ca'])
    register(tls_consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])
    snap = os.path.join(nginx.dir, 'snap.json')
    wait_for(lambda: '"node1/api-1"' in read_from(snap), 5,
             what='the snapshot holding api-1')

    # then a Consul whose certificate must be refused: ca= a CA that did
    # not sign it, or a certificate of the right CA for another host
    if case == 'untrusted-ca':
        watched, ca = tls_consul, tls['other_ca']
    else:
        watched, ca = tls_double(tls['wrong_host']), tls['ca']
        register(watched, backend, 1, 0)
    try:
        http_extra = ('    tce_consul %s wait=1s ca=%s;\n'
                      '    tce_consul_snapshot %s;\n'
                      % (watched.url, ca, snap))
        since = file_size(nginx.error_log)
        nginx.configure(http_extra=http_extra, state=False)
        nginx.reload()                  # returns once the old workers left
        requests = watched.count(HEALTH)
        register(watched, backend, 2, 1)        # must not be learned

        d = wait_for(lambda: discovery(nginx)['last_error'] == words
                     and discovery(nginx), 10,
                     what='the certificate error in the status')
        errors = d['errors']
        wait_for(lambda: discovery(nginx)['errors'] >= errors + 2, 10,
                 what='two more failed queries')
        assert ports_seen(nginx) == {backend.ok4[0]}
        ids = [i['id'] for i in nginx.status()['services'][SERVICE]
               ['instances']]
        assert ids == ['node1/api-1'], ids
        # curl refused before sending anything: no request reached it
        assert watched.count(HEALTH) == requests, watched.state()

        # the error is logged once, with curl's text, not once per retry
        # (once per watcher tenure: under valgrind a TLS handshake can
        # hold the owner's event loop past the heartbeat's staleness, and
        # the other worker takes over and logs its own first error)
        log = read_from(nginx.error_log, since).splitlines()
        # (under valgrind, a handshake can also time out before the
        # certificate is even seen: that error is logged apart)
        lines = [l for l in log if 'tce consul' in l and '[error]' in l
                 and not (VALGRIND and 'SSL connection timeout' in l)]
        tenures = len([l for l in log if 'watches Consul (previous' in l])
        assert 1 <= len(lines) <= tenures, log
        assert tenures == 1 or VALGRIND, log
        assert all('service "%s": %s;' % (SERVICE, words) in l
                   for l in lines), lines

        # a restart during the "outage" serves the snapshot
        err = stop_process(nginx.proc)
        assert err is None, err
        nginx.stderr.close()
        nginx.start()
        routes_to(nginx, [backend.ok4[0]])
        wait_for(lambda: discovery(nginx).get('last_error') == words,
                 10, what='the certificate error after the restart')
        assert ports_seen(nginx) == {backend.ok4[0]}
    finally:
        if watched is not tls_consul:
            watched.stop()


@pytest.mark.parametrize('first', [
    pytest.param('dead', marks=pytest.mark.novalgrind(
        'failover past a dead URL runs under memcheck in '
        'test_failover_between_urls, over TLS in the untrusted case')),
    'untrusted'])
def test_https_failover_to_next_url(backend, nginx, tls, first):
    # one ca= serves every URL (no per-URL CA): the first URL is a dead
    # port, or an HTTPS Consul whose certificate that CA did not sign
    good = tls_double((tls['cert'], tls['key']), token='s3cret')
    bad = None
    try:
        if first == 'dead':
            first_url = 'https://127.0.0.1:%d' % backend.dead
        else:
            bad = tls_double(tls['other'])
            register(bad, backend, 9, 3)        # must never be routed to
            first_url = bad.url
        start(nginx, good, urls=[first_url, good.url],
              params='wait=2s token=s3cret ca=%s' % tls['ca'])
        register(good, backend, 1, 0)
        routes_to(nginx, [backend.ok4[0]])
        register(good, backend, 2, 1)
        routes_to(nginx, [backend.ok4[0], backend.ok4[1]])
        assert good.last_token == 's3cret'
        if bad is not None:
            # refused at the handshake: no request, no token sent there
            assert bad.state()['counts'] == {}, bad.state()
            assert bad.last_token is None
    finally:
        good.stop()
        if bad is not None:
            bad.stop()


def test_worker_connections_exhausted_watcher_retries(backend, nginx,
                                                      consul):
    # every connection of the only worker is held by clients when the
    # watcher needs new ones to Consul (catalog mode: fetches of newly
    # tagged services, several at once): those fetches fail and are
    # retried later (backoff); the worker does not crash, the curl
    # multi handle is not lost, and once connections are free again
    # the services are learned and routed
    import socket
    from conftest import free_port
    held_port = free_port()
    ups = ('    map $http_x_service $tce_svc { default $http_x_service; }\n'
           '    upstream api { tce_service $tce_svc; }\n')
    start(nginx, consul, params='wait=1s', workers=1, upstreams=ups,
          extra='    tce_consul_services tag=edge;\n'
                '    server { listen 127.0.0.1:%d; location / { '
                'proxy_pass http://127.0.0.1:%d; } }\n'
                % (held_port, backend.hung))
    with open(nginx.conf_path) as f:
        conf = f.read()
    with open(nginx.conf_path, 'w') as f:
        f.write(conf.replace('worker_connections 1024;',
                             'worker_connections 16;'))
    nginx.reload()
    nginx.allowed_log.add('worker_connections are not enough')
    nginx.allowed_log.add('no free connection')

    def answer(svc):
        r = nginx.get('/', headers={'X-Service': svc})
        return int(r.text) if r.status == 200 else r.status

    consul.register('shop.a0.api', 'a0', '127.0.0.1', backend.ok4[0],
                    tags=['edge'])
    wait_for(lambda: answer('shop.a0.api') == backend.ok4[0], 5 * SLOW,
             what='shop.a0.api routed')
    pid = nginx.workers().pop()
    since = file_size(nginx.error_log)
    held = []

    def closed(s):
        try:
            return s.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b''
        except BlockingIOError:
            return False
        except OSError:
            return True

    try:
        for _ in range(24):
            # a request whose body nginx waits for: a connection it
            # cannot take back (one not read yet would be reused)
            s = socket.create_connection(('127.0.0.1', held_port))
            s.sendall(b'POST /held HTTP/1.1\r\nHost: a\r\n'
                      b'Content-Length: 100000\r\n\r\n')
            held.append(s)
        seen = []

        def exhausted():
            # nginx closes the connections it has no room for: done
            # once that count stays put
            seen.append(sum(closed(s) for s in held))
            return ('worker_connections are not enough' in read_from(
                nginx.error_log, since)
                and len(seen) > 3 and seen[-1] == seen[-4])

        wait_for(exhausted, 5 * SLOW, interval=0.1,
                 what='worker_connections exhausted')
        assert 0 < seen[-1] < len(held), seen
        for i in range(1, 7):
            consul.register('shop.a%d.api' % i, 'a%d' % i, '127.0.0.1',
                            backend.ok4[i % 4], tags=['edge'])
        line = nginx.wait_error_line(
            lambda l: 'no free connection' in l, since, 10 * SLOW,
            what='a fetch failing for want of a connection')
        assert 'retrying with backoff' in line, line
    finally:
        for s in held:
            s.close()
    assert nginx.workers() == {pid}
    for i in range(7):
        wait_for(lambda: answer('shop.a%d.api' % i) == backend.ok4[i % 4],
                 20 * SLOW, what='shop.a%d.api routed' % i)
    assert nginx.workers() == {pid}
    assert 'curl_multi' not in read_from(nginx.error_log, since)
