//! `cargo xtask matrix [DISTRO...]`: the install matrix as its users read it. For each distro,
//! one after another: the medium (built or reused), the main job (install_and_boot, every
//! check) and the ZFSBootMenu tests; then one table, distros as columns and checks and tests as
//! rows, each cell linking the run's transcript and report, with the kernel, ZFS and systemd
//! each distro ran and its phase times. Written as target/vmtest/matrix.md and matrix.json,
//! with a JUnit file per distro (target/vmtest/<distro>/junit.xml).
//!
//! A distro whose image does not build is a column too: "zfs does not build for kernel X" when
//! DKMS could not build ZFS for its kernel (`image::builder::ZfsDoesNotBuild`), else the
//! error's first line. A distro whose tests ran and failed says how many failed and the first
//! one's error, with the line of its console that says what went wrong (`vmtests::console::
//! telltale`): "failed" alone told the first run's reader nothing.

use crate::image::builder::ZfsDoesNotBuild;
use crate::image::{self, recipe::ImageDistro};
use crate::vmtest::{self, Selection, TestRun, Versions};
use anyhow::{Result, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A column of the matrix: a distro build-image makes a medium for, or one kldload only plans.
#[derive(Debug, Clone, Copy)]
pub enum MatrixDistro {
    Image(ImageDistro),
    /// rocky-9 and freebsd-14: kldload plans their installs from a mirror the user names, but
    /// no such mirror is reachable where it is developed, so there is no medium to boot and
    /// their plans are proven by the golden tests only (installer/tests/golden.rs).
    PlanOnly(&'static str),
}

/// The distros kldload plans but builds no medium for.
pub const PLAN_ONLY: [&str; 2] = ["rocky-9", "freebsd-14"];

impl MatrixDistro {
    /// A distro named on the command line: one build-image knows, else a plan-only one.
    pub fn find(name: &str) -> Result<MatrixDistro> {
        if let Some(plan_only) = PLAN_ONLY.iter().find(|d| **d == name) {
            return Ok(MatrixDistro::PlanOnly(plan_only));
        }
        ImageDistro::find(name)
            .map(MatrixDistro::Image)
            .map_err(|e| anyhow::anyhow!("{e}; plan only: {}", PLAN_ONLY.join(", ")))
    }

    pub fn name(&self) -> &'static str {
        match self {
            MatrixDistro::Image(d) => d.name,
            MatrixDistro::PlanOnly(name) => name,
        }
    }
}

/// A plan-only distro's column: why it has no VM tests, and what proves its plan.
fn skipped(distro: &str) -> String {
    format!(
        "skipped: plan only (kldload builds no {distro} medium: no {distro} mirror is reachable \
         where it is developed; its plans are checked by installer/tests/golden.rs)"
    )
}

/// The tests the matrix runs on each distro: the main job and every ZFSBootMenu test.
const TESTS: &str = "(binary(install) and test(=install_and_boot)) or binary(zbm)";

/// The main job's run directory name (its checks become rows of their own).
const MAIN_JOB: &str = "install";

/// What became of one distro.
#[derive(Debug, Serialize, Clone)]
pub struct Column {
    pub distro: String,
    /// `passed`; `failed (N of M tests); TEST: ERROR; the console said: LINE`; `zfs does not
    /// build for kernel X`; or why nothing ran.
    pub outcome: String,
    pub versions: Option<Versions>,
    pub image_seconds: Option<f64>,
    pub image_cached: Option<bool>,
    pub tests_seconds: Option<f64>,
    /// The main job's phases (live boot, install, firmware to menu, ...): seconds.
    pub phases: Vec<(String, f64)>,
    /// Relative to target/vmtest/.
    pub junit: Option<String>,
}

impl Column {
    /// A column whose tests did not run, for `outcome`'s reason.
    fn without_run(distro: &str, outcome: String) -> Column {
        Column {
            distro: distro.to_string(),
            outcome,
            versions: None,
            image_seconds: None,
            image_cached: None,
            tests_seconds: None,
            phases: Vec::new(),
            junit: None,
        }
    }
}

/// One row's result on one distro.
#[derive(Debug, Serialize, Clone, PartialEq)]
pub struct Cell {
    pub passed: bool,
    pub detail: String,
    /// The run's transcript and report, relative to target/vmtest/.
    pub transcript: String,
    pub report: String,
}

/// The whole table, as matrix.json holds it.
#[derive(Debug, Serialize)]
pub struct Matrix {
    pub columns: Vec<Column>,
    /// Row name -> distro -> cell, rows in the order first seen.
    pub rows: Vec<(String, BTreeMap<String, Cell>)>,
}

/// Runs the matrix over `distros` (each with `opts_for`'s options) and writes the table.
/// Fails when any distro that has a medium did not pass, after the table is written.
pub fn matrix(
    distros: &[MatrixDistro],
    opts_for: impl Fn(ImageDistro) -> image::Options,
) -> Result<()> {
    let out = vmtest::results_dir();
    let mut columns = Vec::new();
    let mut runs = Vec::new();
    let junit = crate::project_root().join("target/nextest/vm/junit.xml");
    let mut seen = Vec::new();
    for distro in distros {
        // `debian` and `debian-13` are one distro: one column.
        if seen.contains(&distro.name()) {
            continue;
        }
        seen.push(distro.name());
        let distro = match distro {
            MatrixDistro::Image(d) => d,
            MatrixDistro::PlanOnly(name) => {
                let column = Column::without_run(name, skipped(name));
                eprintln!("matrix: {name}: {}", column.outcome);
                // Visible in a GitHub job's annotations, not only in its log.
                if std::env::var_os("GITHUB_ACTIONS").is_some() {
                    println!("::notice title={name}::{}", column.outcome);
                }
                columns.push(column);
                continue;
            }
        };
        eprintln!("matrix: {}", distro.name);
        // So a run that writes none leaves none of the last distro's to be taken for its own.
        let _ = std::fs::remove_file(&junit);
        let selection = Selection {
            expression: Some(TESTS.into()),
            ..Selection::default()
        };
        let result = vmtest::run_vm_tests(&opts_for(*distro), &selection);
        let column = column(distro.name, &result, &junit, &out);
        if let Ok(run) = result {
            runs.push(run);
        }
        eprintln!("matrix: {}: {}", distro.name, column.outcome);
        columns.push(column);
    }
    let matrix = Matrix {
        rows: rows(&runs, &out),
        columns,
    };
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("matrix.json"),
        serde_json::to_string_pretty(&matrix)?,
    )?;
    std::fs::write(out.join("matrix.md"), markdown(&matrix))?;
    println!("{}", markdown(&matrix));
    println!(
        "written to {} and {}",
        out.join("matrix.md").display(),
        out.join("matrix.json").display()
    );
    let failed: Vec<&str> = (matrix.columns.iter())
        .filter(|c| c.outcome != "passed" && !c.outcome.starts_with("skipped"))
        .map(|c| c.distro.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("the matrix did not pass on {}", failed.join(", "));
    }
    Ok(())
}

