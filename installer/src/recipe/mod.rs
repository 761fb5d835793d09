//! The recipe: `Config -> Plan`, pure and deterministic. One module per step, in install order:
//!
//! 1. [`partition`]: GPT, an ESP and a ZFS partition on each disk.
//! 2. [`pool`]: the pool and its datasets.
//! 3. [`base_os`]: the base system onto the pool.
//! 4. [`system_configuration`]: hostname, network, root's login, sshd, time zone, locale, fstab.
//! 5. [`initramfs`]: hostid and an initramfs that imports the pool.
//! 6. [`boot_menu`]: ZFSBootMenu on the ESP, its fallback copy and firmware entries.
//! 7. [`finalize`]: zpool.cache, ZFS services, the `@factory` snapshot, unmount, export.
//!
//! Nothing here touches the machine: the same inputs give the same plan, which is what makes
//! `kldload plan`, the golden tests and the property tests possible.

pub mod base_os;
pub mod boot_menu;
pub mod finalize;
pub mod initramfs;
pub mod partition;
pub mod pool;
pub mod system_configuration;

use crate::config::{Config, MirrorUrl, ZFSBOOTMENU_HOSTID};
use crate::disk::naming::partition_path;
use crate::plan::{Plan, Step};
use crate::zbm::image::ZbmImage;
use crate::zbm::source::ZbmSource;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Where the target is mounted while it is built.
pub const TARGET_ROOT: &str = "/mnt";

/// Everything the recipe needs, resolved from the answer file and the machine beforehand.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub config: &'a Config,
    /// The target disks (resolved from paths or a filter), in pool order.
    pub disks: Vec<PathBuf>,
    /// Where the base system comes from.
    pub source: BaseSource,
    /// The mirror the installed system's package manager uses (answer file, `--mirror`, or the
    /// live system's own apt sources); none leaves the image's sources as they are.
    pub mirror: Option<MirrorUrl>,
    pub zfsbootmenu: ZbmSource,
    /// What ZFSBootMenu's EFI file carries, read from it beforehand (`crate::zbm::image`) when
    /// it is a local file; none for a download in `kldload plan` (`kldload install` fetches it
    /// first and plans again from the file).
    pub zbm_image: Option<ZbmImage>,
    /// The newest `openzfs-X.Y` feature set the live system's ZFS (the one that creates the
    /// pool) has in its compatibility.d; none when it has none.
    pub live_zfs_features: Option<String>,
    /// Whether the ESP boots through shim (`secure_boot.mode`, "auto" resolved against the live
    /// system's firmware): shim and MokManager from the medium, ZFSBootMenu signed.
    pub secure_boot: bool,
    /// Whether the install asks shim to enroll the medium's MOK at the next boot
    /// (`secure_boot.enroll_mok_password_hash`, unless this machine trusts it already).
    pub enroll_mok: bool,
    /// The kldload binary to put on the target for `kldload doctor` (the live system's own,
    /// [`LIVE_KLDLOAD`]; none when not installing from a live medium).
    pub installer: Option<PathBuf>,
}

/// Where the live medium carries the installer. It is copied from there rather than from
/// `current_exe()` so the plan is the same wherever it is printed (the golden tests' fake live
/// root has this path too).
pub const LIVE_KLDLOAD: &str = "/usr/local/bin/kldload";

/// Shell completion scripts the medium carries for the binary (`kldload completions SHELL`),
/// by shell; the install copies them onto the target at the same paths.
pub const COMPLETIONS: [(&str, &str); 3] = [
    ("bash", "/usr/share/bash-completion/completions/kldload"),
    ("zsh", "/usr/share/zsh/vendor-completions/_kldload"),
    ("fish", "/usr/share/fish/vendor_completions.d/kldload.fish"),
];

/// The manual page the medium carries (`kldload man`); copied onto the target too.
pub const MANUAL: &str = "/usr/local/share/man/man8/kldload.8";

/// Everything the medium carries beside [`LIVE_KLDLOAD`] that the install copies onto the
/// target, each with what it is: the image's id ([`crate::version::IMAGE_ID_FILE`], for
/// `kldload --version`), the manual page and the completions.
pub fn live_kldload_files() -> Vec<(&'static str, String)> {
    let mut files = vec![
        (
            crate::version::IMAGE_ID_FILE,
            "the id of the image installed from, for `kldload --version`".to_string(),
        ),
        (
            crate::upgrade::UPDATE_KEY_FILE,
            "the public key updates must be signed with, for `kldload upgrade`".to_string(),
        ),
        (MANUAL, "kldload's manual page, kldload(8)".to_string()),
    ];
    files.extend(COMPLETIONS.map(|(shell, path)| (path, format!("kldload's {shell} completion"))));
    files
}

