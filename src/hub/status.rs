//! The hub's part of the status page, `/status.json` and `/metrics` (`pacserve_hub_*`),
//! rendered from one plain snapshot. Pure: no I/O, no clock.

use std::fmt::Write as _;

use crate::app::status::{html_escape, human_bytes, human_duration, json_string};

/// A pull under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullingView {
    pub file: String,
    pub peer: String,
    pub done: u64,
    pub total: u64,
}

/// A pull that ended: `error` None when the file was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledView {
    pub at: u64,
    pub file: String,
    pub peer: String,
    pub bytes: u64,
    pub error: Option<String>,
}

/// A file evicted, and why (`versions`, `budget`, `orphan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvictedView {
    pub at: u64,
    pub file: String,
    pub bytes: u64,
    pub why: &'static str,
}

/// Failed pulls from one peer, and the last reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailuresView {
    pub peer: String,
    pub count: u64,
    pub last: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HubView {
    pub dir: String,
    pub files: u64,
    pub bytes: u64,
    pub max_bytes: Option<u64>,
    pub keep: usize,
    /// Architectures collected besides `any`; empty: all.
    pub archs: Vec<String>,
    pub min_free_percent: u8,
    /// The filesystem's size and free bytes, when known.
    pub space: Option<(u64, u64)>,
    /// Why pulls stopped, when they did.
    pub stopped: Option<String>,
    /// Files peers asked for and the hub lacked, remembered to be pulled.
    pub missed: usize,
    pub pulling: Vec<PullingView>,
    /// Newest first.
    pub pulled: Vec<PulledView>,
    /// Newest first.
    pub evicted: Vec<EvictedView>,
    pub failures: Vec<FailuresView>,
    /// Files and bytes pulled, evicted; failed pulls; wrong copies refused.
    pub pulled_files: u64,
    pub pulled_bytes: u64,
    pub evicted_files: u64,
    pub evicted_bytes: u64,
    pub failed_pulls: u64,
    pub wrong_copies: u64,
}

/// `n` of `of` in whole percent (0 when `of` is 0).
fn percent(n: u64, of: u64) -> u64 {
    // Without 128-bit division (a KiB of code on the board): exact below 184 PB.
    n.saturating_mul(100).checked_div(of).unwrap_or(0)
}

/// A bar without script: `<progress>` with its figure beside it.
fn bar(h: &mut String, id: &str, n: u64, of: u64) {
    let _ = write!(
        h,
        "<progress id=\"{id}\" value=\"{n}\" max=\"{of}\"></progress> {}%",
        percent(n, of)
    );
}

