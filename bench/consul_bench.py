#!/usr/bin/env python3
"""Consul discovery bench (a benchmark, not a test: it prints figures).

1. Change-to-routing delay: nginx (4 workers, tce_consul on the Consul
   API double in this process) in front of a stock nginx backend, under
   a light steady load of keepalive requests.  Each change is a
   registration or a deregistration at the double; the delay is the
   time from the change to the first response routed accordingly:
     register B (weight 1000 next to A, weight 1): first answer from B;
     deregister B: first answer from A.
   p50/p99 over --changes changes (target p99 <= 50 ms).
2. Idle cost: requests Consul receives per watched service per minute
   when nothing changes (target <= 1 per wait period).

    bench/consul_bench.py --nginx /usr/sbin/nginx \
        --module build/ngx_tce_module.so [--changes 200] [--idle 30]
"""

import argparse
import http.client
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'doubles'))

from consul_double import ConsulDouble  # noqa: E402


SERVICE = 'bench.consul.api'
IDLE_SERVICES = ('bench.idle.a', 'bench.idle.b', 'bench.idle.c')

BACKEND = """\
worker_processes 1;
pid {dir}/backend.pid;
error_log {dir}/backend-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{a};
        listen 127.0.0.1:{b};
        return 200 "$server_port";
    }}
}}
"""

PROXY = """\
load_module {module};
{user}
worker_processes 4;
pid {dir}/nginx.pid;
error_log {dir}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    tce_zone tce 4m;
    tce_consul {consul} wait={wait};
    upstream api {{ tce_service {service}; keepalive 16; }}
{idle_upstreams}
    server {{
        listen 127.0.0.1:{port} reuseport;
        keepalive_requests 100000;
        location / {{
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise SystemExit('consul bench: timed out waiting for ' + what)


def get(conn):
    conn.request('GET', '/')
    r = conn.getresponse()
    body = r.read()
    return int(body) if r.status == 200 else None


class Load:
    """Light steady load: one client over 8 keepalive connections
    (spread over the workers by reuseport), a request every ~1 ms.
    Records (time, port) of every answer."""

    def __init__(self, port):
        self.port = port
        self.conns = [http.client.HTTPConnection('127.0.0.1', port,
                                                 timeout=5)
                      for _ in range(8)]
        self.lock = threading.Lock()
        self.answers = []
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        i = 0
        while not self.stop:
            c = self.conns[i % len(self.conns)]
            i += 1
            try:
                port = get(c)
            except (OSError, http.client.HTTPException):
                c.close()
                continue
            with self.lock:
                self.answers.append((time.monotonic(), port))
                if len(self.answers) > 100000:
                    del self.answers[:50000]
            time.sleep(0.001)

    def first_after(self, t0, port, timeout=2.0):
        """Seconds from t0 to the first answer from port, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            best = None
            with self.lock:
                for t, p in reversed(self.answers):
                    if t < t0:
                        break
                    if p == port:
                        best = t
            if best is not None:
                return best - t0
            time.sleep(0.0005)
        return None


def percentile(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--nginx', default='/usr/sbin/nginx')
    ap.add_argument('--module', default=os.path.join(
        HERE, '..', 'build', 'ngx_tce_module.so'))
    ap.add_argument('--changes', type=int, default=200)
    ap.add_argument('--idle', type=float, default=30.0,
                    help='seconds of the idle measurement')
    ap.add_argument('--idle-wait', default='5s')
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix='tce-consul-bench-')
    procs = []
    consul = ConsulDouble(jitter=True).start()

    def start(conf_text, name):
        path = os.path.join(tmp, name + '.conf')
        with open(path, 'w') as f:
            f.write(conf_text)
        p = subprocess.Popen([args.nginx, '-p', tmp + '/', '-c', path,
                              '-g', 'daemon off;'],
                             stdout=subprocess.DEVNULL,
                             stderr=open(os.path.join(tmp, name + '.err'),
                                         'wb'))
        procs.append(p)
        return p

    try:
        a, b = free_port(), free_port()
        start(BACKEND.format(dir=tmp, a=a, b=b), 'backend')
        port = free_port()
        idle_ups = ''.join('    upstream idle%d { tce_service %s; }\n'
                           % (i, s) for i, s in enumerate(IDLE_SERVICES))
        start(PROXY.format(module=os.path.abspath(args.module), dir=tmp,
                           consul=consul.url, wait=args.idle_wait,
                           service=SERVICE, port=port,
                           idle_upstreams=idle_ups,
                           user='user root;' if os.geteuid() == 0 else ''),
              'proxy')
        for s in IDLE_SERVICES:
            consul.register(s, s + '-1', '127.0.0.1', a)
        consul.register(SERVICE, 'A', '127.0.0.1', a, weight=1)

        def serving():
            try:
                c = http.client.HTTPConnection('127.0.0.1', port, timeout=1)
                return get(c) == a
            except (OSError, http.client.HTTPException):
                return False
        wait_until(serving, 10, 'nginx to route to A')

        load = Load(port)
        load.thread.start()
        time.sleep(0.2)

        # 1. change -> routing delay
        reg, dereg, missed = [], [], 0
        for i in range(args.changes):
            time.sleep(random.uniform(0.1, 0.2))
            t0 = time.monotonic()
            if i % 2 == 0:
                consul.register(SERVICE, 'B', '127.0.0.1', b, weight=1000)
                d = load.first_after(t0, b)
                if d is not None:
                    reg.append(d)
            else:
                consul.deregister('B')
                d = load.first_after(t0, a)
                if d is not None:
                    dereg.append(d)
            if d is None:
                missed += 1
        load.stop = True
        load.thread.join(5)

        both = reg + dereg
        print('Consul change -> first request routed accordingly '
              '(4 workers, light load, %d changes, %d missed):'
              % (args.changes, missed))
        for name, v in (('register', reg), ('deregister', dereg),
                        ('all', both)):
            if v:
                print('  %-10s n=%3d  p50 %6.1f ms  p99 %6.1f ms  '
                      'max %6.1f ms' % (name, len(v),
                                        1000 * percentile(v, 0.5),
                                        1000 * percentile(v, 0.99),
                                        1000 * max(v)))
        if both:
            p99 = 1000 * percentile(both, 0.99)
            print('  target p99 <= 50 ms: %.1f ms (ratio %.2f) %s'
                  % (p99, p99 / 50.0, 'OK' if p99 <= 50 else 'MISSED'))

        # 2. idle cost
        consul.reset_counts()
        t0 = time.monotonic()
        time.sleep(args.idle)
        elapsed = time.monotonic() - t0
        wait_s = float(args.idle_wait.rstrip('s'))
        print('Consul requests when nothing changes (wait=%s, %.0f s):'
              % (args.idle_wait, elapsed))
        worst = 0.0
        for s in IDLE_SERVICES + (SERVICE,):
            n = consul.count('/v1/health/service/' + s)
            per_min = n * 60.0 / elapsed
            per_wait = n * wait_s / elapsed
            worst = max(worst, per_wait)
            print('  %-18s %3d requests: %5.1f per minute, %.2f per wait '
                  'period' % (s, n, per_min, per_wait))
        print('  target <= 1 per wait period: worst %.2f %s'
              % (worst, 'OK' if worst <= 1.0 else 'MISSED'))
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGQUIT)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        consul.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
