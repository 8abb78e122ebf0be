"""
tce_keepalive as a user sees it: real nginx (2 workers) with the module
in front of a real backend nginx that logs $connection and
$connection_requests.  Open connections are read from the kernel
(/proc/net/tcp*): a connection nginx closed is seen at once, with no
fixed sleep.
"""

import os
import signal
import sys
import threading

import pytest

import conftest
from conftest import SERVICE, instance, wait_for


def upstream(ka='tce_keepalive 16;', extra=''):
    return ('    upstream api {\n        tce_service %s;\n'
            '        %s\n%s    }\n' % (SERVICE, ka, extra))


def start(nginx, backend, ports, ka='tce_keepalive 16;', **kw):
    nginx.write_state({SERVICE: {'default': [
        instance('api-%d' % p, backend.addr(p)) for p in ports]}})
    nginx.configure(upstreams=upstream(ka), **kw)
    nginx.start()


def fetch(nginx, prefix, n):
    rs = [nginx.get('%s/%d' % (prefix, i)) for i in range(n)]
    assert [r.status for r in rs] == [200] * n, rs
    return rs


def backend_entries(backend, prefix, n):
    return wait_for(lambda: (lambda es: len(es) >= n and es)(
        [e for e in backend.entries() if e['uri'].startswith(prefix + '/')]),
        what='%d backend log entries for %s' % (n, prefix))


def tcp_sockets(ports):
    """[(local port, remote port, state)] of the TCP sockets of this
    machine with either end on one of ports (listening ones left out).
    States: '01' established, '08' close wait."""
    out = []
    for name in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(name) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            local = int(f[1].rsplit(':', 1)[1], 16)
            remote = int(f[2].rsplit(':', 1)[1], 16)
            if f[3] != '0A' and (local in ports or remote in ports):
                out.append((local, remote, f[3]))
    return out


def open_to(ports):
    """Connections from nginx to the backend ports that nginx has not
    closed (established, or closed by the backend only)."""
    return [s for s in tcp_sockets(ports)
            if s[1] in ports and s[2] in ('01', '08')]


def open_at_backend(ports):
    """The backend's side of connections on ports still open."""
    return [s for s in tcp_sockets(ports)
            if s[0] in ports and s[2] in ('01', '08')]


# ------------------------------------------------------------ reuse

def test_reuse_per_instance(backend, nginx):
    ports = backend.ok4
    start(nginx, backend, ports)
    n = 200
    fetch(nginx, '/reuse', n)
    got = backend_entries(backend, '/reuse', n)
    assert {e['port'] for e in got} == set(ports)
    conns = {(e['port'], e['connection']) for e in got}
    # sequential requests: at most one connection per instance per worker
    assert len(conns) <= len(ports) * nginx.nworkers, conns
    assert max(e['connection_requests'] for e in got) > 1
    # each backend connection served one instance only
    by_conn = {}
    for e in got:
        by_conn.setdefault(e['connection'], set()).add(e['port'])
    assert all(len(p) == 1 for p in by_conn.values()), by_conn


def test_no_reuse_without_directive(backend, nginx):
    start(nginx, backend, backend.ok4[:2], ka='')
    n = 30
    fetch(nginx, '/none', n)
    got = backend_entries(backend, '/none', n)
    assert all(e['connection_requests'] == 1 for e in got)
    assert len({e['connection'] for e in got}) == n


def test_bounded_least_recently_used_evicted(backend, nginx):
    # one worker, one cached connection, two instances taken in turn:
    # each new connection evicts the other instance's, none is reused
    ports = backend.ok4[:2]
    start(nginx, backend, ports, ka='tce_keepalive 1;', workers=1)
    n = 20
    fetch(nginx, '/lru', n)
    got = backend_entries(backend, '/lru', n)
    assert all(e['connection_requests'] == 1 for e in got), got
    # and the evicted ones are closed: at most one stays open
    wait_for(lambda: len(open_to(set(ports))) <= 1,
             what='evicted connections closed')


