"""
API diff (tce_diff): a sampled GET that prod answers is also sent to a
canary instance and to a second prod instance, and the answers are
compared.  Real nginx, real loopback backends whose answers the test
chooses; the oracle is what the backends were asked and answered (their
own records) and what the client received, never the module's code.
"""

import http.client
import http.server
import json
import random
import re
import threading
import time
import uuid

import pytest

from admin_helpers import admin_location, call
from conftest import (SERVICE, SLOW, VALGRIND, dead_socket, instance,
                      wait_for)
from test_metrics import METRICS_LOCATION, parse, promtool_check


class Backends:
    """HTTP/1.1 keepalive backends.  answer(name, method, path) returns
    (status, headers, body bytes); every request is recorded as
    (name, method, path, body) when it arrives."""

    def __init__(self, names, answer):
        self.lock = threading.Lock()
        self.log = []
        self.answer = answer
        self.servers = {}
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def handle_any(self):
                n = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(n) if n else b''
                with owner.lock:
                    owner.log.append((self.server.name, self.command,
                                      self.path, body))
                status, headers, out = owner.answer(
                    self.server.name, self.command, self.path)
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header('Content-Length', str(len(out)))
                self.end_headers()
                if self.command != 'HEAD':
                    self.wfile.write(out)
                self.wfile.flush()

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = handle_any

            def log_message(self, *args):
                pass

        for name in names:
            s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
            s.daemon_threads = True
            s.name = name
            threading.Thread(target=s.serve_forever, daemon=True).start()
            self.servers[name] = s

    def addr(self, name):
        return '127.0.0.1:%d' % self.servers[name].server_address[1]

    def requests(self, name=None, method=None):
        with self.lock:
            return [r for r in self.log
                    if (name is None or r[0] == name)
                    and (method is None or r[1] == method)]

    def stop(self):
        for s in self.servers.values():
            s.shutdown()
            s.server_close()


def same_json(name, method, path):
    body = json.dumps({'path': path, 'items': [1, 2, 3]}).encode()
    return 200, [('Content-Type', 'application/json')], body


@pytest.fixture
def backends():
    made = []

    def make(answer=same_json):
        b = Backends(('prod1', 'prod2', 'canary'), answer)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


API = '/api/v1/services/%s/clusters/default/diff' % SERVICE


def start(nginx, b, diff='tce_diff sample=100 name=orders;', workers=2):
    nginx.write_state({SERVICE: {'default': [
        instance('p1', b.addr('prod1'), env='prod'),
        instance('p2', b.addr('prod2'), env='prod'),
        instance('c1', b.addr('canary'), env='canary')]}})
    nginx.configure(location='            %s\n' % diff,
                    server_extra=METRICS_LOCATION + admin_location(),
                    workers=workers)
    nginx.start()


def diff_counts(nginx, location='orders'):
    r = nginx.get('/metrics')
    assert r.status == 200
    out = {'match': 0, 'mismatch': 0, 'error': 0}
    for (name, labels), value in parse(r.text).items():
        labels = dict(labels)
        if name == 'tce_diff_requests_total' \
                and labels.get('location') == location:
            assert labels['service'] == SERVICE
            assert labels['cluster'] == 'default'
            out[labels['result']] = int(float(value))
    return out


def wait_counted(nginx, n, location='orders'):
    def done():
        c = diff_counts(nginx, location)
        return sum(c.values()) >= n and c
    return wait_for(done, 10 * SLOW, what='%d outcomes counted' % n)


def test_identical_canary_matches(nginx, backends):
    b = backends()
    start(nginx, b)
    n = 4 if VALGRIND else 20

    for i in range(n):
        r = nginx.get('/orders/%d' % i)
        assert r.status == 200
        assert json.loads(r.body)['path'] == '/orders/%d' % i

    c = wait_counted(nginx, n)
    assert c == {'match': n, 'mismatch': 0, 'error': 0}

    # every client request reached prod once for the client, once more
    # for the second prod answer, and the canary once
    assert len(b.requests('canary')) == n
    assert len(b.requests('prod1')) + len(b.requests('prod2')) == 2 * n
    # the mirrors carry the request prod got: path and Host
    assert sorted(r[2] for r in b.requests('canary')) == \
        sorted('/orders/%d' % i for i in range(n))

    rc, out = promtool_check(nginx.get('/metrics').text)
    assert rc == 0, out


def differing(name, method, path):
    if name == 'canary' and path.startswith('/v2/'):
        body = json.dumps({'path': path, 'items': [1, 2, 4]}).encode()
        return 200, [('Content-Type', 'application/json')], body
    if name == 'canary' and path.startswith('/gone/'):
        return 404, [('Content-Type', 'text/plain')], b'no such thing\n'
    if path.startswith('/text/'):
        body = b'hello ' + (b'canary' if name == 'canary' else b'prod') \
            + b'\n'
        return 200, [('Content-Type', 'text/plain')], body
    return same_json(name, method, path)


