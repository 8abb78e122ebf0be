"""
Progressive deploys (issue 11), first slice: the API's checks, a
healthy canary promoted step by step, a canary answering 5xx rolled
back by the error gate (weight 0, new epoch: prod only afterwards),
manual pause/resume/rollback.  The backends are real: prod on the
fixture's stock nginx, the failing canary on its 500 port.
"""

import threading

from admin_helpers import TOKEN, start_admin
from conftest import SERVICE, SLOW, instance, wait_for, http_get
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
