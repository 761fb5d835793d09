//! What the installer needs to know about the running machine, behind a trait so the safety
//! checks and disk filters can be tested against a described, fake machine.

use serde::Serialize;
use std::path::{Path, PathBuf};

/// A whole disk and everything on it that matters before wiping it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BlockDevice {
    /// Kernel name, e.g. `vda`.
    pub name: String,
    /// `/dev/<name>`.
    pub path: PathBuf,
    /// Its /dev/disk/by-id links (the stable names to put in an answer file).
    pub by_id: Vec<PathBuf>,
    pub size: u64,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub read_only: bool,
    /// `gpt` or `dos` when the disk has a partition table.
    pub partition_table: Option<String>,
    /// Kernel names of its partitions.
    pub partitions: Vec<String>,
    /// Filesystem signatures found on the disk or its partitions, e.g. `vda1: vfat`.
    pub signatures: Vec<String>,
    /// The pool named by a ZFS label on the disk or a partition.
    pub zfs_label: Option<String>,
    /// Mounted filesystems on the disk or its partitions: (device, mountpoint).
    pub mounts: Vec<(PathBuf, PathBuf)>,
    /// Swap areas in use on it.
    pub swap: Vec<PathBuf>,
    /// Devices stacked on it: md arrays, device-mapper (LVM, crypt) volumes.
    pub holders: Vec<Holder>,
    /// An imported pool using it.
    pub imported_pool: Option<String>,
    /// The live system runs from it.
    pub live_medium: bool,
}

impl BlockDevice {
    /// The name an answer file should use: the first by-id link, else the kernel path.
    pub fn stable_path(&self) -> &Path {
        self.by_id.first().unwrap_or(&self.path)
    }

    /// One line saying what is on the disk, for listings and error messages.
    pub fn contents_summary(&self) -> String {
        let mut parts = Vec::new();
        if self.live_medium {
            parts.push("the live medium".to_string());
        }
        if self.read_only {
            parts.push("read-only".to_string());
        }
        if let Some(pt) = &self.partition_table {
            parts.push(format!(
                "{pt} table, {} partition(s)",
                self.partitions.len()
            ));
        }
        if let Some(pool) = &self.imported_pool {
            parts.push(format!("in imported pool {pool}"));
        } else if let Some(pool) = &self.zfs_label {
            parts.push(format!("ZFS label of pool {pool}"));
        }
        if !self.mounts.is_empty() {
            let m: Vec<String> = self
                .mounts
                .iter()
                .map(|(d, m)| format!("{} on {}", d.display(), m.display()))
                .collect();
            parts.push(format!("mounted: {}", m.join(", ")));
        }
        if !self.swap.is_empty() {
            parts.push("swap in use".into());
        }
        if !self.holders.is_empty() {
            let h: Vec<String> = self.holders.iter().map(ToString::to_string).collect();
            parts.push(format!("used by {}", h.join(", ")));
        }
        if parts.is_empty() {
            "empty".into()
        } else {
            parts.join("; ")
        }
    }
}

/// A device stacked on a disk (or one of its partitions): while it exists, the disk is in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// Kernel name, e.g. `md127` or `dm-0`.
    pub name: String,
    pub kind: HolderKind,
}

/// What kind of device holds a disk, which says how to let go of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HolderKind {
    /// An md (software RAID) array.
    Md,
    /// A logical volume of `volume_group` (device-mapper, LVM's uuid prefix).
    Lvm {
        volume_group: String,
    },
    /// An open dm-crypt/LUKS mapping.
    Crypt {
        mapping: String,
    },
    /// Any other device-mapper mapping.
    DeviceMapper {
        mapping: String,
    },
    Other,
}

impl Holder {
    /// The command that releases the disk, for a refusal's fix.
    pub fn release_command(&self) -> String {
        match &self.kind {
            HolderKind::Md => format!("mdadm --stop /dev/{}", self.name),
            HolderKind::Lvm { volume_group } => format!("vgchange -an {volume_group}"),
            HolderKind::Crypt { mapping } => format!("cryptsetup close {mapping}"),
            HolderKind::DeviceMapper { mapping } => format!("dmsetup remove {mapping}"),
            HolderKind::Other => format!("stop whatever uses /dev/{}", self.name),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = &self.name;
        match &self.kind {
            HolderKind::Md => write!(f, "md array /dev/{name}"),
            HolderKind::Lvm { volume_group } => {
                write!(f, "LVM volume group {volume_group} ({name})")
            }
            HolderKind::Crypt { mapping } => write!(f, "dm-crypt mapping {mapping} ({name})"),
            HolderKind::DeviceMapper { mapping } => {
                write!(f, "device-mapper mapping {mapping} ({name})")
            }
            HolderKind::Other => write!(f, "/dev/{name}"),
        }
    }
}

/// What a path given as a target disk turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceLookup {
    NotFound,
    /// Exists but is not a block device (a regular file, a directory...).
    NotBlockDevice,
    /// A partition; the whole disk is named.
    Partition {
        disk: PathBuf,
    },
    /// A block device that is not a disk kldload can partition (md, dm, ram...).
    NotADisk {
        name: String,
    },
    Disk(Box<BlockDevice>),
}

/// The running machine, as the installer sees it.
pub trait SystemView {
    /// Every whole disk.
    fn disks(&self) -> anyhow::Result<Vec<BlockDevice>>;
    /// What `path` names, following symlinks.
    fn lookup(&self, path: &Path) -> DeviceLookup;
    /// Whether the running system was booted through UEFI (efibootmgr needs it).
    fn booted_with_uefi(&self) -> bool;
}

/// A described machine, for tests and for `kldload plan` on a machine that is not the target.
#[derive(Debug, Clone, Default)]
pub struct FakeSystem {
    pub disks: Vec<BlockDevice>,
    /// Other names of a disk, e.g. by-id links: (link, kernel path).
    pub links: Vec<(PathBuf, PathBuf)>,
    /// Partitions: (partition path, disk path).
    pub partitions: Vec<(PathBuf, PathBuf)>,
    /// Paths that exist but are not block devices.
    pub files: Vec<PathBuf>,
    pub uefi: bool,
}

impl SystemView for FakeSystem {
    fn disks(&self) -> anyhow::Result<Vec<BlockDevice>> {
        Ok(self.disks.clone())
    }
    fn lookup(&self, path: &Path) -> DeviceLookup {
        let resolved = self
            .links
            .iter()
            .find(|(link, _)| link == path)
            .map_or(path, |(_, target)| target.as_path());
        if let Some(d) = self.disks.iter().find(|d| d.path == resolved) {
            return DeviceLookup::Disk(Box::new(d.clone()));
        }
        if let Some((_, disk)) = self.partitions.iter().find(|(p, _)| p == resolved) {
            return DeviceLookup::Partition { disk: disk.clone() };
        }
        if self.files.iter().any(|f| f == resolved) {
            return DeviceLookup::NotBlockDevice;
        }
        DeviceLookup::NotFound
    }
    fn booted_with_uefi(&self) -> bool {
        self.uefi
    }
}
