"""Weighted schedules built once per change and shared in the zone
(ngx_tce_module/ngx_tce_sched_zone.c): a change applied at run time
through the Consul watcher reaches every worker with its exact weights;
old schedules are freed (a flapping service does not fill the zone);
a zone too small for a schedule falls back to one per worker."""

import os
import random
import sys
import threading
from collections import Counter

import pytest

import conftest
from conftest import SERVICE, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'doubles'))

from consul_double import ConsulDouble  # noqa: E402


UPSTREAM = '    upstream api {\n        tce_service %s;\n    }\n' % SERVICE
LOCATION = '            add_header X-Instance $tce_instance always;\n'
FULL = 'is full: the schedules of service'


@pytest.fixture
def consul():
    d = ConsulDouble(jitter=False).start()
    yield d
    d.stop()


def start(nginx, consul, zone='tce_zone tce 1m;', workers=1):
    nginx.configure(upstreams=UPSTREAM, state=False, workers=workers,
                    zone=zone, location=LOCATION,
                    http_extra='    tce_consul %s wait=2s;\n' % consul.url)
    nginx.start()


def start_debug(nginx, consul, workers, zone):
    """start() with a debug log (nginx of the distribution has
    --with-debug), once the service routes; returns the log's path."""
    debug_log = os.path.join(nginx.dir, 'debug.log')
    nginx.configure(upstreams=UPSTREAM, state=False, workers=workers,
                    location=LOCATION, zone='tce_zone tce %s;' % zone,
                    main_extra='error_log %s debug;\n' % debug_log,
                    http_extra='    tce_consul %s wait=2s;\n' % consul.url)
    nginx.start()
    wait_for(lambda: nginx.get('/').status == 200, 10 * conftest.SLOW,
             what='service routed')
    return debug_log


def picks(nginx, n):
    """Instance ids of n consecutive requests (one worker)."""
    out = []
    for _ in range(n):
        r = nginx.get('/')
        if r.status != 200:
            return None
        out.append(r.headers.get('X-Instance'))
    return out


def window_is(nginx, expected):
    """One cycle's worth of consecutive picks has exactly the counts of
    expected (a window as long as the cycle holds each instance exactly
    its weight, wherever it starts)."""
    got = picks(nginx, sum(expected.values()))
    return got is not None and Counter(got) == Counter(expected)


def test_change_applies_exact_weights(backend, nginx, consul):
    a, b, c = backend.ok4[0], backend.ok4[1], backend.ok4[2]
    consul.register(SERVICE, 'a', '127.0.0.1', a, weight=5)
    consul.register(SERVICE, 'b', '127.0.0.1', b, weight=3)
    consul.register(SERVICE, 'c', '127.0.0.1', c, weight=2)
    start(nginx, consul)
    node = 'node1/'
    wait_for(lambda: window_is(nginx, {node + 'a': 5, node + 'b': 3,
                                       node + 'c': 2}),
             10 * conftest.SLOW, what='weights 5:3:2 routed exactly')

    # a change at run time: b's weight moves, c leaves
    consul.register(SERVICE, 'b', '127.0.0.1', b, weight=7)
    consul.deregister('c')
    wait_for(lambda: window_is(nginx, {node + 'a': 5, node + 'b': 7}),
             10 * conftest.SLOW, what='weights 5:7 routed exactly')

    # and it stays so: the published schedule, not a stopgap
    for _ in range(3):
        assert window_is(nginx, {node + 'a': 5, node + 'b': 7})


