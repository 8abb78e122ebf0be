#!/usr/bin/env python3
"""Deploy rollback bench (a benchmark, not a test: it prints figures).

The time from the first bad canary answer to the rollback being live.
nginx (2 workers, reuseport) with the module, the admin API and a
state file; one service with a prod and a canary instance, each a
Python HTTP server of this process that notes the time of every
request it receives.  A client sends --rps requests per second, each on
a new connection (the kernel spreads them over both workers), open
loop: a slow answer does not slow the next request.

Each run (--runs times): the canary answers 200; a deploy starts
(steps [--weight, 100], step_seconds 600, the default gates); once the
step's window has canary requests, the canary answers 500 to
everything from then on.  Measured from the canary's first 500 (the
time its server sent it):
  decision  the deploy's rollback as the controller recorded it (the
            step's ended_ms in GET .../deploys/current);
  live      every worker routes 0% to the canary: a worker applies a
            new policy at its first request after the write, so for
            each worker the answer to its first request sent after the
            bench saw the rollback in the API bounds that moment; the
            largest of these (an upper bound: it includes the API
            poll's 20 ms and the gap to the worker's next request).
  Also: the canary's last request, and that no answer came from the
  canary over the --after seconds that follow (both workers answered).
Printed per run, then p50 and max over the runs; the target is live
under 2 s at 100 requests per second.

    bench/deploy_bench.py --nginx /usr/sbin/nginx \\
        --module build/ngx_tce_module.so [--runs 5] [--rps 100] \\
        [--weight 10]
"""

import argparse
import concurrent.futures
import http.client
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from tcebench import confs

SERVICE = 'bench.deploy.api'
TOKEN = 'bench-token-0123456789abcdef'
DEPLOYS = '/api/v1/services/%s/clusters/default/deploys' % SERVICE

class Backend:
    """A loopback HTTP/1.1 server: the arrival time (time.time()) of
    every request; answers 500 while bad is set, noting the first."""

    def __init__(self, name):
        self.name = name
        self.arrivals = []
        self.bad = False
        self.first_bad = None
        self.lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def do_GET(self):
                now = time.time()
                with owner.lock:
                    owner.arrivals.append(now)
                    bad = owner.bad
                    if bad and owner.first_bad is None:
                        owner.first_bad = time.time()
                body = owner.name.encode() + b'\n'
                self.send_response(500 if bad else 200)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                   Handler)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def addr(self):
        return '127.0.0.1:%d' % self.srv.server_address[1]

    def since(self, t):
        with self.lock:
            return [x for x in self.arrivals if x >= t]

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def free_port():
    import socket
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def call(port, method, path, body=None):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    headers = {'Authorization': 'Bearer ' + TOKEN}
    data = None
    if body is not None:
        data = json.dumps(body)
        headers['Content-Type'] = 'application/json'
    c.request(method, path, body=data, headers=headers)
    r = c.getresponse()
    out = r.read()
    c.close()
    return r.status, json.loads(out) if out else None


