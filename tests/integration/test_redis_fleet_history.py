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
from redis_helpers import redis, start_node, wait_fleet_up
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
