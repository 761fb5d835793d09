//! `cargo xtask vm-test <distro>`: host packages (QEMU, OVMF), the medium (built or reused),
//! then the VM scenarios in vmtests/ through nextest's `vm` profile, one VM at a time, and a
//! summary of the checks and of each phase's wall time.

use crate::image;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use vmtests::test_zbm::TestZfsBootMenu;

/// The reports of a distro's runs made since `since`, oldest first.
fn reports_since(out: &Path, distro: &str, since: std::time::SystemTime) -> Vec<PathBuf> {
    let mut reports: Vec<PathBuf> = std::fs::read_dir(out.join(distro))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("report.json")))
        .filter(|r| {
            r.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
        })
        .collect();
    reports.sort();
    reports
}

/// When a run of VM tests began: its reports are those written since, and its id (a timestamp)
/// tells its tests' shared state from an earlier run's ($KLDLOAD_VMTEST_RUN).
pub struct Started {
    pub at: std::time::SystemTime,
    pub clock: Instant,
    pub id: String,
}

impl Started {
    pub fn now() -> Started {
        let at = std::time::SystemTime::now();
        let epoch = at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Started {
            at,
            clock: Instant::now(),
            id: format!("{epoch}-{}", std::process::id()),
        }
    }
}

/// How long the medium took: built, or reused from the cache.
#[derive(Serialize, Clone, Copy)]
pub struct ImageTime {
    pub seconds: f64,
    pub cached: bool,
}

/// What a run tested, as its medium's payload holds it: Debian testing moves from one run to
/// the next, so each run's report says which kernel, ZFS and systemd it proved.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Versions {
    /// The kernel release, e.g. 6.12.117+deb13-amd64.
    pub kernel: String,
    /// OpenZFS, as DKMS built it.
    pub zfs: String,
    /// The systemd package's version.
    pub systemd: Option<String>,
}

impl Versions {
    pub fn of(manifest: &image::payload::Manifest) -> Versions {
        Versions {
            kernel: manifest.kernel.clone(),
            zfs: manifest.zfs.clone(),
            systemd: (manifest.packages.iter())
                .find(|(name, _)| name == "systemd")
                .map(|(_, version)| version.clone()),
        }
    }
}

impl std::fmt::Display for Versions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kernel {}, ZFS {}, systemd {}",
            self.kernel,
            self.zfs,
            self.systemd.as_deref().unwrap_or("(none)")
        )
    }
}

/// Where a run of VM tests spent its time: written as target/vmtest/<distro>/report.json.
#[derive(Serialize)]
pub struct Times {
    pub distro: String,
    pub versions: Versions,
    /// From the start of the tests to the last report.
    pub wall_seconds: f64,
    pub image: ImageTime,
    pub tests: Vec<TestTimes>,
    /// Each phase name's time summed over the tests, counting only the innermost phases (so
    /// no second is counted twice), largest first.
    phases: Vec<PhaseTotal>,
}

#[derive(Serialize)]
pub struct TestTimes {
    /// The run directory's name without its timestamp (`install`, `zbm-kernels`, ...).
    pub name: String,
    /// Its named checks, as its own report.json has them.
    pub checks: Vec<vmtests::report::Check>,
    pub dir: PathBuf,
    pub passed: bool,
    /// What stopped it before its checks, if anything (its report's `error`).
    pub error: Option<String>,
    pub wall_seconds: f64,
    pub phases: Vec<vmtests::report::Phase>,
}

#[derive(Serialize)]
struct PhaseTotal {
    name: String,
    /// How many times it ran, over all the tests.
    count: usize,
    seconds: f64,
}

/// The test a run directory is of: its name without the timestamp.
fn test_name(dir: &Path) -> String {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    name.splitn(3, '-').nth(2).unwrap_or(&name).to_string()
}

/// A phase's name for the totals: a scenario's steps by their kind ("step 3 (run `zpool ...`)"
/// counts as "scenario step: run").
fn phase_kind(name: &str) -> String {
    match name.strip_prefix("step ").and_then(|r| r.split_once(" (")) {
        Some((_, what)) => format!(
            "scenario step: {}",
            what.split([' ', ',', ')']).next().unwrap_or_default()
        ),
        None => name.to_string(),
    }
}

