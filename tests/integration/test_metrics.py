"""
Request metrics (tce_metrics) as a scraper sees them: real nginx with the
module (2 workers) in front of a real backend nginx; every figure is
checked against what the clients got and what the access log says.
Counting happens in the log phase, after the response went out: every
check polls the scrape with a deadline.
"""

import http.server
import json
import os
import re
import subprocess
import threading
import time

import pytest

from conftest import SERVICE, VALGRIND, instance, wait_for


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
          '1m;', location='', server_extra=''):
    nginx.write_state(services)
    http_extra = SIZES_LOG
    if expire:
        http_extra += '    tce_metrics_expire %s;\n' % expire
    nginx.configure(
        upstreams=upstream or ('    upstream api {\n        tce_service '
                               '%s;\n    }\n' % SERVICE),
        http_extra=http_extra, server_extra=METRICS_LOCATION + server_extra,
        zone=zone,
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


def read_lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


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
        upstream=upstreams,
        server_extra='        location /empty/ { proxy_pass http://empty; }\n')
    nginx.allowed_log.add('[error]')

    n = 10
    assert [r.status for r in fetch(nginx, '/dead', n)] == [502] * n
    m = wait_requests(nginx, n, service=SERVICE)
    assert select(m, 'tce_requests_total', service=SERVICE) == {
        '5xx|nginx|': n}
    assert total(m, 'tce_upstream_connect_failures_total',
                 service=SERVICE) == n
    assert total(m, 'tce_upstream_retries_total', service=SERVICE) == 0

    # no instance at all: 503 from nginx, under the configured cluster
    assert [r.status for r in fetch(nginx, '/empty', n)] == [503] * n
    m = wait_requests(nginx, n, service='demo.web.none')
    assert select(m, 'tce_requests_total', service='demo.web.none',
                  cluster='default', env='prod') == {'5xx|nginx|': n}
    assert total(m, 'tce_upstream_connect_failures_total',
                 service='demo.web.none') == 0


def test_unknown_cluster_from_variable_is_labelled_unknown(backend, nginx):
    start(nginx, {SERVICE: {'default': [
        instance('ok', backend.addr(backend.ok4[0]))]}},
        upstream=('    upstream api {\n        tce_service %s '
                  'cluster=$http_x_cluster;\n    }\n' % SERVICE))
    nginx.allowed_log.add('[error]')

    assert nginx.get('/c', headers={'X-Cluster': 'default'}).status == 200
    bad = 'evil"} 1\\x'
    assert nginx.get('/c', headers={'X-Cluster': bad}).status == 503

    m = wait_requests(nginx, 2)
    assert select(m, 'tce_requests_total', cluster='default') == {
        '2xx|upstream|': 1}
    assert select(m, 'tce_requests_total', cluster='unknown') == {
        '5xx|nginx|': 1}
    assert 'evil' not in scrape(nginx).text


# ------------------------------------------------------------ exposition

def histograms(samples, name, **labels):
    """{le: count}, _count and _sum of one histogram series."""
    buckets = {}
    for (n, ls), v in samples.items():
        d = dict(ls)
        if n == name + '_bucket' and all(d.get(a) == b
                                         for a, b in labels.items()):
            buckets[d['le']] = v
    key = tuple(sorted(labels.items()))
    return buckets, samples[(name + '_count', key)], \
        samples[(name + '_sum', key)]