def test_requests_limit(backend, nginx):
    ports = backend.ok4[:1]
    start(nginx, backend, ports, ka='tce_keepalive 8 requests=3;')
    n = 30
    fetch(nginx, '/limit', n)
    got = backend_entries(backend, '/limit', n)
    per_conn = {}
    for e in got:
        per_conn[e['connection']] = max(per_conn.get(e['connection'], 0),
                                        e['connection_requests'])
    assert max(per_conn.values()) == 3, per_conn
    assert len(per_conn) >= n // 3
    # a connection that reached the limit is closed, not cached
    wait_for(lambda: len(open_to(set(ports))) <= nginx.nworkers,
             what='connections at the limit closed')


# ------------------------------------------------------------ closing

def test_idle_timeout_closes(backend, nginx):
    ports = backend.ok4[:2]
    start(nginx, backend, ports, ka='tce_keepalive 8 timeout=2s;')
    fetch(nginx, '/idle', 10)
    assert open_to(set(ports)), 'no connection cached after the requests'
    # nginx closes them after 2s idle; the backend sees the close
    wait_for(lambda: not open_to(set(ports))
             and not open_at_backend(set(ports)),
             timeout=8, what='idle connections closed by the timeout')
    fetch(nginx, '/after', 4)


@pytest.fixture
def short_backend(tmp_path, monkeypatch):
    """A backend that closes idle keepalive connections after 1s."""
    conf = conftest.BACKEND_CONF.replace('keepalive_timeout 60s;',
                                         'keepalive_timeout 1s;')
    assert conf != conftest.BACKEND_CONF
    monkeypatch.setattr(conftest, 'BACKEND_CONF', conf)
    b = conftest.Backend(str(tmp_path))
    b.start()
    yield b
    errors = b.stop()
    if errors:
        pytest.fail('\n'.join(errors))


def test_backend_closing_its_side(short_backend, nginx):
    backend = short_backend
    ports = backend.ok4[:2]
    start(nginx, backend, ports, ka='tce_keepalive 8;')
    fetch(nginx, '/before', 10)
    assert open_to(set(ports))
    # the backend closes them; nginx notices and closes its side too
    # (no connection left in close wait)
    wait_for(lambda: not open_to(set(ports)), timeout=8,
             what='connections closed by the backend dropped by nginx')
    fetch(nginx, '/next', 10)
    got = backend_entries(backend, '/next', 10)
    assert {e['port'] for e in got} == set(ports)
    log = conftest.read_from(nginx.error_log)
    assert 'prematurely closed' not in log, log


def test_removed_instance_closed_on_reload(backend, nginx):
    keep, gone = backend.ok4[0], backend.ok4[1]
    start(nginx, backend, [keep, gone], ka='tce_keepalive 8;')
    stop = threading.Event()
    results = []

    def client():
        i = 0
        while not stop.is_set():
            try:
                r = nginx.get('/loop/%d' % i, timeout=5)
                results.append(r.status)
            except Exception as e:      # any client error is a failure
                results.append(repr(e))
            i += 1

    t = threading.Thread(target=client)
    t.start()
    try:
        wait_for(lambda: len(results) >= 20, what='requests before reload')
        assert any(s[1] == gone for s in open_to({gone}))
        nginx.write_state({SERVICE: {'default': [
            instance('api-%d' % keep, backend.addr(keep))]}})
        nginx.reload(timeout=5)
        before = len(results)
        wait_for(lambda: len(results) >= before + 20,
                 what='requests after reload')
    finally:
        stop.set()
        t.join(10 * conftest.SLOW)
    assert all(s == 200 for s in results), [s for s in results if s != 200]
    wait_for(lambda: not open_to({gone}) and not open_at_backend({gone}),
             what='connections to the removed instance closed')


# -------------------------------------------- registry change, no reload

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'doubles'))

