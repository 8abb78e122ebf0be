"""
admin/openapi.json against the running API: the description is valid
JSON Schema (2020-12, as OpenAPI 3.1 uses), every route and method it
describes exists (answers 2xx with the example below, not 404/405), the
methods nginx allows on each route (its Allow header) are the described
ones, and every answer validates against its schema (admin_helpers.call
checks each answer of every admin test the same way).
"""

import jsonschema

from admin_helpers import OPENAPI, TOKEN, call, start_admin
from conftest import SERVICE


PARAMS = {'psm': SERVICE, 'cluster': 'default', 'id': 'p1', 'env': 'prod'}

# a request body per operation that takes one
BODIES = {'putCanary': {'weight': 0},
          'patchInstance': {'weight': 3},
          'postInstance': {'id': 'p9', 'address': '127.0.0.1:9'},
          'putEnvInstances': {'instances': []},
          'postDeploy': {'steps': [50, 100], 'step_seconds': 600},
          'pauseDeploy': {}, 'resumeDeploy': {}, 'rollbackDeploy': {},
          'promoteDeploy': {}}

# operations that need a running deploy (one ends it: start another)
DEPLOY_ACTIONS = ('pauseDeploy', 'resumeDeploy', 'rollbackDeploy',
                  'promoteDeploy')


def concrete(template):
    path = template
    for k, v in PARAMS.items():
        path = path.replace('{%s}' % k, v)
    return '/api' + path


def operations():
    for template, item in OPENAPI['paths'].items():
        for method, op in item.items():
            if method in ('get', 'put', 'post', 'patch', 'delete'):
                yield template, method.upper(), op


def test_description_is_valid_json_schema():
    assert OPENAPI['openapi'].startswith('3.1')
    for name, schema in OPENAPI['components']['schemas'].items():
        s = dict(schema)
        s['components'] = OPENAPI['components']
        jsonschema.Draft202012Validator.check_schema(s)
    for template, method, op in operations():
        assert op.get('operationId'), (template, method)
        assert 'default' in op['responses'], (template, method)
        if method != 'GET':
            assert op.get('security') == [{'bearer': []}], (template, method)
        for status, resp in op['responses'].items():
            schema = resp['content']['application/json']['schema']
            if not status.startswith('2'):
                assert schema == {'$ref': '#/components/schemas/Error'}


# a tce_diff location, for GET .../diff
DIFF_LOCATION = """\
        location /diffed/ {
            proxy_pass http://api;
            tce_diff name=openapi;
        }
"""


def test_every_described_route_exists(nginx, backend):
    start_admin(nginx, backend, server_extra=DIFF_LOCATION)
    for template, method, op in operations():
        body = BODIES.get(op['operationId'])
        if method not in ('GET', 'HEAD'):
            assert body is not None or method == 'DELETE', op['operationId']
        if op['operationId'] in DEPLOY_ACTIONS:
            deploys = concrete(template).rsplit('/', 2)[0]
            if call(nginx, 'GET', deploys + '/current').json['state'] \
                    not in ('running', 'paused'):
                assert call(nginx, 'POST', deploys, token=TOKEN,
                            body=BODIES['postDeploy']).status == 201
        r = call(nginx, method, concrete(template), body=body,
                 token=TOKEN if method != 'GET' else None)
        # call() validated the answer against the description
        assert 200 <= r.status < 300, (template, method, r)


def test_allowed_methods_are_the_described_ones(nginx, backend):
    start_admin(nginx, backend)
    for template, item in OPENAPI['paths'].items():
        described = {m.upper() for m in item
                     if m in ('get', 'put', 'post', 'patch', 'delete')}
        r = call(nginx, 'OPTIONS', concrete(template))
        assert r.status == 405, (template, r)
        allowed = {m.strip() for m in r.headers['Allow'].split(',')}
        assert allowed - {'HEAD'} == described, (template, allowed)