/// A distro's column from its run (or why it did not run), its JUnit file (`junit`, nextest's)
/// kept beside its runs.
fn column(distro: &str, result: &Result<TestRun>, junit: &Path, out: &Path) -> Column {
    let run = match result {
        Ok(run) => run,
        Err(e) => return Column::without_run(distro, why_not(e)),
    };
    let mut column = Column::without_run(distro, String::new());
    column.outcome = if run.passed {
        "passed".into()
    } else {
        what_failed(&run.times.tests)
    };
    column.versions = Some(run.times.versions.clone());
    column.image_seconds = Some(run.times.image.seconds);
    column.image_cached = Some(run.times.image.cached);
    column.tests_seconds = Some(run.times.wall_seconds);
    if let Some(main) = run.times.tests.iter().find(|t| t.name == MAIN_JOB) {
        column.phases = vmtests::report::innermost(&main.phases)
            .into_iter()
            .map(|p| (p.name.clone(), p.seconds))
            .collect();
    }
    let kept = out.join(distro).join("junit.xml");
    if std::fs::copy(junit, &kept).is_ok() {
        column.junit = Some(relative(&kept, out));
    }
    column
}

/// Why a distro's tests did not run: "zfs does not build for kernel X" when that was it, else
/// the error's first line.
fn why_not(e: &anyhow::Error) -> String {
    match e.chain().find_map(|c| c.downcast_ref::<ZfsDoesNotBuild>()) {
        Some(z) => z.short(),
        None => format!(
            "did not run: {}",
            format!("{e:#}").lines().next().unwrap_or_default()
        ),
    }
}

