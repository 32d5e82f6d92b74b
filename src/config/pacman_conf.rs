//! pacman.conf reader: a pure parser of the text and one loader that touches the filesystem.
//!
//! [`parse_with`] turns text into a [`PacmanConf`] and does no I/O: an `Include` directive is
//! handed to a resolver closure that returns the included files' text. [`load`] is the one
//! function that reads files (the config, its Includes, glob expansion); [`parse_str`] is the
//! pure entry point for tests and the fuzzer, where an Include is an error.
//!
//! What we follow from pacman (6.0.2's `pacman-conf` was the oracle):
//! - a line whose first non-blank character is `#` is a comment; a `#` later in the line is
//!   part of the value (`Server = http://x/ # old` keeps the ` # old`, as pacman does);
//! - `Key = Value` or a bare `Key` (flags such as `Color`), keys case-sensitive, unknown
//!   directives ignored;
//! - an included file's lines belong to the current section, and a section header inside an
//!   included file switches the section for the rest of the parse, also after the Include;
//! - the first `DBPath` wins; `CacheDir` and `Architecture` repeat and take several
//!   space-separated values on one line.
//!
//! Where we are stricter, so a broken config fails loudly instead of quietly: directives before
//! any section, malformed headers (`[core`, `[]`), empty values (`Server =`), repository and
//! architecture names outside the rules of [`crate::names`] (the ones requests and
//! announcements are held to, so a name that loads is a name pacserve can serve), unreadable
//! Includes. A glob Include that matches nothing is
//! silently nothing; pacman 6.0.2 instead tries to open the pattern as a file and fails.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::glob::expand_glob;
use crate::limits::{
    MAX_CONF_BYTES, MAX_CONF_TOTAL_BYTES, MAX_INCLUDE_DEPTH, MAX_INCLUDED_FILES,
    MAX_SERVERS_PER_REPO,
};
use crate::names;
use crate::sys::host;

/// pacman's `CacheDir` when the config names none.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/pacman/pkg/";
/// pacman's `DBPath` when the config names none.
pub const DEFAULT_DB_PATH: &str = "/var/lib/pacman/";

/// What pacserve needs from pacman.conf, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacmanConf {
    /// `CacheDir`s in order, without duplicates; `[DEFAULT_CACHE_DIR]` if none was given.
    pub cache_dirs: Vec<PathBuf>,
    /// `Architecture` values in order, `auto` replaced by [`host::machine_arch`], without
    /// duplicates; never empty (absent means `auto`).
    pub architectures: Vec<String>,
    /// The first `DBPath`, or [`DEFAULT_DB_PATH`].
    pub db_path: PathBuf,
    /// Repositories in the order their first section appears; a section given twice is merged.
    pub repos: Vec<Repo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    /// Section name: a plain name, never empty, `.`, `..`, `local`, and without `/`, `[`, `]`,
    /// whitespace or control characters.
    pub name: String,
    /// Server URLs in order, `$repo` substituted, `$arch` left for the caller.
    /// A trailing `/` is removed (as libalpm does), so a file URL is `{server}/{file}`.
    pub servers: Vec<String>,
}

impl PacmanConf {
    /// The repository called `name`, if the config has a section for it.
    pub fn repo(&self, name: &str) -> Option<&Repo> {
        self.repos.iter().find(|r| r.name == name)
    }
}

/// A config problem, with the file and line it was found at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError {
    /// The file as it was named (the argument to [`load`], or the Include value).
    pub path: PathBuf,
    /// 1-based line number, when the problem is on a line rather than the whole file.
    pub line: Option<usize>,
    pub message: String,
}

impl ConfError {
    fn at(path: &Path, line: usize, message: impl Into<String>) -> Self {
        ConfError {
            path: path.to_owned(),
            line: Some(line),
            message: message.into(),
        }
    }

    fn file(path: &Path, message: impl Into<String>) -> Self {
        ConfError {
            path: path.to_owned(),
            line: None,
            message: message.into(),
        }
    }
}

/// `path:line: message`, or `path: message`. Control characters are escaped: the text comes
/// from a file and ends up in logs and on terminals.
impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.to_string_lossy();
        let path = escape_control(&path);
        let message = escape_control(&self.message);
        match self.line {
            Some(line) => write!(f, "{path}:{line}: {message}"),
            None => write!(f, "{path}: {message}"),
        }
    }
}

impl std::error::Error for ConfError {}

/// Resolves one `Include = VALUE` for [`parse_with`]: given the value as written, the file it
/// appears in and the line, returns each included file (path as it should appear in messages,
/// and its text) in the order pacman would read them. An empty list is allowed (a glob that
/// matched nothing). Errors should name `origin` and `line`.
pub type IncludeResolver<'a> =
    dyn FnMut(&str, &Path, usize) -> Result<Vec<(PathBuf, String)>, ConfError> + 'a;

/// Reads the pacman.conf at `path`, following its Includes (globs expanded, relative paths
/// taken as given, i.e. against the current directory, as pacman does), and fills defaults.
///
/// Blocking: call it at start-up or off the executor.
pub fn load(path: &Path) -> Result<PacmanConf, ConfError> {
    let text = match read_limited(path) {
        Ok(text) => text,
        Err(ReadError::Io(e)) => return Err(ConfError::file(path, format!("cannot read: {e}"))),
        Err(ReadError::TooBig) => {
            return Err(ConfError::file(path, too_big_message()));
        }
        Err(ReadError::NotRegular) => {
            return Err(ConfError::file(path, not_regular_message()));
        }
    };
    parse_with(&text, path, &mut resolve_include)
}

/// Parses pacman.conf text without touching the filesystem. `origin` names the text in error
/// messages. An `Include` directive is an error here; use [`load`] or [`parse_with`].
pub fn parse_str(text: &str, origin: &Path) -> Result<PacmanConf, ConfError> {
    parse_with(text, origin, &mut |value, from, line| {
        Err(ConfError::at(
            from,
            line,
            format!(
                "Include = {}: includes cannot be followed here",
                quote(value)
            ),
        ))
    })
}

/// Parses pacman.conf text; every `Include` goes through `resolve`. Pure apart from what
/// `resolve` does. Enforces [`MAX_CONF_BYTES`] per text and [`MAX_INCLUDE_DEPTH`], and reports
/// an Include loop with the chain of files.
pub fn parse_with(
    text: &str,
    origin: &Path,
    resolve: &mut IncludeResolver<'_>,
) -> Result<PacmanConf, ConfError> {
    let mut parser = Parser {
        resolve,
        files_read: 0,
        bytes_read: 0,
        chain: Vec::new(),
        section: None,
        cache_dirs: Vec::new(),
        architectures: Vec::new(),
        db_path: None,
        repos: Vec::new(),
    };
    parser.parse_file(text, origin)?;
    Ok(parser.finish())
}

#[derive(Debug, Clone, Copy)]
enum Section {
    Options,
    /// Index into `Parser::repos`.
    Repo(usize),
}

