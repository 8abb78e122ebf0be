"""
The files the workers write (the Consul snapshot), as an operator sees
them: where the snapshot goes by default (never over the tce_state
file), the warnings at start (a directory the worker user cannot write,
nothing persisted at all), persistence failures in tce_status and the
metrics, the writes made off the event loop (a write that blocks does
not hold up requests nor move the watcher), and the content after a
burst of changes.  Real nginx with the module, real backends, the
Consul API double in this process; every wait polls with a deadline.
"""

import json
import os
import pwd
import stat
import sys
import threading
import time

import pytest

from conftest import (SERVICE, SLOW, VALGRIND, read_from, stop_process,
                      try_get, wait_for)
from test_metrics import METRICS_LOCATION, parse, promtool_check

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'doubles'))

from consul_double import NODE_NAME, ConsulDouble  # noqa: E402


@pytest.fixture
def consul():
    d = ConsulDouble(jitter=False).start()
    yield d
    d.stop()


def worker_user():
    """The unprivileged user the workers run as in these tests (the
    master runs as root): Debian's www-data, else nobody."""
    for name in ('www-data', 'nobody'):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    pytest.skip('no unprivileged user')


def start(nginx, consul, snapshot=None, state=True, user=None,
          workers=2, extra=''):
    """nginx with Consul discovery; snapshot: a tce_consul_snapshot path
    (None: the default); user: a user directive replacing the
    fixture's."""
    http_extra = '    tce_consul %s wait=2s;\n' % consul.url
    if snapshot:
        http_extra += '    tce_consul_snapshot %s;\n' % snapshot
    http_extra += extra
    conf = nginx.configure(http_extra=http_extra, state=state,
                           workers=workers, server_extra=METRICS_LOCATION)
    if user is not None:
        conf = conf.replace('user root;', '')
        conf = '%s\n%s' % (user, conf)
        with open(nginx.conf_path, 'w') as f:
            f.write(conf)
    nginx.start()


def register(consul, backend, n, port_index):
    return consul.register(SERVICE, 'api-%d' % n, '127.0.0.1',
                           backend.ok4[port_index])


def ports_seen(nginx, n=12):
    out = set()
    for _ in range(n):
        r = nginx.get('/')
        out.add(int(r.text) if r.status == 200 else None)
    return out


def routes_to(nginx, ports, timeout=5):
    want = set(ports)
    wait_for(lambda: ports_seen(nginx) == want, timeout,
             what='routing to exactly %s' % sorted(want))


def persistence(nginx, path):
    return nginx.status().get('persistence', {}).get(path)


def metric(nginx, name, path):
    r = nginx.get('/metrics')
    assert r.status == 200, r
    return parse(r.text).get((name, (('file', path),)))


def snapshot_ids(path):
    """The instance ids of SERVICE in a snapshot (None: not there)."""
    try:
        doc = json.loads(read_from(path))
    except ValueError:
        return None
    svc = doc.get('services', {}).get(SERVICE)
    if svc is None:
        return set()
    # an instance's id is <node>/<Service.ID>: the double's node is one
    return {i['id'].split('/', 1)[-1] for c in svc['clusters'].values()
            for i in c['instances']}


# ------------------------------------------------ where the snapshot goes

def test_snapshot_default_beside_state_file(backend, nginx, consul):
    nginx.write_state({'demo.web.static': {'default': [
        {'id': 's1', 'address': '127.0.0.1:%d' % backend.ok4[3]}]}})
    before = read_from(nginx.state_path)
    mtime = os.stat(nginx.state_path).st_mtime_ns
    snap = nginx.state_path + '.consul'

    start(nginx, consul)
    register(consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])
    wait_for(lambda: snapshot_ids(snap) == {'api-1'}, 5,
             what='the default snapshot holding the Consul instance')

    # the operator's file is untouched; the snapshot holds Consul's only
    assert read_from(nginx.state_path) == before
    assert os.stat(nginx.state_path).st_mtime_ns == mtime
    doc = json.loads(read_from(snap))
    assert list(doc['services']) == [SERVICE], doc

    p = wait_for(lambda: (persistence(nginx, snap) or {}).get('writes')
                 and persistence(nginx, snap), 5,
                 what='the snapshot in the status')
    assert p['what'] == 'consul snapshot', p
    assert p['errors'] == 0 and p['last_error'] == '', p
    assert abs(p['last_success'] - time.time()) < 60 * SLOW, p
    assert metric(nginx, 'tce_persist_errors_total', snap) == 0
    assert metric(nginx, 'tce_persist_writes_total', snap) >= 1
    assert metric(nginx, 'tce_persist_last_success_timestamp_seconds',
                  snap) == p['last_success']
    rc, out = promtool_check(nginx.get('/metrics').text)
    assert rc == 0, out
    r = nginx.get('/metrics?format=json')
    assert {'file': snap, 'writes': p['writes'], 'errors': 0,
            'last_success': p['last_success']} in json.loads(r.body)[
                'persist'], r.body

    # a restart during an outage serves the snapshot, not the state file
    err = stop_process(nginx.proc)
    assert err is None, err
    nginx.stderr.close()
    consul.stop()
    nginx.allowed_log.add('tce consul: service')
    nginx.start()
    routes_to(nginx, [backend.ok4[0]])
    assert read_from(nginx.state_path) == before


