"""
What happens around the front door during a chaos run, one function per
kind of change.  Each takes the run (chaos.py's Run: the processes, the
models of what is registered, the counters) and a random.Random, does
its change (and undoes it later when it is an outage), and reports
through run.applied(kind) / run.refused(kind, why) / run.problem(text).

A new kind is one more function decorated with @action(weight): the
run picks among them at random, from several threads at once.
"""

import http.client
import json
import threading
import time

from world import ADMIN_SVC, CONSUL_SVC, DEPLOY_SVC, FILL_SVC, BackendProc

ACTIONS = []

# the Consul paths the front door reads: faults apply to these only (the
# platform's own registrations keep working, as they go to an agent)
WATCHED = '/v1/health/'


def action(weight):
    """Registers fn as an action picked with this relative weight."""
    def deco(fn):
        ACTIONS.append((fn.__name__, weight, fn))
        return fn
    return deco


def pick(rng, only=None):
    """A random action, by weight; only: a list of names to pick from
    (empty: none, returns None)."""
    table = [a for a in ACTIONS if only is None or a[0] in only]
    if not table:
        return 'none', lambda run, rng: None
    x = rng.uniform(0, sum(w for _, w, _ in table))
    for name, w, fn in table:
        x -= w
        if x <= 0:
            return name, fn
    return table[-1][0], table[-1][2]


class Refusal(int):
    """A refused call's status, with the error code of its body."""

    def __new__(cls, status, code):
        r = int.__new__(cls, status)
        r.code = code
        return r


def maybe_applied(st):
    """Whether a write answered st may have taken effect all the same:
    a lost connection; a fleet write that reached the Redis master but
    no replica (503 not_replicated: kept unless a failover loses it);
    or one whose Redis connection was lost after the command left (503
    redis_unavailable, "not confirmed": README, Fleet)."""
    return st is None or getattr(st, 'code', None) in (
        'not_replicated', 'redis_unavailable')


def admin(run, kind, method, path, body=None, ok=(200, 201, 202, 204),
          front=None, refuse=(409, 412, 503, 507)):
    """One admin API call to a front door (by default the one routing
    the service named in path); returns the answer's status or None.
    Refusals
    the front door must give in a run (Redis down: 503, zone full: 507,
    a conflict: 409/412) count as refused; a connection lost (a worker
    killed under it) as unconfirmed; anything else is a problem."""
    if front is None:
        front = run.front_a if CONSUL_SVC in path else run.front_b
    try:
        status, _, text = front.api(method, path, body)
    except (OSError, http.client.HTTPException) as e:
        run.refused(kind, 'unconfirmed: %r' % e)
        return None
    if status in ok:
        run.applied(kind)
        return status
    if status in refuse:
        try:
            code = json.loads(text)['error']['code']
        except (ValueError, KeyError, TypeError):
            code = text[:60]
        run.refused(kind, '%d %s' % (status, code))
        return Refusal(status, code)
    run.problem('admin %s %s %s -> %d %s' % (front.name, method, path,
                                             status, text[:300]))
    return status


# ------------------------------------------------------------------ Consul

def consul_churn_step(run, rng):
    """One registry change at the Consul double (called every 100 ms):
    an instance of the pool registered or deregistered, or a check
    flipped.  core0 always stays registered and passing."""
    m = run.consul_model
    sid = rng.choice(sorted(m))
    inst = m[sid]
    c = run.consul
    if not run.consul_lock.acquire(blocking=False):
        return                          # Consul being killed, or a fault
    try:
        if sid != 'core0' and rng.random() < 0.5:
            if inst['registered']:
                c.deregister(sid)
                inst['registered'] = False
            else:
                inst['status'] = rng.choice(('passing', 'passing',
                                             'warning'))
                inst['weight'] = rng.randint(1, 5)
                c.register(CONSUL_SVC, sid, inst['addr'], inst['env'],
                           inst['weight'], inst['status'])
                inst['registered'] = True
        elif inst['registered']:
            choices = ('passing', 'warning') if sid == 'core0' else (
                'passing', 'warning', 'critical')
            inst['status'] = rng.choice(choices)
            c.check(sid, inst['status'])
        else:
            return
        run.applied('consul_churn')
    except (OSError, http.client.HTTPException):
        run.refused('consul_churn', 'Consul down')
    finally:
        run.consul_lock.release()


