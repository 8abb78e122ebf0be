"""
Operator experience: what an nginx operator sees when something from
outside is odd (Consul answering an HTML page of bytes), when a reload
would lose traffic, and what is in effect.  Real nginx, real backend,
the Consul API double in this process; every wait polls with a
deadline.
"""

import json
import os
import re
import sys

import pytest

from conftest import SERVICE, file_size, instance, read_from, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'doubles'))

from consul_double import ConsulDouble  # noqa: E402


HEALTH = '/v1/health/service/' + SERVICE


@pytest.fixture
def consul():
    d = ConsulDouble(jitter=False).start()
    yield d
    d.stop()


def start_consul(nginx, consul, params='wait=1s', extra='', state=False,
                 upstreams=None):
    http_extra = '    tce_consul %s %s;\n' % (consul.url, params)
    http_extra += '    tce_consul_snapshot %s/snap.json;\n' % nginx.dir
    http_extra += extra
    kw = {'upstreams': upstreams} if upstreams else {}
    nginx.configure(http_extra=http_extra, state=state, **kw)
    nginx.start()


def ports_seen(nginx, n=12):
    out = set()
    for _ in range(n):
        r = nginx.get('/')
        out.add(int(r.text) if r.status == 200 else None)
    return out


def routes_to(nginx, ports, timeout=5):
    want = set(ports)
    wait_for(lambda: ports_seen(nginx) == want, timeout,
             what='routing to exactly %s' % sorted(want))


def status_raw(nginx):
    """/tce/status as bytes, asserting a 200 that is valid JSON."""
    r = nginx.get('/tce/status')
    assert r.status == 200, r
    return json.loads(r.body.decode('utf-8'))


def printable(text):
    return all(0x20 <= ord(c) < 0x7f for c in text)


# ------------------------------------------- strings from outside (crash)

# an HTML error page of a proxy in front of Consul, with bytes that are
# not UTF-8, control bytes (an escape sequence, a NUL, a bell) and a
# forged log line
UGLY_BODY = (b'<html><body>\xff\xfe bad \xc3\x28 gateway\x1b[31m red'
             b'\x00nul\x07 \\ back\n2026/01/01 [emerg] forged\r\n'
             b'</body></html>\n')


def test_consul_error_body_escaped_in_status_and_log(backend, nginx,
                                                     consul):
    start_consul(nginx, consul)
    consul.register(SERVICE, 'api-1', '127.0.0.1', backend.ok4[0])
    routes_to(nginx, [backend.ok4[0]])
    since = file_size(nginx.error_log)
    # the "[emerg]" quoted, escaped, inside the one error line
    nginx.allowed_log.add('forged')

    consul.add_fault('status', count=-1, path=HEALTH, status=500,
                     body=UGLY_BODY)

    def failed():
        d = status_raw(nginx)['services'][SERVICE].get('discovery', {})
        return d.get('errors', 0) >= 2 and d
    d = wait_for(failed, 10, what='two failed queries in the status')

    # valid JSON (status_raw), the error quoted with its bytes escaped
    err = d['last_error']
    assert printable(err), err
    assert err.startswith('HTTP 500: <html><body>\\xFF\\xFE bad \\xC3('), err
    assert '\\x1B[31m red\\x00nul\\x07 \\x5C back' in err, err
    assert '\\x0A2026/01/01' in err, err
    # traffic kept, on the last good set
    assert ports_seen(nginx) == {backend.ok4[0]}

    # the error log line: printable, on one line, the same text
    line = nginx.wait_error_line(lambda l: 'HTTP 500' in l, since,
                                 what='the error logged')
    assert printable(line), line
    assert err in line, (err, line)
    assert not any('forged' in l and 'HTTP 500' not in l
                   for l in read_from(nginx.error_log, since).splitlines())


# ------------------------------------ state file: never lose traffic silently

OTHER = 'demo.web.other'

TWO_UPSTREAMS = """\
    upstream api { tce_service demo.web.api; }
    upstream other { tce_service demo.web.other; }
"""

OTHER_LOCATION = """\
        location /other/ {
            proxy_pass http://other;
        }
"""


def good_state(nginx, backend, services=(SERVICE, OTHER)):
    nginx.write_state({svc: {'default': [
        instance('api-1', backend.addr(backend.ok4[0])),
        instance('api-2', backend.addr(backend.ok4[1]))]}
        for svc in services})


