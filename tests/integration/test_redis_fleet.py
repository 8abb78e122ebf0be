"""
The fleet store (tce_redis): canary policies shared by nginx nodes
through a real redis-server started by the test (redis_helpers.py).

What a platform sees: a write on any node's admin API is live on every
node; Redis down refuses writes with 503 and traffic goes on with the
last applied policy, also across a restart of nginx (the fleet cache);
a wrong password is named in the log and the status; a server sending
malformed RESP never crashes nor stalls a worker.
"""

import json
import os
import re
import threading
import time

import pytest

from conftest import (SERVICE, SLOW, VALGRIND, read_from, state_doc,
                      wait_for)
from admin_helpers import TOKEN, call, check_error
from redis_helpers import (FakeResp, fleet_services, fleet_status, measure,
                           nginx_b, redis, start_node, wait_fleet_up)
from test_metrics import promtool_check

CANARY = '/api/v1/services/%s/clusters/default/canary' % SERVICE


def env_of(node, user):
    """'canary' or 'prod' for a sticky user, from the port that answered
    (canary: ok4[2]); None when the request failed."""
    r = node.get('/?user=%s' % user)
    if r.status != 200:
        return None
    return 'canary' if int(r.text) == node.canary_port else 'prod'


def all_env(node, env, users=range(8)):
    return all(env_of(node, 'u%d' % u) == env for u in users)


def put(node, body, headers=None):
    return call(node, 'PUT', CANARY, body, token=TOKEN, headers=headers)


def two_nodes(nginx, nginx_b, backend, redis, extra='', audit=False):
    """Node A over TCP, node B over the unix socket; audit: each node
    with a tce_admin_audit log (audit.log in its directory), so that
    the drain timer's lines reach the stream tce:audit too."""
    redis.start()
    for node in (nginx, nginx_b):
        node.canary_port = backend.ok4[2]
    # a removal's settle (1 s by default) scaled as the deadlines are
    extra = ' drain_settle=%dms%s' % (1000 * SLOW, extra)
    start_node(nginx, backend, 'tce_redis 127.0.0.1:%d timeout=%dms '
               'resync=1s%s;' % (redis.port, 2000 * SLOW, extra),
               audit=audit and os.path.join(nginx.dir, 'audit.log'))
    start_node(nginx_b, backend, 'tce_redis unix:%s timeout=%dms '
               'resync=1s%s;' % (redis.unix, 2000 * SLOW, extra),
               audit=audit and os.path.join(nginx_b.dir, 'audit.log'))
    wait_fleet_up(nginx)
    wait_fleet_up(nginx_b)


