#!/bin/sh
# C style gate (docs/style.md): 80 columns, no tabs, no // comments, no
# trailing spaces.  Prints every offending line; exits 1 if any.

status=0

for f in "$@"; do
    awk -v f="$f" '
        length($0) > 80      { print f ":" NR ": longer than 80 columns"; bad = 1 }
        /\t/                 { print f ":" NR ": tab"; bad = 1 }
        /[ ]+$/              { print f ":" NR ": trailing space"; bad = 1 }
        /(^|[^:"])\/\//      { print f ":" NR ": // comment"; bad = 1 }
        END                  { exit bad }
    ' "$f" || status=1
done

[ $status -eq 0 ] && echo "lint: $# files clean"
exit $status
