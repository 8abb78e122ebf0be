"""Throughput of tce against stock from interleaved wrk runs.

Both nginx under test run at once (one worker each, not under
valgrind) in front of the same backend; wrk hits them in turn, stock
then tce, pair after pair, so that drift of the machine (other load,
frequency) hits both alike.  The figure is the median of the per-pair
ratios tce/stock.
"""

import collections
import os
import re
import statistics
import subprocess
import time

from . import confs
from .backend import Backend
from .procs import BenchError, tail, wait_for_port


WRK_THREADS = 1
WRK_CONNECTIONS = 16
WARMUP_SECONDS = 1

Proxy = collections.namedtuple("Proxy", "proc port worker")


def measure(ctx, sides, instances, pairs, seconds, progress):
    backend = Backend(ctx, "wrk-backend", instances,
                      log_requests=False).start()
    proxies = {}
    try:
        for side in sides:
            proxies[side.name] = start_proxy(ctx, side, backend)
        for side in sides:
            run_wrk(ctx, proxies[side.name].port, WARMUP_SECONDS)
        rounds = []
        for i in range(pairs):
            rounds.append({side.name: one_run(ctx, proxies[side.name],
                                              seconds)
                           for side in sides})
            progress("  wrk pair %d: %s" % (i + 1, ", ".join(
                "%s %.0f req/s %.1f us cpu/req"
                % (name, r["rps"], r["cpu_us_per_request"])
                for name, r in rounds[-1].items())))
    finally:
        for proxy in proxies.values():
            ctx.procs.stop(proxy.proc, timeout=30)
        backend.stop()
    return summarize(rounds, instances, seconds)


def one_run(ctx, proxy, seconds):
    """wrk against one proxy: req/s, and the worker's CPU time per
    request (user + system): a second view of the cost that depends
    less on how the scheduler shares the CPUs among wrk, the backend
    and the proxy."""
    cpu_before = cpu_seconds(proxy.worker)
    rps, count = run_wrk(ctx, proxy.port, seconds)
    cpu = cpu_seconds(proxy.worker) - cpu_before
    return {"rps": rps, "requests": count,
            "cpu_us_per_request": round(cpu * 1e6 / count, 3)}


def start_proxy(ctx, side, backend):
    """A proxy with a master and one worker."""
    name = "wrk-%s" % side.name
    port = ctx.ports.take(1)[0]
    conf = confs.write_proxy_conf(ctx.tmp, name, side, port,
                                  backend.ports, master_process=True)
    proc = ctx.procs.start(ctx.nginx_argv(conf, name),
                           ctx.path(name + ".out"))
    try:
        wait_for_port(port, proc, timeout=30)
        return Proxy(proc, port, worker_of(proc, timeout=30))
    except BenchError as e:
        raise BenchError("%s: %s\n%s" % (name, e, tail(
            ctx.path(name + "-error.log"))))


def worker_of(master, timeout):
    """The pid of the only worker of an nginx master."""
    deadline = time.monotonic() + timeout
    while True:
        children = children_of(master.pid)
        if len(children) == 1:
            return children[0]
        if time.monotonic() > deadline:
            raise BenchError("nginx master %d has %d workers, expected 1"
                             % (master.pid, len(children)))
        time.sleep(0.05)


def children_of(pid):
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = proc_stat(int(entry))
        if fields is not None and int(fields[1]) == pid:
            children.append(int(entry))
    return children


def proc_stat(pid):
    """Fields of /proc/pid/stat after the command name (state first),
    or None if the process is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def cpu_seconds(pid):
    fields = proc_stat(pid)
    if fields is None:
        raise BenchError("nginx worker %d is gone" % pid)
    # utime and stime: fields 14 and 15 of stat(5), 11 and 12 here
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def run_wrk(ctx, port, seconds):
    """(requests/s, requests) of one wrk run; BenchError on errors."""
    argv = [ctx.wrk, "-t%d" % WRK_THREADS, "-c%d" % WRK_CONNECTIONS,
            "-d%ds" % seconds, "http://127.0.0.1:%d/" % port]
    try:
        out = subprocess.run(argv, capture_output=True, text=True,
                             timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        raise BenchError("wrk did not finish: %s" % " ".join(argv))
    if out.returncode != 0:
        raise BenchError("wrk failed (%d): %s" % (out.returncode,
                                                   out.stderr.strip()))
    return parse_wrk(out.stdout)


def parse_wrk(text):
    for bad in ("Non-2xx or 3xx responses", "Socket errors"):
        if bad in text:
            raise BenchError("wrk reported errors:\n%s" % text)
    rate = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    count = re.search(r"^\s*([0-9]+) requests in ", text, re.M)
    if rate is None or count is None:
        raise BenchError("no request figures in wrk output:\n%s" % text)
    return float(rate.group(1)), int(count.group(1))


def summarize(rounds, instances, seconds):
    result = {"instances": instances, "seconds": seconds,
              "threads": WRK_THREADS, "connections": WRK_CONNECTIONS,
              "pairs": rounds}
    for name in rounds[0]:
        result[name + "_median_rps"] = round(statistics.median(
            r[name]["rps"] for r in rounds), 1)
        result[name + "_median_cpu_us"] = round(statistics.median(
            r[name]["cpu_us_per_request"] for r in rounds), 3)
    if "stock" in rounds[0] and "tce" in rounds[0]:
        ratios = [r["tce"]["rps"] / r["stock"]["rps"] for r in rounds]
        result["ratios"] = [round(x, 4) for x in ratios]
        result["median_ratio"] = round(statistics.median(ratios), 4)
        cpu = [r["tce"]["cpu_us_per_request"]
               / r["stock"]["cpu_us_per_request"] for r in rounds]
        result["cpu_ratios"] = [round(x, 4) for x in cpu]
        result["median_cpu_ratio"] = round(statistics.median(cpu), 4)
    return result
