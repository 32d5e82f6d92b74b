//! `pacserve pacsrv ARGS…` runs pacman with pacserve inserted; `pacserve print-pacman-conf`
//! prints the user's pacman.conf with pacserve inserted. I/O (files, pacman); the text edit
//! is pure.

use std::ffi::OsString;
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::pacman_conf::{Line, classify, header_name};
use crate::limits::PACSRV_PROBE_TIMEOUT;

/// `[name]` → Some(name) for a section header line, as pacman.conf's parser reads it.
fn section(line: &str) -> Option<&str> {
    match classify(line) {
        Line::Header(h) => header_name(h),
        _ => None,
    }
}

/// `Server = URL` → Some(URL).
fn server_value(line: &str) -> Option<&str> {
    match classify(line) {
        Line::Directive {
            key: "Server",
            value,
        } => value,
        _ => None,
    }
}

/// `text` with `Server = url` as the first line of every repository section (all but
/// `[options]`), so pacman asks pacserve first. Sections that already have exactly that
/// line are left alone, so the edit can be applied twice. Everything else, comments
/// included, is kept as it was.
pub fn insert_server(text: &str, url: &str) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len() + 64 * 8);
    for (i, line) in lines.iter().enumerate() {
        out.push_str(line);
        let Some(name) = section(line) else { continue };
        if name == "options" {
            continue;
        }
        let has_it = lines[i + 1..]
            .iter()
            .take_while(|l| section(l).is_none())
            .any(|l| server_value(l) == Some(url));
        if has_it {
            continue;
        }
        if !line.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("Server = ");
        out.push_str(url);
        out.push('\n');
    }
    out
}

/// The pacman.conf pacman would read: the value of `--config` among its arguments.
pub fn config_arg(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.to_str().and_then(|s| s.strip_prefix("--config=")) {
            return Some(PathBuf::from(v));
        }
    }
    None
}

/// The arguments with any `--config X` replaced by `--config conf` (added in front if none).
pub fn with_config(args: &[OsString], conf: &Path) -> Vec<OsString> {
    let mut out = vec![OsString::from("--config"), conf.as_os_str().to_owned()];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" {
            it.next();
        } else if !a.to_str().is_some_and(|s| s.starts_with("--config=")) {
            out.push(a.clone());
        }
    }
    out
}

/// `pacserve print-pacman-conf`.
pub fn print_conf(conf: &Path, port: u16) -> ExitCode {
    match std::fs::read_to_string(conf) {
        Ok(text) => {
            print!(
                "{}",
                insert_server(&text, &crate::app::urls::local_server(port))
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pacserve: {}: cannot read: {e}", conf.display());
            ExitCode::FAILURE
        }
    }
}

/// Removes the temporary pacman.conf however pacsrv ends.
struct TempConf(PathBuf);

impl Drop for TempConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn write_temp_conf(text: &str) -> std::io::Result<TempConf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let path = std::env::temp_dir().join(format!("pacsrv-{}-{nanos}.conf", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let guard = TempConf(path);
    f.write_all(text.as_bytes())?;
    Ok(guard)
}

/// `pacserve pacsrv [--port PORT] PACMAN_ARGS…`: pacman with pacserve first in every repo;
/// pacman's exit code is ours. Without a running pacserve, pacman runs unchanged.
pub fn pacsrv(port: u16, pacman_args: Vec<OsString>) -> ExitCode {
    let pacman = std::env::var_os("PACMAN").unwrap_or_else(|| OsString::from("pacman"));
    let conf = config_arg(&pacman_args)
        .unwrap_or_else(|| PathBuf::from(crate::config::cli::DEFAULT_PACMAN_CONF));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let running = TcpStream::connect_timeout(&addr, PACSRV_PROBE_TIMEOUT).is_ok();
    // While pacman runs, Ctrl-C is pacman's to handle; we only wait and clean up.
    let _signals = async_signal::Signals::new([
        async_signal::Signal::Int,
        async_signal::Signal::Term,
        async_signal::Signal::Hup,
    ]);
    let mut temp = None;
    let args = if running {
        match std::fs::read_to_string(&conf).and_then(|text| {
            write_temp_conf(&insert_server(&text, &crate::app::urls::local_server(port)))
        }) {
            Ok(t) => {
                let args = with_config(&pacman_args, &t.0);
                temp = Some(t);
                args
            }
            Err(e) => {
                eprintln!(
                    "pacsrv: cannot prepare a pacman.conf from {}: {e}; running pacman unchanged",
                    conf.display()
                );
                pacman_args
            }
        }
    } else {
        eprintln!("pacsrv: pacserve is not running on localhost:{port}; running pacman unchanged");
        pacman_args
    };
    let status = std::process::Command::new(&pacman).args(&args).status();
    drop(temp);
    match status {
        Ok(s) => match s.code() {
            Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            // Killed by a signal: the shell convention.
            None => ExitCode::from(128u8.wrapping_add(
                std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0) as u8,
            )),
        },
        Err(e) => {
            eprintln!("pacsrv: cannot run {}: {e}", pacman.to_string_lossy());
            ExitCode::from(127)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://localhost:15678/request/$repo/$arch";

    #[test]
    fn inserts_first_in_every_repo() {
        let text = "\
# comment
[options]
CacheDir = /var/cache/pacman/pkg/

[core]
Include = /etc/pacman.d/mirrorlist

#[testing]
#Include = /etc/pacman.d/mirrorlist

[custom]
SigLevel = Optional
Server = file:///srv/repo
[extra]";
        let want = "\
# comment
[options]
CacheDir = /var/cache/pacman/pkg/

[core]
Server = http://localhost:15678/request/$repo/$arch
Include = /etc/pacman.d/mirrorlist

#[testing]
#Include = /etc/pacman.d/mirrorlist

[custom]
Server = http://localhost:15678/request/$repo/$arch
SigLevel = Optional
Server = file:///srv/repo
[extra]
Server = http://localhost:15678/request/$repo/$arch
";
        let got = insert_server(text, URL);
        assert_eq!(got, want);
        assert_eq!(
            insert_server(&got, URL),
            got,
            "applying twice changes nothing"
        );
        assert_eq!(insert_server("", URL), "");
        let crlf = insert_server("[core]\r\nServer = http://m/\r\n", URL);
        assert_eq!(
            crlf,
            format!("[core]\r\nServer = {URL}\nServer = http://m/\r\n")
        );
    }

    #[test]
    fn config_argument_is_found_and_replaced() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(config_arg(&args(&["-Syu"])), None);
        assert_eq!(
            config_arg(&args(&["--config", "/x.conf", "-Sy"])),
            Some(PathBuf::from("/x.conf"))
        );
        assert_eq!(
            config_arg(&args(&["-Sy", "--config=/y.conf"])),
            Some(PathBuf::from("/y.conf"))
        );
        assert_eq!(
            with_config(
                &args(&["--config", "/x.conf", "-S", "vim"]),
                Path::new("/tmp/t.conf")
            ),
            args(&["--config", "/tmp/t.conf", "-S", "vim"])
        );
        assert_eq!(
            with_config(&args(&["-Syu", "--config=/y"]), Path::new("/t")),
            args(&["--config", "/t", "-Syu"])
        );
    }
}
