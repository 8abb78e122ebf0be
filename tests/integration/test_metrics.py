"""
Request metrics (tce_metrics) as a scraper sees them: real nginx with the
module (2 workers) in front of a real backend nginx; every figure is
checked against what the clients got and what the access log says.
Counting happens in the log phase, after the response went out: every
check polls the scrape with a deadline.
"""

import json
import os
import re
import subprocess

import pytest

from conftest import SERVICE, instance, wait_for


PROMTOOL = '/usr/bin/promtool'

METRICS_LOCATION = """\
        location = /metrics {
            access_log off;
            tce_metrics;
        }
"""

# one line per proxied request: what the log phase sees
SIZES_LOG = """\
    log_format tce_sizes '$pid|$request_length|$bytes_sent|$status';
"""

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """Prometheus text -> {(name, ((label, value), ...)): float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith('#'):
            continue
        m = SAMPLE.match(line)
        assert m, 'bad sample line: %r' % line
        labels = tuple(sorted(LABEL.findall(m.group(3) or '')))
        key = (m.group(1), labels)
        assert key not in out, 'duplicate sample: %r' % line
        out[key] = float(m.group(4))
    return out


def select(samples, name, **labels):
    """The samples of a name whose labels include `labels`."""
    return {dict(k[1]).get('le', dict(k[1]).get('class', '')) + '|'
            + dict(k[1]).get('source', '') + '|'
            + dict(k[1]).get('instance', ''): v
            for k, v in samples.items()
            if k[0] == name and all(dict(k[1]).get(a) == b
                                    for a, b in labels.items())}


def total(samples, name, **labels):
    return sum(v for k, v in samples.items()
               if k[0] == name and all(dict(k[1]).get(a) == b
                                       for a, b in labels.items()))


def start(nginx, services, upstream=None, expire=None, zone='tce_zone tce '
          '1m;', location=''):
    nginx.write_state(services)
    http_extra = SIZES_LOG
    if expire:
        http_extra += '    tce_metrics_expire %s;\n' % expire
    nginx.configure(
        upstreams=upstream or ('    upstream api {\n        tce_service '
                               '%s;\n    }\n' % SERVICE),
        http_extra=http_extra, server_extra=METRICS_LOCATION, zone=zone,
        location=('            access_log %s/sizes.log tce_sizes;\n'
                  '            access_log %s tce;\n%s'
                  % (nginx.dir, nginx.access_log, location)))
    nginx.start()


def scrape(nginx, headers=None, path='/metrics'):
    r = nginx.get(path, headers=headers)
    assert r.status == 200, r
    return r


def metrics(nginx):
    return parse(scrape(nginx).text)


def wait_requests(nginx, n, timeout=10, **labels):
    """Polls until tce_requests_total (summed over labels) reaches n."""
    def done():
        m = metrics(nginx)
        t = total(m, 'tce_requests_total', **labels)
        assert t <= n, 'more requests counted (%d) than sent (%d)' % (t, n)
        return m if t == n else None
    return wait_for(done, timeout, what='%d requests counted' % n)


def sizes(nginx):
    path = os.path.join(nginx.dir, 'sizes.log')
    with open(path) as f:
        return [tuple(int(x) for x in line.split('|'))
                for line in f.read().splitlines()]


def promtool_check(text):
    p = subprocess.run([PROMTOOL, 'check', 'metrics'], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=30)
    return p.returncode, p.stdout.decode()


def fetch(nginx, prefix, n):
    return [nginx.get('%s/%d' % (prefix, i)) for i in range(n)]


# ----------------------------------------------------------------- counts

def test_exact_counts_across_workers_with_5xx(backend, nginx):
    start(nginx, {SERVICE: {'default': [
        instance('ok-1', backend.addr(backend.ok4[0])),
        instance('ok-2', backend.addr(backend.ok4[1])),
        instance('err-500', backend.addr(backend.p500))]}})

    n = 120
    rs = fetch(nginx, '/count', n)
    got = {s: sum(1 for r in rs if r.status == s) for s in (200, 500)}
    assert got[200] + got[500] == n and got[500] > 0

    m = wait_requests(nginx, n)
    entries = nginx.wait_entries('/count', n)
    assert len({e['pid'] for e in entries}) == 2, 'both workers served'

    base = dict(service=SERVICE, cluster='default', env='prod')
    assert select(m, 'tce_requests_total', **base) == {
        '2xx|upstream|': got[200], '5xx|upstream|': got[500]}

    # per instance: exactly what the access log says each one answered
    by_addr = {}
    for e in entries:
        by_addr[e['addrs'][-1]] = by_addr.get(e['addrs'][-1], 0) + 1
    for iid, port in (('ok-1', backend.ok4[0]), ('ok-2', backend.ok4[1]),
                      ('err-500', backend.p500)):
        cls = '5xx' if iid == 'err-500' else '2xx'
        want = by_addr.get(backend.addr(port), 0)
        assert select(m, 'tce_instance_requests_total', instance=iid) == (
            {cls + '||' + iid: want} if want else {}), iid
        assert m[('tce_instance_upstream_response_seconds_count',
                  tuple(sorted(dict(base, instance=iid).items())))] == want
        assert m[('tce_instance_state', tuple(sorted(
            dict(base, instance=iid, state='up').items())))] == 1
        assert m[('tce_instance_weight', tuple(sorted(
            dict(base, instance=iid).items())))] == 1

    # bytes: exactly the sums of $request_length and $bytes_sent
    logged = wait_for(lambda: len(sizes(nginx)) == n and sizes(nginx), 5,
                      what='sizes log')
    assert total(m, 'tce_received_bytes_total', **base) == sum(
        s[1] for s in logged)
    assert total(m, 'tce_sent_bytes_total', **base) == sum(
        s[2] for s in logged)

    assert total(m, 'tce_requests_in_flight', **base) == 0
    assert total(m, 'tce_instance_requests_in_flight') == 0
    assert total(m, 'tce_upstream_retries_total') == 0
    assert total(m, 'tce_metrics_dropped_total') == 0


def test_dead_backend_502_and_retries(backend, nginx):
    start(nginx, {SERVICE: {'default': [
        instance('dead', backend.addr(backend.dead)),
        instance('ok', backend.addr(backend.ok4[0]))]}})

    n = 40
    rs = fetch(nginx, '/retry', n)
    assert [r.status for r in rs] == [200] * n

    m = wait_requests(nginx, n)
    entries = nginx.wait_entries('/retry', n)
    retried = sum(1 for e in entries if len(e['addrs']) == 2)
    assert retried > 0

    base = dict(service=SERVICE, cluster='default', env='prod')
    assert select(m, 'tce_requests_total', **base) == {
        '2xx|upstream|': n}
    assert total(m, 'tce_upstream_retries_total', **base) == retried
    assert total(m, 'tce_upstream_connect_failures_total', **base) == retried
    assert total(m, 'tce_upstream_timeouts_total', **base) == 0
    # each failed attempt counts against the dead instance, apart from
    # the final responses
    assert select(m, 'tce_instance_requests_total', instance='dead') == {
        '5xx||dead': retried}
    assert select(m, 'tce_instance_requests_total', instance='ok') == {
        '2xx||ok': n}
    assert total(m, 'tce_upstream_response_duration_seconds_count',
                 **base) == n + retried


def test_502_from_nginx_and_503_when_empty(backend, nginx):
    upstreams = ('    upstream api {\n        tce_service %s;\n    }\n'
                 '    upstream empty {\n        tce_service %s;\n    }\n'
                 % (SERVICE, 'demo.web.none'))
    start(nginx, {SERVICE: {'default': [
        instance('dead', backend.addr(backend.dead))]},
        'demo.web.none': {'default': []}},
        upstream=upstreams)
    nginx.allowed_log.add('[error]')

    n = 10
    assert [r.status for r in fetch(nginx, '/dead', n)] == [502] * n
    m = wait_requests(nginx, n, service=SERVICE)
    assert select(m, 'tce_requests_total', service=SERVICE) == {
        '5xx|nginx|': n}
    assert total(m, 'tce_upstream_connect_failures_total',
                 service=SERVICE) == n
    assert total(m, 'tce_upstream_retries_total', service=SERVICE) == 0
