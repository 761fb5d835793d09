//! Boot bugs as data. A scenario file (fixtures/scenarios/<name>.toml) says what to start from
//! (a copy of the shared base install, or blank disks), the fault to inject and when, and what
//! must happen, as a list of steps this module knows how to do. A user's boot bug becomes a new
//! file, not new harness code. `cargo xtask vm-repro <name>` runs one; the `scenarios` test
//! binary runs them under nextest (those marked `ci` by default, all with `--all-scenarios`).
//!
//! Steps that carry a `check` name record a named check in the run's report (a failed check is
//! reported and the scenario goes on); any other step that fails stops the scenario.

use crate::flow::{INSTALL_TIMEOUT, LIVE_BOOT_TIMEOUT, LOGIN_TIMEOUT, MENU_TIMEOUT, Run};
use crate::machine::{COMMAND_TIMEOUT, Machine};
use crate::round_trip::BootFacts;
use crate::test_zbm::TestZfsBootMenu;
use crate::zbm::Zbm;
use anyhow::{Context, Result, bail, ensure};
use kldload::config::size::ByteSize;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the `live` step puts the run's answer file on the live system.
pub const LIVE_ANSWERS: &str = "/root/answers.toml";

/// How long `not-on-console` watches by default: a boot from ZFSBootMenu to the login prompt
/// takes about 40 s here.
const NOT_ON_CONSOLE_SECS: u64 = 120;

/// One scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// One line: the bug, as its user would put it.
    pub summary: String,
    /// What happened to the user and what must happen instead.
    #[serde(default)]
    pub description: String,
    /// Whether `cargo xtask ci` runs it on every change.
    #[serde(default)]
    pub ci: bool,
    /// What the first step finds.
    #[serde(default)]
    pub start: Start,
    /// Blank disks added after the target: on the live medium /dev/vdc, /dev/vdd, ... (the
    /// target is /dev/vda, the medium /dev/vdb); on the installed machine /dev/vdb, ...
    #[serde(default)]
    pub extra_disks: Vec<ExtraDisk>,
    /// The blank target's kind (only with `start = "blank"`).
    #[serde(default)]
    pub target: TargetDisk,
    /// The answer file installed with, a file in fixtures/answers/ (default: default.toml); only
    /// with `start = "blank"`.
    pub answers_file: Option<String>,
    /// Changes to the answer file for this run (tables merge key by key), e.g.
    /// `[answers.disks]` for a mirror; only with `start = "blank"` (the base install uses the
    /// default answers).
    #[serde(default)]
    pub answers: toml::Table,
    /// A ZFSBootMenu the install puts on the ESP instead of the medium's (given as a file on
    /// the medium, as a user gives one made elsewhere); only with `start = "blank"`.
    pub zfsbootmenu: Option<TestZfsBootMenu>,
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
}

/// A blank disk a scenario adds: its size (`"2G"`), or a table with the size and what kind of
/// disk it is: `{ size = "4G", read_only = true }`, `{ size = "8G", sector_size = 4096 }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ExtraDisk {
    Size(String),
    Table(DiskOptions),
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct DiskOptions {
    pub size: String,
    /// Attached read-only (QEMU `readonly=on`: the guest's /sys/block/<disk>/ro is 1).
    #[serde(default)]
    pub read_only: bool,
    /// Logical and physical sector size in bytes: 512 (the default) or 4096 (a 4Kn disk).
    pub sector_size: Option<u32>,
}

impl ExtraDisk {
    pub fn options(&self) -> DiskOptions {
        match self {
            ExtraDisk::Size(size) => DiskOptions {
                size: size.clone(),
                read_only: false,
                sector_size: None,
            },
            ExtraDisk::Table(options) => options.clone(),
        }
    }
}

/// The blank target's kind: `[target] sector_size = 4096` makes it a 4Kn disk.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetDisk {
    pub sector_size: Option<u32>,
}

/// The sector sizes QEMU's disks and kldload's recipe are tested with.
const SECTOR_SIZES: [u32; 2] = [512, 4096];

fn check_sector_size(size: Option<u32>, what: &str) -> Result<()> {
    if let Some(n) = size {
        ensure!(
            SECTOR_SIZES.contains(&n),
            "{what}: sector_size {n}: use 512 or 4096"
        );
    }
    Ok(())
}

/// What a scenario starts from.
#[derive(Debug, Default, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub enum Start {
    /// A copy-on-write copy of the shared base install (fixtures/answers/default.toml), its
    /// NVRAM with kldload's firmware entries: the machine as a user has it after installing.
    #[default]
    Installed,
    /// That copy already booted through ZFSBootMenu with root logged in (the first step finds
    /// a running machine), resumed from a saved machine state in seconds: for a scenario whose
    /// bug comes after the first boot. A scenario about booting starts `installed` and boots.
    LoggedIn,
    /// A blank 16 GiB target and a fresh NVRAM: the steps install (or fail to) themselves.
    Blank,
}

