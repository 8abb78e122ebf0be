"""
Loopback HTTP/1.1 backends (keepalive) that take their time and keep a
record of every request: the port, when it arrived and when its answer
was written, from the backend's own clock.  GET /<ms> sleeps <ms>
milliseconds; any other path sleeps the backend's default.
"""

import http.server
import threading
import time


class SlowBackends:
    def __init__(self, n, delay_ms=200):
        self.delay_ms = delay_ms
        self.lock = threading.Lock()
        self.log = []               # [port, start, end (None: running)]
        self.servers = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def do_GET(self):
                port = self.server.server_address[1]
                rec = [port, time.time(), None]
                with owner.lock:
                    owner.log.append(rec)
                try:
                    ms = int(self.path.strip('/').split('/')[0])
                except ValueError:
                    ms = owner.delay_ms
                time.sleep(ms / 1000.0)
                body = b'%d\n' % port
                self.send_response(200)
                self.send_header('Content-Type', 'text/plain')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                rec[2] = time.time()

            def log_message(self, *args):
                pass

        for _ in range(n):
            s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
            s.daemon_threads = True
            t = threading.Thread(target=s.serve_forever, daemon=True)
            t.start()
            self.servers.append((s, t))
        self.ports = [s.server_address[1] for s, _ in self.servers]

    def addr(self, i):
        return '127.0.0.1:%d' % self.ports[i]

    def requests(self, port=None):
        """Copies of the records, of one port or all."""
        with self.lock:
            return [list(r) for r in self.log
                    if port is None or r[0] == port]

    def running(self, port):
        return sum(1 for r in self.requests(port) if r[2] is None)

    def stop(self):
        for s, t in self.servers:
            s.shutdown()
            s.server_close()
            t.join(5)
