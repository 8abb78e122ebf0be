#!/usr/bin/env python3
"""
make limits: the registry's limits, measured (README "Reliability").

    limits.py [--sizes 1m,8m,32m] [--shapes 1,10,100] [--step 0.05]

For each tce_zone size and each shape (S services), nginx (the built
module, 2 workers, tce_metrics on, one `tce_service $var` upstream)
serves S services from its state file; the file grows in steps of
about `step` of the zone's estimated room, each step applied as an
operator does it (the file rewritten, nginx -s reload) and followed by
one request per service (the workers build their views and metric
series, as under traffic), until the zone refuses a reload.  The
largest registry it held is printed (services x instances, zone
usage), and what the refusal did is checked: the reload refused with
"too small for tce_state", not one service changed (the file is
refused whole), every service still routed, and
tce_zone_writes_refused_total went up.

Then the longest names: an instance id, a version, an address
(admin API POST) and a service name (nginx -t) one byte under the
limit and at it, with what each gets.

Exit status 0 when every check held.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from world import (NGINX_BIN, Nginx, free_port, http_call,  # noqa: E402
                   read_from)
from conftest import file_size  # noqa: E402

TOKEN = 'tok-limits-0123456789abcdef'
CONSUL_MAX = 10000          # NGX_TCE_CONSUL_MAX_ENTRIES (shown)
INSTANCE_COST = 420         # bytes of zone per instance, for the steps

STATE = """\
    tce_zone tce {size};
    tce_state {dir}/state.json;
    tce_metrics_expire 1h;
    access_log off;
    map $http_x_service $tce_svc {{ default $http_x_service; }}
    upstream all {{ tce_service $tce_svc; }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location = /ready {{ return 200 "ready\\n"; }}
        location = /tce/status {{ tce_status; }}
        location = /metrics {{ tce_metrics; }}
        location / {{ proxy_pass http://all; }}
    }}
    server {{
        listen {backend};
        location / {{ return 200 "backend\\n"; }}
    }}
"""

ADMIN = """\
    tce_zone tce 1m;
    tce_state {dir}/state.json;
    client_max_body_size 1m;
    access_log off;
    upstream api {{ tce_service {svc}; }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location = /ready {{ return 200 "ready\\n"; }}
        location /api/ {{
            tce_admin;
            tce_admin_token_file {dir}/admin.tokens;
        }}
    }}