pub fn html(h: &mut String, v: &HubView, now: u64) {
    let _ = write!(
        h,
        "<h2>Hub</h2>\n<p id=\"hub\">{}: {} file{}, {}",
        html_escape(&v.dir),
        v.files,
        if v.files == 1 { "" } else { "s" },
        human_bytes(v.bytes)
    );
    if let Some(max) = v.max_bytes {
        let _ = write!(h, " of {} ", human_bytes(max));
        bar(h, "hub-budget", v.bytes, max);
    }
    if let Some((total, free)) = v.space {
        let _ = write!(
            h,
            " · disk {} free of {} (keeps {}% free) ",
            human_bytes(free),
            human_bytes(total),
            v.min_free_percent
        );
        bar(h, "hub-disk", total - free.min(total), total);
    }
    let archs = match v.archs.is_empty() {
        true => "every architecture".to_string(),
        false => html_escape(&v.archs.join(", ")) + ", any",
    };
    let _ = writeln!(
        h,
        " · keeps {} version{} of each package · collects {archs} · {} missed file{} to pull</p>",
        v.keep,
        if v.keep == 1 { "" } else { "s" },
        v.missed,
        if v.missed == 1 { "" } else { "s" },
    );
    if let Some(why) = &v.stopped {
        let _ = writeln!(
            h,
            "<p id=\"hub-stopped\"><b>Pulls stopped:</b> {}</p>",
            html_escape(why)
        );
    }
    h.push_str("<h3>Pulls under way</h3>\n<table id=\"hub-pulling\"><tr><th>file</th><th>from</th><th>progress</th></tr>\n");
    if v.pulling.is_empty() {
        h.push_str("<tr><td colspan=\"3\">none</td></tr>\n");
    }
    for (i, p) in v.pulling.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>",
            html_escape(&p.file),
            html_escape(&p.peer)
        );
        bar(h, &format!("hub-pull-{i}"), p.done, p.total);
        let _ = writeln!(
            h,
            " ({} of {})</td></tr>",
            human_bytes(p.done),
            human_bytes(p.total)
        );
    }
    let _ = writeln!(
        h,
        "</table>\n<h3>Recent pulls</h3>\n<p>{} files, {} pulled; {} failed; {} wrong copies \
         refused</p>\n<table id=\"hub-pulled\"><tr><th>when</th><th>file</th><th>from</th>\
         <th>bytes</th><th>result</th></tr>",
        v.pulled_files,
        human_bytes(v.pulled_bytes),
        v.failed_pulls,
        v.wrong_copies
    );
    if v.pulled.is_empty() {
        h.push_str("<tr><td colspan=\"5\">none yet</td></tr>\n");
    }
    for p in &v.pulled {
        let _ = writeln!(
            h,
            "<tr><td>{} ago</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            human_duration(now.saturating_sub(p.at)),
            html_escape(&p.file),
            html_escape(&p.peer),
            human_bytes(p.bytes),
            html_escape(p.error.as_deref().unwrap_or("stored"))
        );
    }
    let _ = writeln!(
        h,
        "</table>\n<h3>Recent evictions</h3>\n<p>{} files, {} evicted</p>\n\
         <table id=\"hub-evicted\"><tr><th>when</th><th>file</th><th>bytes</th><th>why</th></tr>",
        v.evicted_files,
        human_bytes(v.evicted_bytes)
    );
    if v.evicted.is_empty() {
        h.push_str("<tr><td colspan=\"4\">none yet</td></tr>\n");
    }
    for e in &v.evicted {
        let _ = writeln!(
            h,
            "<tr><td>{} ago</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            human_duration(now.saturating_sub(e.at)),
            html_escape(&e.file),
            human_bytes(e.bytes),
            e.why
        );
    }
    h.push_str("</table>\n<h3>Failed pulls by peer</h3>\n<table id=\"hub-failures\"><tr><th>peer</th><th>failures</th><th>last</th></tr>\n");
    if v.failures.is_empty() {
        h.push_str("<tr><td colspan=\"3\">none</td></tr>\n");
    }
    for f in &v.failures {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            html_escape(&f.peer),
            f.count,
            html_escape(&f.last)
        );
    }
    h.push_str("</table>\n");
}

fn opt(n: Option<u64>) -> String {
    n.map_or("null".to_string(), |n| n.to_string())
}

