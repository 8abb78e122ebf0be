#!/usr/bin/env python3
"""Rebuild bench (a benchmark, not a test: it prints figures).

What a flapping health check costs the request path.  nginx (--workers
workers, tce_consul on the Consul API double in this process) in front
of a stock nginx backend, one service of --instances instances with
random weights 1..1000 (gcd 1: a weighted cycle of about half a million
entries).  A light steady load of keepalive requests runs throughout;
phases alternate:
  quiet:    nothing changes;
  flapping: every --interval seconds one instance's health check goes
            critical (Consul drops it from ?passing answers) and the one
            dropped before comes back: one change of the set each time,
            applied at run time by the watcher, no reload.
Figures, per phase (all pairs together):
  1. proxied request latency p50/p99/max as the client sees it, and
     p99(flapping) - p99(quiet) (target: within 1 ms); requests are
     also split by the worker that served them (X-Worker header): the
     watcher's worker receives every Consul answer and has it parsed
     and the new schedule built on its other threads (its background
     thread), the others only switch views;
  2. CPU time per change per worker (/proc/<pid>/schedstat: flapping
     CPU less the worker's quiet CPU per request times its flapping
     requests, divided by the number of changes): for the workers
     other than the watcher's this is the whole cost of absorbing a
     change, view rebuild included (target: under 1 ms); the watcher's
     is printed apart.
--trace also prints, for the flapping requests slower than the quiet
p99 + 0.5 ms, when they started after the change before them: which
part of a change's life (the answer, the parse, the build, the
publication) slows requests.
--flap output makes each change rewrite a passing check's output only
(the answers change, the set does not).
--baseline MODULE runs the same phases against another build (e.g. one
made before schedules were shared) in the same run, for the ratio.

    bench/rebuild_bench.py --nginx /usr/sbin/nginx \\
        --module build/ngx_tce_module.so [--baseline other.so] \\
        [--instances 1000] [--seconds 2] [--pairs 12]
"""

import argparse
import bisect
import http.client
import multiprocessing
import os
import random
import resource
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


SERVICE = 'bench.rebuild.api'

# --trace: when requests started, counted from the change before them
TRACE_BINS = (0, 1, 2, 5, 10, 20, 30, 40, 60, 100)

# one port on every loopback address: instance i is 127.0.x.y:port
BACKEND = """\
worker_processes 1;
pid {dir}/backend.pid;
error_log {dir}/backend-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000;
    server {{
        listen {port};
        return 200 "ok";
    }}
}}
"""

