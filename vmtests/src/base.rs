//! The shared base install: one install per medium (the main job's, or made by the first test
//! that asks), kept in the medium's cache entry and used only as the backing file of each
//! run's copy-on-write overlay; and its saved machine state, booted once and logged in, that
//! runs resume in seconds.

use crate::answers::DEFAULT_ANSWERS;
use crate::env::{VmTestEnv, project_root};
use crate::guest::{fingerprints, host_keys_command};
use crate::machine::Machine;
use crate::qemu::{VmSpec, create_disk};
use crate::run::{HOST_KEYS_AS_INSTALLED, LABEL_AS_INSTALLED, Run};
use anyhow::{Context, Result, bail, ensure};
use kldload::config::Distro;
use std::path::{Path, PathBuf};

/// The file that marks a base install as complete.
const BASE_DONE: &str = "installed";
/// The file that says why a base install failed (and in which `vm-test` run), so the tests
/// after it in that run fail at once; a later run tries again.
const BASE_FAILED: &str = "failed";
/// The files a base install leaves beside its disk, copied into each run made from it.
const BASE_FILES: [&str; 6] = [
    "nvram.fd",
    "answers.toml",
    "id_ed25519",
    "id_ed25519.pub",
    LABEL_AS_INSTALLED,
    HOST_KEYS_AS_INSTALLED,
];

/// The `vm-test` run this process belongs to: `$KLDLOAD_VMTEST_RUN` (set by `cargo xtask`),
/// else this process alone.
fn vmtest_run_id() -> String {
    (VmTestEnv::from_env().ok().and_then(|e| e.run_id))
        .unwrap_or_else(|| format!("pid {}", std::process::id()))
}

/// An exclusive lock on a medium's shared base install, held while it is made or looked at:
/// tests that run side by side make it once, and never see half of one.
pub(crate) struct BaseLock {
    _file: std::fs::File,
}

impl BaseLock {
    pub(crate) fn take(medium: &Path) -> Result<BaseLock> {
        let path = medium_entry(medium).join("vmtest-base.lock");
        let file =
            std::fs::File::create(&path).with_context(|| format!("opening {}", path.display()))?;
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(BaseLock { _file: file })
    }
}

/// The medium's entry in the image cache (its directory).
pub(crate) fn medium_entry(medium: &Path) -> PathBuf {
    medium
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// What the harness records beside a base install; a new value makes every base again.
const BASE_FORMAT: u32 = 2;
/// The names of base directories in a medium's cache entry.
const BASE_PREFIX: &str = "vmtest-base-";

/// Where the base install of `medium` lives: in the medium's entry of the image cache, outside
/// the clone like the medium itself, so later runs and CI reuse it, and it goes when the medium
/// does (`cargo xtask cache prune`). Its name holds the answer file template's hash and the
/// harness's [`BASE_FORMAT`]: other answers or another harness make another base.
fn base_dir(medium: &Path) -> Result<PathBuf> {
    let answers_hash = kldload::hash::file_sha256(&project_root().join(DEFAULT_ANSWERS))?;
    Ok(medium_entry(medium).join(format!(
        "{BASE_PREFIX}{}-v{BASE_FORMAT}",
        &answers_hash[..12]
    )))
}

/// What the base directory `dir` holds: a finished install, one that failed in this `vm-test`
/// run (why), or nothing usable (none, or one a crash or an earlier run left unfinished).
enum BaseState {
    Done,
    FailedInThisRun(String),
    Absent,
}

fn base_state(dir: &Path) -> BaseState {
    if dir.join(BASE_DONE).is_file() {
        return BaseState::Done;
    }
    match std::fs::read_to_string(dir.join(BASE_FAILED)) {
        Ok(text) => match text.split_once('\n') {
            Some((run, why)) if run == vmtest_run_id() => BaseState::FailedInThisRun(why.into()),
            _ => BaseState::Absent,
        },
        Err(_) => BaseState::Absent,
    }
}

/// Clears the way for a new base in `dir`: the medium's other bases (other answers, another
/// harness) and what an unfinished one left are removed.
fn clear_for_base(dir: &Path) -> Result<()> {
    let entry = dir.parent().context("a base directory has a parent")?;
    for old in std::fs::read_dir(entry)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(BASE_PREFIX))
        })
    {
        std::fs::remove_dir_all(old)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

/// Records in `dir` that its base install failed in this `vm-test` run, and why.
fn mark_base_failed(dir: &Path, why: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(BASE_FAILED), format!("{}\n{why}", vmtest_run_id()))?;
    Ok(())
}