def test_different_canary_counted_and_shown(nginx, backends):
    b = backends(differing)
    start(nginx, b)

    paths = ['/same/1', '/same/2', '/v2/a', '/v2/b', '/gone/x',
             '/text/t', '/same/3']
    for p in paths:
        assert nginx.get(p).status == 200

    c = wait_counted(nginx, len(paths))
    # /v2/ (a JSON field), /gone/ (status), /text/ (bytes) differ
    assert c == {'match': 3, 'mismatch': 4, 'error': 0}

    # the API: the same counts, and the mismatches, newest first
    d = call(nginx, 'GET', API).json
    assert (d['match'], d['mismatch'], d['error']) == (3, 4, 0)
    assert d['match_ratio'] == pytest.approx(3 / 7)
    assert d['locations'] == [{'location': 'orders', 'match': 3,
                               'mismatch': 4, 'error': 0, 'noisy': 0}]
    shown = {m['request']: m for m in d['last_mismatches']}
    assert set(shown) == {'GET /v2/a', 'GET /v2/b', 'GET /gone/x',
                          'GET /text/t'}
    assert shown['GET /v2/a']['what'] == 'body $.items[2]'
    assert (shown['GET /v2/a']['prod'], shown['GET /v2/a']['canary']) \
        == ('3', '4')
    g = shown['GET /gone/x']
    assert (g['what'], g['prod_status'], g['canary_status']) == \
        ('status', 200, 404)
    assert g['prod_digest'] != g['canary_digest']
    t = shown['GET /text/t']
    assert (t['what'], t['prod'], t['canary']) == \
        ('body at byte 6', 'prod\\x0A', 'canary\\x0A')


def test_api_without_tce_diff(nginx, backends):
    b = backends()
    nginx.write_state({SERVICE: {'default': [
        instance('p1', b.addr('prod1'), env='prod')]}})
    nginx.configure(server_extra=admin_location())
    nginx.start()
    r = call(nginx, 'GET', API)
    assert r.status == 404
    assert r.json['error']['code'] == 'no_diff'


def noisy(name, method, path):
    doc = {'path': path, 'ts': time.time(), 'request_id': str(uuid.uuid4()),
           'items': [1, 2, 3], 'user': {'id': 7, 'name': 'ann'}}
    if name == 'canary' and path.startswith('/bad/'):
        doc['user']['name'] = 'bob'
    keys = list(doc)
    random.shuffle(keys)
    body = json.dumps({k: doc[k] for k in keys}).encode()
    return 200, [('Content-Type', 'application/json'),
                 ('X-Request-Id', str(uuid.uuid4()))], body


def test_noise_is_not_a_mismatch(nginx, backends):
    b = backends(noisy)
    start(nginx, b)
    n = 3 if VALGRIND else 10

    for i in range(n):
        assert nginx.get('/ok/%d' % i).status == 200
    assert nginx.get('/bad/1').status == 200

    c = wait_counted(nginx, n + 1)
    # timestamps, ids, key order and a random header are prod's own
    # noise; the changed field under it is still caught
    assert c == {'match': n, 'mismatch': 1, 'error': 0}


def test_post_never_mirrored(nginx, backends):
    b = backends()
    start(nginx, b, diff='tce_diff sample=100 methods=GET,HEAD,OPTIONS '
                         'name=orders;')
    n = 3 if VALGRIND else 10

    for i in range(n):
        conn = http.client.HTTPConnection('127.0.0.1', nginx.port,
                                          timeout=10 * SLOW)
        body = b'{"n": %d}' % i
        conn.request('POST', '/orders', body=body,
                     headers={'Content-Type': 'application/json'})
        assert conn.getresponse().status == 200
        conn.close()
    # a GET after them: once it is counted, every earlier mirror would be
    assert nginx.get('/after').status == 200
    wait_counted(nginx, 1)

    posts = b.requests(method='POST')
    assert len(posts) == n, posts
    assert sorted(p[3] for p in posts) == \
        sorted(b'{"n": %d}' % i for i in range(n))
    assert not b.requests('canary', 'POST')


def test_client_not_delayed_by_a_slow_canary(nginx, backends):
    gate = threading.Event()

    def slow_canary(name, method, path):
        if name == 'canary':
            gate.wait(30 * SLOW)
        return same_json(name, method, path)

    b = backends(slow_canary)
    start(nginx, b, workers=1)

    conn = http.client.HTTPConnection('127.0.0.1', nginx.port,
                                      timeout=10 * SLOW)
    try:
        # the client gets its answer, and the next one on the same
        # keepalive connection, while the canary still holds the mirror
        for path in ('/first', '/second'):
            conn.request('GET', path)
            r = conn.getresponse()
            assert r.status == 200
            assert json.loads(r.read())['path'] == path
        wait_for(lambda: len(b.requests('canary')) == 2, 10 * SLOW,
                 what='both mirrors at the canary')
        assert not gate.is_set()
        assert diff_counts(nginx) == {'match': 0, 'mismatch': 0, 'error': 0}
    finally:
        gate.set()
        conn.close()

    assert wait_counted(nginx, 2) == {'match': 2, 'mismatch': 0,
                                      'error': 0}


