"""
Fixtures of the integration tests (in the style of NGINX Unit's suite).

Every test gets its own temporary directory, a REAL backend nginx
process (stock nginx, no module) listening on several loopback ports,
and an nginx-under-test that loads the built module.  Nothing waits a
fixed time for a condition: every wait polls with a deadline.

    backend   Backend: ok ports (127.0.0.1 and [::1]), a 502 port, a 500
              port, a hung port (accepts, never answers), a dead port
              (nothing listening); its access log records
              $server_port $connection $connection_requests per request.
    nginx     Nginx: configure() writes nginx.conf from the template,
              write_state() the JSON state file, check() runs nginx -t,
              start(), reload(), get(), status(), access_entries()...
              Teardown stops every process and fails the test when the
              error log holds [alert], [emerg], a segfault or a worker
              that exited on a signal (unless the test allowed it).
"""

import collections
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time

import pytest


NGINX_BIN = os.environ.get('TCE_NGINX', '/usr/sbin/nginx')
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
MODULE = os.path.abspath(os.environ.get(
    'TCE_MODULE',
    os.path.join(TESTS_DIR, '..', '..', 'build', 'ngx_tce_module.so')))

# TCE_VALGRIND=1 (make valgrind): the nginx under test, and its nginx -t,
# run inside valgrind memcheck; every deadline of the fixtures (and of
# wait_for) is multiplied by SLOW; teardown fails the test on any
# memcheck error and on a definite leak whose stack goes through the
# module.  nginx's own leaks at exit are in tests/valgrind.supp.
VALGRIND = os.environ.get('TCE_VALGRIND', '') not in ('', '0')
SLOW = float(os.environ.get('TCE_VALGRIND_SLOW', '8')) if VALGRIND else 1
VALGRIND_SUPP = os.path.abspath(os.path.join(TESTS_DIR, '..',
                                             'valgrind.supp'))
VALGRIND_ERROR_EXIT = 99
# a stack frame of ours: in the .so, or a function with our prefixes
MODULE_FRAME = re.compile(r'ngx_tce_module\.so|\bngx_tce_|\bngx_http_tce_')
# the headings of memcheck's error reports (leaks are handled apart)
VALGRIND_ERRORS = ('Invalid ', 'Conditional jump', 'Use of uninitialised',
                   'Syscall param', 'Mismatched free', 'Source and dest',
                   'Argument ', 'Process terminating with default action')

BAD_LOG_MARKERS = ('[alert]', '[emerg]', 'segfault', 'exited on signal',
                   'core dumped')

SERVICE = 'demo.web.api'

# one access log line of the nginx under test, fields joined by '|'
LOG_FIELDS = ('pid', 'connection', 'uri', 'status', 'upstream_addr',
              'upstream_status', 'tce_service', 'tce_cluster', 'tce_env',
              'tce_instance')
LOG_FORMAT = '|'.join(('$pid', '$connection', '$request_uri', '$status',
                       '$upstream_addr', '$upstream_status',
                       '$tce_service', '$tce_cluster', '$tce_env',
                       '$tce_instance'))


# --------------------------------------------------------------- markers

# @pytest.mark.novalgrind('why, and which test runs that C path under
# memcheck'): the test runs in the plain pass only, skipped under
# TCE_VALGRIND.  For tests whose cost is load, waiting or repetition
# (many requests, long fault or outage sequences, variants of one code
# path), never for a C path no other test runs under memcheck
# (docs/style.md, "Tests under valgrind").

def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'novalgrind(reason): run in the plain pass only, not '
        'with nginx inside valgrind memcheck (make valgrind)')


def pytest_collection_modifyitems(config, items):
    if not VALGRIND:
        return
    for item in items:
        mark = item.get_closest_marker('novalgrind')
        if mark is None:
            continue
        if not mark.args:
            raise pytest.UsageError(
                '%s: novalgrind needs a reason naming the test that runs '
                'the same C path under memcheck' % item.nodeid)
        item.add_marker(pytest.mark.skip(
            reason='plain pass only (novalgrind): %s' % mark.args[0]))


# --------------------------------------------------------------- helpers

def wait_for(cond, timeout=10.0, interval=0.02, what='condition'):
    """Polls cond() until it returns a true value; returns that value.
    Fails the test with `what` when the deadline passes."""
    timeout *= SLOW
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail('timed out after %.1fs waiting for %s'
                        % (timeout, what))
        time.sleep(interval)


