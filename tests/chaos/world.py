"""
The processes of a chaos run, all on loopback: chaos backends
(backend.py, one process each), the Consul double in a process of its
own (so that it can be killed), redis-server, the nginx under test with
the module, and a stock nginx proxying to the same backends.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TESTS, 'integration'))
sys.path.insert(0, os.path.join(TESTS, 'doubles'))

from conftest import (MODULE, NGINX_BIN, Nginx, children, free_port,  # noqa
                      proc_alive, read_from, stop_process, try_get)
from redis_helpers import Redis, RedisHA  # noqa: E402,F401

TOKEN = 'tok-chaos-0123456789abcdef'
CONSUL_SVC = 'chaos.consul.api'
ADMIN_SVC = 'chaos.admin.api'
FILL_SVC = 'chaos.fill.api'
DEPLOY_SVC = 'chaos.deploy.api'


def wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError('timed out after %ss waiting for %s'
                               % (timeout, what))
        time.sleep(0.02)


def http_call(port, method, path, body=None, headers=None, timeout=10):
    """One request on a new connection: (status, headers, body bytes);
    raises OSError/HTTPException on a connection failure."""
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
    try:
        data = None if body is None else (
            body if isinstance(body, bytes) else json.dumps(body).encode())
        h = {'Connection': 'close'}
        if data is not None:
            h['Content-Type'] = 'application/json'
        h.update(headers or {})
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


# ---------------------------------------------------------------- backends

class BackendProc:
    def __init__(self, root, name, delay_ms=0):
        self.name = name
        self.delay_ms = delay_ms
        self.port = free_port()
        self.addr = '127.0.0.1:%d' % self.port
        self.log = open(os.path.join(root, 'backend-%s.log' % name), 'ab')
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, 'backend.py'), '--port',
             str(self.port), '--name', name, '--delay-ms', str(delay_ms)],
            stdout=subprocess.PIPE, stderr=self.log)
        self.stopped = False

    def wait_ready(self):
        line = self.proc.stdout.readline()
        if line.strip() != b'ready':
            raise RuntimeError('backend %s did not start' % self.name)

    def stop(self):
        """SIGTERM: the requests in flight end, then it exits."""
        if not self.stopped:
            self.stopped = True
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()


# ------------------------------------------------------------------ consul

class ConsulProc:
    """tests/doubles/consul_double.py in a process: killed with SIGKILL
    and started again on the same port, empty, like an agent that lost
    its state (the harness registers everything again)."""

    def __init__(self, root):
        self.port = free_port()
        self.url = 'http://127.0.0.1:%d' % self.port
        self.logpath = os.path.join(root, 'consul.log')
        self.proc = None
        self.kills = 0

    def start(self):
        self.log = open(self.logpath, 'ab')
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(TESTS, 'doubles',
                                          'consul_double.py'),
             '--port', str(self.port), '--no-jitter'],
            stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline()
        if b'listening' not in line:
            raise RuntimeError('consul double did not start: %r' % line)

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.log.close()
        self.kills += 1

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc.stdout.close()
            self.log.close()

    def call(self, method, path, body=None, timeout=5):
        """Returns the status; raises OSError when the double is down."""
        status, _, _ = http_call(self.port, method, path, body,
                                 timeout=timeout)
        return status

    def register_many(self, name, pairs):
        """(id, address) pairs of one service registered in one call
        (the zone fill: hundreds at once)."""
        entries = []
        for sid, addr in pairs:
            host, port = addr.rsplit(':', 1)
            entries.append([name, sid, host, int(port), []])
        return self.call('POST', '/_double/register_many',
                         {'entries': entries}, timeout=30)

    def register(self, name, sid, addr, env='prod', weight=1,
                 status='passing'):
        host, port = addr.rsplit(':', 1)
        return self.call('PUT', '/v1/agent/service/register', {
            'Name': name, 'ID': sid, 'Address': host, 'Port': int(port),
            'Meta': {'env': env}, 'Weights': {'Passing': weight,
                                              'Warning': 1},
            'Check': {'TTL': '30s', 'Status': status}})

    def deregister(self, sid):
        return self.call('PUT', '/v1/agent/service/deregister/' + sid,
                         timeout=30)

    def check(self, sid, status):
        verb = {'passing': 'pass', 'warning': 'warn',
                'critical': 'fail'}[status]
        return self.call('PUT', '/v1/agent/check/%s/service:%s'
                         % (verb, sid))

    def fault(self, **kw):
        return self.call('POST', '/_double/fault', kw)

    def clear(self):
        return self.call('POST', '/_double/clear', {})


# ------------------------------------------------------------------- nginx

FRONT_COMMON = """\
    map $status $chaos_log {{ ~^5 1; default 0; }}
    log_format chaos '$pid|$connection|$request_method $request_uri|'
                     '$status|$upstream_addr|$upstream_status|$tce_service|'
                     '$tce_env|$tce_instance';
    access_log {dir}/access.log chaos if=$chaos_log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_max_body_size 1m;
    default_type text/plain;

    tce_zone tce {zone};
    tce_state {dir}/state.json;
    {redis}
    tce_metrics_expire 2s;
{extra}
    server {{
        listen 127.0.0.1:{port} reuseport;
        add_header X-Pid $pid always;

        location = /ready {{ access_log off; return 200 "ready $pid\\n"; }}
        location = /tce/status {{ access_log off; tce_status; }}
        location = /metrics {{ access_log off; tce_metrics; }}
        location /api/ {{
            access_log off;
            tce_admin;
            tce_admin_token_file {dir}/admin.tokens;
        }}
{locations}
    }}