from consul_double import ConsulDouble  # noqa: E402


@pytest.fixture
def consul():
    d = ConsulDouble(jitter=False).start()
    yield d
    d.stop()


def answers(nginx, n=6):
    """The ports that answered n requests (a status when not 200: 503
    until discovery has the instances)."""
    rs = [nginx.get('/') for _ in range(n)]
    return {int(r.text) if r.status == 200 else r.status for r in rs}


def test_view_rebuild_carries_and_closes(backend, nginx, consul):
    keep, gone = backend.ok4[0], backend.ok4[1]
    consul.register(SERVICE, 'api-keep', '127.0.0.1', keep)
    consul.register(SERVICE, 'api-gone', '127.0.0.1', gone)
    nginx.configure(upstreams=upstream('tce_keepalive 8;'), state=False,
                    workers=1,
                    http_extra='    tce_consul %s wait=2s;\n' % consul.url)
    nginx.start()
    wait_for(lambda: answers(nginx) == {keep, gone},
             what='both instances routed')
    fetch(nginx, '/warm', 10)
    warm = backend_entries(backend, '/warm', 10)
    kept_conn = {e['connection'] for e in warm if e['port'] == keep}
    assert len(kept_conn) == 1, warm
    assert open_to({gone})

    # the next request rebuilds the worker's view: the departed
    # instance's idle connection is closed, the other one's carried
    # over and reused
    consul.deregister('api-gone')
    wait_for(lambda: answers(nginx) == {keep},
             what='routing to the remaining instance only')
    assert not open_to({gone})
    fetch(nginx, '/carried', 10)
    got = backend_entries(backend, '/carried', 10)
    assert {e['port'] for e in got} == {keep}
    assert {e['connection'] for e in got} == kept_conn, (kept_conn, got)


# ------------------------------------------------------------ exit

def test_graceful_quit_not_held_up(backend, nginx):
    ports = backend.ok4[:2]
    start(nginx, backend, ports, ka='tce_keepalive 8 timeout=600s;')
    fetch(nginx, '/q', 10)
    assert open_to(set(ports))
    nginx.proc.send_signal(signal.SIGQUIT)
    nginx.proc.wait(10 * conftest.SLOW)
    assert not open_to(set(ports))


def test_graceful_reload_not_held_up(backend, nginx):
    ports = backend.ok4[:2]
    start(nginx, backend, ports, ka='tce_keepalive 8 timeout=600s;')
    fetch(nginx, '/r', 10)
    old = open_to(set(ports))
    assert old
    nginx.reload(timeout=5)
    wait_for(lambda: not set(open_to(set(ports))) & set(old),
             what="the old workers' idle connections closed")
    fetch(nginx, '/r2', 6)


# ------------------------------------------------------------ nginx -t

BAD = {
    'zero connections': ('tce_keepalive 0;', ['tce_keepalive', '"0"']),
    'not a number': ('tce_keepalive many;', ['tce_keepalive', '"many"']),
    'bad timeout': ('tce_keepalive 8 timeout=soon;',
                    ['tce_keepalive', '"timeout=soon"']),
    'zero timeout': ('tce_keepalive 8 timeout=0;',
                     ['tce_keepalive', '"timeout=0"']),
    'bad requests': ('tce_keepalive 8 requests=-1;',
                     ['tce_keepalive', '"requests=-1"']),
    'unknown parameter': ('tce_keepalive 8 idle=5;',
                          ['tce_keepalive', '"idle=5"']),
    'too many parameters': ('tce_keepalive 8 timeout=1s requests=2 x;',
                            ['tce_keepalive', 'number of arguments']),
    'duplicate': ('tce_keepalive 8; tce_keepalive 8;',
                  ['tce_keepalive', 'duplicate']),
    'with keepalive after': ('tce_keepalive 8; keepalive 8;',
                             ['"tce_keepalive"', '"keepalive"', 'api']),
    'with keepalive before': ('keepalive 8; tce_keepalive 8;',
                              ['"tce_keepalive"', '"keepalive"', 'api']),
}


