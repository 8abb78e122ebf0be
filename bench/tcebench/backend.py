"""The backend: one real nginx (not under valgrind) on N loopback ports.

With logging on it writes the port of every request it answers, so a
run can check that the balancer under test spread its requests over all
the instances (a balancer that always picks one peer would look cheap).
"""

import collections
import os
import time

from . import confs
from .procs import BenchError, wait_for_port


class Backend:

    def __init__(self, ctx, name, count, log_requests):
        self.ctx = ctx
        self.name = name
        self.ports = ctx.ports.take(count)
        self.log_path = ctx.path(name + "-access.log") if log_requests \
            else None
        self.proc = None

    def start(self):
        conf = confs.write_backend_conf(self.ctx.tmp, self.name,
                                        self.ports, self.log_path)
        if self.log_path is not None:
            open(self.log_path, "w").close()
        argv = self.ctx.nginx_argv(conf, self.name)
        self.proc = self.ctx.procs.start(argv, self.ctx.path(
            self.name + ".out"))
        for port in (self.ports[0], self.ports[-1]):
            wait_for_port(port, self.proc, timeout=30)
        return self

    def stop(self):
        if self.proc is not None:
            self.ctx.procs.stop(self.proc, timeout=30)
            self.proc = None

    def log_offset(self):
        return os.path.getsize(self.log_path)

    def hits_since(self, offset, expected, timeout=10):
        """Requests per port logged after offset, and the number of
        connections they came on; polls until all the expected requests
        are logged (the log line follows the answer).
        """
        deadline = time.monotonic() + timeout
        while True:
            lines = self._lines_since(offset)
            if len(lines) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if len(lines) != expected:
            raise BenchError("backend %s logged %d requests, expected %d"
                             % (self.name, len(lines), expected))
        entries = [line.split() for line in lines]
        hits = collections.Counter(int(port) for port, _ in entries)
        connections = len(set(conn for _, conn in entries))
        return [hits.get(port, 0) for port in self.ports], connections

    def _lines_since(self, offset):
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            data = f.read()
        # a line still being written has no newline yet
        return data.split(b"\n")[:-1]
