"""
Slow start (tce_service ... slow_start=<time>): an instance added to a
service, or back from failing, gets a share of the traffic that rises
from almost nothing to its full share over that time; without
slow_start it gets its full share at once.  Real nginx, real backends;
the share is counted per window of 1 s from the requests' answers.
"""

import http.client
import http.server
import os
import threading
import time

from admin_helpers import TOKEN, admin_location, call
from conftest import SERVICE, SLOW, VALGRIND, free_port, instance, wait_for

LOCATION = '            add_header X-Instance $tce_instance always;\n'

# under valgrind a reload takes seconds and requests are ~50x slower:
# a longer ramp, and only its first seconds are looked at
RAMP = 20.0 if VALGRIND else 5.0
MIN_REQS = 10 if VALGRIND else 20
TOL = 0.08 if VALGRIND else 0.04


def expected_share(t, ramp, w_new=1.0, w_others=2.0):
    """The new instance's share t seconds into a ramp: its weight
    scaled by f = t / ramp, against the others' full weights."""
    if ramp is None or t >= ramp:
        f = 1.0
    else:
        f = max(t / ramp, 1.0 / 1024)
    return f * w_new / (w_others + f * w_new)


def load(nginx, seconds, clients=2):
    """(time, instance id) of every answer, from `clients` keepalive
    connections sending back to back for `seconds`."""
    out = []
    lock = threading.Lock()
    stop = time.time() + seconds

    def run():
        conn = http.client.HTTPConnection('127.0.0.1', nginx.port,
                                          timeout=10 * SLOW)
        mine = []
        while time.time() < stop:
            t = time.time()
            conn.request('GET', '/')
            r = conn.getresponse()
            r.read()
            assert r.status == 200, r.status
            mine.append(((t + time.time()) / 2, r.getheader('X-Instance')))
        conn.close()
        with lock:
            out.extend(mine)

    ts = [threading.Thread(target=run) for _ in range(clients)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    return sorted(out)


def windows(answers, start, ramp, iid, n):
    """Per window of 1 s from start: (requests, seen for iid, expected
    for iid as the sum of each request's expected share)."""
    out = []
    for k in range(n):
        w = [(t, i) for t, i in answers if start + k <= t < start + k + 1]
        seen = sum(1 for _, i in w if i == iid)
        exp = sum(expected_share(t - start, ramp) for t, _ in w)
        out.append((len(w), seen, exp))
    return out


def configure(nginx, backend, slow_start, instances):
    token_file = os.path.join(nginx.dir, 'admin.tokens')
    with open(token_file, 'w') as f:
        f.write('%s\n' % TOKEN)
    nginx.write_state({SERVICE: {'default': instances}})
    params = ' slow_start=%s' % slow_start if slow_start else ''
    nginx.configure(
        upstreams='    upstream api {\n        tce_service %s%s;\n    }\n'
                  % (SERVICE, params),
        location=LOCATION, server_extra=admin_location(token_file))


def routable_since(nginx, iid):
    r = call(nginx, 'GET', '/api/v1/services/' + SERVICE, token=TOKEN)
    for i in r.json['clusters']['default']['envs']['prod']['instances']:
        if i['id'] == iid:
            return i['routable_since_ms']
    return None


def add_instance(nginx, backend, slow_start):
    a = instance('a', backend.addr(backend.ok4[0]))
    b = instance('b', backend.addr(backend.ok4[1]))
    c = instance('c', backend.addr(backend.ok4[2]))
    configure(nginx, backend, slow_start, [a, b])
    nginx.start()
    assert {nginx.get('/').headers.get('X-Instance')
            for _ in range(10)} <= {'a', 'b'}
    # c is added by a state file change and a reload
    nginx.write_state({SERVICE: {'default': [a, b, c]}})
    before = time.time()
    nginx.reload()
    after = time.time()
    since = routable_since(nginx, 'c')
    return before, after, since


def test_added_instance_ramps_up(nginx, backend):
    before, after, since = add_instance(nginx, backend, '%ds' % RAMP)
    # the zone stamped when c became routable, during the reload
    assert since is not None
    assert before - 0.05 <= since / 1000.0 <= after + 0.05, \
        (before, since, after)
    start = since / 1000.0
    # windows of 1 s from the stamp, from the one the load starts in
    # (a window with few requests left at the front is left out)
    first = int(time.time() - start)
    last = int(RAMP) + 1 if not VALGRIND else first + 6
    answers = load(nginx, start + last - time.time())
    ws = windows(answers, start, RAMP, 'c', last)[first:]
    if ws and ws[0][0] < MIN_REQS:
        ws = ws[1:]
        first += 1
    shares = [seen / n for n, seen, _ in ws if n]
    report = ['%d: %d/%d (%.3f) expected %.1f' % (first + k, s, n, s / n, e)
              for k, (n, s, e) in enumerate(ws) if n]
    print('\n'.join(report))
    assert len(ws) >= 4, report
    for n, seen, exp in ws:
        assert n >= MIN_REQS, report
        # the ramp, within 4 percentage points and 2 requests
        assert abs(seen - exp) <= TOL * n + 2, report
    # it rises, from a small share to the full one (1/3 at 1:1:1)
    if first == 0:
        assert shares[0] < 0.1, report
    assert all(shares[k] < shares[k + 2] for k in range(len(shares) - 2)), \
        report
    if not VALGRIND:
        assert abs(shares[-1] - 1 / 3) <= TOL, report


def test_added_instance_without_slow_start(nginx, backend):
    before, after, since = add_instance(nginx, backend, None)
    # stamped all the same; nothing ramps without slow_start
    start = since / 1000.0
    first = int(time.time() - start)
    answers = load(nginx, start + first + 2 - time.time())
    ws = windows(answers, start, None, 'c', first + 2)[first:]
    if ws[0][0] < MIN_REQS:
        ws = ws[1:]
        first += 1
    report = [(n, s, round(e, 1)) for n, s, e in ws]
    if first == 0:
        # from the very first second
        assert ws[0][1] > 0, report
    for n, seen, exp in ws:
        assert n >= MIN_REQS, report
        assert abs(seen / n - 1 / 3) <= TOL, report


class OkHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def do_GET(self):
        body = b'late\n'
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_recovered_instance_ramps_up(nginx, backend):
    # c fails (nothing listens on its port), then comes back: the probe
    # after fail_timeout succeeds and c ramps up from there (per
    # worker: passive health is per worker; one worker here)
    port = free_port()
    a = instance('a', backend.addr(backend.ok4[0]))
    b = instance('b', backend.addr(backend.ok4[1]))
    c = instance('c', '127.0.0.1:%d' % port)
    ramp = 4 * (4 if VALGRIND else 1)
    configure(nginx, backend, '%ds' % ramp, [a, b, c])
    conf = open(nginx.conf_path).read()
    conf = conf.replace('slow_start=%ds' % ramp,
                        'slow_start=%ds max_fails=1 fail_timeout=1s' % ramp)
    conf = conf.replace('worker_processes 2;', 'worker_processes 1;')
    with open(nginx.conf_path, 'w') as f:
        f.write(conf)
    nginx.nworkers = 1
    nginx.start()
    for _ in range(6):
        assert nginx.get('/').status == 200      # c's failures retried
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', port), OkHandler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        # the first answer from c: the probe after fail_timeout
        def c_answers():
            return nginx.get('/').headers.get('X-Instance') == 'c'
        wait_for(c_answers, 5 * SLOW, interval=0.005,
                 what='c probed again')
        start = time.time()
        answers = load(nginx, 4.8, clients=1)
        ws = windows(answers, start, float(ramp), 'c', 4)
        report = [(n, s, round(e, 1)) for n, s, e in ws]
        print(report)
        shares = [s / n for n, s, _ in ws]
        assert shares[0] < 0.12, report
        assert shares[0] < shares[3], report
        if not VALGRIND:
            assert shares[0] < shares[2] and shares[1] < shares[3], report
        assert all(abs(s - e) <= (TOL + 0.01) * n + 2 for n, s, e in ws), \
            report
    finally:
        srv.shutdown()
        srv.server_close()