@pytest.mark.parametrize('case', sorted(BAD))
def test_nginx_t_rejects(nginx, case):
    line, words = BAD[case]
    nginx.write_state({SERVICE: {'default': [
        instance('api-1', '127.0.0.1:9001')]}})
    nginx.configure(upstreams=upstream(line))
    rc, out = nginx.check()
    assert rc != 0, out
    emerg = [l for l in nginx.masked(out).splitlines() if '[emerg]' in l]
    assert emerg and all(w in emerg[0] for w in words), (words, out)


def test_nginx_t_before_tce_service(nginx):
    nginx.write_state({SERVICE: {'default': []}})
    nginx.configure(upstreams='    upstream api {\n'
                    '        tce_keepalive 8;\n'
                    '        tce_service %s;\n    }\n' % SERVICE)
    rc, out = nginx.check()
    assert rc != 0
    assert '"tce_keepalive" must come after "tce_service"' in out, out


def test_nginx_t_accepts(nginx):
    nginx.write_state({SERVICE: {'default': []}})
    nginx.configure(upstreams=upstream(
        'tce_keepalive 32 timeout=90s requests=500;'))
    rc, out = nginx.check()
    assert rc == 0, out


# ------------------------------------------------- a stale idle connection

class DroppingBackend:
    """A real HTTP/1.1 server that answers the first request of every
    connection with keep-alive, then drops the connection, unanswered,
    when a second request comes on it: what a backend does when its own
    keepalive timeout ends just as nginx reuses the connection."""

    def __init__(self):
        self.sock = conftest.socket.socket()
        self.sock.bind(('127.0.0.1', conftest.free_port()))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.served = 0
        self.dropped = 0
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,),
                             daemon=True).start()

    def serve(self, c):
        with c:
            n = 0
            buf = b''
            while True:
                try:
                    data = c.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                if b'\r\n\r\n' not in buf:
                    continue
                buf = b''
                n += 1
                if n > 1:
                    self.dropped += 1
                    return
                self.served += 1
                body = b'%d\n' % self.port
                c.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\n'
                          b'\r\n%s' % (len(body), body))

    def stop(self):
        self.sock.close()


@pytest.fixture
def dropping():
    d = DroppingBackend()
    yield d
    d.stop()


@pytest.mark.parametrize('ka', ['tce_keepalive 16;', 'keepalive 16;'],
                         ids=['tce_keepalive', 'nginx keepalive'])
def test_stale_idle_connection_is_not_the_instances_fault(backend, nginx,
                                                          dropping, ka):
    # max_fails=1: were the dropped connection counted as the instance's
    # failure, it would get nothing for 30 s
    nginx.write_state({SERVICE: {'default': [
        instance('drop', '127.0.0.1:%d' % dropping.port),
        instance('ok', backend.addr(backend.ok4[0]))]}})
    nginx.configure(upstreams=(
        '    upstream api {\n        tce_service %s max_fails=1 '
        'fail_timeout=30s;\n        %s\n    }\n' % (SERVICE, ka)),
        workers=1)
    nginx.start()

    rs = fetch(nginx, '/stale', 20)
    ports = [int(r.text) for r in rs]
    # every request answered, the dropping instance kept its share
    assert ports.count(dropping.port) == 10, ports
    assert dropping.dropped >= 1, 'no idle connection was ever reused'


def test_stale_idle_connection_single_instance(nginx, dropping):
    nginx.write_state({SERVICE: {'default': [
        instance('drop', '127.0.0.1:%d' % dropping.port)]}})
    nginx.configure(upstreams=upstream(), workers=1)
    nginx.start()

    rs = fetch(nginx, '/single', 10)
    assert {int(r.text) for r in rs} == {dropping.port}
    assert dropping.dropped >= 1, 'no idle connection was ever reused'


