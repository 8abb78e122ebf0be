"""
The fleet store behind Redis Sentinel (tce_redis sentinel=... master=),
with real redis-server (a master and a replica) and three real
redis-sentinel processes started by the test (redis_helpers.RedisHA).

What a platform sees: the nodes find the master through Sentinel and
follow a failover by themselves; a write answered 200 is on a replica
(WAIT), so a failover never loses it; a write the replicas did not
acknowledge is answered 503 not_replicated.
"""

import json
import os
import signal
import threading
import time

import pytest

from conftest import SERVICE, SLOW, wait_for
from admin_helpers import TOKEN, call, check_error
from redis_helpers import (RedisClient, fleet_status, nginx_b, redis_ha,
                           start_node, wait_fleet_up)
from test_config_errors import assert_rejected

CANARY = '/api/v1/services/%s/clusters/default/canary' % SERVICE


def put(node, body):
    return call(node, 'PUT', CANARY, body, token=TOKEN)


def sentinel_master(node):
    return ((fleet_status(node) or {}).get('sentinel') or {}).get('master')


def start_pair(nginx, nginx_b, backend, ha, extra=''):
    for node in (nginx, nginx_b):
        node.canary_port = backend.ok4[2]
        start_node(node, backend, ha.line('timeout=%dms resync=1s %s'
                                          % (1000 * SLOW, extra)))
    for node in (nginx, nginx_b):
        wait_fleet_up(node, 15)
        assert sentinel_master(node) == '127.0.0.1:%d' % ha.master.port


class Writer(threading.Thread):
    """Steady rollbacks (each one epoch + 1) alternating two nodes;
    every answer kept as (time, node, status, body)."""

    def __init__(self, nodes):
        super().__init__(daemon=True)
        self.nodes = nodes
        self.answers = []
        self.stopping = threading.Event()

    def run(self):
        i = 0
        while not self.stopping.is_set():
            node = self.nodes[i % len(self.nodes)]
            r = put(node, {'rollback': True})
            self.answers.append((time.monotonic(), i % len(self.nodes),
                                 r.status, r.json))
            i += 1
            # pacing, not a wait: a failing write is answered at once
            self.stopping.wait(0.02)

    def count(self, status, since=0.0, node=None):
        return sum(1 for t, n, s, _ in self.answers
                   if s == status and t >= since
                   and (node is None or n == node))

    def stop(self):
        self.stopping.set()
        self.join(60 * SLOW)


def test_failover_under_writes_loses_no_accepted_write(nginx, nginx_b,
                                                       backend, redis_ha):
    ha = redis_ha
    ha.start()
    start_pair(nginx, nginx_b, backend, ha)

    w = Writer([nginx, nginx_b])
    w.start()
    try:
        wait_for(lambda: w.count(200) >= 10, 10, what='10 accepted writes')

        # the replica stops taking the stream: a 32 MB value fills the
        # socket buffers, so what the master sends after it stays in
        # the master's memory, lost when it dies
        ha.replica.proc.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        c = RedisClient(('127.0.0.1', ha.master.port))
        c.cmd('SET', 'junk', 'x' * (32 << 20))
        c.close()
        wait_for(lambda: len([a for a in w.answers if a[0] > stopped]) >= 4,
                 10, what='writes while the replica lags')

        ha.master.kill()
        killed = time.monotonic()
        ha.replica.proc.send_signal(signal.SIGCONT)

        new = '127.0.0.1:%d' % ha.replica.port
        wait_for(lambda: ha.sentinels[0].master() == ha.replica.port, 30,
                 what='Sentinel to promote the replica')
        # both nodes follow
        wait_for(lambda: sentinel_master(nginx) == new
                 and sentinel_master(nginx_b) == new, 10,
                 what='both nodes to follow the new master')
        # without a replica every write is not_replicated: the old
        # master comes back as the new one's replica (started with
        # --replicaof, as an operator restarts it: Sentinel converts a
        # returning master only after two INFO periods of 10 s, and not
        # at all in its 30 s TILT mode after a late timer; waiting for
        # it missed 60 s once in CI), and writes are accepted again on
        # each node
        ha.master.extra = ['--replicaof', '127.0.0.1', str(ha.replica.port)]
        ha.master.start()
        wait_for(lambda: 'connected_slaves:1'
                 in ha.replica.cmd('INFO', 'replication'), 20,
                 what='the old master to replicate the new one')
        wait_for(lambda: w.count(200, killed, 0) >= 3
                 and w.count(200, killed, 1) >= 3, 20,
                 what='writes accepted on both nodes after the failover')
    finally:
        w.stop()
        ha.replica.proc.send_signal(signal.SIGCONT)

    # what the replica lacked was refused as not replicated, not 200
    # (or as unavailable: the 32 MB value holds the master up a while)
    lagging = [b for t, _, s, b in w.answers
               if stopped < t < killed and s == 503
               and b['error']['code'] == 'not_replicated']
    assert lagging, [a[2:] for a in w.answers if a[0] > stopped][:10]
    # WAIT answered too few replicas, or (while the 32 MB value holds
    # the master up) did not answer within the command timeout: both
    # say why; the first kind at least once
    texts = [b['error']['text'] for b in lagging]
    assert all('replicas acknowledged it' in t or 'no answer to a command'
               in t for t in texts), texts
    assert any('replicas acknowledged it' in t for t in texts), texts

    # no write answered 200 is lost: every 200 has its own epoch, none
    # above what the new master holds
    epochs = [b['canary']['epoch'] for _, _, s, b in w.answers if s == 200]
    assert len(epochs) == len(set(epochs)), sorted(epochs)
    stored = json.loads(ha.replica.cmd('HGET', 'tce:canary',
                                       SERVICE + '/default'))
    assert max(epochs) <= stored['epoch'], (max(epochs), stored)
    for _, _, s, b in w.answers:
        if s != 200:
            check_error_body(b)

    # both nodes agree with the new master
    version = int(ha.replica.cmd('GET', 'tce:version'))
    for node in (nginx, nginx_b):
        fs = wait_for(lambda: fleet_status(node)['fleet_version'] == version
                      and fleet_status(node), 10, what='the fleet version')
        assert fs['sentinel']['switches'] >= 1, fs
        assert fs['sentinel']['state'] == 'up', fs
        assert fs['writes_not_replicated'] >= 0
        assert call(node, 'GET', CANARY).json['canary']['epoch'] \
            == stored['epoch']
    assert (fleet_status(nginx)['writes_not_replicated']
            + fleet_status(nginx_b)['writes_not_replicated']) >= len(lagging)


