"""
Operator experience: what an nginx operator sees when something from
outside is odd (Consul answering an HTML page of bytes), when a reload
would lose traffic, and what is in effect.  Real nginx, real backend,
the Consul API double in this process; every wait polls with a
deadline.
"""

import json
import os
import re
import sys

import pytest

from conftest import SERVICE, file_size, read_from, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'doubles'))

from consul_double import ConsulDouble  # noqa: E402


HEALTH = '/v1/health/service/' + SERVICE


@pytest.fixture
def consul():
    d = ConsulDouble(jitter=False).start()
    yield d
    d.stop()


def start_consul(nginx, consul, params='wait=1s', extra='', state=False,
                 upstreams=None):
    http_extra = '    tce_consul %s %s;\n' % (consul.url, params)
    http_extra += '    tce_consul_snapshot %s/snap.json;\n' % nginx.dir
    http_extra += extra
    kw = {'upstreams': upstreams} if upstreams else {}
    nginx.configure(http_extra=http_extra, state=state, **kw)
    nginx.start()


def ports_seen(nginx, n=12):
    out = set()
    for _ in range(n):
        r = nginx.get('/')
        out.add(int(r.text) if r.status == 200 else None)
    return out


def routes_to(nginx, ports, timeout=5):
    want = set(ports)
    wait_for(lambda: ports_seen(nginx) == want, timeout,
             what='routing to exactly %s' % sorted(want))


def status_raw(nginx):
    """/tce/status as bytes, asserting a 200 that is valid JSON."""
    r = nginx.get('/tce/status')
    assert r.status == 200, r
    return json.loads(r.body.decode('utf-8'))


def printable(text):
    return all(0x20 <= ord(c) < 0x7f for c in text)


# ------------------------------------------- strings from outside (crash)

# an HTML error page of a proxy in front of Consul, with bytes that are
# not UTF-8, control bytes (an escape sequence, a NUL, a bell) and a
# forged log line
UGLY_BODY = (b'<html><body>\xff\xfe bad \xc3\x28 gateway\x1b[31m red'
             b'\x00nul\x07 \\ back\n2026/01/01 [emerg] forged\r\n'
             b'</body></html>\n')


def test_consul_error_body_escaped_in_status_and_log(backend, nginx,
                                                     consul):
    start_consul(nginx, consul)
    consul.register(SERVICE, 'api-1', '127.0.0.1', backend.ok4[0])
    routes_to(nginx, [backend.ok4[0]])
    since = file_size(nginx.error_log)
    # the "[emerg]" quoted, escaped, inside the one error line
    nginx.allowed_log.add('forged')

    consul.add_fault('status', count=-1, path=HEALTH, status=500,
                     body=UGLY_BODY)

    def failed():
        d = status_raw(nginx)['services'][SERVICE].get('discovery', {})
        return d.get('errors', 0) >= 2 and d
    d = wait_for(failed, 10, what='two failed queries in the status')

    # valid JSON (status_raw), the error quoted with its bytes escaped
    err = d['last_error']
    assert printable(err), err
    assert err.startswith('HTTP 500: <html><body>\\xFF\\xFE bad \\xC3('), err
    assert '\\x1B[31m red\\x00nul\\x07 \\x5C back' in err, err
    assert '\\x0A2026/01/01' in err, err
    # traffic kept, on the last good set
    assert ports_seen(nginx) == {backend.ok4[0]}

    # the error log line: printable, on one line, the same text
    line = nginx.wait_error_line(lambda l: 'HTTP 500' in l, since,
                                 what='the error logged')
    assert printable(line), line
    assert err in line, (err, line)
    assert not any('forged' in l and 'HTTP 500' not in l
                   for l in read_from(nginx.error_log, since).splitlines())
