"""
Zero-drop scale-in: under a steady load through the proxy (requests
that take 200 ms at the backends, keepalive on both sides, 2 workers),
an env goes from 4 instances to 2 with one PUT of its desired set.  No
client request fails; the two removed instances get no request that
arrived after the drain began (their own logs, by their clock); they
leave the registry only once their last request has ended, and soon
after it (long before the drain timeout).
"""

import http.client
import json
import os
import threading
import time

import pytest

from admin_helpers import TOKEN, admin_location, call
from conftest import SERVICE, SLOW, instance, wait_for
from slow_backends import SlowBackends


CL = '/api/v1/services/%s/clusters/default' % SERVICE
CLIENTS = 6

# a request picked just before the drain may reach its backend a little
# after: nginx's connect and the backend's thread start take this long
MARGIN = 0.05 * SLOW


@pytest.fixture
def backends():
    b = SlowBackends(4, delay_ms=200)
    yield b
    b.stop()


class Load:
    """CLIENTS threads, each on its own keepalive connection, GET / back
    to back until stopped; every failure is kept."""

    def __init__(self, port):
        self.port = port
        self.stop_flag = threading.Event()
        self.ok = 0
        self.failures = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True)
                        for _ in range(CLIENTS)]

    def run(self):
        conn = http.client.HTTPConnection('127.0.0.1', self.port,
                                          timeout=10 * SLOW)
        while not self.stop_flag.is_set():
            try:
                conn.request('GET', '/')
                r = conn.getresponse()
                body = r.read()
                with self.lock:
                    if r.status == 200:
                        self.ok += 1
                    else:
                        self.failures.append((r.status, body[:80]))
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.failures.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection('127.0.0.1', self.port,
                                                  timeout=10 * SLOW)
        conn.close()

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(15 * SLOW)


def test_scale_in_4_to_2_drops_nothing(nginx, backends):
    token_file = os.path.join(nginx.dir, 'admin.tokens')
    with open(token_file, 'w') as f:
        f.write('%s autoscaler\n' % TOKEN)
    names = ['i0', 'i1', 'i2', 'i3']
    nginx.write_state({SERVICE: {'default': [
        instance(n, backends.addr(k)) for k, n in enumerate(names)]}})
    upstreams = ('    upstream api {\n        tce_service %s;\n'
                 '        tce_keepalive 32;\n    }\n' % SERVICE)
    nginx.configure(upstreams=upstreams, state=True,
                    server_extra=admin_location(token_file))
    nginx.start()

    load = Load(nginx.port)
    load.start()
    try:
        # warm: every instance serving, connections cached
        wait_for(lambda: all(backends.requests(p) for p in backends.ports),
                 5 * SLOW, what='load on all 4 instances')
        time.sleep(0.3 * SLOW)

        r = call(nginx, 'PUT', CL + '/envs/prod/instances', token=TOKEN,
                 body={'instances': [{'id': n, 'address': backends.addr(k)}
                                     for k, n in enumerate(names[:2])]})
        assert r.status == 200, r
        assert r.json['kept'] == ['i0', 'i1'] and r.json['added'] == []
        draining = {d['id']: d for d in r.json['draining']}
        assert sorted(draining) == ['i2', 'i3']
        since = {n: d['removal']['since'] / 1000.0
                 for n, d in draining.items()}
        in_flight_at_put = sum(d['in_flight'] for d in draining.values())

        # poll each removed instance until it is gone: when first seen
        removed_at = {}

        def gone():
            for n in ('i2', 'i3'):
                if n in removed_at:
                    continue
                g = call(nginx, 'GET', CL + '/instances/' + n)
                if g.status == 404:
                    removed_at[n] = time.time()
                else:
                    assert g.status == 200, g
                    assert g.json['instance']['state'] == 'draining'
            return len(removed_at) == 2

        wait_for(gone, 10 * SLOW, interval=0.01, what='i2, i3 removed')
        # the load goes on a little on the two left
        t_end = time.time() + 0.5 * SLOW
        wait_for(lambda: time.time() >= t_end, 2 * SLOW, what='more load')
    finally:
        load.stop()

    assert load.failures == [], load.failures[:5]
    assert load.ok >= 20, load.ok

    figures = {}
    for k, n in ((2, 'i2'), (3, 'i3')):
        reqs = backends.requests(backends.ports[k])
        assert all(e is not None for _, _, e in reqs), 'unfinished request'
        late = [s for _, s, _ in reqs if s > since[n] + MARGIN]
        assert late == [], '%s got %d requests after its drain began' % (
            n, len(late))
        last_end = max(e for _, _, e in reqs)
        # removed only once its last request ended, and soon after
        assert removed_at[n] >= last_end, (n, removed_at[n], last_end)
        assert removed_at[n] - last_end < 2 * SLOW
        figures[n] = {
            'in_flight_at_drain': sum(1 for _, s, e in reqs
                                      if s <= since[n] < e),
            'drain_ms': int((removed_at[n] - since[n]) * 1000),
        }

    # the two kept took the load after the drain began
    t0 = min(since.values())
    for k in (0, 1):
        assert any(s > t0 + MARGIN
                   for _, s, _ in backends.requests(backends.ports[k]))

    with open(nginx.state_path) as f:
        doc = json.load(f)
    assert [i['id'] for i in doc['services'][SERVICE]['clusters'][
        'default']['instances']] == ['i0', 'i1']
    print('\nscale-in 4->2: %d requests, 0 failed; in flight at PUT %d; '
          'per removed instance %s' % (load.ok, in_flight_at_put, figures))
