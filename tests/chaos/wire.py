"""
What the chaos load and the chaos backends agree on, and a minimal
HTTP/1.1 client that tells apart every way an answer can go wrong.

A request is GET or POST /<prefix>/<rid>?size=<n>&delay=<ms>&status=<s>:
the backend answers `status` (default 200) with `X-Backend: <name>`
after `delay` ms; a GET's body is pattern(rid, size), a POST's body is
the request body, echoed.  So the client knows the exact bytes it must
receive, and that an answer without X-Backend was made by the proxy.
"""

import socket
import time


def pattern(rid, size):
    """The body a GET for rid and size gets: rid and ':' repeated."""
    unit = (rid + ':').encode()
    return (unit * (size // len(unit) + 1))[:size]


class ClosedBeforeAnswer(Exception):
    """The connection closed (EOF or reset) before any byte of the
    answer: `sent` says whether the whole request had been written."""

    def __init__(self, what, sent):
        Exception.__init__(self, what)
        self.sent = sent


class Truncated(Exception):
    """Part of an answer, then the connection closed or failed."""


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body


def connect(port, timeout):
    """A new connection to 127.0.0.1:port; returns (socket, local port)."""
    s = socket.create_connection(('127.0.0.1', port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s, s.getsockname()[1]


def _recv(sock, got):
    try:
        data = sock.recv(65536)
    except (ConnectionResetError, BrokenPipeError) as e:
        if got:
            raise Truncated('reset after %d bytes: %s' % (got, e))
        raise ClosedBeforeAnswer('reset: %s' % e, True)
    if not data:
        if got:
            raise Truncated('EOF after %d bytes' % got)
        raise ClosedBeforeAnswer('EOF', True)
    return data


def request(sock, method, path, body=b'', close=False):
    """Sends one request and reads its answer (Content-Length bodies, or
    to EOF with Connection: close).  Raises ClosedBeforeAnswer,
    Truncated, socket.timeout or another OSError."""
    head = ['%s %s HTTP/1.1' % (method, path), 'Host: chaos']
    if method == 'POST':
        head.append('Content-Length: %d' % len(body))
        head.append('Content-Type: application/octet-stream')
    if close:
        head.append('Connection: close')
    data = ('\r\n'.join(head) + '\r\n\r\n').encode() + body
    try:
        sock.sendall(data)
    except (ConnectionResetError, BrokenPipeError) as e:
        raise ClosedBeforeAnswer('send: %s' % e, False)

    buf = b''
    got = 0
    while b'\r\n\r\n' not in buf:
        chunk = _recv(sock, got)
        got += len(chunk)
        buf += chunk
    head, rest = buf.split(b'\r\n\r\n', 1)
    lines = head.decode('latin-1').split('\r\n')
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(':')
        headers[k.strip().lower()] = v.strip()
    if 'content-length' in headers:
        n = int(headers['content-length'])
        while len(rest) < n:
            chunk = _recv(sock, got)
            got += len(chunk)
            rest += chunk
        if len(rest) > n:
            raise Truncated('%d bytes beyond Content-Length'
                            % (len(rest) - n))
    elif headers.get('transfer-encoding', '').lower() == 'chunked':
        raise Truncated('unexpected chunked answer')
    else:
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                raise Truncated('reset in a body read to EOF')
            if not chunk:
                break
            rest += chunk
        headers['connection'] = 'close'
    return Answer(status, headers, rest)


def now():
    return time.time()
