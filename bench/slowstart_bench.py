#!/usr/bin/env python3
"""Slow start bench (a benchmark, not a test: it prints figures).

The curve of an instance added at run time: nginx (2 workers) in front
of a stock nginx backend, a service of 2 instances of weight 1 in the
state file; a third one is added by a state file change and a reload
while 2 keepalive clients send requests back to back.  For
slow_start=<--ramp> and for no slow_start, the new instance's share of
the answers per window of --step seconds from the moment the zone
stamped it (routable_since_ms, from the admin API), next to the
expected share f / (2 + f), f = min(1, t / ramp).

Writes build/slowstart.csv (t, share with slow_start, expected, share
without) and, when matplotlib is installed (python3-matplotlib),
build/slowstart.png; prints the curve as a table.

    bench/slowstart_bench.py --nginx /usr/sbin/nginx \\
        --module build/ngx_tce_module.so [--ramp 5] [--step 0.25]
"""

import argparse
import http.client
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

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, '..', 'build')
SERVICE = 'bench.slow.api'

def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def get(port, path):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    c.request('GET', path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, r, body


def wait(cond, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit('slowstart_bench: timed out waiting for %s' % what)


def state(path, ports, n):
    doc = {'version': 1, 'services': {SERVICE: {'clusters': {'default': {
        'instances': [{'id': 'i%d' % k, 'address': '127.0.0.1:%d'
                       % ports[k]} for k in range(n)]}}}}}
    with open(path + '.tmp', 'w') as f:
        json.dump(doc, f)
    os.rename(path + '.tmp', path)


def run(args, tmp, ramp, ports):
    d = tempfile.mkdtemp(dir=tmp)
    port = free_port()
    state(os.path.join(d, 'state.json'), ports, 2)
    conf = confs.write_node_conf(
        os.path.join(d, 'nginx.conf'), d, args.module, port,
        SERVICE + (' slow_start=%gs' % ramp if ramp else ''),
        zone_size='1m', keepalive='tce_keepalive 16',
        proxy=['add_header X-Instance $tce_instance always;'])
    nginx = [args.nginx, '-p', d + '/', '-c', conf]
    subprocess.run(nginx, check=True)
    try:
        wait(lambda: get(port, '/')[0] == 200, 10, 'nginx')
        state(os.path.join(d, 'state.json'), ports, 3)
        subprocess.run(nginx + ['-s', 'reload'], check=True)

        def stamped():
            _, _, body = get(port, '/api/v1/services/' + SERVICE)
            insts = json.loads(body)['clusters']['default']['envs'][
                'prod']['instances']
            return [i['routable_since_ms'] for i in insts
                    if i['id'] == 'i2' and i['routable_since_ms']]
        since = []

        def has():
            since[:] = stamped()
            return bool(since)
        wait(has, 10, 'the new instance')
        start = since[0] / 1000.0
        answers = []
        lock = threading.Lock()
        stop = start + args.ramp + 2

        def client():
            c = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
            mine = []
            while time.time() < stop:
                t = time.time()
                try:
                    c.request('GET', '/')
                    r = c.getresponse()
                    r.read()
                except (OSError, http.client.HTTPException):
                    # an old worker of the reload closed it: reconnect
                    c.close()
                    c = http.client.HTTPConnection('127.0.0.1', port,
                                                   timeout=10)
                    continue
                mine.append(((t + time.time()) / 2,
                             r.getheader('X-Instance') == 'i2'))
            c.close()
            with lock:
                answers.extend(mine)

        ts = [threading.Thread(target=client) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        curve = []
        k = 0
        while start + (k + 1) * args.step <= stop:
            w = [new for t, new in answers
                 if start + k * args.step <= t < start + (k + 1) * args.step]
            curve.append((k * args.step, len(w),
                          sum(w) / len(w) if w else float('nan')))
            k += 1
        return curve
    finally:
        subprocess.run(nginx + ['-s', 'quit'])
        wait(lambda: not os.path.exists(os.path.join(d, 'nginx.pid')), 10,
             'nginx to quit')


def expected(t, ramp):
    f = 1.0 if t >= ramp else max(t / ramp, 1.0 / 1024)
    return f / (2 + f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--nginx', default='/usr/sbin/nginx')
    ap.add_argument('--module', required=True)
    ap.add_argument('--ramp', type=float, default=5.0)
    ap.add_argument('--step', type=float, default=0.25)
    args = ap.parse_args()
    args.module = os.path.abspath(args.module)

    os.makedirs(BUILD, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='slowstart-', dir=BUILD)
    bdir = os.path.join(tmp, 'backend')
    os.makedirs(bdir)
    ports = [free_port() for _ in range(3)]
    bconf = confs.write_answers_conf(os.path.join(bdir, 'backend.conf'),
                                     bdir, [(ports, '$server_port\\n')])
    backend = [args.nginx, '-p', bdir + '/', '-c', bconf]
    subprocess.run(backend, check=True)
    try:
        wait(lambda: get(ports[0], '/')[0] == 200, 10, 'backend')
        with_ss = run(args, tmp, args.ramp, ports)
        without = run(args, tmp, None, ports)
    finally:
        subprocess.run(backend + ['-s', 'quit'])

    csv = os.path.join(BUILD, 'slowstart.csv')
    rows = []
    print('slow start: the new instance\'s share of answers (weights '
          '1:1:1, slow_start=%gs, windows of %gs)' % (args.ramp, args.step))
    print('%6s %6s %8s %8s %8s' % ('t (s)', 'reqs', 'share', 'expected',
                                   'no ss'))
    with open(csv, 'w') as f:
        f.write('t,share_slow_start,expected,share_without\n')
        for (t, n, s), (_, _, s0) in zip(with_ss, without):
            e = sum(expected(t + args.step * (i + 0.5) / 10, args.ramp)
                    for i in range(10)) / 10
            f.write('%.3f,%.4f,%.4f,%.4f\n' % (t, s, e, s0))
            rows.append((t, s, e, s0))
            print('%6.2f %6d %8.3f %8.3f %8.3f  %s' % (
                t, n, s, e, s0, '#' * int(round(s * 60))))
    err = max(abs(s - e) for _, s, e, _ in rows)
    print('largest gap to the expected share: %.3f; CSV: %s' % (err, csv))
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot([r[0] for r in rows], [r[1] for r in rows], 'o-',
                label='slow_start=%gs (measured)' % args.ramp)
        ax.plot([r[0] for r in rows], [r[2] for r in rows], '--',
                label='expected f/(2+f)')
        ax.plot([r[0] for r in rows], [r[3] for r in rows], 'x-',
                label='no slow_start')
        ax.set_xlabel('seconds since the instance was added')
        ax.set_ylabel('share of requests')
        ax.legend()
        png = os.path.join(BUILD, 'slowstart.png')
        fig.savefig(png)
        print('plot: %s' % png)
    except ImportError:
        print('plot: skipped (python3-matplotlib not installed)')
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