def start_state(nginx, backend, http_extra=''):
    good_state(nginx, backend)
    nginx.configure(upstreams=TWO_UPSTREAMS, server_extra=OTHER_LOCATION,
                    http_extra=http_extra)
    nginx.start()
    assert_serving(nginx, backend)


def assert_serving(nginx, backend):
    for path in ('/', '/other/x'):
        rs = [nginx.get(path) for _ in range(4)]
        assert [r.status for r in rs] == [200] * 4, (path, rs)
        assert {int(r.text) for r in rs} == set(backend.ok4[:2]), rs


def instances(nginx, service):
    return sorted(i['id'] for i in
                  nginx.status()['services'][service]['instances'])


def bad_file_gone(nginx, backend):
    os.rename(nginx.state_path, nginx.state_path + '.moved')


def bad_path_typo(nginx, backend):
    nginx.configure(upstreams=TWO_UPSTREAMS, server_extra=OTHER_LOCATION,
                    state='tce_state %s/stat.json;' % nginx.dir)


def bad_no_services(nginx, backend):
    nginx.write_state(raw='{"version": 1}\n')


def bad_one_left_out(nginx, backend):
    good_state(nginx, backend, services=(SERVICE,))


def bad_no_instances(nginx, backend):
    nginx.write_state({SERVICE: {'default': [
        instance('api-1', backend.addr(backend.ok4[0])),
        instance('api-2', backend.addr(backend.ok4[1]))]},
        OTHER: {'default': []}})


BAD_RELOADS = {
    'file gone': (bad_file_gone, '"<state-file>" does not exist',
                  ['"demo.web.api" (2 instances)',
                   '"demo.web.other" (2 instances)', '2 services']),
    'path typo': (bad_path_typo, '"<tmp>/nginx/stat.json" does not exist',
                  ['"demo.web.api" (2 instances)', '2 services']),
    'no services': (bad_no_services, '"<state-file>"',
                    ['"demo.web.api" (2 instances, not in the file)',
                     '"demo.web.other" (2 instances, not in the file)']),
    'one left out': (bad_one_left_out, '"<state-file>"',
                     ['1 service without',
                      '"demo.web.other" (2 instances, not in the file)']),
    'no instances': (bad_no_instances, '"<state-file>"',
                     ['1 service without',
                      '"demo.web.other" (2 instances, none in the file)']),
}


@pytest.mark.parametrize('case', list(BAD_RELOADS))
def test_reload_that_would_empty_a_service_is_refused(backend, nginx, case):
    spoil, where, words = BAD_RELOADS[case]
    start_state(nginx, backend)
    before = nginx.status()

    spoil(nginx, backend)
    log = nginx.masked(nginx.reload_refused())

    line = [l for l in log.splitlines() if '[emerg]' in l][0]
    assert 'tce_state ' + where in line, line
    assert 'reload refused' in line and 'nothing was changed' in line, line
    assert '"tce_state_allow_empty on;"' in line, line
    for w in words:
        assert w in line, (w, line)
    if case in ('one left out', 'no instances'):
        assert 'demo.web.api"' not in line, line

    # traffic kept, the registry unchanged
    assert_serving(nginx, backend)
    assert nginx.status()['services'] == before['services']


def test_allow_empty_lets_the_reload_empty_services(backend, nginx):
    start_state(nginx, backend, http_extra='    tce_state_allow_empty on;\n')
    bad_no_services(nginx, backend)
    nginx.reload()
    assert nginx.get('/').status == 503
    assert nginx.get('/other/x').status == 503
    assert instances(nginx, SERVICE) == [] and instances(nginx, OTHER) == []


def test_reload_keeping_instances_passes(backend, nginx):
    """The guard is about instances: moving them, draining them all or
    emptying a service that had none is an operator's plain edit."""
    start_state(nginx, backend)
    nginx.write_state({SERVICE: {'default': [
        instance('api-3', backend.addr(backend.ok4[2]), state='draining')]},
        OTHER: {'default': [
            instance('api-1', backend.addr(backend.ok4[0]))]},
        'demo.web.spare': {'default': []}})
    nginx.reload()
    assert instances(nginx, SERVICE) == ['api-3']
    assert nginx.get('/').status == 503        # drained by the operator
    assert int(nginx.get('/other/x').text) == backend.ok4[0]


