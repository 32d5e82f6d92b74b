"""Benchmark section e: what verified copies cost a lookup (imported by bench.py).

One holder pacserve with the packages, N-1 empty live pacserves, and a requester that asks
for each package through /request/. Two settings, alternating sample by sample:

  off: no sync database under the hosts' DBPath, so nothing is checked (the old rule);
  on:  a gzip sync database of VERIFY_DB_PACKAGES entries (about Arch's core + extra) that
       also holds the benchmark's packages, on every host: the requester compares each
       peer's Content-Length and X-Pacserve-Sha256 with it, and the holder hashes its copy
       before it answers.

Cold = the first request after the requester started (its index loaded, no answer
remembered); warm = the same request again on the same connection (p50/p99). The figures are
read against each other, never against a threshold.
"""

import gzip
import hashlib
import io
import json
import os
import statistics
import tarfile
import time
import urllib.request

VERIFY_DB_PACKAGES = 15_000
VERIFY_PEERS = [1, 10]
VERIFY_COLD_SAMPLES = 9
VERIFY_WARM_REQUESTS = 1000
VERIFY_FILE_SIZE = 256 * 1024
INDEX_WAIT = 20.0


def desc(filename, name, version, size, sha256):
    return (
        f"%FILENAME%\n{filename}\n\n%NAME%\n{name}\n\n%VERSION%\n{version}\n\n"
        f"%CSIZE%\n{size}\n\n%SHA256SUM%\n{sha256}\n\n%ARCH%\nx86_64\n\n"
    ).encode()


def write_sync_db(path, real, filler):
    """A repo-add style gzip tar: one `NAME-VERSION/desc` per package; `real` are (filename,
    size, sha256) of files that exist, `filler` how many made-up entries come with them."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        entries = []
        for filename, size, sha in real:
            name, ver, rel = filename.rsplit("-", 3)[:3]
            entries.append((filename, name, f"{ver}-{rel}", size, sha))
        for i in range(filler):
            name = f"filler{i:05d}"
            sha = hashlib.sha256(name.encode()).hexdigest()
            entries.append((f"{name}-1.0-1-x86_64.pkg.tar.zst", name, "1.0-1", 1000 + i, sha))
        for filename, name, version, size, sha in entries:
            body = desc(filename, name, version, size, sha)
            info = tarfile.TarInfo(f"{name}-{version}/desc")
            info.size = len(body)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(body))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(gzip.compress(raw.getvalue(), mtime=0))


def write_conf(path, cache_dir, db_dir, repo, arch, mirror_port):
    with open(path, "w") as f:
        f.write(
            "[options]\n"
            f"Architecture = {arch}\n"
            f"CacheDir = {cache_dir}/\n"
            f"DBPath = {db_dir}/\n"
            "\n"
            f"[{repo}]\n"
            f"Server = http://127.0.0.1:{mirror_port}/$repo/$arch\n"
        )


def verified_packages(port):
    """The number of packages the daemon on `port` has in its index (its /status.json)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=5) as r:
        doc = json.load(r)
    return sum(doc["verification"]["repos"].values())


def wait_index(port, want):
    deadline = time.monotonic() + INDEX_WAIT
    while time.monotonic() < deadline:
        if verified_packages(port) >= want:
            return
        time.sleep(0.05)
    raise RuntimeError(f"pacserve on {port} did not load its {want}-package index")