/// `"hub":{...},` for `/status.json`.
pub fn json(j: &mut String, v: &HubView) {
    let (total, free) = v.space.unzip();
    let _ = write!(
        j,
        "\"hub\":{{\"dir\":{},\"files\":{},\"bytes\":{},\"max_bytes\":{},\"keep\":{},\
         \"archs\":[{}],\"min_free_percent\":{},\"fs_bytes\":{},\"fs_free_bytes\":{},\
         \"stopped\":{},\"missed\":{},\"pulled_files\":{},\"pulled_bytes\":{},\
         \"evicted_files\":{},\"evicted_bytes\":{},\"failed_pulls\":{},\"wrong_copies\":{},\
         \"pulling\":[",
        json_string(&v.dir),
        v.files,
        v.bytes,
        opt(v.max_bytes),
        v.keep,
        v.archs
            .iter()
            .map(|a| json_string(a))
            .collect::<Vec<_>>()
            .join(","),
        v.min_free_percent,
        opt(total),
        opt(free),
        v.stopped.as_deref().map_or("null".to_string(), json_string),
        v.missed,
        v.pulled_files,
        v.pulled_bytes,
        v.evicted_files,
        v.evicted_bytes,
        v.failed_pulls,
        v.wrong_copies,
    );
    for (i, p) in v.pulling.iter().enumerate() {
        let _ = write!(
            j,
            "{}{{\"file\":{},\"peer\":{},\"done\":{},\"total\":{}}}",
            if i > 0 { "," } else { "" },
            json_string(&p.file),
            json_string(&p.peer),
            p.done,
            p.total
        );
    }
    j.push_str("],\"pulled\":[");
    for (i, p) in v.pulled.iter().enumerate() {
        let _ = write!(
            j,
            "{}{{\"at\":{},\"file\":{},\"peer\":{},\"bytes\":{},\"error\":{}}}",
            if i > 0 { "," } else { "" },
            p.at,
            json_string(&p.file),
            json_string(&p.peer),
            p.bytes,
            p.error.as_deref().map_or("null".to_string(), json_string)
        );
    }
    j.push_str("],\"evicted\":[");
    for (i, e) in v.evicted.iter().enumerate() {
        let _ = write!(
            j,
            "{}{{\"at\":{},\"file\":{},\"bytes\":{},\"why\":{}}}",
            if i > 0 { "," } else { "" },
            e.at,
            json_string(&e.file),
            e.bytes,
            json_string(e.why)
        );
    }
    j.push_str("],\"failures\":[");
    for (i, f) in v.failures.iter().enumerate() {
        let _ = write!(
            j,
            "{}{{\"peer\":{},\"count\":{},\"last\":{}}}",
            if i > 0 { "," } else { "" },
            json_string(&f.peer),
            f.count,
            json_string(&f.last)
        );
    }
    j.push_str("]},");
}

