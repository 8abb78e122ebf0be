"""
The deploy walk-through of the README: the demo of `make run`
(conf/demo.conf, conf/demo-state.json, ports moved to free ones) and
conf/deploy-demo.sh run against it as a user would.  The script must
show the bad canary (v3, 10% of 500s) rolled back by a gate and the
good one (v2) promoted; the oracle is the admin API's history, what the
canary backends logged and the webhook's log of the demo.
"""

import json
import os
import re
import socket
import subprocess

import pytest

from conftest import (MODULE, NGINX_BIN, SLOW, free_port, read_from,
                      try_get, wait_for)

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
TOKEN = 'b7d1e0c4a9f24c5e8d3a6f1b2c7e9d40'
SVC = 'demo.shop.api'


def demo(tmp_path):
    """The demo's files in tmp_path with free ports: (run dir, ports)."""
    run = str(tmp_path / 'demo')
    os.makedirs(os.path.join(run, 'logs'))
    ports = {}
    for p in range(8080, 8090):
        ports[p] = free_port(socket.AF_INET6 if p == 8083 else socket.AF_INET)

    def moved(text):
        return re.sub(r'\b(80[89]\d)\b',
                      lambda m: str(ports.get(int(m.group(1)),
                                              int(m.group(1)))), text)

    with open(os.path.join(TOP, 'conf', 'demo.conf')) as f:
        conf = moved(f.read())
    conf = conf.replace('load_module @TOP@/build/ngx_tce_module.so;',
                        'load_module %s;%s' % (
                            MODULE, '\nuser root;' if os.geteuid() == 0
                            else ''))
    conf = conf.replace('@RUN@', run).replace('@TOP@', TOP)
    conf = conf.replace('error_log stderr notice;',
                        'error_log %s/error.log notice;' % run)
    with open(os.path.join(run, 'nginx.conf'), 'w') as f:
        f.write(conf)
    with open(os.path.join(TOP, 'conf', 'demo-state.json')) as f:
        state = moved(f.read())
    with open(os.path.join(run, 'state.json'), 'w') as f:
        f.write(state)
    with open(os.path.join(run, 'admin.tokens'), 'w') as f:
        f.write('%s demo\n' % TOKEN)
    return run, ports


@pytest.mark.novalgrind('waiting (two deploys of 3 steps); the webhook, '
                        'deploy and demo paths run under memcheck in '
                        'test_deploy_webhook.py and test_deploy.py')
def test_walkthrough_rolls_back_bad_and_promotes_good(tmp_path):
    run, ports = demo(tmp_path)
    out = open(os.path.join(run, 'stderr.log'), 'wb')
    proc = subprocess.Popen([NGINX_BIN, '-p', run + '/', '-c',
                             os.path.join(run, 'nginx.conf'), '-g',
                             'daemon off;'], stdout=out, stderr=out)
    try:
        wait_for(lambda: proc.poll() is None
                 and try_get(ports[8080], '/tce/status') is not None
                 and try_get(ports[8080], '/tce/status').status == 200,
                 10 * SLOW, what='the demo to answer')
        env = dict(os.environ, STEP_SECONDS='2',
                   BAD_ADDR='127.0.0.1:%d' % ports[8086],
                   GOOD_ADDR='127.0.0.1:%d' % ports[8085])
        p = subprocess.run([os.path.join(TOP, 'conf', 'deploy-demo.sh'), run,
                            'http://127.0.0.1:%d' % ports[8080]],
                           env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120 * SLOW)
        text = p.stdout.decode()
        assert p.returncode == 0, text
        assert 'OK: the bad canary was rolled back, the good one promoted' \
            in text

        # what the user sees, checked against the API's own history
        r = try_get(ports[8080], '/api/v1/services/%s/clusters/default/'
                    'deploys' % SVC)
        deploys = json.loads(r.body)['deploys']
        good, bad = deploys[0], deploys[1]
        assert bad['state'] == 'rolled_back' and bad['failed_gate'], bad
        assert bad['step'] == 0 and bad['canary']['weight_bp'] == 0
        assert good['state'] == 'promoted', good
        assert [s['verdict'] for s in good['steps']] == ['passed'] * 3
        assert '-> rolled_back: gate %s' % bad['failed_gate'] in text
        assert '-> promoted' in text
        assert re.search(r'10 requests now go to: 10 prod', text), text
        assert re.search(r'10 requests now go to: 10 canary', text), text

        # the webhook's events, as the demo's receiver logged them
        events = [json.loads(l) for l in
                  read_from(os.path.join(run, 'logs',
                                         'webhook.log')).splitlines()]
        # a step may wait for its requests on a loaded machine
        names = [(e['deploy_id'], e['event']) for e in events
                 if e['event'] != 'deploy_inconclusive']
        assert names == [(bad['id'], 'deploy_started'),
                         (bad['id'], 'deploy_rolled_back'),
                         (good['id'], 'deploy_started'),
                         (good['id'], 'deploy_step'),
                         (good['id'], 'deploy_promoted')], names
        assert [e['seq'] for e in events] == list(range(1, len(events) + 1))
        for e in events:
            assert '#%d %s' % (e['seq'], e['event']) in text
    finally:
        proc.terminate()
        proc.wait(30)
        out.close()
    errors = [l for l in read_from(os.path.join(run, 'error.log'))
              .splitlines() if re.search(r'\[(alert|crit|emerg)\]', l)]
    assert not errors, errors