/// Prints each report written since `started` (its checks and phases), then where the run's
/// time went, per test and per phase, and writes that to target/vmtest/<distro>/report.json.
pub fn report_times(
    out: &Path,
    distro: &str,
    versions: Versions,
    started: Started,
    image: ImageTime,
) -> Result<Times> {
    let mut tests = Vec::new();
    for path in reports_since(out, distro, started.at) {
        let r: vmtests::report::Report = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("reading {}", path.display()))?;
        let dir = path.parent().expect("a run directory").to_path_buf();
        println!(
            "\n{}:",
            dir.file_name().unwrap_or_default().to_string_lossy()
        );
        print!("{}", r.table());
        println!("  results: {}", dir.display());
        tests.push(TestTimes {
            name: test_name(&dir),
            checks: r.checks.clone(),
            passed: r.passed(),
            error: r.error.clone(),
            wall_seconds: r.wall_seconds,
            phases: r.phases,
            dir,
        });
    }
    let mut totals: Vec<PhaseTotal> = Vec::new();
    for t in &tests {
        let inner = vmtests::report::innermost(&t.phases);
        let named: f64 = inner.iter().map(|p| p.seconds).sum();
        let unnamed = (
            "(in no phase of its own)".to_string(),
            (t.wall_seconds - named).max(0.0),
        );
        let inner = inner.into_iter().map(|p| (phase_kind(&p.name), p.seconds));
        for (kind, seconds) in inner.chain([unnamed]) {
            match totals.iter_mut().find(|x| x.name == kind) {
                Some(x) => {
                    x.count += 1;
                    x.seconds += seconds;
                }
                None => totals.push(PhaseTotal {
                    name: kind,
                    count: 1,
                    seconds,
                }),
            }
        }
    }
    totals.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    let times = Times {
        distro: distro.to_string(),
        versions,
        wall_seconds: started.clock.elapsed().as_secs_f64(),
        image,
        tests,
        phases: totals,
    };
    println!(
        "\nwhere the time went ({distro}: {}): {:.0} s for {} VM tests; image {:.1} s{}",
        times.versions,
        times.wall_seconds,
        times.tests.len(),
        times.image.seconds,
        if times.image.cached { " (cached)" } else { "" }
    );
    for t in &times.tests {
        let mut inner = vmtests::report::innermost(&t.phases);
        inner.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        let top: Vec<String> = inner
            .iter()
            .take(3)
            .map(|p| format!("{} {:.0}", p.name, p.seconds))
            .collect();
        println!(
            "  {} {:<28} {:>6.1} s  {}",
            if t.passed { "PASS" } else { "FAIL" },
            t.name,
            t.wall_seconds,
            top.join(", ")
        );
    }
    println!("  by phase, summed over the tests:");
    for p in &times.phases {
        println!("    {:<40} {:>3}x {:>7.1} s", p.name, p.count, p.seconds);
    }
    let path = out.join(distro).join("report.json");
    std::fs::create_dir_all(out.join(distro))?;
    std::fs::write(&path, serde_json::to_string_pretty(&times)?)?;
    println!("  written to {}", path.display());
    Ok(times)
}

/// What the VM tests run against: the medium, built or reused, and the host's VM packages.
pub struct Prepared {
    pub built: image::Output,
    pub distro: image::recipe::ImageDistro,
    pub image_time: std::time::Duration,
    /// The file the given-ZFSBootMenu test installs, or why there is none.
    pub given_zfsbootmenu: std::result::Result<PathBuf, String>,
}

/// What some VM tests need that the others do not.
pub struct Needs {
    /// The file the given-ZFSBootMenu test installs.
    pub given_zfsbootmenu: bool,
    /// virt-fw-vars, for the Secure Boot tests.
    pub secure_boot: bool,
}

impl Needs {
    /// What every VM test needs (`cargo xtask ci` runs them all).
    pub const ALL: Needs = Needs {
        given_zfsbootmenu: true,
        secure_boot: true,
    };
}

/// Installs the VM packages and builds (or reuses) the medium for `opts.distro`, and what
/// `needs` asks for besides.
pub fn prepare(opts: &image::Options, needs: Needs) -> Result<Prepared> {
    crate::host::ensure_vm_packages(needs.secure_boot)?;
    let given_test = needs.given_zfsbootmenu;
    let distro = opts.distro;
    let start = Instant::now();
    let built = image::build_image(opts)?;
    let image_time = start.elapsed();
    let given_zfsbootmenu = if given_test {
        given_zfsbootmenu(&opts.cache)
    } else {
        Err(format!("this run does not take {GIVEN_TEST}"))
    };
    eprintln!(
        "medium: {} ({})",
        built.medium.display(),
        kldload::disk::human_size(built.size)
    );
    Ok(Prepared {
        built,
        distro,
        image_time,
        given_zfsbootmenu,
    })
}