/// One thing the harness does, or waits for, or checks.
#[derive(Debug, Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Step {
    /// Boots the live medium with the answer file and waits for the unattended install to
    /// succeed and power off, or, with `kill_when` (a regex), kills QEMU as soon as the console
    /// shows it: the install interrupted there.
    Install {
        kill_when: Option<String>,
        check: Option<String>,
    },
    /// Boots the live medium without an answer file (so it installs nothing by itself), logs in
    /// to its shell and puts the run's answer file at /root/answers.toml for the steps to use.
    Live,
    /// Starts the installed disks through the firmware and does not wait: for the steps that
    /// drive ZFSBootMenu or wait for console text. `disks` names the disks attached (`target`,
    /// `extra-0`, ...; default all), to boot with one pulled out; `boot_from` the disk the
    /// firmware boots first (as picked in its boot menu: it loads that disk's fallback path).
    Start {
        disks: Option<Vec<String>>,
        boot_from: Option<String>,
    },
    /// Starts the installed disks and logs in: firmware, ZFSBootMenu's countdown, the default
    /// boot environment. `disks` and `boot_from` as for `start`.
    Boot {
        disks: Option<Vec<String>>,
        boot_from: Option<String>,
        check: Option<String>,
    },
    /// Logs in at the next login prompt (after a reboot, or a boot ZFSBootMenu started).
    Login { check: Option<String> },
    /// Runs a command on the machine (over the harness's shell: exact output and status). It
    /// must exit with `status` (default 0) within `timeout_secs` (default 300); `stdout`,
    /// `stderr` and `output` (both) are regexes that must match, `absent` one that must not
    /// match the output. `record` keeps the stdout under a name; `same_as` requires the stdout
    /// to equal a recorded one.
    Run {
        command: String,
        #[serde(default)]
        status: i32,
        timeout_secs: Option<u64>,
        stdout: Option<String>,
        stderr: Option<String>,
        output: Option<String>,
        absent: Option<String>,
        record: Option<String>,
        same_as: Option<String>,
        check: Option<String>,
    },
    /// An encrypted pool: types the run's passphrase at ZFSBootMenu's prompt (with
    /// `wrong_first`, a wrong one first, which must be refused and asked again), then logs in.
    /// Fails if anything asks for a passphrase again before the login prompt: one prompt a boot.
    Unlock {
        #[serde(default)]
        wrong_first: bool,
        /// Stop the countdown and boot the boot environment from the menu instead (the other
        /// path into a boot), the passphrase typed where ZFSBootMenu asks for it (as the menu
        /// opens, or at the boot); still one prompt.
        #[serde(default)]
        via_menu: bool,
        check: Option<String>,
    },
    /// Types `text` and Enter on the serial console (a shell there: the initramfs's, a rescue
    /// shell), after waiting for `after` (a regex) when given.
    ConsoleType { text: String, after: Option<String> },
    /// Waits for `prompt` (a regex) on the console and types the run's passphrase there (its
    /// text never recorded), with no check of what comes next: for a boot that asks twice.
    Passphrase {
        prompt: String,
        check: Option<String>,
    },
    /// The run's passphrase is nowhere it must not be: on the running machine, no log under
    /// /var/log, no journal line of this boot, no process's command line or environment; on
    /// the host, no file of the run's (transcript, reports, QEMU logs). The key file and the
    /// initramfs hold it by design and are not searched.
    PassphraseNowhere { check: Option<String> },
    /// The main job's checks (checks.rs: datasets, pool, hostid, every disk's ESP and firmware
    /// entries, services, SSH, ...) on the running machine, against the run's answer file; each
    /// check is its own line in the report. After an `install` and a `boot` with every disk.
    Checks,
    /// `kldload report` on the running machine, kept in the run's directory as
    /// kldload-report.json: what `cargo xtask vm-repro --from-report` rebuilds (the round trip).
    /// With `same_as` (a report file: absolute, or from the project's root), the machine's
    /// boot-relevant facts must be that report's (`round_trip::BootFacts`), but for those
    /// `except` names (what a rebuild knowingly made otherwise, e.g. `layout`).
    Report {
        same_as: Option<String>,
        #[serde(default)]
        except: Vec<String>,
        check: Option<String>,
    },
    /// The running machine's SSH host keys are none of the shared base install's: each install
    /// makes its own (a scenario that installs compares its install with the base's).
    HostKeysUnlikeBase { check: Option<String> },
    /// Waits for text on the serial console (a regex), e.g. a boot that fails.
    WaitConsole {
        text: String,
        timeout_secs: Option<u64>,
        check: Option<String>,
    },
    /// Waits `timeout_secs` (default 120) and requires that `text` (a regex) never appeared on
    /// the serial console meanwhile: a console gone silent, no second prompt, no countdown.
    NotOnConsole {
        text: String,
        timeout_secs: Option<u64>,
        check: Option<String>,
    },
    /// Power cut: QEMU quits at once, the guest not told.
    Crash,
    /// A clean reboot from inside the guest (same VM, same NVRAM).
    Reboot,
    /// A clean poweroff from inside the guest.
    Shutdown,
    /// The firmware forgets its boot entries: the NVRAM replaced by a fresh copy (VM off).
    NewNvram,
    /// ZFSBootMenu: waits for the countdown and stops it with Escape; the menu opens.
    ZbmMenu,
    /// ZFSBootMenu: waits for the countdown, which must name `be` as the boot environment it
    /// will boot (the default); the countdown goes on.
    ZbmCountdown { be: String, check: Option<String> },
    /// ZFSBootMenu: selects a boot environment in the menu and opens its snapshot list.
    ZbmSnapshots { be: String },
    /// ZFSBootMenu: duplicates `snapshot` (selected in the open snapshot list) into a new boot
    /// environment `<be>_NEW`; `check` that it is listed.
    ZbmDuplicate {
        snapshot: String,
        check: Option<String>,
    },
    /// ZFSBootMenu: selects `be` in the menu and boots it.
    ZbmBoot { be: String },
    /// ZFSBootMenu: selects `be` in the menu and opens its kernel list (Alt+K); `check` that
    /// it lists kernels.
    ZbmKernels { be: String, check: Option<String> },
    /// ZFSBootMenu: in the open kernel list, selects `kernel` (a file name in /boot, or
    /// `"newest"` or `"oldest"`) and boots it.
    ZbmBootKernel { kernel: String },
    /// ZFSBootMenu: in the open kernel list, selects `kernel` (as for `zbm-boot-kernel`) and
    /// makes it the boot environment's default (Alt+D, ZFSBootMenu's Ctrl+D: it writes
    /// `org.zfsbootmenu:kernel` as the file name and `$`); back in the menu.
    ZbmDefaultKernel { kernel: String },
    /// ZFSBootMenu: selects `be` in the menu and adds `append` to the kernel command line of
    /// its next boot only (Alt+E); back in the menu.
    ZbmCmdlineOnce { be: String, append: String },
}

