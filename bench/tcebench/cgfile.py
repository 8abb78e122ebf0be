"""Reads a callgrind.out file: total Ir, and inclusive Ir per function.

Inclusive cost of a function = the cost of its own instructions plus
the cost recorded on each call it makes (callgrind writes a call's
cost inclusive of the whole callee).  This is what
`callgrind_annotate --inclusive=yes` computes, summed over every block
of the function (callgrind splits a function into one block per source
file its inlined code comes from; callgrind_annotate lists those
apart).  Functions are matched by name, in any object: the tce module
is a .so built with -g, and the stock balancer's functions are
exported (they are in .dynsym of the stripped /usr/sbin/nginx).

The file format: https://valgrind.org/docs/manual/cl-format.html
(name compression "(id) name" / "(id)"; "calls=" then one cost line
that belongs to the call).
"""

import os

from .procs import BenchError


def read(path, functions=()):
    """Returns (total Ir, {name: inclusive Ir}) for the given names
    (0 for a name that never ran)."""
    if not os.path.exists(path):
        raise BenchError("callgrind wrote no %s" % path)
    wanted = set(functions)
    inclusive = {name: 0 for name in wanted}
    fn_names = {}
    npos = 1
    current = None          # name of the current fn= block
    callee = None           # name of the pending cfn=
    in_call = False         # the next cost line is a call's cost
    summary = totals = None
    with open(path) as f:
        for line in f:
            c = line[:1]
            if c.isdigit() or c in "+-*":
                if current in wanted:
                    fields = line.split()
                    cost = int(fields[npos]) if len(fields) > npos else 0
                    # a direct recursive call is already counted as
                    # the function's own cost
                    if not (in_call and callee == current):
                        inclusive[current] += cost
                in_call = False
                continue
            if line.startswith("fn="):
                current = resolve(fn_names, line[3:])
            elif line.startswith("cfn="):
                callee = resolve(fn_names, line[4:])
            elif line.startswith("calls="):
                in_call = True
            elif line.startswith("positions:"):
                npos = len(line.split()) - 1
            elif line.startswith("events:"):
                if line.split()[1:2] != ["Ir"]:
                    raise BenchError("%s: first event is not Ir: %s"
                                     % (path, line.strip()))
            elif line.startswith("summary:"):
                summary = int(line.split()[1])
            elif line.startswith("totals:"):
                totals = int(line.split()[1])
    total = summary if summary is not None else totals
    if total is None:
        raise BenchError("no summary/totals line in %s" % path)
    return total, inclusive


def resolve(names, text):
    """ "(12) name" defines id 12, "(12)" refers to it; a plain name
    is used as is."""
    text = text.strip()
    if not text.startswith("("):
        return text
    ident, _, name = text.partition(")")
    name = name.strip()
    if name:
        names[ident] = name
        return name
    try:
        return names[ident]
    except KeyError:
        raise BenchError("callgrind file: function id %s) used before "
                         "its name" % ident)
