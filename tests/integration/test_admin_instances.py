"""
The admin API's instance operations as an operator and a platform use
them: PATCH of an instance's overrides (weight, drain, down, null to
clear) moves real traffic on both workers, lands in the state file's
"override" and survives a reload and a restart; POST adds an instance,
DELETE drains it and removes it once drained; a PUT of an env's set
adds, drains and keeps.  Every refusal is checked to change nothing
(the service as the API shows it, the state file's bytes).
"""

import json
import os
import time

import pytest

from admin_helpers import (TOKEN, call, check_error, ports_seen, snapshot,
                           start_admin)
from conftest import SERVICE, SLOW, instance, wait_for


CL = '/api/v1/services/%s/clusters/default' % SERVICE
INSTANCES = CL + '/instances'


def inst_path(id):
    return INSTANCES + '/' + id


def file_instances(nginx):
    with open(nginx.state_path) as f:
        doc = json.load(f)
    svc = doc['services'].get(SERVICE, {'clusters': {}})
    return {i['id']: i for cl in svc['clusters'].values()
            for i in cl.get('instances', [])}


def settled(nginx):
    """The snapshot once the service's generation stops moving: an
    instance write bumps it, and so does the publication of the new
    set's schedules a little later (built on the thread pool): the same
    generation three reads in a row."""
    last = [None, 0]

    def same():
        snap = snapshot(nginx)
        gen = snap[0]['generation']
        if gen == last[0]:
            last[1] += 1
            if last[1] >= 2:
                return snap
            return None
        last[0], last[1] = gen, 0
        return None

    return wait_for(same, 5 * SLOW, interval=0.1 * SLOW,
                    what='the generation to settle')


def get_inst(nginx, id):
    r = call(nginx, 'GET', inst_path(id))
    assert r.status == 200, r
    return r.json['instance']


def test_patch_overrides_move_traffic_and_persist(nginx, backend):
    start_admin(nginx, backend)
    p1, p2 = backend.ok4[0], backend.ok4[1]
    assert set(ports_seen(nginx)) == {p1, p2}

    r = call(nginx, 'GET', inst_path('p1'))
    assert r.status == 200, r
    i = r.json['instance']
    assert (i['id'], i['cluster'], i['env'], i['weight']) == \
        ('p1', 'default', 'prod', 5)
    assert i['overrides'] == {'weight': None, 'drain': None, 'down': None}
    assert i['in_flight'] == 0 and i['removal'] is None
    assert r.headers['ETag'] == '"%d"' % r.json['generation']

    # drain: no new request to p1, on either worker
    r = call(nginx, 'PATCH', inst_path('p1'), body={'drain': True},
             token=TOKEN)
    assert r.status == 200, r
    assert r.json['instance']['state'] == 'draining'
    assert r.json['instance']['sources']['state'] == 'override'
    assert set(ports_seen(nginx, 30)) == {p2}
    assert file_instances(nginx)['p1']['override'] == {'drain': True}

    # weight and down on p2, drain cleared on p1 with false
    r = call(nginx, 'PATCH', inst_path('p2'), body={'weight': 2},
             token=TOKEN)
    assert r.status == 200 and r.json['instance']['effective_weight'] == 2
    r = call(nginx, 'PATCH', inst_path('p1'),
             body={'drain': False, 'weight': 8}, token=TOKEN)
    assert r.status == 200, r
    # 8:2 once the new schedules are published (until then the workers
    # route on the old one, which has p2 only)
    def eight_two():
        seen = ports_seen(nginx, 50)
        return 0 < seen.count(p2) < seen.count(p1)
    wait_for(eight_two, 10, what='p1 and p2 at 8:2')
    r = call(nginx, 'PATCH', inst_path('p2'), body={'down': True},
             token=TOKEN)
    assert r.json['instance']['state'] == 'down'
    assert set(ports_seen(nginx, 20)) == {p1}
    assert file_instances(nginx)['p2']['override'] == \
        {'weight': 2, 'down': True}

    # a reload reads the file back: the overrides stay
    nginx.reload()
    assert get_inst(nginx, 'p2')['overrides'] == \
        {'weight': 2, 'drain': None, 'down': True}
    assert set(ports_seen(nginx, 20)) == {p1}

    # null clears one override, the others stay
    r = call(nginx, 'PATCH', inst_path('p2'), body={'down': None},
             token=TOKEN)
    assert r.status == 200, r
    assert r.json['instance']['overrides'] == \
        {'weight': 2, 'drain': None, 'down': None}
    r = call(nginx, 'PATCH', inst_path('p1'), body={'weight': None},
             token=TOKEN)
    assert r.json['instance']['effective_weight'] == 5
    assert 'override' not in file_instances(nginx)['p1']

    # a restart reads them from the state file
    nginx.stop()
    nginx.proc = None
    nginx.start()
    assert get_inst(nginx, 'p2')['overrides']['weight'] == 2
    assert get_inst(nginx, 'p1')['overrides']['weight'] is None
    seen = ports_seen(nginx, 35)
    assert 0 < seen.count(p2) < seen.count(p1), seen


