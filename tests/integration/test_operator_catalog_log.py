"""
Catalog mode in the error log (issue 14): with one upstream for every
service (tce_service $variable), the per-request lines name the service
the request resolved to, never the variable's text, escaped and
rate-limited (5 lines per 10 s per upstream and worker, the next line
after a pause saying how many were left out).  Lines about names not
in the registry are test_balancer.py's; these are the lines about a
registered service whose instances all failed, and the canary fallback.
Real nginx, real backends.
"""

import time

import pytest

from conftest import SERVICE, file_size, instance, read_from


CATALOG = """\
    upstream api {
        tce_service $http_x_service max_fails=1 fail_timeout=30s;
%s    }
"""


def lines_with(nginx, since, word):
    return [l for l in read_from(nginx.error_log, since).splitlines()
            if word in l]


@pytest.mark.parametrize('case', ['all failed', 'fallback'])
def test_catalog_lines_name_the_service_rate_limited(backend, nginx, case):
    # two instances: a group of one is always tried
    insts = [instance('api-1', backend.addr(backend.dead)),
             instance('api-2', backend.addr(backend.dead))]
    extra = ''
    if case == 'fallback':
        insts.append(instance('api-c', backend.addr(backend.ok4[0]),
                              env='canary'))
        extra = '        tce_canary weight=0 fallback=on;\n'
    nginx.write_state({SERVICE: {'default': insts}})
    nginx.configure(upstreams=CATALOG % extra)
    nginx.start()

    since = file_size(nginx.error_log)
    t0 = time.monotonic()
    n = 40
    rs = [nginx.get('/c/%d' % i, headers={'X-Service': SERVICE})
          for i in range(n)]
    elapsed = time.monotonic() - t0
    want = 200 if case == 'fallback' else 502
    assert [r.status for r in rs] == [want] * n, rs
    nginx.wait_entries('/c/', n)

    if case == 'fallback':
        assert {int(r.text) for r in rs} == {backend.ok4[0]}
        word = 'env prod failed or was tried, env canary serves'
    else:
        word = 'env prod failed or was tried'
    lines = lines_with(nginx, since, 'failed or was tried')
    assert lines and all(word in l for l in lines), lines
    # the resolved service, the cluster, never the variable
    for l in lines:
        assert ('every instance of service "%s" cluster "default"'
                % SERVICE) in l, l
    assert '$http_x_service' not in read_from(nginx.error_log, since)

    # 5 lines per 10 s window, per worker: not one per request
    bound = 5 * nginx.nworkers * (2 + int(elapsed // 10))
    assert len(lines) <= min(bound, n - 1), (len(lines), bound, lines)
