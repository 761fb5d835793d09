//! Running host commands for the build: argv only, output to the phase's log file, and on a
//! failure an error with the command and the log's last lines.

use anyhow::{Context, Result, bail};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How many log lines a failure shows.
const TAIL: usize = 30;

/// A log file that commands append their output to.
#[derive(Debug, Clone)]
pub struct Log {
    pub path: PathBuf,
}

impl Log {
    pub fn new(path: impl Into<PathBuf>) -> Result<Log> {
        let path = path.into();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        File::create(&path).with_context(|| format!("creating log {}", path.display()))?;
        Ok(Log { path })
    }

    fn file(&self) -> Result<File> {
        Ok(OpenOptions::new().append(true).open(&self.path)?)
    }

    pub fn note(&self, text: &str) {
        if let Ok(mut f) = self.file() {
            let _ = writeln!(f, "## {text}");
        }
    }

    /// The last lines of the log.
    pub fn tail(&self) -> String {
        tail_of(&self.path, TAIL)
    }
}

/// The last `n` lines of a text file.
pub fn tail_of(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Shows an argv as a person would type it.
pub fn shown(argv: &[&str]) -> String {
    argv.iter()
        .map(|w| {
            if w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c))
                && !w.is_empty()
            {
                w.to_string()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `argv` with `env`, output appended to `log`.
pub fn run_env(log: &Log, argv: &[&str], env: &[(&str, &str)]) -> Result<()> {
    log.note(&format!("$ {}", shown(argv)));
    let out = log.file()?;
    let status = Command::new(argv[0])
        .args(&argv[1..])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .with_context(|| format!("cannot start {} (is it installed?)", argv[0]))?;
    if !status.success() {
        bail!(
            "`{}` failed ({status}); last lines of {}:\n{}",
            shown(argv),
            log.path.display(),
            log.tail()
        );
    }
    Ok(())
}

pub fn run(log: &Log, argv: &[&str]) -> Result<()> {
    run_env(log, argv, &[])
}

/// Runs `argv` and returns its stdout (stderr to the log).
pub fn output(log: &Log, argv: &[&str]) -> Result<String> {
    output_in(log, Path::new("."), argv)
}

/// Like [`output`], run in the directory `dir` (for tools that name files as found there,
/// such as `apt-ftparchive`).
pub fn output_in(log: &Log, dir: &Path, argv: &[&str]) -> Result<String> {
    log.note(&format!("$ (cd {} && {})", dir.display(), shown(argv)));
    let out = Command::new(argv[0])
        .current_dir(dir)
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stderr(log.file()?)
        .output()
        .with_context(|| format!("cannot start {}", argv[0]))?;
    if !out.status.success() {
        bail!("`{}` failed ({}):\n{}", shown(argv), out.status, log.tail());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `argv` inside `root` (chroot), non-interactively.
pub fn chroot(log: &Log, root: &Path, argv: &[&str]) -> Result<()> {
    let root = root.to_string_lossy();
    let mut full = vec!["chroot", &root];
    full.extend_from_slice(argv);
    run_env(
        log,
        &full,
        &[
            ("DEBIAN_FRONTEND", "noninteractive"),
            ("LC_ALL", "C.UTF-8"),
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        ],
    )
}

/// Whether this build lets apt read an expired Release file ([`apt_update`]): one setting for
/// the whole build, made once by `build_image` from `--allow-expired-archive`.
static ALLOW_EXPIRED_ARCHIVE: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Sets [`ALLOW_EXPIRED_ARCHIVE`] for the build.
pub fn allow_expired_archive(allowed: bool) {
    ALLOW_EXPIRED_ARCHIVE.store(allowed, std::sync::atomic::Ordering::Relaxed);
}

/// `apt-get update` in `root`. Debian signs testing's Release for a week (Valid-Until), so a
/// stale mirror or a snapshot of testing has an expired one, which apt refuses: that is said
/// in one line with the way on. With `--allow-expired-archive` apt is told not to check
/// (`Acquire::Check-Valid-Until=false` on this command line only: nothing is written into a
/// root, so no shipped system keeps it).
pub fn apt_update(log: &Log, root: &Path) -> Result<()> {
    let mut argv = vec!["apt-get", "update"];
    if ALLOW_EXPIRED_ARCHIVE.load(std::sync::atomic::Ordering::Relaxed) {
        argv.extend(["-o", "Acquire::Check-Valid-Until=false"]);
    }
    chroot(log, root, &argv).map_err(|e| match expired_release(&e.to_string()) {
        Some(line) => anyhow::anyhow!(
            "the mirror's Release file has expired: {line}\napt refuses it. Use a current \
             mirror (--mirror URL), or build from this one anyway with --allow-expired-archive \
             (apt's Check-Valid-Until off for the build's apt-get update only)"
        ),
        None => e,
    })
}

/// apt's line saying a Release file has expired, if `output` has one.
fn expired_release(output: &str) -> Option<&str> {
    output
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("E: Release file for") && l.contains("is expired"))
}

/// Like [`chroot`], returning stdout.
pub fn chroot_output(log: &Log, root: &Path, argv: &[&str]) -> Result<String> {
    let root = root.to_string_lossy();
    let mut full = vec!["chroot", &root];
    full.extend_from_slice(argv);
    output(log, &full)
}

/// /proc, /sys and /dev mounted in a root for as long as this lives (apt, DKMS and
/// update-initramfs need them); unmounted on drop, also when the build fails.
pub struct ChrootMounts {
    root: PathBuf,
    mounted: Vec<PathBuf>,
}

impl ChrootMounts {
    pub fn new(log: &Log, root: &Path) -> Result<ChrootMounts> {
        let mut m = ChrootMounts {
            root: root.to_owned(),
            mounted: Vec::new(),
        };
        for fs in ["proc", "sys", "dev"] {
            let target = root.join(fs);
            std::fs::create_dir_all(&target)?;
            let t = target.to_string_lossy().into_owned();
            match fs {
                "proc" => run(log, &["mount", "-t", "proc", "proc", &t])?,
                _ => {
                    run(log, &["mount", "--rbind", &format!("/{fs}"), &t])?;
                    run(log, &["mount", "--make-rslave", &t])?;
                }
            }
            m.mounted.push(target);
        }
        Ok(m)
    }
}

impl Drop for ChrootMounts {
    fn drop(&mut self) {
        for target in self.mounted.iter().rev() {
            let _ = Command::new("umount")
                .args(["--recursive", "--lazy"])
                .arg(target)
                .status();
        }
        let _ = &self.root;
    }
}

/// An overlay mount on `lower` (read-only), its changes in `work`: a build root used without
/// changing the cached root beneath. Unmounted on drop; [`Overlay::remove`] also removes the
/// changes.
pub struct Overlay {
    pub merged: PathBuf,
    work: PathBuf,
}

impl Overlay {
    pub fn new(log: &Log, lower: &Path, work: &Path) -> Result<Overlay> {
        let (upper, scratch, merged) = (work.join("upper"), work.join("work"), work.join("root"));
        for d in [&upper, &scratch, &merged] {
            std::fs::create_dir_all(d)?;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            scratch.display()
        );
        run(
            log,
            &[
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                &options,
                &merged.to_string_lossy(),
            ],
        )?;
        Ok(Overlay {
            merged,
            work: work.to_owned(),
        })
    }

    /// Unmounts it and removes its changes; the mount point only if empty (never
    /// recursively: a mount left there would be the host's /dev or /sys). Call it once the
    /// chroot's own mounts are gone.
    pub fn remove(self) -> Result<()> {
        let work = self.work.clone();
        drop(self);
        for d in ["upper", "work"] {
            std::fs::remove_dir_all(work.join(d))
                .with_context(|| format!("removing {}", work.join(d).display()))?;
        }
        std::fs::remove_dir(work.join("root"))
            .and_then(|()| std::fs::remove_dir(&work))
            .with_context(|| format!("{} is not empty after unmounting", work.display()))
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("--lazy")
            .arg(&self.merged)
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_release_is_found_in_apts_output() {
        let out = "Get:1 http://mirror.invalid/debian forky InRelease [151 kB]
Reading package lists...
E: Release file for http://mirror.invalid/debian/dists/forky/InRelease is expired (invalid since 21d 5h 51min 54s). Updates for this repository will not be applied.
";
        assert_eq!(
            expired_release(out),
            Some(
                "E: Release file for http://mirror.invalid/debian/dists/forky/InRelease is expired (invalid since 21d 5h 51min 54s). Updates for this repository will not be applied."
            )
        );
        assert_eq!(
            expired_release("E: Unable to locate package zfs-dkms"),
            None
        );
    }
}