def test_histograms_promtool_openmetrics_json(backend, nginx):
    start(nginx, {SERVICE: {'default': [
        instance('ok-1', backend.addr(backend.ok4[0])),
        instance('err', backend.addr(backend.p502))]}})

    n = 50
    fetch(nginx, '/h', n)
    m = wait_requests(nginx, n)
    base = dict(service=SERVICE, cluster='default', env='prod')

    les = ['0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1',
           '2.5', '5', '10', '30', '60', '+Inf']
    for name in ('tce_request_duration_seconds',
                 'tce_upstream_response_duration_seconds'):
        buckets, count, sum_ = histograms(m, name, **base)
        assert list(buckets) == les, name
        values = [buckets[le] for le in les]
        assert values == sorted(values), 'cumulative: %r' % values
        assert values[-1] == count == n
        assert 0 <= sum_ < 60 * n

    text = scrape(nginx).text
    assert text.endswith('\n')
    rc, out = promtool_check(text)
    assert (rc, out) == (0, '')
    r = scrape(nginx)
    assert r.headers['Content-Type'] == (
        'text/plain; version=0.0.4; charset=utf-8')

    r = scrape(nginx, headers={
        'Accept': 'application/openmetrics-text; version=1.0.0,'
                  'text/plain;q=0.5'})
    assert r.headers['Content-Type'].startswith(
        'application/openmetrics-text; version=1.0.0')
    assert r.text.endswith('# EOF\n')
    assert '# TYPE tce_requests counter' in r.text

    r = scrape(nginx, path='/metrics?format=json')
    assert r.headers['Content-Type'] == 'application/json'
    doc = json.loads(r.body)
    g = [g for g in doc['groups'] if g['env'] == 'prod'][0]
    assert sum(v for by in g['requests'].values() for v in by.values()) == n
    assert g['request_duration']['count'] == n
    assert doc['start_time'] == m[('tce_start_time_seconds', ())]
    assert {i['instance'] for i in doc['instances']} == {'ok-1', 'err'}


# ------------------------------------------------------ reload and expiry

def test_reload_keeps_counts(backend, nginx):
    start(nginx, {SERVICE: {'default': [
        instance('ok-1', backend.addr(backend.ok4[0]))]}})

    fetch(nginx, '/a', 20)
    before = wait_requests(nginx, 20)
    nginx.reload()
    after = metrics(nginx)
    assert total(after, 'tce_requests_total') == 20
    assert after[('tce_start_time_seconds', ())] == \
        before[('tce_start_time_seconds', ())]
    assert total(after, 'tce_instance_requests_total', instance='ok-1') == 20

    fetch(nginx, '/b', 10)
    m = wait_requests(nginx, 30)
    assert total(m, 'tce_instance_requests_total', instance='ok-1') == 30


def test_departed_instance_expires(backend, nginx):
    a = instance('stay', backend.addr(backend.ok4[0]))
    b = instance('gone', backend.addr(backend.ok4[1]))
    start(nginx, {SERVICE: {'default': [a, b]}}, expire='1s')

    fetch(nginx, '/e', 20)
    m = wait_requests(nginx, 20)
    assert total(m, 'tce_instance_requests_total', instance='gone') > 0

    nginx.write_state({SERVICE: {'default': [a]}})
    nginx.reload()

    def expired():
        m = metrics(nginx)
        names = {dict(k[1]).get('instance') for k in m
                 if k[0].startswith('tce_instance_')}
        return m if names == {'stay'} else None

    m = wait_for(expired, 10, what='the departed instance to expire')
    # the remaining instance and the group keep their counts
    assert total(m, 'tce_instance_requests_total', instance='stay') + \
        0 == total(m, 'tce_instance_requests_total')
    assert total(m, 'tce_requests_total') == 20
    assert total(m, 'tce_instance_requests_total', instance='stay') > 0


# ------------------------------------------------------------ zone full

def test_zone_full_counts_dropped_and_serves(backend, nginx):
    # the registry fits a 64 KB zone with room to spare (90 stopped
    # fitting when the zone's header grew past a slab class), the
    # metric series do not
    n = 75
    insts = [instance('i-%03d' % i, backend.addr(backend.ok4[i % 4]))
             for i in range(n)]
    start(nginx, {SERVICE: {'default': insts}}, zone='tce_zone tce 64k;')
    nginx.allowed_log.add('tce metrics: zone')

    rs = fetch(nginx, '/z', 100)
    assert [r.status for r in rs] == [200] * 100

    def dropped():
        m = metrics(nginx)
        return m if m[('tce_metrics_dropped_total', ())] > 0 else None

    m = wait_for(dropped, 10, what='dropped observations to be counted')
    counted = total(m, 'tce_instance_requests_total')
    # every observation is either counted or dropped, never lost
    wait_for(lambda: total(metrics(nginx), 'tce_instance_requests_total')
             + metrics(nginx)[('tce_metrics_dropped_total', ())] == 100, 10,
             what='counted + dropped == requests')
    assert counted < 100, counted
    rc, out = promtool_check(scrape(nginx).text)
    assert (rc, out) == (0, '')
    log = open(nginx.error_log).read()
    assert 'tce metrics: zone "tce" is full' in log


