//! The scenario vocabulary: every step kind a scenario file can say (`do = "<kind>"`), each a
//! struct of its options and one `impl StepKind` (its name in the report, its named check, what
//! parsing cannot validate, and what it does: one call into [`Machine`], [`Zbm`] or the run).
//! A new kind is one struct, one impl, one line in [`vocabulary!`]'s list and one row in
//! fixtures/scenarios/README.md (a test fails when the table and [`Step::KINDS`] disagree).
//!
//! Every kind serializes as it parses (serde both ways), so scenarios made by code
//! (`--from-report`, `--round-trip`) are values written by the same serializer, never text.

use super::exec::Exec;
use super::symptom::Symptom;
use crate::machine::COMMAND_TIMEOUT;
use crate::run::{LOGIN_TIMEOUT, MENU_TIMEOUT};
use crate::zbm::{KernelChoice, Zbm};
use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where the `live` step puts the run's answer file on the live system.
pub const LIVE_ANSWERS: &str = "/root/answers.toml";

/// How long `not-on-console` watches by default: a boot from ZFSBootMenu to the login prompt
/// takes about 40 s here.
const NOT_ON_CONSOLE_SECS: u64 = 120;

/// How long `wait-console` waits by default: the firmware, ZFSBootMenu and a boot.
const WAIT_CONSOLE: Duration = MENU_TIMEOUT.saturating_add(LOGIN_TIMEOUT);

/// What every step kind says and does.
pub trait StepKind {
    /// Its name in the transcript and the report.
    fn describe(&self) -> String;
    /// The named check it records, if it carries one (a failed check is reported and the
    /// scenario goes on; a step without one that fails stops the scenario).
    fn check(&self) -> Option<&str> {
        None
    }
    /// What parsing cannot say: regexes compile, names refer to what the scenario has.
    fn validate(&self, _: &mut Validation) -> Result<()> {
        Ok(())
    }
    /// Does it; what it found, for the report.
    fn run(&self, x: &mut Exec) -> Result<String>;
}

/// What a scenario's validation knows while it walks the steps in order.
pub struct Validation {
    /// The names `run` steps `record`ed so far.
    pub recorded: Vec<String>,
    /// The scenario's disks by name: `target`, `extra-0`, ...
    pub disks: Vec<String>,
}

impl Validation {
    fn disks_exist<'a>(&self, names: impl IntoIterator<Item = &'a String>) -> Result<()> {
        for name in names {
            ensure!(
                self.disks.contains(name),
                "no disk {name:?}; this scenario has {}",
                self.disks.join(", ")
            );
        }
        Ok(())
    }
}

/// `r` compiles as a regex.
fn regex_compiles(r: &str) -> Result<()> {
    regex::Regex::new(r).with_context(|| format!("bad regex {r:?}"))?;
    Ok(())
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Declares [`Step`], the tagged union of the kinds, and its dispatch to [`StepKind`].
macro_rules! vocabulary {
    ($($kind:literal => $variant:ident,)*) => {
        /// One thing the harness does, or waits for, or checks: `do = "<kind>"` and its options.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "do")]
        pub enum Step {
            $(#[serde(rename = $kind)] $variant($variant),)*
        }

        impl Step {
            /// Every kind's `do =` name, in the order of the README's table.
            pub const KINDS: &'static [&'static str] = &[$($kind),*];

            /// Its `do =` name.
            pub fn kind(&self) -> &'static str {
                match self { $(Step::$variant(_) => $kind,)* }
            }

            fn as_kind(&self) -> &dyn StepKind {
                match self { $(Step::$variant(s) => s,)* }
            }
        }

        $(impl From<$variant> for Step {
            fn from(s: $variant) -> Step {
                Step::$variant(s)
            }
        })*
    };
}

vocabulary! {
    "install" => Install,
    "live" => Live,
    "boot" => Boot,
    "start" => Start,
    "login" => Login,
    "run" => Run,
    "checks" => Checks,
    "unlock" => Unlock,
    "console-type" => ConsoleType,
    "passphrase" => Passphrase,
    "passphrase-nowhere" => PassphraseNowhere,
    "report" => Report,
    "host-keys-unlike-base" => HostKeysUnlikeBase,
    "symptom" => SymptomStep,
    "wait-console" => WaitConsole,
    "not-on-console" => NotOnConsole,
    "crash" => Crash,
    "reboot" => Reboot,
    "shutdown" => Shutdown,
    "new-nvram" => NewNvram,
    "medium-file" => MediumFile,
    "zbm-countdown" => ZbmCountdown,
    "zbm-menu" => ZbmMenu,
    "zbm-snapshots" => ZbmSnapshots,
    "zbm-duplicate" => ZbmDuplicate,
    "zbm-boot" => ZbmBoot,
    "zbm-kernels" => ZbmKernels,
    "zbm-boot-kernel" => ZbmBootKernel,
    "zbm-default-kernel" => ZbmDefaultKernel,
    "zbm-cmdline-once" => ZbmCmdlineOnce,
}

