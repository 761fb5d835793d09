//! `cargo xtask vm-test <distro>`: host packages (QEMU, OVMF), the medium (built or reused),
//! then the VM scenarios in vmtests/ through nextest's `vm` profile, one VM at a time, and a
//! summary of the checks and of each phase's wall time.

use crate::image;
use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use vmtests::env::{Scenarios, VmTestEnv};
use vmtests::needs::Need;
use vmtests::scenario::Scenario;
use vmtests::test_update::UpdateFrom;
use vmtests::test_zbm::{GivenZfsBootMenu, TestZfsBootMenu};

/// The reports of the run directories the `vm-test` run `run_id` made, in the order they
/// started (each run adds its directory to the run's list: `vmtests::run::runs_of`).
fn reports_of(out: &Path, run_id: &str) -> Vec<PathBuf> {
    (vmtests::run::runs_of(out, run_id).into_iter())
        .map(|dir| dir.join("report.json"))
        .filter(|r| r.is_file())
        .collect()
}

/// When a run of VM tests began, and its id (a timestamp and the process): its tests list
/// their run directories under it, and their shared state tells it from an earlier run's.
pub struct Started {
    pub clock: Instant,
    pub id: String,
    /// When it began, UTC, as the timing page shows it (`2026-12-06 07:12`).
    pub when: String,
}