def test_write_on_one_node_live_on_the_other(nginx, nginx_b, backend,
                                             redis):
    two_nodes(nginx, nginx_b, backend, redis)
    assert all_env(nginx, 'prod') and all_env(nginx_b, 'prod')
    with open(nginx.state_path, 'rb') as f:
        state_before = f.read()

    # A -> B: every user to the canary
    r = put(nginx, {'weight': 100})
    assert r.status == 200, r
    assert r.json['source'] == 'fleet'
    assert r.json['canary']['weight_bp'] == 10000
    t_ab = measure(lambda: env_of(nginx_b, 'probe') == 'canary', 5)
    assert all_env(nginx, 'canary') and all_env(nginx_b, 'canary')

    # B -> A: back to nginx.conf's default (weight 0)
    r = call(nginx_b, 'DELETE', CANARY, token=TOKEN)
    assert r.status == 200, r
    assert r.json['source'] == 'nginx.conf'
    assert r.json['canary']['weight_bp'] == 0, r.json
    t_ba = measure(lambda: env_of(nginx, 'probe') == 'prod', 5)

    # a sticky split: both nodes send each user to the same env
    r = put(nginx_b, {'weight': 50})
    assert r.status == 200, r
    wait_for(lambda: call(nginx, 'GET', CANARY).json['canary'] is not None
             and call(nginx, 'GET', CANARY).json['canary']['weight_bp']
             == 5000, 5, what='the 50% split on node A')
    envs_a = [env_of(nginx, 'user%d' % u) for u in range(40)]
    envs_b = [env_of(nginx_b, 'user%d' % u) for u in range(40)]
    assert envs_a == envs_b
    assert 'canary' in envs_a and 'prod' in envs_a

    # Redis holds it, the state file does not
    stored = json.loads(redis.cmd('HGET', 'tce:canary',
                                  SERVICE + '/default'))
    assert stored == {'epoch': 0, 'fallback': True, 'weight_bp': 5000}
    with open(nginx.state_path, 'rb') as f:
        assert f.read() == state_before

    # If-Match is the fleet revision: a stale one is refused on any node
    ga = call(nginx, 'GET', CANARY)
    gb = wait_for(lambda: (lambda g: g.headers['ETag'] == ga.headers['ETag']
                           and g)(call(nginx_b, 'GET', CANARY)), 5,
                  what='the same ETag on both nodes')
    etag = ga.headers['ETag']
    assert etag == '"%s"' % redis.cmd('HGET', 'tce:rev', SERVICE)
    r = put(nginx_b, {'weight': 1}, headers={'If-Match': '"1"'})
    check_error(r, 412, 'precondition_failed')
    assert r.headers['ETag'] == etag
    assert call(nginx, 'GET', CANARY).json['canary']['weight_bp'] == 5000
    r = put(nginx_b, {'rollback': True}, headers={'If-Match': etag})
    assert r.status == 200, r
    assert r.json['canary'] == {'weight_bp': 0, 'weight': 0.0, 'epoch': 1,
                                'fallback': True}
    wait_for(lambda: all_env(nginx, 'prod', range(40)), 5,
             what='the rollback on node A')

    # status and metrics of both nodes agree on the fleet version
    version = int(redis.cmd('GET', 'tce:version'))
    for node in (nginx, nginx_b):
        fs = wait_for(lambda: fleet_status(node)['fleet_version'] == version
                      and fleet_status(node), 5, what='fleet version')
        assert fs['state'] == 'up' and fs['last_sync']
        api = call(node, 'GET', '/api/v1/status').json['fleet']
        assert api['fleet_version'] == version
        m = node.get('/metrics').text
        assert re.search(r'^tce_fleet_version %d$' % version, m, re.M), m
        assert re.search(r'^tce_fleet_redis_up 1$', m, re.M), m
    # 20 more writes alternating nodes: the answer of one to the other
    # routing with it (polling included)
    times = [t_ab, t_ba]
    for i in range(20):
        src, dst = (nginx, nginx_b) if i % 2 else (nginx_b, nginx)
        weight = 100 if i % 2 == 0 else 0
        assert put(src, {'weight': weight}).status == 200
        want = 'canary' if weight else 'prod'
        times.append(measure(lambda: env_of(dst, 'probe') == want, 5))
    times.sort()
    print('\nfleet propagation over %d writes: p50 %.1f ms, max %.1f ms '
          '(incl. polling)' % (len(times), times[len(times) // 2] * 1000,
                               times[-1] * 1000))
    assert times[len(times) // 2] < 0.1 * SLOW


def test_redis_down_keeps_traffic_and_converges(nginx, nginx_b, backend,
                                                redis):
    two_nodes(nginx, nginx_b, backend, redis)
    assert put(nginx, {'weight': 100}).status == 200
    wait_for(lambda: all_env(nginx_b, 'canary'), 5, what='canary on B')
    cache = nginx.state_path + '.fleet'
    wait_for(lambda: os.path.exists(cache)
             and json.load(open(cache))['policies'], 5,
             what='the fleet cache file')

    redis.kill()
    wait_for(lambda: fleet_status(nginx)['state'] != 'up', 5,
             what='node A to see Redis gone')

    r = put(nginx, {'weight': 0})
    e = check_error(r, 503, 'redis_unavailable')
    assert 'Redis' in e['text']
    check_error(put(nginx_b, {'weight': 0}), 503, 'redis_unavailable')

    # traffic goes on with the last applied policy: every request served
    for node in (nginx, nginx_b):
        assert all_env(node, 'canary', range(20))

    # a restart of node A while Redis is down starts from the cache
    errors = nginx.stop()
    assert not errors, errors
    nginx.start()
    assert all_env(nginx, 'canary', range(20))
    assert fleet_status(nginx)['fleet_version'] >= 1

    # Redis back (its append-only file kept the data): a write on B
    # reaches A, which reconnects by itself and resyncs
    redis.start()
    wait_fleet_up(nginx_b, 10)
    r = wait_for(lambda: (lambda r: r.status == 200 and r)(
        put(nginx_b, {'weight': 0})), 10, what='a write on B')
    wait_fleet_up(nginx, 10)
    wait_for(lambda: all_env(nginx, 'prod'), 10, what='A to converge')
    version = int(redis.cmd('GET', 'tce:version'))
    wait_for(lambda: fleet_status(nginx)['fleet_version'] == version
             and fleet_status(nginx_b)['fleet_version'] == version, 5,
             what='the same fleet version on both nodes')


def test_wrong_password_is_named(nginx, nginx_b, backend, redis):
    redis.start(password='right-secret-1')
    pw = os.path.join(nginx.dir, 'redis.pass')
    with open(pw, 'w') as f:
        f.write('wrong-secret\n')
    nginx.canary_port = backend.ok4[2]
    start_node(nginx, backend, 'tce_redis 127.0.0.1:%d password_file=%s '
               'timeout=%dms;' % (redis.port, pw, 1000 * SLOW))

    fs = wait_for(lambda: 'AUTH refused' in fleet_status(nginx)['last_error']
                  and fleet_status(nginx), 5, what='the AUTH error')
    assert 'WRONGPASS' in fs['last_error'], fs
    assert fs['state'] != 'up'
    assert re.search(r'\[error\].*tce redis: .*AUTH refused: WRONGPASS',
                     read_from(nginx.error_log))
    e = check_error(put(nginx, {'weight': 10}), 503, 'redis_unavailable')
    assert 'AUTH refused' in e['text'], e
    assert all_env(nginx, 'prod')

    # an ACL user with its password: works
    redis.cmd('ACL', 'SETUSER', 'edge', 'on', '>edge-secret-2', '~tce:*',
              '&tce:*', '+@all')
    pw_b = os.path.join(nginx.dir, 'edge.pass')
    with open(pw_b, 'w') as f:
        f.write('  edge-secret-2  \n')
    nginx_b.canary_port = backend.ok4[2]
    start_node(nginx_b, backend, 'tce_redis 127.0.0.1:%d username=edge '
               'password_file=%s db=0 timeout=%dms;'
               % (redis.port, pw_b, 1000 * SLOW))
    wait_fleet_up(nginx_b)
    assert put(nginx_b, {'weight': 100}).status == 200
    wait_for(lambda: all_env(nginx_b, 'canary'), 5, what='canary on B')


def test_racing_writers_lose_nothing(nginx, nginx_b, backend, redis):
    """Rollbacks (epoch + 1 each) sent at once to both nodes, without
    If-Match: the merge happens in Redis, so every one counts."""
    two_nodes(nginx, nginx_b, backend, redis)
    n = 10
    statuses = []

    def writer(node):
        for _ in range(n):
            statuses.append(put(node, {'rollback': True}).status)

    threads = [threading.Thread(target=writer, args=(node,))
               for node in (nginx, nginx_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * (2 * n)
    stored = json.loads(redis.cmd('HGET', 'tce:canary',
                                  SERVICE + '/default'))
    assert stored['epoch'] == 2 * n
    assert redis.cmd('HGET', 'tce:rev', SERVICE) == str(2 * n)
    for node in (nginx, nginx_b):
        wait_for(lambda: call(node, 'GET', CANARY).json['canary']['epoch']
                 == 2 * n, 5, what='epoch %d on every node' % (2 * n))


def test_reload_keeps_the_fleet_policy(nginx, backend, redis):
    """With tce_redis the state file's canary object is not applied: a
    reload never flips routing away from the fleet's policy."""
    redis.start()
    nginx.canary_port = backend.ok4[2]
    start_node(nginx, backend, 'tce_redis 127.0.0.1:%d timeout=%dms;'
               % (redis.port, 1000 * SLOW))
    wait_fleet_up(nginx)
    assert put(nginx, {'weight': 100}).status == 200
    assert all_env(nginx, 'canary')

    # the state file says prod only for the cluster
    doc = state_doc(fleet_services(backend))
    doc['services'][SERVICE]['clusters']['default']['canary'] = {
        'weight_bp': 0}
    nginx.write_state(raw=json.dumps(doc))

    stop = threading.Event()
    seen = []

    def traffic():
        while not stop.is_set():
            seen.append(env_of(nginx, 'reload'))

    t = threading.Thread(target=traffic)
    t.start()
    try:
        nginx.reload()
        wait_fleet_up(nginx)
    finally:
        stop.set()
        t.join()
    assert seen and set(seen) == {'canary'}, set(seen)
    assert call(nginx, 'GET', CANARY).json['source'] == 'fleet'

    # the fleet metrics as promtool reads them
    text = nginx.get('/metrics').text
    rc, out = promtool_check(text)
    assert rc == 0, out
    assert re.search(r'^tce_fleet_writes_total 1$', text, re.M), text


# answers of a bad Redis: cmd is the command's arguments (bytes)

def _types(cmd, st):
    name = cmd[0].upper()
    if name == b'PING':
        return b'+PONG\r\n'
    if name == b'SUBSCRIBE':
        # a confirmation, then a message of the wrong shape
        return (b'*3\r\n$9\r\nsubscribe\r\n$10\r\ntce:events\r\n:1\r\n'
                b'*2\r\n$7\r\nmessage\r\n:3\r\n')
    if name == b'EVAL':
        return b'*3\r\n:1\r\n*1\r\n:2\r\n$1\r\nx\r\n'
    return b':7\r\n'


def _bigarray(cmd, st):
    if cmd[0].upper() == b'PING':
        return b'+PONG\r\n'
    return b'*2147483647\r\n:1\r\n'


def _extra(cmd, st):
    # one answer too many: stock hiredis 0.14 asserts on it
    return b'+PONG\r\n+PONG\r\n'


def _huge(cmd, st):
    return b'$99999999999\r\nabc'


def _midreply(cmd, st):
    if cmd[0].upper() == b'PING':
        return b'+PONG\r\n'
    return b'$10\r\nabc'


def _closes(cmd, st):
    return None


def _silent(cmd, st):
    return b''


@pytest.mark.parametrize('answer,reason', [
    (_types, 'unexpected message|snapshot refused'),
    (_bigarray, 'protocol error'),
    (_extra, 'a reply to no command'),
    (_huge, 'no answer'),
    (_midreply, 'no answer|closed'),
    (_closes, 'closed'),
    (_silent, 'no answer'),
], ids=['wrong-types', 'huge-array', 'extra-reply', 'huge-bulk',
        'closed-mid-reply', 'closed', 'never-answers'])
def test_malformed_resp(nginx, backend, answer, reason):
    fake = FakeResp(answer)
    try:
        nginx.canary_port = backend.ok4[2]
        start_node(nginx, backend, 'tce_redis 127.0.0.1:%d timeout=300ms '
                   'resync=300ms;' % fake.port)
        workers = nginx.workers()

        fs = wait_for(lambda: re.search(reason,
                                        fleet_status(nginx)['last_error'])
                      and fleet_status(nginx), 5,
                      what='the error of a bad server (%s)' % reason)
        assert fs['state'] != 'up' or 'refused' in fs['last_error'], fs

        # a write is answered at once or after timeout=, never hangs
        t0 = time.monotonic()
        r = put(nginx, {'weight': 10})
        assert r.status in (502, 503), r
        check_error(r, r.status)
        assert time.monotonic() - t0 < 2 * SLOW

        # traffic unaffected, nothing applied, no worker lost
        assert all_env(nginx, 'prod')
        assert fleet_status(nginx)['fleet_version'] == 0
        assert nginx.workers() == workers
        # it keeps retrying (with backoff), and stays up
        n = fake.accepted
        wait_for(lambda: fake.accepted > n, 10, what='a reconnection')
        assert nginx.workers() == workers
    finally:
        fake.stop()


def _subscriber_goes_silent(cmd, st):
    # a good server, but the subscribed connection stops answering
    name = cmd[0].upper()
    if name == b'SUBSCRIBE':
        st['sub'] = True
        return b'*3\r\n$9\r\nsubscribe\r\n$10\r\ntce:events\r\n:1\r\n'
    if name == b'PING':
        return b'' if st.get('sub') else b'+PONG\r\n'
    if name == b'EVAL':
        return b'*5\r\n$1\r\n0\r\n*0\r\n*0\r\n*0\r\n*0\r\n'
    return b'$-1\r\n'


def test_silent_subscriber_is_replaced(nginx, backend):
    """A half-open subscriber (nothing comes any more) would miss every
    message: it is PINGed every resync= and made again when silent."""
    fake = FakeResp(_subscriber_goes_silent)
    try:
        nginx.canary_port = backend.ok4[2]
        start_node(nginx, backend, 'tce_redis 127.0.0.1:%d timeout=%dms '
                   'resync=300ms;' % (fake.port, 300 * SLOW))
        wait_fleet_up(nginx)
        n = fake.accepted
        fs = wait_for(lambda: 'no answer to a command'
                      in fleet_status(nginx)['last_error']
                      and fleet_status(nginx), 5,
                      what='the silent subscriber to be noticed')
        wait_for(lambda: fake.accepted > n, 5,
                 what='a new subscriber connection')
        assert fs['syncs'] >= 1
        assert all_env(nginx, 'prod')
    finally:
        fake.stop()
