"""Instructions per proxied request, counted by callgrind.

The nginx under test runs as one process (master_process off) under
callgrind; one keepalive client connection sends a fixed number of
sequential GETs; SIGQUIT stops nginx cleanly so callgrind writes its
totals.  Two runs of different lengths cancel start-up and shutdown:
Ir/request = (Ir(long) - Ir(short)) / (long - short).

The same two runs give the balancer's own cost: the inclusive Ir of
the side's balancer functions (peer.init, get, free), differenced the
same way.
"""

import re
import time

from . import cgfile, confs
from .httpclient import cookie_request, get_body, run_requests
from .procs import BenchError, output_tail, tail


START_TIMEOUT = 180
STOP_TIMEOUT = 60


def measure(ctx, side, backend, lengths, port, progress):
    """Ir per request of one side against one running backend."""
    runs = []
    for count in lengths:
        started = time.monotonic()
        run = one_run(ctx, side, backend, count, port)
        progress("  callgrind %-14s N=%-4d %5d requests: %11d Ir, "
                 "%4d upstream connections (%.1fs)"
                 % (side.name, len(backend.ports), count, run["ir_total"],
                    run["upstream_connections"],
                    time.monotonic() - started))
        runs.append(run)
    short, long_ = runs[0], runs[-1]
    span = long_["requests"] - short["requests"]
    figures = {"ir_per_request":
               round((long_["ir_total"] - short["ir_total"]) / span, 1),
               "runs": runs}
    if side.balancer:
        functions = {name: round((long_["inclusive"][name]
                                  - short["inclusive"][name]) / span, 1)
                     for name in side.balancer}
        missing = [name for name in side.balancer
                   if not long_["inclusive"][name]]
        if missing:
            # symbols not resolved: no figure rather than a wrong one
            figures["balancer_missing"] = missing
            return figures
        figures["balancer_ir_per_request"] = round(
            sum(functions.values()), 1)
        figures["balancer_functions"] = functions
    return figures


def one_run(ctx, side, backend, count, port):
    """Total Ir, inclusive Ir of the balancer functions, requests per
    backend port, upstream connections, counted requests (metrics) of
    one run."""
    name = "cg-%s-n%d-r%d" % (side.name, len(backend.ports), count)
    conf = confs.write_proxy_conf(ctx.tmp, name, side, port,
                                  backend.ports, master_process=False)
    out = ctx.path(name + ".callgrind")
    argv = [ctx.valgrind, "--tool=callgrind", "--collect-atstart=yes",
            "--callgrind-out-file=" + out] + ctx.nginx_argv(conf, name)
    offset = backend.log_offset()
    proc = ctx.procs.start(argv, ctx.path(name + ".out"))
    try:
        counted = serve_and_stop(ctx, side, proc, port, count)
    except BenchError as e:
        raise BenchError("%s: %s\nnginx error log:\n%s"
                         % (name, both_errors(e),
                            tail(ctx.path(name + "-error.log"))))
    hits, connections = backend.hits_since(offset, count)
    total, inclusive = cgfile.read(out, side.balancer or ())
    canary_ports = set(side.canary_ports(backend.ports))
    run = {"requests": count, "ir_total": total,
           "hits_min": min(hits), "hits_max": max(hits),
           "upstream_connections": connections, "inclusive": inclusive}
    if canary_ports:
        prod = [h for p, h in zip(backend.ports, hits)
                if p not in canary_ports]
        canary = [h for p, h in zip(backend.ports, hits)
                  if p in canary_ports]
        run.update(hits_min=min(prod), hits_max=max(prod),
                   canary_hits=sum(canary),
                   canary_hits_min=min(canary),
                   canary_hits_max=max(canary))
    if counted is not None:
        run["metrics_counted"] = counted
    return run


def serve_and_stop(ctx, side, proc, port, count):
    """The client's requests, then SIGQUIT; nginx must exit with 0.

    With metrics on, one scrape after the requests (in both runs, so
    its cost cancels) returns the requests the metrics counted."""
    counted = None
    try:
        run_requests(port, count, proc, START_TIMEOUT,
                     cookie_request if side.cookie else None)
        if side.metrics:
            counted = scrape_requests_total(port)
    finally:
        status = ctx.procs.stop(proc, STOP_TIMEOUT)
    if status != 0:
        raise BenchError("nginx under callgrind exited with %d%s"
                         % (status, output_tail(proc)))
    return counted


REQUESTS_TOTAL = re.compile(r"^tce_requests_total(?:\{[^}]*\})? "
                            r"([0-9.e+]+)$", re.M)


def scrape_requests_total(port):
    """The sum of tce_requests_total over its series."""
    status, body = get_body(port, "/metrics")
    if status != 200:
        raise BenchError("GET /metrics: status %d" % status)
    values = REQUESTS_TOTAL.findall(body.decode("utf-8", "replace"))
    if not values:
        raise BenchError("GET /metrics: no tce_requests_total sample")
    return int(sum(float(v) for v in values))


def both_errors(e):
    """A stop that failed while handling a failed run: tell both."""
    if isinstance(e.__context__, BenchError):
        return "%s; then: %s" % (e.__context__, e)
    return str(e)