impl Step {
    pub fn describe(&self) -> String {
        self.as_kind().describe()
    }

    pub fn check(&self) -> Option<&str> {
        self.as_kind().check()
    }

    pub fn validate(&self, v: &mut Validation) -> Result<()> {
        self.as_kind().validate(v)
    }

    pub fn run(&self, x: &mut Exec) -> Result<String> {
        self.as_kind().run(x)
    }
}

/// Boots the live medium with the answer file and waits for the unattended install to succeed
/// and power off, or, with `kill_when` (a regex), kills QEMU as soon as the console shows it:
/// the install interrupted there; or, with `fails_with` (a regex), waits for it to fail with a
/// last line that matches and logs in to the shell the live system leaves, for the next steps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Install {
    pub kill_when: Option<String>,
    pub fails_with: Option<String>,
    pub check: Option<String>,
}

impl StepKind for Install {
    fn describe(&self) -> String {
        match (&self.kill_when, &self.fails_with) {
            (Some(k), _) => format!("install, killed at {k:?}"),
            (None, Some(f)) => format!("install, failing with {f:?}"),
            (None, None) => "install".into(),
        }
    }
    fn check(&self) -> Option<&str> {
        self.check.as_deref()
    }
    fn validate(&self, _: &mut Validation) -> Result<()> {
        ensure!(
            self.kill_when.is_none() || self.fails_with.is_none(),
            "an install is killed (kill_when) or fails (fails_with), not both"
        );
        for pattern in [&self.kill_when, &self.fails_with].into_iter().flatten() {
            regex_compiles(pattern)?;
        }
        Ok(())
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        x.ensure_off()?;
        if let Some(pattern) = &self.fails_with {
            let (m, last) = x.run.install_failing(pattern)?;
            x.m = Some(m);
            return Ok(format!("failed: {last:?}; logged in to the shell it left"));
        }
        match &self.kill_when {
            None => {
                x.run.install_and_inspect()?;
                Ok(
                    "installed; the pool's label and SSH host keys read on the live system, \
                    which powered off"
                        .into(),
                )
            }
            Some(pattern) => x.run.install_killed_when(pattern),
        }
    }
}

/// Boots the live medium without an answer file (so it installs nothing by itself), logs in to
/// its shell and puts the run's answer file at [`LIVE_ANSWERS`] for the steps to use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Live {}

impl StepKind for Live {
    fn describe(&self) -> String {
        "boot the live medium".into()
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        x.ensure_off()?;
        let m = x.run.boot_live_with_answers_at(LIVE_ANSWERS)?;
        x.m = Some(m);
        Ok(format!(
            "logged in on the live system; answers in {LIVE_ANSWERS}"
        ))
    }
}

/// ` with target, extra-0, booting extra-0 first`, for a step's name.
fn machine_options(disks: &Option<Vec<String>>, boot_from: &Option<String>) -> String {
    let mut s = String::new();
    if let Some(d) = disks {
        s.push_str(&format!(" with {}", d.join(", ")));
    }
    if let Some(b) = boot_from {
        s.push_str(&format!(", booting {b} first"));
    }
    s
}

/// Starts the installed disks and logs in: firmware, ZFSBootMenu's countdown, the default boot
/// environment. `disks` names the disks attached (`target`, `extra-0`, ...; default all), to
/// boot with one pulled out; `boot_from` the disk the firmware boots first (as picked in its
/// boot menu: it loads that disk's fallback path).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    pub disks: Option<Vec<String>>,
    pub boot_from: Option<String>,
    pub check: Option<String>,
}

impl StepKind for Boot {
    fn describe(&self) -> String {
        format!(
            "boot the installed machine{} and log in",
            machine_options(&self.disks, &self.boot_from)
        )
    }
    fn check(&self) -> Option<&str> {
        self.check.as_deref()
    }
    fn validate(&self, v: &mut Validation) -> Result<()> {
        v.disks_exist(self.disks.iter().flatten().chain(&self.boot_from))
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        x.ensure_off()?;
        let mut m = x.run.start_installed_with(
            "installed",
            self.disks.as_deref(),
            self.boot_from.as_deref(),
        )?;
        m.login_root(MENU_TIMEOUT + LOGIN_TIMEOUT)?;
        let root = m.root_source()?;
        x.m = Some(m);
        Ok(format!("logged in; / is {root}"))
    }
}

