"""
Deploys in a fleet (tce_redis, issue 11): two nodes never drive deploys
at once.  The node whose controller holds the lease <prefix>deploy_lease
in a real redis-server (redis_helpers.py) drives; the other waits.  A
reload of the holder keeps the lease (it is the node's, not a worker's);
a SIGKILL of the holder's whole node hands it to the other once it has
expired in Redis, not before.  A deploy's records and policies are in
Redis: the other node's API shows the deploy, routes by its step's
weight, relays deploy writes to the holder (test_deploy_relay.py), and
goes on at the deploy's step when it takes over; a node restarted without its own
deploys file gets the deploy back from Redis, at its step.
"""

import json
import os
import re
import signal
import socket
import threading
import time

from conftest import (SERVICE, SLOW, VALGRIND, http_get, instance,
                      read_from, wait_for)
from admin_helpers import TOKEN, call
from redis_helpers import nginx_b, redis, start_node, wait_fleet_up

DEPLOYS = '/api/v1/services/%s/clusters/default/deploys' % SERVICE

LEASE_TTL = 3.0     # s, the lease's expiry in Redis


def lease(node):
    r = call(node, 'GET', '/api/v1/status')
    assert r.status == 200, r
    return r.json['deploy_lease']


def node_name(node):
    # nginx lowercases the host name; the master's pid names the node
    return '%s:%d' % (socket.gethostname().lower(), node.proc.pid)


def drives_lines(node):
    return re.findall(r'node "([^"]+)" holds the deploy lease',
                      read_from(node.error_log))


def two_nodes(nginx, nginx_b, backend, redis):
    redis.start()
    start_node(nginx, backend, 'tce_redis 127.0.0.1:%d timeout=%dms '
               'resync=1s;' % (redis.port, 2000 * SLOW))
    start_node(nginx_b, backend, 'tce_redis unix:%s timeout=%dms '
               'resync=1s;' % (redis.unix, 2000 * SLOW))
    wait_fleet_up(nginx)
    wait_fleet_up(nginx_b)
    holder = wait_for(lambda: redis.cmd('GET', 'tce:deploy_lease'),
                      10 * SLOW, what='a node to take the deploy lease')
    names = {node_name(nginx): nginx, node_name(nginx_b): nginx_b}
    assert holder in names, (holder, names)
    a = names[holder]
    b = nginx_b if a is nginx else nginx
    wait_for(lambda: lease(a)['held'], 5 * SLOW,
             what='the holder to see its lease')
    return a, b, holder


def one_holder(a, b, seconds):
    """Both nodes' view, polled for seconds: never both holding."""
    end = time.monotonic() + seconds
    seen = 0
    while time.monotonic() < end:
        la, lb = lease(a), lease(b)
        assert not (la['held'] and lb['held']), (la, lb)
        seen += la['held']
        time.sleep(0.05)
    return seen


def kill_node(node):
    """SIGKILL of the master, then of its workers: a node that dies (a
    worker killed first could be logged by the master)."""
    node.allowed_log.add('exited on signal 9')
    workers = node.all_children()
    os.kill(node.proc.pid, signal.SIGKILL)
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    node.proc.wait()
    node.proc = None
    node.stderr.close()


def test_one_node_drives_and_a_dead_holder_hands_over(nginx, nginx_b,
                                                      backend, redis):
    a, b, holder = two_nodes(nginx, nginx_b, backend, redis)

    # the other node sees the holder and does not hold it
    lb = wait_for(lambda: (lambda x: x['holder'] == holder and x)(lease(b)),
                  5 * SLOW, what='node B to see the holder')
    assert lb['held'] is False and lb['valid_ms'] == 0, lb
    assert lease(a)['taken'] == 1
    assert one_holder(a, b, 2 * SLOW) > 0
    pttl = redis.cmd('PTTL', 'tce:deploy_lease')
    assert 0 < pttl <= LEASE_TTL * 1000, pttl
    assert drives_lines(a) == [holder] and drives_lines(b) == []

    # a reload of the holder: its new workers renew the node's lease
    # (under memcheck the new workers may start after the lease's 3 s
    # have passed: the other node may take it then, which is right)
    a.reload(timeout=10 * SLOW)
    now = wait_for(lambda: (lambda x, y: (x['held'] and a)
                            or (y['held'] and b))(lease(a), lease(b)),
                   5 * SLOW, what='a holder after the reload')
    if not VALGRIND:
        assert now is a and lease(a)['taken'] == 1, lease(a)
        assert drives_lines(b) == []
    a, b = now, (b if now is a else a)
    one_holder(a, b, 1 * SLOW)
    assert redis.cmd('GET', 'tce:deploy_lease') == node_name(a)

    # the holder's whole node dies: B takes over once the lease expired
    last = time.monotonic()
    kill_node(a)
    lb = wait_for(lambda: (lambda x: x['held'] and x)(lease(b)),
                  (LEASE_TTL + 3) * SLOW, what='node B to take the lease')
    took = time.monotonic() - last
    print('\ndeploy lease: taken over %.2f s after the holder was killed'
          % took)
    # not before the lease expired in Redis (it was renewed at most one
    # tick, 250 ms, before the kill)
    assert took >= LEASE_TTL - 0.5, took
    assert redis.cmd('GET', 'tce:deploy_lease') == node_name(b)
    assert lb['holder'] == node_name(b) and lb['taken'] >= 1, lb
    assert drives_lines(b)[-1] == node_name(b)


