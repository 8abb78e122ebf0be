"""
Progressive deploys (issue 11): the API's checks, a healthy canary
promoted step by step, a canary answering 5xx rolled back by the error
gate (weight 0, new epoch: prod only afterwards; at a 1% step at its
second 500), one 3 times slower
rolled back by the latency gate, too little traffic (inconclusive, then
failed), manual pause/resume/rollback, a reload, a restart and a SIGKILL of
the controlling worker in the middle of a deploy (it goes on at its step),
a healthy canary with prod's own 1% of 5xx not rolled back.  The
backends are real: the fixture's stock nginx, or Python HTTP servers
whose delay and errors the test chooses (their own counts are the
oracle of what was answered).
"""

import http.server
import json
import os
import random
import re
import signal
import threading
import time

import pytest

from admin_helpers import TOKEN, start_admin
from conftest import (SERVICE, SLOW, VALGRIND, instance, wait_for,
                      http_get, read_from)
import admin_helpers

DEPLOYS = '/api/v1/services/%s/clusters/default/deploys' % SERVICE


def call(nginx, method, path, body=None, token=None):
    # every answer is checked against admin/openapi.json
    return admin_helpers.call(nginx, method, path, body=body, token=token)


def start(nginx, backend, canary_port):
    start_admin(nginx, backend, services={SERVICE: {'default': [
        instance('p1', backend.addr(backend.ok4[0])),
        instance('c1', backend.addr(canary_port), env='canary')]}})


def load(nginx, stop):
    while not stop.is_set():
        try:
            http_get(nginx.port, '/', timeout=5)
        except OSError:
            pass


def with_load(nginx, fn, threads=4):
    stop = threading.Event()
    ts = [threading.Thread(target=load, args=(nginx, stop), daemon=True)
          for _ in range(threads)]
    for t in ts:
        t.start()
    try:
        return fn()
    finally:
        stop.set()
        for t in ts:
            t.join(10)


def current(nginx):
    r = call(nginx, 'GET', DEPLOYS + '/current')
    assert r.status == 200, r
    return r.json


def test_bad_input_and_conflicts(nginx, backend):
    start(nginx, backend, backend.ok4[1])
    assert call(nginx, 'GET', DEPLOYS + '/current').status == 404
    for body, code in (([1], 'invalid_json'),
                       ({'steps': [5, 1]}, 'out_of_range'),
                       ({'steps': []}, 'out_of_range'),
                       ({'steps': [0.001]}, 'out_of_range'),
                       ({'step_seconds': 'x'}, 'wrong_type'),
                       ({'gates': {'alpha': 0.5}}, 'out_of_range'),
                       ({'gates': {'nope': 1}}, 'unknown_field'),
                       ({'nope': 1}, 'unknown_field')):
        r = call(nginx, 'POST', DEPLOYS, body=body, token=TOKEN)
        assert r.status == 400 and r.json['error']['code'] == code, \
            (body, r)
    assert call(nginx, 'POST', DEPLOYS, body={}).status == 401
    assert call(nginx, 'GET', DEPLOYS).json == {'deploys': []}
    r = call(nginx, 'POST', DEPLOYS, token=TOKEN,
             body={'steps': [10, 100], 'step_seconds': 60})
    assert r.status == 201, r
    assert r.json['state'] == 'running' and r.json['canary']['weight_bp'] \
        == 1000
    r = call(nginx, 'POST', DEPLOYS, body={}, token=TOKEN)
    assert r.status == 409 and r.json['error']['code'] == 'deploy_running'
    r = call(nginx, 'PUT', DEPLOYS[:-len('deploys')] + 'canary',
             body={'weight': 50}, token=TOKEN)
    assert r.status == 409, r
    r = call(nginx, 'POST', DEPLOYS + '/current/pause', body={},
             token=TOKEN)
    assert r.status == 200 and r.json['state'] == 'paused', r
    r = call(nginx, 'POST', DEPLOYS + '/current/resume', body={},
             token=TOKEN)
    assert r.status == 200 and r.json['state'] == 'running', r
    r = call(nginx, 'POST', DEPLOYS + '/current/rollback', body={},
             token=TOKEN)
    assert r.status == 200 and r.json['state'] == 'rolled_back', r
    assert r.json['canary']['weight_bp'] == 0
    assert r.json['canary']['epoch'] == 1
    assert call(nginx, 'POST', DEPLOYS + '/current/promote', body={},
                token=TOKEN).status == 409


