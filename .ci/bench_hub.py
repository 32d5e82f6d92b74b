#!/usr/bin/env python3
"""The hub's benchmark (not part of the tests; run as root, it makes network namespaces).

    python3 .ci/bench_hub.py [--size-mib 512] [--runs 3] [--files 20000] [--shaped]

Builds pacserve (release, static x86_64 musl when that target is installed) and prints a
markdown table (also written to target/bench/results-hub.md):

  a. Pull throughput over a veth pair: namespace `peer` runs a pacserve holding one
     incompressible package of --size-mib; namespace `hub` runs `pacserve --hub` with the
     peer as --pacserver, and the time from its start to the file stored (polled through
     its directory) gives the rate. Beside it, `curl -o` of the same file from the
     peer's /lan/ route, in the same namespace, to the same filesystem, with and without an
     fsync after it (the hub syncs every pull). Runs alternate, medians reported; the peer
     has hashed its copy first, so only the pull is timed.
  b. CPU per GiB pulled: the hub process's user+system time over those pulls.
  c. Hub RSS with --files files held (idle after rounds and one /info; VmRSS and VmHWM).

Everything runs in a temporary directory removed at exit; every process started is killed
by pid and the namespaces are deleted at exit.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = 15678
PEER_IP, HUB_IP = "10.233.0.1", "10.233.0.2"
WAIT = 600.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
# --shaped: a wired gigabit LAN (the same shaping as .ci/bench_pacman.py).
SHAPE = ["rate", "1gbit", "burst", "256kb", "latency", "5ms"]


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def build():
    installed = subprocess.run(["rustup", "target", "list", "--installed"],
                               capture_output=True, text=True).stdout.split()
    target = "x86_64-unknown-linux-musl" if "x86_64-unknown-linux-musl" in installed else None
    cmd = ["cargo", "build", "--release"] + (["--target", target] if target else [])
    sh(*cmd, cwd=ROOT)
    sub = os.path.join(target, "release") if target else "release"
    return os.path.join(ROOT, "target", sub, "pacserve"), target or "host"


class Procs:
    """Processes started here, killed by pid."""

    def __init__(self):
        self.procs = []

    def start(self, args, log):
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=open(log, "wb"))
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)

    def stop_all(self):
        for p in self.procs:
            self.stop(p)


def ns_exec(ns):
    return ["ip", "netns", "exec", ns]


def write_conf(path, cache):
    with open(path, "w") as f:
        f.write("[options]\nArchitecture = x86_64\n"
                f"CacheDir = {cache}/\nDBPath = {os.path.dirname(path)}/db/\n\n"
                "[core]\nServer = http://127.0.0.1:1/$repo/os/$arch\n")


def http_in(ns, url, method="GET", timeout=10):
    """A request from inside `ns` (through curl, which runs there): (headers, body)."""
    args = ns_exec(ns) + ["curl", "-s", "-D", "-", "--max-time", str(timeout)]
    if method == "HEAD":
        args.append("-I")
    out = subprocess.run(args + [url], capture_output=True, check=True).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


def wait_ready(ns, ip, log):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if "listening on" in open(log, errors="replace").read():
            return
        time.sleep(0.02)
    raise RuntimeError(f"pacserve in {ns} did not start:\n{open(log).read()}")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def vm(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def hub_json(ns):
    _, body = http_in(ns, f"http://127.0.0.1:{PORT}/status.json")
    return json.loads(body)["hub"]


def make_file(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 << 20)
            f.write(os.urandom(n))
            left -= n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--shaped", action="store_true",
                    help="both ends of the veth pair shaped to 1 Gbit/s (tc tbf), as a wired LAN")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_hub.py makes network namespaces: run it as root")
    binary, target = build()
    size = a.size_mib << 20
    tag = f"hb{os.getpid()}"
    peer_ns, hub_ns = f"{tag}-peer", f"{tag}-hub"
    tmp = tempfile.mkdtemp(prefix="pacserve-bench-hub-", dir="/var/tmp")
    procs = Procs()
    made = []
    try:
        for ns in (peer_ns, hub_ns):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        sh("ip", "-n", peer_ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
           "netns", hub_ns)
        for ns, ip in ((peer_ns, PEER_IP), (hub_ns, HUB_IP)):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            if a.shaped:
                sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root",
                   "tbf", *SHAPE)

        # The peer, holding one package, hashed before anything is timed.
        pdir = os.path.join(tmp, "peer")
        pcache = os.path.join(pdir, "cache")
        os.makedirs(pcache)
        pconf = os.path.join(pdir, "pacman.conf")
        write_conf(pconf, pcache)
        name = "bigbench-1.0-1-x86_64.pkg.tar.zst"
        make_file(os.path.join(pcache, name), size)
        plog = os.path.join(pdir, "log")
        procs.start(ns_exec(peer_ns) + [binary, "--address", "0.0.0.0", "--port", str(PORT),
                                        "--pacman-conf", pconf], plog)
        wait_ready(peer_ns, PEER_IP, plog)
        url = f"http://{PEER_IP}:{PORT}/peer/core/x86_64/{name}"
        deadline = time.monotonic() + WAIT
        while "x-pacserve-sha256" not in http_in(hub_ns, url, "HEAD")[0].lower():
            if time.monotonic() > deadline:
                raise RuntimeError("the peer never hashed its copy")
            time.sleep(0.2)

        hub_rates, pull_rates, curl_rates, curl_sync_rates, ticks = [], [], [], [], 0
        pull_hwm = []
        out = os.path.join(tmp, "hub-side")
        os.makedirs(out)
        for run in range(a.runs):
            order = ("hub", "curl", "curl+fsync") if run % 2 == 0 else ("curl+fsync", "curl", "hub")
            for what in order:
                subprocess.run(["sync"])
                if what == "hub":
                    hdir = os.path.join(tmp, f"hub{run}")
                    os.makedirs(hdir)
                    hconf = os.path.join(hdir, "pacman.conf")
                    write_conf(hconf, os.path.join(hdir, "cache"))
                    hlog = os.path.join(hdir, "log")
                    t0 = time.monotonic()
                    p = procs.start(ns_exec(hub_ns) + [
                        binary, "--address", "0.0.0.0", "--port", str(PORT), "--pacman-conf",
                        hconf, "--hub", os.path.join(hdir, "hub"),
                        "--pacserver", f"{PEER_IP}:{PORT}"], hlog)
                    wait_ready(hub_ns, HUB_IP, hlog)
                    c0 = cpu_ticks(p.pid)
                    deadline = time.monotonic() + WAIT
                    # The file appears in DIR when it is renamed into place, checked and
                    # synced; watched here without asking the hub anything.
                    stored = os.path.join(hdir, "hub", name)
                    partial = os.path.join(hdir, "hub", ".partial", name)
                    first = None
                    while not os.path.exists(stored):
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"the hub did not pull:\n{open(hlog).read()}")
                        if first is None and os.path.exists(partial):
                            first = time.monotonic()
                        time.sleep(0.001)
                    dt = time.monotonic() - t0
                    pull_rates.append(size / (time.monotonic() - (first or t0)))
                    ticks += cpu_ticks(p.pid) - c0
                    pull_hwm.append(vm(p.pid, "VmHWM"))
                    procs.stop(p)
                    if os.path.getsize(os.path.join(hdir, "hub", name)) != size:
                        raise RuntimeError("the hub stored another size")
                    shutil.rmtree(hdir)
                    hub_rates.append(size / dt)
                else:
                    dest = os.path.join(out, name)
                    lan = f"http://{PEER_IP}:{PORT}/lan/core/x86_64/{name}"
                    t0 = time.monotonic()
                    sh(*ns_exec(hub_ns), "curl", "-sf", "-o", dest, lan)
                    if what == "curl+fsync":
                        fd = os.open(dest, os.O_RDONLY)
                        os.fsync(fd)
                        os.close(fd)
                    dt = time.monotonic() - t0
                    if os.path.getsize(dest) != size:
                        raise RuntimeError("curl got another size")
                    os.remove(dest)
                    (curl_rates if what == "curl" else curl_sync_rates).append(size / dt)
                print(f"run {run} {what}: {size / dt / 2**20:.0f} MiB/s", flush=True)

        # c. RSS with many files held.
        rdir = os.path.join(tmp, "rss")
        hubdir = os.path.join(rdir, "hub")
        os.makedirs(hubdir)
        for i in range(a.files):
            with open(os.path.join(hubdir, f"pkg{i:05d}-1.0-1-x86_64.pkg.tar.zst"), "wb") as f:
                f.write(b"x" * 100)
        rconf = os.path.join(rdir, "pacman.conf")
        write_conf(rconf, os.path.join(rdir, "cache"))
        rlog = os.path.join(rdir, "log")
        p = procs.start(ns_exec(hub_ns) + [
            binary, "--address", "0.0.0.0", "--port", str(PORT), "--pacman-conf", rconf,
            "--hub", hubdir, "--hub-interval", "1"], rlog)
        wait_ready(hub_ns, HUB_IP, rlog)
        deadline = time.monotonic() + 60
        while hub_json(hub_ns)["files"] < a.files:
            if time.monotonic() > deadline:
                raise RuntimeError("the hub did not count its files")
            time.sleep(0.1)
        _, body = http_in(hub_ns, f"http://127.0.0.1:{PORT}/info")
        listed = body.count(b"\n")
        time.sleep(5)  # a few rounds (each scans the directory), then idle
        rss, hwm = vm(p.pid, "VmRSS"), vm(p.pid, "VmHWM")
        procs.stop(p)

        gib = a.runs * size / 2**30
        mib = lambda r: (f"{statistics.median(r) / 2**20:.0f} "
                         f"({min(r) / 2**20:.0f}–{max(r) / 2**20:.0f})")
        hub_med, curl_med = statistics.median(hub_rates), statistics.median(curl_rates)
        lines = [
            f"Hub benchmark ({target} binary, {a.size_mib} MiB package over a veth pair"
            f"{' shaped to 1 Gbit/s' if a.shaped else ''}, "
            f"median of {a.runs}, min–max in brackets):",
            "",
            "| figure | value |",
            "|---|---|",
            f"| hub, start to stored (poll, pull, check, sync, rename), MiB/s | {mib(hub_rates)} |",
            f"| hub, first byte to stored, MiB/s | {mib(pull_rates)} |",
            f"| curl -o, MiB/s | {mib(curl_rates)} |",
            f"| curl -o then fsync, MiB/s | {mib(curl_sync_rates)} |",
            f"| hub (start to stored) / curl | {hub_med / curl_med:.2f}x |",
            f"| hub (first byte) / curl | {statistics.median(pull_rates) / curl_med:.2f}x |",
            f"| hub (first byte) / (curl + fsync) | "
            f"{statistics.median(pull_rates) / statistics.median(curl_sync_rates):.2f}x |",
            f"| hub CPU per GiB pulled, s | {ticks / CLK_TCK / gib:.2f} |",
            f"| hub VmRSS idle, {a.files:,} files held ({listed:,} lines in /info), KiB | {rss} |",
            f"| hub VmHWM, KiB | {hwm} |",
            f"| hub VmHWM after one pull (three 256 KiB buffers in hand), KiB | "
            f"{statistics.median(pull_hwm)} |",
        ]
        text = "\n".join(lines)
        print(text)
        os.makedirs(os.path.join(ROOT, "target", "bench"), exist_ok=True)
        with open(os.path.join(ROOT, "target", "bench",
                               "results-hub-shaped.md" if a.shaped else "results-hub.md"),
                  "w") as f:
            f.write(text + "\n")
    finally:
        procs.stop_all()
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
