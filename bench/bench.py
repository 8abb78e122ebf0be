#!/usr/bin/python3
"""Bench: the tce balancer against stock nginx round robin, one run.

  1. callgrind: instructions per proxied request, N = 1, 4, 100, 1000
     instances, stock and tce, same backends, same proxy settings; from
     the same runs, the balancer's own instructions per request (its
     peer.init, get and free, inclusive); at N = 4 the canary and
     metrics variants of tce; at every N tce with tce_keepalive 64 in
     place of nginx's keepalive 64; at N = 1000 (full run) both with
     the upstream keepalive cache sized to N;
  2. wrk: throughput ratio tce/stock at N = 4, interleaved pairs;
  3. a table, PASS/MISS per target, build/bench.json, build/bench.md.

  bench.py --nginx /usr/sbin/nginx --module /abs/build/ngx_tce_module.so
           [--quick] [--only callgrind|wrk]

Without --module only stock nginx is measured (checks the harness).
Exit status: 0 when the bench ran (whatever the figures), 1 when it
broke, 130 on Ctrl-C.
"""

import argparse
import datetime
import hashlib
import os
import shutil
import subprocess
import sys

from tcebench import callgrind, throughput
from tcebench.backend import Backend
from tcebench.confs import CANARY_INSTANCES, CANARY_LINE, Side
from tcebench.context import Context
from tcebench.procs import BenchError, install_signal_handlers, version_of
from tcebench.report import evaluate_targets, format_text, write_files


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL_SIZES = [1, 4, 100, 1000]
QUICK_SIZES = [1, 4]
WRK_INSTANCES = 4
VARIANT_INSTANCES = 4
CONTROL = Side("random", directive="random")
CANARY_SHARE = 0.10         # weight=10 of CANARY_LINE
CANARY_SHARE_SLACK = 0.05   # hashed keys: about +-0.7% at 2000 keys


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nginx", default="/usr/sbin/nginx")
    p.add_argument("--module", help="path of ngx_tce_module.so; "
                   "without it only stock nginx is measured")
    p.add_argument("--valgrind", default="valgrind")
    p.add_argument("--wrk", default="wrk")
    p.add_argument("--quick", action="store_true",
                   help="N = 1, 4 only (with the canary and metrics "
                   "variants at N = 4), no keepalive-sized runs, fewer "
                   "wrk pairs")
    p.add_argument("--only", choices=["callgrind", "wrk"])
    p.add_argument("--requests", type=int, default=2000,
                   help="requests of the short callgrind run; the long "
                   "one sends twice as many (default 2000)")
    p.add_argument("--pairs", type=int,
                   help="wrk pairs (default 15, 3 with --quick)")
    p.add_argument("--seconds", type=int, default=3,
                   help="duration of one wrk run (default 3)")
    p.add_argument("--out-dir", default=os.path.join(REPO, "build"))
    p.add_argument("--keep-tmp", action="store_true",
                   help="keep confs, logs and callgrind files")
    args = p.parse_args(argv)
    if args.pairs is None:
        args.pairs = 3 if args.quick else 15
    if args.requests < 1 or args.pairs < 1 or args.seconds < 1:
        p.error("--requests, --pairs and --seconds must be positive")
    return args


def progress(message):
    print(message, file=sys.stderr, flush=True)


def find_tool(name):
    path = shutil.which(name)
    if path is None:
        raise BenchError("%s not found (make deps installs it)" % name)
    return path


def check_module(module):
    if module is not None and not os.path.isfile(module):
        raise BenchError("--module %s: no such file" % module)


def make_sides(ctx, module):
    """stock, and tce loading a private copy of the module: a rebuild
    during the run (make copies over the file in place) must neither
    crash the nginx under test nor change what is measured."""
    if module is None:
        return [Side("stock")]
    copy = ctx.path(os.path.basename(module))
    shutil.copyfile(module, copy)
    return [Side("stock"), Side("tce", copy)]