impl Step {
    /// Its name in the transcript and report.
    fn describe(&self) -> String {
        match self {
            Step::Install {
                kill_when: None, ..
            } => "install".into(),
            Step::Install {
                kill_when: Some(k), ..
            } => format!("install, killed at {k:?}"),
            Step::Live => "boot the live medium".into(),
            Step::Start {
                disks, boot_from, ..
            } => format!(
                "start the installed machine{}",
                machine_options(disks, boot_from)
            ),
            Step::Boot {
                disks, boot_from, ..
            } => format!(
                "boot the installed machine{} and log in",
                machine_options(disks, boot_from)
            ),
            Step::Login { .. } => "log in".into(),
            Step::Run { command, .. } => {
                // The first line that says something, short enough for a table.
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
            Step::HostKeysUnlikeBase { .. } => "SSH host keys unlike the base install's".into(),
            Step::Report { .. } => "kldload report, kept with the run".into(),
            Step::Checks => "the main job's checks".into(),
            Step::Unlock {
                wrong_first,
                via_menu,
                ..
            } => format!(
                "ZFSBootMenu: {}the passphrase; {}log in",
                if *wrong_first {
                    "a wrong passphrase, then "
                } else {
                    ""
                },
                if *via_menu {
                    "boot from the menu; "
                } else {
                    ""
                }
            ),
            Step::Passphrase { prompt, .. } => format!("the passphrase at {prompt:?}"),
            Step::ConsoleType { text, .. } => format!("type {text:?} on the console"),
            Step::PassphraseNowhere { .. } => "the passphrase in no log, argv or transcript".into(),
            Step::WaitConsole { text, .. } => format!("wait for {text:?} on the console"),
            Step::Crash => "power cut".into(),
            Step::Reboot => "reboot".into(),
            Step::Shutdown => "poweroff".into(),
            Step::NewNvram => "fresh NVRAM".into(),
            Step::ZbmMenu => "ZFSBootMenu: open the menu".into(),
            Step::ZbmCountdown { be, .. } => format!("ZFSBootMenu: a countdown to {be}"),
            Step::ZbmSnapshots { be } => format!("ZFSBootMenu: snapshots of {be}"),
            Step::ZbmDuplicate { snapshot, .. } => format!("ZFSBootMenu: duplicate {snapshot}"),
            Step::ZbmBoot { be } => format!("ZFSBootMenu: boot {be}"),
            Step::NotOnConsole {
                text, timeout_secs, ..
            } => format!(
                "{text:?} not on the console for {}s",
                timeout_secs.unwrap_or(NOT_ON_CONSOLE_SECS)
            ),
            Step::ZbmKernels { be, .. } => format!("ZFSBootMenu: kernels of {be}"),
            Step::ZbmBootKernel { kernel } => format!("ZFSBootMenu: boot the kernel {kernel}"),
            Step::ZbmDefaultKernel { kernel } => {
                format!("ZFSBootMenu: make the kernel {kernel} the default")
            }
            Step::ZbmCmdlineOnce { be, append } => {
                format!("ZFSBootMenu: {append:?} on {be}'s command line, once")
            }
        }
    }

    fn check(&self) -> Option<&str> {
        match self {
            Step::Install { check, .. }
            | Step::Boot { check, .. }
            | Step::Login { check }
            | Step::Run { check, .. }
            | Step::HostKeysUnlikeBase { check }
            | Step::Report { check, .. }
            | Step::Unlock { check, .. }
            | Step::Passphrase { check, .. }
            | Step::ZbmCountdown { check, .. }
            | Step::PassphraseNowhere { check }
            | Step::WaitConsole { check, .. }
            | Step::NotOnConsole { check, .. }
            | Step::ZbmKernels { check, .. }
            | Step::ZbmDuplicate { check, .. } => check.as_deref(),
            _ => None,
        }
    }
}

/// The kernel a `zbm-boot-kernel` step names among those ZFSBootMenu lists: `"newest"` or
/// `"oldest"` (in ZFSBootMenu's `sort -V` order), or a file name.
fn pick_kernel(kernel: &str, listed: &[String]) -> Result<String> {
    let mut sorted = listed.to_vec();
    sorted.sort_by(|a, b| kldload::doctor::kernels::version_order(a, b));
    let found = match kernel {
        "newest" => sorted.last(),
        "oldest" => sorted.first(),
        name => sorted.iter().find(|k| *k == name),
    };
    found
        .cloned()
        .with_context(|| format!("no kernel {kernel:?} in the list: {listed:?}"))
}

/// Where `cargo xtask vm-repro --from-report` puts the scenario it made (a directory), for
/// the test binary to list it with the others.
pub const GENERATED_SCENARIOS_ENV: &str = "KLDLOAD_VMTEST_GENERATED_SCENARIOS";

/// The scenario files: fixtures/scenarios/*.toml and those in $KLDLOAD_VMTEST_GENERATED_SCENARIOS,
/// by name (the file's stem), sorted.
pub fn scenario_files(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let generated = std::env::var_os(GENERATED_SCENARIOS_ENV).map(PathBuf::from);
    scenario_files_in(root, generated.as_deref())
}

/// The scenario files of fixtures/scenarios and of `generated` (a directory, if any).
pub fn scenario_files_in(root: &Path, generated: Option<&Path>) -> Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for dir in
        std::iter::once(root.join("fixtures/scenarios")).chain(generated.map(Path::to_path_buf))
    {
        files.extend(
            std::fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .map(|p| {
                    let name = p.file_stem().unwrap_or_default().to_string_lossy().into();
                    (name, p)
                }),
        );
    }
    files.sort();
    Ok(files)
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let scenario: Scenario = toml::from_str(&text)
            .with_context(|| format!("{} is not a scenario", path.display()))?;
        scenario
            .validate()
            .with_context(|| format!("{} is not a usable scenario", path.display()))?;
        Ok(scenario)
    }

    /// What parsing cannot say: regexes compile, `same_as` names an earlier `record`, disk
    /// sizes parse.
    fn validate(&self) -> Result<()> {
        ensure!(!self.steps.is_empty(), "it has no [[step]]");
        ensure!(
            self.answers.is_empty() || self.start == Start::Blank,
            "[answers] needs start = \"blank\": the installed start is the base install, made \
             with the default answers"
        );
        if let Some(file) = &self.answers_file {
            ensure!(
                self.start == Start::Blank,
                "answers_file needs start = \"blank\": the installed start is the base install"
            );
            kldload::config::Config::load(&answers_file_path(file))
                .with_context(|| format!("answers_file {file:?}"))?;
        }
        if !self.answers.is_empty() {
            // What the install will be given: the answer file with [answers] merged in.
            let base = answers_file_path(self.answers_file.as_deref().unwrap_or("default.toml"));
            crate::flow::merged_answers(
                &std::fs::read_to_string(&base)?,
                &self.answers,
                &base.display().to_string(),
            )?;
        }
        ensure!(
            self.zfsbootmenu.is_none() || self.start == Start::Blank,
            "zfsbootmenu needs start = \"blank\": the installed start is the base install, made \
             with the medium's ZFSBootMenu"
        );
        let mut recorded = Vec::new();
        for (n, step) in self.steps.iter().enumerate() {
            let at = || format!("step {} ({})", n + 1, step.describe());
            let regexes: Vec<&String> = match step {
                Step::Run {
                    stdout,
                    stderr,
                    output,
                    absent,
                    record,
                    same_as,
                    ..
                } => {
                    if let Some(name) = same_as {
                        ensure!(
                            recorded.contains(name),
                            "{}: same_as {name:?} names no earlier record",
                            at()
                        );
                    }
                    recorded.extend(record.iter().cloned());
                    [stdout, stderr, output, absent]
                        .into_iter()
                        .flatten()
                        .collect()
                }
                Step::Report {
                    same_as: None,
                    except,
                    ..
                } if !except.is_empty() => {
                    bail!("{}: except without same_as: nothing to compare", at())
                }
                Step::Install {
                    kill_when: Some(k), ..
                } => vec![k],
                Step::WaitConsole { text, .. }
                | Step::NotOnConsole { text, .. }
                | Step::Passphrase { prompt: text, .. } => vec![text],
                Step::ConsoleType {
                    after: Some(after), ..
                } => vec![after],
                _ => vec![],
            };
            for r in regexes {
                regex::Regex::new(r).with_context(|| format!("{}: bad regex {r:?}", at()))?;
            }
        }
        for (n, step) in self.steps.iter().enumerate() {
            if let Step::Unlock {
                wrong_first: true,
                via_menu: true,
                ..
            } = step
            {
                bail!(
                    "step {}: unlock takes wrong_first or via_menu, not both",
                    n + 1
                );
            }
        }
        let disk_names: Vec<String> = std::iter::once("target".to_string())
            .chain((0..self.extra_disks.len()).map(|n| format!("extra-{n}")))
            .collect();
        for (n, step) in self.steps.iter().enumerate() {
            if let Step::Boot {
                disks, boot_from, ..
            }
            | Step::Start { disks, boot_from } = step
            {
                for name in disks.iter().flatten().chain(boot_from) {
                    ensure!(
                        disk_names.contains(name),
                        "step {}: no disk {name:?}; this scenario has {}",
                        n + 1,
                        disk_names.join(", ")
                    );
                }
            }
        }
        for disk in &self.extra_disks {
            let disk = disk.options();
            ByteSize::parse(&disk.size).map_err(|e| anyhow::anyhow!("extra_disks: {e}"))?;
            check_sector_size(disk.sector_size, "extra_disks")?;
        }
        check_sector_size(self.target.sector_size, "[target]")?;
        ensure!(
            self.extra_disks.is_empty() || self.start != Start::LoggedIn,
            "extra_disks need start = \"installed\" or \"blank\": the logged-in start is a saved \
             machine with the base install's disk alone"
        );
        ensure!(
            self.target.sector_size.is_none() || self.start == Start::Blank,
            "[target] needs start = \"blank\": the installed start is the base install's disk"
        );
        Ok(())
    }
}