impl Run {
    /// Starts this run's machine where [`Run::boot_installed`] leaves the shared base install
    /// (booted through the firmware and ZFSBootMenu, root logged in on the console, the
    /// harness's shell up) from a saved machine state, in seconds rather than a minute: for a
    /// test whose subject comes after the first boot. A test of a boot path boots it.
    pub fn resume_logged_in(&mut self, name: &str) -> Result<Machine> {
        let saved = self.timed("saved state of the base, logged in", |run| {
            logged_in_base(run.distro, &run.medium)
        })?;
        self.timed("resume, logged in", |run| {
            let _ = std::fs::remove_file(&run.target);
            create_disk(&run.target, "16G", Some(&saved.join("target.qcow2")))?;
            std::fs::copy(saved.join("nvram.fd"), &run.nvram)?;
            // The machine logged_in_base saved, whose key it checked.
            let mut spec = run.logged_in_spec(name);
            spec.incoming = Some(saved.join("state"));
            let mut m = Machine::start(spec, &run.transcript, "resume")?;
            m.continue_saved()?;
            // The console is at root's prompt: a new shell of the harness's from there, and the
            // clock set to now (the saved one stopped when the state was saved).
            m.start_shell()?;
            let now = chrono::Utc::now().timestamp();
            m.succeed(&format!("date -u -s @{now} > /dev/null"))?;
            Ok(m)
        })
    }