def check_error_body(b):
    assert b['error']['code'] in ('redis_unavailable', 'not_replicated'), b


def test_no_replica_answers_not_replicated(nginx, nginx_b, backend,
                                           redis_ha):
    """The replica gone for good: writes still reach the master but are
    answered 503 not_replicated, within timeout=; with replicas=0 the
    same write is answered 200."""
    ha = redis_ha
    ha.start()
    start_pair(nginx, nginx_b, backend, ha)
    ha.replica.stop()
    wait_for(lambda: 'connected_slaves:0'
             in ha.master.cmd('INFO', 'replication'), 10,
             what='the master to see its replica gone')

    t0 = time.monotonic()
    r = put(nginx, {'weight': 30})
    e = check_error(r, 503, 'not_replicated')
    assert '0 of 1 replicas' in e['text'], e
    assert time.monotonic() - t0 < 2 * SLOW
    # the master has it, and the fleet applies it
    assert json.loads(ha.master.cmd('HGET', 'tce:canary',
                                    SERVICE + '/default'))['weight_bp'] \
        == 3000
    wait_for(lambda: call(nginx_b, 'GET', CANARY).json['canary']
             ['weight_bp'] == 3000, 5, what='the write on node B')
    assert fleet_status(nginx)['writes_not_replicated'] == 1

    errors = nginx_b.stop()
    assert not errors, errors
    start_node(nginx_b, backend, ha.line('timeout=%dms replicas=0'
                                         % (1000 * SLOW)))
    wait_fleet_up(nginx_b, 15)
    r = put(nginx_b, {'weight': 40})
    assert r.status == 200, r


@pytest.mark.parametrize('line,words', [
    ('tce_redis sentinel=127.0.0.1:1;', ['sentinel=', 'master=']),
    ('tce_redis 127.0.0.1:6379 master=m;', ['sentinel=', 'master=']),
    ('tce_redis sentinel=127.0.0.1:1,,127.0.0.1:2 master=m;',
     ['sentinel=127.0.0.1:1,,127.0.0.1:2']),
    ('tce_redis sentinel=no-such-host.invalid:1 master=m;',
     ['no-such-host.invalid']),
    ('tce_redis sentinel=127.0.0.1:1 master=m replicas=x;',
     ['replicas=x']),
], ids=['no-master', 'master-without-sentinel', 'empty-address',
        'unknown-host', 'bad-replicas'])
def test_bad_sentinel_config(nginx, line, words):
    nginx.configure(http_extra='    %s\n' % line)
    assert_rejected(nginx, words)


def test_unknown_master_name_is_named(nginx, backend, redis_ha):
    ha = redis_ha
    ha.start()
    nginx.canary_port = backend.ok4[2]
    start_node(nginx, backend, 'tce_redis sentinel=127.0.0.1:%d '
               'master=nosuch timeout=%dms;'
               % (ha.sentinels[0].port, 1000 * SLOW))
    fs = wait_for(lambda: 'does not know master'
                  in fleet_status(nginx)['last_error']
                  and fleet_status(nginx), 10, what='the Sentinel error')
    assert '"nosuch"' in fs['last_error'], fs
    assert fs['state'] != 'up' and fs['sentinel']['master'] is None, fs
    e = check_error(put(nginx, {'weight': 10}), 503, 'redis_unavailable')
    assert 'not known yet' in e['text'], e
