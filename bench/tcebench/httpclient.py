"""A tiny HTTP/1.1 keepalive client: N sequential GETs on one socket.

Sequential (one request in flight) rather than pipelined, so nginx
goes through its whole event loop once per request, as it does for
real clients.
"""

import socket
import time

from .procs import BenchError


REQUEST = (b"GET / HTTP/1.1\r\n"
           b"Host: bench.svc.api\r\n"
           b"User-Agent: tce-bench\r\n"
           b"\r\n")
RECV_TIMEOUT = 120


def cookie_request(i):
    """The request with "Cookie: uid=<i>": a distinct sticky key per
    request, all of one length (so every request costs the same to
    parse and hash)."""
    return (b"GET / HTTP/1.1\r\n"
            b"Host: bench.svc.api\r\n"
            b"User-Agent: tce-bench\r\n"
            b"Cookie: uid=u%08d\r\n"
            b"\r\n" % i)


def run_requests(port, count, server_proc, connect_timeout,
                 request=None):
    """Sends count GETs over one keepalive connection to 127.0.0.1:port.

    request(i) gives the bytes of request i (default: REQUEST).
    Connects as soon as the server listens (no separate probe, so every
    run makes exactly one client connection).  Raises BenchError on any
    answer but 200 or on a connection the server wants to close.
    """
    sock = connect_when_listening(port, server_proc, connect_timeout)
    try:
        sock.settimeout(RECV_TIMEOUT)
        reader = ResponseReader(sock)
        for i in range(count):
            sock.sendall(REQUEST if request is None else request(i))
            status, close = reader.read_response()
            if status != 200:
                raise BenchError("request %d of %d: status %d"
                                 % (i + 1, count, status))
            if close and i + 1 < count:
                raise BenchError("request %d of %d: server closes the "
                                 "keepalive connection" % (i + 1, count))
    except socket.timeout:
        raise BenchError("no answer from port %d within %ds"
                         % (port, RECV_TIMEOUT))
    finally:
        sock.close()


def get_body(port, path):
    """One GET on a connection of its own: (status, body)."""
    sock = socket.create_connection(("127.0.0.1", port), 5)
    try:
        sock.settimeout(RECV_TIMEOUT)
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: bench\r\n"
                     b"Connection: close\r\n\r\n" % path.encode())
        status, _, body = ResponseReader(sock).read_response_body()
        return status, body
    except socket.timeout:
        raise BenchError("no answer to GET %s from port %d within %ds"
                         % (path, port, RECV_TIMEOUT))
    finally:
        sock.close()


def connect_when_listening(port, server_proc, timeout):
    deadline = time.monotonic() + timeout
    while True:
        if server_proc.poll() is not None:
            raise BenchError("server exited with status %s before "
                             "accepting" % server_proc.returncode)
        try:
            return socket.create_connection(("127.0.0.1", port), 5)
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError("port %d not listening after %ds"
                                 % (port, timeout))
            time.sleep(0.05)


class ResponseReader:
    """Reads responses framed by Content-Length off one socket."""

    def __init__(self, sock):
        self._sock = sock
        self._buf = b""

    def read_response(self):
        """Returns (status, server_closes) of the next response."""
        status, close, _ = self.read_response_body()
        return status, close

    def read_response_body(self):
        """Returns (status, server_closes, body) of the next response;
        Content-Length framing, or chunked."""
        head = self._read_until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = parse_headers(lines[1:])
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        elif "content-length" in headers:
            body = self._read_exactly(int(headers["content-length"]))
        else:
            raise BenchError("response without Content-Length: %r"
                             % lines[0])
        close = headers.get("connection", "").lower() == "close"
        return status, close, body

    def _read_chunked(self):
        body = b""
        while True:
            size = int(self._read_until(b"\r\n").split(b";")[0], 16)
            if size == 0:
                self._read_until(b"\r\n")
                return body
            body += self._read_exactly(size)
            self._read_until(b"\r\n")

    def _fill(self):
        data = self._sock.recv(65536)
        if not data:
            raise BenchError("server closed the connection")
        self._buf += data

    def _read_until(self, marker):
        while marker not in self._buf:
            self._fill()
        head, self._buf = self._buf.split(marker, 1)
        return head

    def _read_exactly(self, size):
        while len(self._buf) < size:
            self._fill()
        body, self._buf = self._buf[:size], self._buf[size:]
        return body


def parse_headers(lines):
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers
