//! The operator's side of pacserve, end to end: the status page in a real headless browser,
//! `/status.json` and `/metrics` parsed and checked against known traffic, the `/cache/` route
//! for pacman's `CacheServer`, `pacserve pacsrv` driving the real pacman, and
//! `pacserve print-pacman-conf` read back by pacserve's own pacman.conf reader.
//!
//! Everything talks to 127.0.0.1 only: the harness mirror, real pacserve processes, the real
//! pacman with private configs, and chromium with its background networking turned off and
//! every host name mapped to nothing.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// How long a log line may lag behind the answer it describes.
const LOG_WAIT: Duration = Duration::from_secs(5);
/// Pause before checking that something did *not* happen: lines are logged just after the
/// answer goes out, so a request that did happen shows up well within it.
const SETTLE: Duration = Duration::from_millis(300);
/// Longest one headless chromium run may take before its process group is killed.
const BROWSER_LIMIT: Duration = Duration::from_secs(90);
/// Longest wait for a dead peer's backoff to end (the third failure backs off for 8 s).
const BACKOFF_WAIT: Duration = Duration::from_secs(30);
/// Pause between two status polls.
const POLL: Duration = Duration::from_millis(100);
/// Longest wait for the counters to include the last request (recorded just after its answer).
const COUNTER_WAIT: Duration = Duration::from_secs(5);
/// The screenshot's size, passed to chromium and expected in the PNG's IHDR.
const SHOT_WIDTH: u32 = 1280;
const SHOT_HEIGHT: u32 = 2000;
/// The port print-pacman-conf is told to use (nothing listens on it; nothing connects).
const PRINT_PORT: u16 = 15678;

// ---------------------------------------------------------------------------------------------
// Packages on a mirror

struct Pkg {
    file: String,
    bytes: Vec<u8>,
}

impl Pkg {
    fn read(path: &Path) -> Pkg {
        Pkg {
            file: path
                .file_name()
                .expect("package has a file name")
                .to_string_lossy()
                .into_owned(),
            bytes: fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())),
        }
    }

    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// `/ENDPOINT/core/x86_64/FILE` on a pacserve.
    fn on(&self, endpoint: &str) -> String {
        format!("/{endpoint}/core/x86_64/{}", self.file)
    }

    /// Where the file lies on the mirror.
    fn mirror_path(&self) -> String {
        format!("/core/os/x86_64/{}", self.file)
    }

    /// Put a copy into the cache dir `cache`.
    fn copy_to(&self, cache: &Path) {
        let p = cache.join(&self.file);
        fs::write(&p, &self.bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }
}

/// A mirror serving repo `core` (database made by `repo-add`) with packages of the given
/// names and payload sizes. Fields drop in order: the mirror before the directory it serves.
struct Repo {
    mirror: Mirror,
    pkgs: Vec<Pkg>,
    dir: TempDir,
}

impl Repo {
    fn new(tag: &str, pkgs: &[(&str, usize)]) -> Repo {
        let dir = TempDir::new(tag);
        let repo_dir = dir.mkdir("mirror/core/os/x86_64");
        let paths: Vec<PathBuf> = pkgs
            .iter()
            .map(|(name, payload)| make_package(&repo_dir, name, "1.0-1", *payload))
            .collect();
        repo_add(&repo_dir.join("core.db.tar.gz"), &paths);
        let pkgs = paths.iter().map(|p| Pkg::read(p)).collect();
        let mirror = Mirror::start(&dir.join("mirror"));
        Repo { mirror, pkgs, dir }
    }

    fn pkg(&self, name: &str) -> &Pkg {
        let prefix = format!("{name}-1.0-1-");
        self.pkgs
            .iter()
            .find(|p| p.file.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no package {name} on this mirror"))
    }

    /// The mirror's `Server =` value.
    fn server(&self) -> String {
        self.mirror.url("/$repo/os/$arch")
    }

    /// A host directory with an empty cache and a pacman.conf whose `[core]` lists the mirror.
    fn host(&self, name: &str) -> (PathBuf, PathBuf) {
        let dir = self.dir.mkdir(name);
        let cache = self.dir.mkdir(format!("{name}/cache"));
        let conf = write_server_conf(&dir, &[&cache], &[("core", &[self.server()])]);
        (cache, conf)
    }
}

/// Start pacserve on a port picked in advance (`free_port`), retried if someone takes it first.
fn start_on_known_port(conf: &Path, extra: &[&str]) -> Pacserve {
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let port_arg = port.to_string();
        let mut args = vec!["--port", port_arg.as_str()];
        args.extend_from_slice(extra);
        match Pacserve::try_start(conf, &args) {
            Ok(ps) => {
                assert_eq!(ps.port(), port, "pacserve listens where it was told");
                return ps;
            }
            Err(e) => last = e,
        }
    }
    panic!("could not start pacserve on a free port: {last}");
}

// ---------------------------------------------------------------------------------------------
// A small LAN with known traffic: A holds three packages, static peer B holds one, a static
// peer on a dead port never answers; one package is only on the mirror, one nowhere.

/// One request of the known traffic, as pacserve should count it.
struct Sent {
    path: String,
    status: u16,
    outcome: &'static str,
    bytes: u64,
}

/// Fields drop in order: the daemons first, then the mirror, then the directories.
struct Scene {
    a: Pacserve,
    b: Pacserve,
    dead: u16,
    a_cache: PathBuf,
    repo: Repo,
}

const LOCAL_NAMES: [&str; 3] = ["alpha", "bravo", "charlie"];
const PEER_NAME: &str = "delta";
const MIRROR_NAME: &str = "echo";
const GHOST_FILE: &str = "ghost-1.0-1-x86_64.pkg.tar.zst";

impl Scene {
    fn new(tag: &str) -> Scene {
        // Different sizes, so a byte count that mixes them up shows.
        let repo = Repo::new(
            tag,
            &[
                ("alpha", 3000),
                ("bravo", 5000),
                ("charlie", 9000),
                (PEER_NAME, 4096),
                (MIRROR_NAME, 4096),
            ],
        );
        let (a_cache, a_conf) = repo.host("a");
        let (b_cache, b_conf) = repo.host("b");
        for name in LOCAL_NAMES {
            repo.pkg(name).copy_to(&a_cache);
        }
        repo.pkg(PEER_NAME).copy_to(&b_cache);
        let b = Pacserve::start(&b_conf, &[]);
        let dead = dead_port();
        let a = Pacserve::start(
            &a_conf,
            &[
                "--pacserver",
                &format!("127.0.0.1:{}", b.port()),
                "--pacserver",
                &format!("127.0.0.1:{dead}"),
            ],
        );
        Scene {
            a,
            b,
            dead,
            a_cache,
            repo,
        }
    }

    fn b_addr(&self) -> String {
        format!("127.0.0.1:{}", self.b.port())
    }

    fn dead_addr(&self) -> String {
        format!("127.0.0.1:{}", self.dead)
    }

    fn local_pkgs(&self) -> Vec<&Pkg> {
        LOCAL_NAMES.iter().map(|n| self.repo.pkg(n)).collect()
    }

