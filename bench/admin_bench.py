#!/usr/bin/env python3
"""Admin API bench (a benchmark, not a test: it prints figures).

nginx (2 workers) with the module, the admin API (token file, audit
log, state file) in front of a stock nginx backend; one service of 4
instances, 2 prod and 2 canary, all answering alike.  A steady load of
keepalive requests through the proxy runs in --clients threads; phases
alternate (--pairs times):
  quiet:   no admin writes;
  writes:  one client PUTs the service's canary weight (0% / 50%
           alternately) back to back, each write to the state file and
           the audit log, each a generation the workers apply.
Figures:
  1. admin write latency p50/p99 (the client's, answer included);
  2. proxied request latency p50/p99 per phase and the p99 ratio
     writes/quiet;
  3. from GET /api/v1/status "writes": the event-loop time per write
     (wall clock and CPU) and the state file's thread time.

    bench/admin_bench.py --nginx /usr/sbin/nginx \\
        --module build/ngx_tce_module.so [--seconds 5] [--pairs 2]
"""

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from tcebench import confs

SERVICE = 'bench.admin.api'
TOKEN = 'bench-token-0123456789abcdef'

def free_port():
    import socket
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_http(port, path, deadline=10):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            c = http.client.HTTPConnection('127.0.0.1', port, timeout=1)
            c.request('GET', path)
            if c.getresponse().status < 500:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit('nginx on port %d did not answer' % port)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float('nan')


def load(port, stop, out):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    while not stop.is_set():
        t0 = time.monotonic()
        c.request('GET', '/')
        r = c.getresponse()
        r.read()
        if r.status != 200:
            out.append(None)
            continue
        out.append(time.monotonic() - t0)


def writer(port, stop, out):
    path = '/api/v1/services/%s/clusters/default/canary' % SERVICE
    i = 0
    while not stop.is_set():
        body = json.dumps({'weight': 50 if i % 2 else 0})
        c = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
        t0 = time.monotonic()
        c.request('PUT', path, body=body, headers={
            'Authorization': 'Bearer ' + TOKEN,
            'Content-Type': 'application/json'})
        r = c.getresponse()
        r.read()
        c.close()
        if r.status != 200:
            raise SystemExit('admin write answered %d' % r.status)
        out.append(time.monotonic() - t0)
        i += 1


def phase(port, seconds, clients, writes):
    stop = threading.Event()
    lat, wlat = [], []
    threads = [threading.Thread(target=load, args=(port, stop, lat))
               for _ in range(clients)]
    if writes:
        threads.append(threading.Thread(target=writer,
                                        args=(port, stop, wlat)))
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return lat, wlat


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--nginx', default='/usr/sbin/nginx')
    p.add_argument('--module', required=True)
    p.add_argument('--seconds', type=float, default=5)
    p.add_argument('--pairs', type=int, default=2)
    p.add_argument('--clients', type=int, default=4)
    a = p.parse_args()

    d = tempfile.mkdtemp(prefix='tce-admin-bench-')
    procs = []
    try:
        bport, pport = free_port(), free_port()
        confs.write_answers_conf(os.path.join(d, 'backend.conf'), d,
                                 [([bport], 'ok')])
        insts = [{'id': 'i%d' % i, 'address': '127.0.0.1:%d' % bport,
                  'env': 'canary' if i >= 2 else 'prod'} for i in range(4)]
        with open(os.path.join(d, 'state.json'), 'w') as f:
            json.dump({'version': 1, 'services': {SERVICE: {'clusters': {
                'default': {'instances': insts}}}}}, f)
        with open(os.path.join(d, 'admin.tokens'), 'w') as f:
            f.write('%s bench\n' % TOKEN)
        confs.write_node_conf(
            os.path.join(d, 'proxy.conf'), d, a.module, pport, SERVICE,
            keepalive='keepalive 16', http=['keepalive_requests 100000;'],
            admin=['tce_admin_token_file %s/admin.tokens;' % d,
                   'tce_admin_audit %s/audit.log;' % d])
        for conf in ('backend.conf', 'proxy.conf'):
            procs.append(subprocess.Popen(
                [a.nginx, '-p', d + '/', '-c', os.path.join(d, conf),
                 '-g', 'daemon off;']))
        wait_http(bport, '/')
        wait_http(pport, '/api/')

        quiet, busy, wlat = [], [], []
        for _ in range(a.pairs):
            q, _ = phase(pport, a.seconds, a.clients, False)
            b, w = phase(pport, a.seconds, a.clients, True)
            quiet += q
            busy += b
            wlat += w
        c = http.client.HTTPConnection('127.0.0.1', pport, timeout=10)
        c.request('GET', '/api/v1/status')
        st = json.loads(c.getresponse().read())['writes']
        with open(os.path.join(d, 'audit.log')) as f:
            audit = sum(1 for _ in f)

        fails = sum(1 for x in quiet + busy if x is None)
        quiet = [x for x in quiet if x is not None]
        busy = [x for x in busy if x is not None]
        ms = 1000.0
        print('admin bench: 2 workers, %d load clients, %d x %.0f s '
              'per phase' % (a.clients, a.pairs, a.seconds))
        print('  admin writes: %d (audit lines %d), latency p50 %.2f ms, '
              'p99 %.2f ms' % (len(wlat), audit, pct(wlat, .5) * ms,
                               pct(wlat, .99) * ms))
        print('  event loop per write: %.0f us wall avg, %.0f us CPU avg, '
              '%.0f us wall max; state file thread %.0f us avg'
              % (st['event_loop_us_avg'], st['event_loop_cpu_us_avg'],
                 st['event_loop_us_max'], st['store_us_avg']))
        print('  proxied, quiet : %d requests, p50 %.2f ms, p99 %.2f ms'
              % (len(quiet), pct(quiet, .5) * ms, pct(quiet, .99) * ms))
        print('  proxied, writes: %d requests, p50 %.2f ms, p99 %.2f ms'
              % (len(busy), pct(busy, .5) * ms, pct(busy, .99) * ms))
        print('  p99 ratio writes/quiet: %.2f; p50 ratio %.2f; failed '
              'requests %d' % (pct(busy, .99) / pct(quiet, .99),
                               pct(busy, .5) / pct(quiet, .5), fails))
        return 0
    finally:
        for pr in procs:
            pr.terminate()
            try:
                pr.wait(10)
            except subprocess.TimeoutExpired:
                pr.kill()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
