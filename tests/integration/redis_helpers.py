"""
Redis for the fleet tests (test_redis_fleet.py): a real redis-server
from Debian started by the test in its temporary directory (loopback
port or unix socket, append-only file so that a restart keeps the
data), a minimal RESP client, a second nginx node, and a fake RESP
server that answers what a test tells it to (malformed replies).
"""

import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import (SERVICE, SLOW, Nginx, free_port, instance,
                      stop_process, wait_for)
from admin_helpers import TOKEN, admin_location

METRICS_LOCATION = """\
        location = /metrics {
            access_log off;
            tce_metrics;
        }
"""

REDIS_BIN = shutil.which('redis-server') or '/usr/bin/redis-server'
SENTINEL_BIN = shutil.which('redis-sentinel') or '/usr/bin/redis-sentinel'


# ------------------------------------------------------------------ RESP

def encode(*args):
    out = [b'*%d\r\n' % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b'$%d\r\n%s\r\n' % (len(a), a))
    return b''.join(out)


class RespError(Exception):
    pass


def _read_reply(f):
    line = f.readline()
    if not line:
        raise ConnectionError('closed')
    kind, rest = line[:1], line[1:-2]
    if kind == b'+':
        return rest.decode()
    if kind == b'-':
        return RespError(rest.decode())
    if kind == b':':
        return int(rest)
    if kind == b'$':
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode()
    if kind == b'*':
        n = int(rest)
        if n < 0:
            return None
        return [_read_reply(f) for _ in range(n)]
    raise ValueError('bad RESP: %r' % line)


class RedisClient:
    """One blocking connection, for the test's own reads and writes."""

    def __init__(self, address, password=None, username=None):
        if isinstance(address, str):
            self.sock = socket.socket(socket.AF_UNIX)
        else:
            self.sock = socket.socket()
        self.sock.settimeout(5 * SLOW)
        self.sock.connect(address)
        self.f = self.sock.makefile('rb')
        if password:
            self.cmd(*(('AUTH', username, password) if username
                       else ('AUTH', password)))

    def cmd(self, *args):
        self.sock.sendall(encode(*args))
        r = _read_reply(self.f)
        if isinstance(r, RespError):
            raise r
        return r

    def close(self):
        self.f.close()
        self.sock.close()


