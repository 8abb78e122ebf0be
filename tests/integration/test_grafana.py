"""
The Grafana dashboard shipped in conf/grafana/tce.json, checked against
what the module really exports: a front door in Consul mode with a
canary, a snapshot file and traffic is scraped, and every query of the
dashboard must name metric families and labels that the scrape has.
promtool checks each query's PromQL syntax (as a recording rule).
"""

import json
import os
import re
import subprocess

from conftest import SERVICE, wait_for
from test_consul import consul, register  # noqa: F401 (fixture)
from test_metrics import METRICS_LOCATION, PROMTOOL, parse


TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
DASHBOARD = os.path.join(TOP, 'conf', 'grafana', 'tce.json')

# Grafana's own variables, replaced by values a query could get
GRAFANA_VARS = (('$__rate_interval', '1m'), ('${datasource}', 'prom'),
                ('$service', '.*'), ('$cluster', '.*'))

NAME = re.compile(r'\btce_[a-z_]+\b')
SUFFIXES = ('_bucket', '_sum', '_count')
# label names a query groups by or matches on
BY = re.compile(r'\b(?:by|without)\s*\(([^)]*)\)')
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"')


def load():
    with open(DASHBOARD) as f:
        return json.load(f)


def queries(dash):
    out = []
    for p in dash['panels']:
        for t in p.get('targets', []):
            out.append((p['title'], t['expr']))
    for v in dash['templating']['list']:
        if v['type'] == 'query':
            out.append(('variable ' + v['name'], v['query']))
    return out


def family(name):
    for s in SUFFIXES:
        if name.endswith(s):
            return name[:-len(s)]
    return name


def test_every_query_is_valid_promql(tmp_path):
    dash = load()
    rules = []
    for i, (title, expr) in enumerate(queries(dash)):
        if expr.startswith('label_values('):
            continue
        for var, value in GRAFANA_VARS:
            expr = expr.replace(var, value)
        assert '$' not in expr, (title, expr)
        rules.append({'record': 'tce:check_%d' % i, 'expr': expr})
    assert len(rules) >= 15
    path = tmp_path / 'rules.json'
    # YAML is a superset of JSON: promtool reads this as a rule file
    path.write_text(json.dumps({'groups': [{'name': 'dashboard',
                                            'rules': rules}]}))
    p = subprocess.run([PROMTOOL, 'check', 'rules', str(path)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    assert p.returncode == 0, p.stdout.decode()


def test_panels_are_laid_out_without_overlap():
    dash = load()
    taken = set()
    for p in dash['panels']:
        g = p['gridPos']
        assert 0 <= g['x'] and g['x'] + g['w'] <= 24, p['title']
        cells = {(x, y) for x in range(g['x'], g['x'] + g['w'])
                 for y in range(g['y'], g['y'] + g['h'])}
        assert not cells & taken, 'panel %r overlaps' % p['title']
        taken |= cells
    ids = [p['id'] for p in dash['panels']]
    assert len(ids) == len(set(ids))


def scrape_families(text):
    """{family: set of label names} from a Prometheus text scrape."""
    types = {}
    for line in text.splitlines():
        if line.startswith('# TYPE '):
            _, _, name, kind = line.split(' ', 3)
            types[name] = set()
    for (name, labels) in parse(text):
        f = name if name in types else family(name)
        assert f in types, name
        types[f] |= {k for k, _ in labels}
    return types


def test_queries_name_only_exported_metrics_and_labels(backend, nginx,
                                                        consul):
    nginx.configure(
        http_extra=('    tce_consul %s wait=1s;\n'
                    '    tce_consul_snapshot %s/snap.json;\n'
                    % (consul.url, nginx.dir)),
        upstreams=('    upstream api {\n        tce_service %s;\n'
                   '        tce_canary weight=50 key=$arg_u;\n    }\n'
                   % SERVICE),
        server_extra=METRICS_LOCATION, state=False)
    nginx.start()
    register(consul, backend, 1, 0)
    consul.register(SERVICE, 'api-c', '127.0.0.1', backend.ok4[1],
                    meta={'env': 'canary'})
    wait_for(lambda: {nginx.get('/?u=%d' % i).status for i in range(20)}
             == {200} and len(nginx.status()['services'][SERVICE]
                              .get('instances', [])) == 2,
             10, what='both envs routed')
    for i in range(40):
        nginx.get('/?u=%d' % i)

    def scraped():
        fams = scrape_families(nginx.get('/metrics').text)
        ok = ('env' in fams.get('tce_requests_total', set())
              and 'tce_persist_errors_total' in fams
              and 'tce_discovery_last_success_timestamp_seconds' in fams)
        return fams if ok else None

    fams = wait_for(scraped, 10, what='requests and discovery in a scrape')

    def family_of(n):
        return n if n in fams else family(n)

    for title, expr in queries(load()):
        names = set(NAME.findall(expr))
        assert names, (title, expr)
        for n in names:
            assert family_of(n) in fams, '%s: %s is not exported' % (title, n)
        # every label the query groups by or matches on is on one of
        # the metrics it names (le: on a histogram's buckets)
        known = set().union(*(fams[family_of(n)] for n in names))
        if any(n.endswith('_bucket') for n in names):
            known.add('le')
        used = set(MATCHER.findall(expr))
        for group in BY.findall(expr):
            used |= {x.strip() for x in group.split(',') if x.strip()}
        missing = used - known
        assert not missing, '%s: labels %s not on %s' % (
            title, sorted(missing), sorted(names))
