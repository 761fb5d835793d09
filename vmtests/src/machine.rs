//! A running guest for the scenarios, in the spirit of NixOS's VM test driver: `succeed`,
//! `fail`, `wait_until_succeeds`, `wait_for_unit`, `wait_for_console_text`, `send_chars`,
//! `crash` and `shutdown`. Commands go over the harness's own shell (exact output and status);
//! the main console stays for the boot menu, the login and the transcript.

use crate::console::Console;
use crate::qemu::{Vm, VmSpec};
use crate::qmp::Qmp;
use crate::shell::{Output, Shell};
use crate::wait::{Look, wait_until};
use anyhow::{Context, Result, bail, ensure};
use std::path::Path;
use std::time::Duration;

/// Default time a command may take: the longest measured is `update-initramfs -u -k all`
/// (55 s under TCG); a step that takes longer says so with its own timeout.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// A `kldload report` taken on a machine ([`Machine::kldload_report`]).
pub struct TakenReport {
    /// What it printed.
    pub summary: String,
    /// The report file's text.
    pub json: String,
    pub report: kldload::report::Report,
}

pub struct Machine {
    pub vm: Vm,
    pub console: Console,
    shell: Option<Shell>,
    /// What the console showed between the password and the shell's prompt at the last
    /// login, the prompt included: the login's own result, for the checks.
    pub last_login: Option<String>,
}

impl Machine {
    /// Starts the VM and attaches its serial console to `transcript`.
    pub fn start(spec: VmSpec, transcript: &Path, phase: &str) -> Result<Machine> {
        let qemu_log = spec.dir.join(format!("{}.qemu.log", spec.name));
        let vm = Vm::start(spec, &qemu_log)?;
        let mut console =
            Console::connect(&vm.sockets.serial(), transcript).with_context(|| {
                format!(
                    "QEMU's log:\n{}",
                    std::fs::read_to_string(&qemu_log).unwrap_or_default()
                )
            })?;
        console.phase = phase.to_string();
        console.mark(&format!("{} started ({:?})", vm.spec.name, vm.spec.accel));
        Ok(Machine {
            vm,
            console,
            shell: None,
            last_login: None,
        })
    }

    /// Logs in on the serial console and starts the harness's shell on its virtio-serial port.
    pub fn login(&mut self, user: &str, password: &str, timeout: Duration) -> Result<()> {
        self.console.wait_for("login: ", timeout)?;
        self.login_at_prompt(user, password)
    }

    /// The source of `/` (the boot environment's dataset on a kldload machine).
    pub fn root_source(&mut self) -> Result<String> {
        Ok(self.succeed("findmnt -n -o SOURCE /")?.trim().to_string())
    }

    /// Runs `kldload report` with `args` on the machine, as a user does; what it printed, the
    /// report's text, and the report parsed.
    pub fn kldload_report(&mut self, args: &str) -> Result<TakenReport> {
        let out = self.execute_within(
            &format!("kldload report --output /root/kldload-report.json {args}"),
            Duration::from_secs(300),
        )?;
        ensure!(out.status == 0, "kldload report: {out:?}");
        let json = self.succeed("cat /root/kldload-report.json")?;
        let report = serde_json::from_str(&json).context("the report does not parse")?;
        Ok(TakenReport {
            summary: out.stdout,
            json,
            report,
        })
    }

    /// Logs in as root with the answer files' password at the next login prompt.
    pub fn login_root(&mut self, timeout: Duration) -> Result<()> {
        self.login("root", crate::answers::ROOT_PASSWORD, timeout)
    }

    /// Logs in as root on the console at the next login prompt, and starts no shell of the
    /// harness's (a machine about to be saved: [`Machine::save_state`]).
    pub fn console_login_root(&mut self, timeout: Duration) -> Result<()> {
        self.console.wait_for("login: ", timeout)?;
        self.console_login_at_prompt("root", crate::answers::ROOT_PASSWORD)
    }

    /// Logs in when the `login: ` prompt has just been seen, and starts the harness's shell.
    pub fn login_at_prompt(&mut self, user: &str, password: &str) -> Result<()> {
        self.console_login_at_prompt(user, password)?;
        self.start_shell()
    }

