"""
Names at "nginx -t": a tce_service name or cluster= that the state file
does not have (a typo) passes the test but would only ever answer 503.
nginx -t warns, naming the closest names the file has (at most 3, with
how many it has).  With tce_consul only discovery=state services are
checked (Consul may know the others).  Real nginx -t on real files.
"""

import re

from conftest import instance


CLUSTERS = ('default', 'blue', 'green')

# the file's services; the typos below are one or two edits away
NAMES = ('demo.web.api', 'demo.web.apis', 'demo.shop.cart', 'demo.shop.pay',
         'other.thing.x')


def distance(a, b):
    """Levenshtein distance, the textbook table (the oracle)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1,
                           prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def closest(name, names, n=3):
    """The n names closest to name, ties in the given order."""
    return sorted(names, key=lambda x: distance(name, x))[:n]


def line_of(conf, text):
    """The 1-based line of nginx.conf holding text."""
    return [i for i, l in enumerate(conf.splitlines(), 1) if text in l][0]


def write_names(nginx, backend):
    nginx.write_state({name: {cl: [instance('i-' + cl,
                                            backend.addr(backend.ok4[0]))]
                              for cl in CLUSTERS}
                       for name in NAMES})


def upstreams(*services):
    return ''.join('    upstream u%d { tce_service %s; }\n' % (i, s)
                   for i, s in enumerate(services))


def warnings(out, what):
    return [l for l in out.splitlines() if '[warn]' in l and what in l]


def check(nginx, ups, http_extra='', zone='tce_zone tce 1m;'):
    nginx.conf = nginx.configure(
        upstreams='    upstream api { tce_service demo.web.api; }\n' + ups,
        http_extra=http_extra, zone=zone)
    rc, out = nginx.check()
    assert rc == 0, out
    return nginx.masked(out)


def test_unknown_service_named_with_the_closest(backend, nginx):
    write_names(nginx, backend)
    out = check(nginx, upstreams('demo.web.apj'))
    lines = warnings(out, 'no such service')
    assert len(lines) == 1, out
    line = lines[0]
    want = closest('demo.web.apj', NAMES)
    assert want[:2] == ['demo.web.api', 'demo.web.apis'], want
    assert ('tce_service "demo.web.apj" in <nginx.conf>:%d: tce_state '
            '"<state-file>" has no such service, its requests will get '
            '503; it has %s (the closest 3 of 5)'
            % (line_of(nginx.conf, 'demo.web.apj'),
               ', '.join('"%s"' % n for n in want))) in line, line
    # the file's far names are not listed
    for far in set(NAMES) - set(want):
        assert far not in line, (far, line)


def test_unknown_cluster_named_with_the_closest(backend, nginx):
    write_names(nginx, backend)
    out = check(nginx, '    upstream c { tce_service demo.shop.cart '
                'cluster=bleu; }\n')
    line = warnings(out, 'no such cluster')
    assert len(line) == 1, out
    want = closest('bleu', CLUSTERS)
    assert ('tce_service "demo.shop.cart" cluster=bleu in <nginx.conf>:%d: '
            'tce_state "<state-file>" has no such cluster of this service, '
            'its requests will get 503; it has %s'
            % (line_of(nginx.conf, 'cluster=bleu'),
               ', '.join('"%s"' % n for n in want))) in line[0], line
    assert line[0].endswith(want[-1] + '"'), line    # all 3: no "of"


def test_known_names_and_variables_not_warned(backend, nginx):
    write_names(nginx, backend)
    out = check(nginx, upstreams('demo.web.apis', 'demo.shop.pay')
                + '    upstream v { tce_service demo.shop.cart '
                'cluster=$arg_c; }\n'
                + '    upstream g { tce_service other.thing.x '
                'cluster=green; }\n'
                + '    map $host $psm { default demo.web.nope; }\n'
                + '    upstream all { tce_service $psm; }\n')
    assert '[warn]' not in out, out


def test_each_name_once_and_bounded(backend, nginx):
    """Many upstreams naming the same typo: one line; a file of many
    services: 3 names offered, whatever its size."""
    nginx.write_state({'demo.s%03d.api' % i: {'default': [
        instance('a', backend.addr(backend.ok4[0]))]} for i in range(200)})
    out = check(nginx, upstreams(*(['demo.s01.api'] * 4)),
                zone='tce_zone tce 8m;')
    lines = warnings(out, 'tce_service "demo.s01.api"')
    assert len(lines) == 1, out
    offered = re.findall(r'"(demo\.s\d+\.api)"', lines[0].split('it has')[1])
    names = ['demo.s%03d.api' % i for i in range(200)]
    assert offered == closest('demo.s01.api', names), lines[0]
    assert '(the closest 3 of 200)' in lines[0], lines[0]
    # demo.web.api of the api upstream too: nothing else warned
    assert len(warnings(out, 'no such')) == 2, out


def test_empty_file_says_none(nginx):
    nginx.write_state({})
    out = check(nginx, '')
    line = warnings(out, 'tce_service "demo.web.api"')
    assert len(line) == 1 and line[0].rstrip().endswith('it has none'), out


def test_consul_mode_checks_discovery_state_only(backend, nginx):
    write_names(nginx, backend)
    consul = '    tce_consul http://127.0.0.1:1 wait=1s;\n'
    out = check(nginx, upstreams('demo.web.apj'), http_extra=consul)
    assert not warnings(out, 'no such service'), out

    out = check(nginx, '    upstream s { tce_service demo.web.apj '
                'discovery=state; }\n', http_extra=consul)
    line = warnings(out, 'no such service')
    assert len(line) == 1 and 'tce_service "demo.web.apj"' in line[0], out
