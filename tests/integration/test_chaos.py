"""
The reliability proof, 20 seconds of it in the plain integration pass
(make chaos runs the same for two minutes, make soak for as long as
asked; tests/chaos/chaos.py, README "Reliability"): a steady load
through two front door nodes and a stock nginx while Consul churns,
fails, hangs and is killed, the Redis master is killed and Sentinel
fails over, the admin API drains, scales, moves canary weights and
runs deploys, nginx reloads, a worker of each is
killed and the zone is filled past its size.  Every request must get
the answer its backend gave, but those on a killed worker's connections
(counted, and compared with the stock nginx's) and those on keepalive
connections an old worker closed at a reload.
"""

import os
import re
import subprocess
import sys

import pytest

from conftest import SLOW

CHAOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..',
                     'chaos', 'chaos.py')


@pytest.mark.novalgrind('load and repetition: each path it runs is run '
                        'under memcheck by test_consul.py, '
                        'test_admin_instances.py, test_admin_drain.py, '
                        'test_redis_fleet.py and test_metrics.py')
def test_chaos_20s(tmp_path):
    p = subprocess.run(
        [sys.executable, CHAOS, '--duration', '20', '--reloads', '3',
         '--kills', '1', '--zone', '1m', '--workdir',
         str(tmp_path / 'chaos'), '--keep'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        timeout=400 * SLOW)
    out = p.stdout.decode('utf-8', 'replace')
    last = out.strip().splitlines()[-1]
    m = re.match(r'(PASS|FAIL): requests (\d+), failures (\d+), changes '
                 r'applied (\d+), reloads (\d+), kills (\d+)$', last)
    assert m, out
    assert p.returncode == 0 and m.group(1) == 'PASS', out
    requests, failures, changes, reloads, kills = map(int, m.groups()[1:])
    assert failures == 0 and reloads == 3 and kills == 1, out
    assert requests >= 500 and changes >= 50, out
