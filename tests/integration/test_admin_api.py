"""
The admin API's frame (tce_admin): versions, routes, JSON answers with a
request id, the error shape and every error class of the frame, bearer
tokens, and the reads (services, a service, status).  Real nginx with
2 workers in front of a real backend.
"""

import json
import re

import pytest

from admin_helpers import (TOKEN, TOKEN2, call, check_error, snapshot,
                           start_admin)
from conftest import SERVICE


CANARY = '/api/v1/services/%s/clusters/default/canary' % SERVICE


def test_versions_and_request_id(nginx, backend):
    start_admin(nginx, backend)
    r = call(nginx, 'GET', '/api/')
    assert r.status == 200, r
    assert r.headers['Content-Type'] == 'application/json'
    assert r.json == {'versions': ['v1'], 'current': 'v1'}
    rid = r.headers['X-Request-Id']
    assert re.fullmatch(r'[0-9a-f]{32}', rid), rid
    # another request, another id; the error body carries the header's
    r2 = call(nginx, 'GET', '/api/v2/services')
    e = check_error(r2, 404, 'not_found')
    assert r2.headers['X-Request-Id'] != rid
    assert 'route' in e['text']


@pytest.mark.parametrize('path,status,code', [
    ('/api/v1', 404, 'not_found'),
    ('/api/v1/nothing', 404, 'not_found'),
    ('/api/v1/services/%s/clusters' % SERVICE, 404, 'not_found'),
    ('/api/v1/services/%s/clusters/default/canary/x' % SERVICE, 404,
     'not_found'),
    ('/api/v1/services/no.such.svc', 404, 'unknown_service'),
    ('/api/v1/services/NOT_A_PSM', 400, 'bad_name'),
    ('/api/v1/services/a.b', 400, 'bad_name'),
    ('/api/v1/services/%s/clusters/nocluster/canary' % SERVICE, 404,
     'unknown_cluster'),
    ('/api/v1/services/%s/clusters/bad%%20name/canary' % SERVICE, 400,
     'bad_name'),
])
def test_unknown_and_bad_paths(nginx, backend, path, status, code):
    start_admin(nginx, backend)
    e = check_error(call(nginx, 'GET', path), status, code)
    if status == 404 and code != 'not_found':
        # the text names what was not found
        assert path.split('/')[4 if code == 'unknown_service' else 6] \
            in e['text'], e


def test_bad_name_quoted_printable(nginx, backend):
    start_admin(nginx, backend)
    r = call(nginx, 'GET', '/api/v1/services/a.b.c%0a%1b%7f%C3%A9')
    e = check_error(r, 400, 'bad_name')
    assert '\\x0A' in e['text'] and '\\x1B' in e['text'], e


def test_method_not_allowed(nginx, backend):
    start_admin(nginx, backend)
    before = snapshot(nginx)
    for method, path, allow in (
            ('POST', '/api/v1/services', 'GET, HEAD'),
            ('DELETE', '/api/v1/services/' + SERVICE, 'GET, HEAD'),
            ('PATCH', CANARY, 'GET, HEAD, PUT, DELETE'),
            ('POST', CANARY, 'GET, HEAD, PUT, DELETE')):
        r = call(nginx, method, path, body={'weight': 5}, token=TOKEN)
        check_error(r, 405, 'method_not_allowed')
        assert r.headers['Allow'] == allow, (method, path, r.headers)
    assert snapshot(nginx) == before


def test_body_limits_and_types(nginx, backend):
    start_admin(nginx, backend)
    before = snapshot(nginx)
    # 413: over 64 KiB, announced or not
    big = b'{"weight": 1, "x": "' + b'a' * 70000 + b'"}'
    check_error(call(nginx, 'PUT', CANARY, raw=big, token=TOKEN), 413,
                'body_too_large')
    # 415: not JSON, or no Content-Type
    check_error(call(nginx, 'PUT', CANARY, raw=b'weight=5', token=TOKEN,
                     content_type='application/x-www-form-urlencoded'),
                415, 'unsupported_media_type')
    check_error(call(nginx, 'PUT', CANARY, raw=b'{"weight": 5}',
                     token=TOKEN, content_type=None),
                415, 'unsupported_media_type')
    cases = [
        (b'', 'invalid_json'),
        (b'{"weight": ', 'invalid_json'),
        (b'[1]', 'wrong_type'),
        (b'{}', 'missing_field'),
        (b'{"weight": 5, "weight": 6}', 'invalid_json'),
        (b'{"wieght": 5}', 'unknown_field'),
        (b'{"weight": "five"}', 'out_of_range'),
        (b'{"weight": true}', 'wrong_type'),
        (b'{"weight": 100.01}', 'out_of_range'),
        (b'{"weight": -1}', 'out_of_range'),
        (b'{"weight": 12.345}', 'out_of_range'),
        (b'{"weight_bp": 10001}', 'out_of_range'),
        (b'{"weight_bp": 1.5}', 'wrong_type'),
        (b'{"weight": 5, "weight_bp": 500}', 'conflict'),
        (b'{"rollback": true, "weight": 5}', 'conflict'),
        (b'{"rollback": false}', 'out_of_range'),
        (b'{"fallback": "yes"}', 'wrong_type'),
        (b'{"\\u001b[31m": 1}', 'unknown_field'),
    ]
    for raw, code in cases:
        r = call(nginx, 'PUT', CANARY, raw=raw, token=TOKEN)
        e = check_error(r, 400, code)
        assert raw == b'' or e['text'], (raw, e)
    assert snapshot(nginx) == before