# ------------------------------------ failures on a kept-alive connection

class SwitchBackend:
    """A real HTTP/1.1 server answering "<port>\\n" with keep-alive on
    every connection, until the test switches its mode: 'hang' (reads
    each request, never answers, keeps the connection) or '500' (answers
    500 with keep-alive).  Counts the requests received per mode and the
    connections accepted."""

    def __init__(self):
        self.sock = conftest.socket.socket()
        self.sock.bind(('127.0.0.1', conftest.free_port()))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.mode = 'ok'
        self.received = {'ok': 0, 'hang': 0, '500': 0}
        self.connections = 0
        self.held = []
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.serve, args=(c,),
                             daemon=True).start()

    def serve(self, c):
        buf = b''
        while True:
            try:
                data = c.recv(65536)
            except OSError:
                break
            if not data:
                break
            buf += data
            if b'\r\n\r\n' not in buf:
                continue
            buf = b''
            mode = self.mode
            self.received[mode] += 1
            if mode == 'hang':
                self.held.append(c)     # never answered, never closed
                return
            status = b'200 OK' if mode == 'ok' else b'500 Error'
            body = b'%d\n' % self.port
            try:
                c.sendall(b'HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s'
                          % (status, len(body), body))
            except OSError:
                break
        c.close()

    def stop(self):
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.fixture
def switch():
    s = SwitchBackend()
    yield s
    s.stop()


KEEPALIVES = {'tce_keepalive': 'tce_keepalive 16;',
              'nginx keepalive': 'keepalive 16;'}


def start_switch(nginx, backend, switch, ka, location=''):
    nginx.write_state({SERVICE: {'default': [
        instance('switch', '127.0.0.1:%d' % switch.port),
        instance('ok', backend.addr(backend.ok4[0]))]}})
    nginx.configure(upstreams=(
        '    upstream api {\n        tce_service %s max_fails=1 '
        'fail_timeout=30s;\n        %s\n    }\n' % (SERVICE, ka)),
        location=location, workers=1)
    nginx.start()
    # both instances in turn: the switchable one's connection is cached
    rs = fetch(nginx, '/warm', 6)
    assert [int(r.text) for r in rs].count(switch.port) == 3, rs
    assert switch.connections == 1, 'its connection was not reused'


@pytest.mark.parametrize('kind', sorted(KEEPALIVES))
def test_timeout_on_kept_alive_connection_goes_elsewhere(backend, nginx,
                                                         switch, kind):
    # the instance hangs on the connection nginx reuses: the timeout is
    # its failure, the request is retried on the healthy instance
    timeout = max(1, int(round(conftest.SLOW)))
    start_switch(nginx, backend, switch, KEEPALIVES[kind],
                 location='            proxy_read_timeout %ds;\n' % timeout)
    switch.mode = 'hang'
    rs = fetch(nginx, '/hung', 4)
    assert {int(r.text) for r in rs} == {backend.ok4[0]}, rs
    # tried once on its kept-alive connection, then left out (max_fails)
    assert switch.received['hang'] == 1, switch.received
    es = nginx.wait_entries('/hung/', 4)
    tried = [e['addrs'] for e in es if len(e['addrs']) > 1]
    assert tried == [['127.0.0.1:%d' % switch.port,
                      backend.addr(backend.ok4[0])]], es


@pytest.mark.parametrize('kind', sorted(KEEPALIVES))
def test_5xx_on_kept_alive_connection_counted_and_retried_elsewhere(
        backend, nginx, switch, kind):
    start_switch(nginx, backend, switch, KEEPALIVES[kind],
                 location='            proxy_next_upstream error timeout '
                          'http_500;\n')
    switch.mode = '500'
    rs = fetch(nginx, '/five', 6)
    assert {int(r.text) for r in rs} == {backend.ok4[0]}, rs
    # one 500, counted (max_fails=1): no second try there, no more
    # requests for fail_timeout
    assert switch.received['500'] == 1, switch.received
    es = nginx.wait_entries('/five/', 6)
    assert [e['upstream_status'] for e in es].count('500, 200') == 1, es
    assert all(e['upstream_status'] in ('200', '500, 200') for e in es), es