/// A failed distro's outcome: how many tests failed, and the first one's first error (the
/// main job's if it failed) with what its console said went wrong, e.g. `failed (8 of 8
/// tests); install: timed out after 120s waiting for "ROOT/default" on the console; the
/// console said: emergency shell: unable to load ZFS kernel modules`.
fn what_failed(tests: &[vmtest::TestTimes]) -> String {
    let mut failed: Vec<&vmtest::TestTimes> = tests.iter().filter(|t| !t.passed).collect();
    failed.sort_by_key(|t| (t.name != MAIN_JOB, t.name.clone()));
    let Some(first) = failed.first() else {
        // nextest failed, but every report passed: a test that wrote none.
        return "failed (a test wrote no report; see its JUnit file)".into();
    };
    // Errors may quote the console: its escape sequences stay out of matrix.md.
    let first_line = |text: &str| {
        vmtests::console::plain_text(text.lines().next().unwrap_or_default()).replace('\x1b', "")
    };
    let why = match (&first.error, first.checks.iter().find(|c| !c.passed)) {
        (Some(error), _) => first_line(error),
        (None, Some(check)) => format!("{}: {}", check.name, first_line(&check.detail)),
        (None, None) => "no checks ran".into(),
    };
    let console = std::fs::read(first.dir.join("serial.log"))
        .ok()
        .and_then(|bytes| vmtests::console::telltale(&String::from_utf8_lossy(&bytes)))
        .map(|line| format!("; the console said: {line}"))
        .unwrap_or_default();
    format!(
        "failed ({} of {} tests); {}: {why}{console}",
        failed.len(),
        tests.len(),
        first.name
    )
}

/// The rows: each main-job check on its own, then each test, in the order the runs list them.
fn rows(runs: &[TestRun], out: &Path) -> Vec<(String, BTreeMap<String, Cell>)> {
    let mut rows: Vec<(String, BTreeMap<String, Cell>)> = Vec::new();
    let mut put = |row: String, distro: &str, cell: Cell| {
        match rows.iter_mut().find(|(name, _)| *name == row) {
            Some((_, cells)) => {
                cells.insert(distro.to_string(), cell);
            }
            None => rows.push((row, BTreeMap::from([(distro.to_string(), cell)]))),
        };
    };
    for run in runs {
        let distro = &run.times.distro;
        let mut tests: Vec<&vmtest::TestTimes> = run.times.tests.iter().collect();
        // The main job first; then the tests by name.
        tests.sort_by_key(|t| (t.name != MAIN_JOB, t.name.clone()));
        for t in tests {
            let links = |passed: bool, detail: String| Cell {
                passed,
                detail,
                transcript: relative(&t.dir.join("serial.log"), out),
                report: relative(&t.dir.join("report.json"), out),
            };
            if t.name == MAIN_JOB {
                for c in &t.checks {
                    put(
                        format!("main job: {}", c.name),
                        distro,
                        links(c.passed, c.detail.clone()),
                    );
                }
            }
            let failed: Vec<&str> = (t.checks.iter())
                .filter(|c| !c.passed)
                .map(|c| c.name.as_str())
                .collect();
            let detail = if failed.is_empty() {
                format!("{} checks, {:.0} s", t.checks.len(), t.wall_seconds)
            } else {
                format!("failed: {}", failed.join("; "))
            };
            put(format!("test: {}", t.name), distro, links(t.passed, detail));
        }
    }
    rows
}

/// `path` relative to `base` when it is inside it (links in matrix.md work from its directory).
fn relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| PathBuf::from(path))
        .display()
        .to_string()
}

