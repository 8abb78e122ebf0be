"""
nginx -t with the module loaded: every bad directive fails with an
[emerg] message naming the directive and the bad value; good configs
pass.
"""

import json
import os
import re

import pytest

from conftest import SERVICE, instance, state_doc


def upstream(body, name='api'):
    return '    upstream %s {\n%s    }\n' % (name, ''.join(
        '        %s\n' % l for l in body))


def token(value):
    """value as a whole token of a message (not inside a longer name)."""
    return re.compile(r'(?<![\w.-])%s(?![\w-])' % re.escape(value))


def emerg_naming(nginx, out, words):
    """The [emerg] line naming every word (strings or regexps), paths
    masked (see Nginx.masked)."""
    for line in nginx.masked(out).splitlines():
        if '[emerg]' not in line:
            continue
        if all((w.search(line) if hasattr(w, 'search') else w in line)
               for w in words):
            return line
    return None


def good_state(nginx):
    nginx.write_state({SERVICE: {'default': [
        instance('api-1', '127.0.0.1:9001', weight=5, version='v1'),
        instance('api-2', '[::1]:9002', override={'weight': 3})]}})


def assert_rejected(nginx, words):
    rc, out = nginx.check()
    assert rc != 0, 'nginx -t accepted the config:\n' + out
    line = emerg_naming(nginx, out, words)
    assert line, ('no [emerg] line naming %s:\n%s'
                  % ([getattr(w, 'pattern', w) for w in words],
                     nginx.masked(out)))


# ------------------------------------------------------------- tce_service

PSM = 'tce_service'

BAD_SERVICE_DIRECTIVES = {
    # id: (upstream body or other placement, words the message must hold)
    'outside upstream (http)': dict(
        http_extra='    tce_service demo.web.api;\n',
        words=[PSM]),
    'outside upstream (server)': dict(
        server_extra='        tce_service demo.web.api;\n', words=[PSM]),
    'outside upstream (location)': dict(
        location='            tce_service demo.web.api;\n', words=[PSM]),
    'P.S.M Demo.web': dict(up=['tce_service Demo.web;'],
                           words=[PSM, token('Demo.web')]),
    'P.S.M a.b': dict(up=['tce_service a.b;'], words=[PSM, token('a.b')]),
    'P.S.M a..b': dict(up=['tce_service a..b;'],
                       words=[PSM, token('a..b')]),
    'P.S.M uppercase': dict(up=['tce_service Demo.web.api;'],
                            words=[PSM, token('Demo.web.api')]),
    'P.S.M four parts': dict(up=['tce_service a.b.c.d;'],
                             words=[PSM, token('a.b.c.d')]),
    'P.S.M trailing dot': dict(up=['tce_service a.b.;'],
                               words=[PSM, token('a.b.')]),
    'cluster with slash': dict(
        up=['tce_service demo.web.api cluster=bad/name;'],
        words=[PSM, 'bad/name']),
    'cluster empty': dict(up=['tce_service demo.web.api cluster=;'],
                          words=[PSM, 'cluster=']),
    'cluster too long': dict(
        up=['tce_service demo.web.api cluster=%s;' % ('c' * 64)],
        words=[PSM, 'c' * 64]),
    'unknown parameter': dict(
        up=['tce_service demo.web.api foo=bar;'], words=[PSM, 'foo=bar']),
    'server parameter weight=': dict(
        up=['tce_service demo.web.api weight=5;'],
        words=[PSM, 'weight=5']),
    'max_fails=-1': dict(up=['tce_service demo.web.api max_fails=-1;'],
                         words=[PSM, 'max_fails=-1']),
    'max_fails=abc': dict(up=['tce_service demo.web.api max_fails=abc;'],
                          words=[PSM, 'max_fails=abc']),
    'fail_timeout=abc': dict(
        up=['tce_service demo.web.api fail_timeout=abc;'],
        words=[PSM, 'fail_timeout=abc']),
    'fail_timeout=-5s': dict(
        up=['tce_service demo.web.api fail_timeout=-5s;'],
        words=[PSM, 'fail_timeout=-5s']),
    'twice in one upstream': dict(
        up=['tce_service demo.web.api;', 'tce_service demo.web.other;'],
        words=[PSM]),
    'server before tce_service': dict(
        up=['server 127.0.0.1:9001;', 'tce_service demo.web.api;'],
        words=[PSM, token('server')]),
    'server after tce_service': dict(
        up=['tce_service demo.web.api;', 'server 127.0.0.1:9001;'],
        words=[PSM, token('server')]),
    'without any tce_zone': dict(up=['tce_service demo.web.api;'],
                                 zone='', status=False,
                                 words=[PSM, 'tce_zone']),
}


