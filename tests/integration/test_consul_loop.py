"""
The Consul watcher never stalls its worker's event loop: a large answer
is decoded and parsed on the worker's background thread (nice 19)
while the worker keeps serving.  What is measured: the CPU the worker's
main thread (its event loop) and its other threads spend per
10,000-instance answer,
and, printed, the longest wait between two answers of a request loop
on that worker (one worker: every request goes to the watcher's).
"""

import gzip
import http.client
import http.server
import json
import os
import re
import sys
import threading
import time

import pytest

from conftest import SERVICE, SLOW, instance, read_from, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'doubles'))

from consul_double import ConsulDouble  # noqa: E402


class FlipConsul:
    """A minimal Consul health endpoint (the double builds answers in
    O(n^2), too slow for 10,000 entries) whose every blocking query
    returns, after hold seconds, a new index and the other of two
    bodies: each answer is a change that the watcher parses and
    applies.  answers counts the changed answers sent.  As Consul's
    HTTP server does, an answer is sent gzip to a client that accepts
    it."""

    def __init__(self, bodies, hold):
        outer = self
        self.bodies = bodies
        self.gzipped = [gzip.compress(b, 6) for b in bodies]
        self.hold = hold
        self.index = 10
        self.answers = 0
        self.lock = threading.Lock()

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *a):
                pass

            def do_GET(self):
                m = re.search(r'[?&]index=(\d+)', self.path)
                asked = int(m.group(1)) if m else 0
                if asked >= outer.index:
                    time.sleep(outer.hold)
                    with outer.lock:
                        outer.index += 1
                        outer.answers += 1
                index = outer.index
                body = outer.bodies[index % 2]
                zipped = 'gzip' in self.headers.get('Accept-Encoding', '')
                if zipped:
                    body = outer.gzipped[index % 2]
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                if zipped:
                    self.send_header('Content-Encoding', 'gzip')
                    self.send_header('Vary', 'Accept-Encoding')
                self.send_header('X-Consul-Index', str(index))
                self.send_header('X-Consul-KnownLeader', 'true')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
        self.server.daemon_threads = True
        self.url = 'http://127.0.0.1:%d' % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def big_bodies(consul, backend, n):
    """Two health answers of n entries shaped like real agents' (check
    output included), differing in one instance's port."""
    consul.register(SERVICE, 'api-0', '127.0.0.1', backend.ok4[0])
    with consul.cond:
        proto = consul.reg.health_service(SERVICE, [], True)[0]
    for c in proto['Checks']:
        c['Output'] = 'HTTP GET http://10.0.0.1:8080/health: 200 OK ' \
                      'Output: ' + 'x' * 100
    entries = []
    for i in range(n):
        e = json.loads(json.dumps(proto))
        e['Service']['ID'] = 'api-%05d' % i
        e['Service']['Port'] = backend.ok4[i % 2]
        e['Service']['Meta'] = {'version': 'v1'}
        for c in e['Checks']:
            c['ServiceID'] = e['Service']['ID']
        entries.append(e)
    a = json.dumps(entries).encode()
    entries[0]['Service']['Port'] = backend.ok4[2]
    b = json.dumps(entries).encode()
    return [a, b]


def request_gaps(port, seconds):
    """Sequential keepalive GETs of /ready for seconds: the largest
    time between two answers, and how many there were."""
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=30 * SLOW)
    worst, n = 0.0, 0
    last = time.perf_counter()
    end = last + seconds
    while last < end:
        c.request('GET', '/ready')
        r = c.getresponse()
        r.read()
        assert r.status == 200, r.status
        now = time.perf_counter()
        worst = max(worst, now - last)
        last = now
        n += 1
    c.close()
    return worst, n


def applied(nginx):
    # the watcher's notice of each change it applied
    return len(re.findall(r'service "%s" (?:generation \d+ -> \d+|new, '
                          r'generation \d+): .*; 10000 instances in all'
                          % re.escape(SERVICE), read_from(nginx.error_log)))


def stat_field(pid, tid, field):
    """One field of a thread's stat (numbered as in proc(5))."""
    with open('/proc/%d/task/%d/stat' % (pid, tid)) as f:
        stat = f.read()
    # the command may hold spaces and parentheses: fields after the last )
    return int(stat[stat.rindex(')') + 2:].split()[field - 3])


def nice_of(pid, tid):
    """The nice value of one thread (field 19 of its stat)."""
    return stat_field(pid, tid, 19)


def policy_of(pid, tid):
    """The scheduling policy of one thread (field 41 of its stat)."""
    return stat_field(pid, tid, 41)


def threads_at_nice(pids, nice):
    """(pid, tid) of the threads of these processes at that nice value."""
    out = []
    for pid in pids:
        for tid in os.listdir('/proc/%d/task' % pid):
            try:
                if nice_of(pid, int(tid)) == nice:
                    out.append((pid, int(tid)))
            except (OSError, ValueError):
                continue
    return out