def test_snapshot_on_state_file_refused(nginx, consul):
    nginx.write_state({})
    nginx.configure(http_extra='    tce_consul %s;\n'
                    '    tce_consul_snapshot %s;\n'
                    % (consul.url, nginx.state_path))
    rc, err = nginx.check()
    assert rc != 0, err
    assert 'is the "tce_state" file' in err, err
    assert '.consul' in err, err


def test_nothing_persisted_warns(nginx, consul):
    nginx.configure(http_extra='    tce_consul %s;\n' % consul.url,
                    state=False)
    rc, err = nginx.check()
    assert rc == 0, err
    assert '[warn]' in err and 'nothing is persisted' in err, err
    assert 'serves 503' in err, err

    # with a snapshot: no such warning
    nginx.configure(http_extra='    tce_consul %s;\n'
                    '    tce_consul_snapshot snap.json;\n' % consul.url,
                    state=False)
    rc, err = nginx.check()
    assert rc == 0, err
    assert 'nothing is persisted' not in err, err


# ------------------------------------- a directory the workers can't write

def test_unwritable_directory(backend, nginx, consul):
    snapdir = os.path.join(nginx.dir, 'lib')
    os.makedirs(snapdir)
    snap = os.path.join(snapdir, 'consul.json')
    if os.geteuid() == 0:
        pw = worker_user()
        user = 'user %s;' % pw.pw_name
        name = pw.pw_name
        # root-owned 0755 (its parents 0700 too): not the worker's
        os.chmod(snapdir, 0o755)
    else:
        user = None
        name = pwd.getpwuid(os.geteuid()).pw_name
        os.chmod(snapdir, stat.S_IRUSR | stat.S_IXUSR)

    nginx.allowed_log.add('consul snapshot "%s" not written' % snap)
    start(nginx, consul, snapshot=snap, user=user)

    # the warning at start names the user, the directory and the fix
    warn = [l for l in read_from(nginx.error_log).splitlines()
            if '[warn]' in l and 'cannot write the directory' in l]
    assert warn, read_from(nginx.error_log)
    assert 'worker user "%s"' % name in warn[0], warn
    assert '"%s"' % snapdir in warn[0] and snap in warn[0], warn
    assert 'chown %s: %s' % (name, snapdir) in warn[0], warn

    # at run time: the error shows in the status and the metrics
    register(consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])
    p = wait_for(lambda: (persistence(nginx, snap) or {}).get('errors')
                 and persistence(nginx, snap), 5,
                 what='the failed write in the status')
    assert 'Permission denied' in p['last_error'], p
    assert p['writes'] == 0 and p['last_success'] == 0, p
    assert abs(p['last_error_time'] - time.time()) < 60 * SLOW, p
    assert metric(nginx, 'tce_persist_errors_total', snap) >= 1
    assert metric(nginx, 'tce_persist_last_success_timestamp_seconds',
                  snap) == 0
    assert not os.path.exists(snap)
    lines = [l for l in read_from(nginx.error_log).splitlines()
             if 'not written' in l]
    assert len(lines) == 1, lines       # once per failing spell

    if os.geteuid() != 0:
        return
    # the fix README gives: the directory to the worker user
    os.chown(snapdir, pw.pw_uid, pw.pw_gid)
    os.chmod(os.path.dirname(nginx.dir), 0o755)
    os.chmod(nginx.dir, 0o755)
    parent = os.path.dirname(os.path.dirname(nginx.dir))
    modes = []
    while parent not in ('/', '/tmp'):
        modes.append((parent, os.stat(parent).st_mode))
        os.chmod(parent, 0o755)
        parent = os.path.dirname(parent)
    try:
        register(consul, backend, 2, 1)
        routes_to(nginx, [backend.ok4[0], backend.ok4[1]])
        wait_for(lambda: snapshot_ids(snap) == {'api-1', 'api-2'}, 5,
                 what='the snapshot written once the directory is fixed')
        wait_for(lambda: persistence(nginx, snap)['writes'] >= 1, 5,
                 what='the write counted')
    finally:
        for path, mode in modes:
            os.chmod(path, stat.S_IMODE(mode))


