"""
The instances' recent figures and the scaling signal of the admin API:
request rate, error ratio and in-flight per instance over the last
10 seconds, every worker's summed (GET /api/v1/services/{psm}), and
GET .../clusters/{cluster}/envs/{env}/scale with desired instances as
Kubernetes' HPA computes them.  Real nginx with 2 workers.
"""

import http.server
import math
import os
import threading
import time

from admin_helpers import TOKEN, admin_location, call, check_error, start_admin
from conftest import SERVICE, VALGRIND, instance, wait_for
from test_metrics import METRICS_LOCATION, parse, promtool_check

WINDOW = 10


def burst(nginx, n):
    """n requests through the proxy, as fast as they go; returns the
    time of the first and the time after the last."""
    t0 = time.time()
    for _ in range(n):
        r = nginx.get('/')
        assert r.status in (200, 500), r
    return t0, time.time()


def in_window(t0, t1):
    """Waits until the requests sent between t0 and t1 are all in the
    window's complete seconds; False if the window already lost some
    (a machine too slow for the test's timing)."""
    wait_for(lambda: time.time() >= math.floor(t1) + 1, 3,
             what='the last second to complete')
    return time.time() < math.floor(t0) + WINDOW


def instances(nginx):
    r = call(nginx, 'GET', '/api/v1/services/' + SERVICE, token=TOKEN)
    assert r.status == 200, r
    out = {}
    for cl in r.json['clusters'].values():
        for env in cl['envs'].values():
            for i in env['instances']:
                out[i['id']] = i
    return out


def test_instance_rate_error_ratio(nginx, backend):
    services = {SERVICE: {'default': [
        instance('a', backend.addr(backend.ok4[0]), weight=3),
        instance('b', backend.addr(backend.ok4[1]), weight=1),
        instance('e', backend.addr(backend.p500), weight=1),
    ]}}
    start_admin(nginx, backend, services=services)
    got = instances(nginx)
    for i in got.values():
        assert i['requests_per_second'] == 0 and i['in_flight'] == 0, i
        assert i['error_ratio'] is None and i['window_seconds'] == WINDOW

    # 50 requests, 1 attempt each (a 500 is not retried by default)
    t0, t1 = burst(nginx, 50)
    if not in_window(t0, t1):
        # too slow a machine for one window: a fresh one, once
        time.sleep(WINDOW)
        t0, t1 = burst(nginx, 50)
        assert in_window(t0, t1), 'a burst of 50 took a whole window'
    got = instances(nginx)
    # the backends' own access log is the oracle for who got what
    seen = {}
    for e in backend.entries():
        seen[e['port']] = seen.get(e['port'], 0) + 1
    if sum(seen.values()) > 50:
        seen = {}     # the retried burst: count it alone
        for e in backend.entries()[-50:]:
            seen[e['port']] = seen.get(e['port'], 0) + 1
    for iid, port in (('a', backend.ok4[0]), ('b', backend.ok4[1]),
                      ('e', backend.p500)):
        assert round(got[iid]['requests_per_second'] * WINDOW) \
            == seen.get(port, 0), (iid, got[iid], seen)
        assert got[iid]['in_flight'] == 0, got[iid]
    assert seen[backend.ok4[0]] > seen[backend.ok4[1]] > 0, seen
    assert got['e']['error_ratio'] == 1.0, got['e']
    assert got['a']['error_ratio'] == 0.0, got['a']
    assert got['b']['error_ratio'] == 0.0, got['b']


SCALE = '/api/v1/services/%s/clusters/default/envs/%s/scale'


def hpa(current, observed, target, tolerance=0.1):
    """Kubernetes' HPA replica count for one metric (the oracle)."""
    ratio = observed / target
    if abs(ratio - 1.0) <= tolerance:
        return current
    return max(1, math.ceil(ratio * current))


def start_scale(nginx, backend, services, target):
    token_file = os.path.join(nginx.dir, 'admin.tokens')
    with open(token_file, 'w') as f:
        f.write('%s\n' % TOKEN)
    nginx.write_state(services)
    upstreams = ('    upstream api {\n        tce_service %s;\n'
                 '%s    }\n' % (SERVICE, '        tce_scale_target %s;\n'
                                 % target if target else ''))
    nginx.configure(upstreams=upstreams,
                    server_extra=admin_location(token_file)
                    + METRICS_LOCATION)
    nginx.start()


def gauge(nginx, env):
    text = nginx.get('/metrics').text
    rc, out = promtool_check(text)
    assert rc == 0, out
    m = parse(text)
    key = ('tce_scale_desired_instances',
           (('cluster', 'default'), ('env', env), ('service', SERVICE)))
    return m.get(key)


