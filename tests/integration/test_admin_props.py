"""
Property-based tests of the admin API (python3-hypothesis): random
methods, paths, headers and bodies, each sent to a running nginx.  For
every one: never a 5xx, nginx still answers, the answer is what
admin/openapi.json describes (admin_helpers.call), and a refused request
changes nothing (the service as GET shows it, generation included, and
the state file's bytes).  Example counts are bounded (fewer under
valgrind).
"""

import json
import os
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings, strategies as st

from admin_helpers import TOKEN, call, snapshot, start_admin
from conftest import SERVICE, VALGRIND

EXAMPLES = 8 if VALGRIND else 60

SEGMENTS = ['v1', 'status', 'services', SERVICE, 'clusters', 'default',
            'canary', 'instances', 'envs', 'prod', 'scale', 'x.y.z',
            'nocluster', 'V1', '%00']
METHODS = ['GET', 'HEAD', 'PUT', 'DELETE', 'POST', 'PATCH', 'OPTIONS']
CANARY = ['v1', 'services', SERVICE, 'clusters', 'default', 'canary']

text = st.text(st.characters(min_codepoint=1, max_codepoint=0x2ff),
               max_size=12)
segment = st.one_of(st.sampled_from(SEGMENTS), text).filter(
    lambda s: s.strip('.') != '' and s not in ('.', '..'))
paths = st.one_of(
    st.just(CANARY),
    st.lists(segment, max_size=7),
    st.builds(lambda i, s: CANARY[:i] + [s] + CANARY[i + 1:],
              st.integers(0, 5), segment))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64)
    | st.floats(allow_nan=False) | text,
    lambda kids: st.lists(kids, max_size=4)
    | st.dictionaries(st.sampled_from(['weight', 'weight_bp', 'fallback',
                                       'rollback', 'id', 'drain']) | text,
                      kids, max_size=4),
    max_leaves=8)
bodies = st.one_of(
    st.none(),
    st.builds(lambda v: json.dumps(v).encode(), json_values),
    st.builds(lambda d: json.dumps(d).encode(),
              st.fixed_dictionaries({}, optional={
                  'weight': st.one_of(st.floats(-1, 101), text),
                  'weight_bp': st.integers(-5, 10005),
                  'fallback': st.one_of(st.booleans(), st.none()),
                  'rollback': st.one_of(st.booleans(), st.integers())})),
    st.binary(max_size=64))
headers = st.fixed_dictionaries({}, optional={
    'Authorization': st.sampled_from(['Bearer ' + TOKEN, 'Bearer nope',
                                      'Basic eDp4', 'Bearer ', TOKEN]),
    'If-Match': st.sampled_from(['*', '"1"', '"999999"', 'W/"3"', '', 'x']),
    'Content-Type': st.sampled_from(['application/json', 'text/plain',
                                     'application/json; charset=utf-8',
                                     'application/jsonx']),
    'X-Forwarded-For': st.just('127.0.0.1'),
})


def url(segs, slash):
    return '/api/' + '/'.join(quote(s, safe='') for s in segs) + \
        ('/' if slash and segs else '')


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(method=st.sampled_from(METHODS), segs=paths, slash=st.booleans(),
       body=bodies, hdrs=headers)
def test_random_requests(nginx, backend, method, segs, slash, body, hdrs):
    if nginx.proc is None:
        start_admin(nginx, backend,
                    audit=os.path.join(nginx.dir, 'audit.log'))
    before = snapshot(nginx)
    h = dict(hdrs)
    if body is not None and 'Content-Type' not in h:
        h['Content-Type'] = 'application/json'
    r = call(nginx, method, url(segs, slash), raw=body, headers=h,
             content_type=None)
    assert r.status < 500, r
    assert nginx.proc.poll() is None
    if r.status >= 400:
        assert snapshot(nginx) == before, (method, segs, body, r)
