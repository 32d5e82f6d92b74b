//! The operator's view: an HTML page (`/`), JSON (`/status.json`) and Prometheus text
//! (`/metrics`), all rendered from one plain snapshot. Pure: no I/O, no clock.

use std::fmt::Write as _;

use crate::app::auth_view::{self, AuthView};
use crate::app::outcome::COUNTED;
use crate::app::stats::{Counters, Recent};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    /// `host:port`.
    pub address: String,
    /// `static` or `multicast`.
    pub source: &'static str,
    /// Seconds since its last announcement (multicast) or answer, if ever.
    pub last_seen_secs: Option<u64>,
    /// `ok`, `unknown` (never asked yet), `failing` (failed, backoff over) or `backed off`.
    pub state: &'static str,
    pub failures: u32,
    /// Seconds until it is asked again, when backed off.
    pub retry_in_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusView {
    pub version: String,
    pub cache_dirs: Vec<String>,
    pub packages: u64,
    pub multicast: Option<String>,
    pub peers: Vec<PeerView>,
    pub recent: Vec<Recent>,
    /// `now - recent.at` is shown as "N s ago"; passed in so rendering stays pure.
    pub now_unix: u64,
    pub counters: Counters,
    /// Multicast datagrams by kind (`received`, `malformed`, `own`, `sent`, `send_errors`),
    /// when discovery is on.
    pub multicast_datagrams: Vec<(&'static str, u64)>,
    pub verification: VerificationView,
    /// The hub's part, with `--hub`.
    pub hub: Option<crate::hub::status::HubView>,
    pub auth: AuthView,
}

/// What copies are checked against, and the copies found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerificationView {
    /// Repositories whose sync database is read, and how many packages each lists.
    pub repos: Vec<(String, usize)>,
    /// Peers' copies skipped, newest first.
    pub skipped: Vec<CopyView>,
    /// How many peer copies were skipped, by reason (`size`, `sha256`).
    pub skipped_by: Vec<(&'static str, u64)>,
    /// Wrong copies in this host's cache (never served), newest first.
    pub bad_local: Vec<CopyView>,
    pub bad_local_total: u64,
}

/// One wrong copy: where (a peer's address, or a path here), which file, why, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyView {
    pub at: u64,
    pub holder: String,
    pub file: String,
    pub why: &'static str,
}

pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `1.5 GiB`, `12.0 MiB`, `512 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    // Integer arithmetic (no floating-point formatting in the binary): tenths of the unit.
    let mut unit = 0;
    let mut div: u128 = 1024;
    while u128::from(n) >= div * 1024 && unit + 1 < UNITS.len() {
        div *= 1024;
        unit += 1;
    }
    let tenths = (u128::from(n) * 10 + div / 2) / div;
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

/// `3d 4h`, `2h 5m`, `7m 3s`, `42s`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

pub fn html(v: &StatusView) -> String {
    let mut h = String::with_capacity(8192);
    h.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>pacserve</title>\n<link rel=\"icon\" href=\"data:,\">\n<style>\n\
         body{font-family:system-ui,sans-serif;margin:1em auto;max-width:60em;padding:0 1em;color:#222}\n\
         table{border-collapse:collapse;width:100%;margin-bottom:1.5em;font-size:.95em}\n\
         th,td{text-align:left;padding:.3em .5em;border-bottom:1px solid #ddd;word-break:break-all}\n\
         th{background:#f3f3f3}td.n{text-align:right}\n\
         .cards{display:flex;flex-wrap:wrap;gap:.5em;margin-bottom:1.5em}\n\
         .card{border:1px solid #ddd;border-radius:.4em;padding:.5em .8em;min-width:8em}\n\
         .card b{display:block;font-size:1.4em}\n\
         </style></head><body>\n",
    );
    let c = &v.counters;
    let _ = write!(
        h,
        "<h1>pacserve {}</h1>\n<p>Up {} · {} package{} in {} · multicast: {}</p>\n",
        html_escape(&v.version),
        human_duration(c.uptime_secs),
        v.packages,
        if v.packages == 1 { "" } else { "s" },
        html_escape(&v.cache_dirs.join(", ")),
        html_escape(v.multicast.as_deref().unwrap_or("off")),
    );
    h.push_str("<h2>Counters</h2>\n<div class=\"cards\" id=\"counters\">\n");
    for (i, o) in COUNTED.iter().enumerate() {
        let _ = writeln!(
            h,
            "<div class=\"card\" id=\"count-{}\"><b>{}</b>{}</div>",
            o.as_str(),
            c.by_outcome[i],
            o.label()
        );
    }
    let _ = writeln!(
        h,
        "<div class=\"card\" id=\"bytes-served\"><b>{}</b>served</div>\n\
         <div class=\"card\" id=\"bytes-saved\"><b>{}</b>saved for the LAN</div>\n</div>",
        human_bytes(c.bytes_served),
        human_bytes(c.bytes_saved)
    );
    h.push_str(
        "<h2>Peers</h2>\n<table id=\"peers\"><tr><th>address</th><th>source</th>\
         <th>last seen</th><th>state</th><th>backoff</th></tr>\n",
    );
    if v.peers.is_empty() {
        h.push_str("<tr><td colspan=\"5\">no peers</td></tr>\n");
    }
    for p in &v.peers {
        let seen = p.last_seen_secs.map_or("never".to_string(), |s| {
            format!("{} ago", human_duration(s))
        });
        let backoff = match p.retry_in_secs {
            Some(s) => format!("{} failures, retry in {}", p.failures, human_duration(s)),
            None if p.failures > 0 => format!("{} failures", p.failures),
            None => "-".to_string(),
        };
        let _ = writeln!(
            h,
            "<tr class=\"peer\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(&p.address),
            p.source,
            seen,
            p.state,
            backoff
        );
    }
    h.push_str("</table>\n");
    if let Some(hub) = &v.hub {
        crate::hub::status::html(&mut h, hub, v.now_unix);
    }
    auth_view::html(&mut h, &v.auth);
    verification_html(&mut h, v);
    h.push_str("<h2>Recent lookups</h2>\n<table id=\"recent\"><tr><th>when</th><th>request</th><th>status</th><th>outcome</th><th>bytes</th></tr>\n");
    if v.recent.is_empty() {
        h.push_str("<tr><td colspan=\"5\">none yet</td></tr>\n");
    }
    for r in &v.recent {
        let _ = writeln!(
            h,
            "<tr><td>{} ago</td><td>{} {}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            human_duration(v.now_unix.saturating_sub(r.at)),
            html_escape(&r.method),
            html_escape(&r.path),
            r.status,
            r.outcome.label(),
            human_bytes(r.bytes)
        );
    }
    h.push_str(
        "</table>\n<p>Also as <a href=\"/status.json\">JSON</a> and \
         <a href=\"/metrics\">Prometheus metrics</a>.</p>\n</body></html>\n",
    );
    h
}

fn verification_html(h: &mut String, v: &StatusView) {
    let ver = &v.verification;
    h.push_str("<h2>Verified copies</h2>\n<p id=\"verification\">");
    if ver.repos.is_empty() {
        h.push_str("Off: no sync database read (pacman -Sy writes them)");
    } else {
        h.push_str("Checked against the sync databases of ");
        let repos: Vec<String> = ver
            .repos
            .iter()
            .map(|(r, n)| format!("[{}] ({n} packages)", html_escape(r)))
            .collect();
        h.push_str(&repos.join(", "));
    }
    h.push_str("</p>\n");
    let rows = |h: &mut String, id: &str, title: &str, copies: &[CopyView]| {
        let _ = writeln!(
            h,
            "<h3>{title}</h3>\n<table id=\"{id}\"><tr><th>when</th><th>holder</th>\
             <th>file</th><th>wrong</th></tr>"
        );
        if copies.is_empty() {
            h.push_str("<tr><td colspan=\"4\">none</td></tr>\n");
        }
        for c in copies {
            let _ = writeln!(
                h,
                "<tr><td>{} ago</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                human_duration(v.now_unix.saturating_sub(c.at)),
                html_escape(&c.holder),
                html_escape(&c.file),
                c.why
            );
        }
        h.push_str("</table>\n");
    };
    rows(h, "skipped", "Peers' copies skipped", &ver.skipped);
    rows(
        h,
        "bad-local",
        "Wrong copies here (never served)",
        &ver.bad_local,
    );
}

fn copies_json(j: &mut String, copies: &[CopyView]) {
    for (i, c) in copies.iter().enumerate() {
        let _ = write!(
            j,
            "{}{{\"at\":{},\"holder\":{},\"file\":{},\"why\":{}}}",
            if i > 0 { "," } else { "" },
            c.at,
            json_string(&c.holder),
            json_string(&c.file),
            json_string(c.why)
        );
    }
}

pub fn json(v: &StatusView) -> String {
    let c = &v.counters;
    let mut j = String::with_capacity(4096);
    let _ = write!(
        j,
        "{{\"version\":{},\"uptime_secs\":{},\"cache_dirs\":[{}],\"packages\":{},\"multicast\":{},",
        json_string(&v.version),
        c.uptime_secs,
        v.cache_dirs
            .iter()
            .map(|d| json_string(d))
            .collect::<Vec<_>>()
            .join(","),
        v.packages,
        v.multicast
            .as_deref()
            .map_or("null".to_string(), json_string),
    );
    j.push_str("\"requests\":{");
    for (i, o) in COUNTED.iter().enumerate() {
        let _ = write!(
            j,
            "{}{}:{}",
            if i > 0 { "," } else { "" },
            json_string(o.as_str()),
            c.by_outcome[i]
        );
    }
    let _ = write!(
        j,
        "}},\"bytes_served\":{},\"bytes_saved\":{},\"peers\":[",
        c.bytes_served, c.bytes_saved
    );
    for (i, p) in v.peers.iter().enumerate() {
        let opt = |o: Option<u64>| o.map_or("null".to_string(), |n| n.to_string());
        let _ = write!(
            j,
            "{}{{\"address\":{},\"source\":{},\"last_seen_secs\":{},\"state\":{},\"failures\":{},\"retry_in_secs\":{}}}",
            if i > 0 { "," } else { "" },
            json_string(&p.address),
            json_string(p.source),
            opt(p.last_seen_secs),
            json_string(p.state),
            p.failures,
            opt(p.retry_in_secs)
        );
    }
    j.push_str("],\"multicast_datagrams\":{");
    for (i, (kind, n)) in v.multicast_datagrams.iter().enumerate() {
        let _ = write!(
            j,
            "{}{}:{n}",
            if i > 0 { "," } else { "" },
            json_string(kind)
        );
    }
    let ver = &v.verification;
    j.push_str("},\"verification\":{\"repos\":{");
    for (i, (repo, n)) in ver.repos.iter().enumerate() {
        let _ = write!(
            j,
            "{}{}:{n}",
            if i > 0 { "," } else { "" },
            json_string(repo)
        );
    }
    j.push_str("},\"skipped\":[");
    copies_json(&mut j, &ver.skipped);
    j.push_str("],\"skipped_by\":{");
    for (i, (why, n)) in ver.skipped_by.iter().enumerate() {
        let _ = write!(
            j,
            "{}{}:{n}",
            if i > 0 { "," } else { "" },
            json_string(why)
        );
    }
    let _ = write!(
        j,
        "}},\"bad_local_total\":{},\"bad_local\":[",
        ver.bad_local_total
    );
    copies_json(&mut j, &ver.bad_local);
    j.push_str("]},");
    if let Some(hub) = &v.hub {
        crate::hub::status::json(&mut j, hub);
    }
    auth_view::json(&mut j, &v.auth);
    j.push_str(",\"recent\":[");
    for (i, r) in v.recent.iter().enumerate() {
        let _ = write!(
            j,
            "{}{{\"at\":{},\"method\":{},\"path\":{},\"status\":{},\"outcome\":{},\"bytes\":{}}}",
            if i > 0 { "," } else { "" },
            r.at,
            json_string(&r.method),
            json_string(&r.path),
            r.status,
            json_string(r.outcome.as_str()),
            r.bytes
        );
    }
    j.push_str("]}\n");
    j
}

pub fn metrics(v: &StatusView) -> String {
    let c = &v.counters;
    let mut m = String::with_capacity(2048);
    m.push_str(
        "# HELP pacserve_requests_total Requests answered, by outcome.\n\
         # TYPE pacserve_requests_total counter\n",
    );
    for (i, o) in COUNTED.iter().enumerate() {
        let _ = writeln!(
            m,
            "pacserve_requests_total{{outcome=\"{}\"}} {}",
            o.as_str(),
            c.by_outcome[i]
        );
    }
    let gauges: [(&str, &str, &str, u64); 5] = [
        (
            "pacserve_bytes_served_total",
            "counter",
            "Response body bytes sent.",
            c.bytes_served,
        ),
        (
            "pacserve_bytes_saved_total",
            "counter",
            "Package bytes sent from this host's cache instead of fetched from the internet.",
            c.bytes_saved,
        ),
        (
            "pacserve_uptime_seconds",
            "gauge",
            "Seconds since pacserve started.",
            c.uptime_secs,
        ),
        (
            "pacserve_cached_packages",
            "gauge",
            "Package files in the cache dirs.",
            v.packages,
        ),
        (
            "pacserve_peers",
            "gauge",
            "Known peers (static and discovered).",
            v.peers.len() as u64,
        ),
    ];
    for (name, kind, help, value) in gauges {
        let _ = write!(
            m,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    }
    if !v.multicast_datagrams.is_empty() {
        m.push_str(
            "# HELP pacserve_multicast_datagrams_total Discovery datagrams, by kind \
             (malformed ones are dropped).\n\
             # TYPE pacserve_multicast_datagrams_total counter\n",
        );
        for (kind, n) in &v.multicast_datagrams {
            let _ = writeln!(
                m,
                "pacserve_multicast_datagrams_total{{kind=\"{kind}\"}} {n}"
            );
        }
    }
    auth_view::metrics(&mut m, &v.auth);
    let ver = &v.verification;
    m.push_str(
        "# HELP pacserve_skipped_copies_total Peers' copies not used: not the file the sync \
         database describes, by what differed.\n\
         # TYPE pacserve_skipped_copies_total counter\n",
    );
    for (why, n) in &ver.skipped_by {
        let _ = writeln!(m, "pacserve_skipped_copies_total{{reason=\"{why}\"}} {n}");
    }
    let _ = write!(
        m,
        "# HELP pacserve_bad_local_copies_total Wrong copies found in this host's cache (never \
         served).\n# TYPE pacserve_bad_local_copies_total counter\n\
         pacserve_bad_local_copies_total {}\n",
        ver.bad_local_total
    );
    m.push_str(
        "# HELP pacserve_verified_packages Packages a sync database describes, by repository.\n\
         # TYPE pacserve_verified_packages gauge\n",
    );
    for (repo, n) in &ver.repos {
        let repo = repo.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(m, "pacserve_verified_packages{{repo=\"{repo}\"}} {n}");
    }
    if let Some(hub) = &v.hub {
        crate::hub::status::metrics(&mut m, hub);
    }
    m.push_str(
        "# HELP pacserve_peer_up Whether a peer answers lookups (1) or is failing (0).\n\
         # TYPE pacserve_peer_up gauge\n",
    );
    for p in &v.peers {
        let up = u8::from(p.state == "ok" || p.state == "unknown");
        // Label values: backslash, quote and newline escaped per the exposition format.
        let addr = p
            .address
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = writeln!(
            m,
            "pacserve_peer_up{{peer=\"{addr}\",source=\"{}\"}} {up}",
            p.source
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::outcome::Outcome;

    fn sample() -> StatusView {
        StatusView {
            version: "0.1.0".into(),
            cache_dirs: vec!["/var/cache/pacman/pkg/".into()],
            packages: 3,
            multicast: Some("239.255.15.78:15679".into()),
            peers: vec![
                PeerView {
                    address: "10.0.0.2:15678".into(),
                    source: "multicast",
                    last_seen_secs: Some(4),
                    state: "ok",
                    failures: 0,
                    retry_in_secs: None,
                },
                PeerView {
                    address: "<b>\"x\"</b>:1".into(),
                    source: "static",
                    last_seen_secs: None,
                    state: "backed off",
                    failures: 3,
                    retry_in_secs: Some(8),
                },
            ],
            recent: vec![Recent {
                at: 100,
                method: "GET".into(),
                path: "/request/core/x86_64/a<script>".into(),
                status: 200,
                outcome: Outcome::Local,
                bytes: 2048,
            }],
            now_unix: 130,
            counters: Counters {
                uptime_secs: 3700,
                by_outcome: [3, 1, 2, 0, 1, 4],
                bytes_served: 5 * 1024 * 1024,
                bytes_saved: 4 * 1024 * 1024,
            },
            multicast_datagrams: vec![("received", 9), ("malformed", 2)],
            verification: VerificationView {
                repos: vec![("core".into(), 250)],
                skipped: vec![CopyView {
                    at: 120,
                    holder: "10.0.0.2:15678".into(),
                    file: "zstd-1.5.5-1-x86_64.pkg.tar.zst".into(),
                    why: "sha256",
                }],
                skipped_by: vec![("size", 0), ("sha256", 1)],
                bad_local: vec![],
                bad_local_total: 0,
            },
            hub: None,
            auth: AuthView::default(),
        }
    }

    #[test]
    fn html_shows_everything_escaped() {
        let h = html(&sample());
        assert!(h.contains("<h1>pacserve 0.1.0</h1>"));
        assert!(h.contains("Up 1h 1m"));
        assert!(h.contains("id=\"count-local\"><b>3</b>"));
        assert!(h.contains("id=\"count-peer\"><b>1</b>"));
        assert!(h.contains("5.0 MiB"));
        assert!(h.contains("10.0.0.2:15678"));
        assert!(h.contains("3 failures, retry in 8s"));
        assert!(h.contains("30s ago"));
        assert!(h.contains("[core] (250 packages)"));
        assert!(h.contains(
            "<td>10.0.0.2:15678</td><td>zstd-1.5.5-1-x86_64.pkg.tar.zst</td><td>sha256</td>"
        ));
        assert!(!h.contains("<script>"), "request paths are escaped");
        assert!(!h.contains("<b>\"x\"</b>"), "peer names are escaped");
        assert!(h.contains("&lt;b&gt;&quot;x&quot;&lt;/b&gt;:1"));
    }

    #[test]
    fn json_is_well_formed_enough() {
        let j = json(&sample());
        assert!(j.starts_with("{\"version\":\"0.1.0\""));
        assert!(j.contains(
            "\"requests\":{\"local\":3,\"peer\":1,\"mirror\":2,\"miss\":0,\"bad\":1,\"busy\":4}"
        ));
        assert!(j.contains("\"bytes_saved\":4194304"));
        assert!(j.contains("\"multicast_datagrams\":{\"received\":9,\"malformed\":2}"));
        assert!(j.contains(
            "\"verification\":{\"repos\":{\"core\":250},\"skipped\":[{\"at\":120,\"holder\":\
             \"10.0.0.2:15678\",\"file\":\"zstd-1.5.5-1-x86_64.pkg.tar.zst\",\"why\":\"sha256\"}],\
             \"skipped_by\":{\"size\":0,\"sha256\":1},\"bad_local_total\":0,\"bad_local\":[]}"
        ));
        assert!(j.contains("\"address\":\"<b>\\\"x\\\"</b>:1\""));
        assert!(j.contains("\"last_seen_secs\":null"));
        let opens = j.matches(['{', '[']).count();
        let closes = j.matches(['}', ']']).count();
        assert_eq!(opens, closes);
        assert_eq!(json_string("a\u{1}\n\"\\"), "\"a\\u0001\\u000a\\\"\\\\\"");
    }

    #[test]
    fn metrics_follow_the_exposition_format() {
        let m = metrics(&sample());
        assert!(m.contains("pacserve_requests_total{outcome=\"local\"} 3\n"));
        assert!(m.contains("pacserve_multicast_datagrams_total{kind=\"malformed\"} 2\n"));
        assert!(m.contains("pacserve_skipped_copies_total{reason=\"sha256\"} 1\n"));
        assert!(m.contains("pacserve_verified_packages{repo=\"core\"} 250\n"));
        assert!(m.contains(
            "# TYPE pacserve_bytes_saved_total counter\npacserve_bytes_saved_total 4194304\n"
        ));
        assert!(m.contains("pacserve_peer_up{peer=\"10.0.0.2:15678\",source=\"multicast\"} 1\n"));
        assert!(m.contains("pacserve_peer_up{peer=\"<b>\\\"x\\\"</b>:1\",source=\"static\"} 0\n"));
        for line in m.lines() {
            assert!(
                line.starts_with("# HELP pacserve_")
                    || line.starts_with("# TYPE pacserve_")
                    || line.starts_with("pacserve_"),
                "{line}"
            );
        }
    }

    #[test]
    fn humans() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_bytes(1024 * 1024 - 1), "1024.0 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 + 300 * 1024), "5.3 MiB");
        assert_eq!(human_bytes(u64::MAX), "16384.0 PiB");
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(423), "7m 3s");
        assert_eq!(human_duration(7500), "2h 5m");
        assert_eq!(human_duration(273_600), "3d 4h");
    }
}
