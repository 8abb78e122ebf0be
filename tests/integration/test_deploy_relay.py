"""
Deploy writes sent to a fleet node that does not hold the deploy lease
(issue 11): that node relays them through Redis (<prefix>deploy_commands)
to the holder, which applies them as its own route would, and answers
with the holder's outcome once the fleet's records in Redis have it.  A
start and a rollback sent to the other node take effect on both nodes;
a refusal comes back as the holder's (409 not_running); with a lease
held by a node that never acts, the write is taken back after 5 s and
refused with 503 deploy_controller_unavailable, not applied.
"""

import json
import time

from conftest import SERVICE, SLOW, http_get, read_from, wait_for
from admin_helpers import TOKEN, call, check_error
from redis_helpers import nginx_b, redis  # noqa: F401 (fixtures)
from test_deploy_fleet import current, kill_node, lease, two_nodes

DEPLOYS = '/api/v1/services/%s/clusters/default/deploys' % SERVICE

RELAY_WAIT = 5.0    # s, the relay's bound for a holder to take it


def stored_policy(redis):
    v = redis.cmd('HGET', 'tce:canary', SERVICE + '/default')
    return json.loads(v) if v else {}


def stored_deploy(redis, deploy_id):
    recs = [x for x in json.loads(redis.cmd('GET', 'tce:deploys'))
            ['deploys'] if x['id'] == deploy_id]
    assert len(recs) == 1, recs
    return recs[0]


def routes_to(node):
    """The ports the node's answers came from, over 20 sticky users."""
    return {int(http_get(node.port, '/?user=u%d' % u).text)
            for u in range(20)}


def test_writes_to_the_other_node_are_applied_by_the_holder(
        nginx, nginx_b, backend, redis):
    a, b, holder = two_nodes(nginx, nginx_b, backend, redis)
    wait_for(lambda: lease(a)['drives'], 5 * SLOW,
             what='the holder to drive deploys')
    wait_for(lambda: lease(b)['holder'] == holder, 5 * SLOW,
             what='node B to see the holder')
    canary = backend.ok4[2]

    # a start sent to B: the holder starts it, B answers with the record
    r = call(b, 'POST', DEPLOYS, token=TOKEN,
             body={'steps': [50, 100], 'step_seconds': 600,
                   'min_requests': 10})
    assert r.status == 201, r
    deploy_id = r.json['id']
    assert r.json['state'] == 'running' and r.json['principal'] == \
        'deployer', r.json
    # the oracle: what Redis holds when B answered, and the holder's log
    assert stored_deploy(redis, deploy_id)['state'] == 'running'
    assert stored_policy(redis)['weight_bp'] == 5000
    assert 'started by "deployer" at 5000 bp' in read_from(a.error_log)
    assert 'started by' not in read_from(b.error_log)
    for n in (a, b):
        wait_for(lambda: canary in routes_to(n), 5 * SLOW,
                 what='the canary to take traffic on both nodes')

    # a rollback sent to B: on both nodes
    t0 = time.monotonic()
    r = call(b, 'POST', DEPLOYS + '/current/rollback', body={}, token=TOKEN)
    print('\nrelayed rollback answered in %.0f ms'
          % ((time.monotonic() - t0) * 1000))
    assert r.status == 200, r
    assert r.json['id'] == deploy_id and r.json['state'] == 'rolled_back', \
        r.json
    assert r.json['reason'] == 'rolled back by "deployer"', r.json
    assert stored_deploy(redis, deploy_id)['state'] == 'rolled_back'
    assert stored_policy(redis)['weight_bp'] == 0
    for n in (a, b):
        wait_for(lambda: canary not in routes_to(n), 5 * SLOW,
                 what='both nodes to route to prod only')
    assert current(a)['state'] == 'rolled_back'
    wait_for(lambda: current(b)['state'] == 'rolled_back', 5 * SLOW,
             what='node B to show the rollback')

    # a refusal is the holder's, relayed
    r = call(b, 'POST', DEPLOYS + '/current/rollback', body={}, token=TOKEN)
    check_error(r, 409, 'not_running')
    # a bad body is refused by B itself, before any relay
    r = call(b, 'POST', DEPLOYS, token=TOKEN, body={'steps': [0]})
    check_error(r, 400, 'out_of_range')
    assert redis.cmd('LLEN', 'tce:deploy_commands') == 0
    assert len([x for x in json.loads(redis.cmd('GET', 'tce:deploys'))
                ['deploys']]) == 1


def test_a_write_no_holder_takes_is_taken_back_not_applied(
        nginx, nginx_b, backend, redis):
    a, b, holder = two_nodes(nginx, nginx_b, backend, redis)
    wait_for(lambda: lease(a)['drives'], 5 * SLOW,
             what='the holder to drive deploys')
    r = call(a, 'POST', DEPLOYS, token=TOKEN,
             body={'steps': [50, 100], 'step_seconds': 600,
                   'min_requests': 10})
    assert r.status == 201, r
    deploy_id = r.json['id']
    wait_for(lambda: stored_policy(redis).get('weight_bp') == 5000, 5 * SLOW,
             what='the deploy in Redis')

    # the holder dies; a lease that names a node that never acts
    kill_node(a)
    redis.cmd('SET', 'tce:deploy_lease', 'ghost:1', 'PX',
              str(int(120000 * SLOW)))
    wait_for(lambda: lease(b)['holder'] == 'ghost:1', 5 * SLOW,
             what='node B to see the ghost holder')

    t0 = time.monotonic()
    r = call(b, 'POST', DEPLOYS + '/current/rollback', body={}, token=TOKEN)
    took = time.monotonic() - t0
    check_error(r, 503, 'deploy_controller_unavailable')
    assert 'ghost:1' in r.json['error']['text'], r.json
    assert 'not applied' in r.json['error']['text'], r.json
    assert took >= RELAY_WAIT - 0.1, took
    # taken back: nothing queued, nothing applied
    assert redis.cmd('LLEN', 'tce:deploy_commands') == 0
    assert stored_deploy(redis, deploy_id)['state'] == 'running'
    assert stored_policy(redis)['weight_bp'] == 5000
    assert current(b)['state'] == 'running'
