#!/usr/bin/env python3
"""Discovery and lookups on a LAN of N pacserves, each in a network namespace of its own, all
on one bridge (dual stack: 10.232.0.I/16, fe80::I and fd32::I, no duplicate address
detection). Run by .ci/bench_lan (as root); prints a markdown table and writes it to
OUT/results-lan.md, and a plot to OUT/bench-lan.png.

For each N:
- all N pacservers start at once: time until every one lists the N-1 others (polled every
  50 ms through each host's /status.json);
- a late joiner: time until it knows all N and all N know it; datagrams sent on the LAN for
  the join (sum of every host's multicast_datagrams.sent);
- the steady state: datagrams sent per host per interval over a window of several intervals;
- a warm lookup from host 1 for a package that only host N holds (the answer remembered):
  p50/p99 of the 307, over keep-alive requests (p99: the median of 5 passes' p99); the
  target: p99 with 50 hosts within 1.5 × p99 with 3 (a LAN's size must not show in the
  lookup);
- VmRSS of every pacserve (median and max).

With --pacman instead: pacman -Sw (Debian's pacman 6.0) of 20 packages of 8 MiB on host 1 of
10, through its pacserve (hosts 2..10 hold the packages between them) and straight from the
mirror (Python's http.server in a namespace of its own), serial and with ParallelDownloads 5.

Everything it starts is stopped by pid, and the namespaces (prefix pslbench-PID-) and the
temporary directory are removed at exit.
"""

import argparse
import ctypes
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

PORT = 15678
INTERVAL = 2  # --multicast-interval of every host, seconds
STEADY_INTERVALS = 5
WARM_LOOKUPS = 1000  # per pass
WARM_PASSES = 5  # p99 is the median of the passes' p99: one burst of other work is one pass
P99_TARGET = 1.5  # p99(largest N) / p99(3) at most
CLONE_NEWNET = 0x40000000
LIBC = ctypes.CDLL(None, use_errno=True)
PKG = "benchpkg-1.0-1-x86_64.pkg.tar.zst"


def log(msg):
    print(f"bench_lan: {msg}", file=sys.stderr, flush=True)