    fn logs(&self) -> String {
        format!(
            "--- A (port {}):\n{}--- B (port {}):\n{}--- mirror:\n{}",
            self.a.port(),
            self.a.log(),
            self.b.port(),
            self.b.log(),
            self.repo.mirror.dump()
        )
    }

    /// The known traffic: 3 local hits, 1 peer redirect, 1 mirror redirect, 1 miss, each
    /// answer checked as it comes. Each lookup that reaches the LAN finds the dead peer askable
    /// again first, so it fails three times in all and ends backed off for 8 s: long enough
    /// for whatever reads the status next. Returns the requests in the order sent.
    fn traffic(&self) -> Vec<Sent> {
        let mut sent = Vec::new();
        for pkg in self.local_pkgs() {
            let r = get(self.a.port(), &pkg.on("request"));
            assert_eq!(
                r.status,
                200,
                "local hit {}: {}\n{}",
                pkg.file,
                r.head,
                self.logs()
            );
            assert!(r.body == pkg.bytes, "local hit {}: bytes differ", pkg.file);
            sent.push(Sent {
                path: pkg.on("request"),
                status: 200,
                outcome: "local",
                bytes: pkg.size(),
            });
        }

        let peer_pkg = self.repo.pkg(PEER_NAME);
        let r = get(self.a.port(), &peer_pkg.on("request"));
        assert_eq!(r.status, 307, "peer redirect: {}\n{}", r.head, self.logs());
        assert_eq!(
            r.header("location"),
            Some(self.b.url(&peer_pkg.on("request")).as_str()),
            "peer redirect goes to B\n{}",
            self.logs()
        );
        sent.push(Sent {
            path: peer_pkg.on("request"),
            status: 307,
            outcome: "peer",
            bytes: r.body.len() as u64,
        });

        self.wait_dead_askable();
        let mirror_pkg = self.repo.pkg(MIRROR_NAME);
        let r = get(self.a.port(), &mirror_pkg.on("request"));
        assert_eq!(
            r.status,
            307,
            "mirror redirect: {}\n{}",
            r.head,
            self.logs()
        );
        assert_eq!(
            r.header("location"),
            Some(self.repo.mirror.url(&mirror_pkg.mirror_path()).as_str()),
            "mirror redirect goes to the mirror\n{}",
            self.logs()
        );
        sent.push(Sent {
            path: mirror_pkg.on("request"),
            status: 307,
            outcome: "mirror",
            bytes: r.body.len() as u64,
        });

        self.wait_dead_askable();
        let ghost = format!("/request/core/x86_64/{GHOST_FILE}");
        let r = get(self.a.port(), &ghost);
        assert_eq!(r.status, 404, "miss: {}\n{}", r.head, self.logs());
        assert_eq!(r.header("location"), None, "a miss redirects nowhere");
        sent.push(Sent {
            path: ghost,
            status: 404,
            outcome: "miss",
            bytes: r.body.len() as u64,
        });

        self.wait_counted(sent.len());
        sent
    }

    /// `/status.json` of A, parsed.
    fn status(&self) -> Json {
        let r = get(self.a.port(), "/status.json");
        assert_eq!(r.status, 200, "/status.json: {}", r.head);
        let text = String::from_utf8(r.body).expect("/status.json is UTF-8");
        Json::parse(&text).unwrap_or_else(|e| panic!("/status.json is not JSON: {e}\n{text}"))
    }

    /// Wait (bounded) until A would ask the dead peer again.
    fn wait_dead_askable(&self) {
        let dead = self.dead_addr();
        for _ in 0..(BACKOFF_WAIT.as_millis() / POLL.as_millis()) {
            let status = self.status();
            let state = peer_entry(&status, &dead).map(|p| p.field("state").clone());
            if state.as_ref().and_then(Json::as_str) != Some("backed off") {
                return;
            }
            thread::sleep(POLL);
        }
        panic!(
            "the dead peer stayed backed off for {BACKOFF_WAIT:?}\n{}",
            self.logs()
        );
    }

    /// Wait (bounded) until A's counters include `n` lookups; the asserts come after.
    fn wait_counted(&self, n: usize) {
        let deadline = Instant::now() + COUNTER_WAIT;
        while Instant::now() < deadline {
            let status = self.status();
            if status
                .get("recent")
                .and_then(Json::as_array)
                .map(<[_]>::len)
                >= Some(n)
            {
                return;
            }
            thread::sleep(POLL);
        }
    }
}

/// The entry of `/status.json`'s `peers` whose address is `addr`.
fn peer_entry<'a>(status: &'a Json, addr: &str) -> Option<&'a Json> {
    status
        .get("peers")?
        .as_array()?
        .iter()
        .find(|p| p.get("address").and_then(Json::as_str) == Some(addr))
}

// ---------------------------------------------------------------------------------------------
// A JSON parser (RFC 8259), strict: one value, no trailing bytes, no duplicate keys.

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    /// The number's text, checked against the grammar.
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

/// Deepest nesting accepted; the parser recurses once per level.
const JSON_MAX_DEPTH: usize = 64;

impl Json {
    fn parse(text: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        p.ws();
        if p.i != p.s.len() {
            return p.err("trailing bytes");
        }
        Ok(v)
    }

    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// `self[key]`, or a panic naming the key and the value.
    fn field(&self, key: &str) -> &Json {
        self.get(key)
            .unwrap_or_else(|| panic!("no {key:?} in {self:?}"))
    }

    fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Num(n) => n.parse().ok(),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(v) => Some(v),
            _ => None,
        }
    }

    /// The field `key` as a number, or a panic.
    fn num(&self, key: &str) -> u64 {
        let v = self.field(key);
        v.as_u64()
            .unwrap_or_else(|| panic!("{key:?} is not a count: {v:?}"))
    }

    /// The field `key` as a string, or a panic.
    fn text(&self, key: &str) -> &str {
        let v = self.field(key);
        v.as_str()
            .unwrap_or_else(|| panic!("{key:?} is not a string: {v:?}"))
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at byte {}", self.i))
    }

    fn ws(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        let hit = self.s[self.i..].starts_with(lit.as_bytes());
        if hit {
            self.i += lit.len();
        }
        hit
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > JSON_MAX_DEPTH {
            return self.err("nested too deep");
        }
        self.ws();
        match self.s.get(self.i) {
            None => self.err("unexpected end"),
            Some(b'{') => {
                self.i += 1;
                let mut members: Vec<(String, Json)> = Vec::new();
                self.ws();
                if self.eat("}") {
                    return Ok(Json::Obj(members));
                }
                loop {
                    self.ws();
                    if self.s.get(self.i) != Some(&b'"') {
                        return self.err("expected a key");
                    }
                    let key = self.string()?;
                    if members.iter().any(|(k, _)| *k == key) {
                        return self.err(&format!("duplicate key {key:?}"));
                    }
                    self.ws();
                    if !self.eat(":") {
                        return self.err("expected ':'");
                    }
                    members.push((key, self.value(depth + 1)?));
                    self.ws();
                    if self.eat("}") {
                        return Ok(Json::Obj(members));
                    }
                    if !self.eat(",") {
                        return self.err("expected ',' or '}'");
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat("]") {
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    if self.eat("]") {
                        return Ok(Json::Arr(items));
                    }
                    if !self.eat(",") {
                        return self.err("expected ',' or ']'");
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) if self.eat("true") => Ok(Json::Bool(true)),
            Some(_) if self.eat("false") => Ok(Json::Bool(false)),
            Some(_) if self.eat("null") => Ok(Json::Null),
            Some(_) => self.err("unexpected byte"),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.i;
        self.eat("-");
        if !self.eat("0") && self.digits() == 0 {
            return self.err("expected digits");
        }
        if self.eat(".") && self.digits() == 0 {
            return self.err("expected fraction digits");
        }
        if self.eat("e") || self.eat("E") {
            if !self.eat("+") {
                self.eat("-");
            }
            if self.digits() == 0 {
                return self.err("expected exponent digits");
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).expect("ASCII digits");
        Ok(Json::Num(text.to_string()))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let v = self
            .s
            .get(self.i..self.i + 4)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match v {
            Some(v) => {
                self.i += 4;
                Ok(v)
            }
            None => self.err("bad \\u escape"),
        }
    }

    /// A string; `self.i` is at its opening quote.
    fn string(&mut self) -> Result<String, String> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let start = self.i;
            while self
                .s
                .get(self.i)
                .is_some_and(|&c| c != b'"' && c != b'\\' && c >= 0x20)
            {
                self.i += 1;
            }
            // The input is a &str and the run stops only at ASCII bytes: still UTF-8.
            out.push_str(std::str::from_utf8(&self.s[start..self.i]).expect("UTF-8 run"));
            let Some(&c) = self.s.get(self.i) else {
                return self.err("unterminated string");
            };
            self.i += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return self.err("unterminated escape");
                    };
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = match hi {
                                0xD800..=0xDBFF => {
                                    if !self.eat("\\u") {
                                        return self.err("lone high surrogate");
                                    }
                                    let lo = self.hex4()?;
                                    if !(0xDC00..=0xDFFF).contains(&lo) {
                                        return self.err("bad low surrogate");
                                    }
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                }
                                0xDC00..=0xDFFF => return self.err("lone low surrogate"),
                                _ => hi,
                            };
                            out.push(char::from_u32(code).expect("not a surrogate"));
                        }
                        _ => return self.err("bad escape"),
                    }
                }
                _ => return self.err("control character in a string"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus text exposition format 0.0.4, strict: only HELP, TYPE and sample lines; every
// family's HELP and TYPE once, before its samples; a family's samples together.

#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

#[derive(Debug)]
struct Family {
    name: String,
    help: Option<String>,
    kind: Option<String>,
    samples: usize,
}

#[derive(Debug)]
struct Exposition {
    families: Vec<Family>,
    samples: Vec<Sample>,
}

impl Exposition {
    fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// The value of the sample `name` with exactly `labels` (in any order).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .map(|s| s.value)
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A sample value: a Go-style float, `+Inf`, `-Inf` or `NaN`.
fn parse_metric_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

/// `name{label="value",…} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels: Vec<(String, String)> = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once("=\"").ok_or("label without =\"")?;
            if !is_label_name(key) {
                return Err(format!("bad label name {key:?}"));
            }
            if labels.iter().any(|(k, _)| k == key) {
                return Err(format!("label {key:?} given twice"));
            }
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err("unterminated label value".into()),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => return Err(format!("bad escape in a label value: {other:?}")),
                    },
                    Some((_, '\n')) => return Err("raw newline in a label value".into()),
                    Some((_, c)) => value.push(c),
                }
            };
            labels.push((key.to_string(), value));
            rest = &after[end + 1..];
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with('}') {
                return Err("expected ',' or '}' after a label".into());
            }
        }
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or("expected one space before the value")?;
    let mut fields = rest.split(' ');
    let value = fields.next().unwrap_or("");
    let value = parse_metric_value(value).ok_or_else(|| format!("bad value {value:?}"))?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if fields.next().is_some() {
        return Err("extra fields after the value".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_exposition(text: &str) -> Result<Exposition, String> {
    if !text.ends_with('\n') {
        return Err("the text does not end with a newline".into());
    }
    let mut families: Vec<Family> = Vec::new();
    let mut samples: Vec<Sample> = Vec::new();
    // The family the last HELP or TYPE line named: samples must belong to it.
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let at = |m: &str| format!("line {}: {m}: {line:?}", n + 1);
        let meta = line
            .strip_prefix("# HELP ")
            .map(|r| ("HELP", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("TYPE", r)));
        if let Some((what, rest)) = meta {
            let (name, value) = rest
                .split_once(' ')
                .ok_or_else(|| at(&format!("{what} without text")))?;
            if !is_metric_name(name) {
                return Err(at("bad metric name"));
            }
            if current.as_deref() != Some(name) && families.iter().any(|f| f.name == name) {
                return Err(at("family split in two"));
            }
            if current.as_deref() != Some(name) {
                families.push(Family {
                    name: name.to_string(),
                    help: None,
                    kind: None,
                    samples: 0,
                });
                current = Some(name.to_string());
            }
            let f = families.last_mut().expect("just pushed or current");
            if f.samples > 0 {
                return Err(at(&format!("{what} after the family's samples")));
            }
            let slot = if what == "HELP" {
                &mut f.help
            } else {
                if !matches!(
                    value,
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ) {
                    return Err(at("unknown TYPE"));
                }
                &mut f.kind
            };
            if slot.is_some() {
                return Err(at(&format!("second {what}")));
            }
            *slot = Some(value.to_string());
        } else if line.starts_with('#') {
            return Err(at("a comment that is neither HELP nor TYPE"));
        } else {
            let s = parse_sample(line).map_err(|e| at(&e))?;
            let f = families
                .last_mut()
                .filter(|f| f.name == s.name)
                .ok_or_else(|| at("sample outside its family's HELP and TYPE"))?;
            if f.help.is_none() || f.kind.is_none() {
                return Err(at("sample before its family's HELP and TYPE"));
            }
            let dup = samples.iter().any(|o| {
                o.name == s.name
                    && o.labels.len() == s.labels.len()
                    && o.labels.iter().all(|l| s.labels.contains(l))
            });
            if dup {
                return Err(at("the same series twice"));
            }
            f.samples += 1;
            samples.push(s);
        }
    }
    if let Some(f) = families
        .iter()
        .find(|f| f.help.is_none() || f.kind.is_none())
    {
        return Err(format!("family {} lacks HELP or TYPE", f.name));
    }
    Ok(Exposition { families, samples })
}

// ---------------------------------------------------------------------------------------------
// Bounded runs in their own process group (chromium and pacsrv start children of their own)

struct Run {
    pid: u32,
    /// None when the run was killed at its time limit.
    status: Option<ExitStatus>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    fn text(&self) -> String {
        format!(
            "status {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.status,
            preview(&self.stdout),
            self.stderr
        )
    }
}

/// A started process group; its leader is waited for, and if still running when this drops
/// (time limit, or a panic), the whole group is killed by its id first.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            // The leader is not yet reaped, so its pid (the group's id) cannot be reused.
            if let Some(pgid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
            }
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Run `cmd` in a new process group with stdin closed, stdout and stderr into files under `dir`
/// (named after `tag`); kill the group after `limit`.
fn run_grouped(cmd: &mut Command, dir: &Path, tag: &str, limit: Duration) -> Run {
    let out_path = dir.join(format!("{tag}.stdout"));
    let err_path = dir.join(format!("{tag}.stderr"));
    let out = fs::File::create(&out_path).expect("create stdout file");
    let err = fs::File::create(&err_path).expect("create stderr file");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut group = Group(child);
    let pid = group.0.id();
    let deadline = Instant::now() + limit;
    let status = loop {
        match group.0.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => break None,
        }
    };
    drop(group);
    Run {
        pid,
        status,
        stdout: fs::read(&out_path).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&fs::read(&err_path).unwrap_or_default()).into_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Headless chromium

/// chromium loading `url` with everything but that page turned off; `mode` is
/// `--screenshot=FILE` or `--dump-dom`. Its profile, home and caches live in `dir`.
fn chromium(dir: &TempDir, tag: &str, mode: &str, url: &str) -> Run {
    common::preflight::require();
    let profile = dir.mkdir(format!("profile-{tag}"));
    let home = dir.mkdir(format!("home-{tag}"));
    run_grouped(
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                // No name resolves: the page is on a literal 127.0.0.1.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--window-size={SHOT_WIDTH},{SHOT_HEIGHT}"))
            .arg(mode)
            .arg(url)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("LC_ALL", "C"),
        dir.path(),
        tag,
        BROWSER_LIMIT,
    )
}

/// CRC-32 (ISO-HDLC), as PNG chunks carry it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Check a PNG's structure: signature, IHDR first, every chunk's CRC, IDAT present, IEND last
/// with nothing after it. Returns (width, height).
fn check_png(png: &[u8]) -> Result<(u32, u32), String> {
    const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    if !png.starts_with(&SIGNATURE) {
        return Err("no PNG signature".into());
    }
    let mut chunks: Vec<(&[u8], &[u8])> = Vec::new();
    let mut i = SIGNATURE.len();
    // Each round consumes at least 12 bytes, so this ends.
    while i < png.len() {
        let head = png.get(i..i + 8).ok_or("chunk head cut short")?;
        let len = be32(head) as usize;
        let end = i
            .checked_add(12 + len)
            .filter(|&e| e <= png.len())
            .ok_or("chunk cut short")?;
        let kind = &png[i + 4..i + 8];
        if crc32(&png[i + 4..end - 4]) != be32(&png[end - 4..end]) {
            return Err(format!("bad CRC in {}", String::from_utf8_lossy(kind)));
        }
        chunks.push((kind, &png[i + 8..end - 4]));
        i = end;
        if kind == b"IEND" {
            break;
        }
    }
    if i != png.len() {
        return Err(format!("{} bytes after IEND", png.len() - i));
    }
    let (kind, ihdr) = chunks.first().ok_or("no chunks")?;
    if *kind != b"IHDR" || ihdr.len() != 13 {
        return Err("the first chunk is not a 13-byte IHDR".into());
    }
    let (width, height) = (be32(&ihdr[0..4]), be32(&ihdr[4..8]));
    let (depth, color) = (ihdr[8], ihdr[9]);
    if !matches!(depth, 1 | 2 | 4 | 8 | 16) || !matches!(color, 0 | 2 | 3 | 4 | 6) {
        return Err(format!("bad bit depth {depth} or colour type {color}"));
    }
    if ihdr[10] != 0 || ihdr[11] != 0 || ihdr[12] > 1 {
        return Err("bad compression, filter or interlace method".into());
    }
    if !chunks.iter().any(|(k, d)| *k == b"IDAT" && !d.is_empty()) {
        return Err("no image data".into());
    }
    if chunks.last().map(|(k, _)| *k) != Some(&b"IEND"[..]) {
        return Err("no IEND".into());
    }
    Ok((width, height))
}

fn html_text(fragment: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in fragment.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
        .trim()
        .to_string()
}

/// What follows the start tag carrying `id="ID"`, up to `close`; None unless exactly one
/// element has that id.
fn by_id<'a>(dom: &'a str, id: &str, close: &str) -> Option<&'a str> {
    let attr = format!("id=\"{id}\"");
    if dom.matches(&attr).count() != 1 {
        return None;
    }
    let rest = &dom[dom.find(&attr)?..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find(close)?;
    Some(&rest[start..start + end])
}

