//! Boot bugs as data. A scenario file (fixtures/scenarios/<name>.toml) says what to start from
//! (a copy of the shared base install, or blank disks), the fault to inject and when, and what
//! must happen, as a list of steps (`steps`: the vocabulary). A user's boot bug becomes a new
//! file, not new harness code. `cargo xtask vm-repro <name>` runs one; the `scenarios` test
//! binary runs them under nextest (those marked `ci` by default, all with `--all-scenarios`).
//!
//! A scenario is a typed value both ways: read from a file ([`Scenario::load`]) or built by
//! code (`from_report`, `round_trip`) and written with the same serializer
//! ([`Scenario::to_toml`]); no code edits scenario text.
//!
//! Steps that carry a `check` name record a named check in the run's report (a failed check is
//! reported and the scenario goes on); any other step that fails stops the scenario.

mod exec;
pub mod steps;
pub mod symptom;

pub use exec::{Exec, run_scenario};
pub use steps::{LIVE_ANSWERS, Step};
pub use symptom::Symptom;

use crate::test_update::UpdateFrom;
use crate::test_zbm::GivenZfsBootMenu;
use anyhow::{Context, Result, ensure};
use kldload::config::size::ByteSize;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One scenario file. Its fields are written in this order, plain values before tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// One line: the bug, as its user would put it.
    pub summary: String,
    /// What happened to the user and what must happen instead.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Whether `cargo xtask ci` runs it on every change.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ci: bool,
    /// What the first step finds.
    #[serde(default)]
    pub start: Start,
    /// The answer file installed with, a file in fixtures/answers/ (default: default.toml); only
    /// with `start = "blank"`.
    pub answers_file: Option<String>,
    /// A ZFSBootMenu the install puts on the ESP instead of the medium's (given as a file on
    /// the medium, as a user gives one made elsewhere); only with `start = "blank"`.
    pub zfsbootmenu: Option<GivenZfsBootMenu>,
    /// An update (`cargo xtask build-update --from <it>`) on a USB stick attached after the
    /// extra disks, read-only, as /dev/disk/by-id/virtio-kldload-update with the update in
    /// its `update` directory ([`crate::test_update`]); only with `start = "installed"` or
    /// `"blank"` (a saved machine has no stick).
    pub update: Option<UpdateFrom>,
    /// Blank disks added after the target: on the live medium /dev/vdc, /dev/vdd, ... (the
    /// target is /dev/vda, the medium /dev/vdb); on the installed machine /dev/vdb, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_disks: Vec<ExtraDisk>,
    /// The live system may write to the medium (the run's own copy), as to a USB stick.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub medium_writable: bool,
    /// The install's answer file is on the medium (answers.toml on its ESP), as a user puts it
    /// on the stick, not handed over through QEMU's fw_cfg.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub answers_on_medium: bool,
    /// The blank target's kind (only with `start = "blank"`).
    #[serde(default, skip_serializing_if = "TargetDisk::is_default")]
    pub target: TargetDisk,
    /// Changes to the answer file for this run (tables merge key by key), e.g.
    /// `[answers.disks]` for a mirror; only with `start = "blank"` (the base install uses the
    /// default answers).
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub answers: toml::Table,
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
}

/// A blank disk a scenario adds: its size (`"2G"`), or a table with the size and what kind of
/// disk it is: `{ size = "4G", read_only = true }`, `{ size = "8G", sector_size = 4096 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExtraDisk {
    Size(String),
    Table(DiskOptions),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskOptions {
    pub size: String,
    /// Attached read-only (QEMU `readonly=on`: the guest's /sys/block/<disk>/ro is 1).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetDisk {
    pub sector_size: Option<u32>,
}

impl TargetDisk {
    fn is_default(&self) -> bool {
        *self == TargetDisk::default()
    }
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
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq, Clone, Copy)]
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