def test_no_kept_claim_when_nothing_known(nginx, consul):
    nginx.allowed_log.add('no instance is known yet')
    consul.add_fault('status', count=-1, status=500)
    start(nginx, consul, snapshot='snap.json')
    line = nginx.wait_error_line(
        lambda l: 'tce consul: service "%s"' % SERVICE in l, 0,
        what='the failure logged')
    assert 'no instance is known yet' in line, line
    assert 'kept' not in line, line


# ------------------------------------------------- writes off the event loop

def watcher_pid(nginx):
    lines = [l for l in read_from(nginx.error_log).splitlines()
             if 'watches Consul' in l]
    return int(lines[-1].split('tce consul: worker ')[1].split()[0])


def blocked_in_open(pid):
    """True when a thread of pid sits in openat(2) (x86_64: 257), as a
    writer opening a FIFO nobody reads does."""
    try:
        tids = os.listdir('/proc/%d/task' % pid)
    except FileNotFoundError:
        return False
    for tid in tids:
        try:
            with open('/proc/%d/task/%s/syscall' % (pid, tid)) as f:
                if f.read().split(' ')[0] == '257':
                    return True
        except OSError:
            pass
    return False


def test_blocked_write_holds_up_nothing(backend, nginx, consul):
    """A snapshot write that blocks (its temp file is a FIFO nobody
    reads: open(2) waits) holds up neither requests nor discovery, and
    does not move the watcher, for longer than the election's staleness
    limit; the change made meanwhile is written once it ends."""
    snap = os.path.join(nginx.dir, 'snap.json')
    start(nginx, consul, snapshot=snap, state=False)
    register(consul, backend, 1, 0)
    routes_to(nginx, [backend.ok4[0]])
    wait_for(lambda: snapshot_ids(snap) == {'api-1'}, 5,
             what='the first snapshot')
    pid = watcher_pid(nginx)
    owners = read_from(nginx.error_log).count('watches Consul')

    fifo = '%s.tmp.%d' % (snap, pid)
    os.mkfifo(fifo)
    nginx.allowed_log.add('consul snapshot "%s" not written' % snap)
    register(consul, backend, 2, 1)
    wait_for(lambda: blocked_in_open(pid), 5,
             what='the snapshot write blocked on the FIFO')

    # three times the staleness limit (1.5 s): requests answered fast,
    # discovery goes on, the watcher stays
    register(consul, backend, 3, 2)
    slowest = 0.0
    deadline = time.monotonic() + 4.5 * SLOW
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        r = nginx.get('/', timeout=2)
        slowest = max(slowest, time.monotonic() - t0)
        assert r.status == 200, r
        assert blocked_in_open(pid), 'the write ended on its own'
    assert slowest < 0.5 * SLOW, slowest
    routes_to(nginx, backend.ok4[:3])
    assert read_from(nginx.error_log).count('watches Consul') == owners
    assert 'took the watcher over' not in read_from(nginx.error_log)
    assert snapshot_ids(snap) == {'api-1'}

    # unblock: the blocked write's content is whole (fsync on a FIFO
    # fails: counted), then the change made meanwhile is written
    with open(fifo, 'rb') as f:
        text = f.read()
    assert {i['id'] for i in json.loads(text)['services'][SERVICE]
            ['clusters']['default']['instances']} >= {
                NODE_NAME + '/api-1', NODE_NAME + '/api-2'}
    wait_for(lambda: snapshot_ids(snap) == {'api-1', 'api-2', 'api-3'}, 5,
             what='the latest content written after the blocked write')
    p = wait_for(lambda: persistence(nginx, snap)['writes'] >= 2
                 and persistence(nginx, snap), 5, what='the write counted')
    assert p['errors'] == 1 and 'fsync' in p['last_error'], p
    assert not os.path.exists(fifo)


def test_burst_of_changes(backend, nginx, consul):
    """Many changes in a row: every read of the snapshot meanwhile is a
    whole document (atomic replace), the last one is the final set."""
    snap = os.path.join(nginx.dir, 'snap.json')
    start(nginx, consul, snapshot=snap, state=False)
    register(consul, backend, 0, 0)
    wait_for(lambda: snapshot_ids(snap) == {'api-0'}, 5,
             what='the first snapshot')

    bad = []
    reads = [0]
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            text = read_from(snap)
            try:
                json.loads(text)
                reads[0] += 1
            except ValueError:
                bad.append(text[:200])

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        for n in range(1, 41):
            consul.register(SERVICE, 'api-%d' % n, '127.0.0.1',
                            backend.ok4[n % 4])
            if n % 3 == 0:
                consul.deregister('api-%d' % (n - 1))
            r = try_get(nginx.port, '/')
            assert r is not None and r.status in (200, 503), r
        final = {'api-0'} | {'api-%d' % n for n in range(1, 41)
                             if not (n % 3 == 2 and n < 40)}
        wait_for(lambda: snapshot_ids(snap) == final, 10,
                 what='the snapshot holding the final set')
    finally:
        stop.set()
        t.join(5)
    assert not bad, bad
    assert reads[0] > 0
    p = persistence(nginx, snap)
    assert p['errors'] == 0, p