def test_healthy_canary_promoted(nginx, backend):
    start(nginx, backend, backend.ok4[1])
    r = call(nginx, 'POST', DEPLOYS, token=TOKEN,
             body={'steps': [20, 50, 100], 'step_seconds': 1,
                   'min_requests': 20})
    assert r.status == 201, r
    d = with_load(nginx, lambda: wait_for(
        lambda: current(nginx)['state'] != 'running' and current(nginx),
        20, what='the deploy to end'))
    assert d['state'] == 'promoted', d
    assert d['canary']['weight_bp'] == 10000
    assert [s['verdict'] for s in d['steps']] == ['passed'] * 3
    ports = {int(http_get(nginx.port, '/').text) for _ in range(10)}
    assert ports == {backend.ok4[1]}


def test_failing_canary_rolled_back(nginx, backend):
    start(nginx, backend, backend.p500)
    r = call(nginx, 'POST', DEPLOYS, token=TOKEN,
             body={'steps': [20, 50, 100], 'step_seconds': 30,
                   'min_requests': 20})
    assert r.status == 201, r
    d = with_load(nginx, lambda: wait_for(
        lambda: current(nginx)['state'] != 'running' and current(nginx),
        20, what='the rollback'))
    assert d['state'] == 'rolled_back', d
    assert d['failed_gate'] in ('error_ratio', 'error_ratio_vs_prod'), d
    assert d['step'] == 0 and d['steps'][0]['verdict'] == 'failed'
    assert d['canary'] == {'weight_bp': 0, 'epoch': 1, 'fallback': True,
                           'owned': True}
    for _ in range(10):
        assert http_get(nginx.port, '/').status == 200


