//! Child processes: [`Process`], a started child killed by pid (with its process group when it
//! leads one) and reaped on drop, and the one bounded runner for commands that must finish.
//!
//! The runner sends stdout and stderr to unlinked scratch files, not pipes: a grandchild that
//! keeps a pipe open (chromium's helpers, pacman under pacsrv) can then never make a test wait.

use std::fs::{self, File};
use std::io::{self, Read, Seek};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process, kill_process_group};

use super::wait_until;

/// A started child; killed by pid and reaped on drop.
pub struct Process {
    child: Child,
    /// It leads a process group of its own, killed with it.
    group: bool,
    status: Option<ExitStatus>,
}

impl Process {
    /// Start `cmd`; with `group`, as the leader of a new process group (for programs that
    /// start children of their own), so that all of them are killed together.
    pub fn spawn(cmd: &mut Command, group: bool) -> io::Result<Process> {
        if group {
            cmd.process_group(0);
        }
        Ok(Process {
            child: cmd.spawn()?,
            group,
            status: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's stderr pipe, when it was piped (once).
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// The exit status once it has exited (and been reaped); None while it runs.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.status = Some(s);
            }
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.exited().is_none()
    }

    /// Wait (bounded) for it to exit; None if it still runs at `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_until(limit, || self.exited().is_some());
        self.status
    }

    /// Send `sig` by pid, only while the child is unreaped (so the pid is still its own).
    pub fn signal(&mut self, sig: Signal) -> io::Result<()> {
        if let Some(s) = self.exited() {
            return Err(io::Error::other(format!("already exited: {s}")));
        }
        kill_process(Pid::from_child(&self.child), sig).map_err(io::Error::from)
    }

    /// SIGKILL by pid (its whole group first, when it leads one) and reap; idempotent.
    pub fn kill(&mut self) {
        if self.exited().is_none() {
            // Still unreaped: neither the pid nor the group's id can have been reused.
            let pid = Pid::from_child(&self.child);
            if self.group {
                let _ = kill_process_group(pid, Signal::KILL);
            }
            let _ = kill_process(pid, Signal::KILL);
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a bounded run of a command left behind.
#[derive(Debug)]
pub struct Ran {
    pub pid: u32,
    /// None when the command was killed at its time limit.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl Ran {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// stdout then stderr, for assertions and failure messages.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Everything about the run, for failure messages.
    pub fn report(&self) -> String {
        format!(
            "status {:?} (timed out: {})\n--- stdout:\n{}\n--- stderr:\n{}",
            self.status, self.timed_out, self.stdout, self.stderr
        )
    }

    /// Fail with `what`, the run's report and `context` unless it exited 0.
    pub fn assert_ok(&self, what: &str, context: &str) {
        assert!(
            self.success(),
            "{what} failed: {}\n{context}",
            self.report()
        );
    }
}

/// Run `cmd` with stdin closed, capturing stdout and stderr; kill it (by pid) after `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Ran {
    try_run_bounded(cmd, limit).unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"))
}

/// [`run_bounded`], with a program that cannot be started as an error instead of a panic.
pub fn try_run_bounded(cmd: &mut Command, limit: Duration) -> io::Result<Ran> {
    run(cmd, limit, false)
}

/// [`run_bounded`] in a process group of its own, all of which is killed at the limit.
pub fn run_grouped(cmd: &mut Command, limit: Duration) -> Ran {
    run(cmd, limit, true).unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"))
}

fn run(cmd: &mut Command, limit: Duration, group: bool) -> io::Result<Ran> {
    let (out, err) = (scratch_file()?, scratch_file()?);
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?);
    let mut p = Process::spawn(cmd, group)?;
    let status = p.wait_exit(limit);
    p.kill();
    Ok(Ran {
        pid: p.pid(),
        status,
        stdout: read_back(out),
        stderr: read_back(err),
        timed_out: status.is_none(),
    })
}

static SCRATCH: AtomicUsize = AtomicUsize::new(0);

/// A file under /tmp that is unlinked at once: it goes away with its last descriptor.
fn scratch_file() -> io::Result<File> {
    let n = SCRATCH.fetch_add(1, Ordering::SeqCst);
    let path = std::env::temp_dir().join(format!("pacserve-test-out-{}-{n}", std::process::id()));
    let f = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    fs::remove_file(&path)?;
    Ok(f)
}

fn read_back(mut f: File) -> String {
    let mut bytes = Vec::new();
    let _ = f.rewind().and_then(|()| f.read_to_end(&mut bytes));
    String::from_utf8_lossy(&bytes).into_owned()
}
