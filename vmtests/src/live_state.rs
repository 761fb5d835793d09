//! The live medium's saved shell: the medium booted once without an answer file, a blank
//! 16 GiB target attached, root's autologin shell on the console, and the whole machine saved.
//! A run that installs onto a blank target resumes it in seconds instead of booting the medium
//! (about a minute under TCG), hands its answer file in through the harness's shell and starts
//! the unattended install as the medium's own unit does at boot (`kldload unattended
//! --answers`). Made the first time a run asks, once per medium and CPU model, and kept in the
//! medium's cache entry beside the shared base install. The main job and the base still boot
//! the medium with the answer file in fw_cfg, so that path is tested on every run.

use crate::base::{BaseLock, make_saved_state, medium_entry, saved_state_is, saved_state_key};
use crate::machine::Machine;
use crate::qemu::Cpu;
use crate::run::{LIVE_BOOT_TIMEOUT, Run};
use anyhow::{Context, Result};
use kldload::config::Distro;
use std::path::{Path, PathBuf};

/// The saved states' directories in a medium's cache entry: `<prefix><cpu>`.
const DIR_PREFIX: &str = "vmtest-live-shell-";
/// Where the resumed live system keeps the answer file.
const GUEST_DIR: &str = "/run/kldload-vmtest";
/// The unit the install runs in: the medium's kldload-unattended.service, started again.
const UNIT: &str = "kldload-unattended-resumed";

impl Run {
    /// The live medium with the run's answer file and its unattended install started: resumed
    /// from the medium's saved live shell when the run allows (the harness's shell is up
    /// then), else booted with the answer file in fw_cfg. Returns when the install has said
    /// which answer file it uses. (Here, not in run.rs, so that run.rs does not use this
    /// module, which uses it: no import cycle.)
    pub(crate) fn start_install(&mut self, name: &str) -> Result<Machine> {
        if self.install_from_saved_live_shell
            && let Some(m) = resume_and_install(self, name)?
        {
            return Ok(m);
        }
        self.timed("live boot", |run| {
            let mut m = run.start_medium(name, true)?;
            m.console
                .wait_for("kldload: unattended install with", LIVE_BOOT_TIMEOUT)?;
            Ok(m)
        })
    }
}

/// Why `run` cannot install from the saved shell, if it cannot: the saved machine has the
/// run's medium, a blank target alone beside it (512-byte sectors), fresh NVRAM, no Secure
/// Boot and no download served to it. An encrypted install boots the medium too: its
/// passphrase goes through fw_cfg as a VM user's does, the channel those scenarios are about
/// (and in CI there is one encrypted install, so a saved state for its CPU model would cost
/// more to make than the boot it saves).
fn unsuitable(run: &Run) -> Option<&'static str> {
    let encrypted = kldload::config::Config::load(&run.answers)
        .map(|c| c.encryption.enabled)
        .unwrap_or(true);
    let fresh_nvram = || -> Result<bool> {
        Ok(std::fs::read(&run.nvram)? == std::fs::read(&run.firmware.vars_template)?)
    };
    if !run.target_blank {
        Some("its target is not blank")
    } else if encrypted {
        Some("its passphrase goes through fw_cfg")
    } else if !run.extra_disks.is_empty() || run.target_sector_size.is_some() {
        Some("it has other disks than a blank 16 GiB target")
    } else if run.firmware.secure_boot || !fresh_nvram().unwrap_or(false) {
        Some("its firmware or NVRAM is not the fresh default")
    } else if run.zfsbootmenu_download.is_some() {
        Some("it serves a download to the live system")
    } else if run.medium.file_name() == Some(crate::run::MEDIUM_COPY.as_ref()) {
        Some("it boots a copy of the medium with a file added")
    } else {
        None
    }
}

