"""
The fleet store (tce_redis) for instance overrides: a PATCH of an
instance (weight, drain, down) on any node is kept in Redis and applied
by every node; it survives a Redis restart, an nginx reload and an
nginx restart during a Redis outage (the fleet cache).

The oracle is the traffic itself: which backend port answers through
each node (p1 is ok4[0], p2 ok4[1]), and Redis's own content read with
redis-cli's protocol (redis_helpers.RedisClient), never the module's
status.
"""

import json
import os

from conftest import SERVICE, SLOW, wait_for
from admin_helpers import TOKEN, call, check_error
from redis_helpers import (fleet_status, measure, nginx_b, redis, start_node,
                           wait_fleet_up)
from test_redis_fleet import two_nodes

INST = '/api/v1/services/%s/clusters/default/instances/' % SERVICE

# nginx_b and redis are fixtures used by name
assert nginx_b and redis


def patch(node, id, body, headers=None):
    return call(node, 'PATCH', INST + id, body, token=TOKEN,
                headers=headers)


def ports(node, n):
    """The backend ports that answered n fresh requests (prod users:
    the canary's weight is 0), each on a new connection so that every
    worker of the node is used."""
    out = []
    for i in range(n):
        r = node.get('/?i=%d' % i)
        assert r.status == 200, r
        out.append(int(r.text))
    return out


def avoids(node, port, n=30):
    return port not in ports(node, n)


def stored(redis, id):
    v = redis.cmd('HGET', 'tce:override', '%s/%s' % (SERVICE, id))
    return json.loads(v) if v is not None else None


def test_drain_on_one_node_is_live_on_the_other(nginx, nginx_b, backend,
                                                redis):
    two_nodes(nginx, nginx_b, backend, redis)
    p1 = backend.ok4[0]
    assert p1 in ports(nginx_b, 30) and p1 in ports(nginx, 30)
    with open(nginx.state_path, 'rb') as f:
        state_before = f.read()

    # drain p1 on A: B stops sending it new requests, every worker
    r = patch(nginx, 'p1', {'drain': True})
    assert r.status == 200, r
    assert r.json['instance']['overrides']['drain'] is True
    t = measure(lambda: avoids(nginx_b, p1, 10), 5)
    print('\ndrain on A live on B after %.1f ms (polling included)'
          % (t * 1000))
    assert avoids(nginx_b, p1, 200) and avoids(nginx, p1, 100)
    assert stored(redis, 'p1') == {'down': False, 'drain': True,
                                   'weight': 0}
    with open(nginx.state_path, 'rb') as f:
        assert f.read() == state_before

    # B shows it, with the fleet revision as ETag, the same on A
    gb = wait_for(lambda: (lambda g: g.json['instance']['overrides']
                           ['drain'] is True and g)(
                               call(nginx_b, 'GET', INST + 'p1')), 5,
                  what='the drain in node B\'s instance')
    etag = '"%s"' % redis.cmd('HGET', 'tce:rev', SERVICE)
    assert gb.headers['ETag'] == etag
    assert call(nginx, 'GET', INST + 'p1').headers['ETag'] == etag

    # a stale If-Match is refused on any node, atomically in Redis
    r = patch(nginx_b, 'p1', {'drain': None}, headers={'If-Match': '"0"'})
    check_error(r, 412, 'precondition_failed')
    assert stored(redis, 'p1')['drain'] is True
    assert avoids(nginx, p1, 30)

    # a weight set on B merges with the drain; null clears the drain
    r = patch(nginx_b, 'p1', {'weight': 7}, headers={'If-Match': etag})
    assert r.status == 200, r
    assert stored(redis, 'p1') == {'down': False, 'drain': True,
                                   'weight': 7}
    r = patch(nginx_b, 'p1', {'drain': None})
    assert r.status == 200, r
    assert stored(redis, 'p1') == {'down': False, 'drain': False,
                                   'weight': 7}
    wait_for(lambda: p1 in ports(nginx, 30), 5, what='p1 back on A')
    # weight 7 of 8: p1 takes most of A's requests
    got = ports(nginx, 80)
    assert got.count(p1) > 40, got

    # nothing left set: the entry goes from Redis, both nodes even
    r = patch(nginx, 'p1', {'weight': None})
    assert r.status == 200, r
    assert stored(redis, 'p1') is None
    wait_for(lambda: call(nginx_b, 'GET', INST + 'p1').json['instance']
             ['overrides']['weight'] is None, 5, what='B without override')

    # down on B: A never sends p2 a request
    p2 = backend.ok4[1]
    assert patch(nginx_b, 'p2', {'down': True}).status == 200
    wait_for(lambda: avoids(nginx, p2, 10), 5, what='p2 down on A')
    assert avoids(nginx, p2, 100)

    # an unknown instance: 404, nothing stored
    check_error(patch(nginx, 'nope', {'drain': True}), 404,
                'unknown_instance')
    assert stored(redis, 'nope') is None


