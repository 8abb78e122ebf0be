"""The module lines the current .gcda files say ran (gcov -j), as a
JSON list of "file.c:line" in argv[1]; prints how many."""
import glob, gzip, json, os, subprocess, sys
# prints the set of executed (source, line) of the current gcda files as json
objs = sorted(glob.glob("build/nginx/objs/addon/*/*.gcda"))
out = set()
for g in objs:
    d = os.path.dirname(g)
    r = subprocess.run(['gcov', '-j', '--stdout', '-o', d, g], capture_output=True, cwd='.')
    for line in r.stdout.decode(errors='replace').splitlines():
        line = line.strip()
        if not line.startswith('{'):
            continue
        doc = json.loads(line)
        for f in doc.get('files', []):
            name = f['file']
            if '/src/' in name or name.startswith('src/') or '/usr/' in name:
                continue
            for l in f['lines']:
                if l['count'] > 0:
                    out.add('%s:%d' % (os.path.basename(name), l['line_number']))
json.dump(sorted(out), open(sys.argv[1], 'w'))
print(len(out))
