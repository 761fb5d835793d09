//! One VM run: its directory under target/vmtest/<distro>/, transcript, disks, NVRAM,
//! answer file and report, and what a run does with them: the medium booted with the answer
//! file handed over through fw_cfg, the unattended install, the installed disks booted through
//! the firmware's entry into ZFSBootMenu, whose countdown boots the default boot environment,
//! to a login on the console. Tests and scenario steps call these methods.

use crate::answers::{DEFAULT_ANSWERS, merge_answers, write_answers};
use crate::env::{VmTestEnv, project_root};
use crate::guest::{fingerprints, host_keys_command};
use crate::machine::Machine;
use crate::ovmf::Firmware;
use crate::qemu::{Accel, Cpu, Disk, VmSpec, choose_accel, create_disk, free_port};
use crate::report::Report;
use anyhow::{Context, Result, bail, ensure};
use kldload::config::Distro;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Time limits for each phase: about five times the longest time measured under TCG on a
/// 2-core machine (debian-13 and debian-12, 2026-11), so a hang fails in minutes.
/// Firmware to the live system's installer: measured 21-31 s.
pub const LIVE_BOOT_TIMEOUT: Duration = Duration::from_secs(150);
/// The unattended install, from its first line to its last: measured 32-65 s.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(360);
/// Firmware to ZFSBootMenu's countdown: measured 14-21 s.
pub const MENU_TIMEOUT: Duration = Duration::from_secs(120);
/// ZFSBootMenu's countdown to the installed system's login prompt: measured 33-53 s.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(240);

/// One VM run: its directory, transcript, disks, firmware and report.
pub struct Run {
    pub distro: Distro,
    pub dir: PathBuf,
    pub transcript: PathBuf,
    pub firmware: Firmware,
    pub accel: Accel,
    pub medium: PathBuf,
    pub target: PathBuf,
    pub nvram: PathBuf,
    pub answers: PathBuf,
    pub ssh_key: PathBuf,
    pub ssh_port: u16,
    pub report: Report,
    /// Blank disks a scenario adds after the target (and, on the live medium, after the medium),
    /// serials `kldload-extra-<n>`.
    pub extra_disks: Vec<Disk>,
    /// The target's sector size when a scenario asks for one other than 512 bytes (4Kn).
    pub target_sector_size: Option<u32>,
    /// `zdb -l` of the target's pool as the live system read it after the install, before the
    /// first boot ([`Run::install_and_inspect`]).
    pub label_before_first_boot: Option<String>,
    /// The SSH host keys' fingerprints the install made, read the same way (`SHA256:...`).
    pub host_keys_as_installed: Vec<String>,
    /// The ZFSBootMenu file the answer file's `zfsbootmenu.url` downloads, served from here.
    pub zfsbootmenu_download: Option<crate::serve::FileServer>,
    /// The target disk is as [`Run::in_dir`] made it, blank: no machine has started with it.
    pub target_blank: bool,
    /// The live system may write to the medium (the run's own copy of it), as to a USB stick
    /// ([`Run::make_medium_writable`]); else QEMU gives it read-only.
    pub medium_writable: bool,
    /// The install's answer file goes onto the medium's ESP as answers.toml, as a user copies
    /// it onto the stick ([`Run::answers_on_medium`]), instead of through QEMU's fw_cfg.
    pub answers_on_medium: bool,
    /// Installs may start from the medium's saved live shell (live_state.rs) instead of
    /// booting the medium: for a run whose subject is not the medium's boot or fw_cfg. Off for
    /// the main job and the shared base, which boot the medium as a user's machine does.
    pub install_from_saved_live_shell: bool,
    /// The CPU its machines get whatever the answer file says (the saved live shell's).
    pub cpu_override: Option<Cpu>,
}

/// Files in a run's directory: what [`Run::install_and_inspect`] read on the live system.
pub const LABEL_AS_INSTALLED: &str = "label-as-installed.txt";
pub const HOST_KEYS_AS_INSTALLED: &str = "host-keys-as-installed.txt";
/// An encrypted run's passphrase, in its directory.
pub const PASSPHRASE: &str = "passphrase";

/// The serial of the VM's target disk, and of its `n`th extra disk: what a guest finds them by
/// (/dev/disk/by-id/virtio-<serial>).
pub const TARGET_SERIAL: &str = "kldload-target";

pub fn extra_disk_serial(n: usize) -> String {
    format!("kldload-extra-{n}")
}

/// The guest's path of the disk with `serial`.
pub fn disk_by_serial(serial: &str) -> String {
    format!("/dev/disk/by-id/virtio-{serial}")
}

impl Run {
    /// A run directory target/vmtest/<distro>/<timestamp>-<scenario>/ with a blank target disk.
    pub fn new(distro: Distro, scenario: &str, medium: PathBuf) -> Result<Run> {
        let dir = new_run_dir(distro, scenario)?;
        Run::in_dir(distro, dir, medium)
    }

