"""
The fleet store (tce_redis) for instance sets: POST and DELETE of an
instance and PUT of an env's set on any node are kept in Redis
(tce:inst) and routed with by every node; a drained instance is removed
fleet-wide once, by whichever node finds it drained first, also when
the node that took the DELETE is gone.

The oracle is the traffic itself (which backend port answers through
each node: p1 is ok4[0], p2 ok4[1], the added p4 ok4[3]) and Redis's
own content read with the test's RESP client, never the module's
status.
"""

import json
import os
import signal
import threading

from conftest import SERVICE, SLOW, wait_for
from admin_helpers import TOKEN, call, check_error
from redis_helpers import measure, nginx_b, redis, wait_fleet_up
from test_redis_fleet import two_nodes

CL = '/api/v1/services/%s/clusters/default' % SERVICE
INSTANCES = CL + '/instances'

# nginx_b and redis are fixtures used by name
assert nginx_b and redis


def ports(node, n):
    """The backend ports that answered n requests of prod users."""
    out = []
    for i in range(n):
        r = node.get('/?i=%d' % i)
        assert r.status == 200, r
        out.append(int(r.text))
    return out


def fleet_ids(redis):
    """The ids of the service's set in Redis, None when it has none."""
    v = redis.cmd('HGET', 'tce:inst', SERVICE)
    if v is None:
        return None
    doc = json.loads(v)
    cl = doc['services'][SERVICE]['clusters']
    return sorted(i['id'] for c in cl.values() for i in c['instances'])


def api_ids(node):
    r = call(node, 'GET', INSTANCES)
    assert r.status == 200, r
    return sorted(i['id'] for i in r.json['instances'])


class Load:
    """A small steady load on some nodes (bounded, loopback): counts
    the answers that are not 200 and the ports that answered."""

    def __init__(self, nodes, limit=4000):
        self.nodes = nodes
        self.limit = limit
        self.failed = []
        self.seen = []
        self.stopping = False
        self.threads = [threading.Thread(target=self.run, args=(n,),
                                         daemon=True) for n in nodes]

    def run(self, node):
        i = 0
        while not self.stopping and i < self.limit:
            r = node.get('/?load=%d' % i)
            if r.status != 200:
                self.failed.append((node.port, r.status, r.text))
            else:
                self.seen.append(int(r.text))
            i += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stopping = True
        for t in self.threads:
            t.join()


def test_post_on_one_node_routes_on_the_other(nginx, nginx_b, backend,
                                              redis):
    two_nodes(nginx, nginx_b, backend, redis)
    p1, p2, p4 = backend.ok4[0], backend.ok4[1], backend.ok4[3]
    with open(nginx.state_path, 'rb') as f:
        state_before = f.read()
    assert fleet_ids(redis) is None

    # POST on A: B routes to it too, every worker
    body = {'id': 'p4', 'address': backend.addr(p4), 'weight': 5,
            'version': 'v1'}
    r = call(nginx, 'POST', INSTANCES, body=body, token=TOKEN)
    assert r.status == 201 and r.json['status'] == 'added', r
    t = measure(lambda: p4 in ports(nginx_b, 10), 5)
    print('\nPOST on A routed on B after %.1f ms (polling included)'
          % (t * 1000))
    # the first write copies the node's set into the fleet
    assert fleet_ids(redis) == ['c1', 'p1', 'p2', 'p4']
    assert api_ids(nginx_b) == ['c1', 'p1', 'p2', 'p4']
    # weight 5 of 7 on both nodes (once past its slow start, if any)
    for node in (nginx, nginx_b):
        wait_for(lambda: ports(node, 70).count(p4) > 30, 5 * SLOW,
                 what='p4 at weight 5 of 7 on node %d' % node.port)
    with open(nginx.state_path, 'rb') as f:
        assert f.read() == state_before
    etag = '"%s"' % redis.cmd('HGET', 'tce:rev', SERVICE)
    assert call(nginx_b, 'GET', INSTANCES).headers['ETag'] == etag

    # the same POST on B: kept; a different one: 409, nothing written
    r = call(nginx_b, 'POST', INSTANCES, body=body, token=TOKEN)
    assert r.status == 200 and r.json['status'] == 'kept', r
    check_error(call(nginx_b, 'POST', INSTANCES,
                     body=dict(body, address=backend.addr(p1)),
                     token=TOKEN), 409, 'instance_exists')
    # a stale If-Match is refused on any node, checked against Redis
    check_error(call(nginx_b, 'DELETE', INSTANCES + '/p4', token=TOKEN,
                     headers={'If-Match': '"1"'}), 412,
                'precondition_failed')
    assert fleet_ids(redis) == ['c1', 'p1', 'p2', 'p4']

    # PUT of prod's set on B = [p1, p4]: p2 drains and goes, on both
    r = call(nginx_b, 'PUT', CL + '/envs/prod/instances', token=TOKEN,
             body={'instances': [
                 {'id': 'p1', 'address': backend.addr(p1), 'weight': 1,
                  'version': 'v1'},
                 {'id': 'p4', 'address': backend.addr(p4), 'weight': 1,
                  'version': 'v1'}]})
    assert r.status == 200, r
    assert [d['id'] for d in r.json['draining']] == ['p2']
    wait_for(lambda: fleet_ids(redis) == ['c1', 'p1', 'p4'], 10 * SLOW,
             what='p2 removed from the fleet\'s set')
    for node in (nginx, nginx_b):
        wait_for(lambda: api_ids(node) == ['c1', 'p1', 'p4'], 5 * SLOW,
                 what='p2 gone on node %d' % node.port)
        got = ports(node, 60)
        assert p2 not in got and p1 in got and p4 in got, got


