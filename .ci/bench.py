#!/usr/bin/env python3
"""pacserve's benchmark harness (run it through `.ci/bench`, which installs and builds first).

Everything runs on 127.0.0.1, in one temporary directory, with every process started here
killed by pid at the end and every loop bounded in count and time. Measured side by side in
one run, alternating between servers:

  a. cache-hit throughput of a 256 MiB package, pacserve vs Debian's nginx (sendfile on),
     1, 8 and 64 concurrent clients: median MB/s of >= 3 alternating runs;
  b. lookup latency through /request/ for a package held by one live peer, with 1, 10 and
     50 static peers of which a third are dead (closed port) and a third hung (accept,
     never answer): cold (first request after start) and warm (p50/p99 of >= 500);
  c. CPU seconds per GB served (utime+stime from /proc), idle RSS, peak RSS under 100
     concurrent downloads;
  d. HEAD requests/second on cached packages with 100 keep-alive clients (wrk);
  e. what verified copies cost a lookup: cold and warm, with a 15,000-package sync database
     on every host against none (.ci/bench_verify.py);
  f. cache-hit throughput quiet and with every CPU contended by a spinner, with context
     switches per GB (`--only-contention`, .ci/bench_contention.py).

Sub-commands used internally: `fetch` (a throughput client process) and `hung` (the
listener that accepts and never answers). Standard library only, plus matplotlib for the
plot.
"""

import argparse
import datetime
import errno
import fcntl
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

import bench_contention
import bench_verify

MB = 1_000_000
MiB = 1 << 20

BIG_SIZE = 256 * MiB
BIG_NAME = "big-1.0-1-x86_64.pkg.tar.zst"
SMALL_COUNT = 16
SMALL_SIZE = 64 * 1024
REPO = "bench"
ARCH = "x86_64"
ROUTE = f"/request/{REPO}/{ARCH}"

THROUGHPUT_CLIENTS = [1, 8, 64]
THROUGHPUT_RUNS = 5
# Each run moves at least this much, so a single 256 MiB download (~0.1 s on loopback)
# is not the whole measurement: clients repeat downloads on their keep-alive connection.
THROUGHPUT_MIN_BYTES = 4 * 1024 * MiB
RUN_TIME_LIMIT = 120.0

PEER_COUNTS = [1, 10, 50]
PEER_TIMEOUT = 1
WARM_REQUESTS = 1000  # per cold sample: 3000 warm requests per configuration
COLD_SAMPLES = 3

RSS_DOWNLOADS = 100
RSS_SECONDS = 3.0

SMALL_SECONDS = 5
SMALL_CONNECTIONS = 100
SMALL_THREADS = 2
SIG_SIZE = 566

HARNESS_LIFETIME = 900  # the hung listener and fetch clients exit by themselves after this


# ---------------------------------------------------------------------------------------------
# small helpers


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, what, limit=10.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} is not listening on 127.0.0.1:{port} after {limit}s")