impl Started {
    pub fn now() -> Started {
        let at = std::time::SystemTime::now();
        let epoch = at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let when = chrono::DateTime::from_timestamp(epoch as i64, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default();
        Started {
            clock: Instant::now(),
            id: format!("{epoch}-{}", std::process::id()),
            when,
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
    phases: Vec<crate::timings::PhaseTime>,
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
    /// The VMs' accelerator (`tcg`, `kvm`).
    pub accel: String,
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

/// Prints each report of the run `started` (its checks and phases), then where the run's
/// time went, per test and per phase, and writes that to target/vmtest/<distro>/report.json.
pub fn report_times(
    out: &Path,
    distro: &str,
    versions: Versions,
    started: &Started,
    image: ImageTime,
) -> Result<Times> {
    let mut tests = Vec::new();
    for path in reports_of(out, &started.id) {
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
            accel: r.accel,
            dir,
        });
    }
    let mut totals = Vec::new();
    for t in &tests {
        let inner = vmtests::report::innermost(&t.phases);
        let named: f64 = inner.iter().map(|p| p.seconds).sum();
        let unnamed = (
            "(in no phase of its own)".to_string(),
            (t.wall_seconds - named).max(0.0),
        );
        let inner = inner.into_iter().map(|p| (phase_kind(&p.name), p.seconds));
        for (kind, seconds) in inner.chain([unnamed]) {
            crate::timings::PhaseTime::add_to(&mut totals, &kind, seconds);
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
    /// The update sticks the run's tests attach (`vmtests::test_update`).
    pub update_sticks: Vec<(UpdateFrom, PathBuf)>,
}

/// What some VM tests need that the others do not (`vmtests::needs`).
#[derive(Default)]
pub struct Needs {
    /// The file the given-ZFSBootMenu test installs.
    pub given_zfsbootmenu: bool,
    /// virt-fw-vars, for the Secure Boot tests.
    pub secure_boot: bool,
    /// Updates the tests install, each built (`cargo xtask build-update`) and put on a stick.
    pub updates: Vec<UpdateFrom>,
}

/// Installs the VM packages and builds (or reuses) the medium for `opts.distro`, and what
/// `needs` asks for besides.
pub fn prepare(opts: &image::Options, needs: Needs) -> Result<Prepared> {
    crate::host::ensure_vm_packages(needs.secure_boot)?;
    let distro = opts.distro;
    let start = Instant::now();
    let built = image::build_image(opts)?;
    let image_time = start.elapsed();
    let given_zfsbootmenu = if needs.given_zfsbootmenu {
        given_zfsbootmenu(&opts.cache)
    } else {
        Err("this run takes no test that installs a given ZFSBootMenu".to_string())
    };
    eprintln!(
        "medium: {} ({})",
        built.medium.display(),
        kldload::disk::human_size(built.size)
    );
    let mut update_sticks = Vec::new();
    for &from in &needs.updates {
        let update = image::update::build_update_for(
            &image::update::UpdateOptions {
                image: opts.clone(),
                from,
                out: None,
            },
            &built,
        )?;
        image::update::print_summary(&update);
        update_sticks.push((from, image::update::stick_image(&update)?));
    }
    Ok(Prepared {
        built,
        distro,
        image_time,
        given_zfsbootmenu,
        update_sticks,
    })
}

/// The ZFSBootMenu EFI file a VM test installs as a file the user gives, the way users take the
/// official release: `$KLDLOAD_VMTEST_GIVEN_ZFSBOOTMENU`, else the release itself (kept in the
/// build cache, verified by its signature, downloaded when not there). Neither: the test fails
/// saying why (the download's error), rather than passing.
fn given_zfsbootmenu(cache: &Path) -> std::result::Result<PathBuf, String> {
    let variable = vmtests::env::GIVEN_ZFSBOOTMENU;
    if let Some(path) = std::env::var_os(variable) {
        return Ok(PathBuf::from(path));
    }
    let log = crate::run::Log::new(cache.join("zfsbootmenu-release.log"))
        .map_err(|e| format!("{e:#}"))?;
    crate::image::zbm::resolve(&log, None, cache)
        .map_err(|e| format!("{e:#}; or set ${variable} to a ZFSBootMenu EFI file"))
}

/// Where the VM tests put their run directories.
pub fn results_dir() -> PathBuf {
    (vmtests::env::VmTestEnv::from_env().unwrap_or_default()).results_root()
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

    /// The environment the tests in vmtests/ read (`vmtests::env`): the medium, the distro,
    /// the build's roots, the ZFSBootMenu files they install, and the run's own settings.
    pub fn vm_test_env(&self, selection: &Selection, run_id: &str) -> Result<VmTestEnv> {
        use vmtests::env::Provided;
        let provided = |r: &std::result::Result<PathBuf, String>| match r {
            Ok(path) => Provided::File(path.clone()),
            Err(why) => Provided::Unavailable(why.clone()),
        };
        Ok(VmTestEnv {
            medium: Some(self.built.medium.clone()),
            distro: self.distro.installs()?,
            builder_dir: Some(self.built.builder_dir.clone()),
            payload_dir: Some(self.built.payload_dir.clone()),
            out: Some(results_dir()),
            keep: selection.keep,
            run_id: Some(run_id.to_string()),
            scenarios: selection.scenarios(),
            generated_scenarios: selection.generated.clone(),
            given_zfsbootmenu: provided(&self.given_zfsbootmenu),
            test_zfsbootmenus: TestZfsBootMenu::ALL
                .into_iter()
                .map(|t| {
                    let built = self.built.test_zfsbootmenus.iter().find(|(b, _)| *b == t);
                    let p = match built {
                        Some((_, path)) => Provided::File(path.clone()),
                        None => Provided::Unavailable(
                            "built by `cargo xtask vm-test` when it runs a test that installs it"
                                .into(),
                        ),
                    };
                    (t, p)
                })
                .collect(),
            update_sticks: UpdateFrom::ALL
                .into_iter()
                .map(|u| {
                    let made = self.update_sticks.iter().find(|(b, _)| *b == u);
                    let p = match made {
                        Some((_, path)) => Provided::File(path.clone()),
                        None => Provided::Unavailable(
                            "made by `cargo xtask vm-test` when it runs a test that installs it"
                                .into(),
                        ),
                    };
                    (u, p)
                })
                .collect(),
        })
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

    /// nextest's filter expression (`-E`): the one given, or `vm-repro`'s one scenario.
    fn expression(&self) -> Option<String> {
        (self.expression.clone()).or_else(|| {
            (self.scenario.as_ref()).map(|s| format!("binary(scenarios) and test(={s})"))
        })
    }

    /// Which scenario files the scenarios binary lists for this selection.
    fn scenarios(&self) -> Scenarios {
        if self.all_scenarios {
            Scenarios::All
        } else {
            Scenarios::Ci
        }
    }

    /// nextest's arguments for `suite` and this selection, the same for `list` and `run`.
    fn nextest_args(&self, suite: Suite) -> Vec<String> {
        let scope: &[&str] = match suite {
            Suite::VmTests => &[
                "--package",
                "vmtests",
                "--profile",
                "vm",
                "--run-ignored",
                "only",
            ],
            Suite::Workspace => &["--workspace", "--profile", "ci", "--run-ignored", "all"],
        };
        let mut args: Vec<String> = scope.iter().map(|a| a.to_string()).collect();
        if let Some(e) = self.expression() {
            args.extend(["-E".to_string(), e]);
        }
        args.extend(self.name_filters());
        args
    }
}

/// A test nextest takes in a run: its binary (`vmtests::install`, `vmtests::scenarios`, ...)
/// and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenTest {
    pub binary: String,
    pub name: String,
}

/// The tests of the vmtests package that a nextest run with `args` takes, as `cargo nextest
/// list` says: nextest's own filters and profile decide, so what a run prepares is exactly what
/// its tests need.
fn taken_vm_tests(args: &[String], env: &VmTestEnv) -> Result<Vec<TakenTest>> {
    let out = std::process::Command::new("cargo")
        .args(["nextest", "list", "--message-format", "json"])
        .args(args)
        .current_dir(crate::project_root())
        .envs(env.to_vars())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cargo nextest list (cargo install --locked cargo-nextest)")?;
    ensure!(out.status.success(), "cargo nextest list failed");
    taken_in_listing(&String::from_utf8_lossy(&out.stdout))
}

/// The vmtests tests a `cargo nextest list --message-format json` listing says match.
fn taken_in_listing(json: &str) -> Result<Vec<TakenTest>> {
    let listing: serde_json::Value =
        serde_json::from_str(json).context("cargo nextest list's JSON")?;
    let suites = listing["rust-suites"]
        .as_object()
        .context("cargo nextest list: no rust-suites")?;
    let mut taken = Vec::new();
    for (binary, suite) in suites {
        if suite["package-name"] != "vmtests" {
            continue;
        }
        for (name, case) in suite["testcases"].as_object().into_iter().flatten() {
            if case["filter-match"]["status"] == "matches" {
                taken.push(TakenTest {
                    binary: binary.clone(),
                    name: name.clone(),
                });
            }
        }
    }
    Ok(taken)
}

/// What the taken tests need besides the medium: the Rust tests' by `vmtests::needs`, the
/// scenarios' by their files.
fn needs_of(
    taken: &[TakenTest],
    generated: Option<&Path>,
) -> Result<(Needs, Vec<TestZfsBootMenu>)> {
    let mut needs = Needs::default();
    let mut zfsbootmenus = Vec::new();
    let mut want = |t: TestZfsBootMenu| {
        if !zfsbootmenus.contains(&t) {
            zfsbootmenus.push(t);
        }
    };
    let scenario_files = vmtests::scenario::scenario_files_in(&crate::project_root(), generated)?;
    for test in taken {
        if test.binary == "vmtests::scenarios" {
            let file = scenario_files.iter().find(|(name, _)| *name == test.name);
            // A file that does not load fails as its test, saying why.
            if let Some(Ok(scenario)) = file.map(|(_, path)| Scenario::load(path)) {
                match scenario.zfsbootmenu {
                    Some(GivenZfsBootMenu::UsersOwn) => needs.given_zfsbootmenu = true,
                    Some(GivenZfsBootMenu::Test(t)) => want(t),
                    None => {}
                }
                if let Some(from) = scenario.update
                    && !needs.updates.contains(&from)
                {
                    needs.updates.push(from);
                }
            }
            continue;
        }
        for need in vmtests::needs::of(&test.name) {
            match need {
                Need::SecureBootTools => needs.secure_boot = true,
                Need::GivenZfsBootMenu => needs.given_zfsbootmenu = true,
                Need::TestZfsBootMenu(t) => want(t),
            }
        }
    }
    Ok((needs, zfsbootmenus))
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
pub fn vm_repro_from_report(
    opts: &image::Options,
    report: &Path,
    keep: bool,
    expected: Option<vmtests::scenario::Symptom>,
) -> Result<TestRun> {
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
    let source = report.display().to_string();
    let parsed = vmtests::from_report::read_report(&text, &source)?;
    let name = scenario_name_from_report(report);
    // It fails only on what the report says (a pool name kldload cannot make, ...).
    let generated = vmtests::from_report::generate(&parsed, &source)
        .map_err(|e| vmtests::from_report::BadReport(format!("{e:#}")))?;
    if let Some(expected) = expected {
        anyhow::ensure!(
            generated.symptom == expected,
            "the rebuild from {} would end in `{}`, but the machine it was taken on showed \
             `{}`: the report lacks (or the rebuild does not reproduce) the fact that makes \
             that machine fail",
            report.display(),
            generated.symptom.name(),
            expected.name()
        );
    }
    let dir = crate::project_root().join("target/vmtest/from-report");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("{name}.toml"));
    generated.scenario.write(&file)?;
    println!("scenario {name}: {}", file.display());
    for r in &generated.reproduced {
        println!("  reproduced: {r}");
    }
    for n in &generated.not_reproduced {
        println!("  not reproduced: {n}");
    }
    let (made, not) = vmtests::report_fields::counts();
    println!(
        "  the report's fields: {made} reproduced, {not} not (each with why in the scenario's \
         description), of {}",
        made + not
    );
    println!("  ends in: {}", generated.symptom.name());
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
) -> Result<TestRun> {
    run_vm_tests(
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
    run_one_scenario(opts, scenario.to_string(), keep, None)?.passed_or_error()
}

/// Runs the VM tests of `opts.distro` that `selection` takes.
pub fn vm_test(opts: &image::Options, selection: &Selection) -> Result<()> {
    run_vm_tests(opts, selection)?.passed_or_error()
}

/// What a run of VM tests did: its times and checks (also written as report.json), and
/// whether nextest saw every test pass.
pub struct TestRun {
    /// The run directories its tests made, in the order they started.
    pub runs: Vec<PathBuf>,
    pub times: Times,
    pub passed: bool,
}

impl TestRun {
    /// An error unless every test passed.
    pub fn passed_or_error(&self) -> Result<()> {
        if !self.passed {
            bail!("VM tests failed for {}", self.times.distro);
        }
        Ok(())
    }

    /// The directory of the run of scenario `name` (its runs are `<timestamp>-scenario-<name>`).
    pub fn scenario_dir(&self, name: &str) -> Option<&Path> {
        let suffix = format!("-scenario-{name}");
        (self.runs.iter())
            .find(|d| d.to_string_lossy().ends_with(&suffix))
            .map(PathBuf::as_path)
    }
}

/// Which tests one nextest run takes: the VM tests alone (`vm-test`, `vm-repro`, `matrix`), or
/// the whole workspace's tests with them, in one run whose summary and JUnit report cover them
/// all (`ci`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    VmTests,
    Workspace,
}

/// Builds (or reuses) the medium and runs the VM tests `selection` takes; an error only when
/// they could not run (the image, the host, nextest).
pub fn run_vm_tests(opts: &image::Options, selection: &Selection) -> Result<TestRun> {
    run_tests(opts, selection, Suite::VmTests)
}

/// Builds (or reuses) the medium and runs `suite` with the VM tests `selection` takes; then
/// prints and writes where their time went. An error only when they could not run.
pub fn run_tests(opts: &image::Options, selection: &Selection, suite: Suite) -> Result<TestRun> {
    let args = selection.nextest_args(suite);
    // What the scenarios binary lists depends on the environment.
    let listing = VmTestEnv {
        scenarios: selection.scenarios(),
        generated_scenarios: selection.generated.clone(),
        ..Default::default()
    };
    let taken = taken_vm_tests(&args, &listing)?;
    let (needs, test_zfsbootmenus) = needs_of(&taken, selection.generated.as_deref())?;
    let opts = image::Options {
        test_zfsbootmenus,
        ..opts.clone()
    };
    let prepared = prepare(&opts, needs)?;
    let distro = prepared.distro;
    let out = results_dir();
    eprintln!("VM test results (transcripts, reports): {}", out.display());
    let started = Started::now();
    let env = prepared.vm_test_env(selection, &started.id)?;

    let mut nextest = std::process::Command::new("cargo");
    nextest.args(["nextest", "run"]).args(&args);
    if suite == Suite::VmTests {
        // One VM test at a time: its table of checks and phases as it ends.
        nextest.arg("--no-capture");
    }
    let status = nextest
        .current_dir(crate::project_root())
        .envs(env.to_vars())
        .status()
        .context("cargo nextest (cargo install --locked cargo-nextest)")?;
    let times = report_times(
        &out,
        distro.name,
        prepared.versions(),
        &started,
        prepared.image_time(),
    )?;
    let page = crate::project_root().join("docs/timings.md");
    let measured: Vec<crate::timings::Measured> = (times.tests.iter())
        .map(|t| crate::timings::Measured {
            name: &t.name,
            passed: t.passed,
            wall_seconds: t.wall_seconds,
            phases: &t.phases,
            accel: &t.accel,
        })
        .collect();
    let run = crate::timings::RunMeasured {
        when: started.when.clone(),
        image_seconds: times.image.seconds,
        image_cached: times.image.cached,
        wall_seconds: times.wall_seconds,
    };
    let grown = crate::timings::record(&out, &times.distro, run, &measured, &page)?;
    println!("  timing page: {}", page.display());
    if grown.is_empty() {
        println!("  no phase grew by more than 20% since its previous run here");
    } else {
        println!("  grew by more than 20% since the previous run here:");
        for g in &grown {
            println!("    {g}");
        }
    }
    Ok(TestRun {
        runs: vmtests::run::runs_of(&out, &started.id),
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

    fn taken(binary: &str, name: &str) -> TakenTest {
        TakenTest {
            binary: format!("vmtests::{binary}"),
            name: name.into(),
        }
    }

    /// What is prepared follows the tests nextest takes: a ZFSBootMenu built for VM tests only
    /// for a run that takes a test installing it (a Rust test by `vmtests::needs`, a scenario
    /// by its file), the Secure Boot tools and the given file (a Rust test's or a scenario's)
    /// likewise.
    #[test]
    fn a_run_prepares_what_the_tests_it_takes_need() {
        use TestZfsBootMenu::{OtherHostid, Zfs21};
        let needs = |t: &[TakenTest]| needs_of(t, None).unwrap();
        let (n, z) = needs(&[taken("install", "install_and_boot")]);
        assert!(!n.secure_boot && !n.given_zfsbootmenu && z.is_empty());
        let (_, z) = needs(&[taken(
            "install",
            "install_with_a_zfsbootmenu_built_with_another_hostid",
        )]);
        assert_eq!(z, [OtherHostid]);
        let (_, z) = needs(&[
            taken("scenarios", "zfsbootmenu-feature-mismatch"),
            taken("scenarios", "fresh-nvram"),
        ]);
        assert_eq!(z, [Zfs21]);
        let (n, z) = needs(&[
            taken("secure_boot", "secure_boot_install"),
            taken("install", "install_with_a_given_zfsbootmenu_file"),
        ]);
        assert!(n.secure_boot && n.given_zfsbootmenu && z.is_empty());
        // fixtures/scenarios/layouts-mirror.toml installs the given file.
        let (n, z) = needs(&[taken("scenarios", "layouts-mirror")]);
        assert!(!n.secure_boot && n.given_zfsbootmenu && z.is_empty());
    }

    /// nextest's JSON listing: the vmtests tests that match, of every binary.
    #[test]
    fn the_listing_gives_the_matching_vm_tests() {
        let json = r#"{"rust-build-meta": {}, "test-count": 3, "rust-suites": {
            "vmtests::install": {"package-name": "vmtests", "testcases": {
                "install_and_boot": {"ignored": true, "filter-match": {"status": "matches"}},
                "install_with_a_zfsbootmenu_built_with_another_hostid": {"ignored": true,
                    "filter-match": {"status": "mismatch", "reason": "default-filter"}}}},
            "vmtests::scenarios": {"package-name": "vmtests", "testcases": {
                "fresh-nvram": {"ignored": true, "filter-match": {"status": "matches"}}}},
            "kldload": {"package-name": "kldload", "testcases": {
                "a": {"ignored": false, "filter-match": {"status": "matches"}}}}}}"#;
        assert_eq!(
            taken_in_listing(json).unwrap(),
            [
                taken("install", "install_and_boot"),
                taken("scenarios", "fresh-nvram")
            ]
        );
    }

    #[test]
    fn filters_are_given_with_dashes_and_underscores() {
        let dashed = Selection {
            filters: vec!["secure-boot".into(), "fresh-nvram".into()],
            ..Default::default()
        };
        assert_eq!(
            dashed.name_filters(),
            ["secure-boot", "secure_boot", "fresh-nvram", "fresh_nvram"]
        );
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
