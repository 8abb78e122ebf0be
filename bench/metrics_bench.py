#!/usr/bin/env python3
"""Metrics scrape bench (a benchmark, not a test: it prints figures).

nginx (2 workers, tce_metrics) in front of a stock nginx backend, with
one service of --instances instances (default 10,000) whose series all
exist.  Measures:
  1. the time of a Prometheus scrape (median and max of --scrapes);
     target: under 200 ms;
  2. request latency while a client scrapes in a loop, against the same
     load with no scrape: p50 and p99, and their ratios.  The scrape
     holds the zone's mutex one service at a time; requests take no
     lock, so a scrape must not stall traffic (only a request sharing
     the scraping worker's event loop can wait for it).

    bench/metrics_bench.py --nginx /usr/sbin/nginx \
        --module build/ngx_tce_module.so [--instances 10000]
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time


SERVICE = 'bench.metrics.api'

BACKEND = """\
worker_processes 1;
pid {dir}/backend.pid;
error_log {dir}/backend-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        return 200 "ok";
    }}
}}
"""

PROXY = """\
load_module {module};
{user}
worker_processes 2;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    tce_zone tce 64m;
    tce_state {dir}/state.json;
    upstream api {{ tce_service {service}; tce_keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
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


def latencies(port, seconds):
    """Request latencies (s) of one keepalive client for `seconds`."""
    out = []
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        c.request('GET', '/x')
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
    ap.add_argument('--instances', type=int, default=10000)
    ap.add_argument('--scrapes', type=int, default=10)
    ap.add_argument('--seconds', type=float, default=5)
    a = ap.parse_args()

    d = tempfile.mkdtemp(prefix='tce-metrics-bench-')
    bport, port = free_port(), free_port()
    user = 'user root;' if os.geteuid() == 0 else ''
    insts = [{'id': 'i-%05d' % i, 'address': '127.0.0.1:%d' % bport}
             for i in range(a.instances)]
    with open(os.path.join(d, 'state.json'), 'w') as f:
        json.dump({'version': 1, 'services': {SERVICE: {'clusters': {
            'default': {'instances': insts}}}}}, f)

    bconf = start(a.nginx, d, 'backend', BACKEND.format(dir=d, port=bport))
    pconf = None
    try:
        pconf = start(a.nginx, d, 'proxy', PROXY.format(
            module=os.path.abspath(a.module), user=user, dir=d,
            service=SERVICE, port=port))
        wait(lambda: get(port, '/x')[0] == 200, 20, 'nginx')
        wait(lambda: get(port, '/metrics')[1].count(
            b'tce_instance_weight{') >= a.instances, 60,
            'the series of %d instances' % a.instances)

        times, size = [], 0
        for _ in range(a.scrapes):
            t0 = time.monotonic()
            status, body = get(port, '/metrics')
            times.append(time.monotonic() - t0)
            size = len(body)

        quiet = latencies(port, a.seconds)

        # the scraper is a process of its own (curl), not a thread here
        scraper = subprocess.Popen(
            ['sh', '-c', 'n=0; trap \'echo $n; exit\' TERM; while :; do '
             'curl -s -o /dev/null http://127.0.0.1:%d/metrics; '
             'n=$((n+1)); done' % port], stdout=subprocess.PIPE)
        busy = latencies(port, a.seconds)
        scraper.terminate()
        out, _ = scraper.communicate(timeout=30)
        scrapes = int(out.split()[-1]) if out.split() else 0

        med = statistics.median(times)
        print('metrics bench: %d instances, scrape %d bytes'
              % (a.instances, size))
        print('  scrape time: median %.1f ms, max %.1f ms  (target < 200 ms:'
              ' %s)' % (med * 1000, max(times) * 1000,
                        'PASS' if med < 0.2 else 'MISS'))
        for name, xs in (('no scrape', quiet),
                         ('scraping in a loop (%d scrapes)' % scrapes,
                          busy)):
            print('  request latency, %s: p50 %.2f ms, p99 %.2f ms, '
                  '%d requests' % (name, pct(xs, 50) * 1000,
                                   pct(xs, 99) * 1000, len(xs)))
        print('  ratio scraping/no scrape: p50 %.2f, p99 %.2f'
              % (pct(busy, 50) / pct(quiet, 50),
                 pct(busy, 99) / pct(quiet, 99)))
    finally:
        if pconf:
            stop(a.nginx, d, pconf)
        stop(a.nginx, d, bconf)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(
        KeyboardInterrupt()))
    main()
