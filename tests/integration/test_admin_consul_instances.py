"""
The admin API on instances Consul reports (the Consul API double in
this process): drain, down and weight overrides work and move traffic,
survive a Consul update, a reload and a restart (they are kept in the
state file, apart from Consul's data); adding or removing such
instances answers 409 saying that they are registered in Consul, and
changes nothing.
"""

import json
import os
import sys

import pytest

from admin_helpers import TOKEN, admin_location, call, check_error
from conftest import SERVICE, SLOW, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'doubles'))

from consul_double import ConsulDouble  # noqa: E402


CL = '/api/v1/services/%s/clusters/default' % SERVICE


@pytest.fixture
def consul():
    d = ConsulDouble(jitter=False).start()
    yield d
    d.stop()


def start(nginx, consul, backend):
    token_file = os.path.join(nginx.dir, 'admin.tokens')
    with open(token_file, 'w') as f:
        f.write('%s deployer\n' % TOKEN)
    nginx.write_state({})
    http_extra = '    tce_consul %s wait=1s;\n' % consul.url
    http_extra += '    tce_consul_snapshot %s/snap.json;\n' % nginx.dir
    nginx.configure(http_extra=http_extra, state=True,
                    server_extra=admin_location(token_file))
    nginx.start()


def ports(nginx, n=16):
    out = set()
    for _ in range(n):
        r = nginx.get('/')
        out.add(int(r.text) if r.status == 200 else None)
    return out


def routes_to(nginx, want, timeout=5):
    wait_for(lambda: ports(nginx) == set(want), timeout * SLOW,
             what='routing to exactly %s' % sorted(want))


def ids_by_port(nginx):
    r = call(nginx, 'GET', CL + '/instances')
    assert r.status == 200, r
    return {int(i['address'].rsplit(':', 1)[1]): i
            for i in r.json['instances']}


def file_doc(nginx):
    with open(nginx.state_path) as f:
        return json.load(f)


def test_overrides_on_consul_instances(nginx, backend, consul):
    start(nginx, consul, backend)
    p1, p2, p3 = backend.ok4[:3]
    consul.register(SERVICE, 'api-1', '127.0.0.1', p1)
    consul.register(SERVICE, 'api-2', '127.0.0.1', p2)
    routes_to(nginx, [p1, p2])
    ids = {p: i['id'] for p, i in ids_by_port(nginx).items()}
    assert '/' in ids[p2]           # <node>/<service id>: a '/' in the path

    # drain api-2 through the API: the id goes in the path as it is
    r = call(nginx, 'PATCH', CL + '/instances/' + ids[p2],
             body={'drain': True}, token=TOKEN)
    assert r.status == 200, r
    assert r.json['instance']['state'] == 'draining'
    routes_to(nginx, [p1])
    # %2F works too
    r = call(nginx, 'PATCH', CL + '/instances/' + ids[p1].replace('/', '%2F'),
             body={'weight': 7}, token=TOKEN)
    assert r.status == 200 and r.json['instance']['effective_weight'] == 7, r
    carried = {i['id']: i for i in file_doc(nginx)['services'][SERVICE][
        'clusters']['default']['instances']}
    assert carried[ids[p2]]['override'] == {'drain': True}
    assert carried[ids[p2]]['address'] == backend.addr(p2)
    assert carried[ids[p1]]['override'] == {'weight': 7}

    # a Consul update (a new instance, api-2 registered again) keeps them
    consul.register(SERVICE, 'api-3', '127.0.0.1', p3)
    consul.register(SERVICE, 'api-2', '127.0.0.1', p2, tags=['again'])
    routes_to(nginx, [p1, p3])
    by = ids_by_port(nginx)
    assert by[p2]['state'] == 'draining'
    assert by[p2]['sources']['state'] == 'override'
    assert by[p1]['effective_weight'] == 7 and by[p1]['weight'] == 1

    # a reload and a restart keep them (the state file)
    nginx.reload()
    routes_to(nginx, [p1, p3])
    nginx.stop()
    nginx.proc = None
    nginx.start()
    routes_to(nginx, [p1, p3])
    assert ids_by_port(nginx)[p1]['effective_weight'] == 7

    # cleared: api-2 serves again, its entry leaves the state file
    r = call(nginx, 'PATCH', CL + '/instances/' + ids[p2],
             body={'drain': None}, token=TOKEN)
    assert r.status == 200, r
    routes_to(nginx, [p1, p2, p3])
    carried = [i['id'] for i in file_doc(nginx)['services'][SERVICE][
        'clusters']['default']['instances']]
    assert carried == [ids[p1]]


def test_add_remove_consul_instances_refused(nginx, backend, consul):
    start(nginx, consul, backend)
    p1, p2 = backend.ok4[:2]
    consul.register(SERVICE, 'api-1', '127.0.0.1', p1)
    routes_to(nginx, [p1])
    iid = ids_by_port(nginx)[p1]['id']
    before = open(nginx.state_path, 'rb').read()
    gen = call(nginx, 'GET', '/api/v1/services/' + SERVICE).json['generation']

    for method, path, body in (
            ('DELETE', CL + '/instances/' + iid, None),
            ('POST', CL + '/instances',
             {'id': 'x1', 'address': backend.addr(p2)}),
            ('PUT', CL + '/envs/prod/instances', {'instances': []})):
        e = check_error(call(nginx, method, path, body=body, token=TOKEN),
                        409, 'registered_in_consul')
        assert 'registered in Consul' in e['text'], e

    assert open(nginx.state_path, 'rb').read() == before
    assert call(nginx, 'GET', '/api/v1/services/' + SERVICE).json[
        'generation'] == gen
    routes_to(nginx, [p1])