def test_state_file_without_version_refused(backend, nginx):
    start_state(nginx, backend)
    nginx.write_state(raw='{}\n')
    log = nginx.masked(nginx.reload_refused())
    assert ('tce_state "<state-file>": document: missing required key '
            '"version"') in log, log
    assert_serving(nginx, backend)
    rc, out = nginx.check()
    assert rc != 0 and 'missing required key "version"' in out, out


def test_state_directory_typo_warned_at_nginx_t(nginx):
    nginx.configure(state='tce_state %s/nodir/state.json;' % nginx.dir)
    rc, out = nginx.check()
    out = nginx.masked(out)
    assert rc == 0, out
    assert ('[warn]' in out and 'tce_state "<tmp>/nginx/nodir/state.json": '
            'its directory "<tmp>/nginx/nodir" cannot be used: a typo?'
            in out), out

    # an existing directory, the file not there yet: no warning
    nginx.configure()
    rc, out = nginx.check()
    assert rc == 0 and '[warn]' not in out, out
    assert 'does not exist yet' in out, out


# ------------------------------- operator overrides over Consul's instances

def consul_ids(nginx):
    """{port: instance id} as tce_status shows them."""
    insts = nginx.status()['services'].get(SERVICE, {}).get('instances', [])
    return {int(i['address'].rsplit(':', 1)[1]): i for i in insts}


def overrides_state(nginx, backend, overrides):
    """The state file: the Consul-fed service's instances named by their
    ids in tce_status, with an override each where given."""
    insts = [instance(id, backend.addr(port), override=ov)
             for id, port, ov in overrides]
    nginx.write_state({SERVICE: {'default': insts}})


def test_state_overrides_apply_to_consul_instances(backend, nginx, consul):
    nginx.write_state({})
    start_consul(nginx, consul, state=True)
    p1, p2, p3 = backend.ok4[:3]
    consul.register(SERVICE, 'api-1', '127.0.0.1', p1)
    consul.register(SERVICE, 'api-2', '127.0.0.1', p2)
    routes_to(nginx, [p1, p2])
    ids = {p: i['id'] for p, i in consul_ids(nginx).items()}

    # the operator drains api-2 and weighs api-1 in the state file
    overrides_state(nginx, backend, [(ids[p1], p1, {'weight': 7}),
                                     (ids[p2], p2, {'drain': True})])
    since = file_size(nginx.error_log)
    nginx.reload()
    routes_to(nginx, [p1])
    insts = consul_ids(nginx)
    assert insts[p2]['state'] == 'draining', insts
    assert insts[p1]['effective_weight'] == 7 and insts[p1]['weight'] == 1
    assert nginx.status()['services'][SERVICE]['source'] == 'consul'
    nginx.wait_error_line(
        lambda l: '[notice]' in l and 'overrides (2) applied' in l
        and SERVICE in l and 'Consul' in l, since,
        what='the notice that overrides apply over Consul')

    # a discovery update does not wipe them
    consul.register(SERVICE, 'api-3', '127.0.0.1', p3)
    routes_to(nginx, [p1, p3])
    assert consul_ids(nginx)[p2]['state'] == 'draining'

    # the override removed from the file: api-2 serves again
    overrides_state(nginx, backend, [(ids[p1], p1, None),
                                     (ids[p2], p2, None)])
    nginx.reload()
    routes_to(nginx, [p1, p2, p3])
    assert consul_ids(nginx)[p1]['effective_weight'] == 1


def test_override_matching_no_consul_instance_warned(backend, nginx, consul):
    nginx.write_state({})
    start_consul(nginx, consul, state=True)
    consul.register(SERVICE, 'api-1', '127.0.0.1', backend.ok4[0])
    routes_to(nginx, [backend.ok4[0]])
    real = consul_ids(nginx)[backend.ok4[0]]['id']

    # "api-1" is the Service.ID alone: Consul's instances are per node
    overrides_state(nginx, backend, [('api-1', backend.ok4[0],
                                      {'drain': True})])
    since = file_size(nginx.error_log)
    nginx.reload()
    line = nginx.wait_error_line(
        lambda l: 'match no instance' in l, since,
        what='a warning about the override matching nothing')
    assert '[warn]' in line and SERVICE in line, line
    assert '(the first: "api-1")' in line, line
    assert 'its instance ids are like "%s"' % real in line, line
    assert ports_seen(nginx) == {backend.ok4[0]}