def variants(sides):
    """tce variants measured at N = VARIANT_INSTANCES, each beside
    the side it is compared with: canary on against canary off (same
    state file with canary instances, same cookie on every request),
    metrics on against plain tce."""
    tce = [side for side in sides if side.name == "tce"]
    if not tce:
        return []
    tce = tce[0]
    return [tce.variant("tce_canary_off", label="tce, canary off",
                        canary_instances=CANARY_INSTANCES, cookie=True,
                        canary_share=0.0),
            tce.variant("tce_canary_on", label="tce, canary on",
                        canary_instances=CANARY_INSTANCES,
                        canary=CANARY_LINE, cookie=True,
                        canary_share=CANARY_SHARE),
            tce.variant("tce_metrics", label="tce, metrics on",
                        metrics=True)]


def keepalive_sized(sides, n):
    """stock and tce with "keepalive <n>": every instance keeps its
    upstream connection cached."""
    return [side.variant("%s_ka" % side.name,
                         label="%s, keepalive %d" % (side.name, n),
                         keepalive=n)
            for side in sides]


def tce_keepalive(sides):
    """tce with the module's per-instance connection cache,
    "tce_keepalive 64", in place of nginx's "keepalive 64"."""
    return [side.variant("tce_tka", label="tce, tce_keepalive %d"
                         % side.keepalive, tce_keepalive=True)
            for side in sides if side.name == "tce"]


def sides_at(n, sides, quick):
    out = sides + [CONTROL] + tce_keepalive(sides)
    if n == VARIANT_INSTANCES:
        out += variants(sides)
    if not quick and n == max(FULL_SIZES):
        out += keepalive_sized(sides, n)
    return out


def run_callgrind(ctx, sides, sizes, lengths, quick, results):
    """Fills results["callgrind"]; a failed side is recorded, and the
    other measurements go on."""
    port = ctx.ports.take(1)[0]
    rows = []
    results["callgrind"] = {"lengths": lengths, "rows": rows,
                            "upstream_keepalive": CONTROL.keepalive,
                            "canary_line": CANARY_LINE,
                            "canary_instances": CANARY_INSTANCES,
                            "variant_instances": VARIANT_INSTANCES}
    for n in sizes:
        row = {"instances": n}
        rows.append(row)
        backend = Backend(ctx, "backend-n%d" % n, n, log_requests=True)
        try:
            backend.start()
            for side in sides_at(n, sides, quick):
                row[side.name] = measure_side(ctx, side, backend, lengths,
                                              port, results)
        except BenchError as e:
            results["errors"].append("callgrind N=%d: %s" % (n, e))
        finally:
            backend.stop()


def measure_side(ctx, side, backend, lengths, port, results):
    try:
        figures = callgrind.measure(ctx, side, backend, lengths, port,
                                    progress)
    except BenchError as e:
        results["errors"].append("callgrind %s N=%d: %s"
                                 % (side.name, len(backend.ports), e))
        return None
    n = len(backend.ports)
    check_spread(side, n, figures, results)
    check_canary(side, n, figures, results)
    check_reuse(side, n, figures, results)
    check_metrics(side, n, figures, results)
    if "balancer_missing" in figures:
        results["warnings"].append(
            "%s N=%d: no balancer figure, no cost found for %s in the "
            "callgrind file (symbols not resolved?)"
            % (side.name, n, ", ".join(figures["balancer_missing"])))
    return figures


def check_spread(side, n, figures, results):
    """Equal weights: each instance should get its share, +-1 (with
    canary instances: each prod instance, see check_canary)."""
    if not side.spreads_evenly and not side.canary_instances:
        return
    for run in figures["runs"]:
        if run["hits_max"] - run["hits_min"] > 1:
            results["warnings"].append(
                "%s N=%d %d requests: uneven spread over instances, "
                "%d..%d requests each (round robin gives +-1)"
                % (side.name, n, run["requests"], run["hits_min"],
                   run["hits_max"]))


