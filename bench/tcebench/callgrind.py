"""Instructions per proxied request, counted by callgrind.

The nginx under test runs as one process (master_process off) under
callgrind; one keepalive client connection sends a fixed number of
sequential GETs; SIGQUIT stops nginx cleanly so callgrind writes its
totals.  Two runs of different lengths cancel start-up and shutdown:
Ir/request = (Ir(long) - Ir(short)) / (long - short).
"""

import os
import time

from . import confs
from .httpclient import run_requests
from .procs import BenchError, output_tail, tail


START_TIMEOUT = 180
STOP_TIMEOUT = 60


def measure(ctx, side, backend, lengths, port, progress):
    """Ir per request of one side against one running backend."""
    runs = []
    for count in lengths:
        started = time.monotonic()
        ir, hits, connections = one_run(ctx, side, backend, count, port)
        progress("  callgrind %-6s N=%-4d %5d requests: %11d Ir, "
                 "%4d upstream connections (%.1fs)"
                 % (side.name, len(backend.ports), count, ir, connections,
                    time.monotonic() - started))
        runs.append({"requests": count, "ir_total": ir,
                     "hits_min": min(hits), "hits_max": max(hits),
                     "upstream_connections": connections})
    short, long_ = runs[0], runs[-1]
    per_request = ((long_["ir_total"] - short["ir_total"])
                   / (long_["requests"] - short["requests"]))
    return {"ir_per_request": round(per_request, 1), "runs": runs}


def one_run(ctx, side, backend, count, port):
    """Returns (total Ir, requests per backend port, upstream
    connections) of one run."""
    name = "cg-%s-n%d-r%d" % (side.name, len(backend.ports), count)
    conf = confs.write_proxy_conf(ctx.tmp, name, side, port,
                                  backend.ports, master_process=False)
    out = ctx.path(name + ".callgrind")
    argv = [ctx.valgrind, "--tool=callgrind", "--collect-atstart=yes",
            "--callgrind-out-file=" + out] + ctx.nginx_argv(conf, name)
    offset = backend.log_offset()
    proc = ctx.procs.start(argv, ctx.path(name + ".out"))
    try:
        serve_and_stop(ctx, proc, port, count)
    except BenchError as e:
        raise BenchError("%s: %s\nnginx error log:\n%s"
                         % (name, both_errors(e),
                            tail(ctx.path(name + "-error.log"))))
    hits, connections = backend.hits_since(offset, count)
    return read_total_ir(out), hits, connections


def serve_and_stop(ctx, proc, port, count):
    """The client's requests, then SIGQUIT; nginx must exit with 0."""
    try:
        run_requests(port, count, proc, START_TIMEOUT)
    finally:
        status = ctx.procs.stop(proc, STOP_TIMEOUT)
    if status != 0:
        raise BenchError("nginx under callgrind exited with %d%s"
                         % (status, output_tail(proc)))


def both_errors(e):
    """A stop that failed while handling a failed run: tell both."""
    if isinstance(e.__context__, BenchError):
        return "%s; then: %s" % (e.__context__, e)
    return str(e)


def read_total_ir(path):
    """The total Ir of a callgrind.out file ("summary:" or "totals:")."""
    if not os.path.exists(path):
        raise BenchError("callgrind wrote no %s" % path)
    totals = None
    with open(path) as f:
        for line in f:
            if line.startswith("summary:"):
                return int(line.split()[1])
            if line.startswith("totals:"):
                totals = int(line.split()[1])
    if totals is None:
        raise BenchError("no summary/totals line in %s" % path)
    return totals
