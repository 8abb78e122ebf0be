"""
A zone too small says how much it needs (issue 14): the error of
nginx -t (and of a start or reload) names the zone's size, what the
state file's services and instances need (with tce_metrics' series
when it is on) and the tce_zone line to write; a zone of that size
then holds the registry, its metric series and a reload that changes
every set.  Real nginx, real backends; the zone's use is read from
tce_zone_used_bytes.
"""

import re

import pytest

from conftest import instance, wait_for
from test_metrics import metrics, scrape


UPSTREAMS = ('    map $http_x_service $tce_svc { default $http_x_service; }\n'
             '    upstream api { tce_service $tce_svc; }\n')
METRICS = '        location = /metrics { tce_metrics; }\n'
NAMES = ['size.s%d.api' % i for i in range(8)]
ADVICE = re.compile(
    r'tce zone "tce" is too small for tce_state "[^"]+": the zone has '
    r'(\d+) KB; its (\d+) services and (\d+) instances need about '
    r'(\d+) KB( \(their metric series included\))? and a reload that '
    r'changes them all needs more: set "tce_zone tce (\d+)k;" or larger')


def registry(backend, n, tag='i', weights=False):
    """n instances per service, on the backend's ports."""
    return {name: {'default': [
        instance('%s%03d' % (tag, k),
                 backend.addr(backend.ok4[k % len(backend.ok4)]),
                 weight=(k % 7 + 1) if weights else None)
        for k in range(n)]} for name in NAMES}


def metric_value(m, name):
    return sum(v for (n, _), v in m.items() if n == name)


@pytest.mark.parametrize('with_metrics', [True, False])
def test_too_small_zone_names_the_size_it_needs(backend, nginx,
                                                with_metrics):
    n = 40
    nginx.write_state(registry(backend, n, weights=True))
    extra = METRICS if with_metrics else ''
    nginx.configure(upstreams=UPSTREAMS, zone='tce_zone tce 128k;',
                    server_extra=extra)
    nginx.allowed_log.add('too small for tce_state')
    rc, out = nginx.check()
    assert rc != 0, out
    m = ADVICE.search(out)
    assert m, out
    zone_kb, nsvc, ninst, need_kb, series, advised_kb = m.groups()
    assert (int(zone_kb), int(nsvc), int(ninst)) == (128, 8, 8 * n), out
    assert bool(series) == with_metrics, out
    assert 128 < int(need_kb) < int(advised_kb), out
    assert int(advised_kb) % 64 == 0, out

    # the size it names is enough: nginx starts, every service serves
    nginx.configure(upstreams=UPSTREAMS, server_extra=extra,
                    zone='tce_zone tce %sk;' % advised_kb)
    rc, out = nginx.check()
    assert rc == 0, out
    nginx.start()
    for name in NAMES:
        for _ in range(4):
            r = nginx.get('/', headers={'X-Service': name})
            assert r.status == 200, (name, r)

    # with every view and series built, the zone holds them, and no
    # more than the estimate
    def settled():
        m = metrics(nginx)
        done = metric_value(m, 'tce_instance_requests_total')
        return m if done >= 4 * len(NAMES) else None
    if with_metrics:
        m = wait_for(settled, 10, what='the requests counted')
        assert metric_value(m, 'tce_metrics_dropped_total') == 0
        used = metric_value(m, 'tce_zone_used_bytes')
        assert used <= int(need_kb) * 1024, (used, need_kb)

    # a reload that changes every set (new ids) fits too
    nginx.write_state(registry(backend, n, tag='j', weights=True))
    nginx.reload()
    st = nginx.status()['services']
    for name in NAMES:
        ids = sorted(i['id'] for i in st[name]['instances'])
        assert ids == ['j%03d' % k for k in range(n)], name
        r = nginx.get('/', headers={'X-Service': name})
        assert r.status == 200, (name, r)
    if with_metrics:
        assert scrape(nginx).status == 200