/// The variable naming the ZFSBootMenu EFI file the given-file VM test installs.
pub const GIVEN_ZFSBOOTMENU: &str = "KLDLOAD_VMTEST_GIVEN_ZFSBOOTMENU";
/// The VM test that installs the ZFSBootMenu built with another hostid: only a run that takes
/// this test builds it.
const OTHER_HOSTID_TEST: &str = "install_with_a_zfsbootmenu_built_with_another_hostid";
/// The Secure Boot VM tests (vmtests/tests/secure_boot.rs): only a run that takes one installs
/// virt-fw-vars.
const SECURE_BOOT_TESTS: [&str; 4] = [
    "secure_boot_live_medium",
    "secure_boot_install",
    "secure_boot_enroll_mok_at_first_boot",
    "secure_boot_refuses_the_medium_without_its_mok",
];
/// The VM test that installs a given file: only a run that takes it looks for one (and
/// downloads the release when none is named).
const GIVEN_TEST: &str = "install_with_a_given_zfsbootmenu_file";

/// The ZFSBootMenu EFI file a VM test installs as a file the user gives, the way users take the
/// official release: `$KLDLOAD_VMTEST_GIVEN_ZFSBOOTMENU`, else the release itself (kept in the
/// build cache, verified by its signature, downloaded when not there). Neither: the test fails
/// saying why (the download's error), rather than passing.
fn given_zfsbootmenu(cache: &Path) -> std::result::Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(GIVEN_ZFSBOOTMENU) {
        return Ok(PathBuf::from(path));
    }
    let log = crate::run::Log::new(cache.join("zfsbootmenu-release.log"))
        .map_err(|e| format!("{e:#}"))?;
    crate::image::zbm::resolve(&log, None, cache)
        .map_err(|e| format!("{e:#}; or set ${GIVEN_ZFSBOOTMENU} to a ZFSBootMenu EFI file"))
}

/// Where the VM tests put their run directories.
pub fn results_dir() -> PathBuf {
    vmtests::flow::results_root()
}

impl Prepared {
    /// The kernel, ZFS and systemd the medium installs.
    pub fn versions(&self) -> Versions {
        Versions::of(&self.built.manifest)
    }

    /// How long the medium took, and whether every phase came from the cache.
    pub fn image_time(&self) -> ImageTime {
        ImageTime {
            seconds: self.image_time.as_secs_f64(),
            cached: self.built.phases.timings.iter().all(|t| t.2),
        }
    }

    /// The environment the tests in vmtests/ read: the medium, the distro, the build's roots,
    /// the ZFSBootMenu files they install.
    pub fn env(&self, keep: bool) -> Vec<(&'static str, std::ffi::OsString)> {
        let mut env = vec![
            ("KLDLOAD_VMTEST_MEDIUM", self.built.medium.clone().into()),
            ("KLDLOAD_VMTEST_DISTRO", self.distro.name.into()),
            (
                "KLDLOAD_VMTEST_BUILDER_DIR",
                self.built.builder_dir.clone().into(),
            ),
            (
                "KLDLOAD_VMTEST_PAYLOAD_DIR",
                self.built.payload_dir.clone().into(),
            ),
            ("KLDLOAD_VMTEST_OUT", results_dir().into()),
            ("KLDLOAD_VMTEST_KEEP", if keep { "1" } else { "0" }.into()),
            (
                GIVEN_ZFSBOOTMENU,
                match &self.given_zfsbootmenu {
                    Ok(path) => path.into(),
                    Err(why) => format!("unavailable: {why}").into(),
                },
            ),
        ];
        for t in TestZfsBootMenu::ALL {
            let built = self.built.test_zfsbootmenus.iter().find(|(b, _)| *b == t);
            env.push((
                t.variable(),
                match built {
                    Some((_, path)) => path.into(),
                    None => "unavailable: built by `cargo xtask vm-test` when it runs a test \
                             that installs it"
                        .into(),
                },
            ));
        }
        env
    }
}