@pytest.mark.parametrize('change', ['drained', 'moved'])
def test_view_rebuild_closes_drained_or_moved(backend, nginx, consul,
                                              change):
    # no reload (a reload closes every idle connection of the old
    # workers anyway): the same worker rebuilds its view, and the idle
    # connection to an instance drained (weight 0) or moved to another
    # address is closed, not reused
    keep, other, new = backend.ok4[0], backend.ok4[1], backend.ok4[2]
    consul.register(SERVICE, 'api-keep', '127.0.0.1', keep)
    consul.register(SERVICE, 'api-other', '127.0.0.1', other)
    nginx.configure(upstreams=upstream('tce_keepalive 8;'), state=False,
                    workers=1,
                    http_extra='    tce_consul %s wait=2s;\n' % consul.url)
    nginx.start()
    wait_for(lambda: answers(nginx) == {keep, other},
             what='both instances routed')
    fetch(nginx, '/warm', 10)
    assert open_to({other})
    if change == 'drained':
        consul.register(SERVICE, 'api-other', '127.0.0.1', other, weight=0)
        want = {keep}
    else:
        consul.register(SERVICE, 'api-other', '127.0.0.1', new)
        want = {keep, new}
    wait_for(lambda: answers(nginx) == want,
             what='routing after the change')
    wait_for(lambda: not open_to({other}) and not open_at_backend({other}),
             what='the idle connection to the old instance closed')
    fetch(nginx, '/after', 6)
    got = backend_entries(backend, '/after', 6)
    assert {e['port'] for e in got} == want, got


def test_admin_drain_closes_idle_connections(backend, nginx):
    # an operator drains an instance (admin PATCH drain: true, no
    # reload: a reload would close every idle connection anyway).  Its
    # idle connections, cached in both workers, close on the backend's
    # side; no request sent after the PATCH reaches it; no client sees
    # an error meanwhile
    from admin_helpers import TOKEN, admin_location, call
    drained, other = backend.ok4[0], backend.ok4[1]
    token_file = os.path.join(nginx.dir, 'admin.tokens')
    with open(token_file, 'w') as f:
        f.write('%s deployer\n' % TOKEN)
    nginx.write_state({SERVICE: {'default': [
        instance('api-d', backend.addr(drained)),
        instance('api-o', backend.addr(other))]}})
    nginx.configure(upstreams=upstream('tce_keepalive 16;'),
                    server_extra=admin_location(token_file))
    nginx.start()
    fetch(nginx, '/warm', 40)
    warm = backend_entries(backend, '/warm', 40)
    assert {e['port'] for e in warm} == {drained, other}, warm
    assert max(e['connection_requests'] for e in warm) > 1, warm
    assert open_at_backend({drained})
    r = call(nginx, 'PATCH',
             '/api/v1/services/%s/clusters/default/instances/api-d'
             % SERVICE, body={'drain': True}, token=TOKEN)
    assert r.status == 200, r
    # each worker rebuilds its view at its next request (reuseport
    # spreads these over both): every one of them is answered
    statuses = []

    def closed():
        statuses.append(nginx.get('/after/%d' % len(statuses)).status)
        return not open_at_backend({drained})

    wait_for(closed, 10 * conftest.SLOW,
             what="the drained instance's idle connections closed")
    fetch(nginx, '/after/more', 10)
    assert statuses == [200] * len(statuses), statuses
    got = backend_entries(backend, '/after', len(statuses) + 10)
    assert {e['port'] for e in got} == {other}, got
    assert not [e for e in got if e['connection'] in
                {w['connection'] for w in warm if w['port'] == drained}]
