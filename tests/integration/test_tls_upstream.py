"""
TLS upstreams (proxy_pass https://, grpc_pass grpcs://) of a tce_service
upstream, as a user sees them: a real stock nginx backend serving TLS
with certificates made by the openssl command line (a test CA,
tests/doubles/tls_certs.py), its access log recording
$ssl_session_reused ("r" when the handshake resumed a session, "."
for a full handshake) and the SNI name it was sent.
"""

import os
import subprocess
import sys

import pytest

import conftest
from conftest import SERVICE, instance, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'doubles'))

from consul_double import ConsulDouble  # noqa: E402
from tls_certs import make_ca, make_server_cert  # noqa: E402


TLS_BACKEND_CONF = """\
worker_processes 1;
{user}
pid {dir}/tls.pid;
error_log {dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    log_format t '$server_port|$ssl_session_reused|$connection|'
                 '$connection_requests|$request_uri|$ssl_server_name|'
                 '$server_protocol';
    access_log {dir}/access.log t;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    default_type text/plain;
    keepalive_requests 10000;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_session_cache shared:tls:1m;

    server {{
{listens}
        location / {{ return 200 "$server_port\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{h2} ssl http2;
        location / {{ return 200 "$server_port $server_protocol\\n"; }}
    }}
}}
"""

FIELDS = ('port', 'reused', 'connection', 'connection_requests', 'uri',
          'sni', 'protocol')


class TlsBackend:
    """A stock nginx answering "$server_port\\n" over TLS on N ports
    (HTTP/1.x) and on one more port with HTTP/2 (for grpcs), with a
    certificate for backend.test and 127.0.0.1 signed by a test CA."""

    def __init__(self, root, n=3):
        self.dir = os.path.join(root, 'tls-backend')
        os.makedirs(self.dir)
        self.ca = make_ca(self.dir, 'ca')
        self.cert, self.key = make_server_cert(
            self.dir, self.ca, 'backend',
            san='DNS:backend.test,IP:127.0.0.1')
        self.other_ca = make_ca(self.dir, 'other-ca')
        self.ports = [conftest.free_port() for _ in range(n)]
        self.h2 = conftest.free_port()
        self.access_log = os.path.join(self.dir, 'access.log')
        self.error_log = os.path.join(self.dir, 'error.log')
        self.proc = None

    def addr(self, port):
        return '127.0.0.1:%d' % port

    def start(self):
        conf = TLS_BACKEND_CONF.format(
            dir=self.dir, cert=self.cert, key=self.key, h2=self.h2,
            listens='\n'.join('        listen 127.0.0.1:%d ssl;' % p
                              for p in self.ports),
            user='user root;' if os.geteuid() == 0 else '')
        path = os.path.join(self.dir, 'tls.conf')
        with open(path, 'w') as f:
            f.write(conf)
        self.stderr = open(os.path.join(self.dir, 'stderr.log'), 'wb')
        self.proc = subprocess.Popen(
            [conftest.NGINX_BIN, '-p', self.dir + '/', '-c', path,
             '-g', 'daemon off;'],
            stdout=self.stderr, stderr=self.stderr)

        def listening():
            if self.proc.poll() is not None:
                pytest.fail('TLS backend exited: %s'
                            % conftest.read_from(self.error_log))
            return all(('127.0.0.1', p) in listeners()
                       for p in self.ports + [self.h2])

        wait_for(listening, 10, what='TLS backend to listen')

    def entries(self, prefix):
        out = []
        for line in conftest.read_from(self.access_log).splitlines():
            e = dict(zip(FIELDS, line.split('|')))
            if e['uri'].startswith(prefix):
                e['port'] = int(e['port'])
                e['connection_requests'] = int(e['connection_requests'])
                out.append(e)
        return out

    def wait_entries(self, prefix, n):
        return wait_for(lambda: (lambda es: len(es) >= n and es)(
            self.entries(prefix)),
            what='%d TLS backend log entries for %s' % (n, prefix))

    def stop(self):
        errors = []
        if self.proc is not None:
            err = conftest.stop_process(self.proc)
            if err:
                errors.append('TLS backend: ' + err)
            self.stderr.close()
        text = conftest.read_from(self.error_log)
        errors += ['TLS backend: ' + l for l in conftest.bad_log_lines(text)]
        return errors