/// Which VM tests a run takes.
#[derive(Default)]
pub struct Selection {
    /// Keep disks and NVRAM for `vm-shell`.
    pub keep: bool,
    /// List the scenarios not marked `ci` too.
    pub all_scenarios: bool,
    /// Test names must contain one of these (none: every test).
    pub filters: Vec<String>,
    /// Only this scenario, whether or not it is marked `ci` (`vm-repro`).
    pub scenario: Option<String>,
    /// A directory of scenarios made by `vm-repro --from-report`, listed with the others.
    pub generated: Option<PathBuf>,
    /// Only the tests this nextest filter expression takes (`matrix`'s).
    pub expression: Option<String>,
}

impl Selection {
    /// Whether a filter takes the test `name` (filters are parts of test names, as nextest
    /// reads them).
    fn filtered_in(&self, name: &str) -> bool {
        self.filters.is_empty()
            || self
                .name_filters()
                .iter()
                .any(|f| name.contains(f.as_str()))
    }

    /// The filters as nextest gets them: each as given and, with its dashes as underscores,
    /// as a Rust test's name spells it (`secure-boot` takes `secure_boot_install`; scenarios
    /// keep their dashes).
    fn name_filters(&self) -> Vec<String> {
        let mut names = Vec::new();
        for f in &self.filters {
            for name in [f.clone(), f.replace('-', "_")] {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// Whether the run takes the VM test `name` (a Rust test, not a scenario), for what it needs
    /// prepared. A run with an expression (the matrix's: the main job and the ZFSBootMenu
    /// tests) takes none of the tests that need anything more than the medium.
    fn takes(&self, name: &str) -> bool {
        self.scenario.is_none() && self.expression.is_none() && self.filtered_in(name)
    }

    /// Whether the run takes the scenario `name`, marked `ci` or not.
    fn takes_scenario(&self, name: &str, ci: bool) -> bool {
        match &self.scenario {
            Some(only) => only == name,
            None if self.expression.is_some() => false,
            None => (self.all_scenarios || ci) && self.filtered_in(name),
        }
    }

    /// nextest's filter expression (`-E`): the one given, or `vm-repro`'s one scenario.
    fn expression(&self) -> Option<String> {
        (self.expression.clone()).or_else(|| {
            (self.scenario.as_ref()).map(|s| format!("binary(scenarios) and test(={s})"))
        })
    }

    /// The ZFSBootMenus built for VM tests that the tests this run takes install.
    fn test_zfsbootmenus(&self) -> Result<Vec<TestZfsBootMenu>> {
        let mut wanted = Vec::new();
        if self.takes(OTHER_HOSTID_TEST) {
            wanted.push(TestZfsBootMenu::OtherHostid);
        }
        let files = vmtests::scenario::scenario_files_in(
            &crate::project_root(),
            self.generated.as_deref(),
        )?;
        for (name, path) in files {
            // A file that does not load fails as its test, saying why.
            let Ok(scenario) = vmtests::scenario::Scenario::load(&path) else {
                continue;
            };
            if let Some(t) = scenario.zfsbootmenu
                && self.takes_scenario(&name, scenario.ci)
                && !wanted.contains(&t)
            {
                wanted.push(t);
            }
        }
        Ok(wanted)
    }
}

/// fixtures/scenarios/<scenario>.toml, or an error listing the scenarios there are.
pub(crate) fn scenario_path(scenario: &str) -> Result<PathBuf> {
    let files = vmtests::scenario::scenario_files(&crate::project_root())?;
    if let Some((_, path)) = files.iter().find(|(name, _)| name == scenario) {
        return Ok(path.clone());
    }
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    bail!(
        "no scenario {scenario:?} in fixtures/scenarios/; there are: {}",
        names.join(", ")
    )
}

/// `cargo xtask vm-repro --from-report FILE`: a user's `kldload report` made into a scenario
/// (target/vmtest/from-report/<name>.toml, said on the terminal with what it reproduces and
/// what it cannot), then run like any other; its last report step compares the VM's own
/// report with FILE.
pub fn vm_repro_from_report(opts: &image::Options, report: &Path, keep: bool) -> Result<()> {
    let text = std::fs::read_to_string(report)
        .with_context(|| format!("reading the report {}", report.display()))?;
    // The generated scenario names the report it compares with: from the project's root when
    // it is inside it (a scenario copied into fixtures/ then works in any clone), else as given.
    let absolute = std::path::absolute(report)?;
    let root = crate::project_root();
    let report = &absolute
        .strip_prefix(&root)
        .map(Path::to_path_buf)
        .unwrap_or(absolute.clone());
    let parsed: kldload::report::Report = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a report written by `kldload report`",
            report.display()
        )
    })?;
    let name = scenario_name_from_report(report);
    let generated = vmtests::from_report::generate(&parsed, &report.display().to_string())?;
    let dir = crate::project_root().join("target/vmtest/from-report");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, &generated.toml)?;
    println!("scenario {name}: {}", file.display());
    for r in &generated.reproduced {
        println!("  reproduced: {r}");
    }
    for n in &generated.not_reproduced {
        println!("  not reproduced: {n}");
    }
    if !generated.compares_facts {
        println!(
            "  compared: the boot only (it ends before a login: no report of the VM to compare \
             facts with)"
        );
    }
    vmtests::scenario::Scenario::load(&file)?;
    run_one_scenario(opts, name, keep, Some(dir))
}