@pytest.mark.parametrize('case', list(BAD_SERVICE_DIRECTIVES))
def test_bad_tce_service(nginx, case):
    c = dict(BAD_SERVICE_DIRECTIVES[case])
    words = c.pop('words')
    body = c.pop('up', ['tce_service demo.web.api;'])
    good_state(nginx)
    nginx.configure(upstreams=upstream(body), **c)
    assert_rejected(nginx, words)


# --------------------------------------------------------------- tce_zone

BAD_ZONES = {
    'bad size': ('tce_zone tce abc;', ['tce_zone', 'abc']),
    'negative size': ('tce_zone tce -1m;', ['tce_zone', '-1m']),
    'bad unit': ('tce_zone tce 10q;', ['tce_zone', '10q']),
    'missing size': ('tce_zone tce;', ['tce_zone']),
    'too small': ('tce_zone tce 1k;', ['tce_zone', '1k']),
}


@pytest.mark.parametrize('case', list(BAD_ZONES))
def test_bad_tce_zone(nginx, case):
    zone, words = BAD_ZONES[case]
    good_state(nginx)
    nginx.configure(zone=zone)
    assert_rejected(nginx, words)


# -------------------------------------------------------------- tce_state

def doc_with(**fields):
    inst = instance('api-1', '127.0.0.1:9001')
    inst.update(fields)
    return state_doc({SERVICE: {'default': [inst]}})


BAD_STATES = {
    'not JSON': ('{"version": 1, "services": {', []),
    'weight 0': (doc_with(weight=0), ['weight']),
    'weight 1001': (doc_with(weight=1001), ['weight', '1001']),
    'env staging': (doc_with(env='staging'), ['staging']),
    'state sleeping': (doc_with(state='sleeping'), ['sleeping']),
    'address with host name': (doc_with(address='localhost:80'),
                               ['localhost:80']),
    'address without port': (doc_with(address='127.0.0.1'),
                             ['127.0.0.1']),
    'address missing': ({'version': 1, 'services': {SERVICE: {'clusters': {
        'default': {'instances': [{'id': 'api-1'}]}}}}}, ['address']),
    'bad service name': (state_doc({'Demo.web.api': {'default': [
        instance('api-1', '127.0.0.1:9001')]}}), ['Demo.web.api']),
    'bad cluster name': (state_doc({SERVICE: {'bad/name': [
        instance('api-1', '127.0.0.1:9001')]}}), ['bad/name']),
    'override weight 5000': (doc_with(override={'weight': 5000}),
                             ['weight', '5000']),
    'services not an object': ({'version': 1, 'services': []},
                               ['services']),
}


@pytest.mark.parametrize('case', list(BAD_STATES))
def test_bad_state_file(nginx, case):
    doc, words = BAD_STATES[case]
    nginx.write_state(raw=doc if isinstance(doc, str) else json.dumps(doc))
    nginx.configure()
    assert_rejected(nginx, ['<state-file>'] + words)


def test_state_file_unreadable_path_is_a_directory(nginx):
    os.mkdir(nginx.state_path)
    nginx.configure()
    assert_rejected(nginx, ['tce_state', '<state-file>'])


# ------------------------------------------------------------- good ones

def test_good_config_passes(nginx):
    good_state(nginx)
    nginx.configure(
        http_extra='    map $http_x_cluster $api_cluster {\n'
                   '        default default;\n        blue blue;\n    }\n',
        upstreams=upstream([
            'tce_service demo.web.api cluster=blue max_fails=3 '
            'fail_timeout=30s;',
            'keepalive 16;']) + upstream([
                'tce_service demo.web.other cluster=$api_cluster '
                'max_fails=0 fail_timeout=1m;'], 'other')
        + upstream(['tce_service my_prod.web-2.api_v1;'], 'third'))
    rc, out = nginx.check()
    assert rc == 0, out
    assert 'test is successful' in out


def test_good_config_with_missing_state_file_passes(nginx):
    nginx.configure()
    rc, out = nginx.check()
    assert rc == 0, out


# ------------------------------------- stock upstream directives beside it

# Every directive nginx 1.22's upstream{} has (Debian's build: the round
# robin, hash, ip_hash, least_conn, random, keepalive and zone modules),
# and nginx-plus ones, next to tce_service in both orders: each either
# works (requests served) or is refused at nginx -t with a message that
# names it, never a crash.

