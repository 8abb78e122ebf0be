"""
A scale-in in a fleet (tce_redis) waits for every node's requests in
flight: an instance DELETEd through node A, while node B still proxies
a slow request to it, is removed only once that request has ended (it
ends with 200), because node B keeps a busy mark in Redis while it has
requests in flight on a draining instance; a node killed while holding
a mark holds the removal up only until the mark expires, not until the
drain deadline.

The oracles: the slow backend's own record of when it answered, the
fleet's set and the marks read from Redis with the test's client, each
node's API (404 once removed) and the audit stream.
"""

import http.client
import json
import threading
import time

import pytest

from conftest import SERVICE, SLOW, free_port, instance, wait_for
from admin_helpers import TOKEN, call
from redis_helpers import nginx_b, redis
from slow_backends import SlowBackends
from test_deploy_fleet import kill_node, node_name
from test_redis_fleet import two_nodes
from test_redis_fleet_set import fleet_ids

CL = '/api/v1/services/%s/clusters/default' % SERVICE
INSTANCES = CL + '/instances'
SETTLE = 1.0 * SLOW         # drain_settle= of two_nodes()
MARK_TTL = 3 * SETTLE       # a busy mark lives 3 x drain_settle

# nginx_b and redis are fixtures used by name
assert nginx_b and redis


class Ports:
    """The backend two_nodes() routes to: p1 and p2 on the two slow
    backends (p1 the one drained), c1 on the nginx backend."""

    def __init__(self, slow, backend):
        self.ok4 = [slow.ports[0], slow.ports[1], backend.ok4[2],
                    backend.ok4[3]]

    def addr(self, port):
        return '127.0.0.1:%d' % port


def mark_key(node):
    return 'tce:drain_busy:%s/p1:%s' % (SERVICE, node_name(node))


def drain_keys(redis):
    return sorted(redis.cmd('KEYS', 'tce:drain_*'))


def slow_request_on_p1(node, slow, ms):
    """A request of ms ms through node that reaches p1's backend (one
    more request at a time until p1's has one running); returns the
    thread and the list its answer goes to."""
    def run(out):
        try:
            out.append(node.get('/%d' % ms, timeout=ms / 1000.0 + 10))
        except (OSError, http.client.HTTPException) as e:
            out.append(e)           # a node killed under it

    p1 = slow.ports[0]
    for _ in range(8):
        before = len(slow.requests())
        out = []
        t = threading.Thread(target=run, args=(out,), daemon=True)
        t.start()
        wait_for(lambda: len(slow.requests()) > before, 5,
                 what='the slow request at a backend')
        if slow.running(p1):
            return t, out
    raise AssertionError('no request reached p1: %s' % slow.requests())


def removals(redis):
    """The drain timer's lines in the audit stream."""
    out = []
    for _, fields in redis.cmd('XRANGE', 'tce:audit', '-', '+'):
        line = json.loads(dict(zip(fields[::2], fields[1::2]))['line'])
        if line.get('event') == 'instance_removed':
            out.append(line)
    return out


def removed_lines(nodes):
    return [line for node in nodes
            for line in open(node.error_log).read().splitlines()
            if 'instance "p1"' in line and 'removed' in line]


def test_removal_waits_for_the_other_nodes_requests(nginx, nginx_b, backend,
                                                    redis):
    slow = SlowBackends(2)
    try:
        two_nodes(nginx, nginx_b, Ports(slow, backend), redis, audit=True)
        p1 = slow.ports[0]
        ms = int(3 * SETTLE * 1000)
        t, out = slow_request_on_p1(nginx_b, slow, ms)

        # scale-in written on node A, which has nothing in flight on p1
        r = call(nginx, 'DELETE', INSTANCES + '/p1?timeout=600s',
                 token=TOKEN)
        assert r.status == 202 and r.json['status'] == 'draining', r
        since = r.json['instance']['removal']['since'] / 1000.0
        # node B's mark, its count, in its node's set
        wait_for(lambda: redis.cmd('GET', mark_key(nginx_b)) == '1', 5,
                 what='node B\'s busy mark of p1')
        assert redis.cmd('SMEMBERS', 'tce:drain_nodes:%s/p1' % SERVICE) \
            == [node_name(nginx_b)]
        assert 0 < redis.cmd('PTTL', mark_key(nginx_b)) <= MARK_TTL * 1000

        # when each side first shows p1 removed
        removed_at = {}

        def removed():
            now = time.time()
            if 'redis' not in removed_at and 'p1' not in fleet_ids(redis):
                removed_at['redis'] = now
            for name, node in (('a', nginx), ('b', nginx_b)):
                if name not in removed_at and call(
                        node, 'GET', INSTANCES + '/p1').status == 404:
                    removed_at[name] = now
            return len(removed_at) == 3

        wait_for(removed, ms / 1000.0 + 10, interval=0.01,
                 what='p1 removed everywhere')
        t.join(10 * SLOW)
    finally:
        slow.stop()

    # the request through node B ended well, by p1
    assert len(out) == 1 and out[0].status == 200, out
    assert int(out[0].text) == p1
    (rec,) = [r for r in slow.requests(p1)]
    end = rec[2]
    assert end is not None
    # removed nowhere before it ended, and soon after
    assert min(removed_at.values()) >= end, (removed_at, end)
    assert max(removed_at.values()) - end < 2 * SLOW, (removed_at, end)
    # once, as drained, with nothing in flight anywhere; marks gone
    assert len(removed_lines((nginx, nginx_b))) == 1
    (line,) = removals(redis)
    assert line['reason'] == 'drained', line
    assert line['in_flight'] == 0 and line['in_flight_other_nodes'] == 0
    assert line['drained_ms'] >= (end - since) * 1000 - 20, (line, since)
    assert drain_keys(redis) == []
    print('\np1 removed %.0f ms after node B\'s request ended (it ran %.0f '
          'ms; drain %d ms)' % ((max(removed_at.values()) - end) * 1000,
                                (end - rec[1]) * 1000, line['drained_ms']))