def consul_register_all(run):
    """After a restart: every instance registered again (anti-entropy)."""
    for sid, inst in sorted(run.consul_model.items()):
        if inst['registered']:
            run.consul.register(CONSUL_SVC, sid, inst['addr'], inst['env'],
                                inst['weight'], inst['status'])
    with run.fill_lock:
        fill = sorted(run.fill_model.items())
    run.consul.register_many(FILL_SVC, fill)


@action(3)
def consul_errors(run, rng):
    """Consul answers errors (5xx, no leader, malformed, truncated,
    dropped connections) for 0.5 to 2 s."""
    kind = rng.choice(('status', 'no_leader', 'malformed', 'truncated',
                       'drop'))
    with run.consul_lock:
        try:
            run.consul.fault(kind=kind, count=-1, status=500,
                             path=WATCHED)
        except OSError:
            return
    time.sleep(rng.uniform(0.5, 2))
    with run.consul_lock:
        try:
            run.consul.clear()
        except OSError:
            pass
    run.applied('consul_errors')


@action(2)
def consul_hang(run, rng):
    """Consul accepts queries and never answers, for 1 to 3 s."""
    with run.consul_lock:
        try:
            run.consul.fault(kind='hang', count=-1, path=WATCHED)
        except OSError:
            return
    time.sleep(rng.uniform(1, 3))
    with run.consul_lock:
        try:
            run.consul.clear()
        except OSError:
            pass
    run.applied('consul_hang')


@action(2)
def consul_kill(run, rng):
    """The Consul agent killed (SIGKILL), started again empty 0.5 to 2 s
    later; it answers empty sets until the instances are registered
    again (0.3 to 1.5 s later), as agents do.  Not again within 5 s
    of the last restart: on a loaded machine a restart takes seconds,
    and kills back to back would leave Consul down the whole run."""
    if time.monotonic() - getattr(run, 'consul_back', 0) < 5:
        return
    with run.consul_lock:
        run.consul.kill()
        run.event('consul killed')
        time.sleep(rng.uniform(0.5, 2))
        run.consul.start()
        # empty until the agents register their services again
        time.sleep(rng.uniform(0.3, 1.5))
        consul_register_all(run)
        run.consul_back = time.monotonic()
        run.event('consul restarted')
    run.applied('consul_kill')


# ---------------------------------------------------------------- admin API

def _cluster(svc):
    return '/services/%s/clusters/default' % svc


@action(3)
def canary_weight(run, rng):
    """A canary weight change (0..100, 2 decimals) on either service."""
    svc = rng.choice((CONSUL_SVC, ADMIN_SVC))
    w = round(rng.uniform(0, 100), 2) if rng.random() < 0.7 else \
        rng.choice((0, 100))
    admin(run, 'canary_weight', 'PUT', _cluster(svc) + '/canary',
          {'weight': w})


@action(1)
def canary_rollback(run, rng):
    """A rollback (weight 0, a new epoch), or back to nginx.conf's."""
    svc = rng.choice((CONSUL_SVC, ADMIN_SVC))
    if rng.random() < 0.5:
        admin(run, 'canary_rollback', 'PUT', _cluster(svc) + '/canary',
              {'rollback': True})
    else:
        admin(run, 'canary_rollback', 'DELETE', _cluster(svc) + '/canary',
              ok=(200, 204))


def _prod_routable(m, without=None):
    return [i for i, x in m.items() if x['env'] == 'prod' and i != without
            and not x['drained'] and not x.get('removing')
            and not x.get('uncertain')]