class Versions:
    """One loopback HTTP/1.1 server per instance: name -> (delay in ms,
    share of 500 answers).  Each counts what it answered."""

    def __init__(self, spec, seed=1):
        self.counts = {}
        self.lock = threading.Lock()
        self.servers = {}
        owner = self
        for name, (delay_ms, errors) in spec.items():
            rnd = random.Random('%s-%d' % (name, seed))

            class Handler(http.server.BaseHTTPRequestHandler):
                protocol_version = 'HTTP/1.1'
                me, delay, err, rng = name, delay_ms, errors, rnd

                def do_GET(self):
                    time.sleep(self.delay / 1000.0)
                    with owner.lock:
                        bad = self.rng.random() < self.err
                        c = owner.counts.setdefault(self.me, [0, 0])
                        c[0] += 1
                        c[1] += bad
                    body = b'%s\n' % self.me.encode()
                    self.send_response(500 if bad else 200)
                    self.send_header('Content-Length', str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

                def log_message(self, *args):
                    pass

            srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
            srv.daemon_threads = True
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            self.servers[name] = srv

    def addr(self, name):
        return '127.0.0.1:%d' % self.servers[name].server_address[1]

    def stop(self):
        for srv in self.servers.values():
            srv.shutdown()
            srv.server_close()


@pytest.fixture
def versions():
    made = []

    def make(spec, seed=1):
        v = Versions(spec, seed)
        made.append(v)
        return v

    yield make
    for v in made:
        v.stop()


def start_versions(nginx, v):
    start_admin(nginx, None, services={SERVICE: {'default': [
        instance('p1', v.addr('prod'), env='prod'),
        instance('c1', v.addr('canary'), env='canary')]}})


def post(nginx, body):
    r = call(nginx, 'POST', DEPLOYS, body=body, token=TOKEN)
    assert r.status == 201, r
    return r.json


def ended(nginx):
    d = current(nginx)
    return d['state'] not in ('running', 'paused') and d


def paced_load(nginx, stop):
    # about 100 requests a second: one canary answer a second at 1%
    while not stop.is_set():
        try:
            http_get(nginx.port, '/', timeout=5)
        except OSError:
            pass
        time.sleep(0.01)


def test_canary_failing_at_one_percent_rolled_back_at_its_second_500(
        nginx, versions):
    # the judge's error clock: at a 1% step, once the canary fails every
    # answer, its second 500 with none of prod's is enough (p about 1e-4
    # < alpha / 4), judged within a quick look (50 ms); with only the
    # ticks' alpha, spread over a 600 s step, it took 4 (after 5 good
    # answers, 3 of 8 have p = 6.6e-7 > 4.2e-7)
    v = versions({'prod': (0, 0), 'canary': (0, 0)})
    start_versions(nginx, v)
    post(nginx, {'steps': [1, 100], 'step_seconds': 600,
                 'min_requests': 20})
    stop = threading.Event()
    t = threading.Thread(target=paced_load, args=(nginx, stop), daemon=True)
    t.start()
    try:
        wait_for(lambda: (current(nginx)['steps'][0]['figures'] or {})
                 .get('canary_requests', 0) >= 5, 30 * SLOW,
                 what='5 good canary answers in the step')
        with v.lock:
            v.servers['canary'].RequestHandlerClass.err = 1.0
            good = v.counts['canary'][0]
        d = wait_for(lambda: ended(nginx), 30 * SLOW, what='the rollback')
    finally:
        stop.set()
        t.join(10)
    assert d['state'] == 'rolled_back', d
    assert d['failed_gate'] == 'error_ratio_vs_prod', d
    f = d['steps'][0]['figures']
    assert f['prod_errors'] == 0 and f['canary_requests'] >= 7, f
    assert f['canary_errors'] in (2, 3), f
    # the oracle: the canary's own count of its 500s; one more may have
    # been on its way while the look ran
    with v.lock:
        answered = v.counts['canary']
    assert answered[0] - good == answered[1], (answered, good)
    assert f['canary_errors'] <= answered[1] <= f['canary_errors'] + 1, \
        (f, answered)


def test_slow_canary_rolled_back(nginx, versions):
    # prod answers in 20 ms, the canary in 60 ms: 3 times prod's p99
    v = versions({'prod': (20, 0), 'canary': (60, 0)})
    start_versions(nginx, v)
    post(nginx, {'steps': [20, 50, 100], 'step_seconds': 30,
                 'min_requests': 20})
    d = with_load(nginx, lambda: wait_for(lambda: ended(nginx), 20 * SLOW,
                                          what='the rollback'))
    assert d['state'] == 'rolled_back', d
    assert d['failed_gate'] == 'p99_vs_prod', d
    f = d['steps'][d['step']]['figures']
    assert f['canary_p99_ms'] > 1.5 * f['prod_p99_ms'], f
    assert d['canary']['weight_bp'] == 0 and d['canary']['epoch'] == 1
    # the errors gates did not fire: nothing failed
    assert f['canary_errors'] == 0 and f['prod_errors'] == 0, f
    for _ in range(5):
        assert http_get(nginx.port, '/').text == 'prod\n'


def test_too_little_traffic_inconclusive_then_failed(nginx, backend):
    start(nginx, backend, backend.ok4[1])
    post(nginx, {'steps': [50, 100], 'step_seconds': 1,
                 'inconclusive_seconds': 3 * SLOW, 'min_requests': 1000})
    t0 = time.time()
    # a trickle: a few requests, far from 1000 at 50%
    for _ in range(5):
        http_get(nginx.port, '/')
    d = wait_for(lambda: current(nginx)['steps'][0]['verdict']
                 == 'inconclusive' and current(nginx), 10 * SLOW,
                 what='the step to be inconclusive')
    assert d['state'] == 'running' and d['canary']['weight_bp'] == 5000, d
    d = wait_for(lambda: ended(nginx), 10 * SLOW, what='the deploy to fail')
    assert time.time() - t0 >= 3 * SLOW - 0.5, d
    assert d['state'] == 'failed' and d['failed_gate'] == 'min_requests', d
    assert 'canary requests of the 1000 needed' in d['reason'], d
    assert d['canary']['weight_bp'] == 0 and d['canary']['epoch'] == 1, d
    ports = {int(http_get(nginx.port, '/').text) for _ in range(10)}
    assert ports == {backend.ok4[0]}


def wait_step(nginx, step, what):
    return wait_for(lambda: current(nginx)['step'] >= step
                    and current(nginx), 20 * SLOW, what=what)


def test_reload_in_the_middle_resumes_at_its_step(nginx, backend):
    start(nginx, backend, backend.ok4[1])
    post(nginx, {'steps': [10, 30, 60, 100], 'step_seconds': 1.5,
                 'min_requests': 10})

    def run():
        d = wait_step(nginx, 1, 'the second step')
        assert d['steps'][0]['verdict'] == 'passed'
        nginx.reload(timeout=10 * SLOW)
        after = current(nginx)
        # not started over: the same deploy, at its step or beyond
        assert after['id'] == d['id'] and after['step'] >= d['step'], after
        assert after['state'] == 'running', after
        # the policy in effect is the deploy's (not the state file's 0)
        r = call(nginx, 'GET', DEPLOYS[:-len('deploys')] + 'canary')
        assert r.json['canary']['weight_bp'] in \
            [round(s['weight'] * 100) for s in after['steps'][d['step']:]], \
            (r, after)
        return wait_for(lambda: ended(nginx), 30 * SLOW,
                        what='the deploy to end')

    d = with_load(nginx, run)
    assert d['state'] == 'promoted', d
    assert [s['verdict'] for s in d['steps']] == ['passed'] * 4, d


def test_restart_in_the_middle_resumes_at_its_step(nginx, backend):
    # a full stop and start: the deploy is read back from the deploys
    # file and goes on at the step the file says, with its policy
    start(nginx, backend, backend.ok4[1])
    post(nginx, {'steps': [10, 30, 60, 100], 'step_seconds': 3,
                 'min_requests': 10})

    def run():
        d = wait_step(nginx, 1, 'the second step')
        assert d['steps'][0]['verdict'] == 'passed', d
        errors = nginx.stop()
        assert not errors, errors
        nginx.proc = None
        # the oracle: the record on disk while nginx is down
        with open(nginx.state_path + '.deploys') as f:
            saved = [x for x in json.load(f)['deploys']
                     if x['id'] == d['id']]
        assert len(saved) == 1 and saved[0]['state'] == 'running', saved
        assert saved[0]['step'] >= d['step'], (saved, d)
        nginx.start()
        after = current(nginx)
        # the same deploy at the file's step, not started over
        assert after['id'] == d['id'] and after['state'] == 'running', \
            after
        assert after['step'] == saved[0]['step'], (after, saved)
        assert after['steps'][0]['verdict'] == 'passed', after
        # the policy in effect is that step's (not the state file's 0)
        r = call(nginx, 'GET', DEPLOYS[:-len('deploys')] + 'canary')
        assert r.json['canary']['weight_bp'] == \
            round(after['steps'][after['step']]['weight'] * 100), (r, after)
        return wait_for(lambda: ended(nginx), 40 * SLOW,
                        what='the deploy to end')

    d = with_load(nginx, run)
    assert d['state'] == 'promoted', d
    assert [s['verdict'] for s in d['steps']] == ['passed'] * 4, d
    ports = {int(http_get(nginx.port, '/').text) for _ in range(10)}
    assert ports == {backend.ok4[1]}


def controller(nginx):
    m = re.findall(r'worker (\d+) controls deploys', read_from(nginx.error_log))
    return int(m[-1]) if m else None


def test_sigkill_of_the_controller_another_takes_over(nginx, backend):
    start(nginx, backend, backend.ok4[1])
    post(nginx, {'steps': [10, 30, 60, 100], 'step_seconds': 1.5,
                 'min_requests': 10})

    def run():
        d = wait_step(nginx, 1, 'the second step')
        pid = controller(nginx)
        assert pid in nginx.workers(), (pid, nginx.workers())
        nginx.allowed_log.add('exited on signal 9')
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: controller(nginx) not in (None, pid), 10 * SLOW,
                 what='another worker to control the deploys')
        after = current(nginx)
        assert after['id'] == d['id'] and after['step'] >= d['step'], after
        return wait_for(lambda: ended(nginx), 30 * SLOW,
                        what='the deploy to end')

    d = with_load(nginx, run)
    assert d['state'] == 'promoted', d
    assert [s['verdict'] for s in d['steps']] == ['passed'] * 4, d


