"""
Consul discovery fed with what real agents send (the double reproduces
it): the same service ID on several nodes, check output with NUL and
binary bytes, 10000-scale weights, warning and critical instances,
catalog tags that only some instances carry, gzip, elections.
Routing is read from what clients get (each backend port answers its
own number: counting answers counts the requests each backend got);
every wait polls with a deadline.
"""

import os
import sys

import pytest

from conftest import SERVICE, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'doubles'))

from consul_double import ConsulDouble  # noqa: E402


@pytest.fixture
def consul():
    d = ConsulDouble(jitter=False).start()
    yield d
    d.stop()


def start(nginx, consul, extra='', upstreams=None):
    kw = {'upstreams': upstreams} if upstreams else {}
    nginx.configure(http_extra='    tce_consul %s wait=2s;\n%s'
                    % (consul.url, extra), state=False, **kw)
    nginx.start()


def counts(nginx, n, headers=None):
    """Answers of n fresh requests: {backend port: count}, a status code
    for a request that did not get a 200."""
    out = {}
    for _ in range(n):
        r = nginx.get('/', headers=headers)
        key = int(r.text) if r.status == 200 else 'status %d' % r.status
        out[key] = out.get(key, 0) + 1
    return out


def routes_to(nginx, ports, timeout=5, headers=None):
    want = set(ports)
    wait_for(lambda: set(counts(nginx, 12, headers)) == want, timeout,
             what='routing to exactly %s' % sorted(want))


def instances(nginx, service=SERVICE):
    return {i['id']: i for i in
            nginx.status()['services'].get(service, {}).get('instances', [])}


def discovery(nginx, service=SERVICE):
    return nginx.status()['services'].get(service, {}).get('discovery', {})


def test_same_service_id_on_two_nodes_both_routed(backend, nginx, consul):
    """Registered without an ID, an instance's Service.ID is the service
    name on every node: one host used to take all the traffic."""
    start(nginx, consul)
    consul.register(SERVICE, None, '127.0.0.1', backend.ok4[0],
                    node='node-a')
    consul.register(SERVICE, None, '127.0.0.1', backend.ok4[1],
                    node='node-b')
    routes_to(nginx, [backend.ok4[0], backend.ok4[1]])

    ids = sorted(instances(nginx))
    assert ids == ['node-a/' + SERVICE, 'node-b/' + SERVICE], ids

    # the agent of node-b goes away: its instance only
    consul.set_node_health('node-b', 'critical')
    routes_to(nginx, [backend.ok4[0]])
    assert sorted(instances(nginx)) == ['node-a/' + SERVICE]

    # the answers came gzipped (curl asks, Consul's handler answers)
    assert consul.state()['gzipped'] > 0


def test_nul_and_binary_check_output_still_followed(backend, nginx,
                                                    consul):
    """A NUL anywhere (Go writes \\u0000) made the whole answer
    unparsable: at start the service served 503, later it stopped
    following Consul."""
    consul.register(SERVICE, 'api-1', '127.0.0.1', backend.ok4[0],
                    output=b'200 OK \x00\x01\xff\xfe<html>&\x00 {"x": [')
    start(nginx, consul)
    routes_to(nginx, [backend.ok4[0]])

    consul.set_check('service:api-1', 'passing',
                     '\x00' * 100 + '\u2028 \ufffd ' + 'z' * 3900)
    consul.register(SERVICE, 'api-2', '127.0.0.1', backend.ok4[1],
                    tags=['a\x00b'], meta={'note': 'x\x00y'},
                    output='\x00')
    routes_to(nginx, [backend.ok4[0], backend.ok4[1]])

    d = discovery(nginx)
    assert d['last_error'] == '', d


def test_large_weights_split_1_to_3(backend, nginx, consul):
    """Weights.Passing above 1000 made the entry skipped (a service
    whose instances all had 10000-scale weights went to 503)."""
    consul.register(SERVICE, None, '127.0.0.1', backend.ok4[0],
                    node='node-a', weight=10000)
    consul.register(SERVICE, None, '127.0.0.1', backend.ok4[1],
                    node='node-b', weight=30000)
    start(nginx, consul)
    routes_to(nginx, [backend.ok4[0], backend.ok4[1]])

    insts = instances(nginx)
    assert insts['node-a/' + SERVICE]['weight'] == 1, insts
    assert insts['node-b/' + SERVICE]['weight'] == 3, insts

    # each worker runs an exact weighted cycle of 4: at most a few off
    got = counts(nginx, 400)
    a, b = got.get(backend.ok4[0], 0), got.get(backend.ok4[1], 0)
    assert a + b == 400, got
    assert abs(b - 3 * a) <= 16, got