def _lost(run, m, svc, iid):
    """A 404 for an instance of the model: a Consul-fed one deregistered
    meanwhile (the churn owns it), or an admin-added one whose POST was
    maybe_applied and did not take (or was lost with a Redis master
    before any replica had it): its backend is stopped.  A 404 for an
    instance whose POST was acknowledged is a lost write."""
    if svc == CONSUL_SVC:
        return
    x = m[iid]
    if not x.get('uncertain'):
        run.problem('%s: acknowledged by its POST, now unknown' % iid)
        return
    m.pop(iid)
    x['backend'].stop()
    run.event('%s never added (its POST was not confirmed)' % iid)


@action(3)
def drain(run, rng):
    """An instance drained, or given back (PATCH of its drain override),
    in either service (the Consul-fed one's overrides are laid over
    every Consul answer).  Each keeps an undrained prod instance."""
    if rng.random() < 0.5:
        svc, m, lock = ADMIN_SVC, run.admin_model, run.admin_lock
    else:
        svc, m, lock = CONSUL_SVC, run.consul_model, run.consul_model_lock
    # a Consul-fed instance may be deregistered at the moment, and an
    # admin-added one whose POST was maybe_applied may not exist: 404
    refuse = (404, 409, 412, 503, 507)
    with lock:
        drained = [i for i, x in m.items() if x['drained']
                   and not x.get('removing')]
        if drained and rng.random() < 0.5:
            iid = rng.choice(drained)
            st = admin(run, 'drain', 'PATCH', '%s/instances/%s'
                       % (_cluster(svc), iid), {'drain': None},
                       refuse=refuse)
            if st == 200:
                m[iid]['drained'] = False
            elif st == 404:
                _lost(run, m, svc, iid)
            return
        cands = [i for i, x in m.items() if not x['drained']
                 and not x.get('removing') and i != 'core0'
                 and (x['env'] != 'prod' or len(_prod_routable(m, i)) >= 1)]
        if not cands:
            return
        iid = rng.choice(cands)
        # marked first: no other action may count on it meanwhile
        m[iid]['drained'] = True
        st = admin(run, 'drain', 'PATCH', '%s/instances/%s'
                   % (_cluster(svc), iid), {'drain': True}, refuse=refuse)
        if st == 404:
            _lost(run, m, svc, iid)
        elif st != 200:
            m[iid]['drained'] = maybe_applied(st)   # then maybe drained


@action(2)
def scale_out(run, rng):
    """A new backend process started and added through the API."""
    with run.admin_lock:
        if sum(1 for x in run.admin_model.values()
               if not x['removing']) >= 7:
            return
        run.seq += 1
        iid = 'n%d' % run.seq
    b = BackendProc(run.root, 'admin-' + iid,
                    delay_ms=rng.choice((0, 0, 0, 120)))
    b.wait_ready()
    env = rng.choice(('prod', 'prod', 'canary'))
    st = admin(run, 'scale_out', 'POST', _cluster(ADMIN_SVC) + '/instances',
               {'id': iid, 'address': b.addr, 'env': env,
                'weight': rng.randint(1, 5), 'version': 'v%d' % run.seq})
    with run.admin_lock:
        if st in (200, 201) or maybe_applied(st):
            # not confirmed: the backend keeps running, as the front
            # door may route to it; a later 404 tells (_lost)
            run.admin_model[iid] = {'addr': b.addr, 'env': env,
                                    'backend': b, 'drained': False,
                                    'removing': False,
                                    'uncertain': st not in (200, 201)}
            return
    b.stop()


