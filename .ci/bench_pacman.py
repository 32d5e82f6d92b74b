#!/usr/bin/env python3
"""What pacman feels: `pacman -Sw` of 200 real packages on a LAN of three network namespaces,
through pacserve and straight at a static server. Run by .ci/bench_pacman (as root); prints
markdown tables, writes them to OUT/results-pacman.md (figures in OUT/results-pacman.json)
and a plot to OUT/bench-pacman.png.

The LAN: one bridge (namespace `sw`), hosts A (10.234.0.1), B (.2) and M (.3) on veths.
- A, the client: runs pacman and a pacserve (`--pacserver 10.234.0.2:15678`, a static peer:
  no multicast), restarted before each of its runs so no lookup is remembered from the last.
- B: its pacman CacheDir holds all 200 packages; it runs a pacserve (`--pacserver A`) and
  Debian's nginx serving that same directory.
- M, the mirror: Debian's nginx serving the repository (packages and its sync database).
Both pacserves read a pacman.conf whose only Server is M and whose DBPath holds the synced
database (as on a host after `pacman -Sy`), so they check copies against it.

The packages (made here with bsdtar and repo-add, incompressible payloads): 150 of 50 KiB,
45 of 2 MiB, 5 of 50 MiB, one repository `bench`.

Each run is a fresh pacman (private --config, DBPath and an empty CacheDir,
ParallelDownloads = 5, SigLevel = Never): `pacman -Sy` (timed apart), then
`pacman -Sw --noconfirm` of all 200 names (the time reported), then every file is checked
to be in its cache at the database's size. The cases:
  hit   (i)  Server = http://127.0.0.1:15678/request/$repo/$arch: A's pacserve asks B and
             redirects pacman to B's pacserve;                         against
        (ii) Server = B's nginx on B's CacheDir: no lookup, no redirect, the limit (its
             -Sy from M: a cache directory holds no database).
  miss (iii) as (i), with B's cache emptied: A's pacserve asks B, probes M, and redirects
             pacman to M;                                              against
        (iv) Server = M's nginx.
And the steps between them (`--no-steps` leaves them out), to see where the time goes:
  hit:  Server = B's pacserve's /lan/ route (its serving, no lookup, no redirect), and a
        307 from an nginx on A (`return 307`, no lookup) to that route (the redirect alone);
  miss: a 307 from that nginx on A to M.
Runs alternate (each route of a case in turn, the order reversed every other round; one
pacman after the other), after one discarded warm-up round per case; a run whose packages
did not all come from the server its route names (from the servers' logs) stops the
benchmark. Reported: the median and min–max of the -Sw wall time, the ratio of the medians
to the limit and the range of the per-round ratios, bytes sent by M's nginx (databases and
packages apart, from its access log), the requests and connections each server saw in a
run (pacserve's request log lines, nginx's access logs), the CPU seconds of each, and the
load of the machine. Then a lookup's parts: one client in A timing the 200 lookups one by
one, against a peer query and a mirror probe alone.

Then the same with every link shaped to 1 Gbit/s (`tc qdisc add dev VETH root tbf`, on
both ends of every veth) if tc can; if it cannot, the reason is printed.

`--render results-pacman.json` makes the tables and the plot again from a run's figures.

Everything it starts is stopped by pid; the namespaces (prefix pspbench-PID-) and the
temporary directory are removed at exit, on an error and on SIGINT/SIGTERM/SIGHUP too.
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PORT = 15678
NGINX_PORT = 8080
REDIRECT_PORT = 8081  # the nginx on A that only answers 307
REPO = "bench"
ARCH = "x86_64"
SUBNET = "10.234.0"
HOSTS = {"a": 1, "b": 2, "m": 3}
KiB = 1024
MiB = 1024 * KiB
# (name prefix, count, payload bytes)
SETS = [("bps", 150, 50 * KiB), ("bpm", 45, 2 * MiB), ("bpl", 5, 50 * MiB)]
PARALLEL = 5
TARGET = 1.10  # pacserve / limit, at most
PACMAN_LIMIT = 600.0  # seconds one pacman run may take
READY_LIMIT = 10.0  # seconds a server may take to start
# B's pacserve reuses a file it has opened for 2 s (OPEN_CACHE_TTL): after B's cache is
# emptied or filled, this long passes before the next run.
OPEN_CACHE_WAIT = 2.5
# Shaping: every veth end, both directions. burst holds a few 64 KiB GSO packets; latency
# bounds the queue (rate × latency + burst).
SHAPE = ["rate", "1gbit", "burst", "256kb", "latency", "5ms"]
CLK_TCK = os.sysconf("SC_CLK_TCK")

PACSERVE_LINE = re.compile(r"^pacserve: (\S+) (GET|HEAD) (\S+) (\d{3}) (\d+) (\w+)$")

# The routes pacman is pointed at: (its Server for -Sw, its Server for -Sy). {b}, {m} are
# B's and M's addresses. A cache directory holds no database: routes straight at B get
# theirs from M.
VIA = f"http://127.0.0.1:{PORT}/request/$repo/$arch"
AT_M = f"http://{{m}}:{NGINX_PORT}/$repo/os/$arch"
ROUTES = {
    "pacserve": (VIA, VIA),
    "B nginx": (f"http://{{b}}:{NGINX_PORT}/$repo/$arch", AT_M),
    "B pacserve": (f"http://{{b}}:{PORT}/lan/$repo/$arch", AT_M),
    "307 to B": (f"http://127.0.0.1:{REDIRECT_PORT}/to-b/$repo/$arch", AT_M),
    "M nginx": (AT_M, AT_M),
    "307 to M": (f"http://127.0.0.1:{REDIRECT_PORT}/to-m/$repo/$arch", AT_M),
}
# Each case's routes: pacserve, the limit, then the steps between them.
CASES = {
    "hit": ["pacserve", "B nginx", "B pacserve", "307 to B"],
    "miss": ["pacserve", "M nginx", "307 to M"],
}
LIMIT = {"hit": "B nginx", "miss": "M nginx"}
LABELS = {
    ("hit", "pacserve"): "(i) via pacserve → B",
    ("hit", "B nginx"): "(ii) B's nginx: the limit",
    ("hit", "B pacserve"): "step: B's pacserve /lan/ (serving alone)",
    ("hit", "307 to B"): "step: 307 from nginx on A → B's /lan/ (the redirect alone)",
    ("miss", "pacserve"): "(iii) via pacserve → M",
    ("miss", "M nginx"): "(iv) M's nginx: the limit",
    ("miss", "307 to M"): "step: 307 from nginx on A → M (the redirect alone)",
}
PARTIES = ["pacserve on A", "nginx on A", "pacserve on B", "nginx on B", "nginx on M"]
PACMAN_NAMES = {"6": "6.0.2", "7": "7.1.0"}

BIN = None
PACMAN7 = None


def log(msg):
    print(f"bench_pacman: {msg}", file=sys.stderr, flush=True)


def host_ip(name):
    return f"{SUBNET}.{HOSTS[name]}"


def run(args, timeout=60, check=True):
    r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def cpu_s(pids):
    """User and system CPU seconds of pids, from /proc."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def run_ns(pid):
    """Nanoseconds the threads of pid alive now have run (/proc/PID/task/*/schedstat): finer
    than `cpu_s`, for short measurements."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, IndexError, ValueError):
            pass
    return total


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def busy_s():
    """CPU seconds all CPUs have been busy (not idle or waiting for I/O) since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK


def exec_in(ns, *args):
    # `ip netns exec` execs the program itself: the pid is the program's.
    return ["ip", "netns", "exec", ns, *args]


# ---------------------------------------------------------------------------------------------
# processes and namespaces


class Procs:
    """Every process started here; stopped by pid (with the children it had), never by name."""

    def __init__(self):
        self.procs = []

    def start(self, args, stderr_path):
        with open(stderr_path, "ab") as err:
            p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=err)
        self.procs.append(p)
        return p

    def stop(self, p, grace=5.0):
        kids = children(p.pid)
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
            except ProcessLookupError:
                pass
        for k in kids:  # nginx workers, should their master have been killed
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(reversed(self.procs)):
            try:
                self.stop(p, grace=3.0)
            except Exception as e:  # keep stopping the others
                log(f"could not stop pid {p.pid}: {e}")


class Lan:
    """The switch and hosts A, B, M (`build`); all deleted by `close`."""

    def __init__(self):
        self.prefix = f"pspbench-{os.getpid()}-"
        self.made = []
        self.veths = []  # (namespace, device): both ends of every link
        self.ns = {}

    def build(self):
        self.sw = self.add_ns("sw")
        run(["ip", "-n", self.sw, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", self.sw, "link", "set", "br0", "up"])
        for h in HOSTS:
            self.ns[h] = self.add_host(h)

    def add_ns(self, name):
        ns = self.prefix + name
        self.made.append(ns)  # first, so that close() removes it whatever fails next
        run(["ip", "netns", "add", ns])
        return ns

    def add_host(self, h):
        ns = self.add_ns(h)
        port = f"vp{os.getpid() % 10000}{h}"
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port,
             "netns", self.sw])
        run(["ip", "-n", self.sw, "link", "set", port, "master", "br0", "up"])
        run(["ip", "-n", ns, "addr", "add", f"{host_ip(h)}/24", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        self.veths += [(ns, "eth0"), (self.sw, port)]
        return ns

    def shape(self):
        """tbf on both ends of every veth: None, or why it could not be done."""
        for ns, dev in self.veths:
            r = run(exec_in(ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", *SHAPE),
                    check=False)
            if r.returncode != 0:
                self.unshape()
                return (f"`tc qdisc add dev {dev} root tbf {' '.join(SHAPE)}` failed "
                        f"(exit {r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
        return None

    def unshape(self):
        for ns, dev in self.veths:
            run(exec_in(ns, "tc", "qdisc", "del", "dev", dev, "root"), check=False)

    def close(self):
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL, timeout=20)


# ---------------------------------------------------------------------------------------------
# packages


def build_package(stage_root, out_dir, name, size):
    """NAME-1.0-1-x86_64.pkg.tar.zst: a .PKGINFO and `size` random (incompressible) bytes."""
    stage = os.path.join(stage_root, name)
    share = os.path.join(stage, "usr/share", name)
    os.makedirs(share)
    with open(os.path.join(share, "payload"), "wb") as f:
        left = size
        while left:
            n = min(left, 4 * MiB)
            f.write(os.urandom(n))
            left -= n
    with open(os.path.join(stage, ".PKGINFO"), "w") as f:
        f.write(f"pkgname = {name}\npkgbase = {name}\npkgver = 1.0-1\n"
                f"pkgdesc = pacman benchmark package {name}\nurl = http://example.invalid/\n"
                "builddate = 1700000000\npackager = bench <bench@example.invalid>\n"
                f"size = {size}\narch = {ARCH}\nlicense = GPL-2.0-or-later\n")
    path = os.path.join(out_dir, f"{name}-1.0-1-{ARCH}.pkg.tar.zst")
    run(["bsdtar", "--zstd", "-cf", path, "-C", stage, ".PKGINFO", "usr"], timeout=300)
    shutil.rmtree(stage)
    return path


def make_repo(tmp):
    """The repository on M: 200 packages and bench.db. Its directory, {file: size}, names."""
    repo_dir = os.path.join(tmp, "m/www", REPO, "os", ARCH)
    stage = os.path.join(tmp, "stage")
    os.makedirs(repo_dir)
    os.makedirs(stage)
    jobs = [(f"{p}{i:03d}", size) for p, count, size in SETS for i in range(count)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        paths = list(pool.map(lambda j: build_package(stage, repo_dir, *j), jobs))
    shutil.rmtree(stage)
    subprocess.run(["repo-add", "-q", os.path.join(repo_dir, f"{REPO}.db.tar.gz"), *paths],
                   check=True, timeout=600, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, LC_ALL="C"))
    files = {os.path.basename(p): os.path.getsize(p) for p in paths}
    return repo_dir, files, [n for n, _ in jobs]


# ---------------------------------------------------------------------------------------------
# servers and their logs


class Server:
    """A server, and the requests its log shows from a mark on."""

    def __init__(self, name, proc, log_path, kind):
        self.name = name
        self.proc = proc
        self.log_path = log_path
        self.kind = kind  # "pacserve" or "nginx"

    def mark(self):
        try:
            size = os.path.getsize(self.log_path)
        except OSError:
            size = 0
        return size, cpu_s([self.proc.pid] + children(self.proc.pid))

    def since(self, mark):
        """The requests logged since `mark` (dicts), and the CPU seconds used meanwhile."""
        offset, cpu0 = mark
        cpu = cpu_s([self.proc.pid] + children(self.proc.pid)) - cpu0
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            text = ""
        reqs = []
        for line in text.splitlines():
            if self.kind == "nginx":
                parts = line.split()
                if len(parts) == 8:
                    reqs.append({"method": parts[0], "path": parts[1], "status": int(parts[2]),
                                 "body": int(parts[3]), "sent": int(parts[4]),
                                 "client": parts[5], "at": float(parts[6]),
                                 "took": float(parts[7])})
            else:
                m = PACSERVE_LINE.match(line)
                if m:
                    reqs.append({"client": m[1], "method": m[2], "path": m[3],
                                 "status": int(m[4]), "body": int(m[5]), "outcome": m[6]})
        return reqs, cpu


def nginx_conf(d, listen, locations):
    return f"""daemon off;
master_process on;
worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format bench '$request_method $uri $status $body_bytes_sent $bytes_sent '
                     '$remote_addr:$remote_port $msec $request_time';
    access_log {d}/access.log bench;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {listen};
        {locations}
    }}
}}
"""


def start_nginx(procs, lan, host, d, ip, port, locations):
    """Debian's nginx in host's namespace with a private config, pid and log files."""
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(nginx_conf(d, f"{ip}:{port}", locations))
    p = procs.start(exec_in(lan.ns[host], "nginx", "-p", d, "-e", f"{d}/error.log", "-c", conf),
                    os.path.join(d, "stderr"))
    wait_listening(lan.ns[host], ip, port, p, f"nginx on {host.upper()}")
    return Server(f"nginx on {host.upper()}", p, os.path.join(d, "access.log"), "nginx")


def write_pacserve_conf(d, cache, db_file):
    """A pacserve's pacman.conf: its cache, and a DBPath holding the synced database."""
    os.makedirs(os.path.join(d, "db/sync"), exist_ok=True)
    os.makedirs(cache, exist_ok=True)
    shutil.copy(db_file, os.path.join(d, "db/sync", f"{REPO}.db"))
    conf = os.path.join(d, "pacman.conf")
    with open(conf, "w") as f:
        f.write(f"[options]\nArchitecture = {ARCH}\nCacheDir = {cache}/\nDBPath = {d}/db/\n\n"
                f"[{REPO}]\nServer = {AT_M.format(m=host_ip('m'))}\n")
    return conf


def start_pacserve(procs, lan, host, conf, log_path, peer):
    p = procs.start(exec_in(lan.ns[host], BIN, "--port", str(PORT), "--pacman-conf", conf,
                            "--pacserver", f"{host_ip(peer)}:{PORT}"), log_path)
    deadline = time.monotonic() + READY_LIMIT
    while time.monotonic() < deadline and p.poll() is None:
        with open(log_path, errors="replace") as f:
            if "listening on" in f.read():
                return Server(f"pacserve on {host.upper()}", p, log_path, "pacserve")
        time.sleep(0.02)
    with open(log_path, errors="replace") as f:
        raise RuntimeError(f"pacserve on {host.upper()} did not start (exit {p.poll()}):\n"
                           f"{f.read()[-2000:]}")


def wait_listening(ns, ip, port, p, what):
    deadline = time.monotonic() + READY_LIMIT
    while time.monotonic() < deadline and p.poll() is None:
        r = run(exec_in(ns, "bash", "-c", f"exec 3<>/dev/tcp/{ip}/{port}"), check=False)
        if r.returncode == 0:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} is not listening on {ip}:{port} (exit {p.poll()})")


def kind_of(path):
    name = path.rsplit("/", 1)[-1]
    if name.endswith(".sig"):
        return "sig"
    if ".pkg.tar." in name:
        return "pkg"
    if re.search(r"\.(db|files)(\.tar(\.\w+)?)?$", name):
        return "db"
    return "other"


def summarize(server, reqs):
    """Requests counted by what was asked and answered: the words of the traffic table."""
    c = {}
    for r in reqs:
        if server.kind == "pacserve":
            route = "/" + r["path"].split("/")[1] + "/"
            key = f"{r['method']} {route} {kind_of(r['path'])} {r['status']} {r['outcome']}"
        else:
            key = f"{r['method']} {kind_of(r['path'])} {r['status']}"
        c[key] = c.get(key, 0) + 1
    return c


def connections(server, reqs):
    """TCP connections the requests came on (a client address and port is one), by the route
    asked (pacserve) or the method (nginx)."""
    by = {}
    for r in reqs:
        key = "/" + r["path"].split("/")[1] + "/" if server.kind == "pacserve" else r["method"]
        by.setdefault(key, set()).add(r["client"])
    return {k: len(v) for k, v in by.items()}


def bytes_by_kind(reqs):
    """Bytes sent (heads included), databases apart from packages and their signatures."""
    out = {"db": 0, "pkg": 0, "other": 0}
    for r in reqs:
        k = kind_of(r["path"])
        out["db" if k == "db" else "pkg" if k in ("pkg", "sig") else "other"] += r["sent"]
    return out


# ---------------------------------------------------------------------------------------------
# pacman


def client_dir(tmp, tag, which, server, sync_server):
    """A fresh pacman: its directories, and a config for -Sw and one for -Sy."""
    d = os.path.join(tmp, "clients", tag)
    for sub in ("root", "db/sync", "db/local", "cache", "gnupg", "hooks"):
        os.makedirs(os.path.join(d, sub))
    confs = []
    for name, srv in (("pacman.conf", server), ("sync.conf", sync_server)):
        path = os.path.join(d, name)
        with open(path, "w") as f:
            f.write(f"[options]\nRootDir = {d}/root\nDBPath = {d}/db/\nCacheDir = {d}/cache/\n"
                    f"LogFile = {d}/pacman.log\nGPGDir = {d}/gnupg/\nHookDir = {d}/hooks/\n"
                    f"Architecture = {ARCH}\nSigLevel = Never\n"
                    f"ParallelDownloads = {PARALLEL}\n"
                    # As on Arch: pacman 7 downloads as the unprivileged `alpm`, sandboxed.
                    + ("DownloadUser = alpm\n" if which == "7" else "")
                    + f"\n[{REPO}]\nServer = {srv}\n")
        confs.append(path)
    if which == "7":
        # `alpm` must get through every directory on the way to DBPath and CacheDir.
        for root, _, _ in os.walk(d):
            os.chmod(root, 0o755)
    return d, confs[0], confs[1]


def run_pacman(ns, which, conf, args):
    """(wall seconds, CPU seconds) of one pacman run inside ns, bounded in time."""
    binary = "/usr/bin/pacman" if which == "6" else PACMAN7
    cmd = exec_in(ns, binary, "--config", conf, "--noconfirm", "--noprogressbar", *args)
    with tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=err, env=dict(os.environ, LC_ALL="C"))
        try:
            while True:
                pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() - t0 > PACMAN_LIMIT:
                    raise TimeoutError(f"pacman {args[0]} ran over {PACMAN_LIMIT:.0f} s")
                time.sleep(0.002)
        except BaseException:  # the limit, or a signal: pacman goes too, by its pid
            p.kill()
            p.wait(timeout=10)
            raise
        dt = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    if p.returncode != 0:
        raise RuntimeError(f"pacman {PACMAN_NAMES[which]} {args[0]}: exit {p.returncode}:\n"
                           f"{text[-3000:]}")
    return dt, ru.ru_utime + ru.ru_stime


# ---------------------------------------------------------------------------------------------
# the benchmark


class Bench:
    def __init__(self, tmp, lan, procs, files, names):
        self.tmp = tmp
        self.lan = lan
        self.procs = procs
        self.files = files
        self.names = names
        self.starts = 0
        self.clients = 0
        self.a = None

    def setup(self, repo_dir):
        db = os.path.join(repo_dir, f"{REPO}.db")
        self.b_cache = os.path.join(self.tmp, "b/cache")
        self.b_away = os.path.join(self.tmp, "b/away")
        os.makedirs(self.b_away)
        b_conf = write_pacserve_conf(os.path.join(self.tmp, "b"), self.b_cache, db)
        for f in self.files:
            try:
                os.link(os.path.join(repo_dir, f), os.path.join(self.b_cache, f))
            except OSError:
                shutil.copy(os.path.join(repo_dir, f), self.b_cache)
        self.a_conf = write_pacserve_conf(os.path.join(self.tmp, "a"),
                                          os.path.join(self.tmp, "a/cache"), db)
        www = os.path.join(self.tmp, "m/www")
        b, m = host_ip("b"), host_ip("m")
        self.m_nginx = start_nginx(self.procs, self.lan, "m", os.path.join(self.tmp, "m/nginx"),
                                   m, NGINX_PORT, f"location / {{ root {www}; }}")
        self.b_nginx = start_nginx(self.procs, self.lan, "b", os.path.join(self.tmp, "b/nginx"),
                                   b, NGINX_PORT,
                                   f"location /{REPO}/{ARCH}/ {{ alias {self.b_cache}/; }}")
        self.a_nginx = start_nginx(
            self.procs, self.lan, "a", os.path.join(self.tmp, "a/nginx"), "127.0.0.1",
            REDIRECT_PORT,
            f"location ~ ^/to-b/(.*)$ {{ return 307 http://{b}:{PORT}/lan/$1; }}\n"
            f"        location ~ ^/to-m/([^/]+)/([^/]+)/(.*)$ "
            f"{{ return 307 http://{m}:{NGINX_PORT}/$1/os/$2/$3; }}")
        self.b = start_pacserve(self.procs, self.lan, "b", b_conf,
                                os.path.join(self.tmp, "b/pacserve.log"), "a")
        os.makedirs(os.path.join(self.tmp, "a/logs"))
        self.restart_a()

    def restart_a(self):
        """A fresh pacserve on A: nothing remembered from an earlier run."""
        if self.a:
            self.procs.stop(self.a.proc)
        self.starts += 1
        self.a = start_pacserve(self.procs, self.lan, "a", self.a_conf,
                                os.path.join(self.tmp, f"a/logs/{self.starts}.log"), "b")

    def b_holds(self, holds):
        """Fill B's cache (a hit) or empty it (a miss)."""
        src, dst = (self.b_away, self.b_cache) if holds else (self.b_cache, self.b_away)
        moved = os.listdir(src)
        for f in moved:
            os.rename(os.path.join(src, f), os.path.join(dst, f))
        if moved:
            time.sleep(OPEN_CACHE_WAIT)

    def serves(self, case, route):
        """The server that must answer every package GET of a run of `route`."""
        return {"pacserve": self.b if case == "hit" else self.m_nginx,
                "B nginx": self.b_nginx, "B pacserve": self.b, "307 to B": self.b,
                "M nginx": self.m_nginx, "307 to M": self.m_nginx}[route]

    def one(self, which, case, route):
        """One fresh pacman: -Sy, then -Sw of every package, then the servers' logs read."""
        server, sync_server = (u.format(b=host_ip("b"), m=host_ip("m")) for u in ROUTES[route])
        if route == "pacserve":
            self.restart_a()
        self.clients += 1
        d, conf, sync_conf = client_dir(self.tmp, str(self.clients), which, server,
                                        sync_server)
        parties = [self.a, self.a_nginx, self.b, self.b_nginx, self.m_nginx]
        marks = [s.mark() for s in parties]
        busy0 = busy_s()
        try:
            sy, sy_cpu = run_pacman(self.lan.ns["a"], which, sync_conf, ["-Sy"])
            sw, cpu = run_pacman(self.lan.ns["a"], which, conf, ["-Sw", *self.names])
            busy = busy_s() - busy0
            for f, size in self.files.items():
                path = os.path.join(d, "cache", f)
                got = os.path.getsize(path) if os.path.exists(path) else None
                if got != size:
                    raise RuntimeError(f"{case}, {route}: {f} in pacman's cache is {got} "
                                       f"bytes, the database says {size}")
            time.sleep(0.05)  # the last access log lines
            seen = {}
            for s, mk in zip(parties, marks):
                reqs, scpu = s.since(mk)
                if route != "pacserve" and s is self.a:
                    reqs, scpu = [], 0.0  # A's pacserve idles through the other routes
                got = sum(1 for r in reqs if r["method"] == "GET" and r["status"] == 200
                          and kind_of(r["path"]) == "pkg")
                want = len(self.files) if s is self.serves(case, route) else 0
                if got != want:
                    raise RuntimeError(f"{case}, {route}: {s.name} answered {got} package "
                                       f"GETs, not {want}: the run did not go its way")
                seen[s.name] = {"requests": summarize(s, reqs), "count": len(reqs),
                                "connections": connections(s, reqs), "cpu_s": scpu}
                if s is self.m_nginx:
                    seen[s.name]["bytes"] = bytes_by_kind(reqs)
            ours = sy_cpu + cpu + sum(v["cpu_s"] for v in seen.values())
            return {"sw_s": sw, "sy_s": sy, "pacman_cpu_s": cpu, "seen": seen,
                    "busy_cpu_s": busy, "other_cpu_s": max(0.0, busy - ours)}
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def case(self, links, which, case, runs, steps):
        """Runs of each route of `case` in turn, the order reversed every other round, after
        a warm-up round: {route: [result of each run]}."""
        routes = CASES[case] if steps else CASES[case][:2]
        out = {r: [] for r in routes}
        for k in range(runs + 1):  # k = 0: the warm-up round, not counted
            for route in routes if k % 2 else routes[::-1]:
                r = self.one(which, case, route)
                log(f"{links}, pacman {PACMAN_NAMES[which]}, {case}, "
                    f"{f'run {k}' if k else 'warm-up'}: {route}: -Sw {r['sw_s']:.3f} s")
                if k:
                    out[route].append(r)
        return out


# One client inside A timing requests one after another: on one keep-alive connection
# (`keep`), or on a new connection each (`fresh`), as a pacserve's lookup opens them.
TIMER = r"""
import http.client, json, sys, time
host, port, method, prefix, how = sys.argv[1:6]
files = sys.argv[6].split(",")
times, statuses, c = [], set(), None
for f in files:
    t = time.perf_counter()
    if c is None:
        c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request(method, prefix + f)
    r = c.getresponse()
    r.read()
    if how == "fresh":
        c.close()
        c = None
    times.append((time.perf_counter() - t) * 1000)
    statuses.add(r.status)
print(json.dumps({"ms": times, "status": sorted(statuses)}))
"""


def timed_requests(lan, host, port, method, prefix, how, files, want):
    r = run(exec_in(lan.ns["a"], sys.executable, "-c", TIMER, host, str(port), method, prefix,
                    how, ",".join(files)), timeout=300)
    out = json.loads(r.stdout)
    if out["status"] != [want]:
        raise RuntimeError(f"{method} {host}:{port}{prefix}...: answered {out['status']}, "
                           f"not {want}")
    return out


def lookup_costs(bench, lan):
    """A lookup's parts, per request, for a hit and a miss (see `render_costs`)."""
    files = sorted(bench.files)
    out = {}
    for case in ("hit", "miss"):
        bench.b_holds(case == "hit")
        bench.restart_a()
        req = f"/request/{REPO}/{ARCH}/"
        a0 = run_ns(bench.a.proc.pid)
        rows = {"cold": timed_requests(lan, "127.0.0.1", PORT, "GET", req, "keep", files, 307)}
        rows["cold"]["a_cpu_s"] = (run_ns(bench.a.proc.pid) - a0) / 1e9
        # The same again: the peer's answers remembered (a miss still probes M).
        rows["warm"] = timed_requests(lan, "127.0.0.1", PORT, "GET", req, "keep", files, 307)
        rows["peer"] = timed_requests(lan, host_ip("b"), PORT, "HEAD", f"/peer/{REPO}/{ARCH}/",
                                      "fresh", files, 200 if case == "hit" else 404)
        if case == "miss":
            rows["probe"] = timed_requests(lan, host_ip("m"), NGINX_PORT, "HEAD",
                                           f"/{REPO}/os/{ARCH}/", "fresh", files, 200)
        out[case] = rows
    bench.b_holds(True)
    return out


# ---------------------------------------------------------------------------------------------
# report


def median_range(xs):
    return statistics.median(xs), min(xs), max(xs)


def pct(xs, p):
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def span(ns):
    """`n`, or `lo–hi` when the runs differ."""
    lo, hi = min(ns), max(ns)
    return str(lo) if lo == hi else f"{lo}–{hi}"


def fmt_bytes(n):
    if n >= 10 * 1000 * 1000:
        return f"{n / 1e6:.0f} MB"
    if n >= 1000 * 1000:
        return f"{n / 1e6:.1f} MB"
    if n >= 1000:
        return f"{n / 1e3:.1f} kB"
    return f"{n} B"


def fmt_size(n):
    return f"{n // MiB} MiB" if n >= MiB else f"{n // KiB} KiB"


def requests_text(runs, party):
    """`total: n what, ...; connections: n route, ...` of one server over the runs."""
    counts = [r["seen"][party]["count"] for r in runs]
    if max(counts) == 0:
        return "0"
    keys, conns = {}, {}
    for r in runs:
        for k, n in r["seen"][party]["requests"].items():
            keys.setdefault(k, []).append(n)
        for k, n in r["seen"][party]["connections"].items():
            conns.setdefault(k, []).append(n)
    fill = lambda ns: ns + [0] * (len(runs) - len(ns))  # noqa: E731
    what = ", ".join(f"{span(fill(ns))} {k}"
                     for k, ns in sorted(keys.items(), key=lambda kv: -max(kv[1])))
    on = ", ".join(f"{span(fill(ns))} {k}" for k, ns in sorted(conns.items()))
    return f"{span(counts)}: {what}; connections: {on}"


def cases_of(results):
    for key, res in results["cases"].items():
        links, which, case = key.split("|")
        yield links, which, case, res


def med_sw(rs):
    return statistics.median(r["sw_s"] for r in rs)


def render(results):
    m, runs = results["machine"], results["runs"]
    lines = [
        f"pacman -Sw --noconfirm of {len(results['files'])} packages "
        f"({', '.join(f'{c} × {fmt_size(s)}' for _, c, s in SETS)}; "
        f"{fmt_bytes(sum(results['files'].values()))} in all), ParallelDownloads = "
        f"{PARALLEL}, a fresh pacman with an empty CacheDir each run, on a LAN of 3 network "
        "namespaces on one bridge; peers by `--pacserver` (static). Median and (min–max) of "
        f"{runs} runs of each route, alternating, after a warm-up round. {m['date']}, "
        f"{m['cpu']} × {m['nproc']} (shared with other work), Linux {m['kernel']}, "
        f"nginx {m['nginx']}, pacserve release build; the servers' files and pacman's "
        f"CacheDir in {m.get('scratch') or 'the system temporary directory'}.",
        "",
        "| links | pacman | case | route | pacman -Sw | (min–max) | ÷ limit (per-round range) "
        f"| target ≤ {TARGET:.2f} | -Sy |",
        "|---|---|---|---|---:|---:|---:|---|---:|",
    ]
    for links, which, case, res in cases_of(results):
        lim = [r["sw_s"] for r in res[LIMIT[case]]]
        for route, rs in res.items():
            xs = [r["sw_s"] for r in rs]
            med, lo, hi = median_range(xs)
            sy = statistics.median(r["sy_s"] for r in rs)
            ratio = med / statistics.median(lim)
            rounds = [a / b for a, b in zip(xs, lim)]
            rt, ok = f"{ratio:.3f} ({min(rounds):.2f}–{max(rounds):.2f})", ""
            if route == "pacserve":
                ok = "OK" if ratio <= TARGET else "**MISSED**"
            elif route == LIMIT[case]:
                rt = ""
            lines.append(f"| {links} | {PACMAN_NAMES[which]} | {case} | {LABELS[(case, route)]} "
                         f"| {med:.3f} s | {lo:.3f}–{hi:.3f} | {rt} | {ok} | {sy:.3f} s |")
    lines += render_steps(results)
    lines += [
        "",
        "What crossed to the mirror, and the requests and connections each server saw in a "
        "run (the same in every run unless a range is shown; `/request/`: pacman asking A's "
        "pacserve, `/peer/`: A's pacserve asking B, `/lan/`: pacman sent to B). CPU seconds "
        "of each (median):",
        "",
        "| links | pacman | route | to M: databases | to M: packages | "
        + " | ".join(PARTIES) + " | CPU s: pacman / " + " / ".join(PARTIES) + " |",
        "|---|---|---|---:|---:|" + "---|" * len(PARTIES) + "---|",
    ]
    for links, which, case, res in cases_of(results):
        for route, rs in res.items():
            mb = [r["seen"]["nginx on M"]["bytes"] for r in rs]
            db = statistics.median(b["db"] for b in mb)
            pk = statistics.median(b["pkg"] + b["other"] for b in mb)
            cpu = " / ".join(f"{statistics.median(x):.2f}" for x in (
                [r["pacman_cpu_s"] for r in rs],
                *([r["seen"][p]["cpu_s"] for r in rs] for p in PARTIES)))
            lines.append(f"| {links} | {PACMAN_NAMES[which]} | {LABELS[(case, route)]} "
                         f"| {fmt_bytes(db)} | {fmt_bytes(pk)} | "
                         + " | ".join(requests_text(rs, p) for p in PARTIES) + f" | {cpu} |")
    lines += [""] + render_costs(results)
    every = [r for _, _, _, res in cases_of(results) for rs in res.values() for r in rs]
    busy = [r["busy_cpu_s"] / ((r["sy_s"] + r["sw_s"]) * m["nproc"]) for r in every]
    others = [r["other_cpu_s"] for r in every]
    lines += ["", f"The machine during a run (-Sy and -Sw): its {m['nproc']} CPUs "
              f"{statistics.median(busy):.0%} busy (median; {min(busy):.0%}–{max(busy):.0%}); "
              "CPU seconds beyond what pacman and the servers were charged (other work, and "
              f"kernel time charged to no process): median {statistics.median(others):.2f} s "
              f"({min(others):.2f}–{max(others):.2f}). Load average at the start "
              f"{' '.join(m['loadavg_start'])}, at the end {' '.join(m['loadavg_end'])}."]
    if results.get("note"):
        lines += ["", results["note"]]
    return "\n".join(lines) + "\n"


def render_steps(results):
    """pacserve's time over the limit, split along the steps' medians."""
    out = []
    for links, which, case, res in cases_of(results):
        if len(res) < len(CASES[case]):
            continue
        med = {route: med_sw(rs) for route, rs in res.items()}
        total = (med["pacserve"] - med[LIMIT[case]]) * 1000
        if case == "hit":
            parts = [("B's pacserve serving instead of nginx", med["B pacserve"] - med["B nginx"]),
                     ("the redirect", med["307 to B"] - med["B pacserve"]),
                     ("the lookup", med["pacserve"] - med["307 to B"])]
        else:
            parts = [("the redirect", med["307 to M"] - med["M nginx"]),
                     ("the lookup", med["pacserve"] - med["307 to M"])]
        words = ", ".join(f"{w} {v * 1000:+.0f} ms" for w, v in parts)
        out.append(f"- {links}, pacman {PACMAN_NAMES[which]}, {case}: {total:+.0f} ms over the "
                   f"limit = {words}.")
    if out:
        out = ["", "pacserve's time over the limit, split by the steps (differences of "
               "medians, so as noisy as the runs):", ""] + out
    return out


COST_ROWS = [
    ("cold", "pacman's GET /request/ → 307, asked first: the whole lookup"),
    ("warm", "the same again, the peer's answers remembered (a miss still probes M)"),
    ("peer", "HEAD on B's /peer/ on a new connection: one peer query"),
    ("probe", "HEAD on M's nginx on a new connection: one mirror probe"),
]


def files_of(costs, case):
    return costs[case]["cold"]["ms"]


def render_costs(results):
    lines = [
        "A lookup's parts: one client in A asking for each of the 200 files in turn, A's "
        "pacserve started afresh (ms per request; sum over the 200; A's CPU for the first "
        "asks):",
        "",
        "| links | request | hit p50 | hit p90 | hit sum | miss p50 | miss p90 | miss sum |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for links, costs in results["costs"].items():
        for key, words in COST_ROWS:
            cells = []
            for case in ("hit", "miss"):
                row = costs[case].get(key)
                if row:
                    ms = row["ms"]
                    cells += [f"{pct(ms, 50):.3f}", f"{pct(ms, 90):.3f}", f"{sum(ms):.0f}"]
                else:
                    cells += ["", "", ""]
            lines.append(f"| {links} | {words} | " + " | ".join(cells) + " |")
        per = [costs[case]["cold"]["a_cpu_s"] * 1000 / len(costs[case]["cold"]["ms"])
               for case in ("hit", "miss")]
        lines.append(f"| {links} | A's pacserve CPU per first ask (ms; sum) | {per[0]:.3f} | "
                     f"| {per[0] * len(files_of(costs, 'hit')):.0f} | {per[1]:.3f} | "
                     f"| {per[1] * len(files_of(costs, 'miss')):.0f} |")
    lines += ["", f"With ParallelDownloads = {PARALLEL}, {PARALLEL} downloads wait for lookups "
              f"side by side: the lookups' latency delays pacman by (sum of first asks) / "
              f"{PARALLEL} at most (when every download waits for each of its lookups and "
              "pacman has nothing else to do meanwhile):", ""]
    for links, which, case, res in cases_of(results):
        lost = (med_sw(res["pacserve"]) - med_sw(res[LIMIT[case]])) * 1000
        least = sum(results["costs"][links][case]["cold"]["ms"]) / PARALLEL
        lines.append(f"- {links}, pacman {PACMAN_NAMES[which]}, {case}: {lost:+.0f} ms over "
                     f"the limit; the lookups' latency, {least:.0f} ms at most.")
    return lines


def plot(path, results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"pacserve": "tab:blue", "B nginx": "tab:gray", "M nginx": "tab:gray",
              "B pacserve": "tab:orange", "307 to B": "tab:green", "307 to M": "tab:green"}
    legend = {"pacserve": "via pacserve", "B nginx": "straight at nginx: the limit",
              "M nginx": "straight at nginx: the limit",
              "B pacserve": "step: straight at B's pacserve /lan/",
              "307 to B": "step: a 307 from nginx, no lookup",
              "307 to M": "step: a 307 from nginx, no lookup"}
    groups = {}
    for links, which, case, res in cases_of(results):
        groups.setdefault(links, []).append((which, case, res))
    fig, axes = plt.subplots(1, len(groups), figsize=(7 * len(groups), 5), squeeze=False)
    for ax, (links, items) in zip(axes[0], groups.items()):
        labels, shown = [], set()
        for x, (which, case, res) in enumerate(items):
            routes = [r for r in CASES[case] if r in res]
            width = 0.8 / len(routes)
            meds, top = {}, 0.0
            for j, route in enumerate(routes):
                off = (j - (len(routes) - 1) / 2) * width
                xs = [r["sw_s"] for r in res[route]]
                med, lo, hi = median_range(xs)
                meds[route], top = med, max(top, hi)
                name = legend[route]
                ax.bar(x + off, med, width * 0.92, color=colors[route],
                       label=None if name in shown else name)
                shown.add(name)
                ax.errorbar(x + off, med, yerr=[[med - lo], [hi - med]], fmt="none",
                            ecolor="black", capsize=3)
                ax.plot([x + off] * len(xs), xs, ".", color="black", markersize=3)
            ax.text(x, top * 1.02,
                    f"×{meds['pacserve'] / meds[LIMIT[case]]:.2f}", ha="center", fontsize=9)
            labels.append(f"{case}\npacman {PACMAN_NAMES[which]}")
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels)
        ax.set_ylabel("pacman -Sw wall time, s (median, min–max, each run)")
        ax.set_title(f"200 packages, {links} links (target ×{TARGET:.2f})")
        ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.3)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(results, out):
    """The tables (printed, and written to OUT/results-pacman.md) and the plot."""
    text = render(results)
    print(text, flush=True)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results-pacman.md"), "w") as f:
        f.write(text)
    plot(os.path.join(out, "bench-pacman.png"), results)
    log(f"table: {os.path.join(out, 'results-pacman.md')}; "
        f"plot: {os.path.join(out, 'bench-pacman.png')}")


