#!/bin/sh
# Line coverage of the module per integration test file, to choose the
# memcheck set of make test (Makefile, MEMCHECK_TESTS).  Run in a clone
# of the repository whose Makefile builds the module with
#   --with-cc-opt="-g -O0 -fPIC --coverage" --with-ld-opt="--coverage"
# (make first), from its top:  sh tests/coverage/by_file.sh OUT
# then:  python3 tests/coverage/choose.py OUT 0.93
# (choose.py, not select.py: in this folder that name hid the standard
# select module from lines.py)
# Each file runs alone in the plain pass; OUT/<file>.json lists the
# module's lines it ran, OUT/summary.txt its seconds and outcome.
set -u
out=$1
mkdir -p "$out"
for f in $(cd tests/integration && ls test_*.py); do
    find build -name '*.gcda' -delete
    s=$(date +%s)
    (cd tests/integration && /usr/bin/python3 -m pytest -q \
        -p no:cacheprovider "$f" > "$out/$f.log" 2>&1)
    e=$(date +%s)
    n=$(python3 tests/coverage/lines.py "$out/$f.json")
    echo "$f $((e - s)) $n $(tail -1 "$out/$f.log")" >> "$out/summary.txt"
done