def free_port(family=socket.AF_INET):
    """A currently free loopback port for a server to listen on.

    Taken below the kernel's ephemeral range (ip_local_port_range), so
    that no client connection of this machine (nginx to a backend, curl
    to Consul) can be holding it as its local port when the server
    binds it a moment later.  Under pytest-xdist each worker draws from
    its own slice of that range: a port given out by one worker and not
    yet bound is never given out by another."""
    host = '::1' if family == socket.AF_INET6 else '127.0.0.1'
    low, high = port_range()
    for _ in range(1000):
        port = random.randrange(low, high)
        if port in _recent_ports:
            continue                    # given out, maybe not bound yet
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            _recent_ports.append(port)
            return port
    raise RuntimeError('no free port in [%d, %d)' % (low, high))


# the ports free_port() gave out lately: a port is only bound when its
# server starts, so two calls of one test could otherwise draw the same
# one (a backend then fails with "duplicate listen")
_recent_ports = collections.deque(maxlen=256)


def port_range():
    """[low, high) of the ports free_port() draws from: 12,000 ports
    below the ephemeral range, split evenly between the xdist workers
    (PYTEST_XDIST_WORKER=gw<i>, PYTEST_XDIST_WORKER_COUNT=<n>)."""
    high = ephemeral_low()
    low = max(1024, high - 12000)
    worker = os.environ.get('PYTEST_XDIST_WORKER', '')
    count = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1') or 1)
    if worker.startswith('gw') and worker[2:].isdigit() and count > 1:
        i, size = int(worker[2:]) % count, (high - low) // count
        low, high = low + i * size, low + (i + 1) * size
    return low, high


