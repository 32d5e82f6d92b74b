//! Many clients at once: a thousand concurrent downloads all get byte-identical files, and
//! the daemon keeps serving afterwards.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::*;

const CLIENTS: usize = 1000;
const FILE_BYTES: usize = 256 * 1024;
/// Connect attempts per client: the listen backlog may overflow for a moment.
const CONNECT_TRIES: usize = 5;

/// Connect (bounded retries), wait for all, then GET the file and read the whole response.
fn client(port: u16, path: String, start: Arc<Barrier>) -> Result<Vec<u8>, String> {
    let mut conn = None;
    for _ in 0..CONNECT_TRIES {
        match RawConn::connect(port) {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
    // Everybody waits at the barrier even after a failed connect, so no thread hangs.
    start.wait();
    let mut c = conn.ok_or("could not connect")?;
    c.send(&request_bytes("GET", &path, &[]))
        .map_err(|e| e.to_string())?;
    let r = c.read_response(false).map_err(|e| e.to_string())?;
    if !r.head.starts_with("HTTP/1.1 200 ") {
        return Err(format!(
            "status line: {}",
            r.head.lines().next().unwrap_or("")
        ));
    }
    Ok(r.body)
}

#[test]
fn a_thousand_concurrent_clients_get_identical_files() {
    let dir = TempDir::new("conc");
    let cache = dir.mkdir("cache");
    let name = "big-1.0-1-x86_64.pkg.tar.zst";
    let content = pseudo_random("concurrency", FILE_BYTES);
    std::fs::write(cache.join(name), &content).expect("write package");
    let mirror = Mirror::start(&dir.mkdir("mirror"));
    let conf = write_server_conf(
        dir.path(),
        &[&cache],
        &[("core", &[mirror.url("/$repo/os/$arch")])],
    );
    let ps = Pacserve::start(&conf, &[]);
    let path = format!("/request/core/x86_64/{name}");

    let start = Arc::new(Barrier::new(CLIENTS));
    let mut handles = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let start = start.clone();
        let path = path.clone();
        let port = ps.port();
        handles.push(
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || client(port, path, start))
                .expect("spawn client thread"),
        );
    }
    let mut failures = Vec::new();
    let mut identical = 0;
    for h in handles {
        match h.join().expect("client thread") {
            Ok(body) if body == content => identical += 1,
            Ok(body) => failures.push(format!("{} bytes, not the file", body.len())),
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {CLIENTS} clients failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(identical, CLIENTS);
    // Still serving, and nothing went to the mirror.
    let r = get(ps.port(), &path);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, content);
    assert_eq!(mirror.requests().len(), 0, "{}", mirror.dump());
}