# ------------------------------------- what a worker that died held

def test_killed_worker_in_flight_reclaimed(backend, nginx):
    """Requests in flight on a hung backend, their worker killed with
    SIGKILL: once the master has replaced it, the in-flight gauges are
    back to 0 (they stayed at the dead worker's count until restart)."""
    from test_metrics import total
    nginx.write_state({SERVICE: {'default': [
        {'id': 'hung-1', 'address': '127.0.0.1:%d' % backend.hung}]}})
    nginx.configure(server_extra=METRICS_LOCATION, workers=1,
                    location='            proxy_read_timeout 60s;\n')
    nginx.start()
    nginx.allowed_log.add('exited on signal 9')

    def hang():
        try_get(nginx.port, '/hang', timeout=30)
    clients = [threading.Thread(target=hang, daemon=True) for _ in range(4)]
    for c in clients:
        c.start()

    def gauges():
        r = nginx.get('/metrics')
        m = parse(r.text)
        return (total(m, 'tce_requests_in_flight'),
                total(m, 'tce_instance_requests_in_flight'))

    wait_for(lambda: gauges() == (4, 4), 10,
             what='four requests in flight')
    victim = list(nginx.workers())[0]
    os.kill(victim, 9)
    wait_for(lambda: nginx.workers() and victim not in nginx.workers(), 10,
             what='the master replacing the killed worker')

    wait_for(lambda: gauges() == (0, 0), 10,
             what='the in-flight gauges back to 0')
    line = nginx.wait_error_line(
        lambda l: 'worker %d is gone' % victim in l, 0,
        what='the reclaim logged')
    # each request counted in its group's series and its instance's
    assert 'the 8 in-flight count(s)' in line, line
    for c in clients:
        c.join(10 * SLOW)


# -------------------------- the largest set Consul may give, loaded back

class BigConsul:
    """A minimal Consul health endpoint serving one fixed answer: the
    double builds answers in O(n^2), too slow for 10,000 entries.  A
    query already at the index is held a second (a blocking query)."""

    def __init__(self, body, index=7):
        import http.server
        outer = self
        self.body = body
        self.index = index

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if 'index=%d' % outer.index in self.path:
                    time.sleep(1)
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('X-Consul-Index', str(outer.index))
                self.send_header('X-Consul-KnownLeader', 'true')
                self.send_header('Content-Length', str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
        self.server.daemon_threads = True
        self.url = 'http://127.0.0.1:%d' % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.skipif(VALGRIND, reason='a 10,000-instance tce_status answer '
                    'takes minutes under memcheck')
def test_largest_set_snapshot_loads_back(backend, nginx, consul):
    """10,000 entries (the most one answer may hold), each with the
    longest id, cluster and version: the snapshot written loads back at
    a restart with Consul down, every instance served."""
    register(consul, backend, 1, 0)
    with consul.cond:
        proto = consul.reg.health_service(SERVICE, [], True)[0]
    entries = []
    for n in range(10000):
        e = json.loads(json.dumps(proto))
        e['Service']['ID'] = ('x' * 112) + '%08d' % n
        e['Service']['Port'] = 1024 + n
        e['Service']['Meta'] = {'cluster': 'c' * 63, 'version': 'v' * 63}
        for c in e['Checks']:
            c['ServiceID'] = e['Service']['ID']
        entries.append(e)
    big = BigConsul(json.dumps(entries).encode())
    snap = os.path.join(nginx.dir, 'snap.json')
    try:
        nginx.configure(http_extra='    tce_consul %s wait=2s;\n'
                        '    tce_consul_snapshot %s;\n' % (big.url, snap),
                        state=False, zone='tce_zone tce 64m;')
        nginx.start()
        wait_for(lambda: len(snapshot_ids(snap) or ()) == 10000, 60,
                 what='the snapshot of 10,000 instances')
        assert persistence(nginx, snap)['errors'] == 0
        err = stop_process(nginx.proc)
        assert err is None, err
        nginx.stderr.close()
    finally:
        big.stop()

    nginx.allowed_log.add('tce consul: service')
    nginx.start()
    svc = nginx.status()['services'][SERVICE]
    assert len(svc['instances']) == 10000, len(svc['instances'])
    assert svc['source'] == 'consul', svc
    assert '10000 instance(s) from the snapshot' in read_from(
        nginx.error_log)
