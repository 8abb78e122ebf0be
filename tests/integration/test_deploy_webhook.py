"""
tce_deploy_webhook: every deploy event POSTed as one JSON object, in
order, by the worker that controls the deploys; retried with backoff;
a receiver that hangs slows neither traffic nor the deploy; a bounded
queue; failures in tce_status, the metrics and the error log (without
the URL's credentials); bad directives refused at nginx -t.

The receiver is a real HTTP server (http.server) in the test process;
the oracle is what it received.
"""

import http.server
import json
import threading
import time

import pytest

from admin_helpers import TOKEN, start_admin
from conftest import SERVICE, SLOW, instance, wait_for, http_get, read_from
from test_metrics import METRICS_LOCATION, promtool_check
import admin_helpers

DEPLOYS = '/api/v1/services/%s/clusters/default/deploys' % SERVICE


class Receiver:
    """An HTTP server recording every POST (path, headers, JSON body).
    answers: the statuses of the first POSTs (then 200); hang: never
    answer (the connection is held until close())."""

    def __init__(self, answers=(), hang=False):
        self.posts = []
        self.answers = list(answers)
        self.hang = hang
        self.release = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def do_POST(self):
                n = int(self.headers.get('Content-Length', 0))
                body = self.rfile.read(n)
                with receiver.lock:
                    receiver.posts.append((self.path, dict(self.headers),
                                           json.loads(body)))
                    status = (receiver.answers.pop(0) if receiver.answers
                              else 200)
                if receiver.hang:
                    receiver.release.wait(60)
                    return
                self.send_response(status)
                self.send_header('Content-Length', '2')
                self.end_headers()
                self.wfile.write(b'ok')

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                      Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def events(self):
        with self.lock:
            return [b for _, _, b in self.posts]

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory():
    made = []

    def make(**kw):
        r = Receiver(**kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


def call(nginx, method, path, body=None, token=TOKEN, timeout=10):
    # the deploy routes are not in admin/openapi.json yet
    return admin_helpers.call(nginx, method, path, body=body, token=token,
                              validate=False)


def start(nginx, backend, canary_port, webhook):
    start_admin(nginx, backend, http_extra='    %s\n' % webhook,
                server_extra=METRICS_LOCATION,
                services={SERVICE: {'default': [
                    instance('p1', backend.addr(backend.ok4[0])),
                    instance('c1', backend.addr(canary_port),
                             env='canary')]}})


def load(nginx, stop, latencies):
    while not stop.is_set():
        t = time.monotonic()
        try:
            r = http_get(nginx.port, '/', timeout=20)
            latencies.append((time.monotonic() - t, r.status))
        except OSError:
            latencies.append((time.monotonic() - t, None))


def with_load(nginx, fn, threads=3, latencies=None):
    stop = threading.Event()
    latencies = [] if latencies is None else latencies
    ts = [threading.Thread(target=load, args=(nginx, stop, latencies),
                           daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    try:
        return fn()
    finally:
        stop.set()
        for t in ts:
            t.join(30)


def current(nginx):
    r = call(nginx, 'GET', DEPLOYS + '/current')
    assert r.status == 200, r
    return r.json


def ended(nginx):
    return with_load(nginx, lambda: wait_for(
        lambda: current(nginx)['state'] not in ('running', 'paused')
        and current(nginx), 20 * SLOW, what='the deploy to end'))


def metric(nginx, name):
    text = http_get(nginx.port, '/metrics').text
    for line in text.splitlines():
        if line.startswith(name + ' ') or line.startswith(name + '{'):
            yield line


def check_common(events, deploy_id):
    assert [e['seq'] for e in events] == list(range(events[0]['seq'],
                                                    events[0]['seq']
                                                    + len(events)))
    for e in events:
        assert e['service'] == SERVICE and e['cluster'] == 'default'
        assert e['deploy_id'] == deploy_id == e['deploy']['id']
        assert e['state'] == e['deploy']['state']
        assert isinstance(e['time_ms'], int)


def test_promoted_deploy_events_in_order(nginx, backend, receiver_factory):
    rcv = receiver_factory()
    start(nginx, backend, backend.ok4[1],
          'tce_deploy_webhook http://127.0.0.1:%d/hooks/deploys;' % rcv.port)
    r = call(nginx, 'POST', DEPLOYS,
             body={'steps': [20, 50, 100], 'step_seconds': 1,
                   'min_requests': 20, 'inconclusive_seconds': 10 * SLOW})
    assert r.status == 201, r
    d = ended(nginx)
    assert d['state'] == 'promoted', d
    evs = wait_for(lambda: any(e['event'] == 'deploy_promoted'
                               for e in rcv.events()) and rcv.events(),
                   10 * SLOW, what='the webhook event of the promotion')
    check_common(evs, d['id'])
    # a step still short of min_requests at its end (a slow machine, the
    # load threads under memcheck) says so and waits: not this test's
    evs = [e for e in evs if e['event'] != 'deploy_inconclusive']
    # the step at 50% passed goes to 100%: promoted
    assert [e['event'] for e in evs] == [
        'deploy_started', 'deploy_step', 'deploy_promoted']
    assert evs[0]['by'] == 'deployer' and evs[0]['manual'] is True
    assert evs[0]['weight_bp'] == 2000 and evs[0]['step'] == 0
    assert [e['weight_bp'] for e in evs[1:]] == [5000, 10000]
    assert [e['step'] for e in evs[1:]] == [1, 2]
    for e in evs[1:]:
        assert e['by'] == 'deploy-controller' and e['manual'] is False
    assert evs[-1]['state'] == 'promoted' and evs[-1]['failed_gate'] is None
    path, headers, _ = rcv.posts[0]
    assert path == '/hooks/deploys'
    assert headers['Content-Type'] == 'application/json'
    assert headers['X-TCE-Event-Seq'] == str(evs[0]['seq'])
    n = len(rcv.events())
    st = wait_for(lambda: nginx.status()['deploy_webhook']['delivered'] == n
                  and nginx.status()['deploy_webhook'], 5 * SLOW,
                  what='%d events delivered' % n)
    assert st['queue'] == 0, st
    assert st['failures'] == 0 and st['dropped'] == 0, st
    assert st['target'] == 'http://127.0.0.1:%d' % rcv.port


def test_rolled_back_deploy_event_has_gate_and_figures(nginx, backend,
                                                       receiver_factory):
    rcv = receiver_factory()
    start(nginx, backend, backend.p500,
          'tce_deploy_webhook http://127.0.0.1:%d/;' % rcv.port)
    r = call(nginx, 'POST', DEPLOYS,
             body={'steps': [20, 50, 100], 'step_seconds': 30,
                   'min_requests': 20})
    assert r.status == 201, r
    d = ended(nginx)
    assert d['state'] == 'rolled_back', d
    evs = wait_for(lambda: len(rcv.events()) >= 2 and rcv.events(),
                   10 * SLOW, what='2 webhook events')
    assert [e['event'] for e in evs] == ['deploy_started',
                                         'deploy_rolled_back']
    check_common(evs, d['id'])
    rb = evs[1]
    assert rb['failed_gate'] == d['failed_gate'] and rb['failed_gate'] in (
        'error_ratio', 'error_ratio_vs_prod'), rb
    assert rb['weight_bp'] == 0 and rb['by'] == 'deploy-controller'
    fig = rb['figures']
    assert fig['canary_requests'] > 0 and fig['canary_errors'] > 0, fig
    assert fig['canary_errors'] <= fig['canary_requests']
    assert fig['prod_errors'] == 0
    assert 'gate %s failed' % rb['failed_gate'] in rb['reason']


def test_manual_actions_and_retry_after_500(nginx, backend,
                                            receiver_factory):
    rcv = receiver_factory(answers=[500])
    start(nginx, backend, backend.ok4[1],
          'tce_deploy_webhook http://hook:s3cr3t@127.0.0.1:%d/T0/B0/xyzzy '
          'timeout=5s retries=3;' % rcv.port)
    offset = len(read_from(nginx.error_log))
    assert call(nginx, 'POST', DEPLOYS,
                body={'steps': [10, 100], 'step_seconds': 60}).status == 201
    for action in ('pause', 'resume', 'rollback'):
        r = call(nginx, 'POST', DEPLOYS + '/current/' + action, body={})
        assert r.status == 200, r
    evs = wait_for(lambda: len(rcv.events()) >= 5 and rcv.events(),
                   10 * SLOW, what='5 webhook POSTs')
    # the first answered 500, then the same event again, then the rest
    assert [e['event'] for e in evs] == [
        'deploy_started', 'deploy_started', 'deploy_paused',
        'deploy_resumed', 'deploy_rolled_back']
    assert evs[0] == evs[1]
    check_common(evs[1:], evs[1]['deploy_id'])
    assert all(e['manual'] and e['by'] == 'deployer' for e in evs)
    assert evs[-1]['weight_bp'] == 0
    # basic auth from the URL's user:password
    assert rcv.posts[0][1]['Authorization'].startswith('Basic ')
    st = wait_for(lambda: nginx.status()['deploy_webhook']['delivered'] == 4
                  and nginx.status()['deploy_webhook'], 5 * SLOW,
                  what='4 events delivered')
    assert st['failures'] == 1 and st['queue'] == 0, st
    assert st['last_error'] == 'answered 500', st
    assert list(metric(nginx, 'tce_deploy_webhook_attempt_failures_total')) \
        == ['tce_deploy_webhook_attempt_failures_total 1']
    assert ('tce_deploy_webhook_events_total{result="delivered"} 4'
            in list(metric(nginx, 'tce_deploy_webhook_events_total')))
    line = nginx.wait_error_line(
        lambda l: 'tce webhook' in l and 'answered 500' in l, offset)
    assert 'http://127.0.0.1:%d' % rcv.port in line
    log = read_from(nginx.error_log)
    assert 's3cr3t' not in log and 'xyzzy' not in log
    rc, out = promtool_check(http_get(nginx.port, '/metrics').text)
    assert rc == 0, out


def test_hanging_receiver_slows_nothing(nginx, backend, receiver_factory):
    rcv = receiver_factory(hang=True)
    start(nginx, backend, backend.ok4[1],
          'tce_deploy_webhook http://127.0.0.1:%d/ timeout=30s queue=2;'
          % rcv.port)
    latencies = []
    t0 = time.monotonic()
    r = call(nginx, 'POST', DEPLOYS,
             body={'steps': [20, 50, 100], 'step_seconds': 1,
                   'min_requests': 20, 'inconclusive_seconds': 10 * SLOW})
    assert r.status == 201, r
    d = with_load(nginx, lambda: wait_for(
        lambda: current(nginx)['state'] == 'promoted' and current(nginx),
        20 * SLOW, what='the promotion'), latencies=latencies)
    took = time.monotonic() - t0
    # a worker blocked on the receiver would wait for the 30 s timeout
    assert took < 15 * SLOW, took
    assert latencies and all(s == 200 for _, s in latencies), latencies
    assert max(t for t, _ in latencies) < 5 * SLOW, max(latencies)
    assert len(rcv.posts) == 1         # the first, still unanswered
    st = nginx.status()['deploy_webhook']
    # started, step, promoted (and an inconclusive step on a slow
    # machine) into a queue of 2: all but the 2 newest dropped, the
    # first too (its attempt goes on)
    q = st['queued']
    assert st['queue'] == 2 and st['dropped'] == q - 2 and q >= 3, st
    assert st['delivered'] == 0, st
    assert ('tce_deploy_webhook_events_total{result="dropped"} %d' % (q - 2)
            in list(metric(nginx, 'tce_deploy_webhook_events_total')))
    assert list(metric(nginx, 'tce_deploy_webhook_queue_events')) == [
        'tce_deploy_webhook_queue_events 2']
    assert d['state'] == 'promoted'


@pytest.mark.parametrize('directive,words', [
    ('tce_deploy_webhook ftp://127.0.0.1/x;', ['scheme', '"ftp"']),
    ('tce_deploy_webhook 127.0.0.1:8080/x;', ['invalid URL']),
    ('tce_deploy_webhook http://h/ timeout=abc;', ['timeout', '"abc"']),
    ('tce_deploy_webhook http://h/ timeout=0;', ['timeout', '"0"']),
    ('tce_deploy_webhook http://h/ retries=x;', ['"retries=x"']),
    ('tce_deploy_webhook http://h/ queue=0;', ['"queue=0"']),
    ('tce_deploy_webhook http://h/ nope=1;', ['"nope=1"']),
])
def test_bad_directive_refused(nginx, directive, words):
    nginx.configure(http_extra='    %s\n' % directive)
    rc, out = nginx.check()
    assert rc != 0, out
    lines = [l for l in out.splitlines() if '[emerg]' in l
             and 'tce_deploy_webhook' in l and all(w in l for w in words)]
    assert lines, out
