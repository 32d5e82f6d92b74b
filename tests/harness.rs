//! The harness's own pieces, checked without pacserve: the parsers that read its answers
//! (`/status.json`, `/metrics`, log lines, HTTP dates) and the servers that stand in for dead
//! and hung mirrors and peers.

mod common;

use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::json::JSON_MAX_DEPTH;
use common::prometheus::parse_exposition;
use common::*;

#[test]
fn http_date_matches_rfc_example() {
    assert_eq!(http_date_secs(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(
        parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(http_date_secs(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(http_date_secs(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    for t in [0, 784_111_777, 951_782_400, 1_700_000_000, 4_102_444_799] {
        assert_eq!(parse_http_date(&http_date_secs(t)), Some(t));
    }
    assert_eq!(parse_http_date("yesterday"), None);
}

#[test]
fn json_parser_accepts_json_and_rejects_the_rest() {
    let v = Json::parse(
        " {\"a\": [1, -2.5e+3, 0, true, false, null], \"s\": \"x\\\"\\\\\\/\\n\\u00e9\\ud83d\\ude00\", \"o\": {}} ",
    )
    .expect("valid JSON");
    assert_eq!(v.field("a").as_array().map(<[_]>::len), Some(6));
    assert_eq!(v.field("a").as_array().unwrap()[0].as_u64(), Some(1));
    assert_eq!(v.text("s"), "x\"\\/\né😀");
    assert_eq!(v.field("o"), &Json::Obj(Vec::new()));
    for bad in [
        "",
        "{",
        "[1,]",
        "{\"a\":1,}",
        "{\"a\":1 \"b\":2}",
        "{\"a\":1,\"a\":2}",
        "01",
        "1.",
        "-",
        "1e",
        "\"\\x\"",
        "\"\\ud83d\"",
        "\"a\nb\"",
        "tru",
        "[1] [2]",
        "'a'",
        "{a:1}",
    ] {
        assert!(Json::parse(bad).is_err(), "{bad:?} was accepted");
    }
    let deep = "[".repeat(JSON_MAX_DEPTH + 2) + &"]".repeat(JSON_MAX_DEPTH + 2);
    assert!(
        Json::parse(&deep).is_err(),
        "unbounded nesting was accepted"
    );
}

#[test]
fn exposition_parser_rejects_what_prometheus_would() {
    let good = "# HELP pacserve_x Some help.\n# TYPE pacserve_x counter\npacserve_x{a=\"q\\\"\\\\\\n\",b=\"\"} 1.5e3\n";
    let m = parse_exposition(good).expect("valid exposition");
    assert_eq!(
        m.value("pacserve_x", &[("a", "q\"\\\n"), ("b", "")]),
        Some(1500.0)
    );
    for bad in [
        "pacserve_x 1\n",
        "# TYPE pacserve_x counter\npacserve_x 1\n",
        "# HELP pacserve_x h\npacserve_x 1\n",
        "# HELP pacserve_x h\n# TYPE pacserve_x counter\npacserve_x 1",
        "# HELP pacserve_x h\n# TYPE pacserve_x counter\npacserve_x one\n",
        "# HELP pacserve_x h\n# TYPE pacserve_x counter\npacserve_x{a=1} 1\n",
        "# HELP pacserve_x h\n# TYPE pacserve_x counter\npacserve_x{a=\"1\"  1\n",
        "# HELP pacserve_x h\n# TYPE pacserve_x counter\npacserve_x 1\npacserve_x 2\n",
        "# HELP pacserve_x h\n# TYPE pacserve_x counter\npacserve_y 1\n",
        "# HELP pacserve_x h\n# TYPE pacserve_x countr\npacserve_x 1\n",
        "# HELP pacserve_x h\n# TYPE pacserve_x counter\n# TYPE pacserve_x gauge\npacserve_x 1\n",
        "# HELP pacserve_x h\n# TYPE pacserve_x counter\n# a comment\npacserve_x 1\n",
        "# HELP pacserve_x h\n# TYPE pacserve_x counter\n\npacserve_x 1\n",
    ] {
        assert!(parse_exposition(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn log_line_parser_reads_request_lines_only() {
    let line = LogLine::parse("pacserve: 127.0.0.1:4242 GET /request/core/x86_64/a 307 0 mirror")
        .expect("a request line");
    assert_eq!(line.from, "127.0.0.1:4242".parse().unwrap());
    assert_eq!(
        (line.method.as_str(), line.path.as_str(), line.status),
        ("GET", "/request/core/x86_64/a", 307)
    );
    assert_eq!((line.bytes, line.outcome.as_str()), (0, "mirror"));
    let bad = LogLine::parse("pacserve: [::1]:9 - - 400 12 bad (garbage)").expect("a bad request");
    assert_eq!(
        (bad.method.as_str(), bad.status, bad.outcome.as_str()),
        ("-", 400, "bad")
    );
    for other in [
        "pacserve: listening on 127.0.0.1:15678",
        "pacserve: peer 10.231.1.12:15678 discovered",
        "pacserve: peer 127.0.0.1:9 failed: connection refused; next try in 2s",
        "pacserve: 127.0.0.1:4242 GET /a 200",
        "127.0.0.1:4242 GET /a 200 1 local",
        "pacserve: 127.0.0.1:4242 GET /a two 1 local",
    ] {
        assert_eq!(LogLine::parse(other), None, "{other:?}");
    }
    assert_eq!(
        listening_port("pacserve: listening on 127.0.0.1:15678\n"),
        Some(15678)
    );
    assert_eq!(
        listening_port("pacserve: listening on [::1]:80\n"),
        Some(80)
    );
    assert_eq!(listening_port("pacserve: reloaded\n"), None);
}

#[test]
fn failure_lines_and_their_backoff_read_exactly_whole_seconds() {
    let line = |w: &str| format!("pacserve: peer 127.0.0.1:9 failed: refused; next try in {w}");
    assert_eq!(backoff_secs(&line("2s")), Some(2));
    assert_eq!(backoff_secs(&line("16s")), Some(16));
    for other in ["Some(2s)", "2", "s", "2.5s", "2s trailing", "-2s", " 2s"] {
        assert_eq!(backoff_secs(&line(other)), None, "{other:?}");
    }
    let log = format!(
        "{}\npacserve: peer 127.0.0.1:90 failed: x; next try in 2s\n{}\n",
        line("2s"),
        line("4s")
    );
    assert_eq!(
        failure_lines(&log, "127.0.0.1:9"),
        [line("2s"), line("4s")],
        "127.0.0.1:90 is another peer"
    );
}

#[test]
fn dead_port_refuses_and_nobody_can_take_it() {
    let dead = dead_port();
    for _ in 0..3 {
        let err = TcpStream::connect(("127.0.0.1", dead.port())).expect_err("a connection");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    }
    let err = TcpListener::bind(("127.0.0.1", dead.port())).expect_err("a second bind");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    assert_eq!(format!("{dead}"), dead.port().to_string());
    assert_eq!(dead.authority(), format!("127.0.0.1:{}", dead.port()));
}

#[test]
fn hung_server_accepts_and_never_answers_then_stops() {
    let hung = HungServer::start();
    let port = hung.port();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    assert!(wait_until(LOG_WAIT, || hung.accepted() == 1));
    s.set_read_timeout(Some(SETTLE)).expect("read timeout");
    let mut buf = [0u8; 16];
    let err = s.read(&mut buf).expect_err("no answer");
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    drop(hung);
    // Its held connection is closed, and it no longer accepts.
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still accepting"
    );
}

#[test]
fn mirror_serves_files_ranges_and_dates_and_stops_on_drop() {
    let dir = TempDir::new("mirror-self");
    std::fs::write(dir.join("f"), b"0123456789").expect("write file");
    let mirror = Mirror::start(dir.path());
    let r = get(mirror.port(), "/f");
    assert_eq!((r.status, &r.body[..]), (200, &b"0123456789"[..]));
    let r = request(mirror.port(), "GET", "/f", &[("Range", "bytes=3-")]);
    assert_eq!((r.status, &r.body[..]), (206, &b"3456789"[..]));
    assert_eq!(r.header("content-range"), Some("bytes 3-9/10"));
    let lm = r
        .header("last-modified")
        .expect("Last-Modified")
        .to_string();
    let r = request(mirror.port(), "GET", "/f", &[("If-Modified-Since", &lm)]);
    assert_eq!(r.status, 304);
    assert_eq!(get(mirror.port(), "/nothing").status, 404);
    assert_eq!(request(mirror.port(), "POST", "/f", &[]).status, 405);
    assert_eq!(mirror.served("/f"), 2, "{}", mirror.dump());
    assert_eq!(mirror.asked("/f"), 4, "{}", mirror.dump());
    assert!(mirror.requests().iter().all(|r| r.from.is_loopback()));
    let port = mirror.port();
    drop(mirror);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still accepting"
    );
}