/// Starts the installed disks through the firmware and does not wait: for the steps that drive
/// ZFSBootMenu or wait for console text. `disks` and `boot_from` as for [`Boot`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    pub disks: Option<Vec<String>>,
    pub boot_from: Option<String>,
}

impl StepKind for Start {
    fn describe(&self) -> String {
        format!(
            "start the installed machine{}",
            machine_options(&self.disks, &self.boot_from)
        )
    }
    fn validate(&self, v: &mut Validation) -> Result<()> {
        v.disks_exist(self.disks.iter().flatten().chain(&self.boot_from))
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        x.ensure_off()?;
        x.m = Some(x.run.start_installed_with(
            "installed",
            self.disks.as_deref(),
            self.boot_from.as_deref(),
        )?);
        Ok("started".into())
    }
}

/// Logs in at the next login prompt (after a reboot, or a boot ZFSBootMenu started).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub check: Option<String>,
}

impl StepKind for Login {
    fn describe(&self) -> String {
        "log in".into()
    }
    fn check(&self) -> Option<&str> {
        self.check.as_deref()
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        let m = x.machine()?;
        m.login_root(MENU_TIMEOUT + LOGIN_TIMEOUT)?;
        Ok(format!("logged in; / is {}", m.root_source()?))
    }
}

/// Runs a command on the machine (over the harness's shell: exact output and status). It must
/// exit with `status` (default 0) within `timeout_secs` (default 300); `stdout`, `stderr` and
/// `output` (both) are regexes that must match, `absent` one that must not match the output.
/// `record` keeps the stdout under a name; `same_as` requires the stdout to equal a recorded
/// one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    pub command: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub status: i32,
    pub timeout_secs: Option<u64>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub output: Option<String>,
    pub absent: Option<String>,
    pub record: Option<String>,
    pub same_as: Option<String>,
    pub check: Option<String>,
}

impl StepKind for Run {
    fn describe(&self) -> String {
        // The first line that says something, short enough for a table.
        let command = &self.command;
        let line = command
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or_default();
        let short: String = line.chars().take(48).collect();
        let more = if short.len() < command.trim().len() {
            " ..."
        } else {
            ""
        };
        format!("run `{short}{more}`")
    }
    fn check(&self) -> Option<&str> {
        self.check.as_deref()
    }
    fn validate(&self, v: &mut Validation) -> Result<()> {
        if let Some(name) = &self.same_as {
            ensure!(
                v.recorded.contains(name),
                "same_as {name:?} names no earlier record"
            );
        }
        v.recorded.extend(self.record.iter().cloned());
        [&self.stdout, &self.stderr, &self.output, &self.absent]
            .into_iter()
            .flatten()
            .try_for_each(|r| regex_compiles(r))
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        let timeout = self
            .timeout_secs
            .map_or(COMMAND_TIMEOUT, Duration::from_secs);
        let out = x.machine()?.execute_within(&self.command, timeout)?;
        let both = format!("{}{}", out.stdout, out.stderr);
        let shown = || {
            format!(
                "status {}\nstdout: {}\nstderr: {}",
                out.status, out.stdout, out.stderr
            )
        };
        let status = self.status;
        ensure!(out.status == status, "wanted status {status}; {}", shown());
        for (what, regex, text) in [
            ("stdout", &self.stdout, &out.stdout),
            ("stderr", &self.stderr, &out.stderr),
            ("output", &self.output, &both),
        ] {
            if let Some(r) = regex {
                ensure!(
                    regex::Regex::new(r)?.is_match(text),
                    "{what} does not match {r:?}; {}",
                    shown()
                );
            }
        }
        if let Some(r) = &self.absent {
            ensure!(
                !regex::Regex::new(r)?.is_match(&both),
                "the output matches {r:?}; {}",
                shown()
            );
        }
        if let Some(name) = &self.same_as {
            let before = x
                .records
                .get(name)
                .with_context(|| format!("nothing was recorded as {name:?} (its step failed)"))?;
            ensure!(
                &out.stdout == before,
                "the output differs from {name:?}:\nbefore:\n{before}\nnow:\n{}",
                out.stdout
            );
        }
        if let Some(name) = &self.record {
            x.records.insert(name.clone(), out.stdout.clone());
        }
        Ok(summarize(&both))
    }
}