/// The number a counter card shows in bold.
fn card_count(dom: &str, id: &str) -> Option<u64> {
    let card = by_id(dom, id, "</div>")?;
    let bold = &card[card.find("<b>")? + 3..];
    html_text(&bold[..bold.find("</b>")?]).parse().ok()
}

/// The cells' text of each row of a table that has `<td>` cells.
fn table_rows(table: &str) -> Vec<Vec<String>> {
    table
        .split("<tr")
        .skip(1)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .filter_map(|cell| {
                    let body = &cell[cell.find('>')? + 1..];
                    Some(html_text(&body[..body.find("</td>")?]))
                })
                .collect::<Vec<_>>()
        })
        .filter(|cells| !cells.is_empty())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. The status page in a real browser

#[test]
fn status_page_renders_in_a_headless_browser() {
    let scene = Scene::new("browser");
    let sent = scene.traffic();
    let shots = TempDir::new("chromium");
    let url = scene.a.url("/");

    // The DOM first: the dead peer's backoff (8 s) must still run when the page is read.
    let run = chromium(&shots, "dom", "--dump-dom", &url);
    assert!(
        run.status.is_some_and(|s| s.success()),
        "chromium --dump-dom failed:\n{}",
        run.text()
    );
    let dom = String::from_utf8_lossy(&run.stdout).into_owned();
    let why = || format!("--- DOM:\n{dom}\n{}", scene.logs());
    assert!(
        dom.contains("<h1>pacserve "),
        "not the status page\n{}",
        why()
    );

    for (id, want) in [
        ("count-local", 3),
        ("count-peer", 1),
        ("count-mirror", 1),
        ("count-miss", 1),
    ] {
        assert_eq!(card_count(&dom, id), Some(want), "card {id}\n{}", why());
    }

    let peers = by_id(&dom, "peers", "</table>")
        .unwrap_or_else(|| panic!("no table id=\"peers\"\n{}", why()));
    let rows = table_rows(peers);
    assert_eq!(rows.len(), 2, "two peer rows: {rows:?}\n{}", why());
    let row = |addr: &str| {
        rows.iter()
            .find(|r| r.first().map(String::as_str) == Some(addr))
            .unwrap_or_else(|| panic!("no row for {addr} in {rows:?}\n{}", why()))
    };
    // Columns: address, source, last seen, state, backoff.
    let b = row(&scene.b_addr());
    assert_eq!(b[1], "static", "B's source: {b:?}");
    assert_eq!(b[3], "ok", "B answered, so it is ok: {b:?}");
    let dead = row(&scene.dead_addr());
    assert_eq!(dead[1], "static", "the dead peer's source: {dead:?}");
    assert_eq!(dead[2], "never", "the dead peer never answered: {dead:?}");
    // Backed off, or (on a slow machine, once the backoff ran out) failing: never ok.
    assert!(
        dead[3] == "backed off" || dead[3] == "failing",
        "the dead peer's state: {dead:?}"
    );
    assert!(
        dead[4].starts_with("3 failures"),
        "the dead peer's backoff: {dead:?}"
    );

    let recent = by_id(&dom, "recent", "</table>")
        .unwrap_or_else(|| panic!("no table id=\"recent\"\n{}", why()));
    let recent_text = html_text(recent);
    for s in &sent {
        assert!(
            recent_text.contains(&s.path),
            "{} not among the recent lookups\n{}",
            s.path,
            why()
        );
    }

    // Then a picture of the same page (its counters now include the DOM run's /favicon.ico).
    let png_path = shots.join("status.png");
    let run = chromium(
        &shots,
        "screenshot",
        &format!("--screenshot={}", png_path.display()),
        &url,
    );
    assert!(
        run.status.is_some_and(|s| s.success()),
        "chromium --screenshot failed:\n{}",
        run.text()
    );
    let png = fs::read(&png_path).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {}: {e}\n{}",
            png_path.display(),
            run.text()
        )
    });
    assert!(!png.is_empty(), "the screenshot is empty");
    let size = check_png(&png).unwrap_or_else(|e| panic!("the screenshot is no valid PNG: {e}"));
    assert_eq!(size, (SHOT_WIDTH, SHOT_HEIGHT), "screenshot size");
    if let Some(keep) = std::env::var_os("PACSERVE_KEEP_SCREENSHOT") {
        // For a human to look at; never inside the repository unless asked.
        fs::write(&keep, &png).expect("copy the screenshot");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. /status.json

#[test]
fn status_json_counts_the_known_traffic() {
    let scene = Scene::new("json");
    let sent = scene.traffic();
    let r = get(scene.a.port(), "/status.json");
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let text = String::from_utf8(r.body).expect("UTF-8");
    let status = Json::parse(&text).unwrap_or_else(|e| panic!("not JSON: {e}\n{text}"));
    let why = || format!("--- status.json:\n{text}\n{}", scene.logs());

    assert_eq!(
        status.text("version"),
        env!("CARGO_PKG_VERSION"),
        "{}",
        why()
    );
    assert_eq!(
        status.num("packages"),
        3,
        "A holds three packages\n{}",
        why()
    );
    assert_eq!(status.field("multicast"), &Json::Null, "{}", why());
    assert_eq!(
        status.field("cache_dirs"),
        &Json::Arr(vec![Json::Str(format!("{}/", scene.a_cache.display()))]),
        "A's cache dir as pacman.conf names it\n{}",
        why()
    );
    assert!(status.field("uptime_secs").as_u64().is_some(), "{}", why());

    let requests = status.field("requests");
    for (outcome, want) in [
        ("local", 3),
        ("peer", 1),
        ("mirror", 1),
        ("miss", 1),
        ("bad", 0),
    ] {
        assert_eq!(requests.num(outcome), want, "requests.{outcome}\n{}", why());
    }
    let local_bytes: u64 = scene.local_pkgs().iter().map(|p| p.size()).sum();
    assert_eq!(
        status.num("bytes_saved"),
        local_bytes,
        "bytes_saved is what the local hits sent\n{}",
        why()
    );
    assert!(
        status.num("bytes_served") >= local_bytes,
        "bytes_served includes the local hits\n{}",
        why()
    );

    let peers = status.field("peers").as_array().expect("peers is an array");
    assert_eq!(peers.len(), 2, "{}", why());
    let b =
        peer_entry(&status, &scene.b_addr()).unwrap_or_else(|| panic!("no entry for B\n{}", why()));
    assert_eq!(b.text("source"), "static");
    assert_eq!(b.text("state"), "ok", "B answered\n{}", why());
    assert_eq!(b.num("failures"), 0);
    assert_eq!(b.field("retry_in_secs"), &Json::Null);
    assert!(
        b.field("last_seen_secs").as_u64().is_some(),
        "B was heard from\n{}",
        why()
    );
    let dead = peer_entry(&status, &scene.dead_addr())
        .unwrap_or_else(|| panic!("no entry for the dead peer\n{}", why()));
    assert_eq!(dead.text("source"), "static");
    assert!(
        ["backed off", "failing"].contains(&dead.text("state")),
        "{}",
        why()
    );
    assert_eq!(
        dead.num("failures"),
        3,
        "it failed each LAN lookup\n{}",
        why()
    );
    assert_eq!(dead.field("last_seen_secs"), &Json::Null, "never answered");
    let retry = dead.num("retry_in_secs");
    assert!(
        (1..=8).contains(&retry),
        "the third failure backs off for 8 s, not {retry}\n{}",
        why()
    );

    let recent = status
        .field("recent")
        .as_array()
        .expect("recent is an array");
    let got: Vec<(String, u64, String, u64, String)> = recent
        .iter()
        .map(|r| {
            (
                r.text("path").to_string(),
                r.num("status"),
                r.text("outcome").to_string(),
                r.num("bytes"),
                r.text("method").to_string(),
            )
        })
        .collect();
    let want: Vec<(String, u64, String, u64, String)> = sent
        .iter()
        .rev()
        .map(|s| {
            (
                s.path.clone(),
                u64::from(s.status),
                s.outcome.to_string(),
                s.bytes,
                "GET".to_string(),
            )
        })
        .collect();
    assert_eq!(got, want, "recent: the lookups, newest first\n{}", why());
    let times: Vec<u64> = recent.iter().map(|r| r.num("at")).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "recent is newest first: {times:?}"
    );
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

// ---------------------------------------------------------------------------------------------
// 3. /metrics

#[test]
fn metrics_follow_the_exposition_format_and_count_the_traffic() {
    let scene = Scene::new("metrics");
    scene.traffic();
    let r = get(scene.a.port(), "/metrics");
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain") && t.contains("version=0.0.4")),
        "Content-Type: {:?}",
        r.header("content-type")
    );
    let text = String::from_utf8(r.body).expect("UTF-8");
    let why = || format!("--- metrics:\n{text}\n{}", scene.logs());
    for line in text.lines() {
        assert!(
            line.starts_with("# HELP pacserve_")
                || line.starts_with("# TYPE pacserve_")
                || (line.starts_with("pacserve_") && parse_sample(line).is_ok()),
            "line {line:?} is none of HELP, TYPE or a pacserve sample\n{}",
            why()
        );
    }
    let m = parse_exposition(&text)
        .unwrap_or_else(|e| panic!("not the exposition format: {e}\n{}", why()));

    for (name, kind) in [
        ("pacserve_requests_total", "counter"),
        ("pacserve_bytes_served_total", "counter"),
        ("pacserve_bytes_saved_total", "counter"),
        ("pacserve_uptime_seconds", "gauge"),
        ("pacserve_cached_packages", "gauge"),
        ("pacserve_peers", "gauge"),
        ("pacserve_peer_up", "gauge"),
    ] {
        let f = m
            .family(name)
            .unwrap_or_else(|| panic!("no family {name}\n{}", why()));
        assert_eq!(f.kind.as_deref(), Some(kind), "TYPE of {name}");
        assert!(
            f.help.as_deref().is_some_and(|h| !h.trim().is_empty()),
            "HELP of {name} says something"
        );
        assert!(f.samples > 0, "{name} has samples\n{}", why());
    }

    for (outcome, want) in [
        ("local", 3.0),
        ("peer", 1.0),
        ("mirror", 1.0),
        ("miss", 1.0),
        ("bad", 0.0),
    ] {
        assert_eq!(
            m.value("pacserve_requests_total", &[("outcome", outcome)]),
            Some(want),
            "pacserve_requests_total{{outcome=\"{outcome}\"}}\n{}",
            why()
        );
    }
    let local_bytes: u64 = scene.local_pkgs().iter().map(|p| p.size()).sum();
    assert_eq!(
        m.value("pacserve_bytes_saved_total", &[]),
        Some(local_bytes as f64),
        "{}",
        why()
    );
    assert_eq!(m.value("pacserve_cached_packages", &[]), Some(3.0));
    assert_eq!(m.value("pacserve_peers", &[]), Some(2.0));
    let b = scene.b_addr();
    let dead = scene.dead_addr();
    assert_eq!(
        m.value(
            "pacserve_peer_up",
            &[("peer", b.as_str()), ("source", "static")]
        ),
        Some(1.0),
        "B is up\n{}",
        why()
    );
    assert_eq!(
        m.value(
            "pacserve_peer_up",
            &[("peer", dead.as_str()), ("source", "static")]
        ),
        Some(0.0),
        "the dead peer is backed off\n{}",
        why()
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

// ---------------------------------------------------------------------------------------------
// 4. /cache/ for pacman's CacheServer

#[test]
fn cache_route_serves_the_lan_and_never_the_mirrors() {
    let repo = Repo::new(
        "cache-route",
        &[("kilo", 4096), ("lima", 4096), ("mike", 4096)],
    );
    let (a_cache, a_conf) = repo.host("a");
    let (b_cache, b_conf) = repo.host("b");
    let (local, held, remote) = (repo.pkg("kilo"), repo.pkg("lima"), repo.pkg("mike"));
    local.copy_to(&a_cache);
    held.copy_to(&b_cache);
    let b = Pacserve::start(&b_conf, &[]);
    let a = Pacserve::start(
        &a_conf,
        &["--pacserver", &format!("127.0.0.1:{}", b.port())],
    );
    let logs = || {
        format!(
            "--- A:\n{}--- B:\n{}--- mirror:\n{}",
            a.log(),
            b.log(),
            repo.mirror.dump()
        )
    };

    // A LAN miss of a file the mirror has: a plain 404, and the mirror is not asked.
    let r = get(a.port(), &remote.on("cache"));
    assert_eq!(r.status, 404, "LAN miss: {}\n{}", r.head, logs());
    assert_eq!(r.header("location"), None, "a miss redirects nowhere");
    assert!(
        b.wait_request(LOG_WAIT, |l| l.path == remote.on("peer") && l.status == 404)
            .is_some(),
        "A asked B before answering 404\n{}",
        logs()
    );
    thread::sleep(SETTLE);
    assert_eq!(
        repo.mirror.asked(&remote.file),
        0,
        "the mirror was probed for a /cache/ miss\n{}",
        logs()
    );
    // The same file on /request/ does go to the mirror: the 404 above is the route's doing.
    let r = get(a.port(), &remote.on("request"));
    assert_eq!(r.status, 307, "{}\n{}", r.head, logs());
    assert_eq!(
        r.header("location"),
        Some(repo.mirror.url(&remote.mirror_path()).as_str())
    );

    // A local hit: 200 and the same bytes.
    let r = get(a.port(), &local.on("cache"));
    assert_eq!(r.status, 200, "local hit: {}\n{}", r.head, logs());
    assert_eq!(r.content_length(), Some(local.size()));
    assert!(r.body == local.bytes, "local hit: bytes differ");

    // Held by peer B: 307 to B's /request/ URL, which serves the same bytes.
    let r = get(a.port(), &held.on("cache"));
    assert_eq!(r.status, 307, "peer hit: {}\n{}", r.head, logs());
    let want = b.url(&held.on("request"));
    assert_eq!(r.header("location"), Some(want.as_str()), "{}", logs());
    let r = get(b.port(), &held.on("request"));
    assert_eq!(r.status, 200, "B serves its package: {}", r.head);
    assert!(r.body == held.bytes, "B's copy: bytes differ");

    // Databases are not a CacheServer's business: 404 without asking anyone.
    for db in ["core.db", "core.files", "core.db.sig"] {
        let path = format!("/cache/core/x86_64/{db}");
        let r = get(a.port(), &path);
        assert_eq!(r.status, 404, "{path}: {}\n{}", r.head, logs());
        assert_eq!(r.header("location"), None, "{path} redirects nowhere");
    }
    thread::sleep(SETTLE);
    assert_eq!(repo.mirror.asked("core.db"), 0, "{}", logs());
    assert_eq!(repo.mirror.asked("core.files"), 0, "{}", logs());
    assert_eq!(repo.mirror.asked("core.db.sig"), 0, "{}", logs());
    assert!(
        !b.log().contains("/peer/core/x86_64/core."),
        "a database was asked of a peer\n{}",
        logs()
    );
}

// ---------------------------------------------------------------------------------------------
// 5. pacsrv with the real pacman

/// A `$PACMAN` for pacsrv that notes its arguments, the temp dir's listing and a copy of the
/// config it was given, then runs the real pacman with the same arguments.
fn recording_pacman(dir: &TempDir) -> (PathBuf, PathBuf) {
    let rec = dir.mkdir("record");
    let script = dir.join("pacman-recorder");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             rec='{}'\n\
             printf '%s\\n' \"$@\" > \"$rec/args\"\n\
             ls -1A \"$TMPDIR\" > \"$rec/tmpdir\"\n\
             prev=\n\
             for a in \"$@\"; do\n\
             \x20   if [ \"$prev\" = --config ]; then cp \"$a\" \"$rec/config\"; fi\n\
             \x20   prev=$a\n\
             done\n\
             exec pacman \"$@\"\n",
            rec.display()
        ),
    )
    .expect("write the recorder");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod the recorder");
    (script, rec)
}

