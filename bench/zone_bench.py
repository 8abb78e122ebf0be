#!/usr/bin/env python3
"""Registry lookup bench (a benchmark, not a test: it prints figures).

The cost of the lookups by name (ngx_tce_zone_service()) while the
Consul watcher learns a catalog of N services (default 5,000), counted
in instructions by callgrind: nginx (one worker, catalog mode,
tce_consul_services tag=edge) runs under valgrind --tool=callgrind with
collection on only inside ngx_tce_zone_service(); the bench waits until
the registry holds the N services, stops nginx and prints the
instructions spent in lookups, in total and per service.

    bench/zone_bench.py --nginx /usr/sbin/nginx \\
        --module build/ngx_tce_module.so [--services 5000]
"""

import argparse
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'doubles'))

from consul_double import ConsulDouble  # noqa: E402


PROXY = """\
load_module {module};
{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    tce_zone tce 64m;
    tce_consul {consul} wait=5m resync=1h;
    tce_consul_services tag=edge;
    map $http_x_service $tce_svc {{ default $http_x_service; }}
    upstream api {{ tce_service $tce_svc; }}
    server {{
        listen 127.0.0.1:{port};
        location = /status {{ tce_status; }}
        location / {{ proxy_pass http://api; }}
    }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def services(port):
    try:
        with urllib.request.urlopen('http://127.0.0.1:%d/status' % port,
                                    timeout=60) as r:
            return len(json.load(r)['services'])
    except (OSError, ValueError):
        return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--nginx', default='/usr/sbin/nginx')
    ap.add_argument('--module', default=os.path.join(
        HERE, '..', 'build', 'ngx_tce_module.so'))
    ap.add_argument('--services', type=int, default=5000)
    ap.add_argument('--timeout', type=float, default=600)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix='tce-zone-bench-')
    consul = ConsulDouble(jitter=False).start()
    proc = None

    try:
        names = ['bench.s%05d.api' % i for i in range(args.services)]
        consul.register_many((n, 'i-%d' % i, '127.0.0.1', 9, ['edge'])
                             for i, n in enumerate(names))
        port = free_port()
        conf = os.path.join(tmp, 'nginx.conf')
        with open(conf, 'w') as f:
            f.write(PROXY.format(module=os.path.abspath(args.module),
                                 dir=tmp, consul=consul.url, port=port,
                                 user='user root;' if os.geteuid() == 0
                                 else ''))
        proc = subprocess.Popen(
            ['valgrind', '--tool=callgrind', '--trace-children=yes',
             '--toggle-collect=ngx_tce_zone_service',
             '--callgrind-out-file=' + tmp + '/cg.%p',
             args.nginx, '-p', tmp + '/', '-c', conf, '-g', 'daemon off;'],
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(tmp, 'valgrind.err'), 'wb'))

        t0 = time.monotonic()
        while services(port) < args.services:
            if time.monotonic() - t0 > args.timeout:
                sys.exit('timeout: the registry never held %d services'
                         % args.services)
            time.sleep(1)

        proc.send_signal(signal.SIGQUIT)
        proc.wait(120)
        proc = None

        total = 0
        for path in glob.glob(os.path.join(tmp, 'cg.*')):
            out = subprocess.run(['callgrind_annotate', path],
                                 capture_output=True, text=True).stdout
            for line in out.splitlines():
                fields = line.split()
                if (fields and fields[0][0].isdigit()
                        and line.rstrip().endswith('PROGRAM TOTALS')):
                    total += int(fields[0].replace(',', ''))

        print('catalog of %d services learned: %.1fM instructions in '
              'ngx_tce_zone_service() (callgrind), %.0f per service'
              % (args.services, total / 1e6, total / args.services))
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        consul.stop()
        if not os.environ.get("KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(tmp)


if __name__ == '__main__':
    main()