def test_writes_refused_without_token_file(nginx, backend):
    start_admin(nginx, backend, tokens=False)
    before = snapshot(nginx)
    r = call(nginx, 'PUT', CANARY, body={'weight': 50},
             token='anything-0123456789')
    e = check_error(r, 403, 'no_token_file')
    assert 'tce_admin_token_file' in e['text'], e
    # reads stay open
    assert call(nginx, 'GET', CANARY).status == 200
    assert snapshot(nginx) == before


def test_bearer_tokens(nginx, backend):
    start_admin(nginx, backend)
    before = snapshot(nginx)
    for headers in ({},
                    {'Authorization': 'Basic dXNlcjpwYXNz'},
                    {'Authorization': 'Bearer ' + TOKEN[:-1]},
                    {'Authorization': 'Bearer ' + TOKEN + 'x'},
                    {'Authorization': 'Bearer '},
                    # forwarded headers grant nothing
                    {'X-Forwarded-For': '127.0.0.1',
                     'X-Real-IP': '127.0.0.1',
                     'X-Forwarded-User': 'deployer'}):
        r = call(nginx, 'PUT', CANARY, body={'weight': 50}, headers=headers)
        check_error(r, 401, 'unauthorized')
        assert r.headers['WWW-Authenticate'].startswith('Bearer'), r.headers
    assert snapshot(nginx) == before
    for tok in (TOKEN, TOKEN2):
        r = call(nginx, 'PUT', CANARY, body={'weight': 50}, token=tok)
        assert r.status == 200, r


def test_read_auth(nginx, backend):
    start_admin(nginx, backend, read_auth=True)
    check_error(call(nginx, 'GET', '/api/v1/services'), 401, 'unauthorized')
    check_error(call(nginx, 'GET', '/api/v1/services',
                     token='x' * 20), 401, 'unauthorized')
    assert call(nginx, 'GET', '/api/v1/services', token=TOKEN).status == 200


def test_bad_token_file_fails_config(nginx, backend, tmp_path):
    path = tmp_path / 'short.tokens'
    path.write_text('short\n')
    from admin_helpers import admin_location
    nginx.write_state({SERVICE: {'default': []}})
    nginx.configure(server_extra=admin_location(str(path)))
    rc, err = nginx.check()
    assert rc != 0
    assert 'tce_admin_token_file' in err and 'line 1' in err \
        and '16..256' in err, err
    path.write_text('# only a comment\n\n')
    rc, err = nginx.check()
    assert rc != 0 and 'holds no token' in err, err


def test_services_list(nginx, backend):
    start_admin(nginx, backend)
    r = call(nginx, 'GET', '/api/v1/services')
    assert r.status == 200, r
    svcs = {s['name']: s for s in r.json['services']}
    s = svcs[SERVICE]
    status = nginx.status()['services'][SERVICE]
    assert s['generation'] == status['generation']
    assert s['source'] == 'state'
    assert s['instances'] == 3
    assert s['clusters'] == {'default': {'envs': {
        'prod': {'count': 2, 'routable': 2},
        'canary': {'count': 1, 'routable': 1}}}}


def test_service_detail(nginx, backend):
    from conftest import instance
    start_admin(nginx, backend, services={SERVICE: {'default': [
        instance('p1', backend.addr(backend.ok4[0]), weight=5),
        instance('p2', backend.addr(backend.ok4[1]), weight=7,
                 override={'weight': 3}),
        instance('p3', backend.addr(backend.ok4[2]), state='draining'),
        instance('p4', backend.addr(backend.ok4[3]),
                 override={'down': True}),
    ]}})
    r = call(nginx, 'GET', '/api/v1/services/' + SERVICE)
    assert r.status == 200, r
    gen = nginx.status()['services'][SERVICE]['generation']
    assert r.headers['ETag'] == '"%d"' % gen
    assert r.json['generation'] == gen
    assert r.json['source'] == 'state'
    cl = r.json['clusters']['default']
    assert cl['canary'] is None
    assert cl['envs']['canary']['instances'] == []
    got = {i['id']: i for i in cl['envs']['prod']['instances']}
    assert got['p1']['weight'] == 5 and got['p1']['effective_weight'] == 5
    assert got['p1']['sources'] == {'weight': 'discovery',
                                    'state': 'discovery'}
    assert got['p1']['overrides'] == {'weight': None, 'drain': None,
                                      'down': None}
    assert got['p2']['weight'] == 7 and got['p2']['effective_weight'] == 3
    assert got['p2']['sources']['weight'] == 'override'
    assert got['p3']['state'] == 'draining'
    assert got['p3']['effective_weight'] == 0
    assert got['p3']['sources']['state'] == 'discovery'
    assert got['p4']['state'] == 'down'
    assert got['p4']['discovery_state'] == 'up'
    assert got['p4']['sources']['state'] == 'override'
    assert got['p4']['overrides']['down'] is True
    assert got['p1']['address'] == backend.addr(backend.ok4[0])
    assert r.json['discovery']['watched'] is False
    assert "metrics_missing" not in r.json


def test_status(nginx, backend):
    start_admin(nginx, backend)
    r = call(nginx, 'GET', '/api/v1/status')
    assert r.status == 200, r
    z = r.json['zone']
    assert z['name'] == 'tce' and z['size'] == 1024 * 1024
    assert 0 < z['pages_used'] <= z['pages']
    assert z['services'] >= 1
    assert r.json['consul_watch']['owner_pid'] is None
    assert r.json['pid'] in nginx.workers()


def test_head_has_no_body(nginx, backend):
    start_admin(nginx, backend)
    r = call(nginx, 'HEAD', '/api/v1/services')
    assert r.status == 200 and r.body == b''
    assert r.headers['Content-Type'] == 'application/json'
