"""Greedy choice of test files by new module lines per cost (plain
seconds + 4 per test: nginx starts under memcheck) until the share
argv[2] of the lines the whole suite runs is reached; argv[1] is the
by_file.sh output.  Files whose every test is plain only (novalgrind, or
test_chaos.py) are not candidates: under memcheck they run nothing."""
import os
import json, sys
OUT = sys.argv[1]
rows = {}
for line in open(os.path.join(OUT, 'summary.txt')):
    p = line.split()
    if (len(p) < 5 or not p[0].endswith('.py')
            or p[0] in ('test_chaos.py', 'test_demo_deploy.py')):
        continue
    f, secs = p[0], int(p[1])
    ntests = sum(int(x) for x, y in zip(p[3:], p[4:]) if y.rstrip(',') in ('passed', 'failed', 'skipped'))
    lines = set(json.load(open(os.path.join(OUT, f + '.json'))))
    rows[f] = (secs, ntests, lines)
union = set().union(*(r[2] for r in rows.values()))
target = float(sys.argv[2]) if len(sys.argv) > 2 else 0.93
chosen, have, cost = [], set(), 0
def c(f):
    s, n, _ = rows[f]
    return s + 4 * n
while len(have) < target * len(union):
    best = max((f for f in rows if f not in chosen),
               key=lambda f: len(rows[f][2] - have) / c(f))
    gain = len(rows[best][2] - have)
    if gain == 0:
        break
    chosen.append(best); have |= rows[best][2]; cost += c(best)
    print('%-32s +%5d  %.3f  cost %d' % (best, gain, len(have) / len(union), c(best)))
total = sum(c(f) for f in rows)
print('union', len(union), 'chosen', len(chosen), 'of', len(rows), 'cost', cost, 'of', total)
missing = union - have
from collections import Counter
print(Counter(x.split(':')[0] for x in missing).most_common(15))