    /// A run in `dir` with a blank 16 GiB target disk, a fresh NVRAM and its own SSH key.
    pub(crate) fn in_dir(distro: Distro, dir: PathBuf, medium: PathBuf) -> Result<Run> {
        std::fs::create_dir_all(&dir)?;
        let mut run = Run::in_dir_existing(distro, dir, medium)?;
        create_disk(&run.target, "16G", None)?;
        run.target_blank = true;
        run.firmware.new_nvram(&run.nvram)?;
        let status = std::process::Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "kldload-vmtest",
                "-f",
            ])
            .arg(&run.ssh_key)
            .status()
            .context("ssh-keygen (install openssh-client)")?;
        anyhow::ensure!(status.success(), "ssh-keygen failed");
        write_answers(
            &project_root().join(DEFAULT_ANSWERS),
            run.distro,
            &run.ssh_key.with_extension("pub"),
            &run.answers,
        )?;
        Ok(run)
    }

    /// The run installs with `template` (an answer file) instead of the default one; root's SSH
    /// key is the run's, as with the default.
    pub fn install_with_answers(&mut self, template: &Path) -> Result<()> {
        write_answers(
            template,
            self.distro,
            &self.ssh_key.with_extension("pub"),
            &self.answers,
        )
    }

    /// A run in `dir` whose disk, NVRAM, key and answer file are already there.
    pub(crate) fn in_dir_existing(distro: Distro, dir: PathBuf, medium: PathBuf) -> Result<Run> {
        let label_before_first_boot = std::fs::read_to_string(dir.join(LABEL_AS_INSTALLED)).ok();
        let host_keys_as_installed = fingerprints(
            &std::fs::read_to_string(dir.join(HOST_KEYS_AS_INSTALLED)).unwrap_or_default(),
        );
        let firmware = Firmware::resolve(&project_root())?;
        let (accel, why) = choose_accel(&firmware, &dir);
        let report = Report {
            distro: distro.name().to_string(),
            accel: format!("{accel:?}").to_lowercase(),
            accel_reason: why,
            firmware: firmware.origin.clone(),
            origin: Some(Instant::now()),
            ..Default::default()
        };
        Ok(Run {
            distro,
            transcript: dir.join("serial.log"),
            target: dir.join("target.qcow2"),
            nvram: dir.join("nvram.fd"),
            answers: dir.join("answers.toml"),
            ssh_key: dir.join("id_ed25519"),
            dir,
            firmware,
            accel,
            medium,
            ssh_port: free_port()?,
            report,
            extra_disks: Vec::new(),
            target_sector_size: None,
            label_before_first_boot,
            host_keys_as_installed,
            zfsbootmenu_download: None,
            target_blank: false,
            medium_writable: false,
            answers_on_medium: false,
            install_from_saved_live_shell: false,
            cpu_override: None,
        })
    }

    fn spec(&self, name: &str, disks: Vec<Disk>, fw_cfg: Vec<(String, PathBuf)>) -> VmSpec {
        VmSpec {
            name: name.into(),
            accel: self.accel,
            cpu: self.cpu(),
            firmware: self.firmware.clone(),
            nvram: self.nvram.clone(),
            memory_mib: 3072,
            disks,
            fw_cfg,
            ssh_port: Some(self.ssh_port),
            host_reachable: false,
            dir: self.dir.clone(),
            serial_on_stdio: false,
            incoming: None,
        }
    }

    /// The CPU this run's machine gets: AES-NI and AVX when its answer file encrypts the pool
    /// (see [`Cpu::Max`]), else QEMU's default, which boots faster under TCG.
    pub(crate) fn cpu(&self) -> Cpu {
        if let Some(cpu) = self.cpu_override {
            return cpu;
        }
        let encrypted =
            kldload::config::Config::load(&self.answers).is_ok_and(|c| c.encryption.enabled);
        if encrypted { Cpu::Max } else { Cpu::Default }
    }

    /// The machine the saved logged-in state is of, and is resumed as: the target disk alone.
    pub(crate) fn logged_in_spec(&self, name: &str) -> VmSpec {
        self.spec(name, vec![self.target_disk(None)], vec![])
    }

    fn target_disk(&self, boot_index: Option<u32>) -> Disk {
        Disk {
            path: self.target.clone(),
            format: "qcow2",
            serial: TARGET_SERIAL.into(),
            read_only: false,
            boot_index,
            sector_size: self.target_sector_size,
        }
    }

    /// Adds a blank qcow2 disk of `bytes` after the target (and any added before it).
    pub fn add_extra_disk(
        &mut self,
        bytes: u64,
        read_only: bool,
        sector_size: Option<u32>,
    ) -> Result<()> {
        let n = self.extra_disks.len();
        let path = self.dir.join(format!("extra-{n}.qcow2"));
        create_disk(&path, &bytes.to_string(), None)?;
        self.extra_disks.push(Disk {
            path,
            format: "qcow2",
            serial: extra_disk_serial(n),
            read_only,
            boot_index: None,
            sector_size,
        });
        Ok(())
    }

    /// Hands `file` to the machine as a read-only raw disk of its own (a copy, padded to whole
    /// sectors), attached from the next start on: a way in for a file too large for the
    /// harness's shell. The machine reads it back with `head -c <size>` from the returned path.
    pub fn add_file_as_disk(&mut self, file: &Path) -> Result<String> {
        let n = self.extra_disks.len();
        let path = self.dir.join(format!("extra-{n}.raw"));
        std::fs::copy(file, &path)
            .with_context(|| format!("copying {} to {}", file.display(), path.display()))?;
        let size = std::fs::metadata(&path)?.len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)?
            .set_len(size.div_ceil(512) * 512)?;
        let serial = extra_disk_serial(n);
        self.extra_disks.push(Disk {
            path,
            format: "raw",
            serial: serial.clone(),
            read_only: true,
            boot_index: None,
            sector_size: None,
        });
        Ok(disk_by_serial(&serial))
    }

    /// Attaches the update stick `image` ([`crate::test_update`]) after the disks added so far,
    /// read-only (the image is the build cache's, shared by every run).
    pub fn attach_update_stick(&mut self, image: &Path) {
        self.extra_disks.push(Disk {
            path: image.to_owned(),
            format: "raw",
            serial: crate::test_update::STICK_SERIAL.into(),
            read_only: true,
            boot_index: None,
            sector_size: None,
        });
    }

    /// Starts the live medium: the target is the first virtio disk (/dev/vda), the medium the
    /// second (/dev/vdb), extra disks after them. With `answers`, the answer file is handed over
    /// through fw_cfg and the live system installs by itself; without, it waits at a shell.
    pub fn start_medium(&mut self, name: &str, answers: bool) -> Result<Machine> {
        let spec = self.medium_spec(name, answers)?;
        self.target_blank = false;
        Machine::start(spec, &self.transcript, "live boot")
    }

    /// The machine [`Run::start_medium`] starts.
    pub(crate) fn medium_spec(&mut self, name: &str, answers: bool) -> Result<VmSpec> {
        let medium = Disk {
            path: self.medium.clone(),
            format: "raw",
            serial: "kldload-medium".into(),
            read_only: !self.medium_writable,
            boot_index: Some(0),
            sector_size: None,
        };
        // Every disk gets a place in QEMU's boot order, the medium first: OVMF deletes each
        // firmware entry that matches no disk in that order, and a user booting a rescue
        // medium keeps the machine's own entries.
        let mut disks = vec![self.target_disk(Some(1)), medium];
        disks.extend(self.extra_disks.iter().zip(2..).map(|(d, n)| Disk {
            boot_index: Some(n),
            ..d.clone()
        }));
        let mut fw_cfg = vec![];
        if answers && self.answers_on_medium {
            // As a user does: the answer file copied onto the stick, nothing through fw_cfg.
            self.put_on_medium(&self.answers.clone(), kldload::medium::ESP_ANSWERS)?;
        } else if answers {
            fw_cfg.push((
                kldload::medium::FW_CFG_ANSWERS_NAME.into(),
                self.answers.clone(),
            ));
            let config = kldload::config::Config::load(&self.answers)?;
            if config.encryption.enabled {
                self.passphrase()?;
                fw_cfg.push((
                    kldload::medium::FW_CFG_PASSPHRASE_NAME.into(),
                    self.dir.join(PASSPHRASE),
                ));
            }
        }
        let mut spec = self.spec(name, disks, fw_cfg);
        // The live system downloads what the harness serves.
        spec.host_reachable = self.zfsbootmenu_download.is_some();
        Ok(spec)
    }

    /// Boots the medium with the answer file and waits for the unattended install to end and the
    /// VM to power off.
    pub fn install(&mut self) -> Result<()> {
        let mut m = self.install_until_done()?;
        self.timed("power off", |_| {
            m.vm.wait_exit(Duration::from_secs(180))
                .context("the live system did not power off after the install")
        })?;
        Ok(())
    }

    /// Installs with the answer file's `after_install` set to "shell", then, on the live system,
    /// reads what the install left before anything boots it: the pool's label (every import
    /// rewrites its hostid) and, from a read-only import (which writes nothing), the SSH host
    /// keys' fingerprints. Both are kept in the run and in its directory
    /// ([`LABEL_AS_INSTALLED`], [`HOST_KEYS_AS_INSTALLED`]); then the live system powers off.
    pub fn install_and_inspect(&mut self) -> Result<()> {
        let mut changes = toml::Table::new();
        changes.insert("after_install".into(), "shell".into());
        merge_answers(&self.answers, &changes)?;
        let config = kldload::config::Config::load(&self.answers)?;
        let pool = config.pool.name.as_str().to_string();
        let mut m = self.install_until_done()?;
        self.timed("inspect the install, power off", |run| {
            if !m.has_shell() {
                // The consoles' gettys start once the install's service ends: root's autologin
                // shell. (A live system resumed at its shell has the harness's shell already.)
                m.console
                    .wait_for_regex(r"[#$] $", Duration::from_secs(120))?;
                m.start_shell()?;
            }
            let vdev = kldload::disk::naming::partition_path(
                Path::new("/dev/vda"),
                kldload::recipe::partition::ZFS_PARTITION,
            );
            let label = m.succeed(&format!("zdb -l {}", vdev.display()))?;
            // The export may find the pool busy (seen once): a service starting on the live
            // system just then copied the mount into its own namespace. The import is read-only
            // and so is what is left of it at the poweroff: nothing is written either way.
            // The boot environment's encryption root, if any, unlocked from the key file the
            // install left on the live system.
            let load_key = config
                .encryption
                .encryption_root(&pool, "ROOT/default")
                .map(|root| format!("zfs load-key {root}; "))
                .unwrap_or_default();
            let keys = m.succeed(&format!(
                "set -e; zpool import -N -o readonly=on -R /run/inspect {pool}; {load_key}\
                 zfs mount {pool}/ROOT/default; \
                 {}; \
                 zpool export {pool} || echo 'kept imported read-only until the poweroff' >&2",
                host_keys_command("/run/inspect")
            ))?;
            let keys = fingerprints(&keys);
            if config.encryption.enabled {
                let passphrase = run.passphrase()?;
                let result = crate::guest::passphrase_absent(&mut m, &passphrase);
                run.report.check(
                    "the passphrase is in no log, journal line, argv or environment of the live \
                     system after the install",
                    result,
                );
            }
            std::fs::write(run.dir.join(LABEL_AS_INSTALLED), &label)?;
            std::fs::write(run.dir.join(HOST_KEYS_AS_INSTALLED), keys.join("\n"))?;
            run.label_before_first_boot = Some(label);
            run.host_keys_as_installed = keys;
            m.shutdown(Duration::from_secs(180))
                .context("the live system did not power off after the inspection")
        })
    }

    /// Starts the install ([`Run::start_install`]) and kills QEMU as soon as the console shows
    /// `pattern` (a regex): the install interrupted there, as by a power cut.
    /// Boots the medium with the answer file, whose unattended install must fail with a last
    /// line matching `pattern` (a regex); then logs in to the shell the live system leaves
    /// (`after_failure`), which the returned machine has. Also returns that line.
    pub fn install_failing(&mut self, pattern: &str) -> Result<(Machine, String)> {
        use kldload::unattended::{FAILURE_LINE, SUCCESS_LINE};
        let mut m = self.start_install("install")?;
        let either = format!(
            "({}|{}[^\r\n]*)",
            regex::escape(SUCCESS_LINE),
            regex::escape(FAILURE_LINE)
        );
        let (_, last) = self.timed("install, to its failure", |_| {
            m.console.wait_for_regex(&either, INSTALL_TIMEOUT)
        })?;
        ensure!(
            last.starts_with(FAILURE_LINE),
            "the install succeeded; it was to fail with {pattern:?}"
        );
        ensure!(
            regex::Regex::new(pattern)?.is_match(&last),
            "the install failed, but not as expected ({pattern:?}): {last:?}"
        );
        m.console.wait_for_regex(r"[#$] $", LIVE_BOOT_TIMEOUT)?;
        m.start_shell()?;
        Ok((m, last))
    }

    pub fn install_killed_when(&mut self, pattern: &str) -> Result<String> {
        let mut m = self.start_install("install")?;
        let (_, found) = m
            .console
            .wait_for_regex(pattern, LIVE_BOOT_TIMEOUT + INSTALL_TIMEOUT)?;
        m.crash()?;
        Ok(format!("QEMU killed when the console showed {found:?}"))
    }

    /// Boots the medium without an answer file (it installs nothing by itself), logs in to its
    /// shell and puts the run's answer file at `path` there, for a person's (or a scenario's)
    /// commands to use.
    pub fn boot_live_with_answers_at(&mut self, path: &str) -> Result<Machine> {
        let mut m = self.start_medium("live", false)?;
        m.console.wait_for_regex(r"[#$] $", LIVE_BOOT_TIMEOUT)?;
        m.start_shell()?;
        let answers = std::fs::read_to_string(&self.answers)?;
        m.succeed(&format!(
            "cat > {path} <<'KLDLOAD_ANSWERS'\n{answers}\nKLDLOAD_ANSWERS"
        ))?;
        Ok(m)
    }

    /// The run's pool and the encryption root of its default boot environment (what
    /// ZFSBootMenu asks the passphrase of), or an error when the answer file encrypts nothing.
    pub fn encryption_root_of_default_be(&self) -> Result<(String, String)> {
        let config = kldload::config::Config::load(&self.answers)?;
        let pool = config.pool.name.as_str().to_string();
        let root = config
            .encryption
            .encryption_root(&pool, "ROOT/default")
            .context("the answer file's pool is not encrypted")?;
        Ok((pool, root))
    }

    /// Searches the running machine `m` and the run's files on the host for the passphrase.
    pub fn passphrase_nowhere(&self, m: &mut Machine) -> Result<String> {
        let passphrase = self.passphrase()?;
        let on_machine = crate::guest::passphrase_absent(m, &passphrase)?;
        let mut searched = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let text_like = path.extension().is_some_and(|e| {
                ["log", "json", "xml", "toml", "txt"].contains(&e.to_str().unwrap_or(""))
            });
            if !text_like {
                continue;
            }
            let bytes = std::fs::read(&path)?;
            ensure!(
                !bytes
                    .windows(passphrase.len())
                    .any(|w| w == passphrase.as_bytes()),
                "the passphrase is in {}",
                path.display()
            );
            searched += 1;
        }
        Ok(format!(
            "{on_machine}; nor in the run's {searched} log, report and transcript files"
        ))
    }

    /// Starts the install ([`Run::start_install`]) and waits for the unattended install's last
    /// line: the live system is still up.
    fn install_until_done(&mut self) -> Result<Machine> {
        let mut m = self.start_install("install")?;
        self.timed("install", |run| {
            m.console.phase = "install".into();
            let (i, _) = m.console.wait_for_any(
                &[
                    kldload::unattended::SUCCESS_LINE,
                    kldload::unattended::FAILURE_LINE,
                ],
                INSTALL_TIMEOUT,
            )?;
            if i == 1 {
                let line = m
                    .console
                    .wait_for("\n", Duration::from_secs(10))
                    .unwrap_or_default();
                bail!(
                    "the install failed: {}{line}\nlast 50 lines of {}:\n{}",
                    kldload::unattended::FAILURE_LINE,
                    run.transcript.display(),
                    crate::console::transcript_tail(&run.transcript, 50)
                );
            }
            Ok(())
        })?;
        Ok(m)
    }

    /// Starts the installed machine (the target and any extra disks, no medium) with the run's
    /// NVRAM; returns at once, for a scenario to drive the firmware and ZFSBootMenu itself.
    pub fn start_installed(&mut self, name: &str) -> Result<Machine> {
        self.start_installed_with(name, None, None)
    }

    /// Starts the installed machine with only the disks named in `attached` (`target`,
    /// `extra-0`, ...; all of them when None), in that order: a disk pulled out, or one back.
    /// `boot_from` names a disk the firmware boots first (QEMU's bootindex), as a person picks
    /// one in the firmware's boot menu; the firmware then loads its EFI/BOOT/BOOTX64.EFI.
    pub fn start_installed_with(
        &mut self,
        name: &str,
        attached: Option<&[String]>,
        boot_from: Option<&str>,
    ) -> Result<Machine> {
        let mut all = vec![("target".to_string(), self.target_disk(None))];
        all.extend(
            self.extra_disks
                .iter()
                .enumerate()
                .map(|(n, d)| (format!("extra-{n}"), d.clone())),
        );
        if let Some(first) = boot_from {
            ensure!(
                all.iter().any(|(n, _)| n == first),
                "no disk {first:?} to boot from"
            );
            // That disk first in QEMU's boot order, the others after it: OVMF deletes the
            // firmware entries of disks left out of that order (see `start_medium`).
            let mut next = 1..;
            for (name, disk) in &mut all {
                disk.boot_index = Some(if name == first {
                    0
                } else {
                    next.next().unwrap_or(1)
                });
            }
        }
        let disks = match attached {
            None => all.into_iter().map(|(_, d)| d).collect(),
            Some(names) => names
                .iter()
                .map(|want| {
                    all.iter()
                        .find(|(n, _)| n == want)
                        .map(|(_, d)| d.clone())
                        .with_context(|| {
                            let known: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
                            format!("no disk {want:?}: this run has {}", known.join(", "))
                        })
                })
                .collect::<Result<Vec<Disk>>>()?,
        };
        let spec = self.spec(name, disks, vec![]);
        self.target_blank = false;
        Machine::start(spec, &self.transcript, "firmware to menu")
    }

    /// Boots the installed disk alone through the firmware into ZFSBootMenu and logs in.
    pub fn boot_installed(&mut self, name: &str) -> Result<Machine> {
        self.boot_installed_timed_as(name, "")
    }

    /// The same, its phases named with `label` after them (`firmware to menu{label}`), for a
    /// test that compares two boots.
    pub fn boot_installed_timed_as(&mut self, name: &str, label: &str) -> Result<Machine> {
        let mut m = self.boot_to_console_login(name, label)?;
        m.start_shell()?;
        Ok(m)
    }

    /// Boots the installed disk alone through the firmware and ZFSBootMenu's countdown, and
    /// logs in as root on the console: the harness has no shell of its own yet.
    pub(crate) fn boot_to_console_login(&mut self, name: &str, label: &str) -> Result<Machine> {
        let to_menu = format!("firmware to menu{label}");
        let mut m = self.timed(&to_menu, |run| {
            let mut m = run.start_installed(name)?;
            m.console.phase = to_menu.clone();
            m.console.wait_for("ROOT/default", MENU_TIMEOUT)?;
            Ok(m)
        })?;
        let to_login = format!("menu to login{label}");
        self.timed(&to_login, |_| {
            m.console.phase = to_login.clone();
            m.console_login_root(LOGIN_TIMEOUT)
        })?;
        Ok(m)
    }

    /// Records the named check `check` makes: what it found, or why it failed. A failed check
    /// is reported and the test goes on.
    pub fn check(&mut self, name: &str, check: impl FnOnce() -> Result<String>) {
        let start = Instant::now();
        let result = check();
        self.report.timed_check(name, start, result);
    }

    /// Runs `f` as the phase `phase`, its wall time in the report whether it succeeds or not.
    pub fn timed<T>(&mut self, phase: &str, f: impl FnOnce(&mut Run) -> Result<T>) -> Result<T> {
        let start = Instant::now();
        let result = f(self);
        self.report.phase(phase, start.elapsed());
        result
    }

    /// The run's pool passphrase (an encrypted install's): made at random for the run and kept
    /// in its directory ([`PASSPHRASE`]), whence fw_cfg hands it to the unattended install.
    /// Random, so a search of logs and transcripts for it finds only a leak.
    pub fn passphrase(&self) -> Result<String> {
        let path = self.dir.join(PASSPHRASE);
        if let Ok(p) = std::fs::read_to_string(&path) {
            return Ok(p);
        }
        let mut bytes = [0u8; 12];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
        let p = format!("kldload-vmtest-{}", hex::encode(bytes));
        std::fs::write(&path, &p)?;
        Ok(p)
    }

    /// A copy of a file on the medium's ESP (a FAT filesystem at 1 MiB, read with mtools).
    pub fn medium_file(&self, path: &str) -> Result<tempfile::NamedTempFile> {
        let copy = tempfile::NamedTempFile::new()?;
        let out = std::process::Command::new("mcopy")
            .arg("-o")
            .arg("-i")
            .arg(esp_of(&self.medium))
            .arg(format!("::/{path}"))
            .arg(copy.path())
            .output()
            .context("mcopy (install mtools)")?;
        anyhow::ensure!(
            out.status.success(),
            "reading {path} from the medium {}: {}",
            self.medium.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(copy)
    }

    /// Secure Boot on from now on: the firmware's Secure Boot build with Microsoft's keys, and a
    /// fresh NVRAM; with `enroll_mok`, the medium's MOK certificate (mok.der) enrolled in it, as
    /// a machine is once its owner has enrolled it with `mokutil --import` and MokManager.
    pub fn secure_boot(&mut self, enroll_mok: bool) -> Result<()> {
        self.firmware = Firmware::secure_boot()?;
        self.firmware.new_nvram(&self.nvram)?;
        if enroll_mok {
            let mok = self.medium_file("mok.der")?;
            Firmware::enroll_mok(&self.nvram, mok.path())?;
        }
        self.report.firmware = self.firmware.origin.clone();
        Ok(())
    }

    /// Secure Boot turned on or off from now on, as its owner does in the firmware's setup: the
    /// same firmware (the Secure Boot build, [`Run::secure_boot`]) and NVRAM (its entries, keys
    /// and shim's MokList), `SecureBootEnable` set.
    pub fn set_secure_boot_keeping_nvram(&mut self, on: bool) -> Result<()> {
        Firmware::set_secure_boot(&self.nvram, on)?;
        self.report.firmware = format!(
            "{}, then Secure Boot turned {}",
            self.report.firmware,
            if on { "on" } else { "off" }
        );
        Ok(())
    }

    /// The sha256 of a file on the medium's ESP.
    pub fn medium_file_sha256(&self, path: &str) -> Result<String> {
        Ok(kldload::hash::file_sha256(self.medium_file(path)?.path())?)
    }

    /// The run boots its own copy of the medium from now on (made once; the cache's stays as
    /// built).
    fn copy_medium(&mut self) -> Result<()> {
        let copy = self.dir.join(MEDIUM_COPY);
        if self.medium == copy {
            return Ok(());
        }
        let status = std::process::Command::new("cp")
            .arg("--sparse=always")
            .arg(&self.medium)
            .arg(&copy)
            .status()?;
        anyhow::ensure!(status.success(), "copying the medium to {}", copy.display());
        self.medium = copy;
        Ok(())
    }

    /// The live system may write to the medium from now on, as to a USB stick: the run's own
    /// copy, given to QEMU writable ([`Run::medium_file`] reads what it wrote after the VM is
    /// off).
    pub fn make_medium_writable(&mut self) -> Result<()> {
        self.copy_medium()?;
        self.medium_writable = true;
        Ok(())
    }

    /// From now on the medium boots with the run's answer file on its ESP (answers.toml, copied
    /// there at each boot of the medium, as it is then), as a user puts it on the stick, and
    /// none through fw_cfg.
    pub fn answers_on_medium(&mut self) -> Result<()> {
        self.copy_medium()?;
        self.answers_on_medium = true;
        Ok(())
    }

    /// Copies `file` onto the run's copy of the medium as `name` on its ESP (mtools).
    fn put_on_medium(&self, file: &Path, name: &str) -> Result<()> {
        anyhow::ensure!(
            self.medium == self.dir.join(MEDIUM_COPY),
            "the medium is the cache's, not this run's copy: nothing is written to it"
        );
        let out = std::process::Command::new("mcopy")
            .arg("-o")
            .arg("-i")
            .arg(esp_of(&self.medium))
            .arg(file)
            .arg(format!("::/{name}"))
            .output()
            .context("mcopy (install mtools)")?;
        anyhow::ensure!(
            out.status.success(),
            "copying {} onto the medium's ESP: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Installs `file` as ZFSBootMenu the way a user gives a file of their own: copied onto the
    /// medium's ESP (the run boots a copy of the medium from now on) and named in the answer
    /// file's `zfsbootmenu.source`.
    pub fn install_zfsbootmenu_file(&mut self, file: &Path) -> Result<()> {
        const NAME: &str = "given-zfsbootmenu.EFI";
        self.copy_medium()?;
        self.put_on_medium(file, NAME)?;
        let source = format!("{}/{NAME}", kldload::medium::MOUNT);
        let changes: toml::Table = toml::from_str(&format!("zfsbootmenu.source = {source:?}"))?;
        merge_answers(&self.answers, &changes)
    }

    /// Installs `file` as ZFSBootMenu downloaded by URL, as a user names one in
    /// `zfsbootmenu.url` (with its `sha256`): served from the host for the live system, which
    /// fetches it before touching any disk.
    pub fn download_zfsbootmenu_file(&mut self, file: &Path) -> Result<()> {
        let server = crate::serve::FileServer::start(file, "zfsbootmenu.EFI", &self.transcript)?;
        let mut changes = toml::Table::new();
        let mut z = toml::Table::new();
        z.insert("url".into(), server.guest_url().into());
        z.insert("sha256".into(), kldload::hash::file_sha256(file)?.into());
        changes.insert("zfsbootmenu".into(), z.into());
        merge_answers(&self.answers, &changes)?;
        self.zfsbootmenu_download = Some(server);
        Ok(())
    }

    /// A copy of the ZFSBootMenu EFI file the run installs: the download it serves, else the
    /// file the answer file names on the medium.
    fn zfsbootmenu_given(&self) -> Result<tempfile::NamedTempFile> {
        match &self.zfsbootmenu_download {
            Some(server) => {
                let copy = tempfile::NamedTempFile::new()?;
                std::fs::copy(&server.file, copy.path())?;
                Ok(copy)
            }
            None => self.medium_file(&self.zfsbootmenu_on_medium()?),
        }
    }

    /// The ZFSBootMenu EFI file the run's answer file installs, as a path on the medium's ESP:
    /// the file `zfsbootmenu.source` names there, else the medium's own.
    fn zfsbootmenu_on_medium(&self) -> Result<String> {
        use kldload::config::ZbmChoice;
        let config = kldload::config::Config::load(&self.answers)?;
        match &config.zfsbootmenu.source {
            None | Some(ZbmChoice::Built) => Ok(kldload::medium::ESP_ZFSBOOTMENU.into()),
            Some(ZbmChoice::File(path)) => kldload::medium::on_esp(&path.to_string_lossy())
                .map(str::to_string)
                .with_context(|| {
                    format!("the VM tests give ZFSBootMenu on the medium, not {path:?}")
                }),
            Some(ZbmChoice::Release) => {
                anyhow::bail!("the VM tests install no ZFSBootMenu release download")
            }
        }
    }

    /// The sha256 the ZFSBootMenu EFI files on the ESPs must have: the file the answer file
    /// chose on the medium with `embedded` as its command line (left as it is when the file is
    /// signed or has no room, as the installer does).
    pub fn installed_zfsbootmenu_sha256(&self, embedded: &str) -> Result<String> {
        let file = self.zfsbootmenu_given()?;
        let _kept = kldload::zbm::image::set_cmdline(file.path(), embedded)?;
        Ok(kldload::hash::file_sha256(file.path())?)
    }
    /// The hostid the install must have written everywhere: the one inside the ZFSBootMenu it
    /// installed (read as the installer reads it), else kldload's.
    pub fn expected_hostid(&self) -> Result<u32> {
        let file = self.zfsbootmenu_given()?;
        let image = kldload::zbm::image::read(file.path())?;
        Ok(image.hostid.unwrap_or(kldload::config::ZFSBOOTMENU_HOSTID))
    }

    /// Writes the report; the disks and NVRAM stay only with `--keep` (for `cargo xtask vm-shell`).
    pub fn finish(&mut self) -> Result<()> {
        self.report.write(&self.dir)?;
        if !VmTestEnv::from_env()?.keep {
            let _ = std::fs::remove_file(&self.target);
            let _ = std::fs::remove_file(&self.nvram);
            // Only the run's own: a disk from elsewhere (the update stick in the build cache)
            // is shared by every run.
            for disk in self
                .extra_disks
                .iter()
                .filter(|d| d.path.starts_with(&self.dir))
            {
                let _ = std::fs::remove_file(&disk.path);
            }
            let _ = std::fs::remove_file(self.dir.join(MEDIUM_COPY));
        }
        println!("{}", self.report.table());
        println!(
            "transcript: {}\nreport: {}",
            self.transcript.display(),
            self.dir.join("report.json").display()
        );
        Ok(())
    }
}

/// Runs a scenario on a copy of the shared base install: `body` records its named checks and
/// phases in the run's report; an error stops it. The report, transcript and JUnit file are
/// written whatever happened, and the test fails unless every check passed.
pub fn scenario_on_installed_base(scenario: &str, body: impl FnOnce(&mut Run) -> Result<()>) {
    let env = VmTestEnv::from_env().unwrap();
    let medium = env.medium().unwrap();
    let start = Instant::now();
    let mut run = match Run::on_installed_base(env.distro, scenario, medium.clone()) {
        Ok(run) => run,
        Err(e) => {
            // No base, no scenario: its report still says why.
            let mut run = Run::new(env.distro, scenario, medium).unwrap();
            run.report.error = Some(format!("{e:#}"));
            run.finish().unwrap();
            panic!("{}", run.report.failure_text());
        }
    };
    run.report.origin = Some(start);
    run.report.phase("base install", start.elapsed());
    run_body(run, "scenario", body);
}

/// Runs a test on a blank target disk and a fresh NVRAM (the main job): `body` records its
/// checks and phases; the report is written whatever happened, and the test fails unless every
/// check passed.
pub fn test_on_blank_disk(name: &str, body: impl FnOnce(&mut Run) -> Result<()>) {
    let env = VmTestEnv::from_env().unwrap();
    let run = Run::new(env.distro, name, env.medium().unwrap()).unwrap();
    run_body(run, "test", body);
}

fn run_body(mut run: Run, phase: &str, body: impl FnOnce(&mut Run) -> Result<()>) {
    if let Err(e) = run.timed(phase, body) {
        run.report.error = Some(format!("{e:#}"));
    }
    run.finish().unwrap();
    assert!(run.report.passed(), "{}", run.report.failure_text());
}

/// The medium's ESP inside its disk image `medium`, as mtools names it (`image@@1M`).
pub fn esp_of(medium: &Path) -> String {
    format!("{}@@{}M", medium.display(), kldload::medium::ESP_OFFSET_MIB)
}

/// A run's own copy of the medium, with files added to its ESP.
pub(crate) const MEDIUM_COPY: &str = "medium.img";

/// The list of the run directories a `vm-test` run made, in its results root: each run adds its
/// own as it starts, and xtask reads the list back ([`runs_of`]) instead of guessing by time.
fn runs_list(out: &Path, run_id: &str) -> PathBuf {
    out.join("runs").join(format!("{run_id}.txt"))
}

/// A new run directory `<results root>/<distro>/<timestamp>-<name>`, made and added to this
/// `vm-test` run's list.
pub(crate) fn new_run_dir(distro: Distro, name: &str) -> Result<PathBuf> {
    let env = VmTestEnv::from_env()?;
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    let out = env.results_root();
    let dir = out.join(distro.name()).join(format!("{stamp}-{name}"));
    std::fs::create_dir_all(&dir)?;
    if let Some(id) = &env.run_id {
        let list = runs_list(&out, id);
        std::fs::create_dir_all(list.parent().expect("in runs/"))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&list)?;
        std::io::Write::write_all(&mut f, format!("{}\n", dir.display()).as_bytes())?;
    }
    Ok(dir)
}

/// The run directories the `vm-test` run `run_id` made under `out`, in the order they started.
pub fn runs_of(out: &Path, run_id: &str) -> Vec<PathBuf> {
    std::fs::read_to_string(runs_list(out, run_id))
        .unwrap_or_default()
        .lines()
        .map(PathBuf::from)
        .collect()
}

/// The newest kept run of `distro` (a `<timestamp>-<name>` directory with its target disk and
/// NVRAM: a run made with `--keep`), for `vm-shell`. Timestamps sort as their names do.
pub fn latest_kept_run(out: &Path, distro: Distro) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out.join(distro.name()))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy()
                    .starts_with(|c: char| c.is_ascii_digit())
            })
        })
        .collect();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .find(|d| d.join("target.qcow2").is_file() && d.join("nvram.fd").is_file())
}

/// Boots a kept run's target disk with its NVRAM, the serial console on this terminal.
pub fn vm_shell(distro: Distro, run_dir: &Path) -> Result<()> {
    let run = Run::in_dir_existing(distro, run_dir.to_owned(), PathBuf::new())?;
    eprintln!(
        "{} ({}); ssh: port forwarded from 127.0.0.1:{}",
        run.report.accel, run.report.accel_reason, run.ssh_port
    );
    let mut spec = run.spec("shell", vec![run.target_disk(None)], vec![]);
    spec.serial_on_stdio = true;
    crate::qemu::run_interactive(&spec)?;
    Ok(())
}