/// `pacserve pacsrv --port PORT ARGS…` with a private TMPDIR, bounded.
fn pacsrv(
    port: u16,
    args: &[&str],
    tmp: &Path,
    pacman: Option<&Path>,
    out: &TempDir,
    tag: &str,
) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pacserve"));
    cmd.arg("pacsrv")
        .arg("--port")
        .arg(port.to_string())
        .args(args)
        .env("TMPDIR", tmp)
        .env("LC_ALL", "C");
    match pacman {
        Some(p) => cmd.env("PACMAN", p),
        None => cmd.env_remove("PACMAN"),
    };
    run_grouped(&mut cmd, out.path(), tag, PACMAN_LIMIT)
}

/// The pacsrv-*.conf files in `dir`.
fn temp_confs(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .expect("read the temp dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pacsrv-") && n.ends_with(".conf"))
        .collect()
}

#[test]
fn pacsrv_runs_the_real_pacman_through_pacserve() {
    let repo = Repo::new("pacsrv", &[("xray", 6000), ("yankee", 4096)]);
    let x = repo.pkg("xray");
    let (cache, conf) = repo.host("server");
    x.copy_to(&cache);
    let ps = start_on_known_port(&conf, &[]);
    let port = ps.port();
    let work = TempDir::new("pacsrv-work");
    let tmp = work.mkdir("tmp");
    let (recorder, rec) = recording_pacman(&work);
    let client = PacmanClient::new("core", &[repo.server()]);
    let client_conf = client.conf_path().display().to_string();
    let logs = || {
        format!(
            "--- pacserve:\n{}--- mirror:\n{}",
            ps.log(),
            repo.mirror.dump()
        )
    };

    // -Sy: the database comes from the mirror, by way of pacserve's redirect.
    let run = pacsrv(
        port,
        &[
            "--config",
            &client_conf,
            "--noprogressbar",
            "-Sy",
            "--noconfirm",
        ],
        &tmp,
        None,
        &work,
        "sync",
    );
    assert_eq!(
        run.code(),
        Some(0),
        "pacsrv -Sy\n{}\n{}",
        run.text(),
        logs()
    );
    assert!(
        ps.wait_request(LOG_WAIT, |l| l.path == "/request/core/x86_64/core.db"
            && l.status == 307
            && l.outcome == "mirror")
            .is_some(),
        "pacman asked pacserve for the database\n{}",
        logs()
    );
    assert!(
        client.sync_db().is_file(),
        "the database arrived\n{}",
        logs()
    );
    assert!(repo.mirror.served("/core.db") >= 1, "{}", logs());

    // -Sw X: X comes from pacserve's cache, byte for byte; the mirror never serves it.
    let run = pacsrv(
        port,
        &[
            "--config",
            &client_conf,
            "--noprogressbar",
            "-Sw",
            "--noconfirm",
            "xray",
        ],
        &tmp,
        Some(&recorder),
        &work,
        "download",
    );
    assert_eq!(
        run.code(),
        Some(0),
        "pacsrv -Sw\n{}\n{}",
        run.text(),
        logs()
    );
    let got = client
        .cached(&x.file)
        .unwrap_or_else(|| panic!("{} not in the client's cache\n{}", x.file, logs()));
    assert!(
        got == x.bytes,
        "the downloaded package differs from the original"
    );
    assert!(
        ps.wait_request(LOG_WAIT, |l| l.method == "GET"
            && l.path == x.on("request")
            && l.status == 200
            && l.outcome == "local"
            && l.bytes == x.size())
            .is_some(),
        "pacserve's log lacks the local 200 for {}\n{}",
        x.file,
        logs()
    );
    assert_eq!(
        repo.mirror.asked(&x.file),
        0,
        "the mirror saw {}\n{}",
        x.file,
        logs()
    );

    // What pacman was given: a temporary config named after pacsrv's pid, in TMPDIR, with
    // pacserve first and the mirror after it; gone once pacsrv is done.
    let args = fs::read_to_string(rec.join("args")).expect("the recorder ran");
    let args: Vec<&str> = args.lines().collect();
    let at = args
        .iter()
        .position(|a| *a == "--config")
        .unwrap_or_else(|| panic!("no --config in {args:?}"));
    let temp_conf = PathBuf::from(args[at + 1]);
    let temp_name = temp_conf
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert_eq!(temp_conf.parent(), Some(tmp.as_path()), "{args:?}");
    assert!(
        temp_name.starts_with(&format!("pacsrv-{}-", run.pid)) && temp_name.ends_with(".conf"),
        "temp config {temp_name:?} is not pacsrv-{}-*.conf",
        run.pid
    );
    let listing = fs::read_to_string(rec.join("tmpdir")).expect("the recorder listed TMPDIR");
    assert!(
        listing.lines().any(|l| l == temp_name),
        "{temp_name} was not in TMPDIR while pacman ran: {listing:?}"
    );
    let mut rest: Vec<&str> = args.clone();
    rest.drain(at..at + 2);
    assert_eq!(
        rest,
        ["--noprogressbar", "-Sw", "--noconfirm", "xray"],
        "pacman's other arguments are passed unchanged"
    );
    let used = pacserve::config::pacman_conf::load(&rec.join("config"))
        .unwrap_or_else(|e| panic!("the temp config does not parse: {e}"));
    assert_eq!(
        used.repo("core").map(|r| r.servers.clone()),
        Some(vec![
            format!("http://localhost:{port}/request/core/$arch"),
            repo.mirror.url("/core/os/$arch"),
        ]),
        "pacserve first, then the client's own mirror"
    );
    assert!(
        !temp_conf.exists(),
        "{} is left behind",
        temp_conf.display()
    );
    assert_eq!(temp_confs(&tmp), Vec::<String>::new(), "temp configs left");

    // pacman's exit code is pacsrv's: compare with pacman run directly.
    let direct = client.run(&["-S", "--noconfirm", "doesnotexist"]);
    let run = pacsrv(
        port,
        &[
            "--config",
            &client_conf,
            "--noprogressbar",
            "-S",
            "--noconfirm",
            "doesnotexist",
        ],
        &tmp,
        None,
        &work,
        "missing",
    );
    assert!(
        direct.code().is_some_and(|c| c != 0),
        "pacman fails on an unknown target: {direct:?}"
    );
    assert_eq!(
        run.code(),
        direct.code(),
        "pacsrv passes pacman's exit code on\n{}",
        run.text()
    );
    assert!(
        run.stderr.contains("target not found: doesnotexist"),
        "pacman's own message\n{}",
        run.text()
    );
    assert_eq!(temp_confs(&tmp), Vec::<String>::new(), "temp configs left");

    // No pacserve on the port: pacsrv says so and runs pacman unchanged.
    let fresh = PacmanClient::new("core", &[repo.server()]);
    let fresh_conf = fresh.conf_path().display().to_string();
    let nobody = dead_port();
    let plain = [
        "--config",
        fresh_conf.as_str(),
        "--noprogressbar",
        "-Sy",
        "--noconfirm",
    ];
    let run = pacsrv(nobody, &plain, &tmp, Some(&recorder), &work, "no-daemon");
    assert_eq!(
        run.code(),
        Some(0),
        "pacsrv without pacserve\n{}",
        run.text()
    );
    assert!(
        run.stderr
            .contains(&format!("not running on localhost:{nobody}")),
        "pacsrv says pacserve is not running\n{}",
        run.text()
    );
    let args = fs::read_to_string(rec.join("args")).expect("the recorder ran");
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        plain,
        "pacman got exactly the arguments given"
    );
    assert!(
        fresh.sync_db().is_file(),
        "the database arrived from the mirror"
    );
    assert_eq!(temp_confs(&tmp), Vec::<String>::new(), "temp configs left");
}

