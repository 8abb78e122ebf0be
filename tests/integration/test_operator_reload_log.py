"""
What a change did, in the error log (issue 14): a reload logs at notice
level one line per service whose generation it moved, with the
instances added, removed, drained, taken down, back up or changed
(ids listed up to 3, escaped); services it did not change log nothing.
A change from Consul logs the same kind of line.  Real nginx, real
backends, the Consul API double; the generations are checked against
tce_status.
"""

import json
import os
import re
import sys

from conftest import SERVICE, file_size, instance, read_from, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'doubles'))

from consul_double import ConsulDouble  # noqa: E402


OTHER = 'demo.web.other'
MANY = 'demo.web.many'

UPSTREAMS = """\
    upstream api { tce_service demo.web.api; }
    upstream other { tce_service demo.web.other; }
"""

OTHER_LOCATION = """\
        location /other/ {
            proxy_pass http://other;
        }
"""

LINE = re.compile(r'\[notice\] .*tce: service "([^"]+)" '
                  r'(?:generation (\d+) -> (\d+)|new, generation (\d+)): '
                  r'(.*)$')


def change_lines(nginx, since):
    """{service: (before, after, text)} of the reload's notice lines;
    before None for a service new to the zone."""
    out = {}
    for line in read_from(nginx.error_log, since).splitlines():
        m = LINE.search(line)
        if m:
            assert m.group(1) not in out, 'two lines for ' + m.group(1)
            before = int(m.group(2)) if m.group(2) else None
            after = int(m.group(3) or m.group(4))
            out[m.group(1)] = (before, after, m.group(5))
    return out


def generations(nginx):
    return {name: s['generation']
            for name, s in nginx.status()['services'].items()}


def test_reload_logs_each_changed_service(backend, nginx):
    p1, p2, p3, p4 = backend.ok4[:4]
    nginx.write_state({
        SERVICE: {'default': [instance('api-1', backend.addr(p1)),
                              instance('api-2', backend.addr(p2)),
                              instance('api-4', backend.addr(p4))]},
        OTHER: {'default': [instance('o-1', backend.addr(p1))]}})
    nginx.configure(upstreams=UPSTREAMS, server_extra=OTHER_LOCATION)
    nginx.start()
    assert nginx.get('/').status == 200
    gen = generations(nginx)

    # api-1 leaves, api-3 comes, api-2 drains, api-4 weighs 5; a new
    # service of 6 instances; the other service as it was
    nginx.write_state({
        SERVICE: {'default': [
            instance('api-2', backend.addr(p2), state='draining'),
            instance('api-3', backend.addr(p3)),
            instance('api-4', backend.addr(p4), weight=5)]},
        OTHER: {'default': [instance('o-1', backend.addr(p1))]},
        MANY: {'default': [instance('m-%d' % i, backend.addr(p1))
                           for i in range(6)]}})
    since = file_size(nginx.error_log)
    nginx.reload()

    after = generations(nginx)
    lines = change_lines(nginx, since)
    assert set(lines) == {SERVICE, MANY}, lines

    before_gen, after_gen, text = lines[SERVICE]
    assert before_gen == gen[SERVICE], (lines, gen)
    assert gen[SERVICE] < after_gen <= after[SERVICE], (lines, after)
    assert text == ('+1 instance (api-3), -1 instance (api-1), '
                    '1 draining (api-2), 1 changed (api-4)'), text

    # a service new to the zone: 3 ids of 6 listed
    assert lines[MANY][0] is None and lines[MANY][1] <= after[MANY], lines
    assert lines[MANY][2] == '+6 instances (m-0, m-1, m-2, ...)', lines

    # the unchanged service kept its generation and logged nothing
    assert after[OTHER] == gen[OTHER]

    # traffic follows: api-2 drained, api-3 and api-4 serve
    ports = {int(nginx.get('/').text) for _ in range(24)}
    assert ports == {p3, p4}, ports

    # api-2 back up, api-4 down: two kinds on one line
    nginx.write_state({
        SERVICE: {'default': [
            instance('api-2', backend.addr(p2)),
            instance('api-3', backend.addr(p3)),
            instance('api-4', backend.addr(p4), weight=5, state='down')]},
        OTHER: {'default': [instance('o-1', backend.addr(p1))]},
        MANY: {'default': [instance('m-%d' % i, backend.addr(p1))
                           for i in range(6)]}})
    since = file_size(nginx.error_log)
    nginx.reload()
    lines = change_lines(nginx, since)
    assert set(lines) == {SERVICE}, lines
    assert lines[SERVICE][0] == after[SERVICE], (lines, after)
    assert lines[SERVICE][2] == '1 down (api-4), 1 back up (api-2)', lines

    # a reload that changes nothing logs no such line
    since = file_size(nginx.error_log)
    nginx.reload()
    assert change_lines(nginx, since) == {}


def test_reload_logs_overrides_and_canary(backend, nginx):
    """An override that drains and a canary policy from the state file
    are changes of the service too."""
    p1, p2 = backend.ok4[:2]
    nginx.write_state({SERVICE: {'default': [
        instance('api-1', backend.addr(p1)),
        instance('api-2', backend.addr(p2))]}})
    nginx.configure()
    nginx.start()
    gen = generations(nginx)

    doc = {'version': 1, 'services': {SERVICE: {'clusters': {'default': {
        'instances': [instance('api-1', backend.addr(p1)),
                      instance('api-2', backend.addr(p2),
                               override={'drain': True})],
        'canary': {'weight_bp': 2500, 'epoch': 1}}}}}}
    nginx.write_state(raw=json.dumps(doc))
    since = file_size(nginx.error_log)
    nginx.reload()
    lines = change_lines(nginx, since)
    assert set(lines) == {SERVICE}, lines
    assert lines[SERVICE][0] == gen[SERVICE], (lines, gen)
    assert lines[SERVICE][2] == ('1 draining (api-2), '
                                 'canary policy changed'), lines


def test_consul_change_logged(backend, nginx):
    consul = ConsulDouble(jitter=False).start()
    try:
        nginx.configure(state=False, http_extra=(
            '    tce_consul %s wait=1s;\n'
            '    tce_consul_snapshot %s/snap.json;\n'
            % (consul.url, nginx.dir)))
        nginx.start()
        p1, p2 = backend.ok4[:2]
        consul.register(SERVICE, 'api-1', '127.0.0.1', p1)

        def ports():
            return {int(r.text) for r in (nginx.get('/') for _ in range(8))
                    if r.status == 200}
        wait_for(lambda: ports() == {p1}, 10, what='api-1 routed')
        gen = generations(nginx)[SERVICE]

        since = file_size(nginx.error_log)
        consul.register(SERVICE, 'api-2', '127.0.0.1', p2)
        line = nginx.wait_error_line(
            lambda l: 'tce consul: service "%s" generation' % SERVICE in l,
            since, what='the notice line of the Consul change')
        ids = {i['id'] for i in
               nginx.status()['services'][SERVICE]['instances']}
        new = [i for i in ids if i.endswith('/api-2')]
        assert len(new) == 1, ids
        assert '[notice]' in line, line
        assert (': +1 instance (%s); 2 instances in all' % new[0]
                in line), line
        m = re.search(r'generation (\d+) -> (\d+):', line)
        assert int(m.group(1)) == gen and int(m.group(2)) == gen + 1, (
            line, gen)
    finally:
        consul.stop()
