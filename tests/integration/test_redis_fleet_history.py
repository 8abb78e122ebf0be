"""
The fleet store after a failover whose new master never had a write of
this node: Redis replicates asynchronously, so a write the old master
took (answered 503 not_replicated) can be missing on the replica that
Sentinel promotes; by the time the node reconnects, the new master may
have taken as many other writes, so the fleet version and the service's
revision do not show that the two histories parted.  The first read
after a reconnection must then be applied as it is.

Reproduced on one Redis: the write is undone by hand (its override and
revision put back as they were, the fleet version left where the write
put it, as other writes would have), and the node's connections are
closed, as a failover closes them.  The oracle is the traffic (which
backend port answers) and Redis's own content.
"""

import json

from conftest import SERVICE, SLOW, wait_for
from admin_helpers import TOKEN, call
from redis_helpers import Redis, redis, start_node, wait_fleet_up
from test_redis_fleet_inst import ports

INST = '/api/v1/services/%s/clusters/default/instances/' % SERVICE

# redis is a fixture used by name
assert redis


def test_first_read_after_a_reconnection_is_applied_whole(nginx, backend,
                                                          redis):
    redis.start()
    start_node(nginx, backend, 'tce_redis 127.0.0.1:%d timeout=%dms '
               'resync=1s;' % (redis.port, 2000 * SLOW))
    wait_fleet_up(nginx)
    p1 = backend.ok4[0]
    assert p1 in ports(nginx, 30)
    rev_before = redis.cmd('HGET', 'tce:rev', SERVICE)

    r = call(nginx, 'PATCH', INST + 'p1', {'drain': True}, token=TOKEN)
    assert r.status == 200, r
    wait_for(lambda: p1 not in ports(nginx, 30), 5 * SLOW,
             what='p1 drained')
    assert json.loads(redis.cmd('HGET', 'tce:override',
                                SERVICE + '/p1'))['drain'] is True
    version = redis.cmd('GET', 'tce:version')

    # the new master: without the write, at the same fleet version
    redis.cmd('HDEL', 'tce:override', SERVICE + '/p1')
    if rev_before is None:
        redis.cmd('HDEL', 'tce:rev', SERVICE)
    else:
        redis.cmd('HSET', 'tce:rev', SERVICE, rev_before)
    assert redis.cmd('GET', 'tce:version') == version
    for kind in ('pubsub', 'normal'):
        redis.cmd('CLIENT', 'KILL', 'TYPE', kind, 'SKIPME', 'yes')

    # Redis holds no drain of p1: the node routes to it again
    wait_for(lambda: p1 in ports(nginx, 30), 10 * SLOW,
             what='p1 routed again after the reconnection')
    wait_fleet_up(nginx)
    assert redis.cmd('HGET', 'tce:override', SERVICE + '/p1') is None


CL = '/api/v1/services/%s/clusters/default' % SERVICE


def fleet_ids(r):
    """The ids of the service's set in Redis r, None when it has none."""
    v = r.cmd('HGET', 'tce:inst', SERVICE)
    if v is None:
        return None
    doc = json.loads(v)
    return sorted(i['id'] for c in doc['services'][SERVICE]['clusters']
                  .values() for i in c['instances'])


def api_ids(node):
    r = call(node, 'GET', CL + '/instances')
    assert r.status == 200, r
    return sorted(i['id'] for i in r.json['instances'])


def sub_ids(r):
    """The ids of Redis r's pub/sub clients (the syncer's)."""
    return sorted(line.split()[0] for line in r.cmd('CLIENT', 'LIST')
                  .splitlines() if ' flags=P ' in line)


def add_p4(nginx, backend):
    """p4 (ok4[3]) added through the API: the first write of the set
    copies the node's (its state file's) into Redis."""
    p4 = backend.ok4[3]
    r = call(nginx, 'POST', CL + '/instances', token=TOKEN,
             body={'id': 'p4', 'address': backend.addr(p4), 'weight': 5,
                   'version': 'v1'})
    assert r.status == 201, r
    wait_for(lambda: p4 in ports(nginx, 30), 5 * SLOW, what='p4 routed')
    return p4