"""

# node A: the Consul-fed service (and the one that fills the zone)
FRONT_A = """\
    tce_consul {consul} wait=5s;
    tce_consul_snapshot {dir}/consul-snapshot.json;

    upstream consul_up {{
        tce_service {csvc} max_fails=1 fail_timeout=2s;
        tce_canary weight=20;
        tce_keepalive 32;
    }}
    upstream fill_up {{
        tce_service {fsvc};
    }}
"""
FRONT_A_LOC = """\
        location /c/ {
            proxy_pass http://consul_up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location /f/ {
            proxy_pass http://fill_up;
        }
"""

# node B: no Consul (with tce_consul every tce_service name is watched,
# and the API adds and removes only instances Consul does not feed)
FRONT_B = """\
    upstream admin_up {{
        tce_service {asvc};
        tce_canary key=$arg_user;
        keepalive 32;
    }}
"""
FRONT_B_LOC = """\
        location /a/ {
            proxy_pass http://admin_up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
"""

# node C: no fleet (deploys are not driven through tce_redis yet), a
# service of its state file moved by progressive deploys
FRONT_C = """\
    upstream deploy_up {{
        tce_service {dsvc};
        keepalive 32;
    }}
"""
FRONT_C_LOC = """\
        location /d/ {
            proxy_pass http://deploy_up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
"""


STOCK_CONF = """\
{user}
worker_processes 2;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_max_body_size 1m;
    upstream consul_up {{
{cservers}
        keepalive 32;
    }}
    upstream admin_up {{
{aservers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        add_header X-Pid $pid always;
        location = /ready {{ return 200 "ready $pid\\n"; }}
        location /c/ {{
            proxy_pass http://consul_up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location /a/ {{
            proxy_pass http://admin_up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def worker_pids(master_pid):
    """pids of the serving workers of a master (not shutting down)."""
    return {pid for pid, title in children(master_pid).items()
            if 'worker process' in title and 'shutting down' not in title}


def client_ports(pid, listen_port):
    """The client-side ports of the connections a worker holds on
    127.0.0.1:listen_port (its fds matched against /proc/net/tcp)."""
    inodes = set()
    fddir = '/proc/%d/fd' % pid
    for fd in os.listdir(fddir):
        try:
            link = os.readlink(os.path.join(fddir, fd))
        except OSError:
            continue
        m = re.match(r'socket:\[(\d+)\]', link)
        if m:
            inodes.add(m.group(1))
    ports = set()
    with open('/proc/net/tcp') as f:
        next(f)
        for line in f:
            p = line.split()
            local, remote, inode = p[1], p[2], p[9]
            if inode in inodes and int(local.split(':')[1], 16) \
                    == listen_port and remote.split(':')[1] != '0000':
                ports.add(int(remote.split(':')[1], 16))
    return ports


def fd_counts(pid):
    """(sockets, other fds) open in a process."""
    socks = other = 0
    try:
        fds = os.listdir('/proc/%d/fd' % pid)
    except OSError:
        return None
    for fd in fds:
        try:
            link = os.readlink('/proc/%d/fd/%s' % (pid, fd))
        except OSError:
            continue
        if link.startswith('socket:'):
            socks += 1
        else:
            other += 1
    return socks, other


def rss_kb(pid, field='RssAnon'):
    """A process's resident memory in KiB: by default its own (RssAnon:
    heap and stacks, not the shared zone's pages it touched)."""
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class Front(Nginx):
    """The nginx under test (conftest's Nginx, the chaos config)."""

    def __init__(self, root, name, consul_url, redis_line, zone):
        Nginx.__init__(self, os.path.join(root, name))
        self.name = name
        self.consul_url = consul_url
        self.redis_line = redis_line
        self.zone = zone
        with open(os.path.join(self.dir, 'admin.tokens'), 'w') as f:
            f.write('%s chaos\n' % TOKEN)

    def write_conf(self):
        """Node A (consul_url given): the Consul-fed service; node B:
        the API-fed one; node C (no fleet): the deploys' service."""
        if self.name == 'tce-c':
            extra = FRONT_C.format(dsvc=DEPLOY_SVC)
            loc = FRONT_C_LOC
        elif self.consul_url:
            extra = FRONT_A.format(dir=self.dir, consul=self.consul_url,
                                   csvc=CONSUL_SVC, fsvc=FILL_SVC)
            loc = FRONT_A_LOC
        else:
            extra = FRONT_B.format(asvc=ADMIN_SVC)
            loc = FRONT_B_LOC
        self.configure(raw_http=FRONT_COMMON.format(
            dir=self.dir, zone=self.zone, redis=self.redis_line,
            extra=extra, locations=loc, port=self.port))

    def signal_reload(self):
        """nginx -s reload, as an operator types it."""
        subprocess.run([NGINX_BIN, '-p', self.dir + '/', '-c',
                        self.conf_path, '-s', 'reload'], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=30)

    def api(self, method, path, body=None, headers=None, timeout=10):
        h = {'Authorization': 'Bearer ' + TOKEN}
        h.update(headers or {})
        return http_call(self.port, method, '/api/v1' + path, body, h,
                         timeout)


class Stock:
    """Stock nginx (no module) proxying to fixed backends."""

    def __init__(self, root, cservers, aservers):
        self.dir = os.path.join(root, 'stock')
        os.makedirs(self.dir)
        self.port = free_port()
        self.conf_path = os.path.join(self.dir, 'nginx.conf')
        self.error_log = os.path.join(self.dir, 'error.log')
        with open(self.conf_path, 'w') as f:
            f.write(STOCK_CONF.format(
                user='user root;' if os.geteuid() == 0 else '',
                dir=self.dir, port=self.port,
                cservers='\n'.join('        server %s;' % a
                                   for a in cservers),
                aservers='\n'.join('        server %s;' % a
                                   for a in aservers)))
        self.proc = None

    def start(self):
        self.stderr = open(os.path.join(self.dir, 'stderr.log'), 'ab')
        self.proc = subprocess.Popen(
            [NGINX_BIN, '-p', self.dir + '/', '-c', self.conf_path,
             '-g', 'daemon off;'], stdout=self.stderr, stderr=self.stderr)
        wait_until(lambda: len(worker_pids(self.proc.pid)) == 2
                   and try_get(self.port, '/ready'), 10,
                   'stock nginx to answer')

    def stop(self):
        if self.proc:
            stop_process(self.proc)
            self.stderr.close()
