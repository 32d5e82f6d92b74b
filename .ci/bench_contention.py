"""Section f of the benchmark: cache-hit throughput when the CPUs are contended.

Run through `bash .ci/bench --only-contention [--variant LABEL=BINARY ...]`. The same
throughput runs as section a (a 256 MiB package, 1, 8 and 64 clients, servers alternating),
twice: on a quiet machine, and with one CPU-bound spinner process per CPU running beside
them (started and stopped by pid here, so "busy" is the same load every time). For each
server it reports MB/s (median, min–max), CPU seconds per GB, and context switches per GB
(voluntary and involuntary, summed over every thread of the server's processes): the
number of times a server gave its CPU away or had it taken while moving the bytes.

`--variant` adds further pacserve binaries (e.g. built with another executor thread count
or sendfile chunk) to the same alternation, to find out what makes a difference.
"""

import os
import statistics
import subprocess
import sys
import time

CLIENTS = [1, 8, 64]
RUNS = 5


def ctxt_switches(pids):
    """Voluntary and involuntary context switches of every thread of `pids`."""
    vol = invol = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    for line in f:
                        if line.startswith("voluntary_ctxt_switches:"):
                            vol += int(line.split()[1])
                        elif line.startswith("nonvoluntary_ctxt_switches:"):
                            invol += int(line.split()[1])
            except OSError:
                continue
    return vol, invol


def start_spinners(procs, n):
    """`n` processes that spin on a CPU until stopped (by pid)."""
    code = "import time\nend = time.monotonic() + 3600\nwhile time.monotonic() < end: pass\n"
    return [procs.start([sys.executable, "-c", code]) for _ in range(n)]


def run(bench, procs, servers, client_mode, busy_cpus, loads=("quiet", "busy")):
    """{(load, server name, clients): {"mbs": [...], "cpu": s, "bytes": n, "vol": v, "invol": i}}."""
    out = {}
    for load in loads:
        spinners = []
        if load == "quiet":
            bench.wait_quiet()
        else:
            spinners = start_spinners(procs, busy_cpus)
            time.sleep(1.0)
        try:
            for c in CLIENTS:
                for r in range(RUNS):
                    order = servers[r % len(servers):] + servers[: r % len(servers)]
                    for s in order:
                        pids = s.pids()
                        v0, i0 = ctxt_switches(pids)
                        mbs, nbytes, used = bench.throughput_run(procs, s, c, client_mode)
                        v1, i1 = ctxt_switches(pids)
                        row = out.setdefault((load, s.name, c), {
                            "mbs": [], "cpu": 0.0, "bytes": 0, "vol": 0, "invol": 0})
                        row["mbs"].append(mbs)
                        row["cpu"] += used
                        row["bytes"] += nbytes
                        row["vol"] += v1 - v0
                        row["invol"] += i1 - i0
                        bench.log(f"{load} {c:>2} clients run {r + 1} {s.label}: {mbs:,.0f} MB/s, "
                                  f"{v1 - v0} + {i1 - i0} context switches")
        finally:
            for p in spinners:
                procs.stop(p, grace=2.0)
    return out


def render(servers, rows, busy_cpus, reference):
    """Markdown: per load and client count, each server's MB/s and its ratio to `reference`."""
    L = [f"Cache-hit throughput, quiet and with {busy_cpus} CPU spinner(s) beside the servers "
         f"(MB/s, median of {RUNS} alternating runs, min–max in brackets; ratio of medians "
         f"to {reference.label}):", ""]
    head = "| load | clients | " + " | ".join(s.label for s in servers) + " | " + \
        " | ".join(f"{s.label} / {reference.label}" for s in servers if s is not reference) + " |"
    L += [head, "|" + "---|" * (2 + len(servers) + len(servers) - 1)]
    for load in ("quiet", "busy"):
        for c in CLIENTS:
            ref = statistics.median(rows[(load, reference.name, c)]["mbs"])
            cells = []
            for s in servers:
                m = rows[(load, s.name, c)]["mbs"]
                cells.append(f"{statistics.median(m):,.0f} ({min(m):,.0f}–{max(m):,.0f})")
            ratios = [f"{statistics.median(rows[(load, s.name, c)]['mbs']) / ref:.2f}"
                      for s in servers if s is not reference]
            L.append(f"| {load} | {c} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    L += ["", "Per GB served (all client counts together): CPU seconds, and context switches "
          "voluntary + involuntary:", "",
          "| load | " + " | ".join(s.label for s in servers) + " |",
          "|---|" + "---|" * len(servers)]
    for load in ("quiet", "busy"):
        cells = []
        for s in servers:
            rs = [rows[(load, s.name, c)] for c in CLIENTS]
            gb = sum(r["bytes"] for r in rs) / 1e9
            cells.append(f"{sum(r['cpu'] for r in rs) / gb:.3f} s, "
                         f"{sum(r['vol'] for r in rs) / gb:,.0f} + "
                         f"{sum(r['invol'] for r in rs) / gb:,.0f}")
        L.append(f"| {load} | " + " | ".join(cells) + " |")
    return L


def main(bench, a, procs, tmp):
    """Section f alone: its table printed and written to results-contention.md."""
    started = time.monotonic()
    try:
        bench.log(f"machine: {bench.machine()}")
        cache = os.path.join(tmp, "cache")
        os.makedirs(cache)
        bench.make_file(os.path.join(cache, bench.BIG_NAME), bench.BIG_SIZE, 0)
        os.system("sync")
        conf = os.path.join(tmp, "pacserve.conf")
        bench.write_pacman_conf(conf, cache, bench.free_port())
        servers = []
        for label, binary in [("pacserve", a.bin)] + [v.split("=", 1) for v in a.variant]:
            port = bench.free_port()
            p = bench.start_pacserve(procs, binary, conf, port)
            servers.append(bench.Server(label.replace(" ", "_"), label, port, p, ""))
        nap, naport, naw = bench.start_nginx(procs, tmp, "nginx-auto", "auto", cache)
        nginx = bench.Server("nginxauto", f"nginx ×{naw}", naport, nap, "")
        servers.append(nginx)
        busy_cpus = a.busy_cpus or os.cpu_count() or 1
        rows = run(bench, procs, servers, a.client, busy_cpus)
        table = "\n".join(render(servers, rows, busy_cpus, nginx)) + "\n"
        print(table, flush=True)
        with open(os.path.join(a.out, "results-contention.md"), "w") as f:
            f.write(table)
        bench.log(f"took {time.monotonic() - started:.0f} s")
        return 0
    finally:
        procs.stop_all()
        
