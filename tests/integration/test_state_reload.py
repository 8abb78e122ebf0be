"""
What README promises about reloading the state file, as a client and
the status see it: a service removed from the file is emptied (its
upstream answers 503, tce_status lists no instance), the others keep
their instances and their generation.
"""

from conftest import SERVICE, file_size, instance


OTHER = 'demo.web.other'

UPSTREAMS = """\
    upstream api {
        tce_service %s;
    }
    upstream other {
        tce_service %s;
    }
""" % (SERVICE, OTHER)

OTHER_LOCATION = """\
        location /other/ {
            proxy_pass http://other;
        }
"""

# The opt-in to a reload that empties a service fed by the state file
# (a guard refuses such reloads without it).  Used when the module
# knows the directive; a build without the guard empties without it.
ALLOW_EMPTY = '    tce_state_allow_empty on;\n'


def configure(nginx):
    """nginx.conf with both upstreams, and the opt-in when the module
    has it.  Returns whether the opt-in is in the configuration."""
    nginx.configure(upstreams=UPSTREAMS, server_extra=OTHER_LOCATION,
                    http_extra=ALLOW_EMPTY)
    rc, out = nginx.check()
    if rc == 0:
        return True
    assert 'unknown directive "tce_state_allow_empty"' in out, out
    nginx.configure(upstreams=UPSTREAMS, server_extra=OTHER_LOCATION)
    rc, out = nginx.check()
    assert rc == 0, out
    return False


def ports_of(rs):
    return {int(r.body) for r in rs}


def test_service_removed_from_state_file_is_emptied_on_reload(backend,
                                                               nginx):
    api = [instance('api-1', backend.addr(backend.ok4[0])),
           instance('api-2', backend.addr(backend.ok4[1]))]
    other = [instance('other-1', backend.addr(backend.ok4[2])),
             instance('other-2', backend.addr(backend.ok4[3]))]
    nginx.write_state({SERVICE: {'default': api},
                       OTHER: {'default': other}})
    configure(nginx)
    nginx.start()

    rs = [nginx.get('/other/a%d' % i) for i in range(6)]
    assert [r.status for r in rs] == [200] * 6, rs
    assert ports_of(rs) == set(backend.ok4[2:4])
    before = nginx.status()['services']
    assert len(before[OTHER]['instances']) == 2, before

    # the file no longer holds the other service
    nginx.write_state({SERVICE: {'default': api}})
    since = file_size(nginx.error_log)
    nginx.reload()

    # its upstream has no instance: 503 from nginx, no backend reached
    seen = len(backend.entries())
    rs = [nginx.get('/other/b%d' % i) for i in range(6)]
    assert [r.status for r in rs] == [503] * 6, rs
    assert not [e for e in backend.entries()[seen:]
                if e['uri'].startswith('/other/b')]
    nginx.wait_error_line(
        lambda l: ('[error]' in l and 'no instance available' in l
                   and '"%s"' % OTHER in l), since,
        what='the 503 logged with the service name')

    # the status shows it empty, with a new generation; the service
    # still in the file is untouched, generation included
    after = nginx.status()['services']
    assert after[OTHER]['instances'] == [], after[OTHER]
    assert after[OTHER]['generation'] > before[OTHER]['generation']
    assert after[SERVICE]['instances'] == before[SERVICE]['instances']
    assert after[SERVICE]['generation'] == before[SERVICE]['generation']

    # the service still in the file keeps serving
    rs = [nginx.get('/c%d' % i) for i in range(6)]
    assert [r.status for r in rs] == [200] * 6, rs
    assert ports_of(rs) == set(backend.ok4[:2])

    # put back in the file, it serves again at the next reload
    nginx.write_state({SERVICE: {'default': api},
                       OTHER: {'default': other}})
    nginx.reload()
    rs = [nginx.get('/other/c%d' % i) for i in range(6)]
    assert [r.status for r in rs] == [200] * 6, rs
    assert ports_of(rs) == set(backend.ok4[2:4])