def test_schedule_published_under_load_reaches_new_instances(
        backend, nginx, consul):
    # Requests that come while the new set's schedule is being built are
    # routed on the old one less the instances that left; when it is
    # published, the view takes it in place (nothing else changed): from
    # then on the instances that came get their weights' share.
    rnd = random.Random(11)
    weights = {}
    for i in range(400):
        sid = ('old%03d' if i < 200 else 'new%03d') % (i % 200)
        weights[sid] = rnd.randint(1, 1000)
        consul.register(SERVICE, sid, '127.0.0.1', backend.ok4[i % 4],
                        weight=weights[sid],
                        status='passing' if i < 200 else 'critical')
    debug_log = start_debug(nginx, consul, workers=1, zone='8m')
    in_place = 'taken in place'
    before = conftest.read_from(debug_log).count(in_place)

    # a steady stream of requests while the 200 come back in one change
    stop = threading.Event()
    errors = []

    def stream():
        while not stop.is_set():
            if nginx.get('/').status != 200:
                errors.append(1)

    t = threading.Thread(target=stream)
    t.start()
    try:
        assert consul.set_checks([('service:new%03d' % i, 'passing')
                                  for i in range(200)])
        wait_for(lambda: len(nginx.status()['services'][SERVICE]
                             ['instances']) == 400
                 and conftest.read_from(debug_log).count(in_place)
                 > before, 10 * conftest.SLOW,
                 what='the new schedule taken in place under load')
    finally:
        stop.set()
        t.join()
    assert not errors

    # a window of consecutive picks: each instance within two picks of
    # its share of any window, and the newcomers' errors do not all lean
    # one way: together they come near theirs (none if left out)
    n = 1000
    got = Counter(picks(nginx, n))
    share = n * sum(w for k, w in weights.items() if k.startswith('new')) \
        / sum(weights.values())
    came = sum(c for k, c in got.items() if k.split('/')[-1]
               .startswith('new'))
    assert abs(came - share) <= 0.2 * share, (came, share)


def test_build_runs_on_the_thread_pool(backend, nginx, consul):
    # a cycle of about 100,000 entries: the watcher's worker builds it
    # on nginx's thread pool, not on its event loop (the debug log says
    # where each build ran; nginx of the distribution has --with-debug)
    rnd = random.Random(3)
    for i in range(200):
        consul.register(SERVICE, 'i%03d' % i, '127.0.0.1',
                        backend.ok4[i % 4], weight=rnd.randint(1, 1000))
    debug_log = start_debug(nginx, consul, workers=2, zone='4m')

    line = 'schedules of "%s" built on a thread' % SERVICE

    def built():
        return conftest.read_from(debug_log).count(line)

    wait_for(lambda: built() >= 1, 10 * conftest.SLOW,
             what='first build on a thread')
    base = built()
    for k in range(3):
        # a new instance: a cycle the schedule has not (an instance
        # that leaves is only masked, test_flapping_builds_nothing)
        consul.register(SERVICE, 'n%03d' % k, '127.0.0.1',
                        backend.ok4[k % 4], weight=rnd.randint(1, 1000))
        wait_for(lambda: built() >= base + k + 1, 10 * conftest.SLOW,
                 what='build %d on a thread' % k)
    assert nginx.get('/').status == 200
    text = conftest.read_from(debug_log)
    assert 'built on the event loop' not in text


def test_rebuilds_free_old_schedules(backend, nginx, consul):
    # 150 instances of weights 1..1000: a cycle of about 75,000 entries
    # (300 KB); the 2 MB zone holds a handful of them: schedules that
    # were never freed would fill it within a few changes.  Every other
    # change gives an instance a new weight (a new cycle each time);
    # the others flap a check (the cycle is kept, the instance masked)
    rnd = random.Random(5)
    n = 150
    for i in range(n):
        consul.register(SERVICE, 'i%03d' % i, '127.0.0.1',
                        backend.ok4[i % 4], weight=rnd.randint(1, 1000))
    start(nginx, consul, zone='tce_zone tce 2m;', workers=2)
    wait_for(lambda: nginx.get('/').status == 200, 10 * conftest.SLOW,
             what='service routed')

    down = None
    for k in range(30):
        i = rnd.randrange(n)
        if k % 2:
            consul.register(SERVICE, 'i%03d' % i, '127.0.0.1',
                            backend.ok4[i % 4], weight=rnd.randint(1, 1000))
            i = down
        else:
            consul.set_check('service:i%03d' % i, 'critical')
        if down is not None and down != i:
            consul.set_check('service:i%03d' % down, 'passing')
        down = i
        # requests on both workers, so that their views move on
        for _ in range(4):
            assert nginx.get('/').status == 200
        # let the watcher see this change before the next one
        idx = consul.index
        wait_for(lambda: consul.open_requests(SERVICE) > 0
                 and consul.index == idx, 5 * conftest.SLOW,
                 what='watcher back on its blocking query')

    consul.set_check('service:i%03d' % down, 'passing')
    for _ in range(8):
        assert nginx.get('/').status == 200
    text = conftest.read_from(nginx.error_log)
    assert FULL not in text, [ln for ln in text.splitlines() if FULL in ln]