/// The first lines of an output, for a report.
fn summarize(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut s = lines
        .iter()
        .take(3)
        .copied()
        .collect::<Vec<_>>()
        .join(" | ");
    if lines.len() > 3 {
        s.push_str(&format!(" | ... ({} lines)", lines.len()));
    }
    s
}

/// The main job's checks (checks.rs: datasets, pool, hostid, every disk's ESP and firmware
/// entries, services, SSH, ...) on the running machine, against the run's answer file; each
/// check is its own line in the report. After an `install` and a `boot` with every disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checks {}

impl StepKind for Checks {
    fn describe(&self) -> String {
        "the main job's checks".into()
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        let m =
            x.m.as_mut()
                .context("no machine is running: boot the installed disks first")?;
        let failed = crate::checks::run_all_counting_failures(m, x.run)?;
        ensure!(failed == 0, "{failed} of the main job's checks failed");
        Ok("the main job's checks passed".into())
    }
}

/// An encrypted pool: types the run's passphrase at ZFSBootMenu's prompt (with `wrong_first`,
/// a wrong one first, which must be refused and asked again), then logs in. Fails if anything
/// asks for a passphrase again before the login prompt: one prompt a boot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unlock {
    #[serde(default, skip_serializing_if = "is_false")]
    pub wrong_first: bool,
    /// Stop the countdown and boot the boot environment from the menu instead (the other path
    /// into a boot), the passphrase typed where ZFSBootMenu asks for it (as the menu opens, or
    /// at the boot); still one prompt.
    #[serde(default, skip_serializing_if = "is_false")]
    pub via_menu: bool,
    pub check: Option<String>,
}

impl StepKind for Unlock {
    fn describe(&self) -> String {
        format!(
            "ZFSBootMenu: {}the passphrase; {}log in",
            if self.wrong_first {
                "a wrong passphrase, then "
            } else {
                ""
            },
            if self.via_menu {
                "boot from the menu; "
            } else {
                ""
            }
        )
    }
    fn check(&self) -> Option<&str> {
        self.check.as_deref()
    }
    fn validate(&self, _: &mut Validation) -> Result<()> {
        ensure!(
            !(self.wrong_first && self.via_menu),
            "unlock takes wrong_first or via_menu, not both"
        );
        Ok(())
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        let (pool, root) = x.run.encryption_root_of_default_be()?;
        let passphrase = x.run.passphrase()?;
        let m = x.machine()?;
        let how = match (self.wrong_first, self.via_menu) {
            (true, _) => crate::zbm::Unlocking::WrongFirst,
            (false, true) => crate::zbm::Unlocking::ViaMenu(format!("{pool}/ROOT/default")),
            (false, false) => crate::zbm::Unlocking::AtCountdown,
        };
        Zbm::new(m).unlock_once(&root, &passphrase, &how)?;
        Ok(format!(
            "{}one prompt for the right one; {}logged in, / is {}",
            if self.wrong_first {
                "a wrong passphrase refused; "
            } else {
                ""
            },
            if self.via_menu {
                "booted from the menu; "
            } else {
                ""
            },
            m.root_source()?
        ))
    }
}

/// Types `text` and Enter on the serial console (a shell there: the initramfs's, a rescue
/// shell), after waiting for `after` (a regex) when given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleType {
    pub text: String,
    pub after: Option<String>,
}

impl StepKind for ConsoleType {
    fn describe(&self) -> String {
        format!("type {:?} on the console", self.text)
    }
    fn validate(&self, _: &mut Validation) -> Result<()> {
        self.after.as_deref().map_or(Ok(()), regex_compiles)
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        x.machine()?
            .console
            .type_line_after(self.after.as_deref(), &self.text, WAIT_CONSOLE)?;
        Ok(format!("typed {:?}", self.text))
    }
}

/// Waits for `prompt` (a regex) on the console and types the run's passphrase there (its text
/// never recorded), with no check of what comes next: for a boot that asks twice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Passphrase {
    pub prompt: String,
    pub check: Option<String>,
}