struct Parser<'r, 'a> {
    resolve: &'r mut IncludeResolver<'a>,
    /// Files parsed so far, each Include of a file counted again: bounds the fan-out.
    files_read: usize,
    /// Bytes parsed so far, over every file.
    bytes_read: usize,
    /// Files being read, outermost first: for loop detection and the depth limit.
    chain: Vec<PathBuf>,
    /// Shared across Includes on purpose: pacman lets an included file switch sections.
    section: Option<Section>,
    cache_dirs: Vec<PathBuf>,
    /// As written; `auto` is resolved in `finish`.
    architectures: Vec<String>,
    db_path: Option<PathBuf>,
    repos: Vec<Repo>,
}

/// One line of pacman.conf, as pacman reads it. Shared by the parser and by `pacsrv`, which
/// edits pacman.conf text and must see its sections exactly as the parser does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// Blank, or a comment (`#` first on the line).
    Nothing,
    /// A section header: the trimmed line, starting with `[` (see [`header_name`]).
    Header(&'a str),
    /// `Key = Value`, both trimmed, or a bare `Key` (value None).
    Directive {
        key: &'a str,
        value: Option<&'a str>,
    },
}

/// What kind of line `raw` is.
pub fn classify(raw: &str) -> Line<'_> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        Line::Nothing
    } else if line.starts_with('[') {
        Line::Header(line)
    } else {
        match line.split_once('=') {
            Some((key, value)) => Line::Directive {
                key: key.trim(),
                value: Some(value.trim()),
            },
            None => Line::Directive {
                key: line,
                value: None,
            },
        }
    }
}

/// The name in a header line `[name]`, if the line is one (the name is checked elsewhere).
pub fn header_name(line: &str) -> Option<&str> {
    line.strip_prefix('[')?.strip_suffix(']')
}

impl Parser<'_, '_> {
    fn parse_file(&mut self, text: &str, path: &Path) -> Result<(), ConfError> {
        if text.len() as u64 > MAX_CONF_BYTES {
            return Err(ConfError::file(path, too_big_message()));
        }
        self.chain.push(path.to_owned());
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let raw = if index == 0 {
                raw.strip_prefix('\u{feff}').unwrap_or(raw)
            } else {
                raw
            };
            let (key, value) = match classify(raw) {
                Line::Nothing => continue,
                Line::Header(line) => {
                    self.section = Some(self.section_header(line, path, line_no)?);
                    continue;
                }
                Line::Directive { key, value } => (key, value),
            };
            if key.is_empty() {
                return Err(ConfError::at(
                    path,
                    line_no,
                    "a directive name is missing before '='",
                ));
            }
            let Some(section) = self.section else {
                return Err(ConfError::at(
                    path,
                    line_no,
                    format!(
                        "{} comes before any section; put it under [options] or a [repo] header",
                        quote(key)
                    ),
                ));
            };
            self.directive(section, key, value, path, line_no)?;
        }
        self.chain.pop();
        Ok(())
    }

    fn section_header(
        &mut self,
        line: &str,
        path: &Path,
        line_no: usize,
    ) -> Result<Section, ConfError> {
        let err = |message: String| ConfError::at(path, line_no, message);
        let Some(name) = header_name(line) else {
            return Err(err(if line.contains(']') {
                "section header has text after ']'; a '#' comment must be on a line of its own"
                    .to_owned()
            } else {
                "section header is missing ']'".to_owned()
            }));
        };
        if name.is_empty() {
            return Err(err("section header [] has no name".to_owned()));
        }
        if name.contains(['[', ']']) {
            return Err(err(format!(
                "section name {} may not contain '[' or ']'",
                quote(name)
            )));
        }
        if name == "options" {
            return Ok(Section::Options);
        }
        if name == "local" {
            return Err(err(
                "[local] is reserved by pacman for the installed-package database; rename the repository"
                    .to_owned(),
            ));
        }
        if let Some(problem) = names::repo_problem(name) {
            return Err(err(format!("repository name {} {problem}", quote(name))));
        }
        if let Some(index) = self.repos.iter().position(|r| r.name == name) {
            return Ok(Section::Repo(index));
        }
        self.repos.push(Repo {
            name: name.to_owned(),
            servers: Vec::new(),
        });
        Ok(Section::Repo(self.repos.len() - 1))
    }

    fn directive(
        &mut self,
        section: Section,
        key: &str,
        value: Option<&str>,
        path: &Path,
        line_no: usize,
    ) -> Result<(), ConfError> {
        let err = |message: String| ConfError::at(path, line_no, message);
        let need_value = || match value {
            Some(v) if !v.is_empty() => Ok(v),
            Some(_) => Err(err(format!(
                "{key} has an empty value; write {key} = VALUE"
            ))),
            None => Err(err(format!("{key} needs a value; write {key} = VALUE"))),
        };
        match (section, key) {
            (_, "Include") => self.include(need_value()?, path, line_no),
            (Section::Options, "CacheDir") => {
                self.cache_dirs
                    .extend(need_value()?.split_whitespace().map(PathBuf::from));
                Ok(())
            }
            (Section::Options, "DBPath") => {
                let value = need_value()?;
                // pacman keeps the first DBPath it sees.
                self.db_path.get_or_insert_with(|| PathBuf::from(value));
                Ok(())
            }
            (Section::Options, "Architecture") => {
                for arch in need_value()?.split_whitespace() {
                    if let Some(problem) = names::arch_problem(arch) {
                        return Err(err(format!("Architecture {} {problem}", quote(arch))));
                    }
                    self.architectures.push(arch.to_owned());
                }
                Ok(())
            }
            (Section::Repo(index), "Server") => {
                let url = need_value()?;
                if url.contains(|c: char| c.is_whitespace() || c.is_control()) {
                    let hint = if url.contains('#') {
                        "; a '#' comment must be on a line of its own"
                    } else {
                        ""
                    };
                    return Err(err(format!(
                        "Server URL {} contains a space or control character{hint}",
                        quote(url)
                    )));
                }
                let repo = &mut self.repos[index];
                if repo.servers.len() >= MAX_SERVERS_PER_REPO {
                    return Err(err(format!(
                        "[{}] has more than {MAX_SERVERS_PER_REPO} Server lines; pacman uses \
                         the first few, keep those",
                        repo.name
                    )));
                }
                let url = url.replace("$repo", &repo.name);
                let url = url.strip_suffix('/').unwrap_or(&url).to_owned();
                if url.is_empty() {
                    return Err(err("Server URL is just '/'".to_owned()));
                }
                repo.servers.push(url);
                Ok(())
            }
            // SigLevel, Usage, HoldPkg, Color, ... and anything unknown: not ours, as pacman
            // (which only warns about unknown ones).
            _ => Ok(()),
        }
    }

    fn include(&mut self, value: &str, path: &Path, line_no: usize) -> Result<(), ConfError> {
        let files = (self.resolve)(value, path, line_no)?;
        for (file, text) in files {
            self.files_read += 1;
            self.bytes_read = self.bytes_read.saturating_add(text.len());
            if self.files_read > MAX_INCLUDED_FILES || self.bytes_read > MAX_CONF_TOTAL_BYTES {
                return Err(ConfError::at(
                    path,
                    line_no,
                    format!(
                        "Include = {}: the Includes of this configuration read more than \
                         {MAX_INCLUDED_FILES} files or {MAX_CONF_TOTAL_BYTES} bytes in all; \
                         include each mirrorlist once",
                        quote(value)
                    ),
                ));
            }
            if self.chain.contains(&file) {
                return Err(ConfError::at(
                    path,
                    line_no,
                    format!("Include loop: {}", chain_text(&self.chain, &file)),
                ));
            }
            if self.chain.len() > MAX_INCLUDE_DEPTH {
                return Err(ConfError::at(
                    path,
                    line_no,
                    format!(
                        "Includes nested more than {MAX_INCLUDE_DEPTH} deep: {}",
                        chain_text(&self.chain, &file)
                    ),
                ));
            }
            self.parse_file(&text, &file)?;
        }
        Ok(())
    }

    fn finish(self) -> PacmanConf {
        let mut architectures: Vec<String> = Vec::new();
        for arch in self.architectures {
            let arch = if arch == "auto" {
                host::machine_arch().to_owned()
            } else {
                arch
            };
            if !architectures.contains(&arch) {
                architectures.push(arch);
            }
        }
        if architectures.is_empty() {
            architectures.push(host::machine_arch().to_owned());
        }
        let mut cache_dirs: Vec<PathBuf> = Vec::new();
        for dir in self.cache_dirs {
            if !cache_dirs.contains(&dir) {
                cache_dirs.push(dir);
            }
        }
        if cache_dirs.is_empty() {
            cache_dirs.push(PathBuf::from(DEFAULT_CACHE_DIR));
        }
        PacmanConf {
            cache_dirs,
            architectures,
            db_path: self
                .db_path
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DB_PATH)),
            repos: self.repos,
        }
    }
}