def ephemeral_low():
    try:
        with open('/proc/sys/net/ipv4/ip_local_port_range') as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def dead_socket():
    """A loopback socket bound but never listening: a connection to its
    port is refused, and no other process can take the port while the
    socket is open (a port merely closed could be reused by anyone)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(('127.0.0.1', 0))
    return s


def valgrind_blocks(text):
    """A memcheck log -> its reports, each a list of lines without the
    ==pid== prefix (heading first), separated by blank lines."""
    blocks, cur = [], []
    for line in text.splitlines():
        line = re.sub(r'^==\d+== ?', '', line)
        if line.strip():
            cur.append(line.rstrip())
        elif cur:
            blocks.append(cur)
            cur = []
    if cur:
        blocks.append(cur)
    return blocks


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self):
        return self.body.decode('utf-8', 'replace')

    def __repr__(self):
        return 'Response(%d, %r)' % (self.status, self.body[:200])


def http_get(port, path='/', host='127.0.0.1', headers=None, timeout=10):
    """One request on a fresh connection (Connection: close)."""
    h = {'Connection': 'close'}
    h.update(headers or {})
    conn = http.client.HTTPConnection(host, port, timeout=timeout * SLOW)
    try:
        conn.request('GET', path, headers=h)
        resp = conn.getresponse()
        body = resp.read()
        return Response(resp.status, dict(resp.getheaders()), body)
    finally:
        conn.close()


def try_get(port, path='/', host='127.0.0.1', timeout=2):
    try:
        return http_get(port, path, host=host, timeout=timeout)
    except (OSError, http.client.HTTPException):
        return None


def proc_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(')') + 2] != 'Z'


def children(ppid):
    """{pid: title} of the live children of ppid (like ps --ppid)."""
    out = {}
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % name) as f:
                stat = f.read()
            with open('/proc/%s/cmdline' % name, 'rb') as f:
                cmd = f.read()
        except OSError:
            continue
        rest = stat[stat.rindex(')') + 2:].split()
        if rest[0] == 'Z' or int(rest[1]) != ppid:
            continue
        out[int(name)] = cmd.replace(b'\0', b' ').decode(
            'utf-8', 'replace').strip()
    return out


def read_from(path, offset=0):
    try:
        with open(path, 'rb') as f:
            f.seek(offset)
            return f.read().decode('utf-8', 'replace')
    except FileNotFoundError:
        return ''


def file_size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def bad_log_lines(text, allowed=()):
    bad = []
    for line in text.splitlines():
        if any(m in line for m in BAD_LOG_MARKERS):
            if not any(a in line for a in allowed):
                bad.append(line)
    return bad


def stop_process(proc, sig=None, timeout=10):
    """Stops a Popen; returns an error text or None.  By default
    SIGTERM; SIGQUIT under valgrind: on SIGTERM the master kills the
    workers still alive after ~1.5s, before memcheck has written their
    leak reports."""
    if sig is None:
        sig = signal.SIGQUIT if VALGRIND else signal.SIGTERM
    timeout *= SLOW
    if proc.poll() is not None:
        return None
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
        return None
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return 'pid %d did not exit within %ds of signal %d' % (
            proc.pid, timeout, sig)


def instance(id, address, weight=None, env=None, state=None, version=None,
             override=None):
    """One instance object of the state file."""
    inst = {'id': id, 'address': address}
    for k, v in (('weight', weight), ('env', env), ('state', state),
                 ('version', version), ('override', override)):
        if v is not None:
            inst[k] = v
    return inst


def state_doc(services):
    """{service: {cluster: [instance...]}} -> the state file document."""
    return {'version': 1, 'services': {
        svc: {'clusters': {cl: {'instances': insts}
                           for cl, insts in clusters.items()}}
        for svc, clusters in services.items()}}


def addr_list(upstream_addr):
    """$upstream_addr -> list of addresses tried, in order."""
    if upstream_addr in ('', '-'):
        return []
    return [a.strip() for a in re.split(r'[,:]\s', upstream_addr)
            if a.strip() not in ('', '-')]


# --------------------------------------------------------------- backend

BACKEND_CONF = """\
worker_processes 1;
{user}
pid {dir}/backend.pid;
error_log {dir}/backend-error.log info;
events {{ worker_connections 1024; }}
http {{
    log_format bk '$server_port|$connection|$connection_requests|'
                  '$request_uri|$http_connection';
    access_log {dir}/backend-access.log bk;
    client_body_temp_path {dir}/bk_body;
    proxy_temp_path {dir}/bk_proxy;
    fastcgi_temp_path {dir}/bk_fastcgi;
    uwsgi_temp_path {dir}/bk_uwsgi;
    scgi_temp_path {dir}/bk_scgi;
    keepalive_requests 10000;
    keepalive_timeout 60s;
    default_type text/plain;

    server {{
{ok_listens}
        location / {{ return 200 "$server_port\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{p502};
        location / {{ return 502 "bad gateway $server_port\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{p500};
        location / {{ return 500 "error $server_port\\n"; }}
    }}
}}
"""


class Backend:
    """A real stock nginx answering `return 200 "$server_port\\n"` on
    several loopback ports, plus failing and hung ports."""

    N_OK4 = 4
    N_OK6 = 2

    def __init__(self, root):
        self.dir = os.path.join(root, 'backend')
        os.makedirs(self.dir)
        self.ok4 = [free_port() for _ in range(self.N_OK4)]
        self.ok6 = [free_port(socket.AF_INET6) for _ in range(self.N_OK6)]
        self.p502 = free_port()
        self.p500 = free_port()
        self._dead = dead_socket()
        self.dead = self._dead.getsockname()[1]
        # hung: accepts, reads the request, never answers: a request
        # there times out.  hung_requests counts the requests received.
        self._hung = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._hung.bind(('127.0.0.1', 0))
        self._hung.listen(128)
        self.hung = self._hung.getsockname()[1]
        self.hung_requests = 0
        self._hung_conns = []
        self._hung_thread = threading.Thread(target=self._hung_loop,
                                             daemon=True)
        self._hung_thread.start()
        self.access_log = os.path.join(self.dir, 'backend-access.log')
        self.error_log = os.path.join(self.dir, 'backend-error.log')
        self.proc = None

    def _hung_loop(self):
        while True:
            try:
                c, _ = self._hung.accept()
            except OSError:
                return                  # closed by stop()
            c.settimeout(5)
            try:
                if c.recv(65536):
                    self.hung_requests += 1
            except OSError:
                pass
            self._hung_conns.append(c)  # held open, never answered

    def addr(self, port, v6=False):
        return ('[::1]:%d' if v6 else '127.0.0.1:%d') % port

    def start(self):
        listens = ['        listen 127.0.0.1:%d;' % p for p in self.ok4]
        listens += ['        listen [::1]:%d;' % p for p in self.ok6]
        conf = BACKEND_CONF.format(
            dir=self.dir, ok_listens='\n'.join(listens), p502=self.p502,
            p500=self.p500,
            user='user root;' if os.geteuid() == 0 else '')
        path = os.path.join(self.dir, 'backend.conf')
        with open(path, 'w') as f:
            f.write(conf)
        self.stderr = open(os.path.join(self.dir, 'stderr.log'), 'wb')
        self.proc = subprocess.Popen(
            [NGINX_BIN, '-p', self.dir + '/', '-c', path,
             '-g', 'daemon off;'],
            stdout=self.stderr, stderr=self.stderr)

        def ready():
            if self.proc.poll() is not None:
                pytest.fail('backend nginx exited: %s'
                            % read_from(self.error_log))
            for p in self.ok4 + [self.p502, self.p500]:
                if try_get(p, '/ready') is None:
                    return False
            for p in self.ok6:
                if try_get(p, '/ready', host='::1') is None:
                    return False
            return True

        wait_for(ready, 10, what='backend nginx to answer')
        self.log_offset = file_size(self.access_log)

    def entries(self):
        """Backend access log since start(), without the readiness
        probes (a probe's line may land after start() returned)."""
        out = []
        for line in read_from(self.access_log, self.log_offset).splitlines():
            port, conn, creq, uri, hconn = line.split('|')
            if uri == '/ready':         # the fixture's own probes
                continue
            out.append({'port': int(port), 'connection': int(conn),
                        'connection_requests': int(creq), 'uri': uri,
                        'http_connection': hconn})
        return out

    def stop(self):
        errors = []
        if self.proc is not None:
            err = stop_process(self.proc)
            if err:
                errors.append('backend: ' + err)
            self.stderr.close()
        try:
            self._hung.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._hung.close()
        self._dead.close()
        self._hung_thread.join(5)
        for c in self._hung_conns:
            c.close()
        text = read_from(self.error_log)
        errors += ['backend: ' + l for l in bad_log_lines(text)]
        return errors


@pytest.fixture
def backend(tmp_path):
    b = Backend(str(tmp_path))
    b.start()
    yield b
    errors = b.stop()
    if errors:
        pytest.fail('\n'.join(errors))


# ------------------------------------------------------ nginx under test

NGINX_CONF = """\
load_module {module};
{user}
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
{main_extra}
events {{ worker_connections 1024; }}
http {{
    log_format tce '{log_format}';
    access_log {dir}/access.log tce;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    default_type text/plain;

    {zone}
    {state}
{http_extra}
{upstreams}
    server {{
        listen 127.0.0.1:{port}{listen_params};
        add_header X-Pid $pid always;

        location = /ready {{
            access_log off;
            return 200 "ready $pid\\n";
        }}

{status_location}
        location / {{
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
{location}
        }}
{server_extra}
    }}
}}
"""

STATUS_LOCATION = """\
        location = /tce/status {
            access_log off;
            tce_status;
        }
"""

DEFAULT_UPSTREAM = """\
    upstream api {
        tce_service demo.web.api;
    }
"""


class Nginx:
    """The nginx under test, with the module loaded."""

    def __init__(self, root):
        self.dir = os.path.join(root, 'nginx')
        os.makedirs(self.dir)
        self.conf_path = os.path.join(self.dir, 'nginx.conf')
        self.state_path = os.path.join(self.dir, 'state.json')
        self.error_log = os.path.join(self.dir, 'error.log')
        self.access_log = os.path.join(self.dir, 'access.log')
        self.stderr_path = os.path.join(self.dir, 'stderr.log')
        self.port = free_port()
        self.nworkers = 2
        self.proc = None
        self.allowed_log = set()     # markers a test expects in the log
        self.log_offset = 0

    # -- configuration

    def configure(self, upstreams=DEFAULT_UPSTREAM, location='',
                  http_extra='', server_extra='', main_extra='',
                  zone='tce_zone tce 1m;', state=True, listen_params=None,
                  status=True, workers=2, raw_http=None):
        """Writes nginx.conf.  workers: worker_processes.
        status: a /tce/status location.  state=True: tce_state on self.state_path;
        a string: that tce_state line verbatim; None/False: no tce_state.
        raw_http replaces the whole http{} body when given."""
        if state is True:
            state = 'tce_state %s;' % self.state_path
        elif not state:
            state = ''
        if listen_params is None:
            # reuseport: the kernel spreads fresh connections over both
            # workers, so per-worker behaviour is observable
            listen_params = ' reuseport'
        conf = NGINX_CONF.format(
            module=MODULE, dir=self.dir, port=self.port,
            user='user root;' if os.geteuid() == 0 else '',
            log_format=LOG_FORMAT, zone=zone or '', state=state,
            http_extra=http_extra, upstreams=upstreams, location=location,
            server_extra=server_extra, main_extra=main_extra,
            listen_params=listen_params, workers=workers,
            status_location=STATUS_LOCATION if status else '')
        if raw_http is not None:
            conf = ('load_module %s;\n%s\nworker_processes 2;\n'
                    'pid %s/nginx.pid;\nerror_log %s info;\n'
                    'events { worker_connections 1024; }\n'
                    'http {\n%s\n}\n'
                    % (MODULE, 'user root;' if os.geteuid() == 0 else '',
                       self.dir, self.error_log, raw_http))
        self.nworkers = workers
        with open(self.conf_path, 'w') as f:
            f.write(conf)
        return conf

    def write_state(self, services=None, raw=None):
        """Writes the state file atomically: services as for state_doc(),
        or raw text."""
        text = raw if raw is not None else json.dumps(
            state_doc(services), indent=1)
        tmp = self.state_path + '.tmp'
        with open(tmp, 'w') as f:
            f.write(text)
        os.rename(tmp, self.state_path)
        return text

    def check(self):
        """nginx -t: returns (rc, stderr)."""
        p = subprocess.run(
            self.command() + ['-t', '-p', self.dir + '/', '-c',
                              self.conf_path],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            timeout=30 * SLOW)
        return p.returncode, p.stderr.decode('utf-8', 'replace')

    # -- processes

    def command(self):
        """argv[:n] that runs the nginx under test: NGINX_BIN, inside
        memcheck under TCE_VALGRIND (one log per process, vg.<pid>.log).
        """
        if not VALGRIND:
            return [NGINX_BIN]
        return ['valgrind', '--tool=memcheck', '--leak-check=full',
                '--error-exitcode=%d' % VALGRIND_ERROR_EXIT,
                '--show-leak-kinds=definite',
                '--errors-for-leak-kinds=definite',
                '--trace-children=yes', '--child-silent-after-fork=no',
                '--num-callers=30',
                '--log-file=%s/vg.%%p.log' % self.dir,
                '--suppressions=%s' % VALGRIND_SUPP, NGINX_BIN]

    def valgrind_reports(self):
        """The memcheck reports of every vg.*.log of this nginx that
        fail the test: errors, and definite leaks through the module."""
        out = []
        for name in sorted(os.listdir(self.dir)):
            if not re.match(r'vg\.\d+\.log$', name):
                continue
            text = read_from(os.path.join(self.dir, name))
            for block in valgrind_blocks(text):
                head = block[0]
                if 'definitely lost' in head:
                    bad = any(MODULE_FRAME.search(l) for l in block[1:])
                elif head.startswith('Process terminating'):
                    bad = not re.search(r'signal (9|15) ', head)
                else:
                    bad = head.startswith(VALGRIND_ERRORS)
                if bad:
                    out.append('%s:\n    %s' % (name, '\n    '.join(block)))
        return out

    def start(self):
        assert os.path.exists(MODULE), (
            'module not built: %s (run make)' % MODULE)
        self.stderr = open(self.stderr_path, 'ab')
        self.proc = subprocess.Popen(
            self.command() + ['-p', self.dir + '/', '-c', self.conf_path,
                              '-g', 'daemon off;'],
            stdout=self.stderr, stderr=self.stderr)

        def ready():
            if self.proc.poll() is not None:
                pytest.fail('nginx exited with %s at start:\n%s\n%s' % (
                    self.proc.returncode, read_from(self.stderr_path),
                    read_from(self.error_log)))
            if len(self.workers()) != self.nworkers:
                return False
            r = try_get(self.port, '/ready')
            return r is not None and r.status == 200

        wait_for(ready, 10, what='nginx under test to answer')
        self.log_offset = file_size(self.access_log)

    def workers(self):
        """pids of the serving workers (not the ones shutting down)."""
        if VALGRIND:
            # the process title is memcheck's command line: every child
            # is a worker, minus those that logged their shutdown
            gone = set(int(p) for p in re.findall(
                r'\] (\d+)#\d+: (?:gracefully shutting down|exiting)$',
                read_from(self.error_log), re.M))
            return set(children(self.proc.pid)) - gone
        return {pid for pid, title in children(self.proc.pid).items()
                if 'worker process' in title
                and 'shutting down' not in title}

    def all_children(self):
        return set(children(self.proc.pid))

    def reload(self, timeout=10):
        """SIGHUP; returns when a new set of workers serves and the old
        ones have exited.  Fails the test if the reload is refused."""
        old = self.all_children()
        offset = file_size(self.error_log)
        self.proc.send_signal(signal.SIGHUP)

        def switched():
            log = read_from(self.error_log, offset)
            if '[emerg]' in log:
                pytest.fail('reload refused:\n' + log)
            if self.proc.poll() is not None:
                pytest.fail('nginx exited during reload:\n' + log)
            new = self.workers() - old
            return (len(new) == self.nworkers
                    and not (self.workers() & old))

        wait_for(switched, timeout, what='new workers after reload')
        wait_for(lambda: not any(proc_alive(p) for p in old), timeout,
                 what='old workers to exit after reload (pids %s)'
                 % sorted(old))
        r = wait_for(lambda: try_get(self.port, '/ready'), timeout,
                     what='nginx to answer after reload')
        if 'X-Pid' in r.headers:
            assert int(r.headers['X-Pid']) in self.workers(), r.headers

    def reload_refused(self, timeout=10):
        """SIGHUP with a config that must be refused: returns the error
        log written by the attempt; checks the old workers keep serving.
        """
        self.allowed_log.add('[emerg]')
        old = self.workers()
        offset = file_size(self.error_log)
        self.proc.send_signal(signal.SIGHUP)
        log = wait_for(
            lambda: ('[emerg]' in read_from(self.error_log, offset)
                     and read_from(self.error_log, offset)),
            timeout, what='[emerg] in the error log after a bad reload')
        assert self.proc.poll() is None, 'nginx exited on a bad reload'
        assert self.workers() == old, 'workers changed on a refused reload'
        return log

    def stop(self):
        errors = []
        if self.proc is not None:
            err = stop_process(self.proc)
            if err:
                errors.append(err)
            if self.proc.returncode not in (0, None):
                errors.append('nginx master exited with %s'
                              % self.proc.returncode)
            self.stderr.close()
        text = read_from(self.error_log) + read_from(self.stderr_path)
        errors += bad_log_lines(text, self.allowed_log)
        if VALGRIND:
            errors += self.valgrind_reports()
        return errors

    # -- client side

    def get(self, path='/', headers=None, timeout=10):
        return http_get(self.port, path, headers=headers, timeout=timeout)

    def status(self):
        r = self.get('/tce/status')
        assert r.status == 200, r
        return json.loads(r.body)

    def access_entries(self, since=None):
        """Access log entries (dicts of LOG_FIELDS), since start()."""
        text = read_from(self.access_log,
                         self.log_offset if since is None else since)
        out = []
        for line in text.splitlines():
            parts = line.split('|')
            assert len(parts) == len(LOG_FIELDS), line
            e = dict(zip(LOG_FIELDS, parts))
            e['pid'] = int(e['pid'])
            e['addrs'] = addr_list(e['upstream_addr'])
            out.append(e)
        return out

    def wait_entries(self, prefix, n, timeout=10):
        """Polls until the access log has n entries whose URI starts with
        prefix; returns them in log order."""
        def have():
            es = [e for e in self.access_entries()
                  if e['uri'].startswith(prefix)]
            return es if len(es) >= n else None
        return wait_for(have, timeout,
                        what='%d access log entries for %s' % (n, prefix))

    def masked(self, text):
        """text with this test's paths replaced: the temporary directory
        holds the test's name, which must not satisfy an assertion on a
        message.  The state file becomes <state-file>."""
        text = text.replace(self.state_path, '<state-file>')
        text = text.replace(self.conf_path, '<nginx.conf>')
        return text.replace(os.path.dirname(self.dir), '<tmp>')

    def wait_error_line(self, pred, since, timeout=5, what='error log line'):
        def find():
            for line in read_from(self.error_log, since).splitlines():
                if pred(line):
                    return line
            return None
        return wait_for(find, timeout, what=what)


@pytest.fixture
def nginx(tmp_path):
    n = Nginx(str(tmp_path))
    yield n
    errors = n.stop()
    if errors:
        pytest.fail('nginx under test: bad lines in the error log or '
                    'shutdown problem:\n' + '\n'.join(errors))