/// Runs the scenario `name` from `path` on `distro`'s medium; its report, transcript and check
/// table are written whatever happens, and it fails unless every check passed.
pub fn run_scenario(name: &str, path: &Path) -> Result<()> {
    let scenario = Scenario::load(path)?;
    let distro = crate::flow::test_distro();
    let medium = crate::flow::medium_from_env()?;
    let start = Instant::now();
    let run_name = format!("scenario-{name}");
    let mut run = match scenario.start {
        Start::Installed | Start::LoggedIn => Run::on_installed_base(&distro, &run_name, medium)?,
        Start::Blank => Run::new(&distro, &run_name, medium)?,
    };
    if scenario.start != Start::Blank {
        run.report.origin = Some(start);
        run.report.phase("base install", start.elapsed());
    }
    if let Some(file) = &scenario.answers_file {
        run.install_with_answers(&answers_file_path(file))?;
    }
    if !scenario.answers.is_empty() {
        crate::flow::merge_answers(&run.answers, &scenario.answers)?;
    }
    if let Some(zfsbootmenu) = scenario.zfsbootmenu {
        run.install_zfsbootmenu_file(&zfsbootmenu.path()?)?;
    }
    run.target_sector_size = scenario.target.sector_size;
    for disk in &scenario.extra_disks {
        let disk = disk.options();
        let bytes = ByteSize::parse(&disk.size)
            .map_err(anyhow::Error::msg)?
            .bytes();
        run.add_extra_disk(bytes, disk.read_only, disk.sector_size)?;
    }
    std::fs::copy(path, run.dir.join("scenario.toml"))?;
    let mut exec = Exec {
        run: &mut run,
        m: None,
        records: HashMap::new(),
    };
    let result = exec.start(&scenario).and_then(|()| exec.steps(&scenario));
    if let Some(mut m) = exec.m.take() {
        // Whatever state it is in, the VM goes: the run is over.
        let _ = m.crash();
    }
    if let Err(e) = result {
        run.report.error = Some(format!("{e:#}"));
    }
    run.finish()?;
    if !run.report.passed() {
        bail!("{}\n{}", scenario.summary, run.report.failure_text());
    }
    Ok(())
}