# ----------------------------------------------------------------- scale

@pytest.mark.skipif(VALGRIND, reason='10,000 instances: memcheck runs '
                    'nginx ~20x slower')
def test_scrape_of_10000_instances(backend, nginx):
    n = 10000
    ports = backend.ok4
    insts = [instance('i-%05d' % i, backend.addr(ports[i % len(ports)]))
             for i in range(n)]
    start(nginx, {SERVICE: {'default': insts}}, zone='tce_zone tce 32m;')

    fetch(nginx, '/s', 20)
    wait_requests(nginx, 20)

    # each worker's timer builds its view: every instance has its series
    def all_series():
        m = metrics(nginx)
        return m if len(select(m, 'tce_instance_weight')) == n else None
    wait_for(all_series, 20, what='the series of %d instances' % n)

    # a whole, well-formed exposition (its speed is measured by
    # bench/metrics_bench.py: speed targets live in benchmarks)
    r = scrape(nginx)
    assert r.text.endswith('\n')
    rc, out = promtool_check(r.text)
    assert rc == 0 and out.strip() == '', out

    # and the traffic still flows with exact counts
    fetch(nginx, '/s2', 20)
    wait_requests(nginx, 40)


# ------------------------------------------- bucket bounds against time

class SlowBackend:
    """A loopback HTTP/1.1 server that answers GET /<ms>/... after
    sleeping <ms> milliseconds (stock nginx cannot wait on purpose)."""

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def do_GET(self):
                try:
                    ms = int(self.path.split('/')[1])
                except (IndexError, ValueError):
                    ms = 0
                time.sleep(ms / 1000.0)
                body = b'slept %d\n' % ms
                self.send_response(200)
                self.send_header('Content-Type', 'text/plain')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                      Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def slow_backend():
    b = SlowBackend()
    yield b
    b.stop()


# the le labels a scraper reads, as numbers (the oracle of the test
# below: not taken from the module)
LE_LABELS = ['0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1',
             '2.5', '5', '10', '30', '60', '+Inf']

TIMES_LOG = """\
    log_format tce_times '$request_uri|$request_time|$upstream_response_time';
"""


def cumulative(durations):
    """{le: number of durations <= le}, the Prometheus meaning of le."""
    return {le: sum(1 for d in durations
                    if le == '+Inf' or d <= float(le) + 1e-9)
            for le in LE_LABELS}