def test_hand_edit_of_weight_keeps_override(nginx, backend):
    """A reload of a state file edited by hand (discovery data) keeps the
    operator's override of the same instance."""
    start_admin(nginx, backend)
    r = call(nginx, 'PATCH', inst_path('p1'), body={'weight': 3},
             token=TOKEN)
    assert r.status == 200, r
    with open(nginx.state_path) as f:
        doc = json.load(f)
    for i in doc['services'][SERVICE]['clusters']['default']['instances']:
        if i['id'] == 'p1':
            i['weight'] = 9
    nginx.write_state(raw=json.dumps(doc))
    nginx.reload()
    i = get_inst(nginx, 'p1')
    assert i['weight'] == 9 and i['overrides']['weight'] == 3
    assert i['effective_weight'] == 3


BAD_PATCHES = [
    ({'weight': 0}, 'out_of_range'),
    ({'weight': 1001}, 'out_of_range'),
    ({'weight': '5'}, 'wrong_type'),
    ({'weight': 2.5}, 'wrong_type'),
    ({'drain': 'yes'}, 'wrong_type'),
    ({'down': 1}, 'wrong_type'),
    ({'weigth': 3}, 'unknown_field'),
    ({}, 'missing_field'),
    ([], 'wrong_type'),
]


def test_patch_refusals_change_nothing(nginx, backend):
    start_admin(nginx, backend)
    before = snapshot(nginx)
    for body, code in BAD_PATCHES:
        e = check_error(call(nginx, 'PATCH', inst_path('p1'), body=body,
                             token=TOKEN), 400, code)
        assert all(ord(c) < 0x7f for c in e['text'])
    check_error(call(nginx, 'PATCH', inst_path('p1'), raw=b'{"drain": tr',
                     token=TOKEN), 400, 'invalid_json')
    check_error(call(nginx, 'PATCH', inst_path('p1'), raw=b'{"drain": 1}',
                     token=TOKEN, content_type='text/plain'), 415)
    check_error(call(nginx, 'PATCH', inst_path('nope'), body={'drain': True},
                     token=TOKEN), 404, 'unknown_instance')
    # c1 is in the cluster, the id must match the cluster too
    check_error(call(nginx, 'PATCH',
                     '/api/v1/services/%s/clusters/other/instances/p1'
                     % SERVICE, body={'drain': True}, token=TOKEN),
                404, 'unknown_cluster')
    e = check_error(call(nginx, 'PATCH', inst_path('a%22b'),
                         body={'drain': True}, token=TOKEN), 400, 'bad_id')
    assert 'a\\"b' in e['text'] or 'a"b' in e['text'], e
    check_error(call(nginx, 'PATCH', inst_path('p1'), body={'drain': True}),
                401)
    r = call(nginx, 'PATCH', inst_path('p1'), body={'drain': True},
             token=TOKEN, headers={'If-Match': '"1"'})
    check_error(r, 412, 'precondition_failed')
    for path, method, allow in (
            (inst_path('p1'), 'PUT', 'GET, HEAD, PATCH, DELETE'),
            (inst_path('p1'), 'POST', 'GET, HEAD, PATCH, DELETE'),
            (INSTANCES, 'DELETE', 'GET, HEAD, POST'),
            (INSTANCES, 'PATCH', 'GET, HEAD, POST'),
            (CL + '/envs/prod/instances', 'POST', 'GET, HEAD, PUT'),
            (CL + '/envs/prod/instances', 'DELETE', 'GET, HEAD, PUT')):
        r = call(nginx, method, path, body={}, token=TOKEN)
        check_error(r, 405, 'method_not_allowed')
        assert r.headers['Allow'] == allow, (path, method, r.headers)
    assert snapshot(nginx) == before