def listeners():
    """(address, port) of the listening IPv4 TCP sockets."""
    out = set()
    with open('/proc/net/tcp') as f:
        for line in f.readlines()[1:]:
            f = line.split()
            if f[3] == '0A':
                host, port = f[1].split(':')
                ip = '.'.join(str(int(host[i:i + 2], 16))
                              for i in (6, 4, 2, 0))
                out.add((ip, int(port, 16)))
    return out


@pytest.fixture
def tls_backend(tmp_path):
    b = TlsBackend(str(tmp_path))
    b.start()
    yield b
    errors = b.stop()
    if errors:
        pytest.fail('\n'.join(errors))


def upstream(extra=''):
    return ('    upstream api {\n        tce_service %s;\n%s    }\n'
            % (SERVICE, extra))


def tls_location(directives='', scheme='https', pass_='proxy_pass'):
    return ('        location /s/ {\n            %s %s://api;\n'
            '%s        }\n' % (pass_, scheme, directives))


def start(nginx, tb, ports=None, directives='', extra='', workers=2,
          scheme='https', pass_='proxy_pass'):
    ports = tb.ports if ports is None else ports
    nginx.write_state({SERVICE: {'default': [
        instance('tls-%d' % p, tb.addr(p)) for p in ports]}})
    nginx.configure(upstreams=upstream(extra), workers=workers,
                    server_extra=tls_location(directives, scheme, pass_))
    nginx.start()


def fetch(nginx, prefix, n, status=200):
    rs = [nginx.get('%s/%d' % (prefix, i)) for i in range(n)]
    assert [r.status for r in rs] == [status] * n, rs
    return rs


def full_handshakes(entries):
    return [e for e in entries if e['reused'] != 'r']


# ------------------------------------------------------------ https

def test_https_requests_and_session_reuse(tls_backend, nginx):
    tb = tls_backend
    start(nginx, tb)
    n = 24
    rs = fetch(nginx, '/s/reuse', n)
    assert {int(r.text) for r in rs} == set(tb.ports)
    got = tb.wait_entries('/s/reuse', n)
    # no upstream keepalive: one TLS handshake per request; a full one
    # at most once per worker and instance, every other one resumed
    assert all(e['connection_requests'] == 1 for e in got), got
    full = full_handshakes(got)
    assert len(full) <= nginx.nworkers * len(tb.ports), full
    assert len(got) - len(full) >= n - nginx.nworkers * len(tb.ports)


def test_https_session_reuse_off(tls_backend, nginx):
    tb = tls_backend
    start(nginx, tb, directives='            proxy_ssl_session_reuse off;\n')
    n = 10
    fetch(nginx, '/s/off', n)
    got = tb.wait_entries('/s/off', n)
    assert all(e['reused'] == '.' for e in got), got


def test_https_with_tce_keepalive(tls_backend, nginx):
    tb = tls_backend
    start(nginx, tb, extra='        tce_keepalive 8;\n',
          directives='            proxy_http_version 1.1;\n'
                     '            proxy_set_header Connection "";\n')
    n = 20
    fetch(nginx, '/s/ka', n)
    got = tb.wait_entries('/s/ka', n)
    assert {e['port'] for e in got} == set(tb.ports)
    # sequential requests: at most one connection per instance and
    # worker, each reused
    conns = {(e['port'], e['connection']) for e in got}
    assert len(conns) <= nginx.nworkers * len(tb.ports), conns
    assert max(e['connection_requests'] for e in got) > 1


# ------------------------------------------------------------ verify

VERIFY = ('            proxy_ssl_verify on;\n'
          '            proxy_ssl_trusted_certificate %s;\n'
          '            proxy_ssl_name %s;\n'
          '            proxy_ssl_server_name on;\n')