class Redis:
    """redis-server on 127.0.0.1:<port> and a unix socket in dir."""

    def __init__(self, root, name='redis', extra=()):
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.unix = os.path.join(self.dir, 'redis.sock')
        self.password = None
        self.proc = None
        self.extra = list(extra)
        self.log = os.path.join(self.dir, 'redis.log')

    def start(self, password=None):
        if password is not None:
            self.password = password
        args = [REDIS_BIN, '--port', str(self.port), '--bind', '127.0.0.1',
                '--unixsocket', self.unix, '--unixsocketperm', '700',
                '--dir', self.dir, '--save', '', '--appendonly', 'yes',
                '--appendfsync', 'always', '--logfile', self.log,
                '--daemonize', 'no']
        if self.password:
            args += ['--requirepass', self.password]
        args += self.extra
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def up():
            if self.proc.poll() is not None:
                pytest.fail('redis-server exited: %s'
                            % open(self.log).read()[-2000:])
            try:
                c = self.client()
                ok = c.cmd('PING') == 'PONG'
                c.close()
                return ok
            except (OSError, RespError):
                return False
        wait_for(up, 10, what='redis-server to answer')

    def client(self):
        return RedisClient(('127.0.0.1', self.port), self.password)

    def cmd(self, *args):
        c = self.client()
        try:
            return c.cmd(*args)
        finally:
            c.close()

    def kill(self):
        """SIGKILL: as a crash (the append-only file keeps the data)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc:
            stop_process(self.proc)
            self.proc = None


class Sentinel:
    """redis-sentinel on 127.0.0.1:<port> watching master `name`."""

    def __init__(self, root, i, master, name='mymaster', quorum=2):
        self.dir = os.path.join(root, 'sentinel%d' % i)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.conf = os.path.join(self.dir, 'sentinel.conf')
        self.log = os.path.join(self.dir, 'sentinel.log')
        down = int(1000 * SLOW)
        with open(self.conf, 'w') as f:
            f.write('port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n'
                    'daemonize no\n'
                    'sentinel monitor %s 127.0.0.1 %d %d\n'
                    'sentinel down-after-milliseconds %s %d\n'
                    'sentinel failover-timeout %s %d\n'
                    'sentinel parallel-syncs %s 1\n'
                    % (self.port, self.dir, self.log, name, master.port,
                       quorum, name, down, name, 10 * down, name))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([SENTINEL_BIN, self.conf],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def up():
            if self.proc.poll() is not None:
                pytest.fail('redis-sentinel exited: %s'
                            % open(self.log).read()[-2000:])
            try:
                return self.cmd('PING') == 'PONG'
            except (OSError, RespError):
                return False
        wait_for(up, 10, what='redis-sentinel to answer')

    def cmd(self, *args):
        c = RedisClient(('127.0.0.1', self.port))
        try:
            return c.cmd(*args)
        finally:
            c.close()

    def master(self, name='mymaster'):
        a = self.cmd('SENTINEL', 'get-master-addr-by-name', name)
        return a and int(a[1])

    def stop(self):
        if self.proc:
            stop_process(self.proc)
            self.proc = None


class RedisHA:
    """A master, one replica and three sentinels (quorum 2)."""

    def __init__(self, root):
        self.master = Redis(root, 'master')
        self.replica = Redis(root, 'replica',
                             ['--replicaof', '127.0.0.1',
                              str(self.master.port)])
        self.sentinels = [Sentinel(root, i, self.master) for i in range(3)]

    def start(self):
        self.master.start()
        self.replica.start()
        wait_for(lambda: 'master_link_status:up'
                 in self.replica.cmd('INFO', 'replication'), 10,
                 what='the replica to sync')
        for s in self.sentinels:
            s.start()
        # every sentinel sees the replica and the two others
        wait_for(lambda: all(
            int(s.cmd('SENTINEL', 'master', 'mymaster')[
                s.cmd('SENTINEL', 'master', 'mymaster').index(
                    'num-other-sentinels') + 1]) == 2
            and len(s.cmd('SENTINEL', 'replicas', 'mymaster')) == 1
            for s in self.sentinels), 20, what='the sentinels to meet')

    def line(self, extra=''):
        return ('tce_redis sentinel=%s master=mymaster %s;'
                % (','.join('127.0.0.1:%d' % s.port for s in self.sentinels),
                   extra))

    def stop(self):
        for s in self.sentinels:
            s.stop()
        self.replica.stop()
        self.master.stop()


@pytest.fixture
def redis_ha(tmp_path):
    ha = RedisHA(str(tmp_path))
    yield ha
    ha.stop()


@pytest.fixture
def redis(tmp_path):
    r = Redis(str(tmp_path))
    yield r
    r.stop()


@pytest.fixture
def nginx_b(tmp_path):
    """A second nginx node of the same fleet."""
    n = Nginx(os.path.join(str(tmp_path), 'b'))
    yield n
    errors = n.stop()
    if errors:
        pytest.fail('nginx node B: bad lines in the error log or '
                    'shutdown problem:\n' + '\n'.join(errors))


def fleet_services(backend):
    """demo.web.api: prod on ok4[0], ok4[1]; canary on ok4[2]."""
    return {SERVICE: {'default': [
        instance('p1', backend.addr(backend.ok4[0]), version='v1'),
        instance('p2', backend.addr(backend.ok4[1]), version='v1'),
        instance('c1', backend.addr(backend.ok4[2]), env='canary',
                 version='v2'),
    ]}}


def start_node(node, backend, redis_line, workers=2, state=True,
               audit=None):
    """nginx with the admin API and `tce_redis ...;` in http{}."""
    token_file = os.path.join(node.dir, 'admin.tokens')
    with open(token_file, 'w') as f:
        f.write('%s  deployer\n' % TOKEN)
    if state:
        node.write_state(fleet_services(backend))
    upstreams = ('    upstream api {\n        tce_service %s;\n'
                 '        tce_canary key=$arg_user;\n    }\n' % SERVICE)
    node.configure(upstreams=upstreams, state=state, workers=workers,
                   http_extra='    %s\n' % redis_line,
                   server_extra=admin_location(token_file, audit=audit)
                   + METRICS_LOCATION)
    node.nworkers = workers
    node.start()


def fleet_status(node):
    st = node.status()
    return st.get('fleet')


def wait_fleet_up(node, timeout=10):
    return wait_for(lambda: (fleet_status(node) or {}).get('state') == 'up'
                    and fleet_status(node), timeout,
                    what='the fleet syncer to be connected')


# ------------------------------------------------------ fake RESP server

class FakeResp:
    """A TCP server speaking just enough RESP to be a bad Redis.

    answer(cmd, st) -> bytes to send (b'' for nothing), or None to close
    the connection.  cmd is the list of the command's arguments (bytes),
    st a dict of the connection's own.
    Every command received is recorded in self.commands."""

    def __init__(self, answer):
        self.answer = answer
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.commands = []
        self.conns = []
        self.accepted = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        f = c.makefile('rb')
        st = {}
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                if not line.startswith(b'*'):
                    continue
                args = []
                for _ in range(int(line[1:])):
                    n = int(f.readline()[1:])
                    args.append(f.read(n + 2)[:-2])
                self.commands.append(args)
                out = self.answer(args, st)
                if out is None:
                    c.shutdown(socket.SHUT_RDWR)
                    c.close()
                    return
                if out:
                    c.sendall(out)
        except (OSError, ValueError):
            return

    def stop(self):
        self.stopping = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def measure(cond, timeout):
    """Polls cond (fast) until true; returns the seconds it took."""
    t0 = time.monotonic()
    wait_for(cond, timeout, interval=0.002)
    return time.monotonic() - t0
