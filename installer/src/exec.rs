//! Runs a plan: each step in order, each command's output logged, progress shown, and a stop at
//! the first failure that names the step, the command and its output.
//!
//! The log goes to stderr and, once the plan says the target exists ([`Action::LogTo`]), to a file
//! on it as well; lines logged before that are written to the file first, so it is complete.

use crate::config::Secret;
use crate::plan::{Action, Contents, Plan, Stdin};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How many lines of a failed command's output the error shows.
const OUTPUT_TAIL: usize = 40;

/// A failed install: which step, which action, and what it printed.
#[derive(Debug, thiserror::Error)]
#[error("step {step:?} failed: {action}\n{output}")]
pub struct ExecError {
    pub step: String,
    /// The command (as a shell line) or file, and how it failed.
    pub action: String,
    /// The last lines of its output.
    pub output: String,
}

/// How progress is shown: bars on a terminal, plain lines otherwise (CI, a serial console log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Bars,
    Lines,
}

impl ProgressMode {
    /// Bars only where a person watches (see [`interactive`]).
    pub fn detect() -> ProgressMode {
        if interactive() {
            ProgressMode::Bars
        } else {
            ProgressMode::Lines
        }
    }
}

/// Whether `$CI` says this runs in CI (set and neither empty nor `false`).
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// Whether a person watches: stderr is a terminal and this is not CI. Progress is drawn and
/// questions are asked only then (the installer's and `cargo xtask`'s one test for it).
pub fn interactive() -> bool {
    use std::io::IsTerminal;
    !in_ci() && std::io::stderr().is_terminal()
}

/// The install log: stderr, a bounded memory of early lines, and a file once there is one.
struct Log {
    started: Instant,
    early: Vec<String>,
    file: Option<File>,
    /// A copy of every line from the start (the medium's, `crate::medium_log`).
    copy: Option<File>,
    bar: Option<ProgressBar>,
}

impl Log {
    fn line(&mut self, text: &str) {
        let line = format!("[{:>7.1}s] {text}", self.started.elapsed().as_secs_f64());
        match &self.bar {
            Some(bar) => bar.println(&line),
            None => eprintln!("{line}"),
        }
        if let Some(copy) = &mut self.copy {
            let _ = writeln!(copy, "{line}");
        }
        match &mut self.file {
            Some(f) => {
                let _ = writeln!(f, "{line}");
            }
            None => self.early.push(line),
        }
    }

    fn open_file(&mut self, path: &Path) -> std::io::Result<()> {
        let mut f = OpenOptions::new().create(true).append(true).open(path)?;
        for line in self.early.drain(..) {
            writeln!(f, "{line}")?;
        }
        self.file = Some(f);
        Ok(())
    }
}

/// The secrets a plan's [`Contents::Secret`] files are written from, by variable name: given
/// to the run, never part of the plan, never logged.
#[derive(Debug, Default)]
pub struct Secrets(std::collections::BTreeMap<String, Secret>);

impl Secrets {
    pub fn with(mut self, variable: &str, value: Secret) -> Secrets {
        self.0.insert(variable.to_string(), value);
        self
    }
}

/// Runs `plan`; `secrets` are never logged.
pub fn run_plan(plan: &Plan, mode: ProgressMode, secrets: &Secrets) -> Result<(), ExecError> {
    run_plan_logging_to(plan, mode, secrets, None).0
}

/// [`run_plan`], every line of its log also written to `copy` from the start (the medium's
/// log); gives `copy` back, to be closed.
pub fn run_plan_logging_to(
    plan: &Plan,
    mode: ProgressMode,
    secrets: &Secrets,
    copy: Option<File>,
) -> (Result<(), ExecError>, Option<File>) {
    let log = Arc::new(Mutex::new(Log {
        started: Instant::now(),
        early: Vec::new(),
        file: None,
        copy,
        bar: None,
    }));
    let result = run_logged(plan, mode, secrets, &log);
    let copy = log.lock().unwrap().copy.take();
    (result, copy)
}

