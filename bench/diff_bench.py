#!/usr/bin/env python3
"""API diff bench (a benchmark, not a test: it prints figures).

The cost of tce_diff per proxied request.  One nginx worker with the
module, one service of 2 prod instances and 1 canary instance (three
ports of a stock nginx backend answering a small JSON body), and two
locations in the same run: /plain/ (proxy_pass only) and /diff/ (the
same with "tce_diff sample=100": every request mirrored to the canary
and a second prod, compared).  Blocks of --requests sequential
keepalive requests alternate between them, --rounds times.  Measured:
  1. client latency p50/p99 of each (the comparison must not add to
     it: the mirrors run after the answer is on its way);
  2. the front worker's CPU time per request (utime + stime from
     /proc), mirrors and comparison included: what sample=100 costs;
     at sample=N the extra is about N% of it;
  3. backend requests per client request (3 with tce_diff).

    bench/diff_bench.py --nginx /usr/sbin/nginx \
        --module build/ngx_tce_module.so [--requests 2000] [--rounds 3]
"""

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import tempfile
import time


SERVICE = 'bench.diff.api'

BACKEND = """\
worker_processes 1;
pid {dir}/backend.pid;
error_log {dir}/backend-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {dir}/backend-access.log;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{p0};
        listen 127.0.0.1:{p1};
        listen 127.0.0.1:{p2};
        default_type application/json;
        return 200 '{{"id": 42, "name": "order", "items": [1, 2, 3]}}';
    }}
}}
"""

PROXY = """\
load_module {module};
{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    tce_zone tce 4m;
    tce_state {dir}/state.json;
    upstream api {{ tce_service {service}; tce_keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        location /plain/ {{
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location /diff/ {{
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            tce_diff sample=100 name=bench;
        }}
        location = /metrics {{ tce_metrics; }}
    }}
}}
"""


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def start(nginx, d, name, text):
    conf = os.path.join(d, name + '.conf')
    with open(conf, 'w') as f:
        f.write(text)
    subprocess.run([nginx, '-p', d, '-c', conf], check=True)
    return conf


def stop(nginx, d, conf):
    subprocess.run([nginx, '-p', d, '-c', conf, '-s', 'stop'],
                   stderr=subprocess.DEVNULL)


def get(port, path, timeout=10):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
    c.request('GET', path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit('bench: timed out waiting for ' + what)


def worker_pid(d):
    with open(os.path.join(d, 'nginx.pid')) as f:
        master = f.read().strip()
    out = subprocess.run(['pgrep', '-P', master], stdout=subprocess.PIPE,
                         check=True).stdout.split()
    return int(out[0])


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def counted(port):
    """tce_diff outcomes counted so far, all results."""
    _, body = get(port, '/metrics')
    return sum(int(float(m)) for m in re.findall(
        rb'^tce_diff_requests_total\{[^}]*\} (\S+)$', body, re.M))


def block(port, prefix, n):
    """n sequential keepalive requests; their latencies (s)."""
    out = []
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    for i in range(n):
        t0 = time.monotonic()
        c.request('GET', '%s%d' % (prefix, i))
        r = c.getresponse()
        r.read()
        out.append(time.monotonic() - t0)
        if r.status != 200:
            raise SystemExit('bench: request answered %d' % r.status)
    c.close()
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--nginx', default='/usr/sbin/nginx')
    ap.add_argument('--module', required=True)
    ap.add_argument('--requests', type=int, default=2000)
    ap.add_argument('--rounds', type=int, default=3)
    a = ap.parse_args()

    d = tempfile.mkdtemp(prefix='tce-diff-bench-')
    bports = [free_port() for _ in range(3)]
    port = free_port()
    user = 'user root;' if os.geteuid() == 0 else ''
    insts = [{'id': 'p1', 'address': '127.0.0.1:%d' % bports[0]},
             {'id': 'p2', 'address': '127.0.0.1:%d' % bports[1]},
             {'id': 'c1', 'address': '127.0.0.1:%d' % bports[2],
              'env': 'canary'}]
    with open(os.path.join(d, 'state.json'), 'w') as f:
        json.dump({'version': 1, 'services': {SERVICE: {'clusters': {
            'default': {'instances': insts}}}}}, f)

    bconf = start(a.nginx, d, 'backend', BACKEND.format(
        dir=d, p0=bports[0], p1=bports[1], p2=bports[2]))
    pconf = None
    try:
        pconf = start(a.nginx, d, 'proxy', PROXY.format(
            module=os.path.abspath(a.module), user=user, dir=d,
            service=SERVICE, port=port))
        wait(lambda: get(port, '/plain/x')[0] == 200, 20, 'nginx')
        pid = worker_pid(d)
        blog = os.path.join(d, 'backend-access.log')

        lat = {'plain': [], 'diff': []}
        cpu = {'plain': 0.0, 'diff': 0.0}
        hits = {'plain': 0, 'diff': 0}
        done = counted(port)

        for _ in range(a.rounds):
            for name in ('plain', 'diff'):
                before = os.path.getsize(blog)
                c0 = cpu_seconds(pid)
                lat[name] += block(port, '/%s/' % name, a.requests)
                if name == 'diff':
                    done += a.requests
                    wait(lambda: counted(port) >= done, 60,
                         'the mirrors to be compared')
                cpu[name] += cpu_seconds(pid) - c0
                with open(blog, 'rb') as f:
                    f.seek(before)
                    hits[name] += f.read().count(b'\n')

        n = a.requests * a.rounds
        _, body = get(port, '/metrics')
        results = dict(re.findall(
            rb'^tce_diff_requests_total\{[^}]*result="(\w+)"\} (\S+)$',
            body, re.M))

        print('diff bench: %d requests per location, 1 worker, '
              'tce_diff sample=100' % n)
        for name in ('plain', 'diff'):
            print('  %-5s p50 %.3f ms, p99 %.3f ms, worker CPU %.1f us '
                  'per request, %.2f backend requests per request'
                  % (name, pct(lat[name], 50) * 1000,
                     pct(lat[name], 99) * 1000, cpu[name] / n * 1e6,
                     hits[name] / float(n)))
        print('  ratio diff/plain: latency p50 %.2f, p99 %.2f; '
              'worker CPU %.2f'
              % (pct(lat['diff'], 50) / pct(lat['plain'], 50),
                 pct(lat['diff'], 99) / pct(lat['plain'], 99),
                 cpu['diff'] / max(cpu['plain'], 1e-9)))
        print('  outcomes: %s' % ', '.join(
            '%s %s' % (k.decode(), v.decode())
            for k, v in sorted(results.items())))
    finally:
        if pconf:
            stop(a.nginx, d, pconf)
        stop(a.nginx, d, bconf)
        time.sleep(0.5)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == '__main__':
    main()