/// The table as Markdown: a column per distro; its outcome, versions and times first, then a
/// row per check and test, each cell PASS or FAIL linking the transcript, with the report.
pub fn markdown(m: &Matrix) -> String {
    let mut t = String::from("# kldload install matrix\n\n| |");
    for c in &m.columns {
        t.push_str(&format!(" {} |", c.distro));
    }
    t.push_str("\n|---|");
    t.push_str(&"---|".repeat(m.columns.len()));
    t.push('\n');
    let mut line = |name: &str, cell: &dyn Fn(&Column) -> String| {
        t.push_str(&format!("| {name} |"));
        for c in &m.columns {
            t.push_str(&format!(" {} |", cell(c).replace('|', "\\|")));
        }
        t.push('\n');
    };
    line("**outcome**", &|c| format!("**{}**", c.outcome));
    let version = |f: fn(&Versions) -> Option<String>| {
        move |c: &Column| {
            c.versions
                .as_ref()
                .and_then(f)
                .unwrap_or_else(|| "—".into())
        }
    };
    line("kernel", &version(|v| Some(v.kernel.clone())));
    line("ZFS", &version(|v| Some(v.zfs.clone())));
    line("systemd", &version(|v| v.systemd.clone()));
    line("image", &|c| match (c.image_seconds, c.image_cached) {
        (Some(s), Some(true)) => format!("{s:.0} s (cached)"),
        (Some(s), _) => format!("{s:.0} s"),
        _ => "—".into(),
    });
    line("VM tests", &|c| {
        c.tests_seconds
            .map(|s| format!("{s:.0} s"))
            .unwrap_or_else(|| "—".into())
    });
    let mut phase_names: Vec<&str> = Vec::new();
    for c in &m.columns {
        for (p, _) in &c.phases {
            if !phase_names.contains(&p.as_str()) {
                phase_names.push(p);
            }
        }
    }
    for p in phase_names {
        line(&format!("main job: {p}"), &|c| {
            (c.phases.iter())
                .find(|(name, _)| name == p)
                .map(|(_, s)| format!("{s:.0} s"))
                .unwrap_or_else(|| "—".into())
        });
    }
    line("JUnit", &|c| {
        c.junit
            .as_ref()
            .map(|j| format!("[junit.xml]({j})"))
            .unwrap_or_else(|| "—".into())
    });
    for (row, cells) in &m.rows {
        line(row, &|c| match cells.get(&c.distro) {
            Some(cell) => format!(
                "[{}]({}) ([report]({}))",
                if cell.passed { "PASS" } else { "FAIL" },
                cell.transcript,
                cell.report
            ),
            None => "—".into(),
        });
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(passed: bool) -> Cell {
        Cell {
            passed,
            detail: String::new(),
            transcript: "debian-13/20261127-1-install/serial.log".into(),
            report: "debian-13/20261127-1-install/report.json".into(),
        }
    }

    /// kldload's installer refuses, without --experimental, every distro the matrix cannot
    /// boot: the two lists agree, each distro in exactly one of them.
    #[test]
    fn the_installer_calls_proven_exactly_the_distros_with_a_medium() {
        for distro in kldload::config::Distro::ALL {
            let column = MatrixDistro::find(distro.name()).unwrap();
            assert_eq!(
                matches!(column, MatrixDistro::Image(_)),
                distro.booted_in_vm(),
                "{distro}"
            );
        }
        assert_eq!(
            crate::image::recipe::DISTROS.len() + PLAN_ONLY.len(),
            kldload::config::Distro::ALL.len()
        );
    }

    #[test]
    fn rocky_and_freebsd_are_plan_only_columns_and_an_unknown_distro_is_refused() {
        assert!(matches!(
            MatrixDistro::find("rocky-9").unwrap(),
            MatrixDistro::PlanOnly("rocky-9")
        ));
        assert!(matches!(
            MatrixDistro::find("debian").unwrap(),
            MatrixDistro::Image(d) if d.name == "debian-13"
        ));
        let e = MatrixDistro::find("arch").unwrap_err().to_string();
        assert!(
            e.contains("debian-14") && e.contains("plan only: rocky-9, freebsd-14"),
            "{e}"
        );
        let column = Column::without_run("freebsd-14", skipped("freebsd-14"));
        let md = markdown(&Matrix {
            columns: vec![column],
            rows: vec![],
        });
        assert!(
            md.contains(
                "| **outcome** | **skipped: plan only (kldload builds no freebsd-14 medium: no \
                 freebsd-14 mirror is reachable where it is developed; its plans are checked by \
                 installer/tests/golden.rs)** |"
            ),
            "{md}"
        );
    }

    /// debian-14's first matrix run (2026-11-27): every test stopped in ZFSBootMenu's
    /// emergency shell, and "failed" alone said nothing of it.
    #[test]
    fn a_failed_distro_says_its_first_error_and_what_the_console_said() {
        let dir = tempfile::tempdir().unwrap();
        let run = |name: &str, error: Option<&str>, checks: Vec<vmtests::report::Check>| {
            let run_dir = dir.path().join(format!("20261127-145726-{name}"));
            std::fs::create_dir_all(&run_dir).unwrap();
            std::fs::write(
                run_dir.join("serial.log"),
                "BdsDxe: starting Boot0005 \"ZFSBootMenu\"\r\n\x1b[0;32memergency shell\x1b[0m: \
                 unable to load ZFS kernel modules\r\n\x1b[0;33mzfsbootmenu\x1b[0m / > ",
            )
            .unwrap();
            vmtest::TestTimes {
                name: name.into(),
                passed: error.is_none() && checks.iter().all(|c| c.passed),
                error: error.map(String::from),
                checks,
                dir: run_dir,
                wall_seconds: 200.0,
                phases: vec![],
                accel: "tcg".into(),
            }
        };
        let check = |name: &str, passed: bool| vmtests::report::Check {
            name: name.into(),
            passed,
            detail: format!("{name} detail\nmore"),
            seconds: None,
        };
        let tests = [
            run(
                "zbm-menu",
                Some("timed out waiting for menu\nphase"),
                vec![],
            ),
            run(
                "install",
                Some("timed out after 120s waiting for \"ROOT/default\" on the console\nphase"),
                vec![],
            ),
            run("zbm-kernels", None, vec![check("pool", true)]),
        ];
        assert_eq!(
            what_failed(&tests),
            "failed (2 of 3 tests); install: timed out after 120s waiting for \"ROOT/default\" \
             on the console; the console said: emergency shell: unable to load ZFS kernel modules"
        );
        let checked = [run(
            "zbm-rollback",
            None,
            vec![check("pool", true), check("bootfs", false)],
        )];
        assert!(
            what_failed(&checked).starts_with(
                "failed (1 of 1 tests); zbm-rollback: bootfs: bootfs detail; the console said"
            ),
            "{}",
            what_failed(&checked)
        );
    }

    #[test]
    fn each_distro_a_column_and_a_distro_zfs_cannot_build_for_says_so() {
        let passed = Column {
            distro: "debian-13".into(),
            outcome: "passed".into(),
            versions: Some(Versions {
                kernel: "6.12.117+deb13-amd64".into(),
                zfs: "2.3.9".into(),
                systemd: Some("257.9-1".into()),
            }),
            image_seconds: Some(21.7),
            image_cached: Some(true),
            tests_seconds: Some(1200.0),
            phases: vec![("live boot".into(), 34.9), ("install".into(), 56.2)],
            junit: Some("debian-13/junit.xml".into()),
        };
        let e = anyhow::Error::from(ZfsDoesNotBuild {
            kernel: "7.2.12+deb14-amd64".into(),
            zfs: "2.4.4".into(),
            errors: vec![],
            make_log: "/x/make.log".into(),
        })
        .context("building the debian-14 image");
        let none = Path::new("/nowhere");
        let testing = column("debian-14", &Err(e), none, none);
        assert_eq!(
            testing.outcome,
            "zfs does not build for kernel 7.2.12+deb14-amd64"
        );
        let other = column(
            "debian-12",
            &Err(anyhow::anyhow!("no Debian mirror\nmore").context("building the image")),
            none,
            none,
        );
        assert_eq!(
            other.outcome,
            "did not run: building the image: no Debian mirror"
        );
        let m = Matrix {
            columns: vec![passed, other, testing],
            rows: vec![(
                "main job: bootfs".into(),
                BTreeMap::from([("debian-13".to_string(), cell(true))]),
            )],
        };
        let md = markdown(&m);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[2], "| | debian-13 | debian-12 | debian-14 |");
        assert!(md.contains(
            "| **outcome** | **passed** | **did not run: building the image: no Debian mirror** | **zfs does not build for kernel 7.2.12+deb14-amd64** |"
        ));
        assert!(md.contains("| kernel | 6.12.117+deb13-amd64 | — | — |"));
        assert!(md.contains("| image | 22 s (cached) | — | — |"));
        assert!(md.contains("| main job: install | 56 s | — | — |"));
        assert!(md.contains(
            "| main job: bootfs | [PASS](debian-13/20261127-1-install/serial.log) ([report](debian-13/20261127-1-install/report.json)) | — | — |"
        ));
    }
}