def machine():
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    nginx_v = run(["nginx", "-v"], check=False).stderr.strip()
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return {"date": datetime.date.today().isoformat(), "cpu": model, "nproc": os.cpu_count(),
            "kernel": platform.release(), "nginx": nginx_v.rsplit("/", 1)[-1],
            "loadavg_start": load}


def link_rate(lan, file):
    """MB/s of one curl of `file` from M's nginx to A over the links as they are."""
    url = f"{AT_M.format(m=host_ip('m'))}/{file}".replace("$repo", REPO).replace("$arch", ARCH)
    r = run(exec_in(lan.ns["a"], "curl", "-s", "-o", "/dev/null", "-w", "%{speed_download}",
                    url), timeout=120)
    return float(r.stdout) / 1e6


def scratch_dir(given):
    """A tmpfs when there is one with room: pacman writes 364 MB each run, and a disk's
    writeback would add its noise to both sides."""
    if given:
        return given
    try:
        st = os.statvfs("/dev/shm")
        with open("/proc/mounts") as f:
            tmpfs = any(line.split()[1:3] == ["/dev/shm", "tmpfs"] for line in f)
        if tmpfs and st.f_bavail * st.f_frsize >= 4 << 30:
            return "/dev/shm"
    except OSError:
        pass
    return None