METHOD = ['cannot be combined with "tce_service"', '"hash"', '"ip_hash"',
          '"least_conn"', '"random"', 'upstream "api"']

STOCK_DIRECTIVES = {
    # id: (directive, {order: None (works) or words of the message})
    'hash': ('hash $remote_addr;', {'before': METHOD, 'after': METHOD}),
    'hash consistent': ('hash $remote_addr consistent;',
                        {'before': METHOD, 'after': METHOD}),
    'ip_hash': ('ip_hash;', {'before': METHOD, 'after': METHOD}),
    'least_conn': ('least_conn;', {'before': METHOD, 'after': METHOD}),
    'random': ('random;', {'before': METHOD, 'after': METHOD}),
    'random two': ('random two least_conn;',
                   {'before': METHOD, 'after': METHOD}),
    'keepalive': ('keepalive 8;', {
        'before': ['"keepalive"', 'after "tce_service"'], 'after': None}),
    'keepalive_requests': ('keepalive_requests 100;',
                           {'before': None, 'after': None}),
    'keepalive_time': ('keepalive_time 1h;', {'before': None, 'after': None}),
    'keepalive_timeout': ('keepalive_timeout 30s;',
                          {'before': None, 'after': None}),
    'server': ('server 127.0.0.1:9001;', {
        'before': ['"tce_service"', '"server"'],
        'after': ['"tce_service"', '"server"', 'upstream "api"']}),
    'server backup': ('server 127.0.0.1:9001 backup;', {
        'before': ['"tce_service"', '"server"'],
        'after': ['"tce_service"', '"server"', 'upstream "api"']}),
    'zone': ('zone upz 64k;', {
        'before': ['"zone"', 'cannot be combined with "tce_service"',
                   'upstream "api"'],
        'after': ['"zone"', 'cannot be combined with "tce_service"',
                  'upstream "api"']}),
}

# nginx-plus only: unknown to stock nginx, or (resolver) not allowed in
# an upstream{}
PLUS_DIRECTIVES = ['ntlm;', 'resolver 127.0.0.1;', 'resolver_timeout 5s;',
                   'sticky cookie srv_id;', 'queue 10;',
                   'state /tmp/upstream.state;']

STOCK_CASES = [(k, order) for k in sorted(STOCK_DIRECTIVES)
               for order in ('before', 'after')]


def beside(directive, order):
    tce = 'tce_service %s;' % SERVICE
    return upstream([directive, tce] if order == 'before'
                    else [tce, directive])


def check_no_signal(nginx):
    rc, out = nginx.check()
    # a negative code: nginx -t died on a signal (a crash)
    assert rc >= 0 and 'signal' not in out, (rc, out)
    return rc, out


@pytest.mark.parametrize('case,order', STOCK_CASES,
                         ids=['%s-%s' % c for c in STOCK_CASES])
def test_stock_upstream_directive_beside_tce_service(backend, nginx, case,
                                                     order):
    directive, outcome = STOCK_DIRECTIVES[case]
    words = outcome[order]
    nginx.write_state({SERVICE: {'default': [
        instance('api-1', backend.addr(backend.ok4[0]))]}})
    nginx.configure(upstreams=beside(directive, order))
    rc, out = check_no_signal(nginx)
    if words is None:
        assert rc == 0, out
        nginx.start()
        rs = [nginx.get('/beside/%d' % i) for i in range(4)]
        assert [r.status for r in rs] == [200] * 4, rs
        assert {int(r.text) for r in rs} == {backend.ok4[0]}
        return
    assert rc != 0, 'nginx -t accepted the config:\n' + out
    line = emerg_naming(nginx, out, words)
    assert line, ('no [emerg] line naming %s:\n%s'
                  % (words, nginx.masked(out)))


@pytest.mark.parametrize('directive', PLUS_DIRECTIVES)
@pytest.mark.parametrize('order', ['before', 'after'])
def test_nginx_plus_upstream_directive_unknown(nginx, directive, order):
    nginx.write_state({SERVICE: {'default': [
        instance('api-1', '127.0.0.1:9001')]}})
    nginx.configure(upstreams=beside(directive, order))
    rc, out = check_no_signal(nginx)
    assert rc != 0, out
    name = '"%s"' % directive.split()[0].rstrip(';')
    assert (emerg_naming(nginx, out, ['unknown directive', name])
            or emerg_naming(nginx, out, [name, 'is not allowed here'])), out
