//! The authentication part of the operator's view: whether the LAN is authenticated, who
//! else may ask, and what was refused by reason, as HTML, JSON and Prometheus text. Pure.

use std::fmt::Write as _;

use crate::app::status::{html_escape, json_string};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthView {
    /// A shared secret is in use (`--secret-file`).
    pub authenticated: bool,
    /// How many keys verify (the first signs).
    pub keys: usize,
    /// The `--allow` ranges.
    pub allow: Vec<String>,
    /// Signed datagrams and requests taken.
    pub datagrams_taken: u64,
    pub requests_taken: u64,
    /// Datagrams dropped before the peer table, by reason (with a secret).
    pub datagrams_refused: Vec<(&'static str, u64)>,
    /// Requests answered 403, by reason.
    pub requests_refused: Vec<(&'static str, u64)>,
}

impl AuthView {
    /// Who is answered besides this host, in words.
    fn clients(&self) -> String {
        let mut who = vec!["loopback".to_string()];
        if self.authenticated {
            who.push("authenticated peers".into());
        }
        who.extend(self.allow.iter().cloned());
        if !self.authenticated && self.allow.is_empty() {
            return "everyone".into();
        }
        who.join(", ")
    }
}

pub fn html(h: &mut String, v: &AuthView) {
    h.push_str("<h2>Authentication</h2>\n<p id=\"auth\">");
    if v.authenticated {
        let _ = write!(
            h,
            "LAN authenticated: shared secret, {} key{} (the first signs)",
            v.keys,
            if v.keys == 1 { "" } else { "s" }
        );
    } else {
        h.push_str("LAN not authenticated (no --secret-file): every host on it is trusted");
    }
    let _ = writeln!(h, " · answered: {}</p>", html_escape(&v.clients()));
    let rows = |h: &mut String, id: &str, what: &str, counts: &[(&str, u64)]| {
        let _ = writeln!(
            h,
            "<table id=\"{id}\"><tr><th>{what} refused</th><th>count</th></tr>"
        );
        for (why, n) in counts {
            let _ = writeln!(h, "<tr><td>{why}</td><td class=\"n\">{n}</td></tr>");
        }
        h.push_str("</table>\n");
    };
    if v.authenticated {
        let _ = writeln!(
            h,
            "<p>Taken: {} signed datagrams, {} signed requests.</p>",
            v.datagrams_taken, v.requests_taken
        );
        rows(h, "refused-datagrams", "datagrams", &v.datagrams_refused);
    }
    rows(h, "refused-requests", "requests", &v.requests_refused);
}

fn counts_json(j: &mut String, counts: &[(&str, u64)]) {
    j.push('{');
    for (i, (why, n)) in counts.iter().enumerate() {
        let _ = write!(
            j,
            "{}{}:{n}",
            if i > 0 { "," } else { "" },
            json_string(why)
        );
    }
    j.push('}');
}

/// `"auth":{…}` (no separator around it).
pub fn json(j: &mut String, v: &AuthView) {
    let allow: Vec<String> = v.allow.iter().map(|a| json_string(a)).collect();
    let _ = write!(
        j,
        "\"auth\":{{\"lan_authenticated\":{},\"keys\":{},\"allow\":[{}],\
         \"datagrams_taken\":{},\"requests_taken\":{},\"rejected_datagrams\":",
        v.authenticated,
        v.keys,
        allow.join(","),
        v.datagrams_taken,
        v.requests_taken
    );
    counts_json(j, &v.datagrams_refused);
    j.push_str(",\"rejected_requests\":");
    counts_json(j, &v.requests_refused);
    j.push('}');
}

pub fn metrics(m: &mut String, v: &AuthView) {
    let _ = write!(
        m,
        "# HELP pacserve_lan_authenticated Whether the LAN is authenticated by a shared secret.\n\
         # TYPE pacserve_lan_authenticated gauge\npacserve_lan_authenticated {}\n\
         # HELP pacserve_signed_datagrams_total Signed multicast datagrams taken.\n\
         # TYPE pacserve_signed_datagrams_total counter\npacserve_signed_datagrams_total {}\n\
         # HELP pacserve_signed_requests_total Signed requests from other pacserves taken.\n\
         # TYPE pacserve_signed_requests_total counter\npacserve_signed_requests_total {}\n",
        u8::from(v.authenticated),
        v.datagrams_taken,
        v.requests_taken
    );
    let families = [
        (
            "pacserve_rejected_datagrams_total",
            "Multicast datagrams dropped for want of a valid seal, by reason.",
            &v.datagrams_refused,
        ),
        (
            "pacserve_rejected_requests_total",
            "Requests answered 403, by reason.",
            &v.requests_refused,
        ),
    ];
    for (name, help, counts) in families {
        let _ = write!(m, "# HELP {name} {help}\n# TYPE {name} counter\n");
        for (why, n) in counts.iter() {
            let _ = writeln!(m, "{name}{{reason=\"{why}\"}} {n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(authenticated: bool) -> AuthView {
        AuthView {
            authenticated,
            keys: 2,
            allow: vec!["10.0.0.0/24".into()],
            datagrams_taken: 40,
            requests_taken: 7,
            datagrams_refused: vec![("unsigned", 3), ("bad_mac", 1)],
            requests_refused: vec![("not_allowed", 5)],
        }
    }

    #[test]
    fn shows_the_state_and_every_reason() {
        let mut h = String::new();
        html(&mut h, &sample(true));
        assert!(h.contains("LAN authenticated: shared secret, 2 keys (the first signs)"));
        assert!(h.contains("answered: loopback, authenticated peers, 10.0.0.0/24"));
        assert!(h.contains("<tr><td>bad_mac</td><td class=\"n\">1</td></tr>"));
        assert!(h.contains("<tr><td>not_allowed</td><td class=\"n\">5</td></tr>"));
        let mut plain = String::new();
        let open = AuthView::default();
        html(&mut plain, &open);
        assert!(plain.contains("LAN not authenticated"));
        assert!(plain.contains("answered: everyone"));
        assert!(!plain.contains("refused-datagrams"));

        let mut j = String::new();
        json(&mut j, &sample(true));
        assert_eq!(
            j,
            "\"auth\":{\"lan_authenticated\":true,\"keys\":2,\"allow\":[\"10.0.0.0/24\"],\
             \"datagrams_taken\":40,\"requests_taken\":7,\"rejected_datagrams\":\
             {\"unsigned\":3,\"bad_mac\":1},\"rejected_requests\":{\"not_allowed\":5}}"
        );

        let mut m = String::new();
        metrics(&mut m, &sample(false));
        assert!(m.contains("pacserve_lan_authenticated 0\n"));
        assert!(m.contains("pacserve_rejected_datagrams_total{reason=\"unsigned\"} 3\n"));
        assert!(m.contains("pacserve_rejected_requests_total{reason=\"not_allowed\"} 5\n"));
        assert!(m.contains("pacserve_signed_requests_total 7\n"));
        for line in m.lines() {
            assert!(
                line.starts_with("# ") || line.starts_with("pacserve_"),
                "{line}"
            );
        }
    }
}