def test_verify_right_ca_and_name(tls_backend, nginx):
    tb = tls_backend
    start(nginx, tb, directives=VERIFY % (tb.ca.cert, 'backend.test'))
    n = 8
    fetch(nginx, '/s/verify', n)
    got = tb.wait_entries('/s/verify', n)
    # the name sent (SNI) is proxy_ssl_name's
    assert {e['sni'] for e in got} == {'backend.test'}, got
    assert len(full_handshakes(got)) < n


@pytest.mark.parametrize('case', ['wrong name', 'wrong CA'])
def test_verify_refused(tls_backend, nginx, case):
    tb = tls_backend
    if case == 'wrong name':
        directives = VERIFY % (tb.ca.cert, 'other.test')
        error = 'upstream SSL certificate does not match "other.test"'
    else:
        directives = VERIFY % (tb.other_ca.cert, 'backend.test')
        error = 'upstream SSL certificate verify error'
    start(nginx, tb, directives=directives)
    since = conftest.file_size(nginx.error_log)
    rs = fetch(nginx, '/s/refused', 4, status=502)
    # nginx's own 502 page, not a backend's answer
    assert all(b'502 Bad Gateway' in r.body for r in rs), rs
    nginx.wait_error_line(lambda l: error in l, since,
                          what='"%s" in the error log' % error)
    assert not tb.entries('/s/refused'), 'a request reached the backend'


# ------------------------------------------------------------ grpcs

def test_grpcs(tls_backend, nginx):
    tb = tls_backend
    start(nginx, tb, ports=[tb.h2], scheme='grpcs', pass_='grpc_pass')
    n = 6
    rs = fetch(nginx, '/s/grpcs', n)
    assert {r.text for r in rs} == {'%d HTTP/2.0\n' % tb.h2}, rs
    got = tb.wait_entries('/s/grpcs', n)
    assert {e['protocol'] for e in got} == {'HTTP/2.0'}
    full = full_handshakes(got)
    assert len(full) <= nginx.nworkers, full


# ----------------------------------------------- view rebuild, no reload

@pytest.fixture
def consul():
    d = ConsulDouble(jitter=False).start()
    yield d
    d.stop()


def routed(nginx, ports, prefix='/s/route'):
    def answers():
        rs = [nginx.get(prefix) for _ in range(3 * len(ports))]
        # 503 until discovery has the instances
        return {int(r.text.split()[0]) if r.status == 200 else r.status
                for r in rs}
    return wait_for(lambda: answers() == set(ports),
                    what='routing to %s' % sorted(ports))


def test_sessions_carried_across_rebuild(tls_backend, nginx, consul):
    # one server{} of the backend listens on a, b and c: a session from
    # one of them resumes on the others
    tb = tls_backend
    a, b, c = tb.ports
    consul.register(SERVICE, 'tls-a', '127.0.0.1', a)
    nginx.configure(upstreams=upstream(), state=False, workers=1,
                    server_extra=tls_location(),
                    http_extra='    tce_consul %s wait=2s;\n' % consul.url)
    nginx.start()
    routed(nginx, [a])
    fetch(nginx, '/s/warm', 4)

    def full(port):
        return [e for e in full_handshakes(tb.entries('/s/'))
                if e['port'] == port]

    # a new instance: the worker rebuilds its view; instance a keeps its
    # session: one full handshake to a in all
    consul.register(SERVICE, 'tls-b', '127.0.0.1', b)
    routed(nginx, [a, b])
    fetch(nginx, '/s/after', 6)
    assert len(full(a)) == 1, tb.entries('/s/')
    assert len(full(b)) == 1, tb.entries('/s/')

    # instance a moves to c (same id): its session stays behind, the
    # first handshake to c is a full one; b keeps its session
    consul.register(SERVICE, 'tls-a', '127.0.0.1', c)
    routed(nginx, [b, c])
    fetch(nginx, '/s/moved', 6)
    assert len(full(b)) == 1, tb.entries('/s/')
    assert len(full(c)) == 1, tb.entries('/s/')
    to_c = [e for e in tb.entries('/s/') if e['port'] == c]
    assert to_c[0]['reused'] == '.', to_c

    # the instance leaves: its session is freed (memcheck checks it)
    consul.deregister('tls-a')
    routed(nginx, [b])