def ip(*args):
    subprocess.run(["ip", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=20)


def in_ns(ns, fn):
    """fn() on a thread that has moved into the network namespace ns."""
    out = {}

    def body():
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if LIBC.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {ns}")
        finally:
            os.close(fd)
        try:
            out["value"] = fn()
        except Exception as e:  # returned to the caller's thread
            out["error"] = e

    t = threading.Thread(target=body)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def status(ns):
    def get():
        c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
        c.request("GET", "/status.json")
        body = c.getresponse().read()
        c.close()
        return json.loads(body)
    return in_ns(ns, get)


def peers_known(ns):
    try:
        return len(status(ns)["peers"])
    except (OSError, ValueError, http.client.HTTPException):
        return -1


def sent(ns):
    return status(ns)["multicast_datagrams"]["sent"]


def join_kinds(ns):
    """Datagrams a join costs a host: queries, and hellos sent as answers."""
    d = status(ns)["multicast_datagrams"]
    return d["sent_query"] + d["sent_answer"]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def percentile(values, p):
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


class Lan:
    def __init__(self, binary, tmp):
        self.binary = binary
        self.tmp = tmp
        self.prefix = f"pslbench-{os.getpid()}-"
        self.namespaces = []
        self.hosts = []  # (ns, Popen)
        self.sw = self.add_ns("sw")
        ip("-n", self.sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        ip("-n", self.sw, "link", "set", "br0", "up")

    def add_ns(self, name):
        ns = self.prefix + name
        self.namespaces.append(ns)
        ip("netns", "add", ns)
        return ns

    def add_host(self, i, server="http://127.0.0.1:9/core"):
        ns = self.add_ns(f"h{i}")
        port = f"v{os.getpid() % 1000}-{i}"
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port,
           "netns", self.sw)
        ip("-n", self.sw, "link", "set", port, "master", "br0", "up")
        ip("-n", ns, "link", "set", "eth0", "addrgenmode", "none")
        ip("-n", ns, "addr", "add", f"10.232.{i // 250}.{i % 250 + 1}/16", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
        ip("-n", ns, "addr", "add", f"fe80::{i:x}/64", "dev", "eth0", "nodad")
        ip("-n", ns, "addr", "add", f"fd32::{i:x}/64", "dev", "eth0", "nodad")
        d = os.path.join(self.tmp, f"h{i}")
        cache = os.path.join(d, "cache")
        os.makedirs(cache, exist_ok=True)
        conf = os.path.join(d, "pacman.conf")
        with open(conf, "w") as f:
            f.write(f"[options]\nCacheDir = {cache}/\nDBPath = {d}/db/\n"
                    f"Architecture = x86_64\n\n[core]\nServer = {server}\n")
        return ns, conf, cache

    def start(self, prepared):
        """Start pacserve on every prepared host at once."""
        started = []
        for ns, conf, _ in prepared:
            p = subprocess.Popen(
                ["ip", "netns", "exec", ns, self.binary, "--port", str(PORT),
                 "--pacman-conf", conf, "--multicast", "--multicast-interval",
                 str(INTERVAL)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            started.append((ns, p))
        self.hosts.extend(started)
        return started

    def close(self):
        for _, p in self.hosts:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        end = time.monotonic() + 10
        for _, p in self.hosts:
            try:
                p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL,
                           timeout=20)


def wait_all_know(hosts, want, limit):
    """Seconds until every host in hosts lists want peers (polled), or None."""
    t0 = time.monotonic()
    pending = list(hosts)
    while pending and time.monotonic() - t0 < limit:
        pending = [h for h in pending if peers_known(h[0]) < want]
        if pending:
            time.sleep(0.05)
    return None if pending else time.monotonic() - t0


def warm_lookup(ns, n=WARM_LOOKUPS):
    def run():
        c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
        path = f"/request/core/x86_64/{PKG}"
        times = []
        first = None
        for k in range(n + 1):
            t = time.perf_counter()
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            dt = time.perf_counter() - t
            if r.status != 307 or "/lan/" not in (r.getheader("Location") or ""):
                raise RuntimeError(f"lookup answered {r.status} {r.getheader('Location')}")
            if k == 0:
                first = dt
            else:
                times.append(dt)
        c.close()
        return first, times
    return in_ns(ns, run)


def bench(binary, n):
    tmp = tempfile.mkdtemp(prefix="pacserve-bench-lan-")
    lan = Lan(binary, tmp)
    try:
        log(f"N={n}: making {n + 1} namespaces")
        prepared = [lan.add_host(i) for i in range(1, n + 1)]
        joiner = lan.add_host(n + 1)
        # Only host N holds the package.
        with open(os.path.join(prepared[-1][2], PKG), "wb") as f:
            f.write(os.urandom(64 * 1024))
        hosts = lan.start(prepared)
        t_all = wait_all_know(hosts, n - 1, limit=120)
        # Answers to the start-up queries are over within a second or two.
        time.sleep(3)
        start_datagrams = sum(sent(ns) for ns, _ in hosts)
        before = sum(join_kinds(ns) for ns, _ in hosts)
        jh = lan.start([joiner])
        everyone = hosts + jh
        t_join = wait_all_know(everyone, n, limit=60)
        # Answers are sent within 120 ms, or a second after the previous one.
        time.sleep(1.5)
        # The joiner's first hello (one per family, 2) is not counted by kind.
        join_datagrams = sum(join_kinds(ns) for ns, _ in everyone) - before + 2
        # Steady state, well after the start-up queries were answered.
        s0 = [sent(ns) for ns, _ in everyone]
        w0 = time.monotonic()
        time.sleep(STEADY_INTERVALS * INTERVAL)
        s1 = [sent(ns) for ns, _ in everyone]
        window = time.monotonic() - w0
        per_host_interval = (sum(s1) - sum(s0)) / len(everyone) / (window / INTERVAL)
        cold, warm = warm_lookup(hosts[0][0])
        passes = [warm_lookup(hosts[0][0])[1] for _ in range(WARM_PASSES - 1)]
        p99s = sorted(percentile(w, 99) * 1000 for w in [warm] + passes)
        rss = [rss_kib(p.pid) for _, p in everyone]
        return {
            "n": n,
            "all_know_all_s": t_all,
            "start_datagrams": start_datagrams,
            "join_s": t_join,
            "join_datagrams": join_datagrams,
            "per_host_interval": per_host_interval,
            "lookup_first_ms": cold * 1000,
            "warm_p50_ms": percentile([t for w in [warm] + passes for t in w], 50) * 1000,
            "warm_p99_ms": statistics.median(p99s),
            "warm_p99_range_ms": (p99s[0], p99s[-1]),
            "rss_median_kib": statistics.median(rss),
            "rss_max_kib": max(rss),
        }
    finally:
        lan.close()
        shutil.rmtree(tmp, ignore_errors=True)


def host_ip(i):
    return f"10.232.{i // 250}.{i % 250 + 1}"


def build_package(repo_dir, name, size):
    """NAME-1.0-1-x86_64.pkg.tar.zst in repo_dir: a .PKGINFO and size random bytes."""
    stage = os.path.join(repo_dir, f".stage-{name}")
    share = os.path.join(stage, "usr/share", name)
    os.makedirs(share)
    with open(os.path.join(share, "payload"), "wb") as f:
        f.write(os.urandom(size))
    with open(os.path.join(stage, ".PKGINFO"), "w") as f:
        f.write(f"pkgname = {name}\npkgbase = {name}\npkgver = 1.0-1\n"
                f"pkgdesc = bench {name}\nbuilddate = 1700000000\nsize = {size}\n"
                "arch = x86_64\nlicense = GPL-2.0-or-later\n")
    path = os.path.join(repo_dir, f"{name}-1.0-1-x86_64.pkg.tar.zst")
    subprocess.run(["bsdtar", "--zstd", "-cf", path, "-C", stage, ".PKGINFO", "usr"],
                   check=True, timeout=120)
    shutil.rmtree(stage)
    return path


class Mirror:
    """A threaded HTTP server of root, its socket inside ns; counts package GETs."""

    def __init__(self, ns, addr, port, root):
        import http.server
        import functools
        counts = self.counts = {"pkg": 0}

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                if self.path.endswith(".pkg.tar.zst"):
                    counts["pkg"] += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        handler = functools.partial(Handler, directory=root)
        self.server = in_ns(ns, lambda: http.server.ThreadingHTTPServer((addr, port), handler))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def pacman_client(tmp, name, server, parallel):
    d = os.path.join(tmp, name)
    for sub in ("root", "db/sync", "db/local", "cache", "gnupg", "hooks"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    conf = os.path.join(d, "pacman.conf")
    with open(conf, "w") as f:
        f.write(f"[options]\nRootDir = {d}/root\nDBPath = {d}/db/\nCacheDir = {d}/cache/\n"
                f"LogFile = {d}/pacman.log\nGPGDir = {d}/gnupg/\nHookDir = {d}/hooks/\n"
                f"Architecture = x86_64\nSigLevel = Never\nParallelDownloads = {parallel}\n"
                f"\n[core]\nServer = {server}\n")
    return conf


def pacman(ns, conf, *args):
    return subprocess.run(["ip", "netns", "exec", ns, "pacman", "--config", conf,
                           "--noconfirm", "--noprogressbar", *args],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)


def bench_pacman(binary, n, k, size):
    """pacman -Sw of k packages on host 1: through its pacserve (host 2..n hold them) and
    straight from the mirror, serial and with ParallelDownloads = 5."""
    tmp = tempfile.mkdtemp(prefix="pacserve-bench-lan-pacman-")
    lan = Lan(binary, tmp)
    mirror = None
    try:
        log(f"pacman -Sw: {k} packages of {size // 1024} KiB, {n} hosts")
        m_ns, _, _ = lan.add_host(500)
        repo_dir = os.path.join(tmp, "mirror/core/os/x86_64")
        os.makedirs(repo_dir)
        names = [f"benchsw{j:02d}" for j in range(k)]
        paths = [build_package(repo_dir, nm, size) for nm in names]
        subprocess.run(["repo-add", "-q", os.path.join(repo_dir, "core.db.tar.gz"), *paths],
                       check=True, timeout=120, stdout=subprocess.DEVNULL)
        mirror = Mirror(m_ns, host_ip(500), 8080, os.path.join(tmp, "mirror"))
        server = f"http://{host_ip(500)}:8080/$repo/os/$arch"
        prepared = [lan.add_host(i, server) for i in range(1, n + 1)]
        for j, path in enumerate(paths):
            holder = prepared[1 + j % (n - 1)]
            shutil.copy(path, holder[2])
        hosts = lan.start(prepared)
        if wait_all_know(hosts, n - 1, limit=120) is None:
            raise RuntimeError("the hosts did not find each other")
        ns1 = hosts[0][0]
        rows = []
        for route, url in (("pacserve (peers)", f"http://127.0.0.1:{PORT}/request/$repo/$arch"),
                           ("mirror", server)):
            for parallel in (1, 5):
                conf = pacman_client(tmp, f"client-{len(rows)}", url, parallel)
                r = pacman(ns1, conf, "-Sy")
                if r.returncode != 0:
                    raise RuntimeError(f"pacman -Sy: {r.stderr.decode()}")
                before = mirror.counts["pkg"]
                t = time.monotonic()
                r = pacman(ns1, conf, "-Sw", *names)
                dt = time.monotonic() - t
                if r.returncode != 0:
                    raise RuntimeError(f"pacman -Sw: {r.stderr.decode()}")
                rows.append((route, parallel, dt, mirror.counts["pkg"] - before))
        return rows
    finally:
        if mirror:
            mirror.close()
        lan.close()
        shutil.rmtree(tmp, ignore_errors=True)


def fmt_s(v):
    return "timeout" if v is None else f"{v:.2f} s"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--sizes", default="3,10,25,50")
    ap.add_argument("--pacman", action="store_true",
                    help="only pacman -Sw end to end, through pacserve and from the mirror")
    a = ap.parse_args()

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)  # the finally blocks stop and remove what was made

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if a.pacman:
        k, size, n = 20, 8 * 1024 * 1024, 10
        rows = bench_pacman(a.bin, n, k, size)
        lines = [f"pacman -Sw of {k} packages of {size // 1024} KiB on host 1 of {n} "
                 "(hosts 2..N hold them between them):", "",
                 "| route | ParallelDownloads | time | MB/s | package GETs at the mirror |",
                 "|---|---:|---:|---:|---:|"]
        for route, parallel, dt, got in rows:
            lines.append(f"| {route} | {parallel} | {dt:.2f} s | {k * size / dt / 1e6:.0f} "
                         f"| {got} |")
        text = "\n".join(lines) + "\n"
        print(text)
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "results-lan-pacman.md"), "w") as f:
            f.write(text)
        return
    rows = [bench(a.bin, int(n)) for n in a.sizes.split(",")]
    base = next((r for r in rows if r["n"] == 3), None)
    lines = [
        f"Discovery on one bridge, dual stack, --multicast-interval {INTERVAL}; a late "
        f"joiner makes N+1 hosts; warm lookups: {WARM_PASSES} passes of {WARM_LOOKUPS} "
        "keep-alive requests, p99 the median of the passes' (their range in brackets).",
        "",
        "| N | all know all | datagrams, start (~3 s) | late joiner known | datagrams per join "
        "| datagrams/host/interval | lookup, first | warm p50 | warm p99 | p99 / p99(N=3) "
        "| RSS median | RSS max |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r['warm_p99_ms'] / base['warm_p99_ms']:.2f}" if base else "–"
        lines.append(
            f"| {r['n']} | {fmt_s(r['all_know_all_s'])} | {r['start_datagrams']} "
            f"| {fmt_s(r['join_s'])} | {r['join_datagrams']} "
            f"| {r['per_host_interval']:.2f} | {r['lookup_first_ms']:.2f} ms "
            f"| {r['warm_p50_ms']:.3f} ms | {r['warm_p99_ms']:.3f} ms "
            f"({r['warm_p99_range_ms'][0]:.3f}–{r['warm_p99_range_ms'][1]:.3f}) | {ratio} "
            f"| {r['rss_median_kib'] / 1024:.1f} MiB | {r['rss_max_kib'] / 1024:.1f} MiB |")
    top = max(rows, key=lambda r: r["n"])
    if base and top is not base:
        ratio = top["warm_p99_ms"] / base["warm_p99_ms"]
        lines += ["", f"Warm lookup p99 at {top['n']} hosts / at 3 hosts: {ratio:.2f} "
                  f"(target ≤ {P99_TARGET}: {'OK' if ratio <= P99_TARGET else 'MISSED'})."]
    else:
        lines += ["", "No ratio to 3 hosts: --sizes has no 3, or nothing larger."]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "results-lan.md"), "w") as f:
        f.write(text)
    plot(os.path.join(a.out, "bench-lan.png"), rows, base)