/// The name `--from-report` gives the scenario it makes of the report file `report`:
/// `from-report-<its file name without extension>`, with only letters, digits and `-`.
pub(crate) fn scenario_name_from_report(report: &Path) -> String {
    let stem = report
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-");
    format!("from-report-{stem}")
}

/// Runs the one scenario `name`, marked `ci` or not; `generated`: the directory of a scenario
/// `--from-report` made.
pub(crate) fn run_one_scenario(
    opts: &image::Options,
    name: String,
    keep: bool,
    generated: Option<PathBuf>,
) -> Result<()> {
    vm_test(
        opts,
        &Selection {
            keep,
            all_scenarios: true,
            filters: vec![],
            scenario: Some(name),
            generated,
            expression: None,
        },
    )
}

/// `cargo xtask vm-repro <scenario>`: the one scenario, whether or not it is marked `ci`.
pub fn vm_repro(opts: &image::Options, scenario: &str, keep: bool) -> Result<()> {
    // A broken file is named before anything is built.
    vmtests::scenario::Scenario::load(&scenario_path(scenario)?)?;
    run_one_scenario(opts, scenario.to_string(), keep, None)
}

/// Runs the VM tests of `opts.distro` that `selection` takes.
pub fn vm_test(opts: &image::Options, selection: &Selection) -> Result<()> {
    let run = run_vm_tests(opts, selection)?;
    if !run.passed {
        bail!("VM tests failed for {}", run.times.distro);
    }
    Ok(())
}

/// What a run of VM tests did: its times and checks (also written as report.json), and
/// whether nextest saw every test pass.
pub struct TestRun {
    pub times: Times,
    pub passed: bool,
}