def test_delete_drains_and_removes_on_every_node_under_load(
        nginx, nginx_b, backend, redis):
    two_nodes(nginx, nginx_b, backend, redis)
    p1 = backend.ok4[0]
    assert p1 in ports(nginx, 30) and p1 in ports(nginx_b, 30)

    with Load([nginx, nginx_b]) as load:
        wait_for(lambda: len(load.seen) > 20, 10 * SLOW, what='load')
        r = call(nginx, 'DELETE', INSTANCES + '/p1', token=TOKEN)
        assert r.status == 202 and r.json['status'] == 'draining', r
        # draining on node B too (the marker is the fleet's), unless
        # already removed (under memcheck a poll may take longer than
        # the drain)
        def drained_on_b():
            g = call(nginx_b, 'GET', INSTANCES + '/p1')
            return g.status == 404 or g.json['instance']['removal']
        wait_for(drained_on_b, 5 * SLOW, what='the drain on node B')
        # removed on both, and from Redis
        for node in (nginx, nginx_b):
            wait_for(lambda: call(node, 'GET', INSTANCES + '/p1')
                     .status == 404, 10 * SLOW,
                     what='p1 removed on node %d' % node.port)
        assert fleet_ids(redis) == ['c1', 'p2']
        n = len(load.seen)
        wait_for(lambda: len(load.seen) > n + 20
                 or not any(t.is_alive() for t in load.threads),
                 10 * SLOW, what='more load')
        after = load.seen[n:]
    assert load.failed == [], load.failed[:5]
    assert p1 not in after
    # one removal, by one node, audited as the drain timer's
    removed = [line for node in (nginx, nginx_b)
               for line in open(node.error_log).read().splitlines()
               if 'instance "p1"' in line and 'removed' in line]
    assert len(removed) == 1, removed
    for node in (nginx, nginx_b):
        assert p1 not in ports(node, 40)


def test_removal_completes_when_the_deleting_node_is_gone(
        nginx, nginx_b, backend, redis):
    two_nodes(nginx, nginx_b, backend, redis)
    p2 = backend.ok4[1]
    removed = 'instance "p2" of "%s" cluster "default" removed' % SERVICE
    # a long deadline: the removal must come from drained, not timeout
    r = call(nginx, 'DELETE', INSTANCES + '/p2?timeout=600s', token=TOKEN)
    assert r.status == 202, r
    # node A hangs at once (well within the drain's settle, 1 s scaled
    # by SLOW, before any node may remove it): every process of it
    # stopped
    pids = [nginx.proc.pid] + sorted(nginx.all_children())
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: fleet_ids(redis) == ['c1', 'p1'], 10 * SLOW,
                 what='node B to remove p2')
        # B logs the removal once Redis has answered its write: after
        # the set changed there, not with it
        wait_for(lambda: removed in open(nginx_b.error_log).read(),
                 5 * SLOW, what='node B to log the removal')
        assert p2 not in ports(nginx_b, 40)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    # A, back, follows and removes nothing itself
    wait_for(lambda: api_ids(nginx) == ['c1', 'p1'], 5 * SLOW,
             what='node A to follow')
    assert removed not in open(nginx.error_log).read()


def test_fleet_set_survives_reload_and_restart_without_redis(
        nginx, nginx_b, backend, redis):
    two_nodes(nginx, nginx_b, backend, redis)
    p4 = backend.ok4[3]
    r = call(nginx, 'POST', INSTANCES, token=TOKEN,
             body={'id': 'p4', 'address': backend.addr(p4), 'weight': 1000,
                   'version': 'v1'})
    assert r.status == 201, r
    cache = nginx_b.state_path + '.fleet'
    wait_for(lambda: os.path.exists(cache)
             and SERVICE in json.load(open(cache)).get('sets', {}), 5,
             what='the set in B\'s fleet cache file')
    wait_for(lambda: p4 in ports(nginx_b, 10), 5, what='p4 on B')

    redis.kill()
    wait_for(lambda: (nginx_b.status().get('fleet') or {}).get('state')
             != 'up', 5 * SLOW, what='B to see Redis gone')
    check_error(call(nginx_b, 'DELETE', INSTANCES + '/p4', token=TOKEN),
                503, 'redis_unavailable')
    # a reload keeps the fleet's set, not the state file's
    nginx_b.reload()
    assert ports(nginx_b, 60).count(p4) > 50
    # a restart during the outage starts with the cached set
    errors = nginx_b.stop()
    assert not errors, errors
    nginx_b.start()
    assert ports(nginx_b, 60).count(p4) > 50

    redis.start()
    wait_fleet_up(nginx_b, 10 * SLOW)
    assert call(nginx_b, 'DELETE', INSTANCES + '/p4',
                token=TOKEN).status == 202
    wait_for(lambda: fleet_ids(redis) == ['c1', 'p1', 'p2'], 10 * SLOW,
             what='p4 removed')
    wait_for(lambda: p4 not in ports(nginx, 20), 5, what='p4 gone on A')