def wait(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            v = pred()
            if v:
                return v
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    raise SystemExit('bench: timed out waiting for ' + what)


class Load:
    """rps requests per second, open loop, a new connection each; the
    answers as (sent, status, pid, body, received)."""

    def __init__(self, port, rps):
        self.port = port
        self.rps = rps
        self.out = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.pool = concurrent.futures.ThreadPoolExecutor(32)
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def one(self, sent):
        try:
            c = http.client.HTTPConnection('127.0.0.1', self.port,
                                           timeout=10)
            c.request('GET', '/', headers={'Connection': 'close'})
            r = c.getresponse()
            body = r.read()
            c.close()
            res = (sent, r.status, r.getheader('X-Pid'), body,
                   time.time())
        except OSError:
            res = (sent, None, None, b'', time.time())
        with self.lock:
            self.out.append(res)

    def run(self):
        t = time.monotonic()
        while not self.stop.is_set():
            self.pool.submit(self.one, time.time())
            t += 1.0 / self.rps
            delay = t - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def since(self, t):
        with self.lock:
            return [x for x in self.out if x[0] >= t]

    def close(self):
        self.stop.set()
        self.t.join()
        self.pool.shutdown()


def one_run(port, prod, canary, load, weight, after):
    canary.bad = False
    canary.first_bad = None
    st, d = call(port, 'POST', DEPLOYS, {'steps': [weight, 100],
                                         'step_seconds': 600,
                                         'min_requests': 20})
    if st != 201:
        raise SystemExit('bench: POST deploys answered %d: %s' % (st, d))
    # the step's window has begun and counts canary requests
    wait(lambda: (call(port, 'GET', DEPLOYS + '/current')[1]['steps'][0]
                  .get('figures') or {}).get('canary_requests', 0) >= 5,
         30, 'the step to count canary requests')
    start = time.time()
    canary.bad = True
    d = wait(lambda: (lambda c: c['state'] != 'running' and c)(
        call(port, 'GET', DEPLOYS + '/current')[1]), 60, 'the rollback')
    # the policy is written before the API can show the rollback
    seen = time.time()
    if d['state'] != 'rolled_back':
        raise SystemExit('bench: the deploy ended %s' % d['state'])
    time.sleep(after)
    first_bad = canary.first_bad
    last_canary = max(canary.since(start))
    # a worker routes by the new policy from its first request after
    # the write: the answer to each worker's first request sent after
    # the rollback was seen bounds the moment it routes 0% canary
    live = {}
    for sent, status, pid, body, got in sorted(load.since(seen)):
        if pid is not None and pid not in live:
            live[pid] = got
    answers = load.since(seen)
    wrong = [x for x in answers if x[1] != 200 or x[3] != b'prod\n']
    decision = d['steps'][0]['ended_ms'] / 1000.0 - first_bad
    bad_answers = sum(1 for x in load.since(start) if x[1] == 500)
    return {'decision': decision,
            'live': max(live.values()) - first_bad,
            'last_canary': last_canary - first_bad,
            'gate': d['failed_gate'], 'bad_answers': bad_answers,
            'after': len(answers), 'pids': len(live), 'wrong': len(wrong)}


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--nginx', default='/usr/sbin/nginx')
    p.add_argument('--module', required=True)
    p.add_argument('--runs', type=int, default=5)
    p.add_argument('--rps', type=float, default=100)
    p.add_argument('--weight', type=float, default=10,
                   help='the canary step in percent')
    p.add_argument('--after', type=float, default=2,
                   help='seconds of traffic checked after the rollback')
    a = p.parse_args()

    d = tempfile.mkdtemp(prefix='tce-deploy-bench-')
    prod, canary = Backend('prod'), Backend('canary')
    proc = load = None
    try:
        port = free_port()
        with open(os.path.join(d, 'state.json'), 'w') as f:
            json.dump({'version': 1, 'services': {SERVICE: {'clusters': {
                'default': {'instances': [
                    {'id': 'p1', 'address': prod.addr()},
                    {'id': 'c1', 'address': canary.addr(),
                     'env': 'canary'}]}}}}}, f)
        with open(os.path.join(d, 'admin.tokens'), 'w') as f:
            f.write('%s bench\n' % TOKEN)
        confs.write_node_conf(
            os.path.join(d, 'proxy.conf'), d, a.module, port, SERVICE,
            keepalive='keepalive 16',
            server=['add_header X-Pid $pid always;'],
            admin=['tce_admin_token_file %s/admin.tokens;' % d])
        proc = subprocess.Popen([a.nginx, '-p', d + '/', '-c',
                                 os.path.join(d, 'proxy.conf'),
                                 '-g', 'daemon off;'])
        wait(lambda: call(port, 'GET', DEPLOYS)[0] == 200, 20, 'nginx')
        load = Load(port, a.rps)

        print('deploy bench: 2 workers, %.0f requests/s (new connection '
              'each), canary step %g%%, canary answers 500 from a moment '
              'on' % (a.rps, a.weight))
        runs = []
        for i in range(a.runs):
            r = one_run(port, prod, canary, load, a.weight, a.after)
            runs.append(r)
            print('  run %d: after the first 500: decision %.0f ms, live '
                  'on every worker %.0f ms, last canary request %.0f ms; '
                  'gate %s, %d 500s answered; then %d answers over %d '
                  'workers, %d not from prod'
                  % (i + 1, r['decision'] * 1000, r['live'] * 1000,
                     r['last_canary'] * 1000, r['gate'], r['bad_answers'],
                     r['after'], r['pids'], r['wrong']))
        live = [r['live'] for r in runs]
        dec = [r['decision'] for r in runs]
        print('  decision p50 %.0f ms, max %.0f ms; live p50 %.0f ms, '
              'max %.0f ms; target live < 2000 ms: %s'
              % (pct(dec, .5) * 1000, max(dec) * 1000, pct(live, .5) * 1000,
                 max(live) * 1000, 'PASS' if max(live) < 2 else 'MISS'))
        return 0
    finally:
        if load:
            load.close()
        if proc:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        prod.stop()
        canary.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