PROXY = """\
load_module {module};
{user}
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log notice;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    tce_zone tce 64m;
    tce_consul {consul} wait=60s;
    upstream api {{ tce_service {service}; }}
    server {{
        listen 127.0.0.1:{proxy} reuseport;
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://api;
            add_header X-Worker $pid;
        }}
    }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def addr(i):
    return '127.0.%d.%d' % (i // 250, i % 250 + 1)


def percentile(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def cpu(pid):
    """Seconds the process's main thread (its event loop) has run on a
    CPU (ns resolution)."""
    with open('/proc/%d/task/%d/schedstat' % (pid, pid)) as f:
        return int(f.read().split()[0]) / 1e9


def cpu_threads(pid):
    """Seconds the process's other threads (background, thread pools) have
    run on a CPU."""
    total = 0.0
    for tid in os.listdir('/proc/%d/task' % pid):
        if int(tid) == pid:
            continue
        try:
            with open('/proc/%d/task/%s/schedstat' % (pid, tid)) as f:
                total += int(f.read().split()[0]) / 1e9
        except OSError:
            pass
    return total


def cpu_self():
    """Seconds this process (the Consul double's threads, the flapping
    loop) has run on a CPU; the load runs in a child, not counted."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def workers_of(master):
    out = subprocess.run(['ps', '-o', 'pid=', '--ppid', str(master)],
                         capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


class Load:
    """Steady light load from a child process (the Consul double's JSON
    encoding holds this process's GIL for milliseconds per change): it
    runs --clients threads, each on its own keepalive connection, one
    request every ~2 ms, and records (latency, worker, start), start on
    time.perf_counter()'s clock (CLOCK_MONOTONIC, shared with the
    bench process)."""

    def __init__(self, port, clients):
        self.port = port
        self.clients = clients
        self.parent, child = multiprocessing.Pipe()
        self.proc = multiprocessing.Process(target=self.main, args=(child,),
                                            daemon=True)

    def start(self):
        self.proc.start()

    def main(self, pipe):
        self.lock = threading.Lock()
        self.samples = []
        self.errors = 0
        self.stop = False
        threads = [threading.Thread(target=self.run, daemon=True)
                   for _ in range(self.clients)]
        for t in threads:
            t.start()
        while True:
            cmd = pipe.recv()
            with self.lock:
                s, self.samples = self.samples, []
                e, self.errors = self.errors, 0
            if cmd == 'stop':
                self.stop = True
                for t in threads:
                    t.join(5)
                pipe.send(([], 0))
                return
            pipe.send((s, e))

    def run(self):
        c = http.client.HTTPConnection('127.0.0.1', self.port, timeout=5)
        while not self.stop:
            t0 = time.perf_counter()
            try:
                c.request('GET', '/')
                r = c.getresponse()
                r.read()
                ok = r.status == 200
                worker = int(r.getheader('X-Worker') or 0)
            except (OSError, http.client.HTTPException, ValueError):
                c.close()
                ok = False
            dt = time.perf_counter() - t0
            with self.lock:
                if ok:
                    self.samples.append((dt, worker, t0))
                else:
                    self.errors += 1
            time.sleep(0.002)

    def take(self):
        self.parent.send('take')
        return self.parent.recv()

    def finish(self):
        self.parent.send('stop')
        self.parent.recv()
        self.proc.join(10)


def run_side(args, module, label, weights):
    tmp = tempfile.mkdtemp(prefix='tce-rebuild-bench-')
    procs = []
    consul = ConsulDouble(jitter=False, nice=args.double_nice,
                          idle=bool(args.double_idle),
                          encode_cache=True).start()

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
        bport, pport = free_port(), free_port()
        start(BACKEND.format(dir=tmp, port=bport), 'backend')
        for i, w in enumerate(weights):
            consul.register(SERVICE, 'i%04d' % i, addr(i), bport, weight=w)
        master = start(PROXY.format(
            module=os.path.abspath(module), dir=tmp, consul=consul.url,
            service=SERVICE, proxy=pport, workers=args.workers,
            user='user root;' if os.geteuid() == 0 else ''), 'proxy')

        deadline = time.monotonic() + 30
        while True:
            try:
                c = http.client.HTTPConnection('127.0.0.1', pport,
                                               timeout=2)
                c.request('GET', '/')
                if c.getresponse().status == 200:
                    break
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise SystemExit('rebuild bench: nginx never routed')
            time.sleep(0.05)

        workers = workers_of(master.pid)
        load = Load(pport, args.clients)
        load.start()
        time.sleep(1.0)
        load.take()

        phases = {'quiet': [], 'flapping': []}
        cpu_delta = {'quiet': {}, 'flapping': {}}
        thr_delta = {'quiet': {}, 'flapping': {}}
        double_cpu = {'quiet': 0.0, 'flapping': 0.0}
        errors = {'quiet': 0, 'flapping': 0}
        changes = 0
        change_times = []
        rnd = random.Random(7)
        down = None
        # p99(flapping) - p99(quiet) of each pair: a burst of the host's
        # own noise in one phase moves one pair's delta, not the median
        pair_deltas = []
        quiet_p99 = None

        def plan(count):
            # the changes of a flapping phase, drawn in advance: one
            # instance out, the previous one back, seen together
            nonlocal down
            out = []
            for _ in range(count):
                i = rnd.randrange(len(weights))
                flips = [('service:i%04d' % i, 'critical')]
                if down is not None:
                    flips.append(('service:i%04d' % down, 'passing'))
                down = i
                out.append(flips)
            return out

        for _ in range(args.pairs):
            for phase in ('quiet', 'flapping'):
                planned, last = [], None
                if phase == 'flapping' and args.flap == 'status':
                    planned = plan(int(args.seconds / args.interval) + 5)
                    if args.double_cache:
                        consul.prewarm(SERVICE, planned)
                c0 = {w: cpu(w) for w in workers}
                t0 = {w: cpu_threads(w) for w in workers}
                d0 = cpu_self()
                load.take()
                t_next = time.monotonic()
                t_end = t_next + args.seconds
                while time.monotonic() < t_end:
                    if phase == 'flapping' and args.flap == 'output':
                        # the answers change, the set does not
                        consul.set_check('service:i%04d'
                                         % rnd.randrange(len(weights)),
                                         'passing', output='%d' % changes)
                        changes += 1
                    elif phase == 'flapping':
                        if not planned:
                            planned = plan(1)
                        last = planned.pop(0)
                        consul.set_checks(last)
                        change_times.append(time.perf_counter())
                        changes += 1
                    t_next += args.interval
                    time.sleep(max(0.0, t_next - time.monotonic()))
                s, e = load.take()
                lat = [x[0] for x in s]
                if phase == 'quiet':
                    quiet_p99 = percentile(lat, 0.99) if lat else None
                elif lat and quiet_p99 is not None:
                    pair_deltas.append(1000 * (percentile(lat, 0.99)
                                               - quiet_p99))
                if planned and last:
                    # drawn, not applied: the instance out is the last's
                    down = int(last[0][0][len('service:i'):])
                c1 = {w: cpu(w) for w in workers}
                t1 = {w: cpu_threads(w) for w in workers}
                double_cpu[phase] += cpu_self() - d0
                phases[phase].extend(s)
                errors[phase] += e
                for w in workers:
                    cpu_delta[phase][w] = (cpu_delta[phase].get(w, 0)
                                           + c1[w] - c0[w])
                    thr_delta[phase][w] = (thr_delta[phase].get(w, 0)
                                           + t1[w] - t0[w])
        load.finish()
        if down is not None:
            consul.set_check('service:i%04d' % down, 'passing')
        out = report(label, phases, cpu_delta, errors, changes, workers,
                     thr_delta, double_cpu, pair_deltas)
        if args.trace:
            trace(phases, change_times, out['watcher'])
        return out
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
        if args.keep_tmp:
            print('  (files kept in %s)' % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def trace(phases, change_times, watcher):
    """Flapping requests slower than the quiet p99 + 0.5 ms, by when they
    started after the change before them, apart for the watcher's worker
    and the others: where in a change's life the slow ones are (the
    answer received, the parse, the set stored, the views rebuilt)."""
    q = sorted(x[0] for x in phases['quiet'])
    bound = q[int(0.99 * (len(q) - 1))] + 0.0005
    ct = sorted(change_times)
    rows = {}
    for dt, worker, t0 in phases['flapping']:
        i = bisect.bisect_right(ct, t0) - 1
        if i < 0:
            continue
        k = bisect.bisect_right(TRACE_BINS, (t0 - ct[i]) * 1000) - 1
        row = rows.setdefault(k, [0, 0, 0, 0])
        j = 0 if worker == watcher else 2
        row[j] += 1
        row[j + 1] += dt > bound
    print('  trace: flapping requests slower than the quiet p99 + 0.5 ms '
          '(%.2f ms), by when they started after a change '
          '(watcher\'s worker | others):' % (bound * 1000))
    for k in sorted(rows):
        hi = ('%g' % TRACE_BINS[k + 1] if k + 1 < len(TRACE_BINS)
              else '')
        nw, sw, no, so = rows[k]
        print('    %3g-%-3s ms: %4d of %5d (%5.2f%%) | %4d of %5d (%5.2f%%)'
              % (TRACE_BINS[k], hi, sw, nw, 100.0 * sw / nw if nw else 0,
                 so, no, 100.0 * so / no if no else 0))


def report(label, phases, cpu_delta, errors, changes, workers, thr_delta,
           double_cpu, pair_deltas):
    # CPU a worker spent because of the changes: its flapping CPU less
    # what its quiet CPU per request says its requests cost
    extra = {}
    for w in workers:
        nq = sum(1 for x in phases['quiet'] if x[1] == w)
        nf = sum(1 for x in phases['flapping'] if x[1] == w)
        per_req = cpu_delta['quiet'][w] / nq if nq else 0.0
        extra[w] = cpu_delta['flapping'][w] - per_req * nf
    # the watcher's worker: the one that spent the most, its thread pool
    # included (parses and builds)
    watcher = max(workers, key=lambda w: extra[w]
                  + thr_delta['flapping'][w] - thr_delta['quiet'][w])
    print('%s: %d workers, %d changes (one every %.0f ms), %d+%d '
          'requests, errors quiet %d flapping %d'
          % (label, len(workers), changes, 1000 * ARGS.interval,
             len(phases['quiet']), len(phases['flapping']),
             errors['quiet'], errors['flapping']))
    out = {}
    for subset, pick in (('all workers', lambda w: True),
                         ('watcher\'s worker', lambda w: w == watcher),
                         ('other workers', lambda w: w != watcher)):
        row = {}
        for phase in ('quiet', 'flapping'):
            lat = [x[0] for x in phases[phase] if pick(x[1])]
            if not lat:
                continue
            row[phase] = (1000 * percentile(lat, 0.5),
                          1000 * percentile(lat, 0.99),
                          1000 * max(lat), len(lat))
        if len(row) == 2:
            dp99 = row['flapping'][1] - row['quiet'][1]
            print('  %-17s quiet p50 %.2f p99 %.2f max %.1f ms (n=%d) | '
                  'flapping p50 %.2f p99 %.2f max %.1f ms (n=%d) | '
                  'p99 delta %+.2f ms %s'
                  % ((subset,) + row['quiet'] + row['flapping']
                     + (dp99, 'OK' if dp99 <= 1.0 else 'MISSED')))
            out[subset] = dp99
    if pair_deltas:
        med = percentile(pair_deltas, 0.5)
        print('  p99 delta per pair (all workers): median %+.2f ms %s, '
              'from %+.2f to %+.2f over %d pairs'
              % (med, 'OK' if med <= 1.0 else 'MISSED', min(pair_deltas),
                 max(pair_deltas), len(pair_deltas)))
        out['pair median'] = med
    others = [extra[w] for w in workers if w != watcher]
    per = 1000 * max(others) / changes if others and changes else 0.0
    print('  CPU per change: other workers max %.3f ms (mean %.3f) %s; '
          'watcher\'s worker %.3f ms'
          % (per, 1000 * sum(others) / len(others) / changes
             if others else 0.0,
             'OK' if per < 1.0 else 'MISSED',
             1000 * extra[watcher] / changes))
    # the other threads do nothing while quiet: its flapping CPU is the
    # changes' (Consul answers parsed, schedules built)
    thr = 1000 * (thr_delta['flapping'][watcher]
                  - thr_delta['quiet'][watcher]) / changes
    dbl = 1000 * (double_cpu['flapping'] - double_cpu['quiet']) / changes
    print('  watcher\'s worker per change: event loop %.3f ms, other '
          'threads %.3f ms; the Consul double (this process) %.3f ms'
          % (1000 * extra[watcher] / changes, thr, dbl))
    out['cpu_per_change'] = per
    out['watcher_cpu_per_change'] = 1000 * extra[watcher] / changes
    out['watcher_threads_per_change'] = thr
    out['double_per_change'] = dbl
    out['watcher'] = watcher
    return out


ARGS = None


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument('--nginx', default='/usr/sbin/nginx')
    ap.add_argument('--module', default=os.path.join(
        HERE, '..', 'build', 'ngx_tce_module.so'))
    ap.add_argument('--baseline', help='another module build to compare')
    ap.add_argument('--instances', type=int, default=1000)
    ap.add_argument('--workers', type=int, default=4)
    ap.add_argument('--clients', type=int, default=4)
    ap.add_argument('--seconds', type=float, default=2.0,
                    help='length of each phase (default 2 s)')
    ap.add_argument('--pairs', type=int, default=12,
                    help='quiet and flapping phases, in turn (default '
                         '12: short phases in turn spread the host\'s '
                         'own noise over both kinds)')
    ap.add_argument('--interval', type=float, default=0.1)
    ap.add_argument('--double-cache', type=int, default=1,
                    help='1 (default): the double computes the gzip '
                         'answers of a flapping phase before it, as '
                         'servers on other hosts would, instead of on '
                         'the measured cores; 0 while serving')
    ap.add_argument('--double-nice', type=int, default=19,
                    help='nice value of the Consul double\'s threads '
                         '(default 19: it stands for agents and servers '
                         'on other hosts; 0 to let it compete)')
    ap.add_argument('--double-idle', type=int, default=1,
                    help='1 (default): the double\'s threads also in the '
                         'SCHED_IDLE class, which nice 19 alone is not: '
                         'a request\'s wake-up may wait for a nice 19 '
                         'thread\'s slice to end; 0: nice only')
    ap.add_argument('--flap', choices=('status', 'output'),
                    default='status',
                    help='status (default): each change takes one '
                         'instance out of ?passing answers and brings the '
                         'previous one back; output: each change only '
                         'rewrites a passing check\'s output, so answers '
                         'change and the set does not (what receiving '
                         'and parsing cost alone; no answers computed '
                         'in advance)')
    ap.add_argument('--trace', action='store_true',
                    help='also print the share of slow requests by when '
                         'they started after a change')
    ap.add_argument('--keep-tmp', action='store_true')
    ARGS = args = ap.parse_args()

    rnd = random.Random(12345)
    weights = [rnd.randint(1, 1000) for _ in range(args.instances)]
    w_sum = sum(weights)
    print('rebuild bench: %d instances, weights 1..1000 (sum %d), '
          '%d workers, phases of %.0f s x %d pairs'
          % (args.instances, w_sum, args.workers, args.seconds,
             args.pairs))
    res = run_side(args, args.module, 'tce', weights)
    if args.baseline:
        base = run_side(args, args.baseline, 'baseline', weights)
        for key, what in (('cpu_per_change', 'CPU per change, other '
                           'workers (max)'),
                          ('watcher_cpu_per_change', 'CPU per change, '
                           'watcher\'s event loop'),
                          ('all workers', 'p99 delta, all workers')):
            if base.get(key) and res.get(key) is not None:
                print('  %s, tce / baseline: %.3f'
                      % (what, res[key] / base[key]))
        if 'pair median' in res and 'pair median' in base:
            print('  p99 delta, median of the pairs: tce %+.2f ms, '
                  'baseline %+.2f ms'
                  % (res['pair median'], base['pair median']))


if __name__ == '__main__':
    main()
