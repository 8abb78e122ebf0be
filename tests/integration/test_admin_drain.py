"""
DELETE of an instance as the platform relies on it: the instance gets no
new request at once, a request in flight on it finishes, and it leaves
the registry (GET answers 404, the state file loses it) only when its
requests in flight, summed over both workers, are done, or when the
drain timeout passes (the request still finishes).  A reload during the
drain does not lose it: the new workers complete it.  Backends are
Python servers that take their time and log each request's arrival and
end by their own clock.
"""

import json
import os
import signal
import threading
import time

import pytest

from admin_helpers import TOKEN, admin_location, call, check_error
from conftest import SERVICE, SLOW, http_get, instance, proc_alive, wait_for
from slow_backends import SlowBackends


CL = '/api/v1/services/%s/clusters/default' % SERVICE


@pytest.fixture
def slow():
    b = SlowBackends(1)
    yield b
    b.stop()


def start(nginx, backend, slow):
    """s1 on the slow backend; f1 (a fast one) down for now, so that the
    first request surely goes to s1."""
    token_file = os.path.join(nginx.dir, 'admin.tokens')
    with open(token_file, 'w') as f:
        f.write('%s deployer\n' % TOKEN)
    nginx.write_state({SERVICE: {'default': [
        instance('s1', slow.addr(0)),
        instance('f1', backend.addr(backend.ok4[0]),
                 override={'down': True}),
    ]}})
    upstreams = ('    upstream api {\n        tce_service %s;\n'
                 '        tce_keepalive 16;\n    }\n' % SERVICE)
    nginx.configure(upstreams=upstreams, state=True,
                    server_extra=admin_location(token_file,
                                                audit=audit_path(nginx)))
    nginx.start()


def audit_path(nginx):
    return os.path.join(nginx.dir, 'audit.log')


def removals(nginx):
    """The drain timer's audit lines (the API's own carry a method)."""
    try:
        with open(audit_path(nginx)) as f:
            lines = [json.loads(l) for l in f.read().splitlines()]
    except FileNotFoundError:
        return []
    return [l for l in lines if l.get('event') == 'instance_removed']


def long_request(nginx, ms):
    """A request of ms milliseconds at the slow backend, in a thread;
    returns (thread, result list)."""
    out = []

    def run():
        out.append(http_get(nginx.port, '/%d' % ms, timeout=30 * SLOW))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def in_flight_on(nginx, slow, ms):
    """Starts a request of ms on s1, then opens f1 for new ones."""
    t, out = long_request(nginx, ms)
    wait_for(lambda: slow.running(slow.ports[0]) == 1, 5 * SLOW,
             what='the long request at the slow backend')
    r = call(nginx, 'PATCH', CL + '/instances/f1', body={'down': None},
             token=TOKEN)
    assert r.status == 200, r
    return t, out


def state_ids(nginx):
    import json
    with open(nginx.state_path) as f:
        doc = json.load(f)
    return {i['id'] for i in
            doc['services'][SERVICE]['clusters']['default']['instances']}


def test_delete_waits_for_the_request_in_flight(nginx, backend, slow):
    start(nginx, backend, slow)
    ms = int(1500 * SLOW)
    t, out = in_flight_on(nginx, slow, ms)

    t0 = time.time()
    r = call(nginx, 'DELETE', CL + '/instances/s1?timeout=60s', token=TOKEN)
    assert r.status == 202, r
    assert r.json['status'] == 'draining'
    assert r.json['instance']['in_flight'] == 1
    assert r.json['instance']['state'] == 'draining'

    # while it runs: s1 stays, draining, with its request counted; new
    # requests go to f1 only
    polls = 0
    while t.is_alive():
        g = call(nginx, 'GET', CL + '/instances/s1')
        if not t.is_alive():
            break
        assert g.status == 200, g
        assert g.json['instance']['in_flight'] == 1
        assert g.json['instance']['removal']['status'] == 'draining'
        assert nginx.get('/').text.strip() == str(backend.ok4[0])
        polls += 1
        time.sleep(0.05)
    assert polls >= 3
    t.join()
    assert out[0].status == 200 and out[0].text.strip() == str(slow.ports[0])
    end = slow.requests()[0][2]

    # then it goes, long before the 60 s timeout
    wait_for(lambda: call(nginx, 'GET', CL + '/instances/s1').status == 404,
             3 * SLOW, what='s1 removed once drained')
    assert time.time() >= end
    assert state_ids(nginx) == {'f1'}
    # only the one request ever reached s1
    assert len(slow.requests()) == 1
    # the removal is audited, once, by the timer that made it
    wait_for(lambda: removals(nginx), 3 * SLOW, what='the removal audited')
    [line] = removals(nginx)
    assert (line['principal'], line['service'], line['cluster'],
            line['instance'], line['reason'], line['in_flight']) \
        == ('drain-timer', SERVICE, 'default', 's1', 'drained', 0)
    assert line['drained_ms'] >= (end - t0) * 1000 - 100 * SLOW