/// The steps that take `report` on a machine showing `symptom`: on its running system when it
/// boots (then it is powered off); else as a user would, from the live medium: the machine's
/// power cut, the medium booted with its disks, `kldload report` there (it imports the pools
/// read-only).
///
/// On the live medium a user first unlocks an encrypted pool, so that the report can read its
/// boot environments: the pool imported read-only, each of `encryption_roots` (the pool's
/// first component names it) given its passphrase at the console, the key never in a file.
pub fn report_where(
    symptom: Symptom,
    encryption_roots: &[String],
    report: steps::Report,
) -> Vec<Step> {
    if symptom.boots() {
        return vec![report.into(), steps::Shutdown {}.into()];
    }
    let mut out: Vec<Step> = vec![steps::Crash {}.into(), steps::Live {}.into()];
    if let Some(pool) = (encryption_roots.first()).and_then(|r| r.split('/').next()) {
        out.push(
            steps::Run {
                command: format!("zpool import -N -f -o readonly=on {pool}"),
                check: Some("the encrypted pool imported read-only, as a user would".into()),
                ..Default::default()
            }
            .into(),
        );
        for root in encryption_roots {
            out.push(
                steps::ConsoleType {
                    text: format!("zfs load-key -L prompt {root}"),
                    after: None,
                }
                .into(),
            );
            out.push(
                steps::Passphrase {
                    prompt: format!("Enter passphrase for '{}':", regex::escape(root)),
                    check: None,
                }
                .into(),
            );
        }
        // `zfs load-key` derives the key after the passphrase is typed (seconds under TCG):
        // the keys are waited for, within the step's timeout.
        let roots = encryption_roots.join(" ");
        out.push(
            steps::Run {
                command: format!(
                    "for root in {roots}; do\n  until [ \"$(zfs get -H -o value keystatus \
                     \"$root\")\" = available ]; do sleep 1; done\ndone\nzfs get -H -o value \
                     keystatus {roots}"
                ),
                timeout_secs: Some(300),
                stdout: Some(format!("^(available\n){{{}}}$", encryption_roots.len())),
                check: Some(
                    "its keys are loaded: the report can read the boot environments".into(),
                ),
                ..Default::default()
            }
            .into(),
        );
    }
    out.push(report.into());
    out
}