def test_patch_etag_and_hand_edit(nginx, backend):
    start_admin(nginx, backend)
    r = call(nginx, 'GET', inst_path('p1'))
    etag = r.headers['ETag']
    r = call(nginx, 'PATCH', inst_path('p1'), body={'weight': 2},
             token=TOKEN, headers={'If-Match': etag})
    assert r.status == 200, r
    assert r.headers['ETag'] != etag
    # the old ETag is stale now
    before = settled(nginx)
    check_error(call(nginx, 'PATCH', inst_path('p1'), body={'weight': 3},
                     token=TOKEN, headers={'If-Match': etag}), 412)
    assert snapshot(nginx) == before
    # a hand edit not reloaded: 409, the file left as it is
    text = open(nginx.state_path).read().replace('"v1"', '"v9"', 1)
    time.sleep(0.01)
    nginx.write_state(raw=text)
    check_error(call(nginx, 'PATCH', inst_path('p1'), body={'weight': 4},
                     token=TOKEN), 409, 'state_file_changed')
    assert open(nginx.state_path).read() == text
    assert get_inst(nginx, 'p1')['overrides']['weight'] == 2


def test_post_adds_and_delete_drains_then_removes(nginx, backend):
    start_admin(nginx, backend)
    p1, p2, p4 = backend.ok4[0], backend.ok4[1], backend.ok4[3]
    body = {'id': 'p4', 'address': backend.addr(p4), 'weight': 5,
            'version': 'v1'}
    r = call(nginx, 'POST', INSTANCES, body=body, token=TOKEN)
    assert r.status == 201, r
    assert r.json['status'] == 'added'
    assert r.headers['Location'].endswith(INSTANCES + '/p4')
    assert r.json['instance']['address'] == backend.addr(p4)
    assert r.json['instance']['env'] == 'prod'
    assert file_instances(nginx)['p4']['weight'] == 5
    assert set(ports_seen(nginx, 30)) == {p1, p2, p4}

    # the same again: kept (a retry is harmless); another address: 409
    r = call(nginx, 'POST', INSTANCES, body=body, token=TOKEN)
    assert r.status == 200 and r.json['status'] == 'kept', r
    before = settled(nginx)
    e = check_error(call(nginx, 'POST', INSTANCES,
                         body=dict(body, address=backend.addr(p1)),
                         token=TOKEN), 409, 'instance_exists')
    assert 'p4' in e['text']
    check_error(call(nginx, 'POST', INSTANCES,
                     body={'id': 'c1', 'address': backend.addr(p1)},
                     token=TOKEN), 409, 'instance_exists')
    assert snapshot(nginx) == before

    # DELETE: 202 draining, then gone from the zone and the file
    r = call(nginx, 'DELETE', inst_path('p4'), token=TOKEN)
    assert r.status == 202, r
    assert r.json['status'] == 'draining'
    assert r.json['instance']['state'] == 'draining'
    assert r.json['instance']['in_flight'] == 0
    rm = r.json['instance']['removal']
    assert rm['status'] == 'draining'
    assert 29000 <= rm['deadline'] - rm['since'] <= 30000  # the default
    assert set(ports_seen(nginx, 20)) == {p1, p2}
    wait_for(lambda: call(nginx, 'GET', inst_path('p4')).status == 404,
             5 * SLOW, what='p4 removed')
    assert 'p4' not in file_instances(nginx)
    check_error(call(nginx, 'GET', inst_path('p4')), 404, 'unknown_instance')
    assert set(ports_seen(nginx, 20)) == {p1, p2}