pub fn metrics(m: &mut String, v: &HubView) {
    let (total, free) = v.space.unzip();
    let gauges: [(&str, &str, &str, Option<u64>); 13] = [
        ("files", "gauge", "Files the hub holds.", Some(v.files)),
        ("bytes", "gauge", "Bytes the hub holds.", Some(v.bytes)),
        (
            "max_bytes",
            "gauge",
            "The hub's byte budget (--hub-max-size).",
            v.max_bytes,
        ),
        (
            "fs_bytes",
            "gauge",
            "Size of the hub directory's filesystem.",
            total,
        ),
        (
            "fs_free_bytes",
            "gauge",
            "Free bytes on the hub directory's filesystem.",
            free,
        ),
        (
            "pulls_in_flight",
            "gauge",
            "Pulls under way.",
            Some(v.pulling.len() as u64),
        ),
        (
            "stopped",
            "gauge",
            "Whether pulls stopped (full disk, no room).",
            Some(u64::from(v.stopped.is_some())),
        ),
        (
            "missed_files",
            "gauge",
            "Files peers asked for, to be pulled.",
            Some(v.missed as u64),
        ),
        (
            "pulled_files_total",
            "counter",
            "Files pulled and stored.",
            Some(v.pulled_files),
        ),
        (
            "pulled_bytes_total",
            "counter",
            "Bytes pulled and stored.",
            Some(v.pulled_bytes),
        ),
        (
            "evicted_files_total",
            "counter",
            "Files evicted.",
            Some(v.evicted_files),
        ),
        (
            "evicted_bytes_total",
            "counter",
            "Bytes evicted.",
            Some(v.evicted_bytes),
        ),
        (
            "wrong_copies_total",
            "counter",
            "Peers' copies refused: not the file they must be.",
            Some(v.wrong_copies),
        ),
    ];
    for (name, kind, help, value) in gauges {
        if let Some(value) = value {
            let _ = write!(
                m,
                "# HELP pacserve_hub_{name} {help}\n# TYPE pacserve_hub_{name} {kind}\n\
                 pacserve_hub_{name} {value}\n"
            );
        }
    }
    m.push_str(
        "# HELP pacserve_hub_failed_pulls_total Failed pulls, by peer.\n\
         # TYPE pacserve_hub_failed_pulls_total counter\n",
    );
    for f in &v.failures {
        let peer = f.peer.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(
            m,
            "pacserve_hub_failed_pulls_total{{peer=\"{peer}\"}} {}",
            f.count
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HubView {
        HubView {
            dir: "/var/lib/pacserve/hub".into(),
            files: 3,
            bytes: 3 << 20,
            max_bytes: Some(4 << 20),
            keep: 2,
            archs: vec!["x86_64".into()],
            min_free_percent: 5,
            space: Some((100 << 20, 60 << 20)),
            stopped: Some("no space left <here>".into()),
            missed: 1,
            pulling: vec![PullingView {
                file: "a-1-1-any.pkg.tar.zst".into(),
                peer: "10.0.0.2:15678".into(),
                done: 25,
                total: 100,
            }],
            pulled: vec![PulledView {
                at: 90,
                file: "b-1-1-any.pkg.tar.zst".into(),
                peer: "10.0.0.2:15678".into(),
                bytes: 2048,
                error: None,
            }],
            evicted: vec![EvictedView {
                at: 95,
                file: "c-1-1-any.pkg.tar.zst".into(),
                bytes: 10,
                why: "budget",
            }],
            failures: vec![FailuresView {
                peer: "10.0.0.3:15678".into(),
                count: 2,
                last: "a wrong copy: its sha256 differs".into(),
            }],
            pulled_files: 1,
            pulled_bytes: 2048,
            evicted_files: 1,
            evicted_bytes: 10,
            failed_pulls: 2,
            wrong_copies: 1,
        }
    }

    #[test]
    fn html_has_bars_and_says_why_pulls_stopped() {
        let mut h = String::new();
        html(&mut h, &sample(), 100);
        assert!(h.contains("<progress id=\"hub-pull-0\" value=\"25\" max=\"100\"></progress> 25%"));
        assert!(h.contains(
            "<progress id=\"hub-budget\" value=\"3145728\" max=\"4194304\"></progress> 75%"
        ));
        assert!(h.contains("<b>Pulls stopped:</b> no space left &lt;here&gt;"));
        assert!(h.contains("<td>10s ago</td><td>b-1-1-any.pkg.tar.zst</td>"));
        assert!(h.contains("<td>budget</td>"));
        assert!(h.contains("collects x86_64, any"));
        assert!(!h.contains("<script"));
    }

    #[test]
    fn json_and_metrics() {
        let mut j = String::from("{");
        json(&mut j, &sample());
        assert!(j.contains("\"stopped\":\"no space left <here>\""));
        assert!(j.contains("\"pulling\":[{\"file\":\"a-1-1-any.pkg.tar.zst\",\"peer\":\"10.0.0.2:15678\",\"done\":25,\"total\":100}]"));
        assert!(j.contains("\"evicted\":[{\"at\":95,\"file\":\"c-1-1-any.pkg.tar.zst\",\"bytes\":10,\"why\":\"budget\"}]"));
        assert!(j.ends_with("]},"));
        let mut m = String::new();
        metrics(&mut m, &sample());
        assert!(m.contains("\npacserve_hub_files 3\n"));
        assert!(m.contains("\npacserve_hub_stopped 1\n"));
        assert!(m.contains("pacserve_hub_failed_pulls_total{peer=\"10.0.0.3:15678\"} 2\n"));
        let mut none = sample();
        none.max_bytes = None;
        let mut m = String::new();
        metrics(&mut m, &none);
        assert!(!m.contains("pacserve_hub_max_bytes"));
        assert_eq!(percent(1, 0), 0);
    }
}
