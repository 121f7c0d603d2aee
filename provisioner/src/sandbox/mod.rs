//! Parsing untrusted bytes (attached spreadsheets, received mail) in a
//! child process with hard limits.
//!
//! calamine and mail-parser are large parsers fed by strangers; a bug in
//! either (a panic, an allocation of what a header claims, a recursive
//! drop overflowing the stack) must not take down the process that holds
//! the store and may answer OCSP. So `kxca` re-executes itself as a hidden
//! worker ([`WORKER_ARG`]) that reads one job on stdin and answers on
//! stdout. The child gets an empty environment (no passphrases, no
//! `KXCA_HOME`), `/` as its working directory, no path to the store, and
//! rlimits on address space, CPU time, file size, open files and core
//! dumps, set between fork and exec so they are in force before a single
//! byte of input is read. The parent adds a wall-clock deadline and a cap
//! on the answer's size. Whatever happens to the child is reported as a
//! [`Contained`] failure, never as the parent's crash.

mod worker;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use worker::worker_main;

/// The argument that makes `kxca` run as the parsing worker. Not a clap
/// subcommand: the binary dispatches it before parsing its command line.
pub const WORKER_ARG: &str = "__kxca-parse-worker";

/// Limits on one worker run: the `[sandbox]` table of the intake policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxLimits {
    /// RLIMIT_AS: address space of the worker, in bytes.
    pub memory_bytes: u64,
    /// RLIMIT_CPU: CPU seconds before the kernel stops the worker.
    pub cpu_seconds: u64,
    /// Wall-clock seconds before the parent kills the worker.
    pub wall_seconds: u64,
    /// Largest answer read back; a mail's attachments travel in it.
    pub answer_bytes: u64,
    /// RLIMIT_NOFILE: the worker needs stdin, stdout and stderr only.
    pub open_files: u64,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            // A 10,000-row form inflates to some 100 MB of XML that calamine
            // holds as strings: 1 GiB leaves room for that and the binary.
            memory_bytes: 1 << 30,
            cpu_seconds: 20,
            wall_seconds: 30,
            // A 25 MB mail's attachments, base64 in JSON, plus slack.
            answer_bytes: 64 << 20,
            open_files: 16,
        }
    }
}

impl SandboxLimits {
    /// Checks the values are usable; `what` names the table in errors.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |key: &str, why: &str| Err(format!("[sandbox] {key}: {why}"));
        if self.memory_bytes < (64 << 20) {
            return bad("memory_bytes", "must be at least 67108864 (64 MiB)");
        }
        if self.cpu_seconds == 0 || self.cpu_seconds > 3600 {
            return bad("cpu_seconds", "must be between 1 and 3600");
        }
        if self.wall_seconds == 0 || self.wall_seconds > 3600 {
            return bad("wall_seconds", "must be between 1 and 3600");
        }
        if self.answer_bytes < 4096 {
            return bad("answer_bytes", "must be at least 4096");
        }
        if !(4..=1024).contains(&self.open_files) {
            return bad("open_files", "must be between 4 and 1024");
        }
        Ok(())
    }
}

/// Why a worker gave no answer. Each is a recorded outcome ("the file
/// could not be read"), not an error of the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Contained {
    /// Killed at the wall-clock limit (seconds).
    #[error("the reader was stopped after {0} s (wall-clock limit)")]
    WallTime(u64),
    /// Stopped at RLIMIT_CPU (seconds).
    #[error("the reader used up its {0} s of CPU time")]
    CpuTime(u64),
    /// An allocation failed under RLIMIT_AS (bytes).
    #[error("the reader ran out of memory (limit {0} bytes)")]
    Memory(u64),
    /// A stack overflow (deep recursion in a parser).
    #[error("the reader overflowed its stack")]
    Stack,
    /// A parser panicked; the message.
    #[error("the reader failed inside the parser: {0}")]
    Panic(String),
    /// Its answer was over the cap (bytes).
    #[error("the reader's answer exceeded {0} bytes")]
    AnswerTooLarge(u64),
    /// Killed by another signal or exited abnormally; how.
    #[error("the reader died ({0})")]
    Died(String),
    /// It could not be started; why.
    #[error("the reader could not be started: {0}")]
    Spawn(String),
    /// Its answer was not the expected JSON; why.
    #[error("the reader's answer could not be understood: {0}")]
    Protocol(String),
}