def test_overrides_survive_redis_restart_and_reload(nginx, nginx_b,
                                                    backend, redis):
    two_nodes(nginx, nginx_b, backend, redis)
    p1, p2 = backend.ok4[0], backend.ok4[1]
    assert patch(nginx, 'p1', {'drain': True}).status == 200
    wait_for(lambda: avoids(nginx_b, p1, 10), 5, what='the drain on B')
    cache = nginx.state_path + '.fleet'
    wait_for(lambda: os.path.exists(cache)
             and json.load(open(cache)).get('overrides'), 5,
             what='the override in the fleet cache file')
    assert json.load(open(cache))['overrides'] == {
        SERVICE + '/p1': {'down': False, 'drain': True, 'weight': 0}}

    # Redis gone: writes refused, nothing changed, the drain holds
    redis.kill()
    wait_for(lambda: fleet_status(nginx)['state'] != 'up'
             and fleet_status(nginx_b)['state'] != 'up', 5 * SLOW,
             what='both nodes to see Redis gone')
    check_error(patch(nginx_b, 'p1', {'drain': None}), 503,
                'redis_unavailable')
    for node in (nginx, nginx_b):
        assert avoids(node, p1, 60)

    # a reload of B and a restart of A during the outage keep it
    nginx_b.reload()
    assert avoids(nginx_b, p1, 60)
    errors = nginx.stop()
    assert not errors, errors
    nginx.start()
    assert avoids(nginx, p1, 60)

    # Redis back (append-only file): the override is still there,
    # both nodes resync and keep it
    redis.start()
    wait_fleet_up(nginx, 10 * SLOW)
    wait_fleet_up(nginx_b, 10 * SLOW)
    assert stored(redis, 'p1')['drain'] is True
    for node in (nginx, nginx_b):
        assert avoids(node, p1, 60)

    # a reload with Redis up keeps it too (the state file has none)
    nginx.reload()
    assert avoids(nginx, p1, 60)

    # a write made on B now reaches A
    assert patch(nginx_b, 'p1', {'drain': False}).status == 200
    assert patch(nginx_b, 'p2', {'drain': True}).status == 200
    wait_for(lambda: p1 in ports(nginx, 30) and avoids(nginx, p2, 30), 5,
             what='A to follow B\'s writes')


def test_audit_lines_go_to_the_redis_stream(nginx, backend, redis):
    """Every audit line is also in the stream tce:audit (XADD MAXLEN ~),
    read back with XRANGE from the real redis-server."""
    redis.start()
    audit = os.path.join(nginx.dir, 'audit.log')
    start_node(nginx, backend, 'tce_redis 127.0.0.1:%d timeout=%dms '
               'audit_maxlen=1000;' % (redis.port, 2000 * SLOW), audit=audit)
    wait_fleet_up(nginx)
    assert patch(nginx, 'p1', {'drain': True}).status == 200
    assert call(nginx, 'PUT', '/api/v1/services/%s/clusters/default/canary'
                % SERVICE, {'weight': 10}, token=TOKEN).status == 200

    def stream():
        return [dict(zip(e[1][0::2], e[1][1::2]))['line']
                for e in redis.cmd('XRANGE', 'tce:audit', '-', '+')]
    wait_for(lambda: len(stream()) == 2, 5, what='two entries in the stream')
    lines = [json.loads(x) for x in stream()]
    assert [(x['method'], x['status']) for x in lines] == [('PATCH', 200),
                                                           ('PUT', 200)]
    wait_for(lambda: os.path.exists(audit)
             and len(open(audit).read().splitlines()) == 2, 5,
             what='the audit file')
    assert [json.loads(x) for x in open(audit).read().splitlines()] == lines