impl StepKind for Passphrase {
    fn describe(&self) -> String {
        format!("the passphrase at {:?}", self.prompt)
    }
    fn check(&self) -> Option<&str> {
        self.check.as_deref()
    }
    fn validate(&self, _: &mut Validation) -> Result<()> {
        regex_compiles(&self.prompt)
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        let passphrase = x.run.passphrase()?;
        let found = x
            .machine()?
            .console
            .type_secret_at(&self.prompt, &passphrase, WAIT_CONSOLE)?;
        Ok(format!("typed at {found:?}"))
    }
}

/// The run's passphrase is nowhere it must not be: on the running machine, no log under
/// /var/log, no journal line of this boot, no process's command line or environment; on the
/// host, no file of the run's (transcript, reports, QEMU logs). The key file and the initramfs
/// hold it by design and are not searched.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassphraseNowhere {
    pub check: Option<String>,
}

impl StepKind for PassphraseNowhere {
    fn describe(&self) -> String {
        "the passphrase in no log, argv or transcript".into()
    }
    fn check(&self) -> Option<&str> {
        self.check.as_deref()
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        let m = x.m.as_mut().context("no machine is running")?;
        x.run.passphrase_nowhere(m)
    }
}

/// `kldload report` on the running machine, kept in the run's directory as
/// kldload-report.json: what `cargo xtask vm-repro --from-report` rebuilds (the round trip).
/// The root pool's label hostid and state it reports must be what `zdb -l` prints there, read
/// again and parsed by the harness.
/// With `same_as` (a report file: absolute, or from the project's root), the machine's
/// boot-relevant facts must be that report's (`round_trip::BootFacts`), but for those `except`
/// names (what a rebuild knowingly made otherwise, e.g. `layout`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub same_as: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
    pub check: Option<String>,
}

impl StepKind for Report {
    fn describe(&self) -> String {
        "kldload report, kept with the run".into()
    }
    fn check(&self) -> Option<&str> {
        self.check.as_deref()
    }
    fn validate(&self, _: &mut Validation) -> Result<()> {
        ensure!(
            self.same_as.is_some() || self.except.is_empty(),
            "except without same_as: nothing to compare"
        );
        Ok(())
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        let taken = x.machine()?.kldload_report("")?;
        let kept = x.run.dir.join("kldload-report.json");
        std::fs::write(&kept, &taken.json)?;
        let label =
            crate::round_trip::deciding_facts_read_independently(x.machine()?, &taken.report);
        let compared = (self.same_as.as_ref()).map(|original| {
            let path = crate::env::project_root().join(original);
            crate::round_trip::same_facts_as(&path, &taken.report, &self.except)
        });
        // Both said when both fail.
        let (label, compared) = match (label, compared.transpose()) {
            (Ok(l), Ok(c)) => (l, c),
            (Err(l), Err(c)) => anyhow::bail!("{c:#}\nand {l:#}"),
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        let summary = format!(
            "{} pool(s), {} boot environment(s); {label}; {}",
            taken.report.pools.len(),
            taken.report.boot_environments.len(),
            kept.display()
        );
        Ok(match compared {
            Some(said) => format!("{said}; {summary}"),
            None => summary,
        })
    }
}

/// The running machine's SSH host keys are none of the shared base install's: each install
/// makes its own (a scenario that installs compares its install with the base's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostKeysUnlikeBase {
    pub check: Option<String>,
}

impl StepKind for HostKeysUnlikeBase {
    fn describe(&self) -> String {
        "SSH host keys unlike the base install's".into()
    }
    fn check(&self) -> Option<&str> {
        self.check.as_deref()
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        let m = x.m.as_mut().context("no machine is running")?;
        x.run.host_keys_unlike_base(m)
    }
}

/// The bug holds here, and shows itself as `is` (a [`Symptom`]): waits for it on the console
/// (`login`: logs in). A round trip takes its report at this step (from the running system,
/// or, when the machine does not boot, from the live medium) and the rebuild must end in the
/// same symptom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymptomStep {
    pub is: Symptom,
    pub timeout_secs: Option<u64>,
    pub check: Option<String>,
}

impl StepKind for SymptomStep {
    fn describe(&self) -> String {
        format!("the bug holds: {}", self.is.name())
    }
    fn check(&self) -> Option<&str> {
        self.check.as_deref()
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        match self.is {
            Symptom::Login => {
                let m = x.machine()?;
                let timeout = self
                    .timeout_secs
                    .map_or(MENU_TIMEOUT + LOGIN_TIMEOUT, Duration::from_secs);
                m.login_root(timeout)?;
                Ok(format!("logged in; / is {}", m.root_source()?))
            }
            // The console steps' own waits, with the symptom's text.
            Symptom::Silent => NotOnConsole {
                text: self.is.console().into(),
                timeout_secs: self.timeout_secs,
                check: None,
            }
            .run(x),
            _ => WaitConsole {
                text: self.is.console().into(),
                timeout_secs: self.timeout_secs,
                check: None,
            }
            .run(x),
        }
    }
}

