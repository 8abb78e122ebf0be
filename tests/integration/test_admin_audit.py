"""
The admin API's audit log (tce_admin_audit): one JSON line per accepted
change, with who, from where, what, the service's generation before and
after, the SHA-256 of the body and the request id; nothing for a refused
request; a path that cannot be opened stops nginx -t and the start with
a message naming the directive.  The oracle of each field is the client
side: the token's name in the token file, the socket's address, the
bytes sent (hashlib), the answer's ETag and X-Request-Id.
"""

import hashlib
import json
import os
import threading

from admin_helpers import TOKEN, TOKEN2, call, check_error, start_admin
from conftest import SERVICE, wait_for


CANARY = '/api/v1/services/%s/clusters/default/canary' % SERVICE
FIELDS = {'time', 'principal', 'addr', 'method', 'path', 'status',
          'service', 'generation_before', 'generation_after',
          'body_sha256', 'request_id'}


def audit_lines(path):
    if not os.path.exists(path):
        return []
    with open(path, 'rb') as f:
        data = f.read()
    assert data == b'' or data.endswith(b'\n'), data[-200:]
    return [json.loads(l) for l in data.decode().splitlines()]


def raw_put(nginx, body, token=TOKEN, headers=None):
    """A PUT whose exact body bytes the test knows."""
    raw = json.dumps(body).encode()
    return raw, call(nginx, 'PUT', CANARY, raw=raw, token=token,
                     headers=headers)


def check_line(line, r, method, raw, principal, before):
    assert set(line) == FIELDS, line
    assert line['principal'] == principal
    assert line['addr'] == '127.0.0.1'
    assert line['method'] == method
    assert line['path'] == CANARY
    assert line['status'] == 200
    assert line['service'] == SERVICE
    assert line['generation_before'] == before
    assert line['generation_after'] == r.json['generation']
    assert r.headers['ETag'] == '"%d"' % line['generation_after']
    assert line['generation_after'] > line['generation_before']
    assert line['body_sha256'] == hashlib.sha256(raw).hexdigest()
    assert line['request_id'] == r.headers['X-Request-Id']
    assert line['time'].endswith('Z') and 'T' in line['time']


def test_accepted_writes_append_one_line_each(nginx, backend):
    audit = os.path.join(nginx.dir, 'audit.log')
    start_admin(nginx, backend, audit=audit)
    assert audit_lines(audit) == []     # opened (created) by the master
    gen = call(nginx, 'GET', CANARY).json['generation']

    raw, r = raw_put(nginx, {'weight': 12.5})
    assert r.status == 200, r
    # the answer comes once the line is written: no wait needed
    lines = audit_lines(audit)
    assert len(lines) == 1
    check_line(lines[0], r, 'PUT', raw, 'deployer', gen)

    raw2, r2 = raw_put(nginx, {'rollback': True}, token=TOKEN2)
    assert r2.status == 200, r2
    r3 = call(nginx, 'DELETE', CANARY, token=TOKEN)
    assert r3.status == 200, r3
    lines = audit_lines(audit)
    assert len(lines) == 3
    check_line(lines[1], r2, 'PUT', raw2, 'token', r.json['generation'])
    check_line(lines[2], r3, 'DELETE', b'', 'deployer', r2.json['generation'])


def test_refused_writes_append_nothing(nginx, backend):
    audit = os.path.join(nginx.dir, 'audit.log')
    start_admin(nginx, backend, audit=audit)
    gen = call(nginx, 'GET', CANARY).json['generation']
    refusals = [
        (call(nginx, 'PUT', CANARY, body={'weight': 10}), 401),
        (call(nginx, 'PUT', CANARY, body={'weight': 10}, token='x' * 20),
         401),
        (call(nginx, 'PUT', CANARY, body={'weight': 101}, token=TOKEN), 400),
        (call(nginx, 'PUT', CANARY, body={'nope': 1}, token=TOKEN), 400),
        (call(nginx, 'PUT', CANARY, raw=b'{', token=TOKEN), 400),
        (call(nginx, 'PUT', CANARY, body={'weight': 1}, token=TOKEN,
              content_type='text/plain'), 415),
        (call(nginx, 'PUT', CANARY, body={'weight': 1}, token=TOKEN,
              headers={'If-Match': '"%d"' % (gen + 5)}), 412),
        (call(nginx, 'POST', CANARY, body={'weight': 1}, token=TOKEN), 405),
        (call(nginx, 'PUT', CANARY.replace('default', 'nocluster'),
              body={'weight': 1}, token=TOKEN), 404),
    ]
    for r, status in refusals:
        check_error(r, status)
    # a hand edit not reloaded: 409, not audited
    with open(nginx.state_path, 'a') as f:
        f.write(' ')
    check_error(call(nginx, 'PUT', CANARY, body={'weight': 1}, token=TOKEN),
                409, 'state_file_changed')
    assert audit_lines(audit) == []
    assert call(nginx, 'GET', CANARY).json['generation'] == gen


