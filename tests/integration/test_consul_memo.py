"""A health watch reads only the entries of an answer that changed
(ngx_tce_module/ngx_tce_consul_memo.c): the oracle is the number of
entries the test changed in the double, against the count nginx's debug
log gives for each answer it applied ("answer of N entries, M read").
Routing follows each change all the same (the memo's results are the
ones a whole read gives: tests/unit/test_consul_memo.c)."""

import conftest
from conftest import SERVICE, wait_for
from test_sched_shared import consul, start_debug, window_is  # noqa: F401


LINE = 'tce consul: service "%s": answer of ' % SERVICE


def answers(log):
    """(entries, read) of each answer applied, in order."""
    out = []
    for part in log.split(LINE)[1:]:
        words = part.split('\n', 1)[0].split()
        # "<n> entries, <m> read"
        out.append((int(words[0]), int(words[2])))
    return out


def test_an_answer_reads_only_the_entries_that_changed(backend, nginx,
                                                       consul):
    ids = ['m%02d' % i for i in range(12)]
    for k, sid in enumerate(ids):
        consul.register(SERVICE, sid, '127.0.0.1', backend.ok4[k % 4],
                        weight=1 + k % 3)
    debug_log = start_debug(nginx, consul, workers=1, zone='4m')

    def log():
        return conftest.read_from(debug_log)

    def routes(down):
        expected = {'node1/' + sid: 1 + k % 3 for k, sid in enumerate(ids)
                    if sid not in down}
        wait_for(lambda: window_is(nginx, expected), 10 * conftest.SLOW,
                 what='routing without %s' % sorted(down))

    def changed(flips, down, read):
        before = len(answers(log()))
        assert consul.set_checks([('service:' + k, s) for k, s in flips])
        wait_for(lambda: len(answers(log())) > before, 10 * conftest.SLOW,
                 what='the answer applied')
        routes(down)
        assert answers(log())[before] == (len(ids), read), \
            answers(log())[before:]

    # the first answer is read whole
    routes(set())
    assert answers(log())[0] == (len(ids), len(ids))

    changed([('m05', 'critical')], {'m05'}, 1)
    changed([('m05', 'passing'), ('m00', 'critical')], {'m00'}, 2)
    changed([('m11', 'critical')], {'m00', 'm11'}, 1)
    changed([('m00', 'passing'), ('m11', 'passing')], set(), 2)
