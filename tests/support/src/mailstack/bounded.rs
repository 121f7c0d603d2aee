//! Running the tests' child processes with a deadline: a hung server, a
//! hung kxca or a daemon that keeps an inherited pipe open fails the test
//! with a message instead of hanging it. Output goes to files, not pipes,
//! so a daemon the child leaves behind cannot hold the test up.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Long enough for any single step of the mail tests on a loaded 2-core
/// machine; reaching it means something hangs.
pub const DEADLINE: Duration = Duration::from_secs(90);

/// A child whose stdout and stderr go to files.
pub struct Running {
    /// The child process.
    pub child: Child,
    what: String,
    _dir: tempfile::TempDir,
    out: PathBuf,
    err: PathBuf,
}

/// Spawns `cmd` with stdout and stderr captured to files; `what` names it in panics.
pub fn spawn(cmd: &mut Command, what: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stdout");
    let err = dir.path().join("stderr");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    Running {
        child,
        what: what.to_string(),
        _dir: dir,
        out,
        err,
    }
}

impl Running {
    /// Waits up to DEADLINE; kills the child (by its PID) and panics after.
    pub fn wait(mut self) -> Output {
        let start = Instant::now();
        let status: ExitStatus = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > DEADLINE {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not finish within {} s; stderr so far:\n{}",
                    self.what,
                    DEADLINE.as_secs(),
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Output {
            status,
            stdout: std::fs::read(&self.out).unwrap(),
            stderr: std::fs::read(&self.err).unwrap(),
        }
    }
}

/// `cmd.output()` with a deadline.
pub fn output(cmd: &mut Command, what: &str) -> Output {
    spawn(cmd, what).wait()
}

/// Polls `done` every few milliseconds until it holds; panics with `what`
/// after DEADLINE.
pub fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < DEADLINE,
            "gave up after {} s waiting for {what}",
            DEADLINE.as_secs()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