def test_two_workers_racing_write_one_line_per_change(nginx, backend):
    audit = os.path.join(nginx.dir, 'audit.log')
    start_admin(nginx, backend, audit=audit)
    errors = []

    def writer(n):
        for i in range(n):
            r = call(nginx, 'PUT', CANARY, body={'weight_bp': i},
                     token=TOKEN)
            if r.status != 200:
                errors.append(r)

    threads = [threading.Thread(target=writer, args=(10,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    lines = audit_lines(audit)
    assert len(lines) == 20
    # the writers took turns: each change starts where the last ended
    for a, b in zip(lines, lines[1:]):
        assert b['generation_before'] >= a['generation_after'], (a, b)
    st = call(nginx, 'GET', '/api/v1/status').json
    assert st['writes']['accepted'] == 20
    assert st['writes']['audit_lines'] == 20
    assert st['writes']['audit_errors'] == 0


def test_unwritable_audit_log_stops_nginx_t_and_start(nginx, backend):
    bad = os.path.join(nginx.dir, 'no-such-dir', 'audit.log')
    nginx.write_state({SERVICE: {'default': []}})
    from admin_helpers import admin_location
    nginx.configure(server_extra=admin_location(audit=bad))
    rc, err = nginx.check()
    assert rc != 0
    assert 'tce_admin_audit' in err and 'no-such-dir/audit.log' in err, err
    assert 'No such file or directory' in err, err
    # a directory is no log either
    nginx.configure(server_extra=admin_location(audit=nginx.dir))
    rc, err = nginx.check()
    assert rc != 0 and 'tce_admin_audit' in err, err


def test_instance_writes_are_audited_and_counted(nginx, backend):
    """PATCH, POST, DELETE of an instance and PUT of an env's set are
    changes like a canary's: one line each with the answer's own status
    (201 added, 202 draining), counted in v1/status; their refusals
    write none."""
    audit = os.path.join(nginx.dir, 'audit.log')
    start_admin(nginx, backend, audit=audit)
    cl = '/api/v1/services/%s/clusters/default' % SERVICE
    new = {'id': 'p9', 'address': backend.addr(backend.ok4[3]),
           'weight': 3, 'env': 'prod', 'version': 'v1'}
    want = {'instances': [
        {'id': 'p1', 'address': backend.addr(backend.ok4[0]), 'weight': 6,
         'version': 'v1'},
        {'id': 'p9', 'address': backend.addr(backend.ok4[3]), 'weight': 3,
         'version': 'v1'}]}
    writes = [
        ('PATCH', cl + '/instances/p1', {'drain': True}, 200),
        ('PATCH', cl + '/instances/p1', {'drain': None}, 200),
        ('POST', cl + '/instances', new, 201),
        ('POST', cl + '/instances', new, 200),      # the same again: kept
        ('DELETE', cl + '/instances/p2?timeout=60s', None, 202),
        ('PUT', cl + '/envs/prod/instances', want, 200),
    ]
    # refusals first: none is audited
    check_error(call(nginx, 'PATCH', cl + '/instances/nope',
                     body={'drain': True}, token=TOKEN), 404)
    check_error(call(nginx, 'PATCH', cl + '/instances/p1',
                     body={'drain': 3}, token=TOKEN), 400)
    check_error(call(nginx, 'POST', cl + '/instances',
                     body=dict(new, id='p1'), token=TOKEN), 409)
    assert audit_lines(audit) == []

    gen = call(nginx, 'GET', CANARY).json['generation']
    sent = []
    for method, path, body, status in writes:
        raw = json.dumps(body).encode() if body is not None else b''
        r = call(nginx, method, path, raw=raw if body is not None else None,
                 token=TOKEN)
        assert r.status == status, (method, path, r)
        sent.append((method, path, raw, status, r))

    # (the drain timer's removals of p2, p3 have lines of their own)
    lines = [l for l in audit_lines(audit) if 'method' in l]
    assert len(lines) == len(writes)
    for line, (method, path, raw, status, r) in zip(lines, sent):
        assert set(line) == FIELDS, line
        assert (line['method'], line['path'], line['status']) \
            == (method, path, status)
        assert line['principal'] == 'deployer'
        assert line['body_sha256'] == hashlib.sha256(raw).hexdigest()
        assert line['request_id'] == r.headers['X-Request-Id']
        # (a new set's schedules, published after it, bump it too)
        assert line['generation_before'] >= gen
        if (method, status) == ('POST', 200):   # kept: nothing changed
            assert line['generation_after'] >= line['generation_before']
        else:
            assert line['generation_after'] > line['generation_before']
        gen = line['generation_after']
    st = call(nginx, 'GET', '/api/v1/status').json
    assert st['writes']['accepted'] == len(writes)
    assert st['writes']['audit_lines'] == len(writes)