def check_canary(side, n, figures, results):
    """The canary instances get their share: none with canary off,
    about the weight with canary on, spread +-1 over them; else the
    variant would not measure what it claims to."""
    if side.canary_share is None:
        return
    for run in figures["runs"]:
        share = run["canary_hits"] / run["requests"]
        if abs(share - side.canary_share) > (CANARY_SHARE_SLACK
                                             if side.canary_share else 0):
            results["warnings"].append(
                "%s N=%d %d requests: %.1f%% of requests went to the "
                "canary instances, expected %.0f%%"
                % (side.name, n, run["requests"], 100 * share,
                   100 * side.canary_share))
        if run["canary_hits_max"] - run["canary_hits_min"] > 1:
            results["warnings"].append(
                "%s N=%d %d requests: uneven spread over the canary "
                "instances, %d..%d requests each"
                % (side.name, n, run["requests"], run["canary_hits_min"],
                   run["canary_hits_max"]))


def check_metrics(side, n, figures, results):
    """With metrics on, the metrics counted every request."""
    if not side.metrics:
        return
    for run in figures["runs"]:
        if run.get("metrics_counted") != run["requests"]:
            results["warnings"].append(
                "%s N=%d %d requests: tce_requests_total says %s"
                % (side.name, n, run["requests"],
                   run.get("metrics_counted")))


def check_reuse(side, n, figures, results):
    """With no more instances than cached connections, one upstream
    connection per instance carries the whole run.  callgrind does not
    count the kernel's work, so a balancer that defeated keepalive
    would look cheap: say so."""
    if n > side.keepalive:
        return
    for run in figures["runs"]:
        if run["upstream_connections"] > n:
            results["warnings"].append(
                "%s N=%d %d requests: %d upstream connections (keepalive "
                "should need at most %d)"
                % (side.name, n, run["requests"],
                   run["upstream_connections"], n))


def run_throughput(ctx, sides, pairs, seconds, results):
    try:
        results["throughput"] = throughput.measure(
            ctx, sides, WRK_INSTANCES, pairs, seconds, progress)
    except BenchError as e:
        results["errors"].append("wrk: %s" % e)


def describe(ctx, args, sides):
    module = None
    if len(sides) > 1:
        with open(sides[1].module, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        module = {"path": os.path.abspath(args.module),
                  "sha256_16": digest}
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "nginx": version_of([ctx.nginx, "-v"]),
            "valgrind": version_of([ctx.valgrind, "--version"]),
            "wrk": version_of([ctx.wrk, "-v"]),
            "cpus": os.cpu_count(), "module": module,
            "commit": git_commit(), "quick": args.quick,
            "only": args.only}


def git_commit():
    try:
        out = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def run(ctx, args, sides):
    results = {"meta": describe(ctx, args, sides), "errors": [],
               "warnings": []}
    if args.only in (None, "callgrind"):
        sizes = QUICK_SIZES if args.quick else FULL_SIZES
        lengths = [args.requests, 2 * args.requests]
        run_callgrind(ctx, sides, sizes, lengths, args.quick, results)
    if args.only in (None, "wrk"):
        run_throughput(ctx, sides, args.pairs, args.seconds, results)
    results["targets"] = evaluate_targets(results)
    return results


def main(argv=None):
    args = parse_args(argv)
    install_signal_handlers()
    ctx = None
    try:
        check_module(args.module)
        ctx = Context(os.path.abspath(args.nginx), find_tool(args.valgrind),
                      find_tool(args.wrk),
                      os.path.join(args.out_dir, "bench-tmp"),
                      args.keep_tmp)
        sides = make_sides(ctx, args.module)
        results = run(ctx, args, sides)
    except BenchError as e:
        progress("bench: %s" % e)
        return 1
    except KeyboardInterrupt:
        progress("bench: interrupted")
        return 130
    finally:
        if ctx is not None:
            ctx.close()
            if args.keep_tmp:
                progress("bench: temp files kept in %s" % ctx.tmp)
    print(format_text(results))
    for path in write_files(results, args.out_dir):
        print("wrote %s" % path)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