fn chain_text(chain: &[PathBuf], next: &Path) -> String {
    let mut parts: Vec<String> = chain.iter().map(|p| p.display().to_string()).collect();
    parts.push(next.display().to_string());
    parts.join(" -> ")
}

fn not_regular_message() -> &'static str {
    "not a regular file (a FIFO, device or directory cannot be read as configuration)"
}

fn too_big_message() -> String {
    format!("larger than {MAX_CONF_BYTES} bytes; that is no pacman.conf")
}

/// `'value'`, cut short so one absurd line cannot flood a log.
fn quote(value: &str) -> String {
    const MAX_CHARS: usize = 80;
    match value.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("'{}...'", &value[..cut]),
        None => format!("'{value}'"),
    }
}

fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.contains(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

// ---------------------------------------------------------------------------------------------
// The filesystem side: reading files with a size cap, Include resolution, glob expansion.

enum ReadError {
    Io(std::io::Error),
    TooBig,
    /// A FIFO, device, socket or directory: reading it could block forever or never end.
    NotRegular,
}

/// Reads a regular file of at most `MAX_CONF_BYTES` (+1 to notice a bigger one). It is opened
/// with O_NONBLOCK, so a FIFO put in its place cannot hang the open, and refused unless it is
/// a regular file. Invalid UTF-8 is replaced rather than fatal: pacman does not care about
/// the encoding, and a stray Latin-1 byte in a comment should not stop the daemon.
fn read_limited(path: &Path) -> Result<String, ReadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(ReadError::Io)?;
    if !file.metadata().map_err(ReadError::Io)?.is_file() {
        return Err(ReadError::NotRegular);
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONF_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > MAX_CONF_BYTES {
        return Err(ReadError::TooBig);
    }
    Ok(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// The resolver [`load`] uses: a glob is expanded (no match is no file), a plain path must
/// exist.
fn resolve_include(
    value: &str,
    origin: &Path,
    line: usize,
) -> Result<Vec<(PathBuf, String)>, ConfError> {
    let err = |message: String| ConfError::at(origin, line, message);
    let paths = if value.contains(['*', '?', '[']) {
        expand_glob(value).map_err(err)?
    } else {
        vec![PathBuf::from(value)]
    };
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        match read_limited(&path) {
            Ok(text) => files.push((path, text)),
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(err(format!("Include: no such file {}", path.display())));
            }
            Err(ReadError::Io(e)) => {
                return Err(err(format!("Include: cannot read {}: {e}", path.display())));
            }
            Err(ReadError::TooBig) => {
                return Err(err(format!(
                    "Include: {} is larger than {MAX_CONF_BYTES} bytes",
                    path.display()
                )));
            }
            Err(ReadError::NotRegular) => {
                return Err(err(format!(
                    "Include: {}: {}",
                    path.display(),
                    not_regular_message()
                )));
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::glob::glob_match;
    use crate::limits::{MAX_GLOB_MATCHES, MAX_INCLUDED_FILES, MAX_SERVERS_PER_REPO};
    use std::collections::HashMap;

    /// Arch Linux's stock /etc/pacman.conf (pacman 7), comments and all.
    const ARCH_PACMAN_CONF: &str = r#"#
# /etc/pacman.conf
#
# See the pacman.conf(5) manpage for option and repository directives

#
# GENERAL OPTIONS
#
[options]
# The following paths are commented out with their default values listed.
# If you wish to use different paths, uncomment and update the paths.
#RootDir     = /
#DBPath      = /var/lib/pacman/
#CacheDir    = /var/cache/pacman/pkg/
#LogFile     = /var/log/pacman.log
#GPGDir      = /etc/pacman.d/gnupg/
#HookDir     = /etc/pacman.d/hooks/
HoldPkg     = pacman glibc
#XferCommand = /usr/bin/curl -L -C - -f -o %o %u
#XferCommand = /usr/bin/wget --passive-ftp -c -O %o %u
#CleanMethod = KeepInstalled
Architecture = auto

# Pacman won't upgrade packages listed in IgnorePkg and members of IgnoreGroup
#IgnorePkg   =
#IgnoreGroup =

#NoUpgrade   =
#NoExtract   =

# Misc options
#UseSyslog
#Color
#NoProgressBar
CheckSpace
#VerbosePkgLists
ParallelDownloads = 5
DownloadUser = alpm
#DisableSandbox

# By default, pacman accepts packages signed by keys that its local keyring
# trusts (see pacman-key and its man page), as well as unsigned packages.
SigLevel    = Required DatabaseOptional
LocalFileSigLevel = Optional
#RemoteFileSigLevel = Required

# NOTE: You must run `pacman-key --init` before first using pacman; the local
# keyring can then be populated with the keys of all official Arch Linux
# packagers with `pacman-key --populate archlinux`.

#
# REPOSITORIES
#   - can be defined here or included from another file
#   - pacman will search repositories in the order defined here
#   - local/custom mirrors can be added here or in separate files
#   - repositories listed first will take precedence when packages
#     have identical names, regardless of version number
#   - URLs will have $repo replaced by the name of the current repo
#   - URLs will have $arch replaced by the name of the architecture
#
# Repository entries are of the format:
#       [repo-name]
#       Server = ServerName
#       Include = IncludePath
#
# The header [repo-name] is crucial - it must be present and
# uncommented to enable the repo.
#

# The testing repositories are disabled by default. To enable, uncomment the
# repo name header and Include lines. You can add preferred servers immediately
# after the header, and they will be used before the default mirrors.

#[core-testing]
#Include = /etc/pacman.d/mirrorlist

[core]
Include = /etc/pacman.d/mirrorlist

#[extra-testing]
#Include = /etc/pacman.d/mirrorlist

[extra]
Include = /etc/pacman.d/mirrorlist

# If you want to run 32 bit applications on your x86_64 system,
# enable the multilib repositories as required here.

#[multilib-testing]
#Include = /etc/pacman.d/mirrorlist

[multilib]
Include = /etc/pacman.d/mirrorlist

# An example of a custom package repository.  See the pacman manpage for
# tips on creating your own repositories.
#[custom]
#SigLevel = Optional TrustAll
#Server = file:///home/custompkgs
"#;

    /// A reflector-style Arch mirrorlist.
    const ARCH_MIRRORLIST: &str = r#"##
## Arch Linux repository mirrorlist
## Generated on 2024-06-01
##

## Worldwide
Server = https://geo.mirror.pkgbuild.com/$repo/os/$arch
#Server = http://mirror.rackspace.com/archlinux/$repo/os/$arch
Server = https://mirror.rackspace.com/archlinux/$repo/os/$arch/

## Germany
#Server = https://mirror.example.de/archlinux/$repo/os/$arch
"#;

    /// Arch Linux ARM's /etc/pacman.conf on an aarch64 board.
    const ALARM_PACMAN_CONF: &str = r#"#
# /etc/pacman.conf
#
# See the pacman.conf(5) manpage for option and repository directives

#
# GENERAL OPTIONS
#
[options]
# The following paths are commented out with their default values listed.
# If you wish to use different paths, uncomment and update the paths.
#RootDir     = /
#DBPath      = /var/lib/pacman/
#CacheDir    = /var/cache/pacman/pkg/
#LogFile     = /var/log/pacman.log
#GPGDir      = /etc/pacman.d/gnupg/
#HookDir     = /etc/pacman.d/hooks/
HoldPkg     = pacman glibc
#XferCommand = /usr/bin/curl -L -C - -f -o %o %u
#XferCommand = /usr/bin/wget --passive-ftp -c -O %o %u
#CleanMethod = KeepInstalled
Architecture = aarch64

# Pacman won't upgrade packages listed in IgnorePkg and members of IgnoreGroup
#IgnorePkg   =
#IgnoreGroup =

#NoUpgrade   =
#NoExtract   =

# Misc options
#UseSyslog
#Color
#NoProgressBar
CheckSpace
#VerbosePkgLists
#ParallelDownloads = 5

# By default, pacman accepts packages signed by keys that its local keyring
# trusts (see pacman-key and its man page), as well as unsigned packages.
SigLevel    = Required DatabaseOptional
LocalFileSigLevel = Optional
#RemoteFileSigLevel = Required

#
# REPOSITORIES
#   - can be defined here or included from another file
#   - pacman will search repositories in the order defined here
#   - local/custom mirrors can be added here or in separate files
#   - repositories listed first will take precedence when packages
#     have identical names, regardless of version number
#   - URLs will have $repo replaced by the name of the current repo
#   - URLs will have $arch replaced by the name of the architecture
#
# Repository entries are of the format:
#       [repo-name]
#       Server = ServerName
#       Include = IncludePath
#
# The header [repo-name] is crucial - it must be present and
# uncommented to enable the repo.
#

[core]
Include = /etc/pacman.d/mirrorlist

[extra]
Include = /etc/pacman.d/mirrorlist

[alarm]
Include = /etc/pacman.d/mirrorlist

[aur]
Include = /etc/pacman.d/mirrorlist

# An example of a custom package repository.  See the pacman manpage for
# tips on creating your own repositories.
#[custom]
#SigLevel = Optional TrustAll
#Server = file:///home/custompkgs
"#;

    const ALARM_MIRRORLIST: &str = r#"#
# Arch Linux ARM repository mirrorlist
# Generated on 2024-01-01
#

## Geo-IP based mirror selection and load balancing
Server = http://mirror.archlinuxarm.org/$arch/$repo

### Mirrors
## Aachen, Germany
# Server = http://de.mirror.archlinuxarm.org/$arch/$repo
## Florida, United States
# Server = http://fl.us.mirror.archlinuxarm.org/$arch/$repo
"#;

    fn parse(text: &str) -> Result<PacmanConf, String> {
        parse_str(text, Path::new("pacman.conf")).map_err(|e| e.to_string())
    }

    /// Parses `files[main]` with Includes served from the in-memory `files`. A value with `*`
    /// matches, by its last component, the files in the same directory, sorted.
    fn parse_virtual(files: &[(&str, &str)], main: &str) -> Result<PacmanConf, String> {
        let map: HashMap<&str, &str> = files.iter().copied().collect();
        let mut resolve = |value: &str, origin: &Path, line: usize| {
            let mut names: Vec<&str> = if value.contains('*') {
                let (dir, pattern) = value.rsplit_once('/').unwrap_or(("", value));
                map.keys()
                    .copied()
                    .filter(|k| {
                        let (kd, kn) = k.rsplit_once('/').unwrap_or(("", k));
                        kd == dir && glob_match(pattern, kn)
                    })
                    .collect()
            } else if map.contains_key(value) {
                vec![value]
            } else {
                return Err(ConfError::at(
                    origin,
                    line,
                    format!("Include: no such file {value}"),
                ));
            };
            names.sort();
            Ok(names
                .into_iter()
                .map(|n| (PathBuf::from(n), map[n].to_owned()))
                .collect())
        };
        parse_with(map[main], Path::new(main), &mut resolve).map_err(|e| e.to_string())
    }

    fn repos(conf: &PacmanConf) -> Vec<(&str, Vec<&str>)> {
        conf.repos
            .iter()
            .map(|r| {
                (
                    r.name.as_str(),
                    r.servers.iter().map(String::as_str).collect(),
                )
            })
            .collect()
    }

    type Repos<'a> = &'a [(&'a str, &'a [&'a str])];

    fn want(repos: Repos<'_>) -> Vec<(&str, Vec<&str>)> {
        repos.iter().map(|(n, s)| (*n, s.to_vec())).collect()
    }

    #[test]
    fn repositories() {
        let cases: &[(&str, &str, Repos<'_>)] = &[
            ("empty", "", &[]),
            ("only comments", "# a\n\n   # b\n\t\n", &[]),
            ("options only", "[options]\nColor\n", &[]),
            (
                "no [options] section",
                "[core]\nServer = http://a/$repo/os/$arch\n",
                &[("core", &["http://a/core/os/$arch"])],
            ),
            (
                "CRLF",
                "[options]\r\nCacheDir = /c\r\n\r\n[core]\r\nServer = http://a/$repo\r\n",
                &[("core", &["http://a/core"])],
            ),
            (
                "tabs",
                "\t[core]\t\n\tServer\t=\thttp://a/$repo\t\n",
                &[("core", &["http://a/core"])],
            ),
            (
                "no trailing newline",
                "[core]\nServer = http://a",
                &[("core", &["http://a"])],
            ),
            (
                "no spaces around =",
                "[core]\nServer=http://a\n",
                &[("core", &["http://a"])],
            ),
            (
                "= inside the value",
                "[core]\nServer = http://a/$repo?x=1&y=2\n",
                &[("core", &["http://a/core?x=1&y=2"])],
            ),
            (
                "comments everywhere",
                "# head\n[core]\n# Server = http://commented\n   #Server = http://indented\nServer = http://a\n#[extra]\n# end",
                &[("core", &["http://a"])],
            ),
            (
                "servers in order",
                "[core]\nServer = http://1\nServer = http://2\nServer = http://3\n",
                &[("core", &["http://1", "http://2", "http://3"])],
            ),
            (
                "same section twice merges",
                "[core]\nServer = http://1\n[extra]\nServer = http://e\n[core]\nServer = http://2\n",
                &[
                    ("core", &["http://1", "http://2"]),
                    ("extra", &["http://e"]),
                ],
            ),
            (
                "[options] twice",
                "[options]\nColor\n[core]\nServer = http://1\n[options]\nCheckSpace\n[extra]\n",
                &[("core", &["http://1"]), ("extra", &[])],
            ),
            (
                "unknown directives ignored",
                "[options]\nFoo = bar\nILoveCandy\nColor\n[core]\nSigLevel = Never\nUsage = Sync Search\n\
                 CacheServer = http://cache\nserver = http://lowercase\nServer = http://a\n",
                &[("core", &["http://a"])],
            ),
            (
                "Server in [options] ignored, as pacman",
                "[options]\nServer = http://x\n",
                &[],
            ),
            (
                "$repo everywhere, $arch kept",
                "[my-repo]\nServer = http://$repo.example/$repo/os/$arch/$repo\n",
                &[(
                    "my-repo",
                    &["http://my-repo.example/my-repo/os/$arch/my-repo"],
                )],
            ),
            (
                "one trailing slash removed",
                "[core]\nServer = http://a/$repo/os/$arch/\nServer = file:///srv/repo//\n",
                &[("core", &["http://a/core/os/$arch", "file:///srv/repo/"])],
            ),
            (
                "empty repo section kept",
                "[core]\n[extra]\nServer = http://e\n",
                &[("core", &[]), ("extra", &["http://e"])],
            ),
            (
                "odd but valid names",
                "[core-testing]\n[my_repo.2]\n[OPTIONS]\n[Options]\n[a..b]\n",
                &[
                    ("core-testing", &[]),
                    ("my_repo.2", &[]),
                    ("OPTIONS", &[]),
                    ("Options", &[]),
                    ("a..b", &[]),
                ],
            ),
            (
                "byte order mark",
                "\u{feff}[core]\nServer = http://a\n",
                &[("core", &["http://a"])],
            ),
            (
                "flags in repo sections",
                "[core]\nSomeFlag\nServer = http://a\n",
                &[("core", &["http://a"])],
            ),
        ];
        for (name, text, expected) in cases {
            let conf = parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(repos(&conf), want(expected), "{name}");
        }
    }

    #[test]
    fn options() {
        let dflt: &[&str] = &[DEFAULT_CACHE_DIR];
        // (text, cache dirs, architectures with "auto" meaning this machine, db path)
        let cases: &[(&str, &[&str], &[&str], &str)] = &[
            ("", dflt, &["auto"], DEFAULT_DB_PATH),
            ("[options]\n", dflt, &["auto"], DEFAULT_DB_PATH),
            (
                "[options]\nCacheDir = /a/ /b\nCacheDir=/c\nCacheDir = /a/\n",
                &["/a/", "/b", "/c"],
                &["auto"],
                DEFAULT_DB_PATH,
            ),
            (
                "[options]\nCacheDir = \t/a\t\t/b \n",
                &["/a", "/b"],
                &["auto"],
                DEFAULT_DB_PATH,
            ),
            (
                "[options]\nDBPath = /x/\nDBPath = /y/\n",
                dflt,
                &["auto"],
                "/x/",
            ),
            (
                "[options]\nArchitecture = auto\n",
                dflt,
                &["auto"],
                DEFAULT_DB_PATH,
            ),
            (
                "[options]\nArchitecture = armv7h\n",
                dflt,
                &["armv7h"],
                DEFAULT_DB_PATH,
            ),
            (
                "[options]\nArchitecture = x86_64 x86_64_v3\nArchitecture = auto\nArchitecture = x86_64_v3\n",
                dflt,
                &["x86_64", "x86_64_v3", "auto"],
                DEFAULT_DB_PATH,
            ),
            (
                "[options]\nCacheDir = /a\n[core]\nCacheDir = /ignored\n[options]\nCacheDir = /b\n",
                &["/a", "/b"],
                &["auto"],
                DEFAULT_DB_PATH,
            ),
        ];
        for (text, cache_dirs, archs, db_path) in cases {
            let conf = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let cache_dirs: Vec<PathBuf> = cache_dirs.iter().map(PathBuf::from).collect();
            let mut want_archs: Vec<String> = Vec::new();
            for a in archs.iter() {
                let a = if *a == "auto" {
                    host::machine_arch()
                } else {
                    a
                };
                if !want_archs.iter().any(|w| w == a) {
                    want_archs.push(a.to_owned());
                }
            }
            assert_eq!(conf.cache_dirs, cache_dirs, "{text:?}");
            assert_eq!(conf.architectures, want_archs, "{text:?}");
            assert_eq!(conf.db_path, PathBuf::from(db_path), "{text:?}");
        }
    }

    #[test]
    fn errors() {
        let long = "x".repeat(200);
        let long_server = format!("[core]\nServer = http://{long} x\n");
        let long_quoted = format!("'http://{}...'", "x".repeat(73));
        let cases: Vec<(&str, String)> = vec![
            (
                "Server = http://x\n[core]\n",
                "pacman.conf:1: 'Server' comes before any section; put it under [options] or a [repo] header".into(),
            ),
            (
                "\n# c\nColor\n",
                "pacman.conf:3: 'Color' comes before any section; put it under [options] or a [repo] header".into(),
            ),
            (
                "\u{feff}Include = /etc/pacman.d/mirrorlist\n",
                "pacman.conf:1: 'Include' comes before any section; put it under [options] or a [repo] header".into(),
            ),
            (
                "[options]\n\n[core\n",
                "pacman.conf:3: section header is missing ']'".into(),
            ),
            (
                "[options]\r\n\r\n[core\r\n",
                "pacman.conf:3: section header is missing ']'".into(),
            ),
            ("[", "pacman.conf:1: section header is missing ']'".into()),
            (
                "[core] # main repo\n",
                "pacman.conf:1: section header has text after ']'; a '#' comment must be on a line of its own".into(),
            ),
            ("[]\n", "pacman.conf:1: section header [] has no name".into()),
            (
                "[[core]]\n",
                "pacman.conf:1: section name '[core]' may not contain '[' or ']'".into(),
            ),
            (
                "[core]]\n",
                "pacman.conf:1: section name 'core]' may not contain '[' or ']'".into(),
            ),
            (
                "[a/b]\n",
                "pacman.conf:1: repository name 'a/b' may only hold ASCII letters, digits and '.', '_', '+', '-'".into(),
            ),
            (
                "[../../etc]\n",
                "pacman.conf:1: repository name '../../etc' may not start with '.'".into(),
            ),
            ("[..]\n", "pacman.conf:1: repository name '..' may not start with '.'".into()),
            ("[.]\n", "pacman.conf:1: repository name '.' may not start with '.'".into()),
            (
                "[ core ]\n",
                "pacman.conf:1: repository name ' core ' may only hold ASCII letters, digits and '.', '_', '+', '-'".into(),
            ),
            (
                "[co\u{7}re]\n",
                "pacman.conf:1: repository name 'co\\u{7}re' may only hold ASCII letters, digits and '.', '_', '+', '-'".into(),
            ),
            (
                "[local]\n",
                "pacman.conf:1: [local] is reserved by pacman for the installed-package database; rename the repository".into(),
            ),
            (
                "[core]\nServer =\n",
                "pacman.conf:2: Server has an empty value; write Server = VALUE".into(),
            ),
            (
                "[core]\nServer = \t \n",
                "pacman.conf:2: Server has an empty value; write Server = VALUE".into(),
            ),
            (
                "[core]\nServer\n",
                "pacman.conf:2: Server needs a value; write Server = VALUE".into(),
            ),
            (
                "[core]\nInclude =\n",
                "pacman.conf:2: Include has an empty value; write Include = VALUE".into(),
            ),
            (
                "[options]\nCacheDir\n",
                "pacman.conf:2: CacheDir needs a value; write CacheDir = VALUE".into(),
            ),
            (
                "[options]\nDBPath =\n",
                "pacman.conf:2: DBPath has an empty value; write DBPath = VALUE".into(),
            ),
            (
                "[options]\nArchitecture = x86_64 ../x\n",
                "pacman.conf:2: Architecture '../x' may only hold ASCII letters, digits and '_' \
                 (package file names use '-' as a separator)"
                    .into(),
            ),
            (
                "[options]\nArchitecture = armv7-x\n",
                "pacman.conf:2: Architecture 'armv7-x' may only hold ASCII letters, digits and \
                 '_' (package file names use '-' as a separator)"
                    .into(),
            ),
            (
                "[ünïcödé]\n",
                "pacman.conf:1: repository name 'ünïcödé' may only hold ASCII letters, digits and \
                 '.', '_', '+', '-'"
                    .into(),
            ),
            (
                "[my@repo]\n",
                "pacman.conf:1: repository name 'my@repo' may only hold ASCII letters, digits and \
                 '.', '_', '+', '-'"
                    .into(),
            ),
            ("[core]\n= http://a\n", "pacman.conf:2: a directive name is missing before '='".into()),
            (
                "[core]\nServer = http://a b\n",
                "pacman.conf:2: Server URL 'http://a b' contains a space or control character".into(),
            ),
            (
                "[core]\nServer = http://a/$repo # old mirror\n",
                "pacman.conf:2: Server URL 'http://a/$repo # old mirror' contains a space or control character; a '#' comment must be on a line of its own".into(),
            ),
            (
                "[core]\nServer = http://a\u{1b}[31m\n",
                "pacman.conf:2: Server URL 'http://a\\u{1b}[31m' contains a space or control character".into(),
            ),
            (
                long_server.as_str(),
                format!("pacman.conf:2: Server URL {long_quoted} contains a space or control character"),
            ),
            ("[core]\nServer = /\n", "pacman.conf:2: Server URL is just '/'".into()),
            (
                "[core]\nInclude = /etc/pacman.d/mirrorlist\n",
                "pacman.conf:2: Include = '/etc/pacman.d/mirrorlist': includes cannot be followed here".into(),
            ),
        ];
        for (text, expected) in &cases {
            match parse(text) {
                Ok(conf) => panic!("{text:?} parsed: {conf:?}"),
                Err(e) => assert_eq!(&e, expected, "{text:?}"),
            }
        }
    }

    #[test]
    fn error_fields_and_display() {
        let e = parse_str("[core\n", Path::new("/etc/pacman.conf")).unwrap_err();
        assert_eq!(e.path, PathBuf::from("/etc/pacman.conf"));
        assert_eq!(e.line, Some(1));
        assert_eq!(e.message, "section header is missing ']'");
        let e = ConfError::file(Path::new("a\nb.conf"), "bad\r");
        assert_eq!(e.to_string(), "a\\nb.conf: bad\\r");
        let _: &dyn std::error::Error = &e;
    }

    #[test]
    fn huge_text_is_rejected() {
        let big = "#".repeat(MAX_CONF_BYTES as usize + 1);
        assert_eq!(
            parse(&big).unwrap_err(),
            format!("pacman.conf: larger than {MAX_CONF_BYTES} bytes; that is no pacman.conf")
        );
        // Exactly at the limit is fine.
        let mut fits = "[core]\nServer = http://a\n".to_owned();
        fits.push_str(&"#".repeat(MAX_CONF_BYTES as usize - fits.len()));
        assert_eq!(parse(&fits).unwrap().repos[0].servers, ["http://a"]);
        // Many lines: still linear; as many servers as allowed, one more is refused.
        let lines = format!("[core]\n{}", "SigLevel = Never\n".repeat(50_000));
        assert_eq!(parse(&lines).unwrap().repos[0].servers.len(), 0);
        let many = format!(
            "[core]\n{}",
            "Server = http://a\n".repeat(MAX_SERVERS_PER_REPO)
        );
        assert_eq!(
            parse(&many).unwrap().repos[0].servers.len(),
            MAX_SERVERS_PER_REPO
        );
    }

    #[test]
    fn repo_lookup() {
        let conf = parse("[core]\nServer = http://c\n[extra]\n").unwrap();
        assert_eq!(conf.repo("core").unwrap().servers, ["http://c"]);
        assert!(conf.repo("extra").unwrap().servers.is_empty());
        assert!(conf.repo("Core").is_none());
        assert!(conf.repo("options").is_none());
    }

    #[test]
    fn stock_arch_linux() {
        let conf = parse_virtual(
            &[
                ("/etc/pacman.conf", ARCH_PACMAN_CONF),
                ("/etc/pacman.d/mirrorlist", ARCH_MIRRORLIST),
            ],
            "/etc/pacman.conf",
        )
        .unwrap();
        let servers = |repo: &str| {
            vec![
                format!("https://geo.mirror.pkgbuild.com/{repo}/os/$arch"),
                format!("https://mirror.rackspace.com/archlinux/{repo}/os/$arch"),
            ]
        };
        assert_eq!(
            conf,
            PacmanConf {
                cache_dirs: vec![PathBuf::from(DEFAULT_CACHE_DIR)],
                architectures: vec![host::machine_arch().to_owned()],
                db_path: PathBuf::from(DEFAULT_DB_PATH),
                repos: ["core", "extra", "multilib"]
                    .iter()
                    .map(|r| Repo {
                        name: r.to_string(),
                        servers: servers(r),
                    })
                    .collect(),
            }
        );
    }

    #[test]
    fn stock_arch_linux_arm() {
        let conf = parse_virtual(
            &[
                ("/etc/pacman.conf", ALARM_PACMAN_CONF),
                ("/etc/pacman.d/mirrorlist", ALARM_MIRRORLIST),
            ],
            "/etc/pacman.conf",
        )
        .unwrap();
        assert_eq!(conf.architectures, ["aarch64"]);
        assert_eq!(conf.cache_dirs, [PathBuf::from(DEFAULT_CACHE_DIR)]);
        assert_eq!(
            repos(&conf),
            want(&[
                ("core", &["http://mirror.archlinuxarm.org/$arch/core"]),
                ("extra", &["http://mirror.archlinuxarm.org/$arch/extra"]),
                ("alarm", &["http://mirror.archlinuxarm.org/$arch/alarm"]),
                ("aur", &["http://mirror.archlinuxarm.org/$arch/aur"]),
            ])
        );
    }

    #[test]
    fn includes_in_memory() {
        // (files, main, expected repos or the error)
        type Case<'a> = (&'a [(&'a str, &'a str)], Result<Repos<'a>, &'a str>);
        let cases: &[Case<'_>] = &[
            (
                &[
                    (
                        "m",
                        "[core]\nServer = http://first\nInclude = l\nServer = http://last\n",
                    ),
                    ("l", "# mirrors\nServer = http://$repo.mirror\n"),
                ],
                Ok(&[(
                    "core",
                    &["http://first", "http://core.mirror", "http://last"],
                )]),
            ),
            (
                &[
                    ("m", "[options]\nInclude = opts\n[core]\n"),
                    ("opts", "CacheDir = /x\nArchitecture = armv7h\n"),
                ],
                Ok(&[("core", &[])]),
            ),
            (
                // A header in an included file switches the section, also after the Include.
                &[
                    ("m", "[core]\nInclude = repos\nServer = http://after\n"),
                    ("repos", "[extra]\nServer = http://e\n"),
                ],
                Ok(&[("core", &[]), ("extra", &["http://e", "http://after"])]),
            ),
            (
                &[
                    ("m", "[options]\nInclude = d/*.conf\n"),
                    ("d/b.conf", "[b]\nServer = http://b\n"),
                    ("d/a.conf", "[a]\nServer = http://a\n"),
                    ("d/c.txt", "[c]\n"),
                ],
                Ok(&[("a", &["http://a"]), ("b", &["http://b"])]),
            ),
            (
                &[("m", "[core]\nInclude = d/*.conf\n")],
                Ok(&[("core", &[])]),
            ),
            (
                // Nested exactly MAX_INCLUDE_DEPTH deep is fine.
                &[
                    ("m", "[core]\nInclude = 1\n"),
                    ("1", "Include = 2\n"),
                    ("2", "Include = 3\n"),
                    ("3", "Include = 4\n"),
                    ("4", "Include = 5\n"),
                    ("5", "Include = 6\n"),
                    ("6", "Include = 7\n"),
                    ("7", "Include = 8\n"),
                    ("8", "Server = http://deep\n"),
                ],
                Ok(&[("core", &["http://deep"])]),
            ),
            (
                &[
                    ("m", "[core]\nInclude = 1\n"),
                    ("1", "Include = 2\n"),
                    ("2", "Include = 3\n"),
                    ("3", "Include = 4\n"),
                    ("4", "Include = 5\n"),
                    ("5", "Include = 6\n"),
                    ("6", "Include = 7\n"),
                    ("7", "Include = 8\n"),
                    ("8", "Include = 9\n"),
                    ("9", "Server = http://too-deep\n"),
                ],
                Err(
                    "8:1: Includes nested more than 8 deep: m -> 1 -> 2 -> 3 -> 4 -> 5 -> 6 -> 7 -> 8 -> 9",
                ),
            ),
            (
                &[("m", "[core]\n\nInclude = m\n")],
                Err("m:3: Include loop: m -> m"),
            ),
            (
                &[
                    ("m", "[core]\nInclude = a\n"),
                    ("a", "# a\nInclude = b\n"),
                    ("b", "Include = a\n"),
                ],
                Err("b:1: Include loop: m -> a -> b -> a"),
            ),
            (
                &[
                    ("m", "[core]\nInclude = d/*\n"),
                    ("d/x", "Server = http://x\n"),
                    ("d/y", "Include = d/*\n"),
                ],
                Err("d/y:1: Include loop: m -> d/y -> d/y"),
            ),
            (
                &[("m", "[core]\nInclude = /etc/pacman.d/mirrorlsit\n")],
                Err("m:2: Include: no such file /etc/pacman.d/mirrorlsit"),
            ),
            (
                // Errors inside an included file name that file and its line.
                &[
                    ("m", "[core]\nInclude = l\n"),
                    ("l", "Server = http://ok\r\n\r\n[bad\r\n"),
                ],
                Err("l:3: section header is missing ']'"),
            ),
            (
                &[("m", "[core]\nInclude = l\n"), ("l", "Server =\n")],
                Err("l:1: Server has an empty value; write Server = VALUE"),
            ),
        ];
        for (files, expected) in cases {
            let got = parse_virtual(files, "m");
            match (got, expected) {
                (Ok(conf), Ok(repos_want)) => {
                    assert_eq!(repos(&conf), want(repos_want), "{files:?}")
                }
                (Err(e), Err(msg)) => assert_eq!(&e, msg, "{files:?}"),
                (got, _) => panic!("{files:?}: got {got:?}, want {expected:?}"),
            }
        }
    }

    /// A directory under the system temp dir, removed when dropped (also on panic).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let dir = std::env::temp_dir().join(format!(
                "pacserve-conf-{name}-{}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let path = self.0.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            path
        }

        fn path(&self, rel: &str) -> String {
            self.0.join(rel).display().to_string()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn load_err(path: &Path) -> String {
        match load(path) {
            Ok(conf) => panic!("{} loaded: {conf:?}", path.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn load_missing_file() {
        let path = Path::new("/nonexistent-pacserve-test/pacman.conf");
        assert_eq!(
            load_err(path),
            "/nonexistent-pacserve-test/pacman.conf: cannot read: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn load_with_globs_and_files() {
        let t = TempDir::new("glob");
        let d = t.path("mirrorlist.d");
        t.write("mirrorlist.d/b.conf", "Server = http://b/$repo\n");
        t.write("mirrorlist.d/a.conf", "# a\nServer = http://a/$repo\n");
        t.write("mirrorlist.d/.hidden.conf", "Server = http://hidden\n");
        t.write("mirrorlist.d/c.conf.pacnew", "Server = http://pacnew\n");
        t.write("mirrorlist.d/dir.conf/x", "Server = http://dir\n");
        t.write("mirrorlist", "Server = http://plain/$repo\n");
        t.write("sub/one/mirrorlist", "Server = http://one\n");
        t.write("sub/two/mirrorlist", "Server = http://two\n");
        t.write("sub/three/other", "Server = http://other\n");
        let main = t.write(
            "pacman.conf",
            &format!(
                "[options]\nCacheDir = {dir}/cache\n[core]\nInclude = {d}/*.conf\nInclude = {dir}/mirrorlist\n\
                 [extra]\nInclude = {d}/[ab].conf\nInclude = {d}/.h*\n\
                 [nothing]\nInclude = {d}/*.nomatch\nInclude = {dir}/nodir/*/x\n\
                 [sub]\nInclude = {dir}/sub/*/mirrorlist\n",
                dir = t.0.display()
            ),
        );
        let conf = load(&main).unwrap();
        assert_eq!(conf.cache_dirs, [t.0.join("cache")]);
        assert_eq!(
            repos(&conf),
            want(&[
                (
                    "core",
                    &["http://a/core", "http://b/core", "http://plain/core"]
                ),
                (
                    "extra",
                    &["http://a/extra", "http://b/extra", "http://hidden"]
                ),
                ("nothing", &[]),
                ("sub", &["http://one", "http://two"]),
            ])
        );
    }

    #[test]
    fn load_relative_glob() {
        // Relative Include paths are taken against the current directory, as pacman does.
        let t = TempDir::new("relative");
        t.write("d/x.conf", "Server = http://x\n");
        let cwd = std::env::current_dir().unwrap();
        let up = "../".repeat(cwd.components().count().saturating_sub(1));
        let rel = format!("{up}{}", t.0.strip_prefix("/").unwrap().display());
        let main = t.write(
            "pacman.conf",
            &format!("[core]\nInclude = {rel}/d/*.conf\n"),
        );
        let conf = load(&main).unwrap();
        assert_eq!(repos(&conf), want(&[("core", &["http://x"])]));
    }

    #[test]
    fn load_errors() {
        let t = TempDir::new("errors");
        let dir = t.0.display().to_string();

        let main = t.write(
            "missing.conf",
            &format!("[core]\n\nInclude = {dir}/mirrorlsit\n"),
        );
        assert_eq!(
            load_err(&main),
            format!("{dir}/missing.conf:3: Include: no such file {dir}/mirrorlsit")
        );

        let main = t.write("self.conf", &format!("[core]\nInclude = {dir}/self.conf\n"));
        assert_eq!(
            load_err(&main),
            format!("{dir}/self.conf:2: Include loop: {dir}/self.conf -> {dir}/self.conf")
        );

        t.write("loop/a.conf", &format!("Include = {dir}/loop/b.conf\n"));
        t.write("loop/b.conf", &format!("Include = {dir}/loop/*.conf\n"));
        let main = t.write(
            "loop.conf",
            &format!("[core]\nInclude = {dir}/loop/a.conf\n"),
        );
        assert_eq!(
            load_err(&main),
            format!(
                "{dir}/loop/b.conf:1: Include loop: {dir}/loop.conf -> {dir}/loop/a.conf -> {dir}/loop/b.conf -> {dir}/loop/a.conf"
            )
        );

        let main = t.write("dir.conf", &format!("[core]\nInclude = {dir}/loop\n"));
        assert_eq!(
            load_err(&main),
            format!(
                "{dir}/dir.conf:2: Include: {dir}/loop: {}",
                not_regular_message()
            )
        );

        let big = "#".repeat(MAX_CONF_BYTES as usize + 1);
        let big_path = t.write("big.conf", &big);
        assert_eq!(
            load_err(&big_path),
            format!("{dir}/big.conf: larger than {MAX_CONF_BYTES} bytes; that is no pacman.conf")
        );
        let main = t.write(
            "inc-big.conf",
            &format!("[core]\nInclude = {dir}/big.conf\n"),
        );
        assert_eq!(
            load_err(&main),
            format!(
                "{dir}/inc-big.conf:2: Include: {dir}/big.conf is larger than {MAX_CONF_BYTES} bytes"
            )
        );
        // A device, a FIFO (which would block a plain open until someone writes) or a
        // directory is refused at once, in an Include or as the file itself.
        let main = t.write("zero.conf", "[core]\nInclude = /dev/zero\n");
        assert_eq!(
            load_err(&main),
            format!(
                "{dir}/zero.conf:2: Include: /dev/zero: {}",
                not_regular_message()
            )
        );
        let fifo = t.0.join("fifo.conf");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .expect("mkfifo");
        let main = t.write(
            "inc-fifo.conf",
            &format!("[core]\nInclude = {}\n", fifo.display()),
        );
        assert_eq!(
            load_err(&main),
            format!(
                "{dir}/inc-fifo.conf:2: Include: {}: {}",
                fifo.display(),
                not_regular_message()
            )
        );
        assert_eq!(
            load_err(&fifo),
            format!("{}: {}", fifo.display(), not_regular_message())
        );
        assert_eq!(
            load_err(&t.0),
            format!("{}: {}", t.0.display(), not_regular_message())
        );

        // Fan-out: each level includes the next 30 times; 30^3 reads are refused early.
        t.write("fan/d.conf", "Server = http://mirror.example/$repo\n");
        for (name, next) in [("c", "d"), ("b", "c"), ("a", "b")] {
            let line = format!("Include = {dir}/fan/{next}.conf\n");
            t.write(&format!("fan/{name}.conf"), &line.repeat(30));
        }
        let main = t.write("fan.conf", &format!("[core]\nInclude = {dir}/fan/a.conf\n"));
        let e = load_err(&main);
        assert!(
            e.contains(&format!("read more than {MAX_INCLUDED_FILES} files")),
            "{e}"
        );
        // Too many Server lines in one repository.
        let many = "Server = http://m.example/$repo\n".repeat(MAX_SERVERS_PER_REPO + 1);
        let main = t.write("servers.conf", &format!("[core]\n{many}"));
        assert_eq!(
            load_err(&main),
            format!(
                "{dir}/servers.conf:{}: [core] has more than {MAX_SERVERS_PER_REPO} Server lines; \
                 pacman uses the first few, keep those",
                MAX_SERVERS_PER_REPO + 2
            )
        );

        for i in 0..=MAX_GLOB_MATCHES {
            t.write(&format!("many/{i:03}.conf"), "");
        }
        let main = t.write(
            "many.conf",
            &format!("[core]\nInclude = {dir}/many/*.conf\n"),
        );
        assert_eq!(
            load_err(&main),
            format!(
                "{dir}/many.conf:2: Include: {dir}/many/*.conf matches more than {MAX_GLOB_MATCHES} files; narrow it"
            )
        );
    }

    #[test]
    fn load_invalid_utf8_is_not_fatal() {
        let t = TempDir::new("latin1");
        let path = t.0.join("pacman.conf");
        std::fs::write(&path, b"# \xd6sterreich\n[core]\nServer = http://a\n").unwrap();
        let conf = load(&path).unwrap();
        assert_eq!(repos(&conf), want(&[("core", &["http://a"])]));
    }
}