/// Builds (or reuses) the medium and runs the VM tests `selection` takes; an error only when
/// they could not run (the image, the host, nextest).
pub fn run_vm_tests(opts: &image::Options, selection: &Selection) -> Result<TestRun> {
    let keep = selection.keep;
    let opts = image::Options {
        test_zfsbootmenus: selection.test_zfsbootmenus()?,
        ..opts.clone()
    };
    let needs = Needs {
        given_zfsbootmenu: selection.takes(GIVEN_TEST),
        secure_boot: SECURE_BOOT_TESTS.iter().any(|t| selection.takes(t)),
    };
    let prepared = prepare(&opts, needs)?;
    let distro = prepared.distro;
    let out = results_dir();
    let started = Started::now();
    let status = std::process::Command::new("cargo")
        .args([
            "nextest",
            "run",
            "--package",
            "vmtests",
            "--profile",
            "vm",
            "--run-ignored",
            "only",
            "--no-capture",
        ])
        .args(
            selection
                .expression()
                .iter()
                .flat_map(|e| ["-E", e.as_str()]),
        )
        .args(selection.name_filters())
        .current_dir(crate::project_root())
        .envs(prepared.env(keep))
        .env("KLDLOAD_VMTEST_RUN", &started.id)
        .env(
            "KLDLOAD_VMTEST_SCENARIOS",
            if selection.all_scenarios { "all" } else { "ci" },
        )
        .envs(
            (selection.generated.iter())
                .map(|d| (vmtests::scenario::GENERATED_SCENARIOS_ENV, d.as_os_str())),
        )
        .status()
        .context("cargo nextest (cargo install --locked cargo-nextest)")?;
    let times = report_times(
        &out,
        distro.name,
        prepared.versions(),
        started,
        prepared.image_time(),
    )?;
    Ok(TestRun {
        times,
        passed: status.success(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_versions_are_its_payloads_kernel_zfs_and_systemd() {
        let manifest = image::payload::Manifest {
            distro: "debian-14".into(),
            suite: "forky".into(),
            kernel: "7.2.12+deb14-amd64".into(),
            zfs: "2.4.4".into(),
            module_signer: "kldload build x module signing key".into(),
            packages: vec![
                ("systemd-cron".into(), "2.5.1-1".into()),
                ("systemd".into(), "262-1".into()),
            ],
            size: 1,
            sha256: String::new(),
        };
        let v = Versions::of(&manifest);
        assert_eq!(
            v.to_string(),
            "kernel 7.2.12+deb14-amd64, ZFS 2.4.4, systemd 262-1"
        );
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["systemd"], "262-1");
    }

    /// Every test in vmtests/tests/secure_boot.rs is in the list that makes a run install
    /// virt-fw-vars: one left out would fail on a fresh machine only.
    #[test]
    fn every_secure_boot_vm_test_is_known_to_need_it() {
        let source = include_str!("../../vmtests/tests/secure_boot.rs");
        let tests: Vec<&str> = source
            .split("#[test]")
            .skip(1)
            .filter_map(|rest| rest.split("fn ").nth(1)?.split('(').next())
            .collect();
        assert!(!tests.is_empty());
        let mut known = SECURE_BOOT_TESTS.to_vec();
        let mut found = tests.clone();
        known.sort_unstable();
        found.sort_unstable();
        assert_eq!(known, found);
    }

    #[test]
    fn a_run_directory_names_its_test() {
        assert_eq!(
            test_name(Path::new(
                "/t/debian-13/20261126-081242-scenario-hostid-mismatch"
            )),
            "scenario-hostid-mismatch"
        );
        assert_eq!(
            test_name(Path::new("/t/20261126-081242-install")),
            "install"
        );
    }

    /// A ZFSBootMenu built for VM tests is built only for a run that takes a test installing
    /// it: a filter, `--all-scenarios` for a scenario not marked `ci`, or `vm-repro`.
    #[test]
    fn test_zfsbootmenus_are_built_for_the_tests_a_run_takes() {
        let selection = |filters: &[&str], all_scenarios: bool, scenario: Option<&str>| Selection {
            keep: false,
            all_scenarios,
            filters: filters.iter().map(|f| f.to_string()).collect(),
            scenario: scenario.map(String::from),
            generated: None,
            expression: None,
        };
        let wanted = |s: Selection| s.test_zfsbootmenus().unwrap();
        use TestZfsBootMenu::{OtherHostid, Zfs21};
        assert_eq!(wanted(selection(&[], false, None)), [OtherHostid]);
        assert_eq!(wanted(selection(&[], true, None)), [OtherHostid, Zfs21]);
        assert_eq!(wanted(selection(&["mismatch"], false, None)), []);
        assert_eq!(wanted(selection(&["mismatch"], true, None)), [Zfs21]);
        assert_eq!(wanted(selection(&["install_and_boot"], true, None)), []);
        assert_eq!(
            wanted(selection(&["another_hostid"], false, None)),
            [OtherHostid]
        );
        assert_eq!(
            wanted(selection(&["another-hostid"], false, None)),
            [OtherHostid]
        );
        let dashed = selection(&["secure-boot", "fresh-nvram"], false, None);
        assert_eq!(
            dashed.name_filters(),
            ["secure-boot", "secure_boot", "fresh-nvram", "fresh_nvram"]
        );
        assert!(dashed.takes("secure_boot_install") && dashed.takes("secure-boot-x"));
        let repro = selection(&[], false, Some("zfsbootmenu-feature-mismatch"));
        assert_eq!(wanted(repro), [Zfs21]);
        assert_eq!(wanted(selection(&[], false, Some("fresh-nvram"))), []);
    }

    #[test]
    fn scenario_steps_are_totalled_by_kind() {
        assert_eq!(
            phase_kind("step 3 (run `zgenhostid -f 0x12345678 && hostid`)"),
            "scenario step: run"
        );
        assert_eq!(
            phase_kind("step 1 (install, killed at \"x\")"),
            "scenario step: install"
        );
        assert_eq!(phase_kind("menu to login"), "menu to login");
    }
}