def test_zone_too_small_builds_per_worker(backend, nginx, consul):
    # 600 instances of weights 1..1000: a cycle of about 300,000 entries
    # (1.2 MB) does not fit a 1 MB zone, the instances do
    rnd = random.Random(6)
    for i in range(600):
        consul.register(SERVICE, 'i%03d' % i, '127.0.0.1',
                        backend.ok4[i % 4], weight=rnd.randint(1, 1000))
    start(nginx, consul, zone='tce_zone tce 1m;', workers=2)
    line = nginx.wait_error_line(lambda ln: FULL in ln, 0,
                                 timeout=10 * conftest.SLOW,
                                 what='zone full message')
    assert '"%s"' % SERVICE in line
    wait_for(lambda: nginx.get('/').status == 200, 10 * conftest.SLOW,
             what='service routed')
    seen = set()
    for _ in range(40):
        r = nginx.get('/')
        assert r.status == 200
        seen.add(r.headers.get('X-Instance'))
    # weighted picks over many instances, not one instance
    assert len(seen) > 20, seen


def test_flapping_check_keeps_the_schedule(backend, nginx, consul):
    # A check that flaps changes the set, not the cycle: an instance that
    # leaves is masked in the schedule the service has (its entries are
    # skipped), one that comes back is unmasked, and nothing is built;
    # either way a window of one cycle holds each instance exactly its
    # weight.  More than 8 members masked, or more than 1/8 of the
    # weight, and the schedule is built anew.
    node = 'node1/'
    weights = {'big': 97, 'm': 10}
    weights.update({'a%02d' % i: 1 for i in range(12)})     # gcd 1
    for k, (sid, w) in enumerate(sorted(weights.items())):
        consul.register(SERVICE, sid, '127.0.0.1', backend.ok4[k % 4],
                        weight=w)
    debug_log = start_debug(nginx, consul, workers=1, zone='4m')
    line_built = 'schedules of "%s" built' % SERVICE
    line_kept = 'schedules of "%s" kept for the new set, masked members: ' \
        % SERVICE

    def log():
        return conftest.read_from(debug_log)

    def routed(down):
        expected = {node + k: w for k, w in weights.items()
                    if k not in down}
        wait_for(lambda: window_is(nginx, expected), 10 * conftest.SLOW,
                 what='exact weights without %s' % sorted(down))

    def step(flips, down, kept_masked):
        text = log()
        built, kept = text.count(line_built), text.count(line_kept)
        assert consul.set_checks([('service:' + k, s) for k, s in flips])
        routed(down)
        text = log()
        if kept_masked is None:
            assert text.count(line_built) > built
            assert text.count(line_kept) == kept
        else:
            assert text.count(line_built) == built
            assert text.count(line_kept) == kept + 1
            last = text.rsplit(line_kept, 1)[1].split('\n', 1)[0]
            assert last == '%d' % kept_masked, last

    routed(set())
    step([('a00', 'critical')], {'a00'}, 1)
    step([('a01', 'critical'), ('a00', 'passing')], {'a01'}, 1)
    step([('a01', 'passing')], set(), 0)

    # nine masked: built anew, then all back: new to that cycle
    nine = ['a%02d' % i for i in range(9)]
    step([(k, 'critical') for k in nine], set(nine), None)
    step([(k, 'passing') for k in nine], set(), None)

    # one instance of more than 1/8 of the weight: built anew
    step([('big', 'critical')], {'big'}, None)
    step([('big', 'passing')], set(), None)

    # a new weight, nothing else: built anew
    built = log().count(line_built)
    weights['m'] = 9
    consul.register(SERVICE, 'm', '127.0.0.1',
                    backend.ok4[sorted(weights).index('m') % 4], weight=9)
    routed(set())
    assert log().count(line_built) > built