/// A scenario being run: its VM run, the machine when one is up, what `record` kept.
struct Exec<'r> {
    run: &'r mut Run,
    m: Option<Machine>,
    records: HashMap<String, String>,
}

impl Exec<'_> {
    /// The machine the first step finds: none, or the base logged in.
    fn start(&mut self, scenario: &Scenario) -> Result<()> {
        if scenario.start == Start::LoggedIn {
            self.m = Some(self.run.resume_logged_in("installed")?);
        }
        Ok(())
    }

    fn steps(&mut self, scenario: &Scenario) -> Result<()> {
        for (n, step) in scenario.steps.iter().enumerate() {
            let what = format!("step {} ({})", n + 1, step.describe());
            if let Some(m) = self.m.as_ref() {
                m.console.mark(&format!("scenario: {what}"));
            }
            let start = Instant::now();
            let result = self.step(step);
            self.run.report.phase(&what, start.elapsed());
            match (step.check(), result) {
                (Some(check), result) => self.run.report.check(check, result),
                (None, Err(e)) => return Err(e.context(what)),
                (None, Ok(_)) => {}
            }
        }
        Ok(())
    }

    fn machine(&mut self) -> Result<&mut Machine> {
        self.m
            .as_mut()
            .context("no machine is running: start one first (boot, start, live, install)")
    }

    /// Does one step; what it found, for the report.
    fn step(&mut self, step: &Step) -> Result<String> {
        match step {
            Step::Install { kill_when, .. } => self.install(kill_when.as_deref()),
            Step::Unlock {
                wrong_first,
                via_menu,
                ..
            } => self.unlock(*wrong_first, *via_menu),
            Step::ConsoleType { text, after } => {
                let console = &mut self.machine()?.console;
                if let Some(after) = after {
                    console.wait_for_regex(after, MENU_TIMEOUT + LOGIN_TIMEOUT)?;
                    std::thread::sleep(Duration::from_millis(500));
                }
                console.mark(&format!("typed {text:?}"));
                console.send_line(text)?;
                Ok(format!("typed {text:?}"))
            }
            Step::Passphrase { prompt, .. } => {
                let passphrase = self.run.passphrase()?;
                let console = &mut self.machine()?.console;
                let (_, found) = console.wait_for_regex(prompt, MENU_TIMEOUT + LOGIN_TIMEOUT)?;
                std::thread::sleep(Duration::from_millis(500));
                console.mark(&format!(
                    "typed the passphrase at {found:?} (its text not recorded)"
                ));
                console.send_line(&passphrase)?;
                Ok(format!("typed at {found:?}"))
            }
            Step::PassphraseNowhere { .. } => self.passphrase_nowhere(),
            Step::Checks => {
                let config = kldload::config::Config::load(&self.run.answers)?;
                let m = self
                    .m
                    .as_mut()
                    .context("no machine is running: boot the installed disks first")?;
                let before = self.run.report.checks.len();
                crate::checks::run_all(m, self.run, &config);
                let failed = self.run.report.checks[before..]
                    .iter()
                    .filter(|c| !c.passed)
                    .count();
                ensure!(failed == 0, "{failed} of the main job's checks failed");
                Ok("the main job's checks passed".into())
            }
            Step::Live => {
                self.ensure_off()?;
                let mut m = self.run.start_medium("live", false)?;
                m.console.wait_for_regex(r"[#$] $", LIVE_BOOT_TIMEOUT)?;
                m.start_shell()?;
                let answers = std::fs::read_to_string(&self.run.answers)?;
                m.succeed(&format!(
                    "cat > {LIVE_ANSWERS} <<'KLDLOAD_ANSWERS'\n{answers}\nKLDLOAD_ANSWERS"
                ))?;
                self.m = Some(m);
                Ok(format!(
                    "logged in on the live system; answers in {LIVE_ANSWERS}"
                ))
            }
            Step::Start { disks, boot_from } => {
                self.ensure_off()?;
                self.m = Some(self.run.start_installed_with(
                    "installed",
                    disks.as_deref(),
                    boot_from.as_deref(),
                )?);
                Ok("started".into())
            }
            Step::Boot {
                disks, boot_from, ..
            } => {
                self.ensure_off()?;
                let mut m = self.run.start_installed_with(
                    "installed",
                    disks.as_deref(),
                    boot_from.as_deref(),
                )?;
                m.login_root(MENU_TIMEOUT + LOGIN_TIMEOUT)?;
                let root = m.succeed("findmnt -n -o SOURCE /")?;
                self.m = Some(m);
                Ok(format!("logged in; / is {}", root.trim()))
            }
            Step::Login { .. } => {
                let m = self.machine()?;
                m.login_root(MENU_TIMEOUT + LOGIN_TIMEOUT)?;
                let root = m.succeed("findmnt -n -o SOURCE /")?;
                Ok(format!("logged in; / is {}", root.trim()))
            }
            Step::Run {
                command,
                status,
                timeout_secs,
                stdout,
                stderr,
                output,
                absent,
                record,
                same_as,
                ..
            } => {
                let timeout = timeout_secs.map_or(COMMAND_TIMEOUT, Duration::from_secs);
                let out = self.machine()?.execute_within(command, timeout)?;
                let both = format!("{}{}", out.stdout, out.stderr);
                let shown = || {
                    format!(
                        "status {}\nstdout: {}\nstderr: {}",
                        out.status, out.stdout, out.stderr
                    )
                };
                ensure!(out.status == *status, "wanted status {status}; {}", shown());
                for (what, regex, text) in [
                    ("stdout", stdout, &out.stdout),
                    ("stderr", stderr, &out.stderr),
                    ("output", output, &both),
                ] {
                    if let Some(r) = regex {
                        ensure!(
                            regex::Regex::new(r)?.is_match(text),
                            "{what} does not match {r:?}; {}",
                            shown()
                        );
                    }
                }
                if let Some(r) = absent {
                    ensure!(
                        !regex::Regex::new(r)?.is_match(&both),
                        "the output matches {r:?}; {}",
                        shown()
                    );
                }
                if let Some(name) = same_as {
                    let before = self.records.get(name).with_context(|| {
                        format!("nothing was recorded as {name:?} (its step failed)")
                    })?;
                    ensure!(
                        &out.stdout == before,
                        "the output differs from {name:?}:\nbefore:\n{before}\nnow:\n{}",
                        out.stdout
                    );
                }
                if let Some(name) = record {
                    self.records.insert(name.clone(), out.stdout.clone());
                }
                Ok(summarize(&both))
            }
            Step::Report {
                same_as, except, ..
            } => {
                let m = self.machine()?;
                let summary = m.execute_within(
                    "kldload report --output /root/kldload-report.json",
                    Duration::from_secs(300),
                )?;
                ensure!(summary.status == 0, "kldload report: {summary:?}");
                let json = m.succeed("cat /root/kldload-report.json")?;
                let report: kldload::report::Report =
                    serde_json::from_str(&json).context("the report does not parse")?;
                let kept = self.run.dir.join("kldload-report.json");
                std::fs::write(&kept, &json)?;
                let summary = format!(
                    "{} pool(s), {} boot environment(s); {}",
                    report.pools.len(),
                    report.boot_environments.len(),
                    kept.display()
                );
                let Some(original) = same_as else {
                    return Ok(summary);
                };
                let path = crate::flow::project_root().join(original);
                let original: kldload::report::Report =
                    serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| {
                        format!("reading the report to compare with, {}", path.display())
                    })?)
                    .with_context(|| format!("{} does not parse", path.display()))?;
                let (excepted, differences): (Vec<_>, Vec<_>) =
                    BootFacts::differences(&BootFacts::of(&original)?, &BootFacts::of(&report)?)
                        .into_iter()
                        .partition(|d| except.contains(&d.fact));
                let texts = |ds: &[crate::round_trip::Difference]| {
                    ds.iter().map(|d| d.text.clone()).collect::<Vec<_>>()
                };
                ensure!(
                    differences.is_empty(),
                    "this machine is not in the state of {}:\n{}",
                    path.display(),
                    texts(&differences).join("\n")
                );
                let mut said = format!("the boot-relevant facts of {}", path.display());
                if !excepted.is_empty() {
                    said.push_str(&format!(
                        " (but, as expected: {})",
                        texts(&excepted).join("; ")
                    ));
                }
                Ok(format!("{said}; {summary}"))
            }
            Step::HostKeysUnlikeBase { .. } => {
                let here = crate::flow::fingerprints(
                    &self
                        .machine()?
                        .succeed(&crate::flow::host_keys_command(""))?,
                );
                let run = &self.run;
                let base = crate::flow::installed_base(&run.distro, &run.medium)?;
                let there = base.host_keys_as_installed;
                ensure!(!here.is_empty(), "this machine has no SSH host keys");
                ensure!(
                    !there.is_empty(),
                    "the base install in {} recorded no host keys",
                    base.dir.display()
                );
                let shared: Vec<&String> = here.iter().filter(|k| there.contains(k)).collect();
                ensure!(
                    shared.is_empty(),
                    "the shared base install has the same host keys: {shared:?}"
                );
                Ok(format!(
                    "{} keys here, {} in {}, none the same",
                    here.len(),
                    there.len(),
                    base.dir.display()
                ))
            }
            Step::WaitConsole {
                text, timeout_secs, ..
            } => {
                let timeout =
                    timeout_secs.map_or(MENU_TIMEOUT + LOGIN_TIMEOUT, Duration::from_secs);
                let (_, found) = self.machine()?.console.wait_for_regex(text, timeout)?;
                Ok(format!("console showed {found:?}"))
            }
            Step::NotOnConsole {
                text, timeout_secs, ..
            } => {
                let secs = timeout_secs.unwrap_or(NOT_ON_CONSOLE_SECS);
                let console = &mut self.machine()?.console;
                // From now on: what came before (a shutdown's messages) is not this step's.
                console.discard_pending();
                match console.wait_for_regex(text, Duration::from_secs(secs)) {
                    Ok((_, found)) => bail!("the console showed {found:?}"),
                    Err(e) if e.downcast_ref::<crate::wait::TimedOut>().is_some() => {
                        Ok(format!("not on the console in {secs}s"))
                    }
                    Err(e) => Err(e),
                }
            }
            Step::Crash => {
                self.machine()?.crash()?;
                self.m = None;
                Ok("QEMU killed".into())
            }
            Step::Reboot => {
                self.machine()?.reboot()?;
                Ok("rebooting".into())
            }
            Step::Shutdown => {
                self.machine()?.shutdown(Duration::from_secs(180))?;
                self.m = None;
                Ok("powered off".into())
            }
            Step::NewNvram => {
                self.ensure_off()?;
                self.run.firmware.new_nvram(&self.run.nvram)?;
                Ok("NVRAM replaced by a fresh copy".into())
            }
            Step::ZbmCountdown { be, .. } => {
                let mut zbm = Zbm::new(self.machine()?);
                let target = zbm.wait_for_countdown(MENU_TIMEOUT)?;
                ensure!(
                    target == *be,
                    "ZFSBootMenu's countdown boots {target}, not {be}"
                );
                Ok(format!("the countdown boots {target}"))
            }
            Step::ZbmMenu => {
                let mut zbm = Zbm::new(self.machine()?);
                zbm.wait_for_countdown(MENU_TIMEOUT)?;
                Ok(zbm.open_menu()?.join(" "))
            }
            Step::ZbmSnapshots { be } => {
                let mut zbm = Zbm::new(self.machine()?);
                zbm.select(be)?;
                Ok(zbm.snapshots()?.join(" "))
            }
            Step::ZbmDuplicate { snapshot, .. } => {
                let mut zbm = Zbm::new(self.machine()?);
                zbm.select(snapshot)?;
                let listed = zbm.duplicate_selected_snapshot()?;
                let new_be = format!("{}_NEW", snapshot.split('@').next().unwrap_or_default());
                ensure!(listed.contains(&new_be), "listed: {listed:?}");
                Ok(listed.join(" "))
            }
            Step::ZbmBoot { be } => {
                Zbm::new(self.machine()?).boot(be)?;
                Ok(format!("booting {be}"))
            }
            Step::ZbmKernels { be, .. } => {
                let mut zbm = Zbm::new(self.machine()?);
                zbm.select(be)?;
                let listed = zbm.kernels()?;
                ensure!(!listed.is_empty(), "the kernel list is empty");
                Ok(listed.join(" "))
            }
            Step::ZbmBootKernel { kernel } => {
                let mut zbm = Zbm::new(self.machine()?);
                let listed = zbm.wait_for_kernel_list()?;
                let name = pick_kernel(kernel, &listed)?;
                // The list shows each kernel by its path.
                zbm.select(&format!("/boot/{name}"))?;
                zbm.enter(&format!("Return: boot {name}"))?;
                Ok(format!("booting {name}"))
            }
            Step::ZbmDefaultKernel { kernel } => {
                let mut zbm = Zbm::new(self.machine()?);
                let listed = zbm.wait_for_kernel_list()?;
                let name = pick_kernel(kernel, &listed)?;
                zbm.select(&format!("/boot/{name}"))?;
                zbm.set_selected_kernel_as_default()?;
                Ok(format!("{name} made the default"))
            }
            Step::ZbmCmdlineOnce { be, append } => {
                let mut zbm = Zbm::new(self.machine()?);
                zbm.select(be)?;
                Ok(zbm.append_to_command_line_once(append)?.join(" "))
            }
        }
    }

    /// Steps that start a machine need the last one off (shut down or crashed).
    fn ensure_off(&self) -> Result<()> {
        ensure!(
            self.m.is_none(),
            "a machine is still running: end it with shutdown or crash first"
        );
        Ok(())
    }

    /// Types the passphrase at ZFSBootMenu's prompt (a wrong one first, if asked), waits for the
    /// login prompt, refusing a second prompt on the way, and logs in.
    fn unlock(&mut self, wrong_first: bool, via_menu: bool) -> Result<String> {
        use crate::zbm::Zbm;
        let config = kldload::config::Config::load(&self.run.answers)?;
        let pool = config.pool.name.as_str();
        // ZFSBootMenu asks for the boot environment's encryption root.
        let root = config
            .encryption
            .encryption_root(pool, "ROOT/default")
            .context("unlock: the answer file's pool is not encrypted")?;
        let passphrase = self.run.passphrase()?;
        let m = self.machine()?;
        let mut zbm = Zbm::new(m);
        if wrong_first {
            zbm.type_passphrase(&root, "not-the-passphrase", MENU_TIMEOUT)?;
            zbm.m
                .console
                .wait_for("Incorrect key provided", crate::zbm::SCREEN_TIMEOUT)
                .context("ZFSBootMenu did not refuse a wrong passphrase")?;
        }
        if via_menu {
            // The countdown comes before the prompt: ZFSBootMenu asks for the key when it
            // needs it, opening the menu or booting.
            zbm.wait_for_countdown(MENU_TIMEOUT)?;
            let asked = zbm.open_menu_asking_passphrase(&root, &passphrase)?;
            zbm.boot(&format!("{pool}/ROOT/default"))?;
            if !asked {
                zbm.type_passphrase(&root, &passphrase, MENU_TIMEOUT)?;
            }
        } else {
            zbm.type_passphrase(&root, &passphrase, MENU_TIMEOUT)?;
        }
        // Any encryption root's prompt, ZFSBootMenu's or the boot's (`zfs load-key`,
        // systemd-ask-password), is a second prompt.
        let (i, _) = m.console.wait_for_any(
            &[
                "login: ",
                "Enter passphrase for",
                "Encrypted ZFS password",
                "Incorrect key",
            ],
            MENU_TIMEOUT + LOGIN_TIMEOUT,
        )?;
        ensure!(
            i == 0,
            "after the right passphrase the boot asked again or refused it (see the transcript)"
        );
        m.login_at_prompt("root", crate::flow::ROOT_PASSWORD)?;
        let root_fs = m.succeed("findmnt -n -o SOURCE /")?;
        Ok(format!(
            "{}one prompt for the right one; {}logged in, / is {}",
            if wrong_first {
                "a wrong passphrase refused; "
            } else {
                ""
            },
            if via_menu {
                "booted from the menu; "
            } else {
                ""
            },
            root_fs.trim()
        ))
    }

    /// Searches the running machine and the run's files on the host for the passphrase.
    fn passphrase_nowhere(&mut self) -> Result<String> {
        let passphrase = self.run.passphrase()?;
        let on_machine = crate::checks::passphrase_absent(self.machine()?, &passphrase)?;
        let mut searched = 0;
        for entry in std::fs::read_dir(&self.run.dir)? {
            let path = entry?.path();
            let text_like = path.extension().is_some_and(|e| {
                ["log", "json", "xml", "toml", "txt"].contains(&e.to_str().unwrap_or(""))
            });
            if !text_like {
                continue;
            }
            let bytes = std::fs::read(&path)?;
            ensure!(
                !bytes
                    .windows(passphrase.len())
                    .any(|w| w == passphrase.as_bytes()),
                "the passphrase is in {}",
                path.display()
            );
            searched += 1;
        }
        Ok(format!(
            "{on_machine}; nor in the run's {searched} log, report and transcript files"
        ))
    }

    fn install(&mut self, kill_when: Option<&str>) -> Result<String> {
        self.ensure_off()?;
        match kill_when {
            None => {
                self.run.install_and_inspect()?;
                Ok(
                    "installed; the pool's label and SSH host keys read on the live system, \
                    which powered off"
                        .into(),
                )
            }
            Some(pattern) => {
                let mut m = self.run.start_medium("install", true)?;
                let (_, found) = m
                    .console
                    .wait_for_regex(pattern, LIVE_BOOT_TIMEOUT + INSTALL_TIMEOUT)?;
                m.crash()?;
                Ok(format!("QEMU killed when the console showed {found:?}"))
            }
        }
    }
}