def test_duration_buckets_follow_their_le_labels(slow_backend, nginx):
    # backend delays on both sides of the bounds 0.025, 0.05, 0.25 (ms):
    # a bound in the code that differs from its label (e.g. 20 ms
    # behind "0.025") puts these requests under the wrong label
    delays = [0, 7, 22, 30, 45, 90, 230, 300]
    nginx.write_state({SERVICE: {'default': [
        instance('slow', '127.0.0.1:%d' % slow_backend.port)]}})
    nginx.configure(
        upstreams='    upstream api {\n        tce_service %s;\n    }\n'
                  % SERVICE,
        http_extra=TIMES_LOG, server_extra=METRICS_LOCATION,
        location='            access_log %s/times.log tce_times;\n'
                 % nginx.dir)
    nginx.start()

    n = 0
    for rep in range(2):
        for ms in delays:
            r = nginx.get('/%d/%d' % (ms, rep))
            assert r.status == 200 and r.body == b'slept %d\n' % ms, r
            n += 1

    m = wait_requests(nginx, n)
    path = os.path.join(nginx.dir, 'times.log')
    lines = wait_for(lambda: (len(read_lines(path)) == n
                              and read_lines(path)),
                     5, what='%d lines in times.log' % n)

    # nginx's own $request_time and $upstream_response_time (the same
    # millisecond clock the module reads, logged in the same log phase)
    request_times, upstream_times = [], []
    for line in lines:
        uri, rt, urt = line.split('|')
        ms = int(uri.split('/')[1])
        request_times.append(float(rt))
        upstream_times.append(float(urt))
        # the backend did wait: the duration is at least its delay
        assert float(rt) >= ms / 1000.0 and float(urt) >= ms / 1000.0, line

    base = dict(service=SERVICE, cluster='default', env='prod')
    for name, durations in (
            ('tce_request_duration_seconds', request_times),
            ('tce_upstream_response_duration_seconds', upstream_times)):
        buckets, count, sum_ = histograms(m, name, **base)
        assert list(buckets) == LE_LABELS, name
        assert buckets == cumulative(durations), (name, sorted(durations))
        assert count == n
        assert abs(sum_ - sum(durations)) < 0.0005 * n, (name, sum_)

    # whatever the machine's speed: a request that waited 300 ms is not
    # under le="0.25", nor one that waited 30 ms under le="0.025"
    buckets, _, _ = histograms(m, 'tce_request_duration_seconds', **base)
    assert buckets['0.25'] <= n - 2 * sum(1 for d in delays if d >= 300)
    assert buckets['0.025'] <= n - 2 * sum(1 for d in delays if d >= 30)


# ------------------------------------------------- expiry grace period

# tce_metrics_expire of the grace-period test: long enough that the
# reload (slow under valgrind) ends well inside it
GRACE = 4 if not VALGRIND else 12


def instance_names(m):
    return {dict(k[1]).get('instance') for k in m
            if k[0].startswith('tce_instance_')}


def test_departed_instance_kept_for_the_grace_period(backend, nginx):
    a = instance('stay', backend.addr(backend.ok4[0]))
    b = instance('gone', backend.addr(backend.ok4[1]))
    start(nginx, {SERVICE: {'default': [a, b]}}, expire='%ds' % GRACE)

    fetch(nginx, '/g', 20)
    m = wait_requests(nginx, 20)
    gone = total(m, 'tce_instance_requests_total', instance='gone')
    assert gone > 0

    nginx.write_state({SERVICE: {'default': [a]}})
    # the instance leaves the registry at the reload (the master applies
    # the file); its series lose their last reference when the old
    # workers exit, before reload() returns
    t_hup = time.monotonic()
    nginx.reload()
    t_done = time.monotonic()

    # the module's clock has 1 s resolution: a series unreferenced at
    # t may go from t + GRACE - 1 on
    keep_until = t_hup + GRACE - 1.5
    assert t_done < keep_until - 0.5, (
        'the reload took %.1fs: too long to observe a %ds grace period'
        % (t_done - t_hup, GRACE))
    scrapes = 0
    while time.monotonic() < keep_until:
        m = metrics(nginx)
        if time.monotonic() >= keep_until:
            break                       # the scrape ended past the window
        scrapes += 1
        assert 'gone' in instance_names(m), (
            'the departed instance\'s series went %.1fs after the reload '
            'began, before tce_metrics_expire %ds'
            % (time.monotonic() - t_hup, GRACE))
        assert total(m, 'tce_instance_requests_total',
                     instance='gone') == gone
        time.sleep(0.1)                 # the window is the condition
    assert scrapes >= 3

    # and gone after it: at most GRACE + 1 s (clock resolution) + one
    # tick of the metrics timer (GRACE / 4) after the old workers left
    def expired():
        m = metrics(nginx)
        return m if instance_names(m) == {'stay'} else None

    m = wait_for(expired, GRACE + 1 + GRACE / 4 + 2,
                 what='the departed instance to expire')
    assert time.monotonic() - t_hup >= GRACE - 1
    assert total(m, 'tce_requests_total') == 20
    assert total(m, 'tce_instance_requests_total',
                 instance='stay') == 20 - gone
