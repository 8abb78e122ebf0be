"""
The admin API's canary policy as a deploy pipeline uses it: a PUT moves
real traffic (the backend's port in each answer tells which env served),
rollback sends every sticky user back to prod with a new epoch, DELETE
gives back nginx.conf's tce_canary, each change is in the state file and
survives a restart, If-Match/ETag stop lost updates, and a state file
edited by hand since it was loaded is never overwritten.
"""

import json
import os

from admin_helpers import TOKEN, call, check_error, ports_seen, snapshot, \
    start_admin
from conftest import SERVICE, SLOW, wait_for


CANARY = '/api/v1/services/%s/clusters/default/canary' % SERVICE


def file_canary(nginx, cluster='default'):
    with open(nginx.state_path) as f:
        doc = json.load(f)
    return doc['services'][SERVICE]['clusters'][cluster].get('canary')


def test_put_moves_traffic_and_persists(nginx, backend):
    start_admin(nginx, backend)
    canary_port = backend.ok4[2]
    assert canary_port not in ports_seen(nginx)
    r = call(nginx, 'GET', CANARY)
    assert r.status == 200, r
    assert r.json['source'] == 'nginx.conf'
    # no tce_canary: prod only, as nginx.conf routes it
    assert r.json['canary'] == {'weight_bp': 0, 'weight': 0.0, 'epoch': 0,
                                'fallback': False}
    assert r.json['nginx_conf'] == [{'upstream': 'api',
                                     'canary': r.json['canary']}]
    gen = r.json['generation']
    assert r.headers['ETag'] == '"%d"' % gen

    r = call(nginx, 'PUT', CANARY, body={'weight': 100}, token=TOKEN)
    assert r.status == 200, r
    assert r.json['canary'] == {'weight_bp': 10000, 'weight': 100.0,
                                'epoch': 0, 'fallback': True}
    assert r.json['generation'] > gen
    assert r.headers['ETag'] == '"%d"' % r.json['generation']
    # every worker routes to the canary at its next request
    assert set(ports_seen(nginx)) == {canary_port}
    assert file_canary(nginx) == {'weight_bp': 10000, 'epoch': 0,
                                  'fallback': True}

    r = call(nginx, 'PUT', CANARY, body={'weight_bp': 0, 'fallback': False},
             token=TOKEN)
    assert r.status == 200, r
    assert canary_port not in ports_seen(nginx)
    assert file_canary(nginx) == {'weight_bp': 0, 'epoch': 0,
                                  'fallback': False}

    # a restart reads it back from the state file
    r = call(nginx, 'PUT', CANARY, body={'weight': '100'}, token=TOKEN)
    assert r.status == 200, r
    nginx.stop()
    nginx.proc = None
    nginx.start()
    r = call(nginx, 'GET', CANARY)
    assert r.json['canary']['weight_bp'] == 10000, r.json
    assert r.json['source'] == 'state'
    assert set(ports_seen(nginx)) == {canary_port}


def test_rollback_and_delete(nginx, backend):
    start_admin(nginx, backend, canary='weight=0')
    canary_port = backend.ok4[2]
    r = call(nginx, 'PUT', CANARY, body={'weight': 100}, token=TOKEN)
    assert r.status == 200, r
    assert set(ports_seen(nginx)) == {canary_port}
    r = call(nginx, 'PUT', CANARY, body={'rollback': True}, token=TOKEN)
    assert r.status == 200, r
    assert r.json['canary']['weight_bp'] == 0
    assert r.json['canary']['epoch'] == 1
    assert canary_port not in ports_seen(nginx)
    assert file_canary(nginx) == {'weight_bp': 0, 'epoch': 1,
                                  'fallback': True}
    # back up: the epoch is kept
    r = call(nginx, 'PUT', CANARY, body={'weight': 100}, token=TOKEN)
    assert r.json['canary']['epoch'] == 1
    # DELETE: nginx.conf's tce_canary (weight 0) again, file entry gone
    r = call(nginx, 'DELETE', CANARY, token=TOKEN)
    assert r.status == 200, r
    assert r.json['source'] == 'nginx.conf'
    # tce_canary weight=0 of upstream api, shown as such
    assert r.json['canary']['weight_bp'] == 0, r.json
    assert r.json['canary']['epoch'] == 0, r.json
    assert r.json['nginx_conf'] == [{'upstream': 'api',
                                     'canary': r.json['canary']}]
    assert canary_port not in ports_seen(nginx)
    assert file_canary(nginx) is None