def current(node):
    r = call(node, 'GET', DEPLOYS + '/current')
    assert r.status == 200, r
    return r.json


def load(node, stop):
    i = 0
    while not stop.is_set():
        i += 1
        try:
            http_get(node.port, '/?user=u%d' % (i % 1000), timeout=5)
        except OSError:
            pass


def step_events(node):
    """The steps whose deploy_step event this node's controller logged."""
    return [int(x) for x in re.findall(
        r'deploy \d+ of "[^"]+" cluster "default": deploy_step, step '
        r'(\d+)', read_from(node.error_log))]


def test_a_deploy_goes_on_at_its_step_on_the_node_taking_over(
        nginx, nginx_b, backend, redis):
    a, b, holder = two_nodes(nginx, nginx_b, backend, redis)
    wait_for(lambda: lease(a)['drives'], 5 * SLOW,
             what='the holder to drive deploys')
    body = {'steps': [10, 30, 60, 100], 'step_seconds': 2,
            'min_requests': 10}

    # started on the other node: relayed to the holder, which drives it
    r = call(b, 'POST', DEPLOYS, body=body, token=TOKEN)
    assert r.status == 201, r
    deploy_id = r.json['id']

    stop = threading.Event()
    ts = [threading.Thread(target=load, args=(n, stop), daemon=True)
          for n in (a, b, a, b)]
    for t in ts:
        t.start()
    try:
        d = wait_for(lambda: current(a)['step'] >= 1 and current(a),
                     20 * SLOW, what='the second step on the holder')
        # B shows the same deploy from Redis, and routes by its weight
        db = wait_for(lambda: (lambda x: x['id'] == deploy_id
                               and x['step'] >= 1 and x)(current(b)),
                      5 * SLOW, what='node B to show the deploy')
        assert db['state'] == 'running', db
        stored = json.loads(redis.cmd('HGET', 'tce:canary',
                                      SERVICE + '/default'))
        weights = [round(s['weight'] * 100) for s in d['steps']]
        assert stored['weight_bp'] in weights[1:], (stored, weights)
        assert step_events(b) == [], read_from(b.error_log)

        # the holder dies in the middle of the deploy
        kill_node(a)
        wait_for(lambda: lease(b)['drives'], (3 + 3) * SLOW,
                 what='node B to drive deploys')
        after = current(b)
        assert after['id'] == deploy_id and after['state'] == 'running', \
            after
        assert after['step'] >= d['step'], (after, d)
        assert [s['verdict'] for s in after['steps'][:after['step']]] == \
            ['passed'] * after['step'], after
        end = wait_for(lambda: (lambda x: x['state'] != 'running' and x)(
            current(b)), 40 * SLOW, what='the deploy to end on node B')
    finally:
        stop.set()
        for t in ts:
            t.join(10)
    assert end['state'] == 'promoted', end
    assert [s['verdict'] for s in end['steps']] == ['passed'] * 4, end
    # each step was passed by one node only: A's, then B's
    sa, sb = step_events(a), step_events(b)
    assert sa and not set(sa) & set(sb), (sa, sb)
    assert ': deploy_promoted,' in read_from(b.error_log)
    assert ': deploy_promoted,' not in read_from(a.error_log)
    stored = json.loads(redis.cmd('HGET', 'tce:canary',
                                  SERVICE + '/default'))
    assert stored['weight_bp'] == 10000, stored
    ports = {int(http_get(b.port, '/?user=u%d' % u).text)
             for u in range(10)}
    assert ports == {backend.ok4[2]}, ports