// ---------------------------------------------------------------------------------------------
// 6. print-pacman-conf

#[test]
fn print_pacman_conf_puts_pacserve_first_in_every_repo() {
    let dir = TempDir::new("print-conf");
    let mirrorlist = dir.join("mirrorlist");
    fs::write(
        &mirrorlist,
        "## A mirror list\n\
         #Server = http://commented.example.invalid/$repo/os/$arch\n\
         Server = http://127.0.0.1:9/archlinux/$repo/os/$arch\n\
         Server = https://mirror.example.invalid/archlinux/$repo/os/$arch\n",
    )
    .expect("write mirrorlist");
    let original = format!(
        "# pacman.conf for print-pacman-conf\n\
         [options]\n\
         # comments stay\n\
         HoldPkg = pacman glibc\n\
         Architecture = x86_64\n\
         CacheDir = {cache}/\n\
         SigLevel = Never\n\
         \n\
         # The official repository, through the mirror list\n\
         [core]\n\
         Include = {mirrorlist}\n\
         \n\
         #[testing]\n\
         #Include = {mirrorlist}\n\
         \n\
         [custom]\n\
         # its own servers, in this order\n\
         SigLevel = Optional TrustAll\n\
         Server = http://10.0.0.5:8080/custom/$arch\n\
         Server = https://repo.example.invalid/$repo/os/$arch\n",
        cache = dir.join("cache").display(),
        mirrorlist = mirrorlist.display(),
    );
    let conf = dir.join("pacman.conf");
    fs::write(&conf, &original).expect("write pacman.conf");

    let print = |from: &Path| {
        Pacserve::run_to_exit(&[
            "print-pacman-conf",
            "--port",
            &PRINT_PORT.to_string(),
            "--pacman-conf",
            &from.display().to_string(),
        ])
    };
    let ran = print(&conf);
    assert!(ran.success(), "print-pacman-conf failed: {ran:?}");
    assert_eq!(ran.stderr, "", "nothing on stderr");
    let printed = dir.join("printed.conf");
    fs::write(&printed, &ran.stdout).expect("write the printed config");

    let ours = format!("http://localhost:{PRINT_PORT}/request/$repo/$arch");
    let inserted = format!("Server = {ours}");
    // The text: the original, with exactly one line added after each repo header.
    let lines: Vec<&str> = ran.stdout.lines().collect();
    let added: Vec<usize> = (0..lines.len()).filter(|&i| lines[i] == inserted).collect();
    assert_eq!(added.len(), 2, "one line per repo:\n{}", ran.stdout);
    for i in &added {
        assert!(
            *i > 0 && ["[core]", "[custom]"].contains(&lines[i - 1]),
            "the line follows a repo header:\n{}",
            ran.stdout
        );
    }
    let without: Vec<&str> = lines.iter().copied().filter(|l| *l != inserted).collect();
    assert_eq!(
        without,
        original.lines().collect::<Vec<_>>(),
        "everything else, comments included, is kept"
    );

    // Read back by pacserve's own reader: pacserve first, then the original servers in order.
    let before = pacserve::config::pacman_conf::load(&conf).expect("the original parses");
    let after = pacserve::config::pacman_conf::load(&printed)
        .unwrap_or_else(|e| panic!("the printed config does not parse: {e}\n{}", ran.stdout));
    let names = |c: &pacserve::config::pacman_conf::PacmanConf| {
        c.repos.iter().map(|r| r.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&after), ["core", "custom"]);
    assert_eq!(names(&before), names(&after));
    let want = [
        (
            "core",
            vec![
                "http://localhost:15678/request/core/$arch",
                "http://127.0.0.1:9/archlinux/core/os/$arch",
                "https://mirror.example.invalid/archlinux/core/os/$arch",
            ],
        ),
        (
            "custom",
            vec![
                "http://localhost:15678/request/custom/$arch",
                "http://10.0.0.5:8080/custom/$arch",
                "https://repo.example.invalid/custom/os/$arch",
            ],
        ),
    ];
    for (name, servers) in want {
        let got = &after.repo(name).expect("repo is there").servers;
        assert_eq!(got, &servers, "[{name}] servers");
        assert_eq!(
            got[1..],
            before.repo(name).expect("repo is there").servers[..],
            "[{name}]: the original servers follow in order"
        );
    }
    assert_eq!(after.cache_dirs, before.cache_dirs, "options are kept");

    // Applying it again changes nothing.
    let again = print(&printed);
    assert!(again.success(), "{again:?}");
    assert_eq!(again.stdout, ran.stdout, "print-pacman-conf is idempotent");
}