# ------------------------------------------------ mistakes at nginx -t

def test_canary_key_without_variable_warned(nginx):
    nginx.write_state({})
    for key, warned in (('uid', True), ('$cookie_uid', False),
                        ('${cookie_uid}-x', False)):
        nginx.configure(upstreams='    upstream api {\n'
                        '        tce_service demo.web.api;\n'
                        '        tce_canary weight=10 key=%s;\n'
                        '    }\n' % key)
        rc, out = nginx.check()
        assert rc == 0, out
        line = [l for l in out.splitlines() if 'has no variable' in l]
        if warned:
            assert line and '[warn]' in line[0], out
            assert ('canary "key=uid" has no variable: every request gets '
                    'the same bucket' in line[0]), line
            assert 'key=$cookie_uid?' in line[0], line
        else:
            assert not line, (key, out)


# ------------------------------- discovery=state: kept out of the Consul watch

STATE_ONLY_UPSTREAMS = """\
    upstream api { tce_service demo.web.api; }
    upstream other { tce_service demo.web.other discovery=state; }
"""


def consul_queries(consul, service):
    return [r for r in consul.requests('/v1/health/service/' + service)]


@pytest.mark.parametrize('extra', ['', '    tce_consul_services tag=edge;\n'],
                         ids=['by name', 'catalog mode'])
def test_discovery_state_never_queried(backend, nginx, consul, extra):
    p1, p2, p3 = backend.ok4[:3]
    nginx.write_state({OTHER: {'default': [
        instance('o-1', backend.addr(p2))]}})
    # Consul knows the state-only name too, tagged: it must not matter
    consul.register(SERVICE, 'api-1', '127.0.0.1', p1, tags=['edge'])
    consul.register(OTHER, 'other-1', '127.0.0.1', p3, tags=['edge'])
    http_extra = '    tce_consul %s wait=1s;\n' % consul.url
    http_extra += '    tce_consul_snapshot %s/snap.json;\n' % nginx.dir
    nginx.configure(http_extra=http_extra + extra,
                    upstreams=STATE_ONLY_UPSTREAMS,
                    server_extra=OTHER_LOCATION)
    nginx.start()

    routes_to(nginx, [p1])
    # the Consul-fed one answered; two more blocking queries came back
    # (wait=1s): the watcher had every chance to ask for the other
    n0 = len(consul.requests('/v1/'))
    wait_for(lambda: len(consul.requests('/v1/')) >= n0 + 2, 10,
             what='two more queries to Consul')
    assert consul_queries(consul, OTHER) == [], consul.requests()

    # served from the state file, not from Consul's instance
    rs = [nginx.get('/other/x') for _ in range(4)]
    assert {int(r.text) for r in rs} == {p2}, rs
    st = nginx.status()['services']
    assert st[OTHER]['source'] == 'state', st[OTHER]
    assert st[SERVICE]['source'] == 'consul', st[SERVICE]

    # a change of the file is applied at reload, still no query
    nginx.write_state({OTHER: {'default': [
        instance('o-2', backend.addr(p3))]}})
    nginx.reload()
    wait_for(lambda: {int(nginx.get('/other/x').text)
                      for _ in range(4)} == {p3}, 5,
             what='the state file change served')
    assert consul_queries(consul, OTHER) == [], consul.requests()


@pytest.mark.parametrize('ups,text', [
    ('    upstream api { tce_service demo.web.api discovery=dns; }\n',
     'invalid "discovery=dns" in "tce_service": "discovery=state"'),
    ('    upstream api { tce_service demo.web.api discovery=state; }\n'
     '    upstream b { tce_service demo.web.api; }\n',
     'service "demo.web.api" is named with "discovery=state" in one '
     '"tce_service" and without it in another'),
    ('    map $host $psm { default demo.web.api; }\n'
     '    upstream api { tce_service $psm discovery=state; }\n',
     '"discovery=state" needs a service name in "tce_service", not a '
     'variable'),
])
def test_discovery_bad_values_refused(nginx, ups, text):
    nginx.write_state({})
    nginx.configure(upstreams=ups)
    rc, out = nginx.check()
    assert rc != 0 and '[emerg]' in out and text in out, out
