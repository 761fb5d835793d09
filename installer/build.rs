//! Names the commit kldload's sources come from, for `kldload --version`: the last commit that
//! changed the installer or the workspace's manifests (not HEAD, so that a commit elsewhere,
//! a README's, leaves the binary and the medium built from it as they were), with `-modified`
//! when they differ from it. "unknown" outside a git checkout (a source tarball).

use std::path::Path;
use std::process::Command;

/// What the binary is built from, relative to the workspace.
const SOURCES: [&str; 3] = ["installer", "Cargo.toml", "Cargo.lock"];

fn git(workspace: &Path, args: &[&str]) -> Option<std::process::Output> {
    Command::new("git")
        .arg("-C")
        .arg(workspace)
        .args(args)
        .output()
        .ok()
}

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it");
    let workspace = Path::new(&manifest)
        .parent()
        .expect("installer/ is in the workspace");
    let mut log = vec!["log", "-1", "--format=%H", "--"];
    log.extend(SOURCES);
    let commit = git(workspace, &log)
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| c.len() >= 12);
    let described = match commit {
        Some(commit) => {
            let mut diff = vec!["diff", "--quiet", "HEAD", "--"];
            diff.extend(SOURCES);
            // Exit status 1: the sources differ from HEAD's.
            let modified = git(workspace, &diff).is_some_and(|o| o.status.code() == Some(1));
            format!(
                "{}{}",
                &commit[..12],
                if modified { "-modified" } else { "" }
            )
        }
        None => "unknown".to_string(),
    };
    println!("cargo:rustc-env=KLDLOAD_COMMIT={described}");
    // Again when a commit is made or checked out (HEAD, the branch's ref, packed refs), or a
    // source changes. Not on the index, which every `git status` may touch: each run of this
    // script rebuilds the crate.
    let text = |o: std::process::Output| String::from_utf8_lossy(&o.stdout).trim().to_string();
    if let Some(dir) = git(workspace, &["rev-parse", "--absolute-git-dir"])
        .filter(|o| o.status.success())
        .map(text)
    {
        let mut files = vec!["HEAD".to_string(), "packed-refs".to_string()];
        files.extend(
            git(workspace, &["symbolic-ref", "-q", "HEAD"])
                .filter(|o| o.status.success())
                .map(text),
        );
        // A path that does not exist would have cargo run this at every build.
        for path in files.iter().map(|f| Path::new(&dir).join(f)) {
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    for source in ["src", "Cargo.toml", "../Cargo.toml", "../Cargo.lock"] {
        println!("cargo:rerun-if-changed={source}");
    }
}
