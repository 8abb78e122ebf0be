"""
README "Operating it" tells the truth (issue 14): every metric it asks
an operator to watch is in a real scrape of nginx with the module
(Consul, Redis fleet and tce_metrics on), with the labels it names,
and the log lines it quotes are the ones nginx writes for the cases
it describes (a 503 with no instance, a reload that changes a
service, a zone too small).  Real nginx, the Consul double, a real
redis-server.
"""

import os
import re
import sys

import pytest

from conftest import SERVICE, file_size, instance, read_from, wait_for
from redis_helpers import Redis
from test_metrics import scrape

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'doubles'))

from consul_double import ConsulDouble  # noqa: E402


README = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..',
                      '..', 'README.md')
EMPTY = 'demo.web.empty'
DIRECTIVES = ('tce_metrics', 'tce_zone', 'tce_redis')


def section():
    text = open(README).read()
    start = text.index('\n## Operating it\n')
    return text[start:text.index('\n## ', start + 5)]


def watched_metrics():
    """(name, {label: value}) of the 'What to watch' list."""
    part = section()
    part = part[part.index('What to watch'):part.index('Common error-log')]
    out = []
    for m in re.finditer(r'`(tce_[a-z_]+)(\{[^}]*\})?`', part):
        if m.group(1) in DIRECTIVES:
            continue
        labels = {}
        for lm in re.finditer(r'(\w+)="([^"]+)"', m.group(2) or ''):
            labels[lm.group(1)] = lm.group(2).split('"|"')[0]
        out.append((m.group(1), labels))
    return out


def quoted_lines():
    """The 'line' column of the table of log lines."""
    part = section()
    part = part[part.index('Common error-log'):]
    return re.findall(r'^\| `([^`]+)` \|', part, re.M)


@pytest.fixture
def consul():
    d = ConsulDouble(jitter=False).start()
    yield d
    d.stop()


@pytest.fixture
def redis(tmp_path):
    r = Redis(str(tmp_path))
    yield r
    r.stop()


def test_readme_metrics_and_lines_are_real(backend, nginx, consul, redis):
    redis.start()
    p1, p2 = backend.ok4[:2]
    nginx.write_state({SERVICE: {'default': [
        instance('api-1', backend.addr(p1)),
        instance('api-2', backend.addr(p2))]},
        EMPTY: {'default': []}})
    nginx.configure(
        upstreams=('    upstream api { tce_service %s discovery=state; }\n'
                   '    upstream empty { tce_service %s discovery=state; }\n'
                   '    upstream watched { tce_service demo.web.cons; }\n'
                   % (SERVICE, EMPTY)),
        http_extra=('    tce_consul %s wait=1s;\n'
                    '    tce_redis 127.0.0.1:%d;\n'
                    '    tce_canary_header on;\n'
                    % (consul.url, redis.port)),
        server_extra=('        location = /metrics { tce_metrics; }\n'
                      '        location /empty/ { proxy_pass http://empty; }'
                      '\n        location /cons/ { proxy_pass http://watched;'
                      ' }\n'))
    nginx.start()
    consul.register('demo.web.cons', 'c-1', '127.0.0.1', p1)
    wait_for(lambda: nginx.get('/cons/x').status == 200, 10,
             what='the Consul-fed service routed')

    since = file_size(nginx.error_log)
    assert nginx.get('/').status == 200
    assert nginx.get('/empty/x').status == 503

    # every metric the section names is exported, with its labels
    text = scrape(nginx).text
    names = watched_metrics()
    assert len(names) >= 15, names
    for name, labels in names:
        samples = re.findall(r'^%s(?:\{([^}]*)\})? ' % name, text, re.M)
        typed = re.search(r'^# TYPE %s(_total)? ' % re.escape(
            re.sub(r'_total$', '', name)), text, re.M)
        assert samples or typed, (name, 'not in the scrape')
        for k, v in labels.items():
            assert any('%s="%s"' % (k, v) in s for s in samples), (
                name, k, v, samples)

    # the 503 line, as quoted
    lines = quoted_lines()
    assert len(lines) >= 12, lines
    q = [l for l in lines if 'no instance available' in l][0]
    got = nginx.wait_error_line(lambda l: 'no instance available' in l,
                                since, what='the 503 line')
    level, want = q.split(' ', 1)
    want = want.replace('"S"', '"%s"' % EMPTY).replace('"C"', '"default"')
    assert level in got and want in got, (q, got)

    # the reload line, as quoted (its shape)
    nginx.write_state({SERVICE: {'default': [
        instance('api-2', backend.addr(p2), state='draining'),
        instance('api-3', backend.addr(p1))]},
        EMPTY: {'default': []}})
    since = file_size(nginx.error_log)
    nginx.reload()
    q = [l for l in lines if 'tce: service "S" generation' in l][0]
    got = nginx.wait_error_line(
        lambda l: 'tce: service "%s" generation' % SERVICE in l, since,
        what='the reload line')
    assert q.split(']', 1)[0] + ']' in got, (q, got)
    assert re.search(r'generation \d+ -> \d+: \+1 instance \(api-3\), '
                     r'-1 instance \(api-1\), 1 draining \(api-2\)$', got)

    # every quoted line's fixed words are in the module's format strings
    src = ''
    top = os.path.dirname(README)
    for d in ('ngx_tce_module', 'lb', 'admin'):
        for f in os.listdir(os.path.join(top, d)):
            if f.endswith('.c'):
                src += open(os.path.join(top, d, f)).read()
    src = re.sub(r'"\s*\n\s*"', '', src).replace('\\"', '"')
    for q in lines:
        text = re.sub(r'^\[\w+\] ', '', q)
        # a change's text is composed (checked on the real line above)
        m = re.match(r'(.*generation \d+ -> \d+)', text)
        text = m.group(1) if m else text
        parts = re.split(r'"[^"]*"|<[^>]*>|\.\.\.|\d+|\bprod\b|\bcanary\b'
                         r'|[;,] ', text)
        for c in parts:
            c = c.strip(' :;,()')
            if len(c) < 8:
                continue
            # words nginx fills in: "tce consul: %s" (service or watch),
            # "tce: %s" (the file's kind), "not written" (or incomplete)
            alts = [c] + [c.replace(w, '%s') for w in
                          ('service', 'consul snapshot', 'not written')]
            assert any(a in src for a in alts), (q, c)