/// Waits for text on the serial console (a regex), e.g. a boot that fails.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitConsole {
    pub text: String,
    pub timeout_secs: Option<u64>,
    pub check: Option<String>,
}

impl StepKind for WaitConsole {
    fn describe(&self) -> String {
        format!("wait for {:?} on the console", self.text)
    }
    fn check(&self) -> Option<&str> {
        self.check.as_deref()
    }
    fn validate(&self, _: &mut Validation) -> Result<()> {
        regex_compiles(&self.text)
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        let timeout = self.timeout_secs.map_or(WAIT_CONSOLE, Duration::from_secs);
        let (_, found) = x.machine()?.console.wait_for_regex(&self.text, timeout)?;
        Ok(format!("console showed {found:?}"))
    }
}

/// Waits `timeout_secs` (default 120) and requires that `text` (a regex) never appeared on the
/// serial console meanwhile: a console gone silent, no second prompt, no countdown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotOnConsole {
    pub text: String,
    pub timeout_secs: Option<u64>,
    pub check: Option<String>,
}

impl NotOnConsole {
    fn secs(&self) -> u64 {
        self.timeout_secs.unwrap_or(NOT_ON_CONSOLE_SECS)
    }
}

impl StepKind for NotOnConsole {
    fn describe(&self) -> String {
        format!("{:?} not on the console for {}s", self.text, self.secs())
    }
    fn check(&self) -> Option<&str> {
        self.check.as_deref()
    }
    fn validate(&self, _: &mut Validation) -> Result<()> {
        regex_compiles(&self.text)
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        let secs = self.secs();
        x.machine()?
            .console
            .absent_for(&self.text, Duration::from_secs(secs))?;
        Ok(format!("not on the console in {secs}s"))
    }
}

/// Power cut: QEMU quits at once, the guest not told.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crash {}

impl StepKind for Crash {
    fn describe(&self) -> String {
        "power cut".into()
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        x.machine()?.crash()?;
        x.m = None;
        Ok("QEMU killed".into())
    }
}

/// A clean reboot from inside the guest (same VM, same NVRAM).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reboot {}

impl StepKind for Reboot {
    fn describe(&self) -> String {
        "reboot".into()
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        x.machine()?.reboot()?;
        Ok("rebooting".into())
    }
}

/// A clean poweroff from inside the guest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shutdown {}

impl StepKind for Shutdown {
    fn describe(&self) -> String {
        "poweroff".into()
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        x.machine()?.shutdown(Duration::from_secs(180))?;
        x.m = None;
        Ok("powered off".into())
    }
}

/// A file on the medium's ESP, read with mtools while the VM is off (what a user finds on the
/// stick on another machine): its text must match `text` (a regex).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediumFile {
    /// Its path on the ESP, e.g. `kldload-install.log`.
    pub path: String,
    pub text: String,
    pub check: Option<String>,
}

impl StepKind for MediumFile {
    fn describe(&self) -> String {
        format!("the medium's {}", self.path)
    }
    fn check(&self) -> Option<&str> {
        self.check.as_deref()
    }
    fn validate(&self, _: &mut Validation) -> Result<()> {
        regex_compiles(&self.text)
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        x.ensure_off()?;
        let copy = x.run.medium_file(&self.path)?;
        let text = std::fs::read_to_string(copy.path())?;
        let found = regex::Regex::new(&self.text)?
            .find(&text)
            .with_context(|| {
                format!(
                    "the medium's {} does not match {:?}; it holds:\n{text}",
                    self.path, self.text
                )
            })?;
        Ok(format!(
            "{} bytes; matched {:?}",
            text.len(),
            found.as_str().chars().take(120).collect::<String>()
        ))
    }
}

/// The firmware forgets its boot entries: the NVRAM replaced by a fresh copy (VM off).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewNvram {}

impl StepKind for NewNvram {
    fn describe(&self) -> String {
        "fresh NVRAM".into()
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        x.ensure_off()?;
        x.run.firmware.new_nvram(&x.run.nvram)?;
        Ok("NVRAM replaced by a fresh copy".into())
    }
}

