"""
A worker shutting down (a reload, nginx -s quit) while an admin write
of the fleet waits for Redis: the request is answered (Redis's answer,
or 503 once timeout= passed) before the worker exits.  The request
holds no timer of its own but the Redis command's, so a cancelable one
let the worker exit at once; its exit then closed the Redis connection
and answered the request from there, with the client connection left
open: "[alert] open socket #N left in connection N" and the worker
aborted (a chaos run caught it at a reload).

Redis is held with CLIENT PAUSE WRITE: the write's script waits (Redis
counts it in blocked_clients), reads go on.  The oracle: the client's
answer, and the error log (the fixture fails on any [alert]).
"""

import threading

from conftest import SERVICE, SLOW, wait_for
from admin_helpers import TOKEN, call
from redis_helpers import redis, start_node, wait_fleet_up

INST = '/api/v1/services/%s/clusters/default/instances/' % SERVICE

# redis is a fixture used by name
assert redis


def blocked(redis):
    info = redis.cmd('INFO', 'clients')
    return int(info.split('blocked_clients:')[1].split()[0])


def test_a_reload_waits_for_a_fleet_write_in_flight(nginx, backend, redis):
    redis.start()
    start_node(nginx, backend, 'tce_redis 127.0.0.1:%d timeout=%dms '
               'resync=1s;' % (redis.port, 1000 * SLOW))
    wait_fleet_up(nginx)
    assert blocked(redis) == 0

    redis.cmd('CLIENT', 'PAUSE', str(int(5000 * SLOW)), 'WRITE')
    answers = []
    t = threading.Thread(target=lambda: answers.append(
        call(nginx, 'PATCH', INST + 'p1', {'drain': True}, token=TOKEN)))
    t.start()
    try:
        wait_for(lambda: blocked(redis) >= 1, 5, what='the write to wait')
        nginx.reload()
    finally:
        t.join(20 * SLOW)
        redis.cmd('CLIENT', 'UNPAUSE')

    # answered before the old worker went: Redis did not confirm it
    assert len(answers) == 1, answers
    r = answers[0]
    assert r.status == 503, r
    assert r.json['error']['code'] == 'redis_unavailable', r.json