impl Contained {
    /// A stable code for the store and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Contained::WallTime(_) => "reader_wall_time",
            Contained::CpuTime(_) => "reader_cpu_time",
            Contained::Memory(_) => "reader_memory",
            Contained::Stack => "reader_stack",
            Contained::Panic(_) => "reader_panic",
            Contained::AnswerTooLarge(_) => "reader_answer_too_large",
            Contained::Died(_) => "reader_died",
            Contained::Spawn(_) => "reader_spawn",
            Contained::Protocol(_) => "reader_protocol",
        }
    }
}

/// One job for the worker. The form job carries the intake policy's text
/// (the worker has no path to read it from) and the mail job its limits.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Job {
    Form {
        file: String,
        policy: String,
        keep_copy: bool,
    },
    Mail {
        limits: crate::mail::mime::Limits,
    },
}

/// What the worker prints: its result, or the panic it caught.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Answer<T> {
    Done(T),
    Panicked(String),
}

/// Bytes as base64 in the worker's JSON: arrays of numbers would be four
/// times the size.
pub(crate) mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// How to start a worker: the `kxca` executable and the limits.
#[derive(Debug, Clone)]
pub struct Sandbox {
    exe: PathBuf,
    limits: SandboxLimits,
}

impl Sandbox {
    /// Workers started from `exe` (the kxca binary) under `limits`.
    pub fn new(exe: PathBuf, limits: SandboxLimits) -> Sandbox {
        Sandbox { exe, limits }
    }

    /// The running executable as the worker: call from the `kxca` binary.
    /// `/proc/self/exe` rather than the path it names, so that a daemon
    /// whose binary was replaced by an upgrade still starts the worker it
    /// was built with.
    pub fn current(limits: SandboxLimits) -> std::io::Result<Sandbox> {
        let exe = std::env::current_exe()?;
        let proc_exe = PathBuf::from("/proc/self/exe");
        Ok(Sandbox::new(
            if proc_exe.exists() { proc_exe } else { exe },
            limits,
        ))
    }

    /// The limits each worker runs under.
    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    /// Runs `job` on `input` in a worker and decodes its answer.
    pub(crate) fn run<T: serde::de::DeserializeOwned>(
        &self,
        job: &Job,
        input: &[u8],
    ) -> Result<T, Contained> {
        let header =
            serde_json::to_vec(job).map_err(|e| Contained::Protocol(format!("job: {e}")))?;
        let out = self.run_raw(&header, input)?;
        match serde_json::from_slice::<Answer<T>>(&out) {
            Ok(Answer::Done(v)) => Ok(v),
            Ok(Answer::Panicked(m)) => Err(Contained::Panic(m)),
            Err(e) => Err(Contained::Protocol(e.to_string())),
        }
    }