def test_drain_timeout_removes_with_request_in_flight(nginx, backend, slow):
    start(nginx, backend, slow)
    nginx.allowed_log.add('removed at its drain timeout')
    ms = int(3000 * SLOW)
    t, out = in_flight_on(nginx, slow, ms)
    r = call(nginx, 'DELETE', CL + '/instances/s1?timeout=500ms',
             token=TOKEN)
    assert r.status == 202, r
    rm = r.json['instance']['removal']
    assert rm['deadline'] - rm['since'] == 500

    wait_for(lambda: call(nginx, 'GET', CL + '/instances/s1').status == 404,
             2 * SLOW, what='s1 removed at the drain timeout')
    assert t.is_alive(), 'the request ended before the timeout: no test'
    assert state_ids(nginx) == {'f1'}
    wait_for(lambda: removals(nginx), 3 * SLOW, what='the removal audited')
    [line] = removals(nginx)
    assert (line['instance'], line['reason'], line['in_flight']) \
        == ('s1', 'drain_timeout', 1)
    # the request in flight still finishes, on the instance it started on
    t.join()
    assert out[0].status == 200 and out[0].text.strip() == str(slow.ports[0])


def test_drain_goes_on_across_a_reload(nginx, backend, slow):
    start(nginx, backend, slow)
    ms = int(2500 * SLOW)
    t, out = in_flight_on(nginx, slow, ms)
    r = call(nginx, 'DELETE', CL + '/instances/s1', token=TOKEN)
    assert r.status == 202 and r.json['instance']['in_flight'] == 1, r

    old = nginx.workers()
    nginx.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: len(nginx.workers() - old) == 2, 10 * SLOW,
             what='new workers')
    # an old worker still serves the request: the new workers see it
    assert t.is_alive()
    g = call(nginx, 'GET', CL + '/instances/s1')
    assert g.status == 200, g
    assert g.json['instance']['in_flight'] == 1
    assert g.json['instance']['removal']['status'] == 'draining'

    t.join()
    assert out[0].status == 200
    wait_for(lambda: call(nginx, 'GET', CL + '/instances/s1').status == 404,
             3 * SLOW, what='s1 removed by the new workers')
    assert state_ids(nginx) == {'f1'}
    wait_for(lambda: not any(proc_alive(p) for p in old), 10 * SLOW,
             what='old workers to exit')


def established(port):
    """Established TCP connections whose local port is port (the server
    side of connections to a backend), from /proc/net/tcp."""
    n = 0
    with open('/proc/net/tcp') as f:
        next(f)
        for line in f:
            parts = line.split()
            if int(parts[1].split(':')[1], 16) == port and parts[3] == '01':
                n += 1
    return n


def test_delete_closes_idle_keepalive_connections(nginx, backend, slow):
    start(nginx, backend, slow)
    call(nginx, 'PATCH', CL + '/instances/f1', body={'down': None},
         token=TOKEN)
    # a few quick requests: idle connections to s1 in the workers' caches
    for _ in range(10):
        assert nginx.get('/0').status == 200
    wait_for(lambda: established(slow.ports[0]) >= 1, 2 * SLOW,
             what='a cached connection to s1')
    r = call(nginx, 'DELETE', CL + '/instances/s1', token=TOKEN)
    assert r.status == 202, r
    # no request needed: each worker brings its views up to date within
    # a second, and s1's idle connections close then
    wait_for(lambda: established(slow.ports[0]) == 0, 3 * SLOW,
             what='no connection left to s1, without a request')
    wait_for(lambda: call(nginx, 'GET', CL + '/instances/s1').status == 404,
             3 * SLOW, what='s1 removed')


def test_patch_drain_of_instance_being_removed_refused(nginx, backend, slow):
    start(nginx, backend, slow)
    t, out = in_flight_on(nginx, slow, int(1500 * SLOW))
    r = call(nginx, 'DELETE', CL + '/instances/s1', token=TOKEN)
    assert r.status == 202, r
    before = open(nginx.state_path, 'rb').read()
    e = check_error(call(nginx, 'PATCH', CL + '/instances/s1',
                         body={'drain': False}, token=TOKEN), 409,
                    'being_removed')
    assert 'POST' in e['text']
    assert open(nginx.state_path, 'rb').read() == before
    # POST of it again keeps it: its removal is cancelled
    r = call(nginx, 'POST', CL + '/instances', token=TOKEN,
             body={'id': 's1', 'address': slow.addr(0)})
    assert r.status == 200 and r.json['status'] == 'kept', r
    assert r.json['instance']['removal'] is None
    assert r.json['instance']['state'] == 'up'
    t.join()
    time.sleep(0.5)             # several removal ticks: it stays
    assert call(nginx, 'GET', CL + '/instances/s1').status == 200