fn run_logged(
    plan: &Plan,
    mode: ProgressMode,
    secrets: &Secrets,
    log: &Arc<Mutex<Log>>,
) -> Result<(), ExecError> {
    let total = plan.steps.len();
    for (i, step) in plan.steps.iter().enumerate() {
        let header = format!("step {}/{total} {}: {}", i + 1, step.id.name(), step.title);
        let bar = (mode == ProgressMode::Bars).then(|| {
            let bar = ProgressBar::new(step.actions.len() as u64);
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{pos}/{len}] {msg} ({elapsed})")
                    .expect("valid template"),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        {
            let mut l = log.lock().unwrap();
            l.bar = bar.clone();
            l.line(&format!("==> {header}"));
        }
        for action in &step.actions {
            if let Some(bar) = &bar {
                bar.set_message(action.why().to_string());
            }
            run_action(action, log, mode, secrets).map_err(|(action, output)| {
                let e = ExecError {
                    step: step.id.name().to_string(),
                    action,
                    output,
                };
                log.lock().unwrap().line(&format!("FAILED: {e}"));
                e
            })?;
            if let Some(bar) = &bar {
                bar.inc(1);
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let mut l = log.lock().unwrap();
        l.bar = None;
        l.line(&format!("<== {} done", step.id.name()));
    }
    // A plan of nothing but step 0 (ZFSBootMenu fetched before the install) installs nothing.
    if plan
        .steps
        .iter()
        .any(|s| s.id != crate::plan::StepId::FetchBootMenu)
    {
        log.lock().unwrap().line("install complete");
    }
    Ok(())
}

/// Runs one action; on failure returns (what failed, its output tail).
fn run_action(
    action: &Action,
    log: &Arc<Mutex<Log>>,
    mode: ProgressMode,
    secrets: &Secrets,
) -> Result<(), (String, String)> {
    match action {
        Action::Run { argv, why, stdin } => {
            let shown = crate::plan::sh::quote_line(argv);
            log.lock().unwrap().line(&format!("$ {shown}    # {why}"));
            run_command(argv, stdin.as_ref(), log, mode)
                .map_err(|(how, out)| (format!("{why}: `{shown}` {how}"), out))
        }
        Action::WriteFile {
            path,
            contents,
            mode: bits,
            ..
        } => {
            log.lock()
                .unwrap()
                .line(&format!("write {} ({bits:04o})", path.display()));
            let bytes = match contents {
                Contents::Text { text } => text.as_bytes(),
                Contents::Secret { variable } => match secrets.0.get(variable) {
                    Some(Secret(s)) => s.as_bytes(),
                    None => {
                        return Err((
                            format!("writing {} failed", path.display()),
                            format!("the installer was given no {variable}"),
                        ));
                    }
                },
            };
            write_file(path, bytes, *bits)
                .map_err(|e| (format!("writing {} failed", path.display()), e.to_string()))
        }
        Action::DownloadRelease {
            releases_url,
            version,
            kernel_series,
            work,
            dest,
            ..
        } => {
            use crate::zbm::release::{SIGNING_KEY, curl, download_verified};
            log.lock().unwrap().line(&format!(
                "download ZFSBootMenu {version} from {releases_url} and verify it by its signature"
            ));
            let failed = || format!("installing ZFSBootMenu {version}'s release failed");
            let got = download_verified(
                releases_url,
                version,
                kernel_series.as_deref(),
                SIGNING_KEY,
                work,
                curl,
            )
            .map_err(|e| (failed(), e.to_string()))?;
            log.lock().unwrap().line(&format!(
                "{}: signature verified, sha256 {} as listed",
                got.name, got.sha256
            ));
            std::fs::copy(&got.path, dest)
                .and_then(|_| {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o644))
                })
                .map_err(|e| (failed(), format!("copying to {}: {e}", dest.display())))
        }
        Action::EmbedCmdline { file, line, .. } => {
            let kept = crate::zbm::image::set_cmdline(file, line).map_err(|e| {
                (
                    format!("embedding the command line in {} failed", file.display()),
                    e.to_string(),
                )
            })?;
            log.lock().unwrap().line(&match kept {
                Ok(()) => format!("{}: embedded command line {line:?}", file.display()),
                Err(why) => format!(
                    "{}: embedded command line left as it is: {why}; the firmware entries pass \
                     the line as load options, the fallback path keeps the file's own",
                    file.display()
                ),
            });
            Ok(())
        }
        Action::AddToInitramfs { root, files, .. } => {
            let images = crate::initrd::add::add_to_every_image(root, files).map_err(|e| {
                (
                    format!("adding {} to the initramfs failed", files.join(" ")),
                    e.to_string(),
                )
            })?;
            let mut l = log.lock().unwrap();
            for image in images {
                l.line(&format!(
                    "{}: {} added, before its compressed archive",
                    image.display(),
                    files.join(" ")
                ));
            }
            Ok(())
        }
        Action::SetEfiVariable { name, text, .. } => {
            let path = Path::new(crate::efivars::EFIVARFS).join(name);
            log.lock()
                .unwrap()
                .line(&format!("firmware variable {name}: {}", text.trim()));
            let mut bytes = 0x7u32.to_le_bytes().to_vec();
            bytes.extend(text.as_bytes());
            crate::efivars::remove_variable(&path)
                .and_then(|()| fs::write(&path, bytes))
                .map_err(|e| (format!("writing {} failed", path.display()), e.to_string()))
        }
        Action::RemoveEfiVariable { name, .. } => {
            let path = Path::new(crate::efivars::EFIVARFS).join(name);
            log.lock()
                .unwrap()
                .line(&format!("firmware variable {name}: removed, if there"));
            crate::efivars::remove_variable(&path)
                .map_err(|e| (format!("removing {} failed", path.display()), e.to_string()))
        }
        Action::CheckInitramfs {
            image, hostid_file, ..
        } => {
            let line = crate::initrd::readings::check(image, hostid_file)
                .map_err(|e| (format!("checking {} failed", image.display()), e))?;
            log.lock().unwrap().line(&line);
            Ok(())
        }
        Action::VerifySha256 { path, sha256, .. } => {
            let actual = crate::hash::file_sha256(path)
                .map_err(|e| (format!("reading {} failed", path.display()), e.to_string()))?;
            if actual.eq_ignore_ascii_case(sha256) {
                log.lock()
                    .unwrap()
                    .line(&format!("sha256 of {} is as pinned", path.display()));
                Ok(())
            } else {
                Err((
                    format!("{} does not have the expected sha256", path.display()),
                    format!(
                        "expected {sha256}\nactual   {actual}\nthe download is not the pinned file; nothing was booted from it"
                    ),
                ))
            }
        }
        Action::LogTo { path, .. } => {
            let mut l = log.lock().unwrap();
            match path {
                Some(p) => {
                    l.open_file(p).map_err(|e| {
                        (
                            format!("opening the log {} failed", p.display()),
                            e.to_string(),
                        )
                    })?;
                    l.line(&format!("logging to {}", p.display()));
                }
                None => {
                    l.line("logging to the target stops here");
                    l.file = None;
                }
            }
            Ok(())
        }
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    // Created unreadable, written, then given its mode: a secret is never readable by others.
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Runs a command, logging each output line and keeping the last ones for an error.
fn run_command(
    argv: &[String],
    stdin: Option<&Stdin>,
    log: &Arc<Mutex<Log>>,
    mode: ProgressMode,
) -> Result<(), (String, String)> {
    tracing::debug!(?argv, "install command");
    let started = Instant::now();
    let mut cmd = Command::new(&argv[0]);
    // The passphrase may have come in this variable: no command is given it.
    cmd.env_remove(crate::passphrase::VARIABLE);
    cmd.args(&argv[1..])
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        (
            format!("could not start: {e}"),
            format!("is {} installed on this system?", argv[0]),
        )
    })?;
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let mut readers = Vec::new();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let (log, tail) = (Arc::clone(log), Arc::clone(&tail));
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                log.lock().unwrap().line(&format!("  {line}"));
                let mut t = tail.lock().unwrap();
                t.push_back(line);
                if t.len() > OUTPUT_TAIL {
                    t.pop_front();
                }
            }
        }));
    }
    let feed_result = match (stdin, child.stdin.take()) {
        (Some(Stdin::Text { text }), Some(mut pipe)) => {
            pipe.write_all(text.as_bytes()).map_err(|e| e.to_string())
        }
        (Some(Stdin::File { path }), Some(pipe)) => stream_file(path, pipe, log, mode),
        _ => Ok(()),
    };
    let status = child
        .wait()
        .map_err(|e| ("could not be waited for".to_string(), e.to_string()))?;
    for r in readers {
        let _ = r.join();
    }
    let output = tail
        .lock()
        .unwrap()
        .iter()
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    tracing::debug!(?argv, %status, seconds = started.elapsed().as_secs_f64(), "install command ended");
    if let Err(e) = feed_result {
        return Err((format!("could not be fed its input: {e}"), output));
    }
    if status.success() {
        Ok(())
    } else {
        let how = match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => "was killed by a signal".to_string(),
        };
        Err((how, output))
    }
}