def plot(path, rows, base):
    """Warm lookup p50/p99 against N with the target line, and the discovery times."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    ax1.plot(ns, [r["warm_p50_ms"] for r in rows], "o-", label="warm p50")
    p99 = [r["warm_p99_ms"] for r in rows]
    ax1.errorbar(ns, p99, yerr=[[v - r["warm_p99_range_ms"][0] for v, r in zip(p99, rows)],
                                [r["warm_p99_range_ms"][1] - v for v, r in zip(p99, rows)]],
                 fmt="s-", capsize=3, label=f"warm p99 (median of {WARM_PASSES} passes, range)")
    if base:
        ax1.axhline(P99_TARGET * base["warm_p99_ms"], color="red", linestyle=":",
                    label=f"target: p99 ≤ {P99_TARGET} × p99 at N = 3")
        for r in rows:
            ax1.annotate(f"×{r['warm_p99_ms'] / base['warm_p99_ms']:.2f}",
                         (r["n"], r["warm_p99_ms"]), textcoords="offset points",
                         xytext=(0, 6), ha="center", fontsize=8)
    ax1.set_xlabel("hosts on the bridge (N)")
    ax1.set_ylabel("ms")
    ax1.set_title(f"warm lookup → 307 from host 1, package on host N "
                  f"({WARM_PASSES} × {WARM_LOOKUPS} requests)")
    ax1.set_ylim(bottom=0)
    ax1.set_xticks(ns)
    ax1.grid(True, alpha=0.3)
    ax1.legend(fontsize=8)
    ax2.plot(ns, [r["all_know_all_s"] or float("nan") for r in rows], "o-",
             label="all know all (start at once)")
    ax2.plot(ns, [r["join_s"] or float("nan") for r in rows], "s-", label="late joiner known")
    ax2.set_xlabel("hosts on the bridge (N)")
    ax2.set_ylabel("s")
    ax2.set_title(f"discovery, --multicast-interval {INTERVAL}")
    ax2.set_ylim(bottom=0)
    ax2.set_xticks(ns)
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