    /// The running machine `m`'s SSH host keys are none of the shared base install's.
    pub fn host_keys_unlike_base(&self, m: &mut Machine) -> Result<String> {
        let here = fingerprints(&m.succeed(&host_keys_command(""))?);
        let base = installed_base(self.distro, &self.medium)?;
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

    /// A scenario's run on a machine kldload has already installed: the disk is a copy-on-write
    /// overlay of the medium's shared base install (the main job's install, or made here the
    /// first time a test asks for it), the NVRAM a copy of the base's, so its firmware entries
    /// are there.
    pub fn on_installed_base(distro: Distro, scenario: &str, medium: PathBuf) -> Result<Run> {
        let base = installed_base(distro, &medium)?;
        let dir = crate::run::new_run_dir(distro, scenario)?;
        // What the base's install left, as read on its live system: this machine's too.
        copy_files(&base.dir, &dir, &BASE_FILES)?;
        let run = Run::in_dir_existing(distro, dir, medium)?;
        create_disk(&run.target, "16G", Some(&base.target))?;
        Ok(run)
    }

    /// The main job's install onto its blank disk ([`Run::install_and_inspect`]), which is
    /// also the shared base install when this medium has none yet: its disk, as the install
    /// left it and before anything boots it, moves to the base's directory, and this run goes
    /// on with a copy-on-write overlay of it. One install then serves the main job and every
    /// test that starts from an installed machine. Tests that want the base meanwhile wait for
    /// it (the base lock), and fail at once if this install fails.
    ///
    /// Returns the base still pending when it became the base: it is shared only when the
    /// main job's checks then pass ([`PendingBase::share`]); dropped unshared, it is marked
    /// failed, so no test starts from an install whose checks failed.
    pub fn install_and_share_as_base(&mut self) -> Result<Option<PendingBase>> {
        let lock = BaseLock::take(&self.medium)?;
        let dir = base_dir(&self.medium)?;
        if matches!(base_state(&dir), BaseState::Done) {
            drop(lock);
            self.install_and_inspect()?;
            return Ok(None);
        }
        clear_for_base(&dir)?;
        if let Err(e) = self.install_and_inspect() {
            mark_base_failed(&dir, &format!("the main job's install failed: {e:#}"))?;
            return Err(e);
        }
        move_file(&self.target, &dir.join("target.qcow2"))?;
        create_disk(&self.target, "16G", Some(&dir.join("target.qcow2")))?;
        copy_files(&self.dir, &dir, &BASE_FILES)?;
        Ok(Some(PendingBase {
            _lock: lock,
            dir,
            made_by: self.dir.clone(),
            shared: false,
        }))
    }
}

/// The main job's install, made the shared base but not shared yet: the base lock is held (the
/// tests that want the base wait) until the main job's checks pass and [`PendingBase::share`]
/// marks it done, or it is dropped and marked failed.
pub struct PendingBase {
    _lock: BaseLock,
    dir: PathBuf,
    made_by: PathBuf,
    shared: bool,
}

impl PendingBase {
    /// The main job's checks passed: the base is done, for every test after.
    pub fn share(mut self) -> Result<()> {
        std::fs::write(self.dir.join(BASE_DONE), self.made_by.display().to_string())?;
        self.shared = true;
        Ok(())
    }
}

impl Drop for PendingBase {
    fn drop(&mut self) {
        if !self.shared {
            let _ = mark_base_failed(
                &self.dir,
                &format!(
                    "the main job's boot or checks failed on it ({})",
                    self.made_by.display()
                ),
            );
        }
    }
}

/// Where the shared base's saved machine state lives, in its base directory: the base booted
/// once and logged in, saved ([`Machine::save_state`]), with its disk overlay and NVRAM as they
/// were then.
const LOGGED_IN: &str = "logged-in";
/// The file that says which machine the state is of ([`saved_state_key`]).
const SAVED_KEY: &str = "machine";

/// What a saved state must be resumed with: QEMU's version, the firmware's code, and QEMU's
/// argv for the machine (paths, sockets and the forwarded port left out), the harness's shell
/// command with it. A state saved by another harness or QEMU is made again.
pub(crate) fn saved_state_key(spec: &VmSpec) -> Result<String> {
    let version = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .context("qemu-system-x86_64 --version")?;
    let sockets = crate::qemu::Sockets::new()?;
    let mut spec = spec.clone();
    spec.name = String::new();
    spec.incoming = None;
    spec.ssh_port = spec.ssh_port.map(|_| 0);
    let argv: Vec<String> = spec
        .argv(&sockets)
        .into_iter()
        .map(|a| {
            a.split(',')
                .map(|part| match part.split_once('=') {
                    Some((k, v)) if v.starts_with('/') => format!("{k}=<{}>", file_name(v)),
                    _ if part.starts_with('/') || part.starts_with("unix:/") => {
                        format!("<{}>", file_name(part))
                    }
                    _ => part.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    Ok(format!(
        "{}\nfirmware {}\n{}\nshell: {}\n",
        String::from_utf8_lossy(&version.stdout)
            .lines()
            .next()
            .unwrap_or_default(),
        kldload::hash::file_sha256(&spec.firmware.code)?,
        argv.join(" "),
        crate::shell::START_COMMAND
    ))
}

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The shared base's saved state (see [`LOGGED_IN`]), made the first time a test asks for it
/// (about a minute: the boot) and then reused until the base is made again: its directory.
pub fn logged_in_base(distro: Distro, medium: &Path) -> Result<PathBuf> {
    let base = installed_base(distro, medium)?;
    let _lock = BaseLock::take(medium)?;
    let dir = base.dir.join(LOGGED_IN);
    std::fs::create_dir_all(&dir)?;
    let mut run = Run::in_dir_existing(distro, dir.clone(), medium.to_owned())?;
    let key = saved_state_key(&run.logged_in_spec("logged-in"))?;
    if saved_state_is(&dir, &key) {
        return Ok(dir);
    }
    std::fs::remove_dir_all(&dir)?;
    std::fs::create_dir_all(&dir)?;
    copy_files(&base.dir, &dir, &BASE_FILES)?;
    create_disk(&run.target, "16G", Some(&base.target))?;
    make_saved_state(&mut run, &key, "the base install logged in", |run| {
        run.boot_to_console_login("logged-in", "")
    })?;
    Ok(dir)
}

/// Whether `dir` holds a saved state of the machine `key` describes ([`saved_state_key`]).
pub(crate) fn saved_state_is(dir: &Path, key: &str) -> bool {
    std::fs::read_to_string(dir.join(SAVED_KEY)).ok().as_deref() == Some(key)
}

/// Brings `run`'s machine to the moment to keep with `boot`, saves its state in the run's
/// directory and records `key` beside it last, so a half-made state is never taken; the run's
/// report is written either way. `what` names the state in an error.
pub(crate) fn make_saved_state(
    run: &mut Run,
    key: &str,
    what: &str,
    boot: impl FnOnce(&mut Run) -> Result<Machine>,
) -> Result<()> {
    let saved = (|| {
        let mut m = boot(run)?;
        run.timed("save the machine's state", |run| {
            m.save_state(&run.dir.join("state"))
        })
    })();
    if let Err(e) = &saved {
        run.report.error = Some(format!("{e:#}"));
    }
    run.report.write(&run.dir)?;
    saved.with_context(|| format!("saving {what} in {}", run.dir.display()))?;
    std::fs::write(run.dir.join(SAVED_KEY), key)?;
    Ok(())
}

/// Moves `from` to `to`, copying when they are on different filesystems.
fn move_file(from: &Path, to: &Path) -> Result<()> {
    if std::fs::rename(from, to).is_err() {
        std::fs::copy(from, to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        std::fs::remove_file(from)?;
    }
    Ok(())
}

/// Copies the files named `names` that `from` has into `to`.
fn copy_files(from: &Path, to: &Path, names: &[&str]) -> Result<()> {
    for name in names {
        let file = from.join(name);
        if file.is_file() {
            std::fs::copy(&file, to.join(name))
                .with_context(|| format!("copying {}", file.display()))?;
        }
    }
    Ok(())
}

/// The base install of `medium` (see [`base_dir`]), made by installing from the medium onto a
/// blank disk when there is none (the main job's install usually is it), then reused as is,
/// only ever as the backing file of overlays; older bases are removed when a new one is made.
pub fn installed_base(distro: Distro, medium: &Path) -> Result<Run> {
    let _lock = BaseLock::take(medium)?;
    let dir = base_dir(medium)?;
    match base_state(&dir) {
        BaseState::Done => return Run::in_dir_existing(distro, dir, medium.to_owned()),
        BaseState::FailedInThisRun(why) => bail!(
            "the shared base install failed earlier in this run ({}): {why}",
            dir.display()
        ),
        BaseState::Absent => {}
    }
    clear_for_base(&dir)?;
    let mut run = Run::in_dir(distro, dir, medium.to_owned())?;
    if let Err(e) = run.install_and_inspect() {
        let why = format!("{e:#}");
        mark_base_failed(&run.dir, &why)?;
        bail!("installing the shared base the scenarios boot: {why}");
    }
    std::fs::write(run.dir.join(BASE_DONE), "")?;
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The main job's base is done only once shared; dropped unshared (its checks failed), it
    /// is failed for the rest of the run, and no test starts from it.
    #[test]
    fn a_base_whose_checks_failed_is_never_done() {
        let entry = tempfile::tempdir().unwrap();
        let medium = entry.path().join("kldload.img");
        std::fs::write(&medium, "").unwrap();
        let pending = |name: &str| {
            let dir = entry.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let base = PendingBase {
                _lock: BaseLock::take(&medium).unwrap(),
                dir: dir.clone(),
                made_by: entry.path().join("run"),
                shared: false,
            };
            (base, dir)
        };
        let (failed, dir) = pending("failed");
        drop(failed);
        assert!(matches!(
            base_state(&dir),
            BaseState::FailedInThisRun(why) if why.contains("checks failed")
        ));
        let (passed, dir) = pending("passed");
        passed.share().unwrap();
        assert!(matches!(base_state(&dir), BaseState::Done));
    }
}