def test_noisy_healthy_canary_not_rolled_back(nginx, versions):
    # 1% of 5xx on both sides, same speed: promoted on every run
    v = versions({'prod': (2, 0.01), 'canary': (2, 0.01)})
    start_versions(nginx, v)
    for run in range(1 if VALGRIND else 3):
        post(nginx, {'steps': [20, 50, 100], 'step_seconds': 2,
                     'min_requests': 50})
        d = with_load(nginx, lambda: wait_for(lambda: ended(nginx),
                                              30 * SLOW,
                                              what='the deploy to end'))
        assert d['state'] == 'promoted', (run, d, v.counts)
    # the noise was there, on both sides
    assert v.counts['canary'][1] > 0 and v.counts['prod'][1] > 0, v.counts



DIFF_LOCATION = """\
        location /item/ {
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            tce_diff sample=100 name=items;
        }
"""


def item_load(nginx, stop):
    i = 0
    while not stop.is_set():
        i += 1
        try:
            http_get(nginx.port, '/item/%d' % (i % 10), timeout=5)
        except OSError:
            pass


def test_api_diff_gate_rolls_back(nginx):
    # the canary answers another body on 2 routes of 10: the API diff
    # (tce_diff, with a second prod to set noise aside) catches it
    from test_diff import Backends

    def answer(name, method, path):
        total = '99' if name == 'canary' and path in (
            '/item/3', '/item/7') else '12.5'
        body = ('{"path": "%s", "total": %s}' % (path, total)).encode()
        return 200, [('Content-Type', 'application/json')], body

    b = Backends(('prod1', 'prod2', 'canary'), answer)
    try:
        start_admin(nginx, None, server_extra=DIFF_LOCATION,
                    services={SERVICE: {'default': [
                        instance('p1', b.addr('prod1'), env='prod'),
                        instance('p2', b.addr('prod2'), env='prod'),
                        instance('c1', b.addr('canary'), env='canary')]}})
        post(nginx, {'steps': [10, 50, 100], 'step_seconds': 30,
                     'min_requests': 20})
        stop = threading.Event()
        ts = [threading.Thread(target=item_load, args=(nginx, stop),
                               daemon=True) for _ in range(3)]
        for t in ts:
            t.start()
        try:
            d = wait_for(lambda: ended(nginx), 20 * SLOW,
                         what='the rollback')
        finally:
            stop.set()
            for t in ts:
                t.join(10)
    finally:
        b.stop()
    assert d['state'] == 'rolled_back', d
    assert d['failed_gate'] == 'diff_match_ratio', d
    f = d['steps'][0]['figures']
    assert f['diff_mismatch'] > 0 and f['diff_match_ratio'] < 0.99, f
    assert f['canary_errors'] == 0, f
    # the oracle: the canary's answers differ on /item/3 and /item/7 only
    diff = d['diff']
    assert diff['mismatch'] > 0 and diff['match_ratio'] < 1, diff
    assert {m['request'].split()[1] for m in diff['last_mismatches']} \
        <= {'/item/3', '/item/7'}, diff
    assert d['canary']['weight_bp'] == 0 and d['canary']['epoch'] == 1