def test_warning_at_warning_weight_critical_none(backend, nginx, consul):
    """Consul DNS's reading: warning -> Weights.Warning, critical ->
    nothing.  The query used passing=1, which dropped warning
    instances altogether."""
    for n, status in ((0, 'passing'), (1, 'warning'), (2, 'critical')):
        consul.register(SERVICE, None, '127.0.0.1', backend.ok4[n],
                        node='node-%d' % n, weight=3000,
                        warning_weight=1000, status=status)
    start(nginx, consul)
    routes_to(nginx, [backend.ok4[0], backend.ok4[1]])

    got = counts(nginx, 400)
    a, b = got.get(backend.ok4[0], 0), got.get(backend.ok4[1], 0)
    assert a + b == 400 and backend.ok4[2] not in got, got
    assert abs(a - 3 * b) <= 16, got

    # the warning clears: both at Weights.Passing; critical comes back
    consul.set_check('service:' + SERVICE, 'passing', node='node-1')
    consul.set_check('service:' + SERVICE, 'passing', node='node-2')
    routes_to(nginx, [backend.ok4[0], backend.ok4[1], backend.ok4[2]])
    insts = instances(nginx)
    assert {i['weight'] for i in insts.values()} == {1}, insts

    # Warning 0: a warning instance gets nothing
    consul.register(SERVICE, None, '127.0.0.1', backend.ok4[1],
                    node='node-1', weight=3000, warning_weight=0,
                    status='warning')
    routes_to(nginx, [backend.ok4[0], backend.ok4[2]])


def test_catalog_tag_untagged_instance_gets_nothing(backend, nginx,
                                                    consul):
    """/v1/catalog/services lists the union of the instances' tags: an
    instance without the tag used to get traffic."""
    ups = ('    map $http_x_service $tce_svc { default $http_x_service; }\n'
           '    upstream api { tce_service $tce_svc; }\n')
    consul.register(SERVICE, None, '127.0.0.1', backend.ok4[0],
                    node='node-a', tags=['edge'])
    consul.register(SERVICE, None, '127.0.0.1', backend.ok4[1],
                    node='node-b', tags=['other'])
    consul.register(SERVICE, None, '127.0.0.1', backend.ok4[2],
                    node='node-c')
    # Consul's tag filter ignores case
    consul.register(SERVICE, None, '127.0.0.1', backend.ok4[3],
                    node='node-d', tags=['EDGE'])
    start(nginx, consul, upstreams=ups,
          extra='    tce_consul_services tag=edge;\n')

    hdr = {'X-Service': SERVICE}
    routes_to(nginx, [backend.ok4[0], backend.ok4[3]], headers=hdr)
    assert sorted(instances(nginx)) == ['node-a/' + SERVICE,
                                        'node-d/' + SERVICE]

    # the tag moves to another instance: traffic follows
    consul.register(SERVICE, None, '127.0.0.1', backend.ok4[1],
                    node='node-b', tags=['edge'])
    consul.register(SERVICE, None, '127.0.0.1', backend.ok4[0],
                    node='node-a', tags=[])
    routes_to(nginx, [backend.ok4[1], backend.ok4[3]], headers=hdr)


def test_election_keeps_serving(backend, nginx, consul):
    """X-Consul-KnownLeader: false is still an answer; a 500 "No
    cluster leader" keeps the last good set."""
    consul.register(SERVICE, None, '127.0.0.1', backend.ok4[0],
                    node='node-a')
    start(nginx, consul)
    routes_to(nginx, [backend.ok4[0]])

    consul.known_leader(False)
    consul.register(SERVICE, None, '127.0.0.1', backend.ok4[1],
                    node='node-b')
    routes_to(nginx, [backend.ok4[0], backend.ok4[1]])

    # a query already open answers normally: wait for a refused one
    # before the change, then for two more refused after it
    health = '/v1/health/service/' + SERVICE
    consul.add_fault('no_leader', count=-1, path=health)
    wait_for(lambda: 'No cluster leader' in
             discovery(nginx).get('last_error', ''), 10,
             what='the election in the status')
    consul.register(SERVICE, None, '127.0.0.1', backend.ok4[2],
                    node='node-c')
    asked = consul.count(health)
    wait_for(lambda: consul.count(health) >= asked + 2, 10,
             what='two more refused queries')
    assert set(counts(nginx, 12)) == {backend.ok4[0], backend.ok4[1]}

    consul.clear_faults()
    consul.known_leader(True)
    routes_to(nginx, [backend.ok4[0], backend.ok4[1], backend.ok4[2]],
              timeout=20)



def test_missing_token_gets_acl_filtered_empty_answer(backend, nginx):
    """Without a token an agent with ACLs answers 200 [] (the anonymous
    token's reads are filtered), not 403: the last good set is kept and
    the answer counted, unless tce_consul_allow_empty on."""
    consul = ConsulDouble(token='s3cret', jitter=False).start()
    try:
        consul.register(SERVICE, None, '127.0.0.1', backend.ok4[0],
                        node='node-a')
        nginx.configure(http_extra='    tce_consul %s wait=2s token=s3cret;\n'
                        % consul.url, state=False)
        nginx.start()
        routes_to(nginx, [backend.ok4[0]])

        # the token is gone from the configuration
        nginx.configure(http_extra='    tce_consul %s wait=2s;\n'
                        % consul.url, state=False)
        nginx.reload()
        d = wait_for(lambda: discovery(nginx).get('empty_answers', 0) >= 1
                     and discovery(nginx), 10, what='an empty answer')
        assert d['errors'] == 0, d
        assert 'last known good set is kept' in d['last_error'], d
        assert set(counts(nginx, 12)) == {backend.ok4[0]}

        # allowed to empty: the service is emptied, clients get 503
        nginx.configure(http_extra='    tce_consul %s wait=2s;\n'
                        '    tce_consul_allow_empty on;\n' % consul.url,
                        state=False)
        nginx.reload()
        wait_for(lambda: set(counts(nginx, 4)) == {'status 503'}, 10,
                 what='the service emptied')
        assert instances(nginx) == {}
    finally:
        consul.stop()