def test_scale_rps_known_load(nginx, backend):
    services = {SERVICE: {'default': [
        instance('a', backend.addr(backend.ok4[0])),
        instance('b', backend.addr(backend.ok4[1])),
        instance('c', backend.addr(backend.ok4[2]), env='canary'),
    ]}}
    start_scale(nginx, backend, services, 'rps=2 inflight=5')
    r = call(nginx, 'GET', SCALE % (SERVICE, 'prod'))
    assert r.status == 200, r
    assert r.json['current'] == 2 and r.json['instances'] == 2, r.json
    assert r.json['requests_per_second'] == 0 and r.json['desired'] == 1
    assert r.json['targets'] == {'rps': 2.0, 'inflight': 5.0}
    assert r.json['tolerance'] == 0.1 and r.json['window_seconds'] == WINDOW

    sent = 50
    t0, t1 = burst(nginx, sent)
    if not in_window(t0, t1):
        time.sleep(WINDOW)
        t0, t1 = burst(nginx, sent)
        assert in_window(t0, t1), 'a burst of 50 took a whole window'
    r = call(nginx, 'GET', SCALE % (SERVICE, 'prod'))
    got = r.json
    # the oracle: what was sent, per instance, and HPA's formula on it
    rps = sent / WINDOW / 2
    assert abs(got['requests_per_second'] - rps) < 1e-9, got
    want = max(hpa(2, rps, 2.0), hpa(2, got['in_flight'], 5.0))
    assert want == 3 and got['desired'] == want, got
    assert got['proposals'] == {'rps': 3, 'inflight': 1}, got
    assert gauge(nginx, 'prod') == want
    # the canary env took nothing: 1 instance, no traffic -> 1
    r = call(nginx, 'GET', SCALE % (SERVICE, 'canary'))
    assert r.json['current'] == 1 and r.json['desired'] == 1, r.json
    assert gauge(nginx, 'canary') == 1


def test_scale_errors_and_no_target(nginx, backend):
    services = {SERVICE: {'default': [
        instance('a', backend.addr(backend.ok4[0]))]}}
    start_scale(nginx, backend, services, None)
    r = call(nginx, 'GET', SCALE % (SERVICE, 'prod'))
    assert r.status == 200 and r.json['desired'] is None, r
    assert 'tce_scale_target' in r.json['reason']
    assert gauge(nginx, 'prod') is None
    check_error(call(nginx, 'GET', SCALE % (SERVICE, 'staging')), 404,
                'unknown_env')
    check_error(call(nginx, 'GET', SCALE % ('no.such.svc', 'prod')), 404,
                'unknown_service')
    check_error(call(nginx, 'GET', '/api/v1/services/%s/clusters/nope/envs'
                     '/prod/scale' % SERVICE), 404, 'unknown_cluster')
    r = call(nginx, 'POST', SCALE % (SERVICE, 'prod'), body={}, token=TOKEN)
    check_error(r, 405, 'method_not_allowed')


class SlowHandler(http.server.BaseHTTPRequestHandler):
    delay = 0.2

    def do_GET(self):
        time.sleep(self.delay)
        body = b'slow\n'
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_scale_inflight_known_load(nginx, backend):
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), SlowHandler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        port = srv.server_address[1]
        services = {SERVICE: {'default': [
            instance('s', '127.0.0.1:%d' % port)]}}
        start_scale(nginx, backend, services, 'inflight=0.1')
        # 4 clients, 5 requests of 200 ms each: 4 in flight for ~1 s
        durations = []
        lock = threading.Lock()

        def client():
            for _ in range(5):
                t = time.time()
                assert nginx.get('/').status == 200
                with lock:
                    durations.append(time.time() - t)

        t0 = time.time()
        cs = [threading.Thread(target=client) for _ in range(4)]
        for c in cs:
            c.start()
        for c in cs:
            c.join()
        assert in_window(t0, time.time()), 'the load took a whole window'
        got = call(nginx, 'GET', SCALE % (SERVICE, 'prod')).json
        # Little's law on what the clients measured (the upstream's
        # share of each request is a little less)
        expect = sum(durations) / WINDOW
        # (under valgrind nginx's own time is a larger part of it)
        low = 0.5 if VALGRIND else 0.8
        assert low * expect <= got['in_flight'] <= expect, (got, expect)
        assert got['desired'] == hpa(1, got['in_flight'], 0.1), got
        if not VALGRIND:
            # ~4 in flight for ~1 s of the 10: 0.4 per instance
            assert got['desired'] in (4, 5), got
        assert gauge(nginx, 'prod') == got['desired']
    finally:
        srv.shutdown()
        srv.server_close()