@pytest.mark.novalgrind('same C paths as test_removal_waits_for_the_other_'
                        'nodes_requests, which runs under memcheck (marks '
                        'written, read, a removal held back, then made); '
                        'its cost is waiting for the mark to expire: 49 s '
                        'under memcheck')
def test_a_dead_nodes_mark_expires(nginx, nginx_b, backend, redis):
    slow = SlowBackends(2)
    try:
        two_nodes(nginx, nginx_b, Ports(slow, backend), redis, audit=True)
        # a request that outlives the test: node B dies with it
        slow_request_on_p1(nginx_b, slow, int(60000 * SLOW))
        r = call(nginx, 'DELETE', INSTANCES + '/p1?timeout=600s',
                 token=TOKEN)
        assert r.status == 202, r
        since = r.json['instance']['removal']['since'] / 1000.0
        key = mark_key(nginx_b)
        wait_for(lambda: redis.cmd('GET', key) == '1', 5,
                 what='node B\'s busy mark of p1')
        # past the settle: node A would remove p1 but for the mark
        wait_for(lambda: time.time() > since + SETTLE + 0.3 * SLOW, 5,
                 what='the settle to pass')
        assert 'p1' in fleet_ids(redis)

        kill_node(nginx_b)
        t_kill = time.monotonic()
        pttl = redis.cmd('PTTL', key) / 1000.0
        assert 0 < pttl <= MARK_TTL, pttl

        wait_for(lambda: fleet_ids(redis) == ['c1', 'p2'], MARK_TTL + 5,
                 interval=0.01, what='node A to remove p1')
        took = time.monotonic() - t_kill
    finally:
        slow.stop()

    # not before the mark expired (Redis's clock), long before 600 s
    assert redis.cmd('EXISTS', key) == 0
    assert took >= pttl - 0.05, (took, pttl)
    assert took < pttl + 2 * SLOW, (took, pttl)
    wait_for(lambda: call(nginx, 'GET', INSTANCES + '/p1').status == 404,
             5, what='p1 gone on node A')
    (line,) = removals(redis)
    assert line['reason'] == 'drained' and line['in_flight'] == 0, line
    assert drain_keys(redis) == []
    print('\np1 removed %.0f ms after node B was killed (its mark had %.0f '
          'ms to live)' % (took * 1000, pttl * 1000))


def test_deadline_removes_with_the_other_nodes_counts(nginx, nginx_b,
                                                       backend, redis):
    slow = SlowBackends(2)
    try:
        two_nodes(nginx, nginx_b, Ports(slow, backend), redis, audit=True)
        for node in (nginx, nginx_b):
            node.allowed_log.add('removed at its drain timeout')
        # a request that outlives the deadline by 3 s
        timeout_ms = int(2 * SETTLE * 1000)
        t, out = slow_request_on_p1(nginx_b, slow,
                                    timeout_ms + int(3000 * SLOW))
        r = call(nginx, 'DELETE', INSTANCES + '/p1?timeout=%dms'
                 % timeout_ms, token=TOKEN)
        assert r.status == 202, r
        rm = r.json['instance']['removal']
        wait_for(lambda: fleet_ids(redis) == ['c1', 'p2'], 2 * SETTLE + 5,
                 what='p1 removed at its deadline')
        # the request is still in flight: the deadline removed it
        assert slow.running(slow.ports[0]) == 1
        assert t.is_alive()
        t.join(10 * SLOW)
    finally:
        slow.stop()
    # it still ends well (node B's view keeps p1 for it)
    assert len(out) == 1 and out[0].status == 200, out
    (line,) = removals(redis)
    assert line['reason'] == 'drain_timeout', line
    assert line['drained_ms'] >= rm['deadline'] - rm['since'], line
    # node B's request, counted wherever the removal was made
    assert line['in_flight'] == 1, line
    (text,) = removed_lines((nginx, nginx_b))
    assert 'removed at its drain timeout' in text and 'with 1 requests in ' \
        'flight' in text, text


@pytest.mark.parametrize('value,ok', [('250ms', True), ('10m', True),
                                      ('50ms', False), ('11m', False),
                                      ('soon', False)])
def test_drain_settle_bounds(nginx, value, ok):
    """drain_settle= of tce_redis: 100 ms to 10 min, else nginx -t
    names it."""
    nginx.write_state({SERVICE: {'default': [
        instance('p1', '127.0.0.1:%d' % free_port())]}})
    nginx.configure(http_extra='    tce_redis 127.0.0.1:%d '
                    'drain_settle=%s;\n' % (free_port(), value))
    rc, err = nginx.check()
    if ok:
        assert rc == 0, err
    else:
        assert rc != 0
        assert ('invalid parameter "drain_settle=%s" in "tce_redis"'
                % value) in err, err