/// Starts the live medium of `run` from the saved shell, the answer file handed in and the
/// unattended install started: None when the run is [`unsuitable`] (the caller boots the
/// medium). Returns once the install has said which answer file it uses, as a booted medium's
/// does.
fn resume_and_install(run: &mut Run, name: &str) -> Result<Option<Machine>> {
    if let Some(why) = unsuitable(run) {
        eprintln!(
            "the live medium boots for the install: the saved live shell does not fit ({why})"
        );
        return Ok(None);
    }
    let cpu = run.cpu();
    // The machine this run resumes as: the state must be of it.
    let key = saved_state_key(&run.medium_spec(name, false)?)?;
    let (distro, medium) = (run.distro, run.medium.clone());
    let saved = run.timed("saved state of the live medium's shell", |_| {
        saved_live_shell(distro, &medium, cpu, &key)
    })?;
    let mut m = run.timed("resume the live medium's shell", |run| {
        std::fs::copy(saved.join("nvram.fd"), &run.nvram)?;
        let mut spec = run.medium_spec(name, false)?;
        spec.incoming = Some(saved.join("state"));
        run.target_blank = false;
        let mut m = Machine::start(spec, &run.transcript, "resume the live shell")?;
        m.continue_saved()?;
        m.start_shell()?;
        // The clock stopped when the state was saved.
        let now = chrono::Utc::now().timestamp();
        m.succeed(&format!("date -u -s @{now} > /dev/null"))?;
        // Every machine resumed from the state starts with the same random number generator;
        // the VM generation ID QEMU changes on each start makes the kernel reseed it, through
        // this driver. Without it, two installs could make the same keys and pool GUIDs.
        m.succeed("ls -d /sys/bus/*/drivers/vmgenid/*:*")
            .context("the live system has no VM generation ID driver bound")?;
        Ok(m)
    })?;
    run.timed("hand in the answer file, start the install", |run| {
        let answers = std::fs::read_to_string(&run.answers)?;
        m.succeed(&format!(
            "mkdir -p -m 0700 {GUEST_DIR} && cat > {GUEST_DIR}/answers.toml <<'KLDLOAD_ANSWERS'\n\
             {answers}\nKLDLOAD_ANSWERS"
        ))?;
        let properties = [
            "StandardOutput=journal+console",
            "StandardError=journal+console",
            "TimeoutStartSec=infinity",
        ];
        let mut argv = vec![
            "systemd-run".to_string(),
            format!("--unit={UNIT}"),
            "--service-type=oneshot".into(),
            "--no-block".into(),
        ];
        argv.extend(properties.iter().map(|p| format!("--property={p}")));
        argv.extend([
            "/usr/local/bin/kldload".into(),
            "unattended".into(),
            "--answers".into(),
            format!("{GUEST_DIR}/answers.toml"),
        ]);
        m.succeed(&argv.join(" "))?;
        m.console
            .wait_for("kldload: unattended install with", LIVE_BOOT_TIMEOUT)?;
        Ok(())
    })?;
    Ok(Some(m))
}

/// The directory of the medium's saved live shell for `cpu`, a state of the machine `key`
/// describes: made when there is none of it (one boot of the medium, then the save; again when
/// QEMU, the firmware or the harness changed the key).
fn saved_live_shell(distro: Distro, medium: &Path, cpu: Cpu, key: &str) -> Result<PathBuf> {
    let _lock = BaseLock::take(medium)?;
    let dir = medium_entry(medium).join(format!("{DIR_PREFIX}{cpu:?}").to_lowercase());
    if saved_state_is(&dir, key) {
        return Ok(dir);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let mut run = Run::in_dir(distro, dir.clone(), medium.to_owned())?;
    run.cpu_override = Some(cpu);
    // The key of the machine saved, which the resuming run's must equal to be taken.
    let saved_key = saved_state_key(&run.medium_spec("live-shell", false)?)?;
    make_saved_state(&mut run, &saved_key, "the live medium's shell", |run| {
        run.timed("live boot", |run| {
            let mut m = run.start_medium("live-shell", false)?;
            // The consoles' gettys start once the medium's unattended unit has found no answer
            // file: root's autologin shell.
            m.console.wait_for_regex(r"[#$] $", LIVE_BOOT_TIMEOUT)?;
            Ok(m)
        })
    })?;
    Ok(dir)
}
