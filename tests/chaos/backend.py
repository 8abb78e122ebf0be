#!/usr/bin/env python3
"""
A chaos backend: one process, one loopback port, HTTP/1.1 keepalive.
GET answers pattern(rid, size) (wire.py), POST echoes its body; both
after `delay` ms (at least --delay-ms), with status `status` and
X-Backend: <name>.  SIGTERM: stops accepting, lets the requests in
flight finish, exits (a platform stopping a drained instance).

    backend.py --port P --name NAME [--delay-ms D]
"""

import argparse
import http.server
import os
import signal
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wire import pattern  # noqa: E402


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'chaos-backend'

    def _answer(self, body_in):
        srv = self.server
        parts = urlsplit(self.path)
        q = parse_qs(parts.query)
        rid = parts.path.rsplit('/', 1)[-1]
        size = int(q.get('size', ['0'])[0])
        delay = max(int(q.get('delay', ['0'])[0]), srv.delay_ms)
        status = int(q.get('status', ['200'])[0])
        with srv.lock:
            srv.inflight += 1
        try:
            if delay:
                time.sleep(delay / 1000.0)
            body = body_in if self.command == 'POST' else pattern(rid, size)
            self.send_response(status)
            self.send_header('X-Backend', srv.name)
            self.send_header('Content-Type', 'application/octet-stream')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        finally:
            with srv.lock:
                srv.inflight -= 1
                srv.served += 1

    def do_GET(self):
        self._answer(b'')

    def do_POST(self):
        n = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(n) if n else b''
        if len(body) != n:
            self.close_connection = True
            return
        self._answer(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        pass                        # a proxy worker killed mid-answer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--name', required=True)
    ap.add_argument('--delay-ms', type=int, default=0)
    args = ap.parse_args()
    srv = Server(('127.0.0.1', args.port), Handler)
    srv.name = args.name
    srv.delay_ms = args.delay_ms
    srv.lock = threading.Lock()
    srv.inflight = 0
    srv.served = 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    t = threading.Thread(target=srv.serve_forever,
                         kwargs={'poll_interval': 0.05}, daemon=True)
    t.start()
    print('ready', flush=True)
    stop.wait()
    srv.shutdown()
    srv.server_close()
    deadline = time.monotonic() + 30
    while srv.inflight and time.monotonic() < deadline:
        time.sleep(0.01)


if __name__ == '__main__':
    main()