def test_post_and_delete_refusals(nginx, backend):
    start_admin(nginx, backend)
    a = backend.addr(backend.ok4[3])
    before = snapshot(nginx)
    for body, code in (
            ({'address': a}, 'missing_field'),
            ({'id': 'x'}, 'missing_field'),
            ({'id': 'x', 'address': 'localhost:80'}, 'bad_address'),
            ({'id': 'x', 'address': '127.0.0.1'}, 'bad_address'),
            ({'id': 'x', 'address': '127.0.0.1:99999'}, 'bad_address'),
            ({'id': 'a b', 'address': a}, 'bad_id'),
            ({'id': '', 'address': a}, 'bad_id'),
            ({'id': 'x' * 128, 'address': a}, 'bad_id'),
            ({'id': 'x', 'address': a, 'weight': 0}, 'out_of_range'),
            ({'id': 'x', 'address': a, 'weight': True}, 'wrong_type'),
            ({'id': 'x', 'address': a, 'env': 'staging'}, 'out_of_range'),
            ({'id': 'x', 'address': a, 'state': 'up'}, 'unknown_field'),
            ({'id': 5, 'address': a}, 'wrong_type')):
        check_error(call(nginx, 'POST', INSTANCES, body=body, token=TOKEN),
                    400, code)
    check_error(call(nginx, 'DELETE', inst_path('p1') + '?timeout=abc',
                     token=TOKEN), 400, 'out_of_range')
    check_error(call(nginx, 'DELETE', inst_path('p1') + '?timeout=25h',
                     token=TOKEN), 400, 'out_of_range')
    check_error(call(nginx, 'DELETE', inst_path('p1') + '?force=1',
                     token=TOKEN), 400, 'unknown_field')
    check_error(call(nginx, 'DELETE', inst_path('nope'), token=TOKEN), 404,
                'unknown_instance')
    check_error(call(nginx, 'DELETE', inst_path('p1')), 401)
    check_error(call(nginx, 'DELETE', inst_path('p1'), token=TOKEN,
                     headers={'If-Match': '"999"'}), 412)
    assert snapshot(nginx) == before


