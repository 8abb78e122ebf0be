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

With --nodes N (N > 1): a fleet of N such nginx nodes on one local
redis-server (tce_redis), the requests spread over the nodes in turn
(--rps in all), the deploy started on the first node (relayed to the
holder of the deploy lease when it is another).  "live" is then per
node: the bench polls each node's canary policy (GET .../canary) and
takes, for each worker of each node, the answer to its first request
sent after that node showed weight 0; the largest over every worker of
every node.  The decision is the holder's.

    bench/deploy_bench.py --nginx /usr/sbin/nginx \\
        --module build/ngx_tce_module.so [--runs 5] [--rps 100] \\
        [--weight 10] [--nodes 2]
"""

import argparse
import concurrent.futures
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from tcebench import confs

SERVICE = 'bench.deploy.api'
TOKEN = 'bench-token-0123456789abcdef'
DEPLOYS = '/api/v1/services/%s/clusters/default/deploys' % SERVICE
CANARY = '/api/v1/services/%s/clusters/default/canary' % SERVICE
REDIS_BIN = shutil.which('redis-server') or '/usr/bin/redis-server'

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
    """rps requests per second, open loop, a new connection each, to the
    ports in turn; the answers as (sent, status, pid, body, received,
    port)."""

    def __init__(self, ports, rps):
        self.ports = ports
        self.rps = rps
        self.out = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.pool = concurrent.futures.ThreadPoolExecutor(32)
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def one(self, sent, port):
        try:
            c = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
            c.request('GET', '/', headers={'Connection': 'close'})
            r = c.getresponse()
            body = r.read()
            c.close()
            res = (sent, r.status, r.getheader('X-Pid'), body,
                   time.time(), port)
        except OSError:
            res = (sent, None, None, b'', time.time(), port)
        with self.lock:
            self.out.append(res)

    def run(self):
        t = time.monotonic()
        i = 0
        while not self.stop.is_set():
            i += 1
            self.pool.submit(self.one, time.time(),
                             self.ports[i % len(self.ports)])
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


def holder(ports):
    """The node that drives deploys (the only one without a fleet)."""
    if len(ports) == 1:
        return ports[0]
    for port in ports:
        st, j = call(port, 'GET', '/api/v1/status')
        if st == 200 and (j.get('deploy_lease') or {}).get('drives'):
            return port
    return None


def watch_rollback(ports, stop):
    """One poller per node: the time each node's canary policy went to
    weight 0 (its zone: what its workers route by)."""
    seen = {}

    def poll(port):
        while not stop.is_set() and port not in seen:
            try:
                st, j = call(port, 'GET', CANARY)
                if st == 200 and j['canary']['weight_bp'] == 0:
                    seen[port] = time.time()
                    return
            except (OSError, ValueError, KeyError, TypeError):
                pass
            time.sleep(0.02)

    ts = [threading.Thread(target=poll, args=(p,), daemon=True)
          for p in ports]
    for t in ts:
        t.start()
    return seen, ts


def one_run(ports, prod, canary, load, weight, after):
    canary.bad = False
    canary.first_bad = None
    st, d = call(ports[0], 'POST', DEPLOYS, {'steps': [weight, 100],
                                             'step_seconds': 600,
                                             'min_requests': 20})
    if st != 201:
        raise SystemExit('bench: POST deploys answered %d: %s' % (st, d))
    port = wait(lambda: holder(ports), 10, 'the deploy lease\'s holder')
    # the step's window has begun and counts canary requests
    wait(lambda: (call(port, 'GET', DEPLOYS + '/current')[1]['steps'][0]
                  .get('figures') or {}).get('canary_requests', 0) >= 5,
         30, 'the step to count canary requests')
    stop = threading.Event()
    seen, pollers = watch_rollback(ports, stop)
    start = time.time()
    canary.bad = True
    d = wait(lambda: (lambda c: c['state'] != 'running' and c)(
        call(port, 'GET', DEPLOYS + '/current')[1]), 60, 'the rollback')
    if d['state'] != 'rolled_back':
        raise SystemExit('bench: the deploy ended %s' % d['state'])
    wait(lambda: len(seen) == len(ports), 10, 'every node at weight 0')
    stop.set()
    for t in pollers:
        t.join()
    last_seen = max(seen.values())
    time.sleep(after)
    first_bad = canary.first_bad
    last_canary = max(canary.since(start))
    # a worker routes by the new policy from its first request after
    # its node's write: the answer to each worker's first request sent
    # after its node showed weight 0 bounds the moment it routes 0%
    live = {}
    for sent, status, pid, body, got, p in sorted(load.since(start)):
        if pid is not None and pid not in live and sent >= seen[p]:
            live[pid] = got
    answers = load.since(last_seen)
    wrong = [x for x in answers if x[1] != 200 or x[3] != b'prod\n']
    decision = d['steps'][0]['ended_ms'] / 1000.0 - first_bad
    bad_answers = sum(1 for x in load.since(start) if x[1] == 500)
    return {'decision': decision,
            'live': max(live.values()) - first_bad,
            'last_canary': last_canary - first_bad,
            'gate': d['failed_gate'], 'bad_answers': bad_answers,
            'after': len(answers), 'pids': len(live), 'wrong': len(wrong)}


def redis_ping(port):
    c = socket.create_connection(('127.0.0.1', port), timeout=2)
    try:
        c.sendall(b'PING\r\n')
        return c.recv(64).startswith(b'+PONG')
    finally:
        c.close()


def start_node(a, d, prod, canary, redis_port):
    """One nginx node in dir d (its state file, tokens, conf)."""
    os.makedirs(d, exist_ok=True)
    port = free_port()
    with open(os.path.join(d, 'state.json'), 'w') as f:
        json.dump({'version': 1, 'services': {SERVICE: {'clusters': {
            'default': {'instances': [
                {'id': 'p1', 'address': prod.addr()},
                {'id': 'c1', 'address': canary.addr(),
                 'env': 'canary'}]}}}}}, f)
    with open(os.path.join(d, 'admin.tokens'), 'w') as f:
        f.write('%s bench\n' % TOKEN)
    http = []
    if redis_port:
        http = ['tce_redis 127.0.0.1:%d timeout=2s resync=1s;'
                % redis_port]
    confs.write_node_conf(
        os.path.join(d, 'proxy.conf'), d, a.module, port, SERVICE,
        keepalive='keepalive 16', http=http,
        server=['add_header X-Pid $pid always;'],
        admin=['tce_admin_token_file %s/admin.tokens;' % d])
    proc = subprocess.Popen([a.nginx, '-p', d + '/', '-c',
                             os.path.join(d, 'proxy.conf'),
                             '-g', 'daemon off;'])
    wait(lambda: call(port, 'GET', DEPLOYS)[0] == 200, 20, 'nginx')
    return port, proc


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
    p.add_argument('--nodes', type=int, default=1,
                   help='nginx nodes (more than 1: a fleet on a local '
                   'redis-server)')
    a = p.parse_args()

    d = tempfile.mkdtemp(prefix='tce-deploy-bench-')
    prod, canary = Backend('prod'), Backend('canary')
    procs = []
    load = None
    try:
        redis_port = None
        if a.nodes > 1:
            redis_port = free_port()
            procs.append(subprocess.Popen(
                [REDIS_BIN, '--port', str(redis_port), '--bind',
                 '127.0.0.1', '--dir', d, '--save', '', '--appendonly',
                 'no', '--daemonize', 'no'],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait(lambda: redis_ping(redis_port), 10, 'redis-server')
        ports = []
        for i in range(a.nodes):
            port, proc = start_node(a, os.path.join(d, 'node%d' % i), prod,
                                    canary, redis_port)
            ports.append(port)
            procs.append(proc)
        wait(lambda: holder(ports), 20, 'a node to drive deploys')
        load = Load(ports, a.rps)

        print('deploy bench: %s2 workers, %.0f requests/s (new connection '
              'each), canary step %g%%, canary answers 500 from a moment '
              'on' % ('%d nodes on one redis-server, ' % a.nodes
                      if a.nodes > 1 else '', a.rps, a.weight))
        runs = []
        for i in range(a.runs):
            r = one_run(ports, prod, canary, load, a.weight, a.after)
            runs.append(r)
            print('  run %d: after the first 500: decision %.0f ms, live '
                  'on every worker%s %.0f ms, last canary request %.0f ms; '
                  'gate %s, %d 500s answered; then %d answers over %d '
                  'workers, %d not from prod'
                  % (i + 1, r['decision'] * 1000,
                     ' of every node' if a.nodes > 1 else '',
                     r['live'] * 1000,
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
        for proc in reversed(procs):
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