    /// Logs in on the console when the `login: ` prompt has just been seen; its shell's prompt
    /// is on the console, and the harness has no shell of its own yet.
    pub fn console_login_at_prompt(&mut self, user: &str, password: &str) -> Result<()> {
        self.console.send_line(user)?;
        self.console
            .wait_for("Password: ", Duration::from_secs(60))?;
        self.console.send_line(password)?;
        let (before, found) = self
            .console
            .wait_for_regex(r"Login incorrect|[#$] $", Duration::from_secs(120))?;
        if found == "Login incorrect" {
            bail!("the console refused the login of {user}: Login incorrect");
        }
        self.last_login = Some(format!("{before}{found}"));
        Ok(())
    }

    /// Starts the shell on its virtio-serial port from a logged-in console.
    pub fn start_shell(&mut self) -> Result<()> {
        self.console.send_line(crate::shell::START_COMMAND)?;
        self.shell = Some(Shell::connect(
            &self.vm.sockets.shell(),
            &self.console.transcript,
            Duration::from_secs(60),
        )?);
        Ok(())
    }

    fn shell(&mut self) -> Result<&mut Shell> {
        self.shell.as_mut().context("no shell yet: log in first")
    }

    /// Whether the harness's shell is up.
    pub fn has_shell(&self) -> bool {
        self.shell.is_some()
    }

    /// Runs `cmd` and returns what it did, whatever its status.
    pub fn execute(&mut self, cmd: &str) -> Result<Output> {
        self.execute_within(cmd, COMMAND_TIMEOUT)
    }

    /// `execute` for a command that may take longer than [`COMMAND_TIMEOUT`] (an install).
    pub fn execute_within(&mut self, cmd: &str, timeout: Duration) -> Result<Output> {
        self.shell()?.run(cmd, timeout)
    }

    /// Runs `cmd`; its stdout, or an error with the command, status and output.
    pub fn succeed(&mut self, cmd: &str) -> Result<String> {
        let out = self.execute(cmd)?;
        if out.status != 0 {
            bail!(
                "command failed with status {}: {cmd}\nstdout: {}\nstderr: {}",
                out.status,
                out.stdout,
                out.stderr
            );
        }
        Ok(out.stdout)
    }

    /// Runs `cmd`; its stdout's exact bytes (sent base64-encoded), or an error as `succeed`.
    pub fn succeed_bytes(&mut self, cmd: &str) -> Result<Vec<u8>> {
        use base64::Engine as _;
        // In a subshell, so all of a command list's output is encoded, not its last command's.
        let text = self.succeed(&format!("( {cmd} ) | base64 -w0"))?;
        Ok(base64::engine::general_purpose::STANDARD.decode(text.trim())?)
    }

    /// Runs `cmd`, which must fail; its stdout and stderr.
    pub fn fail(&mut self, cmd: &str) -> Result<Output> {
        let out = self.execute(cmd)?;
        if out.status == 0 {
            bail!(
                "command succeeded but should have failed: {cmd}\nstdout: {}",
                out.stdout
            );
        }
        Ok(out)
    }

    /// Runs `cmd` until it succeeds, each run given what is left of `timeout`; its stdout.
    pub fn wait_until_succeeds(&mut self, cmd: &str, timeout: Duration) -> Result<String> {
        wait_until(
            &format!("`{cmd}` to succeed"),
            timeout,
            Duration::from_secs(1),
            |left| {
                let out = self.execute_within(cmd, left.max(Duration::from_secs(1)))?;
                Ok(if out.status == 0 {
                    Look::Ready(out.stdout)
                } else {
                    Look::NotYet(format!(
                        "status {}, stdout: {}, stderr: {}",
                        out.status, out.stdout, out.stderr
                    ))
                })
            },
            String::new,
        )
    }

    /// Waits for a systemd unit to be active; fails early if it failed.
    pub fn wait_for_unit(&mut self, unit: &str, timeout: Duration) -> Result<()> {
        wait_until(
            &format!("unit {unit} to be active"),
            timeout,
            Duration::from_secs(1),
            |left| {
                let state = self
                    .execute_within(
                        &format!("systemctl is-active {unit}"),
                        left.max(Duration::from_secs(1)),
                    )?
                    .stdout
                    .trim()
                    .to_string();
                match state.as_str() {
                    "active" => Ok(Look::Ready(())),
                    "failed" => bail!(
                        "unit {unit} failed:\n{}",
                        self.execute(&format!("systemctl status --no-pager {unit}"))?
                            .stdout
                    ),
                    _ => Ok(Look::NotYet(format!("{unit} is {state:?}"))),
                }
            },
            String::new,
        )
    }