def proc_stat_cpu(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def thread_names(pid):
    """Threads of a process grouped by name with digits dropped: {"blocking-": 22, ...}."""
    out = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = re.sub(r"\d+$", "", f.read().strip())
            out[name] = out.get(name, 0) + 1
    except OSError:
        pass
    return out


def threads_text(counts):
    return ", ".join(f"{n} {name.rstrip('-') or '?'}" for name, n in sorted(counts.items()))


def percentile(values, p):
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class Procs:
    """Every process the harness starts; killed by pid, never by name."""

    def __init__(self):
        self.procs = []

    def start(self, args, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        p = subprocess.Popen(args, **kw)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, grace=5.0):
        if p.poll() is None:
            try:
                p.send_signal(sig)
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
            except ProcessLookupError:
                pass
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(reversed(self.procs)):
            try:
                self.stop(p, grace=3.0)
            except Exception as e:  # keep killing the others
                log(f"could not stop pid {p.pid}: {e}")


# ---------------------------------------------------------------------------------------------
# servers


class Server:
    """A server under test: name, port, the pids whose CPU and memory count."""

    def __init__(self, name, label, port, proc, workers_text):
        self.name = name
        self.label = label
        self.port = port
        self.proc = proc
        self.workers_text = workers_text

    def pids(self):
        return [self.proc.pid] + children(self.proc.pid)

    def cpu(self):
        return sum(proc_stat_cpu(p) for p in self.pids())

    def rss_kib(self):
        return sum(proc_status_kib(p, "VmRSS") for p in self.pids())

    def hwm_kib(self):
        return sum(proc_status_kib(p, "VmHWM") for p in self.pids())

    def threads(self):
        return proc_status_kib(self.proc.pid, "Threads")


def write_pacman_conf(path, cache_dir, mirror_port):
    with open(path, "w") as f:
        f.write(
            "[options]\n"
            f"Architecture = {ARCH}\n"
            f"CacheDir = {cache_dir}/\n"
            "\n"
            f"[{REPO}]\n"
            # A closed port: no lookup in this benchmark should ever get this far.
            f"Server = http://127.0.0.1:{mirror_port}/$repo/$arch\n"
        )


def start_pacserve(procs, binary, conf, port, peers=(), env=None):
    args = [
        binary,
        "--address", "127.0.0.1",
        "--port", str(port),
        "--pacman-conf", conf,
        "--quiet",
        "--peer-timeout", str(PEER_TIMEOUT),
    ]
    for p in peers:
        args += ["--pacserver", p]
    e = dict(os.environ)
    if env:
        e.update(env)
    p = procs.start(args, stderr=subprocess.DEVNULL, env=e)
    wait_listening(port, p, "pacserve")
    return p


def start_nginx(procs, tmp, name, workers, cache_dir):
    port = free_port()
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(
            f"""daemon off;
master_process on;
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location {ROUTE}/ {{ alias {cache_dir}/; }}
        location /floor/ {{ return 307 http://127.0.0.1:9{ROUTE}/x; }}
    }}
}}
"""
        )
    p = procs.start(
        ["nginx", "-p", d, "-e", f"{d}/error.log", "-c", conf],
        stderr=subprocess.DEVNULL,
    )
    wait_listening(port, p, f"nginx ({name})")
    # Wait for the workers to exist, so their CPU and memory are counted from the start.
    want = os.cpu_count() if workers == "auto" else int(workers)
    deadline = time.monotonic() + 5
    while len(children(p.pid)) < want and time.monotonic() < deadline:
        time.sleep(0.02)
    return p, port, len(children(p.pid))


# ---------------------------------------------------------------------------------------------
# a. throughput: `fetch` client processes


def fetch_main(argv):
    """One client process: `conns` keep-alive connections, each downloading `path`
    `repeat` times. Bodies are spliced socket -> pipe -> /dev/null, so the client copies
    nothing to user space and the measurement is the server's (and the kernel's), not
    Python's. Prints `ready`, waits for a line on stdin, runs, prints `done BYTES ERRORS`."""
    ap = argparse.ArgumentParser(prog="bench.py fetch")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--conns", type=int, required=True)
    ap.add_argument("--repeat", type=int, required=True)
    ap.add_argument("--limit", type=float, default=RUN_TIME_LIMIT)
    ap.add_argument("--mode", choices=["splice", "recv"], default="splice")
    a = ap.parse_args(argv)

    request = f"GET {a.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\n\r\n".encode()
    socks = []
    for _ in range(a.conns):
        s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
    pr, pw = os.pipe()
    try:
        fcntl.fcntl(pw, fcntl.F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass
    pipe_size = fcntl.fcntl(pw, fcntl.F_GETPIPE_SZ)
    devnull = os.open("/dev/null", os.O_WRONLY)
    flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
    sink = bytearray(1 << 20)
    sink_view = memoryview(sink)

    print("ready", flush=True)
    if not sys.stdin.readline():
        return 1

    ep = select.epoll()
    state = {}
    for s in socks:
        s.send(request)
        ep.register(s.fileno(), select.EPOLLIN)
        # [socket, head buffer, body bytes remaining (None: reading the head), done]
        state[s.fileno()] = [s, b"", None, 0]
    total = 0
    errors = 0
    active = len(socks)
    deadline = time.monotonic() + a.limit
    while active and time.monotonic() < deadline:
        for fd, _ in ep.poll(1.0):
            st = state[fd]
            s = st[0]
            try:
                if st[2] is None:
                    chunk = s.recv(65536)
                    if not chunk:
                        raise ConnectionError("closed before a response")
                    st[1] += chunk
                    end = st[1].find(b"\r\n\r\n")
                    if end < 0:
                        if len(st[1]) > 65536:
                            raise ConnectionError("head too large")
                        continue
                    head = st[1][:end].decode("latin-1")
                    if not head.startswith("HTTP/1.1 200"):
                        raise ConnectionError(head.split("\r\n", 1)[0])
                    m = re.search(r"(?im)^content-length:\s*(\d+)", head)
                    length = int(m.group(1))
                    got = len(st[1]) - end - 4
                    st[1] = b""
                    st[2] = length - got
                    total += got
                elif a.mode == "splice":
                    n = os.splice(fd, pw, min(st[2], pipe_size), flags=flags)
                    if n == 0:
                        raise ConnectionError("closed mid-body")
                    left = n
                    while left:
                        left -= os.splice(pr, devnull, left, flags=os.SPLICE_F_MOVE)
                    st[2] -= n
                    total += n
                else:
                    n = s.recv_into(sink_view[: min(st[2], len(sink))])
                    if n == 0:
                        raise ConnectionError("closed mid-body")
                    st[2] -= n
                    total += n
            except BlockingIOError:
                continue
            except OSError as e:
                if getattr(e, "errno", None) == errno.EAGAIN:
                    continue
                errors += 1
                ep.unregister(fd)
                s.close()
                active -= 1
                print(f"fetch error: {e}", file=sys.stderr)
                continue
            if st[2] == 0:
                st[3] += 1
                st[2] = None
                if st[3] < a.repeat:
                    s.send(request)
                else:
                    ep.unregister(fd)
                    s.close()
                    active -= 1
    if active:
        errors += active
    print(f"done {total} {errors}", flush=True)
    return 0


def throughput_run(procs, server, clients, mode):
    """One run: `clients` connections spread over client processes, all started together.
    Returns (MB/s, bytes, cpu seconds used by the server)."""
    repeat = max(1, -(-THROUGHPUT_MIN_BYTES // (clients * BIG_SIZE)))
    nproc = max(1, min(clients, os.cpu_count() or 1))
    split = [clients // nproc + (1 if i < clients % nproc else 0) for i in range(nproc)]
    workers = []
    for conns in split:
        p = procs.start(
            [sys.executable, os.path.abspath(__file__), "fetch",
             "--port", str(server.port), "--path", f"{ROUTE}/{BIG_NAME}",
             "--conns", str(conns), "--repeat", str(repeat), "--mode", mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        workers.append(p)
    for p in workers:
        line = p.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"fetch client did not start: {line!r}")
    cpu0 = server.cpu()
    t0 = time.perf_counter()
    for p in workers:
        p.stdin.write("go\n")
        p.stdin.flush()
    total = 0
    errors = 0
    for p in workers:
        line = p.stdout.readline().split()
        if len(line) != 3 or line[0] != "done":
            raise RuntimeError(f"fetch client failed: {line!r}")
        total += int(line[1])
        errors += int(line[2])
    elapsed = time.perf_counter() - t0
    cpu = server.cpu() - cpu0
    for p in workers:
        procs.stop(p)
    expected = clients * repeat * BIG_SIZE
    if errors or total != expected:
        raise RuntimeError(
            f"{server.label}: {clients} clients moved {total} of {expected} bytes, {errors} errors"
        )
    return total / elapsed / MB, total, cpu


# ---------------------------------------------------------------------------------------------
# b. lookup latency


def hung_main(argv):
    """Listen on the given ports, accept every connection and never answer. Exits when
    stdin closes (the harness died) or after its lifetime."""
    ports = [int(p) for p in argv]
    listeners = []
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(512)
        listeners.append(s)
    print("ready", flush=True)
    held = set()
    deadline = time.monotonic() + HARNESS_LIFETIME
    while time.monotonic() < deadline:
        r, _, _ = select.select(listeners + list(held) + [sys.stdin], [], [], 1.0)
        for s in r:
            if s is sys.stdin:
                if not sys.stdin.readline():
                    return 0
            elif s in listeners:
                c, _ = s.accept()
                held.add(c)
            else:
                # The asker gave up (peer timeout) and closed: let the socket go. Whatever
                # it sent is read and ignored; nothing is ever answered.
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    held.discard(s)
                    s.close()
        if len(held) > 800:  # bounded: drop the oldest-looking ones
            for s in list(held)[:400]:
                held.discard(s)
                s.close()
    return 0


class KeepAlive:
    """A persistent client connection that times request -> response head."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def timed(self, method, path):
        req = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        t0 = time.perf_counter_ns()
        self.s.sendall(req)
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        t1 = time.perf_counter_ns()
        end = self.buf.index(b"\r\n\r\n")
        head = self.buf[:end].decode("latin-1")
        self.buf = self.buf[end + 4:]
        m = re.search(r"(?im)^content-length:\s*(\d+)", head)
        body = int(m.group(1)) if m and method != "HEAD" else 0
        while len(self.buf) < body:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        self.buf = self.buf[body:]
        status = int(head.split(" ", 2)[1])
        location = re.search(r"(?im)^location:\s*(\S+)", head)
        return (t1 - t0) / 1e6, status, location.group(1) if location else None

    def close(self):
        self.s.close()


def lookup_configs():
    """(static peers, live, dead, hung): the issue's thirds, then the extremes that show
    whether dead or hung peers alone change the cold time."""
    out = []
    for n in PEER_COUNTS:
        dead = n // 3
        hung = n // 3
        out.append((n, n - dead - hung, dead, hung, True))
    most = max(PEER_COUNTS)
    out.append((most, 1, most - 1, 0, False))
    out.append((most, 1, 0, most - 1, False))
    return out


def lookup_bench(procs, binary, tmp, holder_port, empty_ports, dead_ports, hung_ports,
                 floor_port):
    """The lookup rows, and the floor: the same client timing nginx's `return 307` (no
    lookup at all), interleaved with the rows, so a tail that the machine or the client
    adds shows in both."""
    results = []
    floor = []
    a_cache = os.path.join(tmp, "lookup-cache")
    os.makedirs(a_cache, exist_ok=True)
    conf = os.path.join(tmp, "lookup.conf")
    write_pacman_conf(conf, a_cache, free_port())
    for n, live, dead, hung, main_curve in lookup_configs():
        peers = [f"127.0.0.1:{holder_port}"]
        peers += [f"127.0.0.1:{p}" for p in empty_ports[: live - 1]]
        peers += [f"127.0.0.1:{p}" for p in dead_ports[:dead]]
        peers += [f"127.0.0.1:{p}" for p in hung_ports[:hung]]
        row = {"peers": n, "live": live, "dead": dead, "hung": hung, "curve": main_curve,
               "cold_sig": [], "cold_nosig": [], "warm": []}
        want_location = f"http://127.0.0.1:{holder_port}{ROUTE}/"
        for kind in ("sig", "nosig"):
            for i in range(COLD_SAMPLES):
                # A fresh pacserve per cold sample: no remembered answer, no backoff yet.
                port = free_port()
                p = start_pacserve(procs, binary, conf, port, peers)
                c = KeepAlive(port)
                name = f"peer{kind}-{i}-1-1-{ARCH}.pkg.tar.zst"
                ms, status, loc = c.timed("GET", f"{ROUTE}/{name}")
                if status != 307 or not (loc or "").startswith(want_location):
                    raise RuntimeError(f"{n} peers: cold lookup answered {status} {loc}")
                row[f"cold_{kind}"].append(ms)
                if kind == "sig":
                    # Warm: the same package again on the same connection, well within
                    # the 10 s an answer is remembered.
                    deadline = time.monotonic() + 5
                    for _ in range(WARM_REQUESTS):
                        if time.monotonic() > deadline:
                            break
                        ms, status, loc = c.timed("GET", f"{ROUTE}/{name}")
                        if status != 307:
                            raise RuntimeError(f"{n} peers: warm lookup answered {status}")
                        row["warm"].append(ms)
                    f = KeepAlive(floor_port)
                    for _ in range(WARM_REQUESTS):
                        ms, status, _ = f.timed("GET", "/floor/x")
                        if status != 307:
                            raise RuntimeError(f"nginx floor answered {status}")
                        floor.append(ms)
                    f.close()
                c.close()
                procs.stop(p)
        log(
            f"lookup {n} peers ({live}/{dead}/{hung}): "
            f"cold sig {statistics.median(row['cold_sig']):.1f} ms, "
            f"cold no-sig {statistics.median(row['cold_nosig']):.1f} ms, "
            f"warm p50 {percentile(row['warm'], 50):.3f} ms p99 {percentile(row['warm'], 99):.3f} ms "
            f"({len(row['warm'])} requests)"
        )
        results.append(row)
    return results, floor


# ---------------------------------------------------------------------------------------------
# c. memory under 100 concurrent downloads


def rss_under_downloads(server):
    """`RSS_DOWNLOADS` connections each GET the big package and read it slowly (a few
    hundred KiB per turn, round robin) for `RSS_SECONDS`; the peak summed RSS sampled."""
    socks = []
    req = f"GET {ROUTE}/{BIG_NAME} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    for _ in range(RSS_DOWNLOADS):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(req)
        s.setblocking(False)
        socks.append(s)
    peak = 0
    got = 0
    deadline = time.monotonic() + RSS_SECONDS
    next_sample = 0.0
    buf = bytearray(256 * 1024)
    while time.monotonic() < deadline:
        for s in socks:
            try:
                got += s.recv_into(buf)
            except BlockingIOError:
                pass
        now = time.monotonic()
        if now >= next_sample:
            peak = max(peak, server.rss_kib())
            next_sample = now + 0.05
    peak = max(peak, server.rss_kib())
    for s in socks:
        s.close()
    if got < RSS_DOWNLOADS * 65536:
        raise RuntimeError(f"{server.label}: downloads did not flow ({got} bytes)")
    return peak


# ---------------------------------------------------------------------------------------------
# d. small requests per second

# wrk 4.1.0 (Debian's) cannot time HEAD: its parser waits for the Content-Length bytes a HEAD
# response never carries, so every connection stalls and it reports 0 requests. HEAD is
# therefore timed by this small C client (compiled here with the cc that cargo links with):
# N keep-alive connections over T epoll threads, one request in flight per connection, the
# response head read to its blank line, latency into a 1 µs histogram. wrk still times GET
# of the small `.sig` files, as a cross-check of the client.
HEADBENCH_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUCKETS 100000 /* 1 us each; anything slower than 100 ms lands in the last */

struct conn { int fd; int path; int dead; size_t have; long long t0, done; char buf[4096]; };
struct worker {
    pthread_t th; int nconns; long long requests, errors, least, most; unsigned *hist;
};

static int port, npaths;
static char **paths;
static long long duration_ns, start_ns;
static pthread_barrier_t barrier;

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int send_req(struct conn *c) {
    char req[1024];
    int n = snprintf(req, sizeof req, "HEAD %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", paths[c->path]);
    c->path = (c->path + 1) % npaths;
    c->have = 0;
    c->t0 = now_ns();
    return write(c->fd, req, n) == n ? 0 : -1;
}

static void *run(void *arg) {
    struct worker *w = arg;
    int ep = epoll_create1(0);
    struct conn *cs = calloc(w->nconns, sizeof *cs);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    for (int i = 0; i < w->nconns; i++) {
        int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, (struct sockaddr *)&a, sizeof a)) { perror("connect"); exit(1); }
        fcntl(fd, F_SETFL, O_NONBLOCK);
        cs[i].fd = fd;
        cs[i].path = i % npaths;
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &cs[i] };
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    pthread_barrier_wait(&barrier);
    for (int i = 0; i < w->nconns; i++) send_req(&cs[i]);
    long long end = start_ns + duration_ns;
    struct epoll_event evs[256];
    for (long long now = now_ns(); now < end; now = now_ns()) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->dead) continue;
            ssize_t r = read(c->fd, c->buf + c->have, sizeof c->buf - 1 - c->have);
            if (r < 0 && errno == EAGAIN) continue;
            if (r <= 0) { w->errors++; c->dead = 1; close(c->fd); continue; }
            c->have += r;
            c->buf[c->have] = 0;
            if (strstr(c->buf, "\r\n\r\n")) {
                long long t = now_ns();
                if (strncmp(c->buf, "HTTP/1.1 200", 12)) w->errors++;
                else {
                    long long us = (t - c->t0) / 1000;
                    w->hist[us < BUCKETS ? us : BUCKETS - 1]++;
                    if (t < end) { w->requests++; c->done++; }
                }
                if (send_req(c)) { w->errors++; c->dead = 1; close(c->fd); }
            } else if (c->have >= sizeof c->buf - 1) {
                w->errors++; c->dead = 1; close(c->fd);
            }
        }
    }
    /* Fairness: the fewest and most requests one connection got done. */
    w->least = -1;
    for (int i = 0; i < w->nconns; i++) {
        if (w->least < 0 || cs[i].done < w->least) w->least = cs[i].done;
        if (cs[i].done > w->most) w->most = cs[i].done;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 6) { fprintf(stderr, "usage: headbench PORT SECONDS CONNS THREADS PATH...\n"); return 2; }
    port = atoi(argv[1]);
    duration_ns = (long long)(atof(argv[2]) * 1e9);
    int conns = atoi(argv[3]), threads = atoi(argv[4]);
    paths = argv + 5;
    npaths = argc - 5;
    struct worker *ws = calloc(threads, sizeof *ws);
    pthread_barrier_init(&barrier, NULL, threads + 1);
    for (int t = 0; t < threads; t++) {
        ws[t].nconns = conns / threads + (t < conns % threads);
        ws[t].hist = calloc(BUCKETS, sizeof(unsigned));
        pthread_create(&ws[t].th, NULL, run, &ws[t]);
    }
    start_ns = now_ns() + 50000000LL; /* set before anyone passes the barrier */
    pthread_barrier_wait(&barrier);
    while (now_ns() < start_ns) ;
    long long req = 0, err = 0, total = 0, least = -1, most = 0;
    unsigned long long *hist = calloc(BUCKETS, sizeof *hist);
    for (int t = 0; t < threads; t++) {
        pthread_join(ws[t].th, NULL);
        req += ws[t].requests;
        err += ws[t].errors;
        if (least < 0 || ws[t].least < least) least = ws[t].least;
        if (ws[t].most > most) most = ws[t].most;
        for (int b = 0; b < BUCKETS; b++) { hist[b] += ws[t].hist[b]; total += ws[t].hist[b]; }
    }
    long long seen = 0, p50 = -1, p99 = -1;
    for (int b = 0; b < BUCKETS; b++) {
        seen += hist[b];
        if (p50 < 0 && seen * 100 >= total * 50) p50 = b;
        if (p99 < 0 && seen * 100 >= total * 99) p99 = b;
    }
    printf("requests %lld errors %lld seconds %.3f p50_us %lld p99_us %lld least %lld most %lld\n",
           req, err, duration_ns / 1e9, p50, p99, least, most);
    return 0;
}
"""


def build_headbench(tmp):
    src = os.path.join(tmp, "headbench.c")
    exe = os.path.join(tmp, "headbench")
    with open(src, "w") as f:
        f.write(HEADBENCH_C)
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise RuntimeError("no C compiler (cc) for the HEAD client; install build-essential")
    subprocess.run([cc, "-O2", "-pthread", "-o", exe, src], check=True)
    return exe


def head_rps(exe, server):
    """HEAD on the small cached packages: (requests/s, p50 ms, p99 ms, fewest and most
    requests one connection completed)."""
    paths = [f"{ROUTE}/small{i}-1.0-1-{ARCH}.pkg.tar.zst" for i in range(SMALL_COUNT)]
    out = subprocess.run(
        [exe, str(server.port), str(SMALL_SECONDS), str(SMALL_CONNECTIONS), str(SMALL_THREADS)]
        + paths,
        capture_output=True, text=True, timeout=SMALL_SECONDS + 30,
    )
    f = out.stdout.split()
    if out.returncode != 0 or len(f) != 14:
        raise RuntimeError(f"HEAD client against {server.label} failed: {out.stdout} {out.stderr}")
    requests, errors, seconds = int(f[1]), int(f[3]), float(f[5])
    if errors:
        raise RuntimeError(f"HEAD client against {server.label}: {errors} errors")
    return requests / seconds, int(f[7]) / 1000, int(f[9]) / 1000, int(f[11]), int(f[13])


def wrk_get_sig(tmp, server):
    """wrk GET on the small `.sig` files: (requests/s, p50 ms, p99 ms)."""
    script = os.path.join(tmp, "sig.lua")
    if not os.path.exists(script):
        names = ", ".join(
            f'"{ROUTE}/small{i}-1.0-1-{ARCH}.pkg.tar.zst.sig"' for i in range(SMALL_COUNT)
        )
        with open(script, "w") as f:
            f.write(
                f"local paths = {{{names}}}\n"
                "local i = 0\n"
                "request = function()\n"
                "  i = i % #paths + 1\n"
                '  return wrk.format("GET", paths[i])\n'
                "end\n"
            )
    out = subprocess.run(
        ["wrk", "--latency", f"-t{SMALL_THREADS}", f"-c{SMALL_CONNECTIONS}",
         f"-d{SMALL_SECONDS}s", "-s", script, f"http://127.0.0.1:{server.port}/"],
        capture_output=True, text=True, timeout=SMALL_SECONDS + 30,
    ).stdout
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    if not m or float(m.group(1)) == 0:
        raise RuntimeError(f"wrk against {server.label} printed no rate:\n{out}")
    if bad:
        raise RuntimeError(f"wrk against {server.label}: {bad.group(0)}")

    def pct(p):
        x = re.search(rf"^\s*{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(x.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[x.group(2)] if x else float("nan")

    return float(m.group(1)), pct(50), pct(99)


# ---------------------------------------------------------------------------------------------
# report


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
    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    return {
        "arch": platform.machine(),
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "nginx": nginx_v.replace("nginx version: ", ""),
        "wrk": subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split(" [")[0],
        "python": platform.python_version(),
    }


def cpu_busy(seconds=1.0):
    """Percent of all CPUs busy (not idle/iowait) over `seconds`, from /proc/stat."""

    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]
        return sum(v[:8]), idle

    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 100.0 * (1 - (i1 - i0) / max(1, t1 - t0))


def wait_quiet(limit=60.0, threshold=15.0):
    """Wait (bounded) for other work on the machine to settle; the busy % last seen."""
    deadline = time.monotonic() + limit
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        log(f"machine is {busy:.0f} % busy with other work; waiting (at most {limit:.0f} s)")
        busy = cpu_busy(2.0)
    return busy


def ok(flag):
    return "OK" if flag else "**MISSED**"


def render(m, servers, tp, lookups, floor, res, heads, cfg):
    ps, n1, na = servers
    L = []
    add = L.append
    add(f"### pacserve benchmark ({datetime.datetime.now().strftime('%Y-%m-%d %H:%M')})")
    add("")
    busiest = max([m["busy_before"], m["busy_after"]] + [v for _, v in m["busy_phases"]])
    add(f"Machine: {m['arch']}, {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}. "
        f"All traffic on 127.0.0.1; clients share the CPUs with the servers. CPU busy with "
        f"other work (1 s sample; each phase waits up to 60 s for < 15 %): start "
        f"{m['busy_before']:.0f} %, " + ", ".join(f"{k} {v:.0f} %" for k, v in m["busy_phases"])
        + f", end {m['busy_after']:.0f} %"
        f"{' — **numbers disturbed**' if busiest > 15 else ''}.")
    add(f"Servers: pacserve release build, `--quiet`, {ps.workers_text}; "
        f"{m['nginx']} (Debian) with `sendfile on`, `access_log off`, "
        f"{n1.workers_text} and {na.workers_text}.")
    add(f"Clients: throughput = {cfg['tp_client']}; small requests = {SMALL_CONNECTIONS} "
        f"keep-alive connections on {SMALL_THREADS} threads for {SMALL_SECONDS} s: HEAD by a "
        f"small C epoll client (wrk 4.1.0 stalls on HEAD: it waits for a body), GET of "
        f"{SIG_SIZE}-byte `.sig` files by {m['wrk']}; lookups = one keep-alive Python socket "
        f"timing request → 307 head (`perf_counter_ns`).")
    add("")
    add(f"**a. Cache-hit throughput**, 256 MiB package, median of {THROUGHPUT_RUNS} alternating "
        f"runs, (min–max) of the runs in brackets (MB/s = 10^6 bytes/s). Target: pacserve / nginx ≥ 1.0, judged against the "
        f"issue's `worker_processes auto` ({na.label}).")
    add("")
    add(f"| clients | pacserve MB/s | {n1.label} MB/s | {na.label} MB/s | "
        f"pacserve / {n1.label} | pacserve / {na.label} | target |")
    add("|---:|---:|---:|---:|---:|---:|:---|")
    verdicts = []
    for c in THROUGHPUT_CLIENTS:
        med = {s.name: statistics.median(tp[s.name][c]) for s in servers}
        r1 = med[ps.name] / med[n1.name]
        ra = med[ps.name] / med[na.name]
        flag = ra >= 1.0
        verdicts.append((f"a. throughput pacserve / {na.label} ≥ 1.0, {c} client(s)", flag,
                         f"{ra:.2f}"))
        cell = {s.name: f"{med[s.name]:,.0f} ({min(tp[s.name][c]):,.0f}–{max(tp[s.name][c]):,.0f})"
                for s in servers}
        add(f"| {c} | {cell[ps.name]} | {cell[n1.name]} | {cell[na.name]} | "
            f"{r1:.2f} | {ra:.2f} | {ok(flag)} |")
    add("")
    add(f"**b. Lookup latency**, `/request/` → 307 to the one live peer holding the package; "
        f"`--peer-timeout {PEER_TIMEOUT}`; static peers = live + dead (closed port) + hung "
        f"(accepts, never answers). Cold = first request after start (median of "
        f"{COLD_SAMPLES} restarts), with the holder also having the `.sig` and without; "
        f"warm = the same package again, {WARM_REQUESTS} requests after each cold sample "
        f"({WARM_REQUESTS * COLD_SAMPLES} per row). "
        f"Targets: warm p99 ≤ 1 ms; cold ≤ peer timeout and not growing with dead/hung peers.")
    add("")
    add("| static peers (live/dead/hung) | cold, holder has .sig | cold, no .sig | warm p50 | "
        "warm p99 | warm max | target |")
    add("|:---|---:|---:|---:|---:|---:|:---|")
    bound = PEER_TIMEOUT * 1000 * 1.1
    for r in lookups:
        cs = statistics.median(r["cold_sig"])
        cn = statistics.median(r["cold_nosig"])
        p50 = percentile(r["warm"], 50)
        p99 = percentile(r["warm"], 99)
        flag = p99 <= 1.0 and cs <= bound and cn <= bound
        label = f"{r['peers']} ({r['live']}/{r['dead']}/{r['hung']})"
        verdicts.append((f"b. {label}: warm p99 ≤ 1 ms", p99 <= 1.0, f"{p99:.3f} ms"))
        add(f"| {label} | {cs:.1f} ms | {cn:.1f} ms | {p50:.3f} ms | {p99:.3f} ms | "
            f"{max(r['warm']):.3f} ms | {ok(flag)} |")
    add(f"| reference: {n1.label} `return 307`, same client (no lookup) | | | "
        f"{percentile(floor, 50):.3f} ms | {percentile(floor, 99):.3f} ms | {max(floor):.3f} ms | |")
    worst = max(max(statistics.median(r["cold_sig"]), statistics.median(r["cold_nosig"]))
                for r in lookups)
    verdicts.append((f"b. every cold lookup ≤ peer timeout ({PEER_TIMEOUT} s, +10 %)",
                     worst <= bound, f"{worst:.0f} ms"))
    # Independent of dead peers: 1 live + all dead costs no more than 1 live alone (within
    # 50 ms: both are one loopback round trip when nothing hangs).
    alone = [r for r in lookups if r["peers"] == 1]
    all_dead = [r for r in lookups if r["hung"] == 0 and r["dead"] > 0 and r["live"] == 1]
    if alone and all_dead:
        base = max(statistics.median(alone[0]["cold_sig"]), statistics.median(alone[0]["cold_nosig"]))
        dead = max(statistics.median(all_dead[0]["cold_sig"]),
                   statistics.median(all_dead[0]["cold_nosig"]))
        verdicts.append((f"b. cold with {all_dead[0]['dead']} dead peers ≈ with none (+50 ms)",
                         dead <= base + 50, f"{dead:.1f} vs {base:.1f} ms"))
    add("")
    add("**c. Resources** (CPU = utime+stime of all the server's processes and threads over "
        "every throughput run; RSS summed over master and workers).")
    add("")
    add(f"| | pacserve | {n1.label} | {na.label} |")
    add("|:---|---:|---:|---:|")
    add("| CPU seconds per GB served | " + " | ".join(
        f"{res[s.name]['cpu_per_gb']:.3f}" for s in servers) + " |")
    add("| idle RSS | " + " | ".join(f"{res[s.name]['idle_kib'] / 1024:.1f} MiB" for s in servers) + " |")
    add(f"| peak RSS, {RSS_DOWNLOADS} concurrent downloads | " + " | ".join(
        f"{res[s.name]['peak_kib'] / 1024:.1f} MiB" for s in servers) + " |")
    add(f"| pacserve VmHWM after all of a, c | {ps_hwm_text(res)} | | |")
    add("")
    add(f"**d. Many small requests**, {SMALL_CONNECTIONS} keep-alive clients: HEAD on "
        f"{SMALL_COUNT} cached packages (C client), GET of their `.sig` (wrk). No target in "
        "the issue; the ratio is pacserve / that server.")
    add("")
    add("| server | HEAD req/s | HEAD p50 / p99 | HEAD per connection, fewest–most | "
        "pacserve / this | GET .sig req/s (wrk) | GET p50 / p99 | pacserve / this |")
    add("|:---|---:|---:|---:|---:|---:|---:|---:|")
    for s in servers:
        h, g = heads[s.name]["head"], heads[s.name]["get"]
        add(f"| {s.label} | {h[0]:,.0f} | {h[1]:.2f} / {h[2]:.2f} ms | {h[3]:,}–{h[4]:,} | "
            f"{heads[ps.name]['head'][0] / h[0]:.2f} | {g[0]:,.0f} | "
            f"{g[1]:.2f} / {g[2]:.2f} ms | {heads[ps.name]['get'][0] / g[0]:.2f} |")
    add("")
    add("**Targets**")
    add("")
    add("| target | measured | verdict |")
    add("|:---|---:|:---|")
    for name, flag, val in verdicts:
        add(f"| {name} | {val} | {ok(flag)} |")
    add("")
    return "\n".join(L), verdicts


def ps_hwm_text(res):
    return f"{res['pacserve']['hwm_kib'] / 1024:.1f} MiB"


def plot(path, servers, tp, lookups, floor):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for s, style in zip(servers, ["o-", "s--", "^-."]):
        med = [statistics.median(tp[s.name][c]) for c in THROUGHPUT_CLIENTS]
        lo = [min(tp[s.name][c]) for c in THROUGHPUT_CLIENTS]
        hi = [max(tp[s.name][c]) for c in THROUGHPUT_CLIENTS]
        ax1.errorbar(THROUGHPUT_CLIENTS, med,
                     yerr=[[m - l for m, l in zip(med, lo)], [h - m for h, m in zip(hi, med)]],
                     fmt=style, capsize=3, label=s.label)
    ax1.set_xscale("log")
    ax1.set_xticks(THROUGHPUT_CLIENTS)
    ax1.set_xticklabels([str(c) for c in THROUGHPUT_CLIENTS])
    ax1.set_xlabel("concurrent clients")
    ax1.set_ylabel("MB/s (median, min–max bars)")
    ax1.set_title("a. cache-hit throughput, 256 MiB package")
    ax1.set_ylim(bottom=0)
    ax1.grid(True, alpha=0.3)
    ax1.legend()

    lookups = [r for r in lookups if r["curve"]]
    xs = [r["peers"] for r in lookups]
    ax2.plot(xs, [percentile(r["warm"], 50) for r in lookups], "o-", label="warm p50")
    ax2.plot(xs, [percentile(r["warm"], 99) for r in lookups], "s-", label="warm p99")
    ax2.axhline(1.0, color="red", linestyle=":", label="target p99 ≤ 1 ms")
    ax2.axhline(percentile(floor, 99), color="gray", linestyle="--",
                label="floor: nginx return 307, p99")
    ax2.set_xscale("log")
    ax2.set_xticks(xs)
    ax2.set_xticklabels([str(x) for x in xs])
    ax2.set_xlabel("static peers (⅓ dead, ⅓ hung)")
    ax2.set_ylabel("ms")
    ax2.set_title("b. lookup latency → 307 (warm)")
    ax2.set_ylim(bottom=0)
    ax2.grid(True, alpha=0.3)
    cold = ax2.twinx()
    cold.plot(xs, [statistics.median(r["cold_sig"]) for r in lookups], "^:", color="gray",
              label="cold, holder has .sig (right)")
    cold.plot(xs, [statistics.median(r["cold_nosig"]) for r in lookups], "v:", color="black",
              label="cold, no .sig (right)")
    cold.set_ylabel("cold ms")
    cold.set_ylim(bottom=0)
    h1, l1 = ax2.get_legend_handles_labels()
    h2, l2 = cold.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left", bbox_to_anchor=(0.0, 0.93))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------------------------------------
# main


def make_file(path, size, seed):
    chunk = os.urandom(min(size, 16 * MiB))
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, len(chunk))
            f.write(chunk[:n])
            left -= n
    os.utime(path, (1_700_000_000 + seed, 1_700_000_000 + seed))


def run_main(argv):
    ap = argparse.ArgumentParser(prog="bench.py run")
    ap.add_argument("--bin", required=True, help="the release pacserve binary")
    ap.add_argument("--tmp", required=True, help="a scratch directory (removed by the caller)")
    ap.add_argument("--out", required=True, help="where results.md, results.json, bench.png go")
    ap.add_argument("--client", choices=["splice", "recv"], default="splice",
                    help="throughput client: splice bodies to /dev/null (default) or recv_into")
    ap.add_argument("--only-verify", action="store_true",
                    help="run section e (what verified copies cost a lookup) alone")
    ap.add_argument("--only-contention", action="store_true",
                    help="run section f (throughput, quiet and with the CPUs contended) alone")
    ap.add_argument("--busy-cpus", type=int, default=0,
                    help="section f: CPU spinners beside the servers (default: one per CPU)")
    ap.add_argument("--variant", action="append", default=[],
                    help="section f: LABEL=BINARY, another pacserve in the alternation")
    a = ap.parse_args(argv)
    tmp = a.tmp
    os.makedirs(a.out, exist_ok=True)
    os.chmod(tmp, 0o755)  # nginx workers run as nobody
    procs = Procs()

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = time.monotonic()
    if a.only_verify:
        return verify_only(a, procs, tmp, started)
    if a.only_contention:
        return bench_contention.main(sys.modules[__name__], a, procs, tmp)
    try:
        m = machine()
        log(f"machine: {m}")
        m["busy_before"] = wait_quiet()
        busy = []
        cache = os.path.join(tmp, "cache")
        os.makedirs(cache)
        make_file(os.path.join(cache, BIG_NAME), BIG_SIZE, 0)
        for i in range(SMALL_COUNT):
            small = os.path.join(cache, f"small{i}-1.0-1-{ARCH}.pkg.tar.zst")
            make_file(small, SMALL_SIZE, i + 1)
            make_file(small + ".sig", SIG_SIZE, i + 1)
        os.system("sync")

        # The server under test, and nginx twice (1 worker, auto), on the same files.
        conf = os.path.join(tmp, "pacserve.conf")
        write_pacman_conf(conf, cache, free_port())
        ps_port = free_port()
        ps_proc = start_pacserve(procs, a.bin, conf, ps_port)
        time.sleep(0.3)
        ps = Server("pacserve", "pacserve", ps_port, ps_proc, "")
        idle_threads = thread_names(ps_proc.pid)
        n1p, n1port, n1w = start_nginx(procs, tmp, "nginx-w1", "1", cache)
        nap, naport, naw = start_nginx(procs, tmp, "nginx-auto", "auto", cache)
        n1 = Server("nginx1", "nginx ×1", n1port, n1p, f"`worker_processes 1` ({n1w} worker)")
        na = Server("nginxauto", f"nginx ×{naw}", naport, nap,
                    f"`worker_processes auto` ({naw} workers)")
        servers = [ps, n1, na]
        res = {s.name: {"idle_kib": s.rss_kib()} for s in servers}
        log("idle RSS: " + ", ".join(f"{s.label} {res[s.name]['idle_kib']} KiB" for s in servers))

        # Sanity: every server serves the same bytes.
        for s in servers:
            c = KeepAlive(s.port)
            _, status, _ = c.timed("HEAD", f"{ROUTE}/{BIG_NAME}")
            c.close()
            if status != 200:
                raise RuntimeError(f"{s.label} answered {status} to HEAD of the package")

        # c. RSS under 100 concurrent downloads (before the throughput runs, so VmHWM is
        # this test's).
        busy.append(("c", wait_quiet()))
        for s in servers:
            res[s.name]["peak_kib"] = rss_under_downloads(s)
            time.sleep(0.3)
        res["pacserve"]["hwm_kib"] = proc_status_kib(ps.proc.pid, "VmHWM")
        log("RSS under downloads: " + ", ".join(
            f"{s.label} {res[s.name]['peak_kib']} KiB" for s in servers))

        # a. throughput, alternating servers (rotated order each run); c. CPU per GB.
        tp = {s.name: {c: [] for c in THROUGHPUT_CLIENTS} for s in servers}
        cpu = {s.name: [0.0, 0] for s in servers}
        for c in THROUGHPUT_CLIENTS:
            busy.append((f"a{c}", wait_quiet()))
            for run in range(THROUGHPUT_RUNS):
                order = servers[run % 3:] + servers[: run % 3]
                for s in order:
                    mbs, nbytes, used = throughput_run(procs, s, c, a.client)
                    tp[s.name][c].append(mbs)
                    cpu[s.name][0] += used
                    cpu[s.name][1] += nbytes
                    log(f"throughput {c:>2} clients run {run + 1} {s.label}: {mbs:,.0f} MB/s "
                        f"(cpu {used:.2f} s for {nbytes / 1e9:.1f} GB)")
        for s in servers:
            res[s.name]["cpu_per_gb"] = cpu[s.name][0] / (cpu[s.name][1] / 1e9)
        res["pacserve"]["hwm_kib"] = proc_status_kib(ps.proc.pid, "VmHWM")

        # d. many small requests: HEAD (own client) then GET .sig (wrk), each server in turn.
        exe = build_headbench(tmp)
        heads = {s.name: {} for s in servers}
        busy.append(("d", wait_quiet()))
        for s in servers:
            heads[s.name]["head"] = head_rps(exe, s)
            if s is ps:
                load_threads = thread_names(ps.proc.pid)
            log(f"HEAD {s.label}: {heads[s.name]['head'][0]:,.0f} req/s")
        for s in servers:
            heads[s.name]["get"] = wrk_get_sig(tmp, s)
            log(f"GET .sig {s.label}: {heads[s.name]['get'][0]:,.0f} req/s")
        ps.workers_text = (f"threads at idle: {threads_text(idle_threads)}; right after the "
                           f"HEAD load: {threads_text(load_threads)}")
        # nginx ×1 stays up: its `return 307` is the floor the lookup timings are read against.
        for s in (ps, na):
            procs.stop(s.proc)

        # b. lookups: one holder, empty live pacserves, dead ports, hung listeners.
        configs = lookup_configs()
        n_dead = max(c[2] for c in configs)
        n_hung = max(c[3] for c in configs)
        n_empty = max(c[1] for c in configs) - 1
        holder_cache = os.path.join(tmp, "holder-cache")
        empty_cache = os.path.join(tmp, "empty-cache")
        os.makedirs(holder_cache)
        os.makedirs(empty_cache)
        for kind in ("sig", "nosig"):
            for i in range(COLD_SAMPLES):
                name = f"peer{kind}-{i}-1-1-{ARCH}.pkg.tar.zst"
                make_file(os.path.join(holder_cache, name), 4096, 100 + i)
                if kind == "sig":
                    make_file(os.path.join(holder_cache, name + ".sig"), 566, 200 + i)
        holder_conf = os.path.join(tmp, "holder.conf")
        write_pacman_conf(holder_conf, holder_cache, free_port())
        empty_conf = os.path.join(tmp, "empty.conf")
        write_pacman_conf(empty_conf, empty_cache, free_port())
        holder_port = free_port()
        start_pacserve(procs, a.bin, holder_conf, holder_port)
        empty_ports = []
        for _ in range(n_empty):
            port = free_port()
            start_pacserve(procs, a.bin, empty_conf, port)
            empty_ports.append(port)
        dead_ports = []
        held = []
        while len(dead_ports) < n_dead:
            # Bound, note, then close: the port is free and closed (refused).
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            held.append(s)
            dead_ports.append(port)
        hung_ports = [free_port() for _ in range(n_hung)]
        hung = procs.start(
            [sys.executable, os.path.abspath(__file__), "hung"] + [str(p) for p in hung_ports],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        if hung.stdout.readline().strip() != "ready":
            raise RuntimeError("hung listener did not start")
        for s in held:
            s.close()
        busy.append(("b", wait_quiet()))
        lookups, floor = lookup_bench(procs, a.bin, tmp, holder_port, empty_ports, dead_ports,
                                      hung_ports, n1.port)
        procs.stop_all()
        busy.append(("e", wait_quiet()))
        verify_rows = bench_verify.run(sys.modules[__name__], procs, a.bin, tmp)
        m["busy_after"] = cpu_busy()
        m["busy_phases"] = busy

        cfg = {
            "tp_client": (
                "Python epoll processes (one per CPU), keep-alive GETs, bodies moved with "
                "splice(2) socket → pipe → /dev/null, so clients copy no payload"
                if a.client == "splice" else
                "Python epoll processes (one per CPU), keep-alive GETs, recv_into a 1 MiB buffer"
            ),
        }
        table, verdicts = render(m, servers, tp, lookups, floor, res, heads, cfg)
        table += "\n".join(bench_verify.render(sys.modules[__name__], verify_rows)) + "\n"
        print(table, flush=True)
        with open(os.path.join(a.out, "results.md"), "w") as f:
            f.write(table + "\n")
        with open(os.path.join(a.out, "results.json"), "w") as f:
            json.dump({"machine": m, "throughput": tp, "lookups": lookups,
                       "resources": res, "head": heads, "verification": verify_rows}, f,
                      indent=1)
        plot(os.path.join(a.out, "bench.png"), servers, tp, lookups, floor)
        log(f"plot: {os.path.join(a.out, 'bench.png')}; table: {os.path.join(a.out, 'results.md')}; "
            f"took {time.monotonic() - started:.0f} s")
        return 0
    finally:
        procs.stop_all()


def verify_only(a, procs, tmp, started):
    """Section e alone: its table printed and written to results-verify.md."""
    try:
        log(f"machine: {machine()}")
        wait_quiet()
        rows = bench_verify.run(sys.modules[__name__], procs, a.bin, tmp)
        table = "\n".join(bench_verify.render(sys.modules[__name__], rows)) + "\n"
        print(table, flush=True)
        with open(os.path.join(a.out, "results-verify.md"), "w") as f:
            f.write(table)
        log(f"took {time.monotonic() - started:.0f} s")
        return 0
    finally:
        procs.stop_all()


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == "fetch":
        return fetch_main(rest)
    if cmd == "hung":
        return hung_main(rest)
    if cmd == "run":
        return run_main(rest)
    print(f"unknown sub-command {cmd!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