/// ZFSBootMenu: waits for the countdown, which must name `be` as the boot environment it will
/// boot (the default); the countdown goes on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZbmCountdown {
    pub be: String,
    pub check: Option<String>,
}

impl StepKind for ZbmCountdown {
    fn describe(&self) -> String {
        format!("ZFSBootMenu: a countdown to {}", self.be)
    }
    fn check(&self) -> Option<&str> {
        self.check.as_deref()
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        let target = Zbm::new(x.machine()?).wait_for_countdown(MENU_TIMEOUT)?;
        ensure!(
            target == self.be,
            "ZFSBootMenu's countdown boots {target}, not {}",
            self.be
        );
        Ok(format!("the countdown boots {target}"))
    }
}

/// ZFSBootMenu: waits for the countdown and stops it with Escape; the menu opens. With
/// `without_countdown`, the menu comes by itself (no boot environment to count down to: the
/// pool has no bootfs): waits for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZbmMenu {
    #[serde(default, skip_serializing_if = "is_false")]
    pub without_countdown: bool,
    pub check: Option<String>,
}

impl StepKind for ZbmMenu {
    fn describe(&self) -> String {
        match self.without_countdown {
            false => "ZFSBootMenu: open the menu".into(),
            true => "ZFSBootMenu: its menu, with no countdown".into(),
        }
    }
    fn check(&self) -> Option<&str> {
        self.check.as_deref()
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        let mut zbm = Zbm::new(x.machine()?);
        if self.without_countdown {
            return Ok(zbm.wait_for_menu_within(MENU_TIMEOUT)?.join(" "));
        }
        zbm.wait_for_countdown(MENU_TIMEOUT)?;
        Ok(zbm.open_menu()?.join(" "))
    }
}

/// ZFSBootMenu: selects a boot environment in the menu and opens its snapshot list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZbmSnapshots {
    pub be: String,
}

impl StepKind for ZbmSnapshots {
    fn describe(&self) -> String {
        format!("ZFSBootMenu: snapshots of {}", self.be)
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        let mut zbm = Zbm::new(x.machine()?);
        zbm.select(&self.be)?;
        Ok(zbm.snapshots()?.join(" "))
    }
}

/// ZFSBootMenu: duplicates `snapshot` (selected in the open snapshot list) into a new boot
/// environment `<be>_NEW`; `check` that it is listed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZbmDuplicate {
    pub snapshot: String,
    pub check: Option<String>,
}

impl StepKind for ZbmDuplicate {
    fn describe(&self) -> String {
        format!("ZFSBootMenu: duplicate {}", self.snapshot)
    }
    fn check(&self) -> Option<&str> {
        self.check.as_deref()
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        Ok(Zbm::new(x.machine()?)
            .duplicate_snapshot(&self.snapshot)?
            .join(" "))
    }
}

/// ZFSBootMenu: selects `be` in the menu and boots it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZbmBoot {
    pub be: String,
}

impl StepKind for ZbmBoot {
    fn describe(&self) -> String {
        format!("ZFSBootMenu: boot {}", self.be)
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        Zbm::new(x.machine()?).boot(&self.be)?;
        Ok(format!("booting {}", self.be))
    }
}

/// ZFSBootMenu: selects `be` in the menu and opens its kernel list (Alt+K), which must not be
/// empty; with `count`, it lists exactly that many kernels; with `contains` (regexes), each
/// matches a kernel of its own (two regexes need two kernels).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZbmKernels {
    pub be: String,
    pub count: Option<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contains: Vec<String>,
    pub check: Option<String>,
}

/// Each of `patterns` matched to a kernel of `listed` no other pattern took, in order; the
/// first that finds none is named.
fn match_each_to_its_own(patterns: &[String], listed: &[String]) -> Result<()> {
    let mut taken = vec![false; listed.len()];
    for pattern in patterns {
        let re = regex::Regex::new(pattern)?;
        let own = (0..listed.len()).find(|&i| !taken[i] && re.is_match(&listed[i]));
        let i = own.with_context(|| {
            format!("no kernel of its own matches {pattern:?} in the list {listed:?}")
        })?;
        taken[i] = true;
    }
    Ok(())
}