/// Malformed discovery datagrams are dropped and counted, and the count shows in /metrics.
#[test]
fn malformed_multicast_datagrams_are_counted_in_metrics() {
    let dir = TempDir::new("mc-metrics");
    let cache = dir.mkdir("cache");
    let mirror_root = dir.mkdir("mirror");
    let mirror = Mirror::start(&mirror_root);
    let conf = write_server_conf(
        dir.path(),
        &[&cache],
        &[("core", &[mirror.url("/$repo/os/$arch")])],
    );
    // A UDP port nobody else uses: bind it, note it, release it.
    let udp_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free udp port")
        .port();
    let port_arg = udp_port.to_string();
    let ps = Pacserve::start(
        &conf,
        &[
            "--multicast",
            "--multicast-interface",
            "127.0.0.1",
            "--multicast-port",
            &port_arg,
        ],
    );
    let malformed = |text: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with("pacserve_multicast_datagrams_total{kind=\"malformed\"} "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
    };
    let before = malformed(&String::from_utf8_lossy(&get(ps.port(), "/metrics").body));
    assert_eq!(before, Some(0), "metrics before any garbage");
    // The discovery socket is bound to 0.0.0.0:PORT, so unicast garbage reaches it too.
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp sender");
    for garbage in [
        &b"pacserve 9 hello id=1 port=1\n"[..],
        b"\x00\xffjunk",
        b"GET / HTTP/1.1\r\n",
    ] {
        sender
            .send_to(garbage, ("127.0.0.1", udp_port))
            .expect("send garbage");
    }
    let mut seen = None;
    for _ in 0..100 {
        seen = malformed(&String::from_utf8_lossy(&get(ps.port(), "/metrics").body));
        if seen >= Some(3) {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(seen, Some(3), "{}", ps.log());
    let json = String::from_utf8_lossy(&get(ps.port(), "/status.json").body).into_owned();
    assert!(json.contains("\"malformed\":3"), "{json}");
    assert!(ps.log().contains("listening on"), "still serving");
}