def test_answers_parsed_at_the_lowest_priority(backend, nginx):
    """The parse (and the schedule build) run on a background thread at
    nice 19 and in the SCHED_IDLE class, so that they take a core only
    when the event loops leave one idle and give it back at once when
    one wakes; the event loops stay at nginx's own priority."""
    consul = ConsulDouble(jitter=False).start()
    try:
        consul.register(SERVICE, 'api-1', '127.0.0.1', backend.ok4[0])
        nginx.configure(http_extra='    tce_consul %s wait=2s;\n'
                        % consul.url, state=False)
        nginx.start()
        wait_for(lambda: nginx.get('/').status == 200, 10 * SLOW,
                 what='the service routed from Consul')

        workers = nginx.workers()
        low = threads_at_nice(workers, 19)
        # one background thread, the watcher's, started with its first
        # answer; a worker with nothing to parse starts none
        assert len(low) == 1 and low[0][0] in workers, low
        assert all(tid != pid for pid, tid in low), low
        assert [policy_of(pid, tid) for pid, tid in low] == [os.SCHED_IDLE]
        for w in workers:
            assert nice_of(w, w) == 0
            assert policy_of(w, w) == os.SCHED_OTHER

        # they do the parsing: the watcher's CPU grows with the answers
        def cpu():
            total = 0
            for pid, tid in low:
                with open('/proc/%d/task/%d/schedstat' % (pid, tid)) as f:
                    total += int(f.read().split()[0])
            return total
        before = cpu()
        for i in range(2, 6):
            consul.register(SERVICE, 'api-%d' % i, '127.0.0.1',
                            backend.ok4[i % len(backend.ok4)])
        wait_for(lambda: len(nginx.status()['services'][SERVICE]
                             ['instances']) == 5, 10 * SLOW,
                 what='five instances learned')
        assert cpu() > before
        assert threads_at_nice(nginx.workers(), 19) == low
    finally:
        consul.stop()


def test_worker_without_background_work_is_one_thread(backend, nginx):
    """Threads start at their first task: a worker that routes from the
    state file only, no thread pool declared, stays a single thread
    (glibc's system call wrappers then skip the bookkeeping they do in
    a multi-threaded process, on every request's recv and writev)."""
    nginx.write_state({SERVICE: {'default': [
        instance('a', '127.0.0.1:%d' % backend.ok4[0]),
        instance('b', '127.0.0.1:%d' % backend.ok4[1])]}})
    nginx.configure(workers=2)
    nginx.start()
    for _ in range(20):
        assert nginx.get('/').status == 200
    for w in nginx.workers():
        assert os.listdir('/proc/%d/task' % w) == [str(w)], w


def thread_cpu(pid):
    """(CPU seconds of the process's main thread, of its other threads)."""
    main = other = 0.0
    for tid in os.listdir('/proc/%d/task' % pid):
        try:
            with open('/proc/%d/task/%s/schedstat' % (pid, tid)) as f:
                t = int(f.read().split()[0]) / 1e9
        except OSError:
            continue
        if int(tid) == pid:
            main += t
        else:
            other += t
    return main, other


@pytest.mark.novalgrind('parsing 10,000 entries under memcheck takes '
                        'minutes; the thread-pool parse runs under memcheck '
                        'in every Consul test, e.g. test_consul.py::'
                        'test_registration_and_removal_follow_consul')
def test_large_answer_parsed_off_the_event_loop(backend, nginx):
    consul = ConsulDouble(jitter=False).start()
    try:
        bodies = big_bodies(consul, backend, 10000)
    finally:
        consul.stop()
    flip = FlipConsul(bodies, hold=0.2)
    try:
        nginx.configure(http_extra='    tce_consul %s wait=5s;\n'
                        % flip.url, state=False, workers=1,
                        zone='tce_zone tce 64m;')
        nginx.start()
        wait_for(lambda: applied(nginx) >= 2, 60,
                 what='two 10,000-instance answers applied')
        worker = list(nginx.workers())[0]

        # the CPU an answer costs the event loop (the worker's main
        # thread) and the background thread, no request meanwhile
        n0 = applied(nginx)
        c0 = thread_cpu(worker)
        wait_for(lambda: applied(nginx) >= n0 + 2, 60,
                 what='two more answers applied')
        c1 = thread_cpu(worker)
        k = applied(nginx) - n0
        main = (c1[0] - c0[0]) / k
        other = (c1[1] - c0[1]) / k

        # what a client of that worker sees meanwhile
        seen = applied(nginx)
        worst, n = request_gaps(nginx.port, 3.0)
        print('per answer: event loop %.1f ms, other threads %.1f ms CPU '
              '(%d answers); requests meanwhile: max gap %.1f ms over %d '
              'requests, %d answers'
              % (1000 * main, 1000 * other, k, 1000 * worst, n,
                 applied(nginx) - seen))
        assert main < other / 2, (main, other)

        # no answer left to parse when nginx stops: an exiting worker
        # waits for its background thread's tasks
        flip.hold = 3600
        wait_for(lambda: applied(nginx) > flip.answers, 60,
                 what='the last answer applied')
    finally:
        flip.stop()