/// The scenario files: fixtures/scenarios/*.toml and those in the directory of generated
/// scenarios the run's environment names (`crate::env`), by name (the file's stem), sorted.
pub fn scenario_files(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let generated = crate::env::VmTestEnv::from_env()?.generated_scenarios;
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

/// A scenario's `answers_file`: a file of fixtures/answers/.
pub(crate) fn answers_file_path(file: &str) -> PathBuf {
    crate::env::project_root()
        .join("fixtures/answers")
        .join(file)
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

    /// The symptom its bug shows (its first `symptom` step's), if it marks one.
    pub fn symptom(&self) -> Option<Symptom> {
        self.steps.iter().find_map(|s| match s {
            Step::SymptomStep(x) => Some(x.is),
            _ => None,
        })
    }

    /// The first half of a round trip: the scenario up to its bug (its first `symptom` step),
    /// then `kldload report` taken there ([`report_where`]); a scenario that marks no bug ends
    /// as [`Scenario::with_report_before_last_shutdown`] says. Returns the symptom too.
    ///
    /// When the machine still runs at its bug (the symptom is a login) and the steps after it
    /// take no report of their own, they follow the report: the machine goes on as the
    /// scenario says, so that one run is both the scenario and the round trip's first half
    /// (CI runs hostid-mismatch only so). Otherwise the scenario ends at the report.
    pub fn with_report_at_its_bug(&self) -> Result<(Scenario, Option<Symptom>)> {
        let Some(at) = (self.steps.iter()).position(|s| matches!(s, Step::SymptomStep(_))) else {
            return Ok((self.with_report_before_last_shutdown()?, None));
        };
        let symptom = self.symptom().expect("found above");
        let report = steps::Report {
            check: Some(format!(
                "kldload report where the bug holds ({})",
                symptom.name()
            )),
            ..Default::default()
        };
        let mut with = self.clone();
        let rest = with.steps.split_off(at + 1);
        if symptom.boots() && !rest.iter().any(|s| matches!(s, Step::Report(_))) {
            with.steps.push(report.into());
            with.steps.extend(rest);
        } else {
            with.steps
                .extend(report_where(symptom, &self.encryption_roots()?, report));
        }
        Ok((with, Some(symptom)))
    }

    /// The encryption roots the scenario's install makes; none when it does not encrypt (the
    /// installed start is the base install, which does not).
    pub fn encryption_roots(&self) -> Result<Vec<String>> {
        if self.start != Start::Blank {
            return Ok(Vec::new());
        }
        let base = answers_file_path(self.answers_file.as_deref().unwrap_or("default.toml"));
        let shown = base.display().to_string();
        let text = crate::answers::merged_answers(
            &std::fs::read_to_string(&base).with_context(|| format!("reading {shown}"))?,
            &self.answers,
            &shown,
        )?;
        let config = kldload::config::Config::parse(&text, &shown)?;
        let pool = config.pool.name.to_string();
        Ok(match config.encryption.enabled {
            true => (config.encryption.datasets.encryption_roots().iter())
                .map(|r| kldload::config::dataset_name(&pool, r))
                .collect(),
            false => Vec::new(),
        })
    }

    /// The scenario with a `report` step before its last step, which must be the poweroff of a
    /// booted machine (a scenario that ends elsewhere has no machine to report on): the first
    /// half of a round trip (`cargo xtask vm-repro --round-trip`).
    pub fn with_report_before_last_shutdown(&self) -> Result<Scenario> {
        let mut with = self.clone();
        match with.steps.last() {
            Some(Step::Shutdown(_)) => {}
            last => anyhow::bail!(
                "the scenario ends with `{}`, not the poweroff of a booted machine: there is no \
                 machine to take a report on",
                last.map_or("nothing", Step::kind)
            ),
        }
        let at = with.steps.len() - 1;
        with.steps.insert(
            at,
            steps::Report {
                check: Some("kldload report on the machine as the scenario leaves it".into()),
                ..Default::default()
            }
            .into(),
        );
        Ok(with)
    }

    /// The scenario as a file's text, written by the serializer [`Scenario::load`] reads back.
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Validates the scenario and writes it to `path`: a scenario made by code is a usable
    /// file or an error, never a file that fails later.
    pub fn write(&self, path: &Path) -> Result<()> {
        self.validate()
            .with_context(|| format!("the scenario for {} is not usable", path.display()))?;
        std::fs::write(path, self.to_toml()?).with_context(|| format!("writing {}", path.display()))
    }

    /// What parsing cannot say: regexes compile, `same_as` names an earlier `record`, disk
    /// sizes parse, and the rules across fields.
    pub fn validate(&self) -> Result<()> {
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
            crate::answers::merged_answers(
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
        let mut v = steps::Validation {
            recorded: Vec::new(),
            disks: std::iter::once("target".to_string())
                .chain((0..self.extra_disks.len()).map(|n| format!("extra-{n}")))
                .collect(),
        };
        for (n, step) in self.steps.iter().enumerate() {
            step.validate(&mut v)
                .with_context(|| format!("step {} ({})", n + 1, step.describe()))?;
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
            self.update.is_none() || self.start != Start::LoggedIn,
            "update needs start = \"installed\" or \"blank\": the logged-in start is a saved \
             machine with the base install's disk alone"
        );
        ensure!(
            self.target.sector_size.is_none() || self.start == Start::Blank,
            "[target] needs start = \"blank\": the installed start is the base install's disk"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every scenario file in the repository parses and validates (CI catches a broken one
    /// without booting anything).
    #[test]
    fn every_scenario_file_is_valid() {
        let files = scenario_files(&crate::env::project_root()).unwrap();
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
        assert_eq!(
            s.zfsbootmenu,
            Some(GivenZfsBootMenu::Test(
                crate::test_zbm::TestZfsBootMenu::Zfs21
            ))
        );
        let s: Scenario = toml::from_str(
            "summary = \"x\"\nstart = \"blank\"\nzfsbootmenu = \"given\"\n[[step]]\ndo = \"install\"\n",
        )
        .unwrap();
        assert_eq!(s.zfsbootmenu, Some(GivenZfsBootMenu::UsersOwn));
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

    /// Every scenario file reads, writes and reads back as the same value: code that writes
    /// scenarios (`from_report`, `round_trip`) can say whatever a file can.
    #[test]
    fn every_scenario_file_survives_read_write_read() {
        for (name, path) in scenario_files(&crate::env::project_root()).unwrap() {
            let read = Scenario::load(&path).unwrap();
            let written = read.to_toml().unwrap();
            let again: Scenario =
                toml::from_str(&written).unwrap_or_else(|e| panic!("{name}: {e}\n{written}"));
            assert_eq!(again, read, "{name}, written as:\n{written}");
        }
    }

    #[test]
    fn the_report_goes_before_the_last_poweroff_and_nowhere_else() {
        let text = "summary = \"s\"\ndescription = \"d\"\n\n[[step]]\ndo = \"boot\"\n\n[[step]]\ndo = \"shutdown\"\n";
        let scenario: Scenario = toml::from_str(text).unwrap();
        let with = scenario.with_report_before_last_shutdown().unwrap();
        let kinds: Vec<&str> = with.steps.iter().map(Step::kind).collect();
        assert_eq!(kinds, ["boot", "report", "shutdown"]);
        // Written and read back, it is the same scenario.
        let again: Scenario = toml::from_str(&with.to_toml().unwrap()).unwrap();
        assert_eq!(again, with);
        let crashed: Scenario =
            toml::from_str("summary = \"s\"\n[[step]]\ndo = \"crash\"\n").unwrap();
        let e = crashed
            .with_report_before_last_shutdown()
            .unwrap_err()
            .to_string();
        assert!(e.contains("ends with `crash`"), "{e}");
    }

    #[test]
    fn the_report_is_taken_where_the_bug_holds() {
        let steps = |s: &Scenario| s.steps.iter().map(Step::kind).collect::<Vec<_>>();
        let head = "summary = \"s\"\nstart = \"logged-in\"\n[[step]]\ndo = \"reboot\"\n";
        let tail = "[[step]]\ndo = \"run\"\ncommand = \"fix it\"\n[[step]]\ndo = \"shutdown\"\n";
        // A machine that still boots: the report on its running system, before the fix.
        let boots: Scenario = toml::from_str(&format!(
            "{head}[[step]]\ndo = \"symptom\"\nis = \"login\"\n{tail}"
        ))
        .unwrap();
        let (with, symptom) = boots.with_report_at_its_bug().unwrap();
        assert_eq!(symptom, Some(Symptom::Login));
        // ... and the scenario goes on after it: one run is both.
        assert_eq!(
            steps(&with),
            ["reboot", "symptom", "report", "run", "shutdown"]
        );
        with.validate().unwrap();
        // Unless a report of its own comes later, which would take the report's place.
        let reports_later: Scenario = toml::from_str(&format!(
            "{head}[[step]]\ndo = \"symptom\"\nis = \"login\"\n\
             [[step]]\ndo = \"report\"\n{tail}"
        ))
        .unwrap();
        let (with, _) = reports_later.with_report_at_its_bug().unwrap();
        assert_eq!(steps(&with), ["reboot", "symptom", "report", "shutdown"]);
        // One that does not: the power cut, the live medium, the report there.
        let stops: Scenario = toml::from_str(&format!(
            "{head}[[step]]\ndo = \"symptom\"\nis = \"initramfs-shell\"\n[[step]]\ndo = \"crash\"\n{tail}"
        ))
        .unwrap();
        let (with, symptom) = stops.with_report_at_its_bug().unwrap();
        assert_eq!(symptom, Some(Symptom::InitramfsShell));
        assert_eq!(
            steps(&with),
            ["reboot", "symptom", "crash", "live", "report"]
        );
        with.validate().unwrap();
        // No bug marked: before the last poweroff, as before.
        let unmarked: Scenario = toml::from_str(&format!("{head}{tail}")).unwrap();
        let (with, symptom) = unmarked.with_report_at_its_bug().unwrap();
        assert_eq!(symptom, None);
        assert_eq!(steps(&with), ["reboot", "run", "report", "shutdown"]);
    }
}
