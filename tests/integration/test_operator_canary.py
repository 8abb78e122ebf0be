"""
The canary policy in effect, per service and cluster, as an operator
sees it: in tce_status ("canary": weight in basis points, epoch,
fallback, source) and as the gauges tce_canary_weight_basis_points and
tce_canary_epoch of tce_metrics (which pass promtool).  Sources:
nginx.conf's tce_canary, the state file, the admin API.  Real nginx,
real backends; the expected values are the ones written in nginx.conf,
the state file or the request.
"""

import json
import re
import subprocess

from admin_helpers import TOKEN, admin_location, call
from conftest import SERVICE, instance

PROMTOOL = '/usr/bin/promtool'

METRICS = """\
        location = /metrics { tce_metrics; }
"""


def services(backend, canary=None):
    cl = {'instances': [
        instance('p1', backend.addr(backend.ok4[0])),
        instance('c1', backend.addr(backend.ok4[1]), env='canary')]}
    if canary is not None:
        cl['canary'] = canary
    return {'version': 1, 'services': {SERVICE: {'clusters': {
        'default': cl,
        'blue': {'instances': [instance('b1',
                                        backend.addr(backend.ok4[2]))]}}}}}


def start(nginx, backend, tce_canary, canary=None, admin=False):
    nginx.write_state(raw=json.dumps(services(backend, canary)))
    extra = METRICS
    if admin:
        tokens = '%s/admin.tokens' % nginx.dir
        with open(tokens, 'w') as f:
            f.write(TOKEN + '\n')
        extra += admin_location(tokens)
    nginx.configure(upstreams='    upstream api {\n'
                    '        tce_service %s;\n'
                    '        tce_canary %s;\n'
                    '    }\n'
                    '    upstream blue { tce_service %s cluster=blue; }\n'
                    % (SERVICE, tce_canary, SERVICE),
                    server_extra=extra)
    nginx.start()


def in_status(nginx):
    return nginx.status()['services'][SERVICE]['canary']


def gauges(nginx):
    """{(family, service, cluster): value} of the canary gauges, and
    promtool's verdict on the whole scrape."""
    r = nginx.get('/metrics')
    assert r.status == 200, r
    p = subprocess.run([PROMTOOL, 'check', 'metrics'], input=r.body,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=30)
    assert p.returncode == 0, p.stdout.decode()
    out = {}
    for m in re.finditer(r'^(tce_canary_weight_basis_points|tce_canary_epoch)'
                         r'\{service="([^"]*)",cluster="([^"]*)"\} (\d+)$',
                         r.text, re.M):
        out[(m.group(1), m.group(2), m.group(3))] = int(m.group(4))
    return out


def expect(nginx, cluster, weight_bp, epoch, fallback, source):
    st = in_status(nginx)
    assert st[cluster] == {'weight_bp': weight_bp, 'epoch': epoch,
                           'fallback': fallback, 'source': source}, st
    g = gauges(nginx)
    assert g[('tce_canary_weight_basis_points', SERVICE, cluster)] \
        == weight_bp, g
    assert g[('tce_canary_epoch', SERVICE, cluster)] == epoch, g


def test_policy_from_nginx_conf(backend, nginx):
    start(nginx, backend, 'weight=12.5 fallback=off')
    expect(nginx, 'default', 1250, 0, False, 'nginx.conf')
    # blue's upstream has no tce_canary: prod only, no fallback
    expect(nginx, 'blue', 0, 0, False, 'nginx.conf')
    assert set(in_status(nginx)) == {'default', 'blue'}


def test_policy_from_state_file_then_back(backend, nginx):
    start(nginx, backend, 'weight=12.5',
          canary={'weight_bp': 2500, 'epoch': 3})
    expect(nginx, 'default', 2500, 3, True, 'state')
    expect(nginx, 'blue', 0, 0, False, 'nginx.conf')

    # the canary object removed: nginx.conf's again
    nginx.write_state(raw=json.dumps(services(backend)))
    nginx.reload()
    expect(nginx, 'default', 1250, 0, True, 'nginx.conf')


def test_policy_from_admin(backend, nginx):
    start(nginx, backend, 'weight=1', admin=True)
    base = '/api/v1/services/%s/clusters/default/canary' % SERVICE
    r = call(nginx, 'PUT', base, {'weight_bp': 4000}, token=TOKEN)
    assert r.status == 200, r
    expect(nginx, 'default', 4000, 0, True, 'admin')

    r = call(nginx, 'PUT', base, {'rollback': True}, token=TOKEN)
    assert r.status == 200, r
    expect(nginx, 'default', 0, 1, True, 'admin')

    r = call(nginx, 'DELETE', base, token=TOKEN)
    assert r.status == 200, r
    expect(nginx, 'default', 100, 0, True, 'nginx.conf')