def main():
    global BIN, PACMAN7
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", help="the release pacserve binary (.ci/bench_pacman passes it)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--pacman7", default="", help="pacman 7.1's binary")
    ap.add_argument("--runs", type=int, default=5, help="runs of each route (default 5)")
    ap.add_argument("--pacmans", default="6,7", help="6, 7 or 6,7 (the default)")
    ap.add_argument("--no-shaped", action="store_true", help="unshaped links only")
    ap.add_argument("--no-steps", action="store_true",
                    help="pacserve and the limits only, not the steps between them")
    ap.add_argument("--tmp", help="where the temporary directory goes (default: /dev/shm if "
                    "it is a tmpfs with 4 GiB free, else the system's)")
    ap.add_argument("--render", metavar="JSON",
                    help="only make the tables and the plot again from a results-pacman.json")
    a = ap.parse_args()
    if a.render:
        with open(a.render) as f:
            report(json.load(f), a.out)
        return 0
    if not a.bin:
        ap.error("--bin is needed (run .ci/bench_pacman, which builds pacserve)")
    BIN, PACMAN7 = a.bin, a.pacman7
    pacmans = [p for p in a.pacmans.split(",") if p]
    if any(p not in PACMAN_NAMES for p in pacmans) or a.runs < 1:
        ap.error("--pacmans takes 6, 7 or 6,7; --runs at least 1")
    notes = []
    if "7" in pacmans and not os.access(PACMAN7, os.X_OK):
        notes.append(f"pacman 7.1 is not built here ({PACMAN7 or 'no --pacman7'}; "
                     "`bash .ci/setup` builds it): pacman 6.0 only.")
        pacmans.remove("7")

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)  # the finally below stops and removes everything

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    started = time.monotonic()
    procs = Procs()
    lan = Lan()
    tmp = tempfile.mkdtemp(prefix="pacserve-bench-pacman-", dir=scratch_dir(a.tmp))
    os.chmod(tmp, 0o755)  # nginx workers (nobody) and pacman 7's download user read it
    try:
        m = machine()
        m["scratch"] = os.path.dirname(tmp)
        log(f"machine: {m}; working in {tmp}")
        lan.build()
        log("making 200 packages and their repository (bsdtar, repo-add)")
        repo_dir, files, names = make_repo(tmp)
        bench = Bench(tmp, lan, procs, files, names)
        bench.setup(repo_dir)
        big = max(files, key=files.get)
        results = {"machine": m, "files": files, "runs": a.runs, "cases": {}, "costs": {},
                   "link_MBps": {}}
        for links in ["unshaped"] + ([] if a.no_shaped else ["1 Gbit/s"]):
            if links != "unshaped":
                why = lan.shape()
                if why:
                    notes.append(f"No run with 1 Gbit/s links: {why}.")
                    log(notes[-1])
                    break
            results["link_MBps"][links] = link_rate(lan, big)
            log(f"{links}: one curl of {big} from M to A: "
                f"{results['link_MBps'][links]:.0f} MB/s")
            for case in CASES:
                bench.b_holds(case == "hit")
                for which in pacmans:
                    results["cases"][f"{links}|{which}|{case}"] = bench.case(
                        links, which, case, a.runs, not a.no_steps)
            log(f"{links}: timing lookups one by one")
            results["costs"][links] = lookup_costs(bench, lan)
        if len(results["link_MBps"]) > 1:
            notes.append(f"1 Gbit/s: `tc qdisc add dev VETH root tbf {' '.join(SHAPE)}` on both "
                         "ends of every veth; one curl of a 50 MiB package from M to A: "
                         + ", ".join(f"{v:,.0f} MB/s {k}" for k, v in
                                     results["link_MBps"].items()) + ".")
        with open("/proc/loadavg") as f:
            m["loadavg_end"] = f.read().split()[:3]
        results["note"] = " ".join(notes)
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "results-pacman.json"), "w") as f:
            json.dump(results, f, indent=1)
        report(results, a.out)
        log(f"took {time.monotonic() - started:.0f} s")
        return 0
    finally:
        procs.stop_all()
        lan.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