def test_a_restart_of_the_fleet_resumes_from_redis(nginx, backend, redis):
    # one node, stopped in the middle of a deploy, its own deploys file
    # removed: it comes back with the deploy from Redis, at its step
    redis.start()
    start_node(nginx, backend, 'tce_redis 127.0.0.1:%d timeout=%dms '
               'resync=1s;' % (redis.port, 2000 * SLOW))
    wait_fleet_up(nginx)
    wait_for(lambda: lease(nginx)['drives'], 10 * SLOW,
             what='the node to drive deploys')
    r = call(nginx, 'POST', DEPLOYS, token=TOKEN,
             body={'steps': [10, 30, 60, 100], 'step_seconds': 3,
                   'min_requests': 10})
    assert r.status == 201, r

    stop = threading.Event()

    def run():
        ts = [threading.Thread(target=load, args=(nginx, stop),
                               daemon=True) for _ in range(2)]
        for t in ts:
            t.start()
        return ts

    ts = run()
    try:
        d = wait_for(lambda: current(nginx)['step'] >= 1 and current(nginx),
                     20 * SLOW, what='the second step')
    finally:
        stop.set()
        for t in ts:
            t.join(10)
    errors = nginx.stop()
    assert not errors, errors
    nginx.proc = None
    os.remove(nginx.state_path + '.deploys')
    # the oracle: the records in Redis while the node is down
    saved = [x for x in json.loads(redis.cmd('GET', 'tce:deploys'))
             ['deploys'] if x['id'] == d['id']]
    assert len(saved) == 1 and saved[0]['step'] >= d['step'], (saved, d)

    nginx.start()
    stop.clear()
    ts = run()
    try:
        # its old lease (the previous master's name) expires first
        wait_for(lambda: lease(nginx)['drives'], (3 + 5) * SLOW,
                 what='the restarted node to drive deploys')
        after = current(nginx)
        assert after['id'] == d['id'] and after['state'] == 'running', \
            after
        assert after['step'] == saved[0]['step'], (after, saved)
        r = call(nginx, 'GET', DEPLOYS[:-len('deploys')] + 'canary')
        assert r.json['canary']['weight_bp'] == \
            round(after['steps'][after['step']]['weight'] * 100), (r, after)
        end = wait_for(lambda: (lambda x: x['state'] != 'running' and x)(
            current(nginx)), 40 * SLOW, what='the deploy to end')
    finally:
        stop.set()
        for t in ts:
            t.join(10)
    assert end['state'] == 'promoted', end
    assert [s['verdict'] for s in end['steps']] == ['passed'] * 4, end


def test_the_holder_judges_the_fleets_traffic(nginx, nginx_b, backend,
                                              redis, monkeypatch):
    # the canary answers 500; requests go to the other node only: the
    # holder sees none itself, rolls back on the other node's counters
    import redis_helpers
    monkeypatch.setattr(redis_helpers, 'fleet_services', lambda be: {
        SERVICE: {'default': [
            instance('p1', be.addr(be.ok4[0])),
            instance('c1', be.addr(be.p500), env='canary')]}})
    a, b, holder = two_nodes(nginx, nginx_b, backend, redis)
    wait_for(lambda: lease(a)['drives'], 5 * SLOW,
             what='the holder to drive deploys')
    r = call(a, 'POST', DEPLOYS, token=TOKEN,
             body={'steps': [20, 100], 'step_seconds': 60,
                   'min_requests': 20})
    assert r.status == 201, r
    stop = threading.Event()
    ts = [threading.Thread(target=load, args=(b, stop), daemon=True)
          for _ in range(3)]
    for t in ts:
        t.start()
    try:
        d = wait_for(lambda: (lambda x: x['state'] != 'running' and x)(
            current(a)), 20 * SLOW, what='the rollback by the holder')
    finally:
        stop.set()
        for t in ts:
            t.join(10)
    assert d['state'] == 'rolled_back', d
    assert d['failed_gate'] in ('error_ratio', 'error_ratio_vs_prod'), d
    f = d['steps'][0]['figures']
    assert f['canary_errors'] > 0 and f['prod_requests'] > 0, f
    # the oracle: node A proxied nothing itself
    assert [e for e in a.access_entries() if e['uri'].startswith('/?')] \
        == [], 'node A proxied requests'
    assert ': deploy_rolled_back,' in read_from(a.error_log)
    # node B follows the rollback: prod only
    prod = '%d\n' % backend.ok4[0]
    wait_for(lambda: all(http_get(b.port, '/?user=u%d' % u).text == prod
                         for u in range(10)),
             5 * SLOW, what='node B routing to prod only')