impl Inputs<'_> {
    /// A path inside the target, e.g. `target("etc/hostname")` -> `/mnt/etc/hostname`.
    pub fn target(&self, path: &str) -> String {
        format!("{TARGET_ROOT}/{}", path.trim_start_matches('/'))
    }

    /// The hostid the install writes everywhere (the live system before `zpool create`, the
    /// target's /etc/hostid and initramfs): the one inside ZFSBootMenu's EFI file, which it
    /// imports with and passes on as `spl.spl_hostid`; without one, the value ZFSBootMenu then
    /// uses, 0x00bab10c.
    pub fn hostid(&self) -> u32 {
        self.zbm_image
            .as_ref()
            .and_then(|image| image.hostid)
            .unwrap_or(ZFSBOOTMENU_HOSTID)
    }

    /// The pool's `compatibility=`: the features both its readers at boot know, so that no
    /// `zpool upgrade` can enable one ZFSBootMenu cannot import with: the older of ZFSBootMenu's
    /// set (read in its EFI file) and the live system's newest (the boot environment's ZFS
    /// when it installs the payload of its own medium; a mirror install may bring another).
    /// Not knowing ZFSBootMenu's (a download in `kldload plan`), the live system's, which the
    /// release (OpenZFS 2.4) reads. None when the live system has no set.
    pub fn pool_compatibility(&self) -> Option<String> {
        let live = self.live_zfs_features.as_deref()?;
        let zbm = self
            .zbm_image
            .as_ref()
            .and_then(|image| image.zfs_features.as_ref())
            .map_or(live, |set| set.name.as_str());
        Some(crate::zbm::image::older_openzfs(zbm, live).to_string())
    }

    /// [`Self::hostid`] as zgenhostid takes it (`0x` and eight hex digits).
    pub fn hostid_arg(&self) -> String {
        format!("0x{:08x}", self.hostid())
    }

    pub fn pool(&self) -> &str {
        self.config.pool.name.as_str()
    }

    /// `<pool>/<path>`.
    pub fn dataset(&self, path: &str) -> String {
        format!("{}/{path}", self.pool())
    }

    /// The boot environment the install creates.
    pub fn boot_environment(&self) -> String {
        self.dataset("ROOT/default")
    }

    pub fn esp_partition(&self, disk: &Path) -> PathBuf {
        partition_path(disk, partition::ESP_PARTITION)
    }

    pub fn zfs_partition(&self, disk: &Path) -> PathBuf {
        partition_path(disk, partition::ZFS_PARTITION)
    }

    /// The FAT volume id of the ESP on disk `index`: derived from the answer file so the plan is
    /// deterministic and fstab can name the ESP (`UUID=XXXX-XXXX`) before it exists.
    pub fn esp_volume_id(&self, index: usize) -> String {
        let mut h = Sha256::new();
        h.update(self.config.hostname.as_str());
        h.update(self.pool());
        h.update(self.disks[index].to_string_lossy().as_bytes());
        h.update(index.to_le_bytes());
        hex::encode(&h.finalize()[..4]).to_uppercase()
    }

    /// The volume id as fstab and blkid write it: `ABCD-1234`.
    pub fn esp_uuid(&self, index: usize) -> String {
        let id = self.esp_volume_id(index);
        format!("{}-{}", &id[..4], &id[4..])
    }

    /// Runs a program inside the target.
    pub fn chroot<'s>(&self, argv: impl IntoIterator<Item = &'s str>) -> Vec<String> {
        let mut v = vec!["chroot".to_string(), TARGET_ROOT.to_string()];
        v.extend(argv.into_iter().map(str::to_string));
        v
    }
}

/// Where the base system comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseSource {
    /// A payload tarball made at image build time (the fast path).
    Image(PathBuf),
    /// Packages from a mirror, installed with the distro's own tool.
    Mirror(MirrorUrl),
}

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Unsupported(String),
}

/// The whole install plan.
pub fn build_plan(inputs: &Inputs) -> Result<Plan, PlanError> {
    let mut steps: Vec<Step> = boot_menu::fetch_step(inputs).into_iter().collect();
    steps.extend([
        partition::step(inputs),
        pool::step(inputs),
        base_os::step(inputs)?,
        system_configuration::step(inputs),
        initramfs::step(inputs),
        boot_menu::step(inputs),
        finalize::step(inputs),
    ]);
    Ok(Plan {
        distro: inputs.config.distro.name().to_string(),
        target_root: TARGET_ROOT.into(),
        disks: inputs.disks.clone(),
        steps,
    })
}

/// Inputs and commands for the recipe's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::zbm::image::FeatureSet;

    /// One disk, the payload, and a local ZFSBootMenu file carrying `hostid` and, with
    /// `zfs_features`, that feature set's name; the live system's ZFS has openzfs-2.3-linux.
    pub(crate) fn inputs<'a>(
        config: &'a Config,
        hostid: Option<u32>,
        zfs_features: Option<&str>,
    ) -> Inputs<'a> {
        Inputs {
            config,
            disks: vec!["/dev/vda".into()],
            source: BaseSource::Image("/payload.tar".into()),
            mirror: None,
            zfsbootmenu: ZbmSource::File {
                path: "/zbm.EFI".into(),
                origin: "test".into(),
            },
            zbm_image: Some(ZbmImage {
                cmdline: Some("quiet".into()),
                signed: false,
                hostid,
                zfs_features: zfs_features.map(|name| FeatureSet {
                    name: name.into(),
                    features: Default::default(),
                }),
                release: None,
                kernel: None,
                zfs_module: Some("usr/lib/modules/6.1.0-50-amd64/updates/dkms/zfs.ko".into()),
                boot_trial: false,
            }),
            live_zfs_features: Some("openzfs-2.3-linux".into()),
            secure_boot: false,
            enroll_mok: false,
            installer: None,
        }
    }

    /// A step's commands, each as one line.
    pub(crate) fn commands(step: &Step) -> Vec<String> {
        step.actions
            .iter()
            .filter_map(|a| a.argv().map(|argv| argv.join(" ")))
            .collect()
    }
}