def test_put_env_set_adds_drains_keeps(nginx, backend):
    start_admin(nginx, backend)
    p1, p2, p3, p4 = backend.ok4
    put = CL + '/envs/prod/instances'
    r = call(nginx, 'GET', put)
    assert r.status == 200, r
    assert sorted(i['id'] for i in r.json['instances']) == ['p1', 'p2']

    want = [{'id': 'p2', 'address': backend.addr(p2), 'weight': 5,
             'version': 'v1'},
            {'id': 'p3', 'address': backend.addr(p3), 'weight': 2,
             'version': 'v2'},
            {'id': 'p4', 'address': backend.addr(p4)}]
    r = call(nginx, 'PUT', put + '?timeout=10s', body={'instances': want},
             token=TOKEN)
    assert r.status == 200, r
    assert r.json['added'] == ['p3', 'p4']
    assert r.json['kept'] == ['p2'] and r.json['updated'] == []
    assert [d['id'] for d in r.json['draining']] == ['p1']
    rm = r.json['draining'][0]['removal']
    assert rm['deadline'] - rm['since'] == 10000
    assert set(ports_seen(nginx, 30)) == {p2, p3, p4}
    wait_for(lambda: call(nginx, 'GET', inst_path('p1')).status == 404,
             5 * SLOW, what='p1 removed')
    f = file_instances(nginx)
    assert set(f) == {'p2', 'p3', 'p4', 'c1'}
    assert f['p3']['weight'] == 2 and f['p4']['weight'] == 1

    # an update in place, and the canary env untouched by prod's PUT
    want[1]['weight'] = 4
    r = call(nginx, 'PUT', put, body={'instances': want[1:]}, token=TOKEN)
    assert r.json['updated'] == ['p3'] and r.json['kept'] == ['p4']
    assert [d['id'] for d in r.json['draining']] == ['p2']
    # p2 wanted again while it drains: its removal is cancelled
    r = call(nginx, 'PUT', put, body={'instances': want}, token=TOKEN)
    assert r.status == 200, r
    assert r.json['updated'] == ['p2'] and r.json['draining'] == []
    assert get_inst(nginx, 'p2')['removal'] is None
    assert get_inst(nginx, 'c1')['env'] == 'canary'

    # refusals change nothing
    before = settled(nginx)
    for body, status, code in (
            ({'instances': [want[0], want[0]]}, 400, 'duplicate_id'),
            ({'instances': [dict(want[0], env='prod')]}, 400,
             'unknown_field'),
            ({'instances': {}}, 400, 'wrong_type'),
            ({}, 400, 'missing_field'),
            ({'instances': [], 'x': 1}, 400, 'unknown_field'),
            ({'instances': [{'id': 'c1', 'address': backend.addr(p1)}]},
             409, 'id_conflict')):
        check_error(call(nginx, 'PUT', put, body=body, token=TOKEN), status,
                    code)
    check_error(call(nginx, 'PUT', CL + '/envs/staging/instances',
                     body={'instances': []}, token=TOKEN), 404, 'unknown_env')
    check_error(call(nginx, 'PUT', put + '?timeout=-1',
                     body={'instances': []}, token=TOKEN), 400,
                'out_of_range')
    assert snapshot(nginx) == before


def test_put_opens_a_new_cluster(nginx, backend):
    start_admin(nginx, backend)
    path = '/api/v1/services/%s/clusters/blue/envs/canary/instances' % SERVICE
    r = call(nginx, 'PUT', path, token=TOKEN, body={'instances': [
        {'id': 'b1', 'address': backend.addr(backend.ok4[3])}]})
    assert r.status == 200 and r.json['added'] == ['b1'], r
    r = call(nginx, 'GET',
             '/api/v1/services/%s/clusters/blue/instances/b1' % SERVICE)
    assert r.status == 200 and r.json['instance']['env'] == 'canary', r
    with open(nginx.state_path) as f:
        doc = json.load(f)
    assert doc['services'][SERVICE]['clusters']['blue']['instances'][0][
        'id'] == 'b1'


def test_removal_in_state_file_completes_at_start(nginx, backend):
    """A removal under way when nginx stopped: nothing is in flight after
    a start, the instance goes at once."""
    now = int(time.time() * 1000)
    start_admin(nginx, backend, services={SERVICE: {'default': [
        instance('p1', backend.addr(backend.ok4[0])),
        dict(instance('p2', backend.addr(backend.ok4[1])),
             removing={'since': now - 1000, 'deadline': now + 600000}),
    ]}})
    wait_for(lambda: set(file_instances(nginx)) == {'p1'}, 5 * SLOW,
             what='p2 removed from the state file')
    # the zone follows the file once its write is through (thread pool)
    wait_for(lambda: call(nginx, 'GET', inst_path('p2')).status == 404,
             5 * SLOW, what='p2 gone from the API')
    check_error(call(nginx, 'GET', inst_path('p2')), 404)
    assert set(ports_seen(nginx, 10)) == {backend.ok4[0]}


@pytest.mark.parametrize('bad', [
    {'since': 1},
    {'since': 1, 'deadline': 'soon'},
    {'since': 1, 'deadline': 0},
    {'since': 1, 'deadline': 2, 'why': 'x'},
])
def test_bad_removal_in_state_file_fails_config(nginx, backend, bad):
    nginx.write_state({SERVICE: {'default': [
        dict(instance('p1', backend.addr(backend.ok4[0])), removing=bad)]}})
    nginx.configure(state=True)
    rc, err = nginx.check()
    assert rc != 0 and 'removing' in err, err