    pub fn wait_for_console_text(&mut self, text: &str, timeout: Duration) -> Result<String> {
        self.console.wait_for(text, timeout)
    }

    pub fn send_chars(&mut self, text: &str) -> Result<()> {
        self.console.send(text)
    }

    /// Power cut: QEMU quits at once, without the guest knowing.
    pub fn crash(&mut self) -> Result<()> {
        let mut qmp = Qmp::connect(&self.vm.sockets.qmp())?;
        let _ = qmp.execute("quit", serde_json::json!({}));
        self.vm.wait_exit(Duration::from_secs(30))?;
        Ok(())
    }

    /// Saves the whole machine (memory and devices) to `state` and ends QEMU. The VM is stopped
    /// first, so its disks as QEMU leaves them (flushed as it quits) are the disks of that
    /// moment: a VM started with [`crate::qemu::VmSpec::incoming`] = `state`, the same devices
    /// and copies of those disks and NVRAM goes on from there. Its guest keeps the harness's
    /// shell only if the harness stays connected, so save with none ([`Machine::console_login_at_prompt`]).
    pub fn save_state(&mut self, state: &Path) -> Result<()> {
        let mut qmp = Qmp::connect(&self.vm.sockets.qmp())?;
        qmp.execute("stop", serde_json::json!({}))?;
        qmp.execute(
            "migrate",
            serde_json::json!({ "uri": format!("file:{}", state.display()) }),
        )?;
        wait_until(
            &format!("QEMU to save the machine's state to {}", state.display()),
            Duration::from_secs(300),
            Duration::from_millis(250),
            |_| {
                let info = qmp.execute("query-migrate", serde_json::json!({}))?;
                match info["status"].as_str() {
                    Some("completed") => Ok(Look::Ready(())),
                    Some("failed") | Some("cancelled") => {
                        bail!("saving the machine's state failed: {info}")
                    }
                    other => Ok(Look::NotYet(format!("{other:?}"))),
                }
            },
            String::new,
        )?;
        let _ = qmp.execute("quit", serde_json::json!({}));
        self.vm.wait_exit(Duration::from_secs(60))?;
        self.console.mark("machine state saved; QEMU quit");
        Ok(())
    }

    /// Runs a machine started from a saved state ([`crate::qemu::VmSpec::incoming`]) once QEMU
    /// has loaded it: the state was saved stopped, and so it loads.
    pub fn continue_saved(&mut self) -> Result<()> {
        let mut qmp = Qmp::connect(&self.vm.sockets.qmp())?;
        wait_until(
            "QEMU to load the saved machine state",
            Duration::from_secs(300),
            Duration::from_millis(100),
            |_| {
                let status = qmp.execute("query-status", serde_json::json!({}))?;
                Ok(match status["status"].as_str() {
                    Some("inmigrate") => Look::NotYet("still loading".into()),
                    _ => Look::Ready(()),
                })
            },
            String::new,
        )?;
        let migrated = qmp.execute("query-migrate", serde_json::json!({}))?;
        ensure!(
            migrated["status"].as_str() == Some("completed"),
            "loading the saved machine state failed: {migrated}"
        );
        qmp.execute("cont", serde_json::json!({}))?;
        self.console.mark("saved machine state loaded; running");
        Ok(())
    }

    /// A clean reboot from inside the guest; the VM goes on (same QEMU, same NVRAM) into the
    /// firmware again. The harness's shell is gone with the old boot: log in again for a new one.
    pub fn reboot(&mut self) -> Result<()> {
        if let Some(mut shell) = self.shell.take() {
            // The shell dies with the guest: its answer may never come.
            let _ = shell.run("systemctl reboot --no-block", Duration::from_secs(10));
        } else {
            self.console.send_line("systemctl reboot")?;
        }
        self.console.mark("reboot");
        self.console.clear_screen();
        Ok(())
    }

    /// A clean poweroff from inside the guest.
    pub fn shutdown(&mut self, timeout: Duration) -> Result<()> {
        if let Some(shell) = self.shell.as_mut() {
            // The shell dies with the guest: its answer may never come.
            let _ = shell.run("systemctl poweroff --no-block", Duration::from_secs(10));
        } else {
            self.console.send_line("systemctl poweroff")?;
        }
        self.vm
            .wait_exit(timeout)
            .context("waiting for the guest to power off")?;
        Ok(())
    }
}