    fn run_raw(&self, header: &[u8], input: &[u8]) -> Result<Vec<u8>, Contained> {
        let limits = self.limits;
        let rlimits = rlimits(&limits);
        let mut cmd = Command::new(&self.exe);
        cmd.arg(WORKER_ARG)
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        set_limits_before_exec(&mut cmd, rlimits);
        let mut child = cmd.spawn().map_err(|e| Contained::Spawn(e.to_string()))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Contained::Spawn("no pipes to the worker".into()));
        };
        // Feeding and reading run beside the deadline: a worker that stops
        // reading or writing must not block the parent past it.
        std::thread::scope(|s| {
            let feeder = s.spawn(move || {
                // A worker that dies early closes the pipe: its exit
                // status, not this write error, tells what happened.
                let _ = stdin
                    .write_all(&(header.len() as u64).to_le_bytes())
                    .and_then(|_| stdin.write_all(header))
                    .and_then(|_| stdin.write_all(input));
            });
            let cap = limits.answer_bytes;
            let reader = s.spawn(move || {
                let mut out = Vec::new();
                let r = stdout.take(cap + 1).read_to_end(&mut out);
                (r.is_ok(), out)
            });
            let errors = s.spawn(move || {
                let mut text = Vec::new();
                let mut stderr = stderr;
                let _ = (&mut stderr).take(8192).read_to_end(&mut text);
                // Keep draining so a chatty worker never blocks on stderr.
                let _ = std::io::copy(&mut stderr, &mut std::io::sink());
                String::from_utf8_lossy(&text).into_owned()
            });
            let deadline = Instant::now() + Duration::from_secs(limits.wall_seconds);
            let mut pause = Duration::from_millis(1);
            let mut timed_out = false;
            let status: Option<ExitStatus> = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Some(status),
                    Ok(None) if Instant::now() >= deadline => {
                        timed_out = true;
                        let _ = child.kill();
                        break child.wait().ok();
                    }
                    Ok(None) => {
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_millis(20));
                    }
                    Err(_) => {
                        let _ = child.kill();
                        break child.wait().ok();
                    }
                }
            };
            let _ = feeder.join();
            let (read_ok, out) = reader.join().unwrap_or((false, Vec::new()));
            let stderr_text = errors.join().unwrap_or_default();
            if timed_out {
                return Err(Contained::WallTime(limits.wall_seconds));
            }
            if out.len() as u64 > cap {
                return Err(Contained::AnswerTooLarge(cap));
            }
            let Some(status) = status else {
                return Err(Contained::Died("its status could not be read".into()));
            };
            if status.success() && read_ok {
                return Ok(out);
            }
            Err(diagnose(status, &stderr_text, &limits))
        })
    }
}

/// Names what ended a worker from its status and the last words it wrote.
fn diagnose(status: ExitStatus, stderr: &str, limits: &SandboxLimits) -> Contained {
    use std::os::unix::process::ExitStatusExt;
    if stderr.contains("memory allocation of") || stderr.contains("capacity overflow") {
        return Contained::Memory(limits.memory_bytes);
    }
    if stderr.contains("overflowed its stack") {
        return Contained::Stack;
    }
    match status.signal() {
        // RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL one second later.
        Some(24) => Contained::CpuTime(limits.cpu_seconds),
        Some(sig) => Contained::Died(format!("signal {sig}")),
        None => Contained::Died(format!("exit status {}", status.code().unwrap_or_default())),
    }
}

/// (resource, soft, hard) for each limit, clamped to what this process may
/// set: an unprivileged process can lower but never raise a hard limit.
type Rlimits = [(rustix::process::Resource, u64, u64); 5];

fn rlimits(l: &SandboxLimits) -> Rlimits {
    use rustix::process::Resource;
    let clamp = |r: Resource, soft: u64, hard: u64| {
        let max = rustix::process::getrlimit(r).maximum.unwrap_or(u64::MAX);
        (r, soft.min(max), hard.min(max))
    };
    [
        clamp(Resource::As, l.memory_bytes, l.memory_bytes),
        clamp(Resource::Cpu, l.cpu_seconds, l.cpu_seconds + 1),
        clamp(Resource::Core, 0, 0),
        // The worker writes no files: any write to one is a fault.
        clamp(Resource::Fsize, 0, 0),
        clamp(Resource::Nofile, l.open_files, l.open_files),
    ]
}

#[allow(unsafe_code)]
fn set_limits_before_exec(cmd: &mut Command, limits: Rlimits) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed. It makes setrlimit system calls
    // through rustix (no allocation, no locks) on values computed before
    // the fork, and builds an io::Error only from an errno.
    unsafe {
        cmd.pre_exec(move || {
            for (resource, soft, hard) in limits {
                rustix::process::setrlimit(
                    resource,
                    rustix::process::Rlimit {
                        current: Some(soft),
                        maximum: Some(hard),
                    },
                )?;
            }
            Ok(())
        });
    }
}