def test_a_set_redis_lost_goes_back_to_the_state_file(nginx, backend, redis):
    """The new master never had the service's set (the write that made
    it was taken by the old master alone): the node routes what a node
    started now would, its state file's set, not the set it wrote."""
    redis.start()
    start_node(nginx, backend, 'tce_redis 127.0.0.1:%d timeout=%dms '
               'resync=1s;' % (redis.port, 2000 * SLOW))
    wait_fleet_up(nginx)
    assert fleet_ids(redis) is None
    p4 = add_p4(nginx, backend)
    assert fleet_ids(redis) == ['c1', 'p1', 'p2', 'p4']

    # the new master: no set, no revision, the fleet version the same
    redis.cmd('HDEL', 'tce:inst', SERVICE)
    redis.cmd('HDEL', 'tce:rev', SERVICE)
    for kind in ('pubsub', 'normal'):
        redis.cmd('CLIENT', 'KILL', 'TYPE', kind, 'SKIPME', 'yes')

    wait_for(lambda: p4 not in ports(nginx, 30), 10 * SLOW,
             what='p4 no longer routed')
    assert api_ids(nginx) == ['c1', 'p1', 'p2']
    assert fleet_ids(redis) is None
    p1, p2 = backend.ok4[0], backend.ok4[1]
    assert set(ports(nginx, 60)) == {p1, p2}

    # the next write starts from the state file's set again
    add_p4(nginx, backend)
    assert fleet_ids(redis) == ['c1', 'p1', 'p2', 'p4']


def test_a_dataset_replaced_under_open_connections_is_read_whole(
        nginx, backend, redis, tmp_path):
    """The node's Redis made a replica of another master (as Sentinel
    does to a former master, or a master restarted with a replicaof of
    its own): its data is replaced by the other's, the node's
    connections stay open, and the other history may have reached the
    same fleet version (here: the set without p4, at the version the
    write of p4 made).  The node reads it whole within resync=."""
    redis.start()
    other = Redis(str(tmp_path), 'other')
    other.start()
    try:
        other.cmd('CONFIG', 'SET', 'repl-diskless-sync-delay', '0')
        start_node(nginx, backend, 'tce_redis 127.0.0.1:%d timeout=%dms '
                   'resync=1s;' % (redis.port, 2000 * SLOW))
        wait_fleet_up(nginx)
        p4 = add_p4(nginx, backend)
        version = redis.cmd('GET', 'tce:version')
        rev = redis.cmd('HGET', 'tce:rev', SERVICE)

        # the other history: the set without p4, as many writes
        doc = json.loads(redis.cmd('HGET', 'tce:inst', SERVICE))
        for c in doc['services'][SERVICE]['clusters'].values():
            c['instances'] = [i for i in c['instances'] if i['id'] != 'p4']
        other.cmd('HSET', 'tce:inst', SERVICE, json.dumps(doc))
        other.cmd('HSET', 'tce:rev', SERVICE, rev)
        other.cmd('SET', 'tce:version', version)
        subscribers = sub_ids(redis)
        assert subscribers

        redis.cmd('REPLICAOF', '127.0.0.1', str(other.port))
        wait_for(lambda: fleet_ids(redis) == ['c1', 'p1', 'p2'], 10 * SLOW,
                 what='the replica to hold the other history')
        assert redis.cmd('GET', 'tce:version') == version

        wait_for(lambda: p4 not in ports(nginx, 30), 10 * SLOW,
                 what='p4 no longer routed')
        assert api_ids(nginx) == ['c1', 'p1', 'p2']
        # the same subscription: no reconnection told the node
        assert sub_ids(redis) == subscribers
    finally:
        redis.cmd('REPLICAOF', 'NO', 'ONE')
        other.stop()