impl StepKind for ZbmKernels {
    fn describe(&self) -> String {
        format!("ZFSBootMenu: kernels of {}", self.be)
    }
    fn validate(&self, _: &mut Validation) -> Result<()> {
        self.contains.iter().try_for_each(|r| regex_compiles(r))
    }
    fn check(&self) -> Option<&str> {
        self.check.as_deref()
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        let mut zbm = Zbm::new(x.machine()?);
        zbm.select(&self.be)?;
        let listed = zbm.kernels()?;
        ensure!(!listed.is_empty(), "the kernel list is empty");
        if let Some(count) = self.count {
            ensure!(
                listed.len() == count,
                "the kernel list has {} kernels, not {count}: {listed:?}",
                listed.len()
            );
        }
        match_each_to_its_own(&self.contains, &listed)?;
        Ok(listed.join(" "))
    }
}

/// ZFSBootMenu: in the open kernel list, selects `kernel` (a file name in /boot, or `"newest"`
/// or `"oldest"`) and boots it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZbmBootKernel {
    pub kernel: KernelChoice,
}

impl StepKind for ZbmBootKernel {
    fn describe(&self) -> String {
        format!("ZFSBootMenu: boot the kernel {}", self.kernel)
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        let name = Zbm::new(x.machine()?).boot_kernel(&self.kernel)?;
        Ok(format!("booting {name}"))
    }
}

/// ZFSBootMenu: in the open kernel list, selects `kernel` (as for `zbm-boot-kernel`) and makes
/// it the boot environment's default (Alt+D, ZFSBootMenu's Ctrl+D: it writes
/// `org.zfsbootmenu:kernel` as the file name and `$`); back in the menu.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZbmDefaultKernel {
    pub kernel: KernelChoice,
}

impl StepKind for ZbmDefaultKernel {
    fn describe(&self) -> String {
        format!("ZFSBootMenu: make the kernel {} the default", self.kernel)
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        let name = Zbm::new(x.machine()?).make_kernel_default(&self.kernel)?;
        Ok(format!("{name} made the default"))
    }
}

/// ZFSBootMenu: selects `be` in the menu and adds `append` to the kernel command line of its
/// next boot only (Alt+E); back in the menu.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZbmCmdlineOnce {
    pub be: String,
    pub append: String,
}

impl StepKind for ZbmCmdlineOnce {
    fn describe(&self) -> String {
        format!(
            "ZFSBootMenu: {:?} on {}'s command line, once",
            self.append, self.be
        )
    }
    fn run(&self, x: &mut Exec) -> Result<String> {
        let mut zbm = Zbm::new(x.machine()?);
        zbm.select(&self.be)?;
        Ok(zbm.append_to_command_line_once(&self.append)?.join(" "))
    }
}

#[cfg(test)]
mod tests {

    /// Two patterns need two kernels: one kernel matching both does not do.
    #[test]
    fn each_pattern_takes_a_kernel_of_its_own() {
        let listed = [
            "vmlinuz-6.12.999+deb13-amd64",
            "vmlinuz-6.12.117+deb13-amd64",
        ]
        .map(String::from);
        let pats = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match_each_to_its_own(&pats(&[r"\.999\D", "^vmlinuz-"]), &listed).unwrap();
        let one = &listed[..1];
        let e = match_each_to_its_own(&pats(&[r"\.999\D", "^vmlinuz-"]), one).unwrap_err();
        assert!(
            e.to_string()
                .contains("no kernel of its own matches \"^vmlinuz-\""),
            "{e}"
        );
    }
    use super::*;

    /// The README's table of steps lists exactly the kinds [`Step`] parses, in its order.
    #[test]
    fn the_readme_table_lists_every_kind_in_order() {
        let readme = std::fs::read_to_string(
            crate::env::project_root().join("fixtures/scenarios/README.md"),
        )
        .unwrap();
        let table = readme.split("## Steps").nth(1).expect("a ## Steps section");
        let rows: Vec<&str> = table
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .filter(|kind| *kind != "do =") // the header
            .collect();
        assert_eq!(rows, Step::KINDS);
    }

    /// A kind serializes with its `do` and only the options it was given.
    #[test]
    fn a_step_serializes_as_it_parses() {
        let step: Step = Run {
            command: "true".into(),
            check: Some("it runs".into()),
            ..Default::default()
        }
        .into();
        let text = toml::to_string(&step).unwrap();
        assert_eq!(
            text,
            "do = \"run\"\ncommand = \"true\"\ncheck = \"it runs\"\n"
        );
        assert_eq!(toml::from_str::<Step>(&text).unwrap(), step);
        let crash: Step = Crash {}.into();
        assert_eq!(toml::to_string(&crash).unwrap(), "do = \"crash\"\n");
        assert_eq!(toml::from_str::<Step>("do = \"crash\"\n").unwrap(), crash);
    }
}