/// A scenario's `answers_file`: a file of fixtures/answers/.
fn answers_file_path(file: &str) -> PathBuf {
    crate::flow::project_root()
        .join("fixtures/answers")
        .join(file)
}

/// ` with ["extra-0"], booting extra-0 first`, for a step's name.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every scenario file in the repository parses and validates (CI catches a broken one
    /// without booting anything).
    #[test]
    fn every_scenario_file_is_valid() {
        let files = scenario_files(&crate::flow::project_root()).unwrap();
        assert!(!files.is_empty());
        for (name, path) in files {
            Scenario::load(&path).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
    }

    #[test]
    fn a_bad_scenario_is_refused_with_the_step_named() {
        let bad = |text: &str| {
            let s: Scenario = toml::from_str(text)?;
            s.validate()
        };
        let e = bad(
            "summary = \"x\"\n[[step]]\ndo = \"run\"\ncommand = \"true\"\nsame_as = \"nope\"\n",
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("step 1"), "{e:#}");
        let e =
            bad("summary = \"x\"\n[[step]]\ndo = \"wait-console\"\ntext = \"(\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("bad regex"), "{e:#}");
        assert!(bad("summary = \"x\"\n[[step]]\ndo = \"fly\"\n").is_err());
        let e =
            bad("summary = \"x\"\n[[step]]\ndo = \"report\"\nexcept = [\"layout\"]\n").unwrap_err();
        assert!(format!("{e:#}").contains("except without same_as"), "{e:#}");
        assert!(bad("summary = \"x\"\n[[step]]\ndo = \"boot\"\ncheque = \"x\"\n").is_err());
        assert!(
            bad("summary = \"x\"\nextra_disks = [\"big\"]\n[[step]]\ndo = \"live\"\n").is_err()
        );
        let e = bad(
            "summary = \"x\"\nextra_disks = [{ size = \"4G\", sector_size = 1024 }]\n\
                     [[step]]\ndo = \"live\"\n",
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("512 or 4096"), "{e:#}");
        let e = bad("summary = \"x\"\n[target]\nsector_size = 4096\n[[step]]\ndo = \"boot\"\n")
            .unwrap_err();
        assert!(format!("{e:#}").contains("blank"), "{e:#}");
        assert!(
            bad(
                "summary = \"x\"\nextra_disks = [{ size = \"4G\", readonly = true }]\n\
                 [[step]]\ndo = \"live\"\n"
            )
            .is_err()
        );
        let e = bad(
            "summary = \"x\"\nstart = \"logged-in\"\nextra_disks = [\"2G\"]\n\
             [[step]]\ndo = \"shutdown\"\n",
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("saved"), "{e:#}");
        assert!(
            bad("summary = \"x\"\nstart = \"logged-in\"\n[[step]]\ndo = \"shutdown\"\n").is_ok()
        );
        let e = bad("summary = \"x\"\nzfsbootmenu = \"zfs-2.1\"\n[[step]]\ndo = \"boot\"\n")
            .unwrap_err();
        assert!(format!("{e:#}").contains("blank"), "{e:#}");
        assert!(
            bad("summary = \"x\"\nzfsbootmenu = \"zfs-2.0\"\n[[step]]\ndo = \"live\"\n").is_err()
        );
        let s: Scenario = toml::from_str(
            "summary = \"x\"\nstart = \"blank\"\nzfsbootmenu = \"zfs-2.1\"\n[[step]]\ndo = \"install\"\n",
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.zfsbootmenu, Some(TestZfsBootMenu::Zfs21));
        assert!(
            bad(
                "summary = \"x\"\n[[step]]\ndo = \"unlock\"\nwrong_first = true\nvia_menu = true\n"
            )
            .is_err()
        );
        let e =
            bad("summary = \"x\"\n[[step]]\ndo = \"not-on-console\"\ntext = \"[\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("bad regex"), "{e:#}");
    }

    #[test]
    fn kernels_are_picked_in_zfsbootmenus_order() {
        // As the kernel list shows them: newest first.
        let listed = [
            "vmlinuz-6.12.999+deb13-amd64".to_string(),
            "vmlinuz-6.12.57+deb13-amd64".to_string(),
            "vmlinuz-6.12.9+deb13-amd64".to_string(),
        ];
        assert_eq!(
            pick_kernel("oldest", &listed).unwrap(),
            "vmlinuz-6.12.9+deb13-amd64"
        );
        assert_eq!(
            pick_kernel("newest", &listed).unwrap(),
            "vmlinuz-6.12.999+deb13-amd64"
        );
        assert_eq!(
            pick_kernel("vmlinuz-6.12.57+deb13-amd64", &listed).unwrap(),
            "vmlinuz-6.12.57+deb13-amd64"
        );
        let e = pick_kernel("vmlinuz-5", &listed).unwrap_err();
        assert!(
            format!("{e:#}").contains("no kernel \"vmlinuz-5\""),
            "{e:#}"
        );
    }
}
