"""
Helpers of the admin API tests (test_admin_*.py): an nginx with
`location /api/ { tce_admin; ... }`, a client that sends any method and
body, and the state of a service as the API and the state file show it.
"""

import http.client
import json
import os
import re

import jsonschema

from conftest import SERVICE, SLOW, Response, instance

TOKEN = 'tok-0123456789abcdef-writer'
TOKEN2 = 'tok-fedcba9876543210-deploy'
PRINTABLE = set(range(0x20, 0x7f))


def admin_location(token_file=None, read_auth=None, extra='', audit=None):
    lines = ['        location /api/ {', '            tce_admin;']
    if audit:
        lines.append('            tce_admin_audit %s;' % audit)
    if token_file:
        lines.append('            tce_admin_token_file %s;' % token_file)
    if read_auth is not None:
        lines.append('            tce_admin_read_auth %s;'
                     % ('on' if read_auth else 'off'))
    if extra:
        lines.append(extra)
    lines.append('        }')
    return '\n'.join(lines) + '\n'


def start_admin(nginx, backend, tokens=True, read_auth=None, canary=None,
                state=True, services=None, audit=None,
                zone='tce_zone tce 1m;', server_extra='', http_extra=''):
    """nginx with the admin API on /api/ and demo.web.api in the state
    file: prod on ok4[0], ok4[1]; canary on ok4[2].  audit: the path of
    a tce_admin_audit log."""
    token_file = None
    if tokens:
        token_file = os.path.join(nginx.dir, 'admin.tokens')
        with open(token_file, 'w') as f:
            f.write('# admin tokens\n%s  deployer\n%s\n' % (TOKEN, TOKEN2))
    if services is None:
        services = {SERVICE: {'default': [
            instance('p1', backend.addr(backend.ok4[0]), weight=5,
                     version='v1'),
            instance('p2', backend.addr(backend.ok4[1]), weight=5,
                     version='v1'),
            instance('c1', backend.addr(backend.ok4[2]), env='canary',
                     version='v2'),
        ]}}
    if state:
        nginx.write_state(services)
    upstreams = '    upstream api {\n        tce_service %s;\n%s    }\n' % (
        SERVICE, '        tce_canary %s;\n' % canary if canary else '')
    nginx.configure(upstreams=upstreams, state=state, zone=zone,
                    http_extra=http_extra,
                    server_extra=admin_location(token_file, read_auth,
                                                audit=audit)
                    + server_extra)
    nginx.start()


OPENAPI_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            '..', '..', 'admin', 'openapi.json')
with open(OPENAPI_PATH) as _f:
    OPENAPI = json.load(_f)
API_PREFIX = '/api'


def openapi_route(path):
    """The description's path template that path (below /api) matches,
    or None."""
    path = path.split('?', 1)[0]
    for template in OPENAPI['paths']:
        rx = '^' + re.sub(r'\\{[a-z]+\\}', '[^/]+',
                          re.escape(template)) + '/?$'
        # an instance's id may hold '/' (Consul's <node>/<service ID>)
        rx = rx.replace(re.escape('instances/') + '[^/]+',
                        re.escape('instances/') + '.+')
        if re.match(rx, path):
            return template
    return None


def answer_schema(method, path, status):
    """The schema the description gives the answer: the route's
    operation's for that status (or its default), the Error schema for
    a path or method it does not describe."""
    template = openapi_route(path)
    op = OPENAPI['paths'].get(template, {}).get(method.lower())
    if op is None:
        return {'$ref': '#/components/schemas/Error'}
    resp = op['responses'].get(str(status)) or op['responses']['default']
    return resp['content']['application/json']['schema']


def validate_answer(method, path, r):
    """Every answer of the admin API against admin/openapi.json: JSON
    with X-Request-Id, the body valid against its schema."""
    assert r.headers.get('Content-Type') == 'application/json', r
    assert r.headers.get('X-Request-Id'), r.headers
    if method == 'HEAD':
        return
    assert r.json is not None, r
    schema = dict(answer_schema(method, path, r.status))
    schema['components'] = OPENAPI['components']
    try:
        jsonschema.Draft202012Validator(schema).validate(r.json)
    except jsonschema.ValidationError as e:
        raise AssertionError('%s %s -> %d does not match admin/openapi.json:'
                             ' %s\n%s' % (method, path, r.status, e.message,
                                          json.dumps(r.json)[:2000]))


def call(nginx, method, path, body=None, headers=None, token=None,
         content_type='application/json', raw=None, validate=True):
    """One request to the nginx under test; body is JSON-encoded unless
    raw bytes are given.  Returns a Response with .json when it has
    one.  An answer under /api/ is checked against admin/openapi.json
    (validate=False: not)."""
    h = {'Connection': 'close'}
    if token:
        h['Authorization'] = 'Bearer ' + token
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
    if data is not None and content_type:
        h['Content-Type'] = content_type
    h.update(headers or {})
    conn = http.client.HTTPConnection('127.0.0.1', nginx.port,
                                      timeout=10 * SLOW)
    try:
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        r = Response(resp.status, dict(resp.getheaders()), resp.read())
    finally:
        conn.close()
    try:
        r.json = json.loads(r.body) if r.body else None
    except ValueError:
        r.json = None
    if path.startswith(API_PREFIX + '/') and validate:
        validate_answer(method, path[len(API_PREFIX):], r)
    return r


def check_error(r, status, code=None):
    """An error answer as the API promises it."""
    assert r.status == status, r
    assert r.headers.get('Content-Type') == 'application/json', r.headers
    assert r.json is not None, r
    assert set(r.json) == {'error', 'request_id'}, r.json
    e = r.json['error']
    assert set(e) == {'status', 'code', 'text'}, e
    assert e['status'] == status
    if code:
        assert e['code'] == code, e
    assert e['text'] and all(ord(c) in PRINTABLE for c in e['text']), e
    assert r.json['request_id'] == r.headers['X-Request-Id']
    return e


def snapshot(nginx):
    """What an error must not change: the service as the API shows it
    (generation included) and the state file's bytes."""
    r = call(nginx, 'GET', '/api/v1/services/' + SERVICE, token=TOKEN)
    assert r.status == 200, r
    with open(nginx.state_path, 'rb') as f:
        return without_clock(r.json), f.read()


# Values a moving window or the clock changes while nothing else does:
# a request counted 9 s ago leaves the 10 s window between two reads.
CLOCK_KEYS = ('requests_per_second', 'error_ratio', 'staleness_seconds')


def without_clock(doc):
    if isinstance(doc, dict):
        return {k: without_clock(v) for k, v in doc.items()
                if k not in CLOCK_KEYS}
    if isinstance(doc, list):
        return [without_clock(v) for v in doc]
    return doc


def ports_seen(nginx, n=20):
    out = []
    for _ in range(n):
        r = nginx.get('/')
        assert r.status == 200, r
        out.append(int(r.text))
    return out