@action(2)
def scale_in(run, rng):
    """An instance scale_out added removed through the API (DELETE: it
    drains), its backend stopped as soon as the front door has let it
    go (node B's API answers 404), as a platform does it: the node that
    removes an instance waits for every node's requests in flight to it
    (their busy marks in Redis; README, Fleet: who removes it), so no
    request can still be on the way to the stopped backend."""
    with run.admin_lock:
        m = run.admin_model
        # p1, p2, c1 stay: the stock nginx proxies to them too
        cands = [i for i, x in m.items() if not x['removing']
                 and i.startswith('n')
                 and (x['env'] != 'prod' or x['drained']
                      or len(_prod_routable(m, i)) >= 1)]
        if len(m) <= 2 or not cands:
            return
        iid = rng.choice(cands)
        m[iid]['removing'] = True
    path = '%s/instances/%s' % (_cluster(ADMIN_SVC), iid)
    st = admin(run, 'scale_in', 'DELETE', path + '?timeout=20s',
               ok=(202,), refuse=(404, 409, 412, 503, 507))
    if st == 404:
        with run.admin_lock:
            _lost(run, m, ADMIN_SVC, iid)
        return
    if st != 202:
        with run.admin_lock:
            m[iid]['removing'] = False
            if maybe_applied(st):
                m[iid]['uncertain'] = True    # maybe removed: _lost
        return

    def gone():
        try:
            s, _, _ = run.front_b.api('GET', path)
        except (OSError, http.client.HTTPException):
            return False
        return s == 404

    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and not run.stopping.is_set():
        if gone():
            with run.admin_lock:
                x = m.pop(iid)
            x['backend'].stop()
            run.event('%s removed, its backend stopped' % iid)
            return
        time.sleep(0.1)
    if not run.stopping.is_set():
        run.problem('%s still in the registry 40 s after its DELETE' % iid)


# ------------------------------------------------------------------- Redis

def redis_master(run):
    """The Redis process the sentinels name as master (None if none
    answers)."""
    ha = run.redis
    for s in ha.sentinels:
        try:
            port = s.master()
        except (OSError, ValueError, TypeError):
            continue
        for node in (ha.master, ha.replica):
            if node.port == port:
                return node
    return None


def fleet_master(run, front):
    fl = (run.status(front) or {}).get('fleet') or {}
    return (fl.get('sentinel') or {}).get('master')


