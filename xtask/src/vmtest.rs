//! `cargo xtask vm-test <distro>`: host packages (QEMU, OVMF), the medium (built or reused),
//! then the VM scenarios in vmtests/ through nextest's `vm` profile, one VM at a time, and a
//! summary of the checks and of each phase's wall time.

use crate::image;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::Instant;

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

/// What the VM tests run against: the medium, built or reused, and the host's VM packages.
pub struct Prepared {
    pub built: image::Output,
    pub distro: image::recipe::ImageDistro,
    pub image_time: std::time::Duration,
}

/// Installs the VM packages and builds (or reuses) the medium for `opts.distro`.
pub fn prepare(opts: &image::Options) -> Result<Prepared> {
    crate::host::ensure_vm_packages()?;
    let distro = opts.distro;
    let start = Instant::now();
    let built = image::build_image(opts)?;
    let image_time = start.elapsed();
    eprintln!(
        "medium: {} ({})",
        built.medium.display(),
        kldload::disk::human_size(built.size)
    );
    Ok(Prepared {
        built,
        distro,
        image_time,
    })
}

/// Where the VM tests put their run directories.
pub fn results_dir() -> PathBuf {
    vmtests::flow::results_root()
}

impl Prepared {
    /// The environment the tests in vmtests/ read: the medium, the distro, the build's roots.
    pub fn env(&self, keep: bool) -> Vec<(&'static str, std::ffi::OsString)> {
        vec![
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
        ]
    }
}

/// Which VM tests a run takes.
pub struct Selection {
    /// Keep disks and NVRAM for `vm-shell`.
    pub keep: bool,
    /// List the scenarios not marked `ci` too.
    pub all_scenarios: bool,
    /// Test names must contain one of these (none: every test).
    pub filters: Vec<String>,
    /// A nextest filter expression (`-E`), for `vm-repro`.
    pub expression: Option<String>,
}

/// `cargo xtask vm-repro <scenario>`: the one scenario, whether or not it is marked `ci`.
pub fn vm_repro(opts: &image::Options, scenario: &str, keep: bool) -> Result<()> {
    let files = vmtests::scenario::scenario_files(&crate::project_root())?;
    let Some((_, path)) = files.iter().find(|(name, _)| name == scenario) else {
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        bail!(
            "no scenario {scenario:?} in fixtures/scenarios/; there are: {}",
            names.join(", ")
        );
    };
    // A broken file is named before anything is built.
    vmtests::scenario::Scenario::load(path)?;
    vm_test(
        opts,
        &Selection {
            keep,
            all_scenarios: true,
            filters: vec![],
            expression: Some(format!("binary(scenarios) and test(={scenario})")),
        },
    )
}

/// Runs the VM tests of `opts.distro` that `selection` takes.
pub fn vm_test(opts: &image::Options, selection: &Selection) -> Result<()> {
    let keep = selection.keep;
    let prepared = prepare(opts)?;
    let (built, distro, image_time) = (&prepared.built, prepared.distro, prepared.image_time);
    let out = results_dir();
    let started = std::time::SystemTime::now();
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
        .args(selection.expression.iter().flat_map(|e| ["-E", e.as_str()]))
        .args(&selection.filters)
        .current_dir(crate::project_root())
        .envs(prepared.env(keep))
        .env(
            "KLDLOAD_VMTEST_SCENARIOS",
            if selection.all_scenarios { "all" } else { "ci" },
        )
        .status()
        .context("cargo nextest (cargo install --locked cargo-nextest)")?;
    println!(
        "\nvm-test {}: image {:.1}s{}",
        distro.name,
        image_time.as_secs_f64(),
        if built.phases.timings.iter().all(|t| t.2) {
            " (cached)"
        } else {
            ""
        }
    );
    println!("  {:<36} {:>7.1}s", "image", image_time.as_secs_f64());
    for report in reports_since(&out, distro.name, started) {
        let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
        let dir = report.parent().expect("a run directory");
        println!("{}:", dir.file_name().unwrap_or_default().to_string_lossy());
        for c in r["checks"].as_array().into_iter().flatten() {
            let detail = c["detail"]
                .as_str()
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(90)
                .collect::<String>();
            println!(
                "  {} {:<36} {detail}",
                if c["passed"].as_bool() == Some(true) {
                    "PASS"
                } else {
                    "FAIL"
                },
                c["name"].as_str().unwrap_or_default()
            );
        }
        if let Some(e) = r["error"].as_str() {
            println!("  ERROR {}", e.lines().next().unwrap_or_default());
        }
        for p in r["phases"].as_array().into_iter().flatten() {
            println!(
                "  {:<36} {:>7.1}s",
                p["name"].as_str().unwrap_or_default(),
                p["seconds"].as_f64().unwrap_or_default()
            );
        }
        println!("  results: {}", dir.display());
    }
    if !status.success() {
        bail!("VM tests failed for {}", distro.name);
    }
    Ok(())
}