@pytest.mark.parametrize('location,upstreams,message', [
    ('tce_diff name=x;\n', None,
     r'needs "proxy_pass" to an upstream with "tce_service"'),
    ('tce_diff methods=GET,POST name=x;\n', None,
     r'method "POST" cannot be mirrored'),
    ('tce_diff sample=100;\n', None, r'needs name='),
    ('tce_diff sample=0 name=x;\n', None, r'invalid "sample=0"'),
    ('tce_diff max_body=0 name=x;\n', None, r'invalid "max_body=0"'),
    ('tce_diff name=a/b;\n', None, r'invalid parameter "name=a/b"'),
])
def test_bad_config_refused(nginx, backends, location, upstreams, message):
    b = backends()
    nginx.write_state({SERVICE: {'default': [
        instance('p1', b.addr('prod1'), env='prod')]}})
    if 'needs "proxy_pass"' in message:
        extra = ('        location /nodiff {\n'
                 '            return 200;\n            %s        }\n'
                 % location)
        nginx.configure(server_extra=extra)
    else:
        nginx.configure(location='            ' + location)
    rc, err = nginx.check()
    assert rc != 0
    assert re.search(message, err), err


def test_plain_upstream_refused(nginx, backends):
    b = backends()
    nginx.write_state({SERVICE: {'default': [
        instance('p1', b.addr('prod1'), env='prod')]}})
    nginx.configure(
        upstreams='    upstream api {\n        tce_service %s;\n    }\n'
                  '    upstream plain {\n        server %s;\n    }\n'
                  % (SERVICE, b.addr('prod1')),
        server_extra='        location /plain {\n'
                     '            proxy_pass http://plain;\n'
                     '            tce_diff name=x;\n        }\n')
    rc, err = nginx.check()
    assert rc != 0
    assert 'upstream "plain" has no "tce_service"' in err, err


def versioned(name, method, path):
    status, headers, body = same_json(name, method, path)
    if name == 'canary':
        headers = headers + [('X-Version', 'v2')]
    return status, headers, body


def test_ignore_headers_and_head(nginx, backends):
    b = backends(versioned)
    strict = ('        location /strict/ {\n'
              '            proxy_pass http://api;\n'
              '            tce_diff sample=100 name=strict;\n'
              '        }\n')
    nginx.write_state({SERVICE: {'default': [
        instance('p1', b.addr('prod1'), env='prod'),
        instance('p2', b.addr('prod2'), env='prod'),
        instance('c1', b.addr('canary'), env='canary')]}})
    nginx.configure(location='            tce_diff sample=100 '
                             'ignore_headers=X-Version name=orders;\n',
                    server_extra=METRICS_LOCATION + strict)
    nginx.start()

    assert nginx.get('/orders/1').status == 200
    assert nginx.get('/strict/1').status == 200
    conn = http.client.HTTPConnection('127.0.0.1', nginx.port,
                                      timeout=10 * SLOW)
    conn.request('HEAD', '/orders/2')
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b''
    conn.close()

    # the canary's extra header: ignored in one location, not the other
    assert wait_counted(nginx, 2) == {'match': 2, 'mismatch': 0,
                                      'error': 0}
    assert wait_counted(nginx, 1, 'strict') == {'match': 0, 'mismatch': 1,
                                                'error': 0}
    assert [r[1] for r in b.requests('canary')].count('HEAD') == 1


def test_canary_down_counts_errors(nginx, backends):
    b = backends()
    dead = dead_socket()
    nginx.write_state({SERVICE: {'default': [
        instance('p1', b.addr('prod1'), env='prod'),
        instance('p2', b.addr('prod2'), env='prod'),
        instance('c1', '127.0.0.1:%d' % dead.getsockname()[1],
                 env='canary')]}})
    nginx.configure(location='            tce_diff sample=100 '
                             'timeout=2s name=orders;\n',
                    server_extra=METRICS_LOCATION)
    nginx.start()

    n = 2 if VALGRIND else 5
    for i in range(n):
        r = nginx.get('/orders/%d' % i)
        assert r.status == 200
        assert json.loads(r.body)['path'] == '/orders/%d' % i

    assert wait_counted(nginx, n) == {'match': 0, 'mismatch': 0,
                                      'error': n}
    dead.close()