def wait_until(run, cond, timeout, what):
    """Polls cond until true (True) or the deadline (a problem, False)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            run.problem('%s: not within %d s' % (what, timeout))
            return False
        time.sleep(0.05)
    return True


@action(2)
def redis_kill(run, rng):
    """The Redis master killed (SIGKILL) and started again 0.3 to 0.8 s
    later, before the sentinels call it down (1 s): the same master
    comes back, the nodes reconnect to it.  Not always: on a loaded
    machine the sentinels may fail over meanwhile, and a process comes
    back with its own command line: the replica process, once
    promoted, restarts as a replica of the other one (whose data
    replaces its own under the nodes' open connections) while the
    sentinels still name it master, until they fail over again; the
    nodes' writes are refused meanwhile (READONLY), and they must
    route what it holds (README, Fleet: the replication id)."""
    with run.redis_lock:
        node = redis_master(run)
        if node is None:
            return
        node.kill()
        run.event('redis master :%d killed' % node.port)
        time.sleep(rng.uniform(0.3, 0.8))
        node.start()
        run.event('redis master :%d restarted' % node.port)
    run.applied('redis_kill')


@action(1)
def sentinel_failover(run, rng):
    """A Sentinel failover: the master killed, the sentinels elect the
    replica, both front door nodes follow it (their fleet status names
    the new master); the old master started again as a replica of the
    new one."""
    ha = run.redis
    with run.redis_lock:
        old = redis_master(run)
        if old is None:
            return
        new = ha.replica if old is ha.master else ha.master
        try:
            synced = 'master_link_status:up' in new.cmd('INFO',
                                                        'replication')
        except OSError:
            synced = False
        if not synced:
            return                      # no replica to elect yet
        old.kill()
        t = time.monotonic()
        run.event('sentinel failover: master :%d killed' % old.port)
        addr = '127.0.0.1:%d' % new.port
        ok = wait_until(run, lambda: redis_master(run) is new, 30,
                        'Sentinel electing :%d' % new.port) \
            and wait_until(run, lambda: all(fleet_master(run, f) == addr
                                            for f in (run.front_a,
                                                      run.front_b)), 15,
                           'both nodes following %s' % addr)
        if ok:
            run.event('sentinel failover: %s master, both nodes follow '
                      '(%.1f s)' % (addr, time.monotonic() - t))
        # the old master comes back as the new one's replica, as an
        # operator restarts it (Sentinel alone takes two INFO periods of
        # 10 s, or more in its TILT mode); the new master may delay a
        # diskless sync (5 s); the Redis kills of other actions wait for
        # the lock
        old.extra = ['--replicaof', '127.0.0.1', str(new.port)]
        old.start()
        ok = wait_until(run, lambda: 'connected_slaves:1' in new.cmd(
            'INFO', 'replication'), 60,
            ':%d replicating the new master' % old.port) and ok
    if ok:
        run.applied('sentinel_failover')


# ----------------------------------------------------------------- deploys

DEPLOY_STEPS = ([10, 50, 100], [25, 100], [5, 20, 50, 100])


@action(2)
def deploy(run, rng):
    """A progressive deploy of either service's canary: started, then
    promoted or rolled back through the API, paused and resumed, or
    left to the controller (which promotes it or rolls it back)."""
    front = run.front_c
    base = _cluster(DEPLOY_SVC) + '/deploys'
    st = admin(run, 'deploy_start', 'POST', base,
               {'steps': rng.choice(DEPLOY_STEPS),
                'step_seconds': rng.choice((1, 2, 3)),
                'min_requests': 20}, ok=(201,), front=front)
    if st != 201:
        return
    end = rng.choice(('promote', 'rollback', 'pause', 'controller'))
    # a deploy may end by itself meanwhile: the action then gets 409
    if run.stopping.wait(rng.uniform(0.5, 3)):
        return
    if end == 'pause':
        admin(run, 'deploy_pause', 'POST', base + '/current/pause', {},
              front=front)
        if run.stopping.wait(rng.uniform(0.3, 1.5)):
            return
        admin(run, 'deploy_resume', 'POST', base + '/current/resume', {},
              front=front)
        end = rng.choice(('promote', 'rollback', 'controller'))
    if end != 'controller':
        admin(run, 'deploy_' + end, 'POST', base + '/current/' + end, {},
              front=front)
        return

    def ended():
        try:
            s, _, text = front.api('GET', base + '/current')
        except (OSError, http.client.HTTPException):
            return None
        state = json.loads(text).get('state') if s == 200 else None
        return state if state not in ('running', 'paused') else None

    deadline = time.monotonic() + 30
    while not run.stopping.is_set() and time.monotonic() < deadline:
        state = ended()
        if state:
            run.applied('deploy_by_controller_' + state)
            return
        time.sleep(0.2)


# ----------------------------------------------------------- nginx itself

def reload(run, rng):
    """nginx -s reload; returns once the new workers serve and the old
    ones are shutting down (their pids are kept for the classifier)."""
    front = rng.choice(run.fronts)
    with run.proc_lock:
        master = front.proc.pid
        old = run.serving(master)
        t = time.time()
        front.signal_reload()
        run.reloads.append((t, front.name, old))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = run.serving(master)
            if len(now) == front.nworkers and not (now & old):
                break
            time.sleep(0.02)
        else:
            run.problem('reload: no new workers within 30 s')
    run.applied('reload')
    run.event('%s reload (old workers %s)' % (front.name, sorted(old)))


def kill_worker(run, rng):
    """SIGKILL of one worker of each front door node and, at the same
    moment, one of the stock nginx (which carries as many clients): each stopped first (SIGSTOP) so that the
    client ports of the connections it holds are known exactly."""
    import os
    import signal
    from world import client_ports
    with run.proc_lock:
        victims = []
        for target, master, port in (
                ('tce-a', run.front_a.proc.pid, run.front_a.port),
                ('tce-b', run.front_b.proc.pid, run.front_b.port),
                ('stock', run.stock.proc.pid, run.stock.port)):
            pids = sorted(run.serving(master))
            if not pids:
                continue
            pid = rng.choice(pids)
            os.kill(pid, signal.SIGSTOP)
            victims.append((target, master, pid, port))
        snaps = [(target, master, pid, client_ports(pid, port))
                 for target, master, pid, port in victims]
        t = time.time()
        for target, master, pid, ports in snaps:
            os.kill(pid, signal.SIGKILL)
            run.kills.append({'target': target, 't': t, 'pid': pid,
                              'ports': ports})
            run.event('%s worker %d killed (%d connections)'
                      % (target, pid, len(ports)))
        for target, master, pid, ports in snaps:
            deadline = time.monotonic() + 10
            while len(run.serving(master)) < 2 \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
    run.applied('kill')


# --------------------------------------------------------------- the zone

def _fill_register(run, count):
    """count more chaos.fill.api instances registered (dead addresses:
    nothing routes to them) in one call to the double; False if Consul
    is down."""
    with run.fill_lock:
        start = len(run.fill_model)
        new = [('fill-%05d' % i, '127.0.0.1:%d' % (20000 + i % 10000))
               for i in range(start, start + count)]
        run.fill_model.update(new)
    with run.consul_lock:               # not during a Consul restart
        try:
            run.consul.register_many(FILL_SVC, new)
        except (OSError, http.client.HTTPException) as e:
            run.problem('fill registration failed: %r' % e)
            return False
    return True


def _fill_deregister(run, keep):
    """Every fill instance but the first `keep` deregistered."""
    with run.consul_lock:               # not during a Consul restart
        with run.fill_lock:
            gone = sorted(run.fill_model)[keep:]
            for sid in gone:
                del run.fill_model[sid]
        try:
            for sid in gone:
                run.consul.deregister(sid)
        except (OSError, http.client.HTTPException) as e:
            run.problem('fill deregistration failed: %r' % e)


def zone_fill(run, rng, hold=3.0):
    """chaos.fill.api registered in Consul, 100 instances at a time,
    until the zone refuses the set (or is 90% used): the refusal must
    keep exactly the last set stored (nothing half-applied) and say so
    in the status.  Back to the largest set the zone took, held for
    `hold` seconds while everything else goes on, then emptied (but one
    instance: an empty answer would be kept)."""
    run.fill_active = True
    stored = 1
    for _ in range(100):
        if run.stopping.is_set():
            break                       # a loaded machine: not finished
        if not _fill_register(run, 100):
            time.sleep(0.5)
            continue
        run.wait_fill_applied()
        svc = run.fill_service()
        n = len(svc.get('instances', ()))
        err = svc.get('discovery', {}).get('last_error', '')
        used, size = run.zone_usage()
        if 'full' in err and n < len(run.fill_model):
            run.overfill = (len(run.fill_model), n, err)
            stored = n                  # the zone's largest set
            run.event('zone refused %d fill instances, kept %d: "%s"'
                      % (len(run.fill_model), n, err))
            break
        stored = max(stored, n)
        run.fill_level = (n, used, size)
        if used is not None and used >= 0.9 * size:
            break
    _fill_deregister(run, stored)
    run.wait_fill_applied()
    used, size = run.zone_usage()
    run.fill_level = (stored, used, size)
    run.event('zone held at %s of %s bytes, %d fill instances'
              % (used, size, stored))
    run.applied('zone_fill')
    run.stopping.wait(hold)

    _fill_deregister(run, 1)
    run.event('zone emptied of chaos.fill.api')
    run.applied('zone_fill')
    # the series of the instances gone expire (tce_metrics_expire 2s)
    deadline = time.monotonic() + 15
    while len(run.fill_service().get('instances', ())) != 1:
        if time.monotonic() > deadline:
            run.problem('the zone fill was not removed within 15 s')
            break
        time.sleep(0.1)
    time.sleep(3)
    run.fill_active = False


def start_thread(fn, *args):
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t
