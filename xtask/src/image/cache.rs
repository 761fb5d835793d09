//! The build cache: one directory per build phase and distro, named by a hash of the phase's
//! inputs, outside the clone (default /var/cache/kldload, or $KLDLOAD_CACHE / --cache-dir), so
//! CI runs and later sessions reuse debootstrap and DKMS work.
//!
//! An entry is built in `<name>.partial` and renamed when complete: an interrupted build never
//! leaves a half entry that a later run would take for done.

use crate::run::Log;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Default cache root when neither --cache-dir nor $KLDLOAD_CACHE is given.
/// (The installer looks for ZFSBootMenu under the same root.)
pub const DEFAULT_CACHE: &str = kldload::zbm::source::BUILD_CACHE;

/// A hash of a phase's inputs, as hex (16 digits are plenty to tell builds apart).
#[derive(Debug, Clone, Default)]
pub struct Key(Sha256);

impl Key {
    pub fn new(phase: &str) -> Key {
        let mut k = Key(Sha256::new());
        k.add(phase);
        k
    }
    /// Adds one input; inputs are length-prefixed so ("ab","c") and ("a","bc") differ.
    pub fn add(&mut self, input: impl AsRef<[u8]>) -> &mut Key {
        let bytes = input.as_ref();
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }
    pub fn hex(&self) -> String {
        hex::encode(self.0.clone().finalize())[..16].to_string()
    }
}

/// The cache root.
#[derive(Debug, Clone)]
pub struct Cache {
    pub root: PathBuf,
}

impl Cache {
    pub fn new(root: PathBuf) -> Cache {
        Cache { root }
    }

    /// The directory of a phase's entry for these inputs.
    pub fn entry(&self, distro: &str, phase: &str, key: &Key) -> PathBuf {
        self.root
            .join(distro)
            .join(format!("{phase}-{}", key.hex()))
    }

    /// Shared download cache for debootstrap's .debs.
    pub fn debs(&self, distro: &str) -> PathBuf {
        self.root.join(distro).join("debs")
    }

    /// Entries of every distro: (path, size in bytes).
    pub fn list(&self) -> Result<Vec<(PathBuf, u64)>> {
        let mut entries = Vec::new();
        let Ok(distros) = std::fs::read_dir(&self.root) else {
            return Ok(entries);
        };
        for distro in distros.filter_map(|e| e.ok()) {
            let Ok(dirs) = std::fs::read_dir(distro.path()) else {
                continue;
            };
            for e in dirs.filter_map(|e| e.ok()) {
                let path = e.path();
                if path.is_dir() && path.file_name().is_some_and(|n| n != "debs") {
                    entries.push((path.clone(), du(&path)));
                }
            }
        }
        entries.sort();
        Ok(entries)
    }
}

/// Bytes used under `path` (`du -sb`; 0 when it cannot tell).
pub fn du(path: &Path) -> u64 {
    Command::new("du")
        .arg("-sb")
        .arg(path)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Builds the entry at `dir` with `build` unless it exists (or `rebuild` is set). Returns
/// whether it came from the cache.
pub fn build_entry(
    dir: &Path,
    rebuild: bool,
    build: impl FnOnce(&Path) -> Result<()>,
) -> Result<bool> {
    if dir.is_dir() && !rebuild {
        return Ok(true);
    }
    let partial = dir.with_extension("partial");
    remove_tree(&partial)?;
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    build(&partial)?;
    remove_tree(dir)?;
    std::fs::rename(&partial, dir)
        .with_context(|| format!("renaming {} into place", partial.display()))?;
    Ok(false)
}

/// Removes a directory tree safely: first unmounts anything still mounted below it (a killed
/// build can leave /dev or /proc bound into a chroot), then deletes without crossing into
/// other filesystems.
pub fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let prefix = format!("{}/", dir.display());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut below: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    below.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in below {
        let _ = Command::new("umount")
            .args(["--recursive", "--lazy", m])
            .status();
    }
    let status = Command::new("rm")
        .args(["-rf", "--one-file-system"])
        .arg(dir)
        .status()?;
    anyhow::ensure!(status.success(), "could not remove {}", dir.display());
    Ok(())
}

/// The log file of a phase, inside its (partial) entry.
pub fn phase_log(dir: &Path) -> Result<Log> {
    Log::new(dir.join("build.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_change_when_and_only_when_inputs_change() {
        let key = |inputs: &[&str]| {
            let mut k = Key::new("payload");
            for i in inputs {
                k.add(i);
            }
            k.hex()
        };
        assert_eq!(key(&["trixie", "zstd"]), key(&["trixie", "zstd"]));
        assert_ne!(key(&["trixie", "zstd"]), key(&["bookworm", "zstd"]));
        assert_ne!(key(&["ab", "c"]), key(&["a", "bc"]));
        assert_ne!(Key::new("live").hex(), Key::new("payload").hex());
    }

    #[test]
    fn an_interrupted_build_leaves_no_entry() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("payload-x");
        let err = build_entry(&entry, false, |tmp| {
            std::fs::write(tmp.join("half"), "x")?;
            anyhow::bail!("interrupted")
        });
        assert!(err.is_err());
        assert!(!entry.exists());
        // The next run starts clean and completes.
        let cached = build_entry(&entry, false, |tmp| {
            Ok(std::fs::write(tmp.join("whole"), "x")?)
        })
        .unwrap();
        assert!(!cached);
        assert!(entry.join("whole").exists() && !entry.join("half").exists());
        assert!(
            build_entry(&entry, false, |_| unreachable!()).unwrap(),
            "a warm build is cached"
        );
    }
}