/// Streams a file into a command's stdin, showing bytes done.
fn stream_file(
    path: &PathBuf,
    mut pipe: impl Write,
    log: &Arc<Mutex<Log>>,
    mode: ProgressMode,
) -> Result<(), String> {
    let mut f = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = (mode == ProgressMode::Bars).then(|| {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template"),
        );
        bar
    });
    let mut buf = vec![0u8; 1 << 20];
    let (mut done, mut next_report) = (0u64, 0u64);
    loop {
        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        pipe.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        done += n as u64;
        if let Some(bar) = &bar {
            bar.set_position(done);
        } else if done >= next_report {
            log.lock().unwrap().line(&format!(
                "  {}: {} of {}",
                path.display(),
                crate::disk::human_size(done),
                crate::disk::human_size(total)
            ));
            next_report = done + (total / 10).max(1 << 26);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    log.lock().unwrap().line(&format!(
        "  {}: {} streamed",
        path.display(),
        crate::disk::human_size(done)
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Step, StepId};
    use sha2::Digest;

    fn plan(actions: Vec<Action>) -> Plan {
        Plan {
            distro: "test".into(),
            target_root: "/nonexistent".into(),
            disks: vec![],
            steps: vec![
                Step {
                    id: StepId::Partition,
                    title: "first".into(),
                    why: "test".into(),
                    actions,
                },
                Step {
                    id: StepId::Finalize,
                    title: "second".into(),
                    why: "test".into(),
                    actions: vec![Action::run(
                        ["touch", "/nonexistent-dir-kldload/never"],
                        "must not run",
                    )],
                },
            ],
        }
    }

    #[test]
    fn runs_commands_files_and_stdin_and_logs_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = |p: &str| dir.path().join(p);
        let payload = d("payload");
        fs::write(&payload, "streamed bytes").unwrap();
        let mut p = plan(vec![
            Action::LogTo {
                path: Some(d("install.log")),
                why: "log".into(),
            },
            Action::write(d("hostname"), "kldload\n", 0o640, "a file"),
            Action::run_with_stdin(
                ["cp", "/dev/stdin", &d("copy").to_string_lossy()],
                Stdin::File {
                    path: payload.clone(),
                },
                "stream",
            ),
            Action::run_with_stdin(
                ["cp", "/dev/stdin", &d("text").to_string_lossy()],
                Stdin::Text {
                    text: "root:x\n".into(),
                },
                "text",
            ),
            Action::run(["echo", "hello from echo"], "output is logged"),
            Action::VerifySha256 {
                path: d("hostname"),
                sha256: hex::encode(sha2::Sha256::digest(b"kldload\n")),
                why: "checked".into(),
            },
        ]);
        p.steps.truncate(1);
        run_plan(&p, ProgressMode::Lines, &Secrets::default()).unwrap();
        assert_eq!(fs::read_to_string(d("hostname")).unwrap(), "kldload\n");
        assert_eq!(
            fs::metadata(d("hostname")).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(fs::read_to_string(d("copy")).unwrap(), "streamed bytes");
        assert_eq!(fs::read_to_string(d("text")).unwrap(), "root:x\n");
        let log = fs::read_to_string(d("install.log")).unwrap();
        assert!(log.contains("==> step 1/1 partition"), "{log}");
        assert!(log.contains("hello from echo"), "{log}");
        assert!(log.contains("install complete"), "{log}");
    }

    #[test]
    fn a_secret_file_is_written_from_the_secrets_given_and_never_logged() {
        let dir = tempfile::tempdir().unwrap();
        let d = |p: &str| dir.path().join(p);
        let key = Action::WriteFile {
            path: d("key"),
            contents: Contents::Secret {
                variable: crate::passphrase::VARIABLE.into(),
            },
            mode: 0o000,
            why: "key".into(),
        };
        let mut p = plan(vec![
            Action::LogTo {
                path: Some(d("install.log")),
                why: "log".into(),
            },
            key.clone(),
        ]);
        p.steps.truncate(1);
        let secrets = Secrets::default().with(
            crate::passphrase::VARIABLE,
            Secret("correct horse battery".into()),
        );
        run_plan(&p, ProgressMode::Lines, &secrets).unwrap();
        assert_eq!(
            fs::read_to_string(d("key")).unwrap(),
            "correct horse battery"
        );
        assert_eq!(
            fs::metadata(d("key")).unwrap().permissions().mode() & 0o777,
            0
        );
        let log = fs::read_to_string(d("install.log")).unwrap();
        assert!(log.contains("write ") && !log.contains("horse"), "{log}");

        let mut p = plan(vec![key]);
        p.steps.truncate(1);
        let err = run_plan(&p, ProgressMode::Lines, &Secrets::default()).unwrap_err();
        assert!(
            err.output.contains("given no KLDLOAD_POOL_PASSPHRASE"),
            "{err}"
        );
    }

    #[test]
    fn stops_at_the_first_failure_naming_step_command_and_output() {
        let err = run_plan(
            &plan(vec![Action::run(
                ["ls", "/nonexistent-kldload-path"],
                "fails",
            )]),
            ProgressMode::Lines,
            &Secrets::default(),
        )
        .unwrap_err();
        assert_eq!(err.step, "partition");
        assert!(
            err.action
                .contains("`ls /nonexistent-kldload-path` exited with status 2"),
            "{}",
            err.action
        );
        assert!(err.output.contains("No such file"), "{}", err.output);
        assert!(!Path::new("/nonexistent-dir-kldload/never").exists());
    }

    #[test]
    fn a_missing_program_is_named() {
        let err = run_plan(
            &plan(vec![Action::run(["kldload-no-such-program"], "fails")]),
            ProgressMode::Lines,
            &Secrets::default(),
        )
        .unwrap_err();
        assert!(err.action.contains("could not start"), "{err}");
        assert!(
            err.output.contains("kldload-no-such-program installed"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_checksum_stops_the_install() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("zbm.efi");
        fs::write(&f, "not the release").unwrap();
        let err = run_plan(
            &plan(vec![Action::VerifySha256 {
                path: f,
                sha256: "00".repeat(32),
                why: "pinned".into(),
            }]),
            ProgressMode::Lines,
            &Secrets::default(),
        )
        .unwrap_err();
        assert!(
            err.action.contains("does not have the expected sha256"),
            "{err}"
        );
    }
}
