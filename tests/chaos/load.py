"""
The steady load of a chaos run: processes of client threads sending
requests back to back through a front door, each thread alternating
keepalive connections (a random number of requests each) and fresh
connections, GET and POST (bodies up to 64 KiB, echoed), some slow
(delay up to 400 ms at the backend), some asking the backend for a
non-2xx status.  Every answer is checked against what the backend
must have sent (wire.py); every failure is kept with what the
classifier needs: the connection's local port and open time, how many
answers it had carried, the worker pid of its last answer (X-Pid),
when the request was sent and when it failed.
"""

import multiprocessing
import os
import random
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire  # noqa: E402


# what a request asks for: (weight, method, delay range, status)
STATUSES = (404, 418, 500, 503)         # a backend's own non-2xx


def plan(rng, seq, tag, prefixes):
    """The next request: method, path, body, expected status."""
    rid = '%s-%d' % (tag, seq)
    prefix = rng.choice(prefixes)
    q = []
    status = 200
    if rng.random() < 0.04:
        status = rng.choice(STATUSES)
        q.append('status=%d' % status)
    if rng.random() < 0.08:
        q.append('delay=%d' % rng.randint(50, 400))
    if rng.random() < 0.35:
        method = 'POST'
        n = rng.choice((0, 1, 100, 4096, rng.randint(1, 65536)))
        body = os.urandom(n)
    else:
        method = 'GET'
        body = b''
        q.append('size=%d' % rng.choice((0, 10, 1000, 16384,
                                         rng.randint(1, 200000))))
    # a sticky key for the canary split of the API-fed service
    q.append('user=u%d' % rng.randint(0, 999))
    path = prefix + rid + '?' + '&'.join(q)
    return method, path, body, status, rid


class Client(threading.Thread):
    def __init__(self, port, target, prefixes, tag, seed, stop, out,
                 counts, timeout, lock):
        threading.Thread.__init__(self, daemon=True)
        self.prefixes = prefixes
        self.lock = lock
        self.port = port
        self.target = target
        self.tag = tag
        self.rng = random.Random(seed)
        self.stop = stop
        self.out = out
        self.counts = counts
        self.timeout = timeout

    def run(self):
        seq = 0
        sock = None
        while not self.stop.is_set():
            if sock is None:
                keep = self.rng.random() < 0.7
                left = self.rng.randint(1, 300) if keep else 1
                try:
                    sock, lport = wire.connect(self.port, self.timeout)
                except OSError as e:
                    self._fail('connect', repr(e), None, 0, 0, None,
                               wire.now(), 'GET', '')
                    time.sleep(0.01)
                    continue
                opened = wire.now()
                served = 0
                pid = None
            seq += 1
            method, path, body, status, rid = plan(self.rng, seq, self.tag,
                                                    self.prefixes)
            left -= 1
            t0 = wire.now()
            try:
                a = wire.request(sock, method, path, body, close=left == 0)
            except wire.ClosedBeforeAnswer as e:
                self._fail('closed', str(e), lport, opened, served, pid,
                           t0, method, path, sent=e.sent)
                sock.close()
                sock = None
                continue
            except wire.Truncated as e:
                self._fail('truncated', str(e), lport, opened, served, pid,
                           t0, method, path)
                sock.close()
                sock = None
                continue
            except socket.timeout:
                self._fail('timeout', 'no answer in %ss' % self.timeout,
                           lport, opened, served, pid, t0, method, path)
                sock.close()
                sock = None
                continue
            except OSError as e:
                self._fail('error', repr(e), lport, opened, served, pid,
                           t0, method, path)
                sock.close()
                sock = None
                continue
            served += 1
            pid = a.headers.get('x-pid')
            bad = self._check(a, method, body, status, rid)
            if bad:
                self._fail('answer', bad, lport, opened, served, pid, t0,
                           method, path, status=a.status,
                           backend=a.headers.get('x-backend'))
            else:
                with self.lock:
                    self.counts[0] += 1
            if left == 0 or a.headers.get('connection') == 'close':
                sock.close()
                sock = None
        if sock is not None:
            sock.close()

    @staticmethod
    def _check(a, method, body, status, rid):
        backend = a.headers.get('x-backend')
        if backend is None:
            return 'status %d made by the proxy: %r' % (a.status,
                                                        a.body[:200])
        if a.status != status:
            return 'status %d from %s, asked %d' % (a.status, backend,
                                                    status)
        want = body if method == 'POST' else None
        if want is None:
            n = len(a.body)
            if a.body != wire.pattern(rid, n):
                return 'body is not the pattern of %s' % rid
            return None
        if a.body != want:
            return 'echoed body differs (%d bytes sent, %d received)' % (
                len(want), len(a.body))
        return None

    def _fail(self, kind, what, lport, opened, served, pid, t0, method,
              path, sent=True, status=None, backend=None):
        with self.lock:
            self.counts[1] += 1
        self.out.append({
            'target': self.target, 'kind': kind, 'what': what,
            'port': lport, 'opened': opened, 'served': served,
            'pid': int(pid) if pid else None, 'sent_at': t0,
            'failed_at': wire.now(), 'method': method, 'path': path,
            'sent': sent, 'status': status, 'backend': backend})


def _process(port, target, prefixes, nthreads, seed, stop, counts, queue,
             timeout):
    out = []
    lock = threading.Lock()
    threads = [Client(port, target, prefixes,
                      '%s%d.%d' % (target[-1], seed, i),
                      seed * 100 + i, stop, out, counts, timeout, lock)
               for i in range(nthreads)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join(timeout + 5)
    queue.put(out)


class Load:
    """nprocs processes of nthreads clients against 127.0.0.1:port.
    counts(): (answers as expected, failures) so far."""

    def __init__(self, port, target, prefixes, nprocs, nthreads, seed,
                 timeout=30):
        self.stop_ev = multiprocessing.Event()
        self.queue = multiprocessing.Queue()
        self.shared = [multiprocessing.Array('q', 2, lock=False)
                       for _ in range(nprocs)]
        self.procs = [multiprocessing.Process(
            target=_process,
            args=(port, target, prefixes, nthreads, seed * 10 + i,
                  self.stop_ev,
                  self.shared[i], self.queue, timeout), daemon=True)
            for i in range(nprocs)]

    def start(self):
        for p in self.procs:
            p.start()

    def counts(self):
        return (sum(a[0] for a in self.shared),
                sum(a[1] for a in self.shared))

    def stop(self):
        """Stops the clients; returns every failure record."""
        self.stop_ev.set()
        out = []
        for _ in self.procs:
            out.extend(self.queue.get(timeout=120))
        for p in self.procs:
            p.join(10)
        return out