def test_if_match(nginx, backend):
    start_admin(nginx, backend)
    etag = call(nginx, 'GET', CANARY).headers['ETag']
    r = call(nginx, 'PUT', CANARY, body={'weight': 10}, token=TOKEN,
             headers={'If-Match': etag})
    assert r.status == 200, r
    # a second writer with the old tag loses, and nothing changes
    before = snapshot(nginx)
    r = call(nginx, 'PUT', CANARY, body={'weight': 20}, token=TOKEN,
             headers={'If-Match': etag})
    e = check_error(r, 412, 'precondition_failed')
    assert r.json is not None and 'If-Match' in e['text']
    assert snapshot(nginx) == before
    r = call(nginx, 'DELETE', CANARY, token=TOKEN,
             headers={'If-Match': etag})
    check_error(r, 412, 'precondition_failed')
    assert snapshot(nginx) == before


def test_hand_edit_not_overwritten(nginx, backend):
    start_admin(nginx, backend)
    with open(nginx.state_path) as f:
        doc = json.load(f)
    doc['services'][SERVICE]['clusters']['default']['instances'][0][
        'weight'] = 9
    text = json.dumps(doc, indent=3)
    with open(nginx.state_path, 'w') as f:
        f.write(text)
    api_before = call(nginx, 'GET', '/api/v1/services/' + SERVICE).json
    r = call(nginx, 'PUT', CANARY, body={'weight': 50}, token=TOKEN)
    e = check_error(r, 409, 'state_file_changed')
    assert 'reload' in e['text'], e
    with open(nginx.state_path) as f:
        assert f.read() == text
    assert call(nginx, 'GET', '/api/v1/services/' + SERVICE).json \
        == api_before
    # after a reload the edit is live and the API may write again
    nginx.reload()
    r = call(nginx, 'PUT', CANARY, body={'weight': 50}, token=TOKEN)
    assert r.status == 200, r
    with open(nginx.state_path) as f:
        doc = json.load(f)
    cl = doc['services'][SERVICE]['clusters']['default']
    assert cl['instances'][0]['weight'] == 9
    assert cl['canary']['weight_bp'] == 5000


def test_needs_state_file(nginx, backend):
    from admin_helpers import admin_location
    token_file = os.path.join(nginx.dir, 'admin.tokens')
    with open(token_file, 'w') as f:
        f.write(TOKEN + '\n')
    nginx.configure(state=False, server_extra=admin_location(token_file))
    nginx.start()
    r = call(nginx, 'GET', '/api/v1/services')
    assert r.status == 200, r
    svc = {s['name']: s for s in r.json['services']}[SERVICE]
    assert svc['instances'] == 0 and svc['source'] == 'none'
    # no instance, no cluster: 404 before the store is even looked at
    check_error(call(nginx, 'PUT', CANARY, body={'weight': 5},
                     token=TOKEN), 404, 'unknown_cluster')


def test_concurrent_writers_serialized(nginx, backend):
    """Writers on both workers at once: every accepted write bumps the
    generation once and the file ends as the last one left it."""
    import threading
    start_admin(nginx, backend)
    results = []

    def writer(w):
        for i in range(10):
            r = call(nginx, 'PUT', CANARY, body={'weight_bp': w * 100 + i},
                     token=TOKEN)
            results.append(r.status)

    gen0 = call(nginx, 'GET', CANARY).json['generation']
    ts = [threading.Thread(target=writer, args=(w,)) for w in (1, 2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30 * SLOW)
    assert results == [200] * 20, results
    r = call(nginx, 'GET', CANARY)
    assert r.json['generation'] == gen0 + 20
    assert file_canary(nginx)['weight_bp'] == r.json['canary']['weight_bp']
    wait_for(lambda: True, 1)