"""


def psm(i):
    return 'lim.s%04d.api' % i


def addr(n, port):
    """The n-th instance's address: 127.0.0.0/8 is all loopback, so
    every instance reaches the backend server block."""
    n += 1
    return '127.%d.%d.%d' % (n >> 16, (n >> 8) & 255, n & 255), port


def parse_size(text):
    m = re.match(r'(\d+)([km]?)$', text.lower())
    return int(m.group(1)) * {'': 1, 'k': 1024, 'm': 1 << 20}[m.group(2)]


def metric(text, name):
    m = re.search(r'^%s(?:\{[^}]*\})? (\d+)' % name, text, re.M)
    return int(m.group(1)) if m else None


class Zone:
    """One nginx (2 workers) with a tce_zone of a given size, its
    registry in the state file, changed as an operator does it: the
    file rewritten, then nginx -s reload."""

    def __init__(self, root, size):
        self.nginx = Nginx(root)
        self.backend = free_port()
        self.nginx.configure(raw_http=STATE.format(
            size=size, dir=self.nginx.dir, port=self.nginx.port,
            backend=self.backend))

    def write(self, counts):
        """The state file: service name -> that many instances, ids and
        addresses the same from one step to the next."""
        services = {}
        for name, n in sorted(counts.items()):
            base = int(name.split('.')[1][1:]) * CONSUL_MAX
            insts = []
            for k in range(n):
                host, port = addr(base + k, self.backend)
                insts.append({'id': 'i%06d' % k, 'address': '%s:%d'
                              % (host, port), 'env': 'prod'})
            services[name] = {'default': insts}
        self.nginx.write_state(services)

    def reload(self):
        """SIGHUP: True once new workers serve, False when the reload is
        refused ([emerg] in the log, the old workers go on)."""
        n = self.nginx
        old = n.workers()
        offset = file_size(n.error_log)
        n.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            log = read_from(n.error_log, offset)
            if '[emerg]' in log:
                return False, log
            new = n.workers()
            if len(new) == n.nworkers and not (new & old):
                return True, log
            time.sleep(0.05)
        raise RuntimeError('no new workers nor [emerg] 60 s after SIGHUP')

    def get(self, path, headers=None):
        return http_call(self.nginx.port, 'GET', path, headers=headers,
                         timeout=120)

    def status(self):
        st, _, body = self.get('/tce/status')
        assert st == 200, st
        return json.loads(body)['services']

    def metrics(self):
        st, _, body = self.get('/metrics')
        assert st == 200, st
        return body.decode()

    def route(self, service):
        st, _, body = self.get('/x', {'X-Service': service})
        return st, body


def ids(svcs, name):
    return sorted(i['id'] for i in svcs.get(name, {}).get('instances', ()))


def grow(root, size_text, nsvc, step, out):
    """Grows nsvc services until the zone refuses a reload; returns a
    row of the table and the list of failed checks."""
    size = parse_size(size_text)
    z = Zone(os.path.join(root, '%s-%d' % (size_text, nsvc)), size_text)
    tag = '%s/%d' % (size_text, nsvc)
    bad = []
    per = max(1, int(size * step / INSTANCE_COST / nsvc))
    want = {psm(i): per for i in range(nsvc)}
    z.write(want)
    z.nginx.start()
    try:
        t0 = time.monotonic()
        refused = None
        while True:
            svcs = z.status()
            for name in want:           # views and series, as traffic
                st, _ = z.route(name)
                if st != 200:
                    bad.append('%s: %s answered %d' % (tag, name, st))
            stored = {name: ids(svcs, name) for name in want}
            if any(len(stored[n]) != want[n] for n in want):
                bad.append('%s: the registry does not hold the file'
                           % tag)
                break
            before = metric(z.metrics(), 'tce_zone_writes_refused_total')
            asked = {n: v + per for n, v in want.items()}
            z.write(asked)
            ok, log = z.reload()
            if not ok:
                refused = (asked, log, before)
                break
            want = asked
        secs = time.monotonic() - t0

        m = z.metrics()
        total = sum(len(v) for v in stored.values())
        row = {'size': size_text, 'services': nsvc, 'per_service': per,
               'largest': max(want.values()), 'total': total,
               'used': metric(m, 'tce_zone_used_bytes'), 'zone': size,
               'seconds': secs,
               'dropped': metric(m, 'tce_metrics_dropped_total')}
        if refused:
            asked, log, before = refused
            svcs = z.status()
            now = metric(m, 'tce_zone_writes_refused_total')
            moved = [n for n in want if ids(svcs, n) != stored[n]]
            routed = [z.route(n)[0] for n in sorted(want)]
            emerg = re.search(r'\[emerg\] \d+#\d+: (.*)', log).group(1)
            emerg = emerg.replace(z.nginx.dir, '...')
            row.update(asked=sum(asked.values()), error=emerg,
                       counter=(before, now), moved=len(moved),
                       routed=routed.count(200))
            if moved:
                bad.append('%s: the refused reload changed %d of %d '
                           'services (%s ...)' % (tag, len(moved), nsvc,
                                                  moved[0]))
            if routed.count(200) != nsvc:
                bad.append('%s: %d of %d services route after the refusal'
                           % (tag, routed.count(200), nsvc))
            if not (now or 0) > (before or 0):
                bad.append('%s: tce_zone_writes_refused_total %s -> %s'
                           % (tag, before, now))
            if 'too small for tce_state' not in emerg:
                bad.append('%s: the refusal says "%s"' % (tag, emerg))
        else:
            bad.append('%s: no refusal' % tag)
        out.append(row)
        return row, bad
    finally:
        z.nginx.stop()


def names(root):
    """The longest id, version, address and service name accepted, and
    what one byte more gets.  Returns (rows, failed checks)."""
    rows, bad = [], []
    svc = 'lim.names.api'
    n = Nginx(os.path.join(root, 'names'))
    with open(os.path.join(n.dir, 'admin.tokens'), 'w') as f:
        f.write('%s limits\n' % TOKEN)
    n.write_state({svc: {'default': [
        {'id': 'p0', 'address': '127.0.0.1:9', 'env': 'prod'}]}})
    n.configure(raw_http=ADMIN.format(dir=n.dir, svc=svc, port=n.port))
    n.start()
    path = '/api/v1/services/%s/clusters/default/instances' % svc
    h = {'Authorization': 'Bearer ' + TOKEN}

    def post(what, body, expect):
        st, _, text = http_call(n.port, 'POST', path, body, h)
        code = ''
        if st >= 400:
            code = json.loads(text)['error']['code']
        shown = body.get(what, '')
        rows.append((what, len(shown), st, code))
        if st != expect:
            bad.append('%s of %d bytes: %d %s, expected %d'
                       % (what, len(shown), st, code, expect))

    try:
        post('id', {'id': 'a' * 127, 'address': '127.0.0.1:10'}, 201)
        post('id', {'id': 'b' * 128, 'address': '127.0.0.1:11'}, 400)
        post('version', {'id': 'v1', 'address': '127.0.0.1:12',
                         'version': 'v' * 63}, 201)
        post('version', {'id': 'v2', 'address': '127.0.0.1:13',
                         'version': 'v' * 64}, 400)
        longest = '[0000:0000:0000:0000:0000:ffff:127.255.255.255]:65535'
        post('address', {'id': 'a1', 'address': longest}, 201)
        post('address', {'id': 'a2', 'address':
                         '[0000:0000:0000:0000:0000:0000:0000:0001]:65535'},
             201)
        post('address', {'id': 'a3', 'address': 'backend.example:80'}, 400)
    finally:
        n.stop()

    # a service name: three labels, 127 bytes at most (nginx -t)
    for length in (127, 128):
        name = 'a.b.' + 'c' * (length - 4)
        m = Nginx(os.path.join(root, 'name-%d' % length))
        m.configure(raw_http='    tce_zone tce 1m;\n    upstream u { '
                    'tce_service %s; }\n' % name)
        p = subprocess.run([NGINX_BIN, '-t', '-p', m.dir + '/', '-c',
                            m.conf_path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        text = p.stdout.decode('utf-8', 'replace')
        why = ''
        if p.returncode:
            why = re.search(r'\[emerg\] \d+#\d+: ([^"]*)', text)
            why = why.group(1).strip() if why else text.strip()[-90:]
        rows.append(('service', length, 'ok' if p.returncode == 0
                     else 'nginx -t fails', why[:90]))
        if (p.returncode == 0) != (length == 127):
            bad.append('service name of %d bytes: nginx -t rc %d'
                       % (length, p.returncode))
    return rows, bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    ap.add_argument('--sizes', default='1m,8m,32m')
    ap.add_argument('--shapes', default='1,10,100')
    ap.add_argument('--step', type=float, default=0.05,
                    help='growth per step, a fraction of the zone')
    ap.add_argument('--workdir', default=None)
    args = ap.parse_args()
    root = args.workdir or tempfile.mkdtemp(prefix='tce-limits-')
    os.makedirs(root, exist_ok=True)
    t0 = time.monotonic()
    rows, bad = [], []
    for size in args.sizes.split(','):
        for shape in args.shapes.split(','):
            row, b = grow(root, size, int(shape), args.step, rows)
            bad += b

    p = print
    p('== largest registry each zone held: the state file grown in steps '
      'of %.0f%% of the zone (nginx -s reload each), one request per '
      'service after each step' % (args.step * 100))
    p('%-5s %8s %9s %8s %6s %6s  %s' % ('zone', 'services', 'instances',
                                         'each', 'used', 'B/inst',
                                         'the next step'))
    for r in rows:
        if r.get('error'):
            what = ('%d asked: reload refused, %d services changed, %d of '
                    '%d routed; writes_refused %d -> %d; "%s"'
                    % (r['asked'], r['moved'], r['routed'], r['services'],
                       r['counter'][0] or 0, r['counter'][1] or 0,
                       r['error']))
        else:
            what = 'no refusal'
        p('%-5s %8d %9d %8d %5.0f%% %6d  %s'
          % (r['size'], r['services'], r['total'], r['largest'],
             100.0 * (r['used'] or 0) / r['zone'],
             (r['used'] or 0) / max(r['total'], 1), what))
    p('(a Consul answer holds at most %d entries: a Consul-fed service '
      'never grows past that, whatever the zone)' % CONSUL_MAX)
    nrows, nbad = names(root)
    bad += nbad
    p('== longest names')
    for what, length, st, code in nrows:
        p('%-8s %4d bytes: %s %s' % (what, length, st, code))
    for b in bad:
        p('FAILED ' + b)
    p('%s: %d zone/shape runs, %d name checks, %.0f s'
      % ('PASS' if not bad else 'FAIL', len(rows), len(nrows),
         time.monotonic() - t0))
    if not bad and not args.workdir:
        shutil.rmtree(root, ignore_errors=True)
    sys.exit(1 if bad else 0)


if __name__ == '__main__':
    main()