def run(b, procs, binary, tmp):
    """Rows {setting, peers, cold, warm} measured with bench.py's helpers `b`."""
    root = os.path.join(tmp, "verify")
    holder_cache = os.path.join(root, "holder-cache")
    empty_cache = os.path.join(root, "empty-cache")
    req_cache = os.path.join(root, "requester-cache")
    for d in (holder_cache, empty_cache, req_cache):
        os.makedirs(d)
    real = []
    for i in range(max(VERIFY_PEERS) * VERIFY_COLD_SAMPLES * 2):
        filename = f"verified{i}-1.0-1-{b.ARCH}.pkg.tar.zst"
        path = os.path.join(holder_cache, filename)
        b.make_file(path, VERIFY_FILE_SIZE, 300 + i)
        with open(path, "rb") as f:
            real.append((filename, VERIFY_FILE_SIZE, hashlib.sha256(f.read()).hexdigest()))
    t0 = time.perf_counter()
    db_on = os.path.join(root, "db-on")
    write_sync_db(os.path.join(db_on, "sync", f"{b.REPO}.db"), real, VERIFY_DB_PACKAGES)
    b.log(f"verify: {VERIFY_DB_PACKAGES + len(real)}-package sync db written in "
          f"{time.perf_counter() - t0:.1f} s "
          f"({os.path.getsize(os.path.join(db_on, 'sync', b.REPO + '.db')):,} bytes)")
    db_off = os.path.join(root, "db-off")
    os.makedirs(os.path.join(db_off, "sync"))
    want_index = VERIFY_DB_PACKAGES + len(real)

    rows = []
    next_file = 0
    for peers in VERIFY_PEERS:
        started = []
        ports = {}
        for setting, db in (("off", db_off), ("on", db_on)):
            hconf = os.path.join(root, f"holder-{setting}-{peers}.conf")
            write_conf(hconf, holder_cache, db, b.REPO, b.ARCH, b.free_port())
            hport = b.free_port()
            started.append(b.start_pacserve(procs, binary, hconf, hport))
            econf = os.path.join(root, f"empty-{setting}-{peers}.conf")
            write_conf(econf, empty_cache, db, b.REPO, b.ARCH, b.free_port())
            eports = []
            for _ in range(peers - 1):
                port = b.free_port()
                started.append(b.start_pacserve(procs, binary, econf, port))
                eports.append(port)
            if setting == "on":
                for port in [hport] + eports:
                    wait_index(port, want_index)
                # The holder says what its copy is, and it is what the database says.
                filename, _, sha = real[0]
                head = urllib.request.Request(
                    f"http://127.0.0.1:{hport}/peer/{b.REPO}/{b.ARCH}/{filename}", method="HEAD")
                with urllib.request.urlopen(head, timeout=5) as r:
                    if r.headers.get("X-Pacserve-Sha256") != sha:
                        raise RuntimeError(f"holder answered X-Pacserve-Sha256 "
                                           f"{r.headers.get('X-Pacserve-Sha256')!r}, not {sha}")
            rconf = os.path.join(root, f"requester-{setting}-{peers}.conf")
            write_conf(rconf, req_cache, db, b.REPO, b.ARCH, b.free_port())
            ports[setting] = (hport, eports, rconf)
        result = {s: {"setting": s, "peers": peers, "cold": [], "warm": []} for s in ports}
        for sample in range(VERIFY_COLD_SAMPLES):
            for setting in ("off", "on") if sample % 2 == 0 else ("on", "off"):
                hport, eports, rconf = ports[setting]
                filename = real[next_file][0]
                next_file += 1
                peer_args = [f"127.0.0.1:{hport}"] + [f"127.0.0.1:{p}" for p in eports]
                port = b.free_port()
                p = b.start_pacserve(procs, binary, rconf, port, peer_args)
                # Both settings ask /status.json first (on: until the index is loaded).
                wait_index(port, want_index if setting == "on" else 0)
                c = b.KeepAlive(port)
                want = f"http://127.0.0.1:{hport}"
                ms, status, loc = c.timed("GET", f"{b.ROUTE}/{filename}")
                if status != 307 or not (loc or "").startswith(want):
                    raise RuntimeError(f"verify {setting}: cold lookup answered {status} {loc}")
                result[setting]["cold"].append(ms)
                deadline = time.monotonic() + 5
                for _ in range(VERIFY_WARM_REQUESTS):
                    if time.monotonic() > deadline:
                        break
                    ms, status, _ = c.timed("GET", f"{b.ROUTE}/{filename}")
                    if status != 307:
                        raise RuntimeError(f"verify {setting}: warm lookup answered {status}")
                    result[setting]["warm"].append(ms)
                c.close()
                procs.stop(p)
        for p in started:
            procs.stop(p)
        for setting in ("off", "on"):
            r = result[setting]
            b.log(f"verify {setting}, {peers} peers: cold median {statistics.median(r['cold']):.2f} ms, "
                  f"warm p50 {b.percentile(r['warm'], 50):.3f} ms "
                  f"p99 {b.percentile(r['warm'], 99):.3f} ms ({len(r['warm'])} requests)")
            rows.append(r)
    return rows


def render(b, rows):
    """Markdown lines for results.md."""
    out = [
        "",
        f"e. verification: lookup through /request/ of a {VERIFY_FILE_SIZE // 1024} KiB package "
        f"held by one of N live peers; on = a {VERIFY_DB_PACKAGES:,}-package sync database on "
        "every host (size and SHA-256 compared), off = none",
        "",
        "| setting | peers | cold median ms | warm p50 ms | warm p99 ms |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['setting']} | {r['peers']} | {statistics.median(r['cold']):.2f} | "
            f"{b.percentile(r['warm'], 50):.3f} | {b.percentile(r['warm'], 99):.3f} |"
        )
    return out
