//! [`SystemView`] for the running Linux machine: read from /sys, /proc, udev's database under
//! /run/udev/data and /dev/disk/by-id, plus `zpool list` for imported pools. Nothing here writes.

use super::system::{BlockDevice, DeviceLookup, Holder, HolderKind, SystemView};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Mountpoints where a live system keeps its medium (kldload's own, Debian live, installers).
const LIVE_MEDIUM_MOUNTS: [&str; 3] = [crate::medium::MOUNT, "/run/live/medium", "/cdrom"];

/// The running machine.
#[derive(Debug, Default)]
pub struct LinuxSystem;

impl SystemView for LinuxSystem {
    fn disks(&self) -> anyhow::Result<Vec<BlockDevice>> {
        let context = Context::read();
        let mut disks = Vec::new();
        let mut names: Vec<String> = fs::read_dir("/sys/block")?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            if let Some(disk) = read_disk(&name, &context) {
                disks.push(disk);
            }
        }
        Ok(disks)
    }

    fn lookup(&self, path: &Path) -> DeviceLookup {
        let Ok(meta) = fs::metadata(path) else {
            return DeviceLookup::NotFound;
        };
        if !meta.file_type().is_block_device() {
            return DeviceLookup::NotBlockDevice;
        }
        let Some(name) = sys_name_of_dev(meta.rdev()) else {
            return DeviceLookup::NotFound;
        };
        let sys = Path::new("/sys/class/block").join(&name);
        if sys.join("partition").exists() {
            let disk = fs::canonicalize(&sys)
                .ok()
                .and_then(|p| p.parent().map(|d| d.to_path_buf()))
                .and_then(|d| d.file_name().map(|n| PathBuf::from("/dev").join(n)))
                .unwrap_or_default();
            return DeviceLookup::Partition { disk };
        }
        match read_disk(&name, &Context::read()) {
            Some(disk) => DeviceLookup::Disk(Box::new(disk)),
            None => DeviceLookup::NotADisk { name },
        }
    }

    fn booted_with_uefi(&self) -> bool {
        Path::new("/sys/firmware/efi").is_dir()
    }
}

/// Machine-wide facts read once per listing.
struct Context {
    /// Canonical device path -> mountpoints.
    mounts: BTreeMap<PathBuf, Vec<PathBuf>>,
    swaps: Vec<PathBuf>,
    /// Canonical vdev path -> imported pool name.
    pool_vdevs: BTreeMap<PathBuf, String>,
    /// Canonical device path -> by-id links.
    by_id: BTreeMap<PathBuf, Vec<PathBuf>>,
    /// Kernel name of the block device backing `/` or a live-medium mount.
    live_devices: Vec<String>,
}

impl Context {
    fn read() -> Context {
        let mut mounts: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
        let mut live_devices = Vec::new();
        for line in read("/proc/self/mountinfo").lines() {
            // id parent major:minor root mountpoint options ... - fstype source superoptions
            let fields: Vec<&str> = line.split(' ').collect();
            let (Some(devno), Some(mountpoint)) = (fields.get(2), fields.get(4)) else {
                continue;
            };
            let mountpoint = unescape_mount(mountpoint);
            let source = fields
                .iter()
                .position(|f| *f == "-")
                .and_then(|i| fields.get(i + 2));
            if let Some(source) = source.filter(|s| s.starts_with("/dev/")) {
                let canonical = fs::canonicalize(source).unwrap_or_else(|_| source.into());
                mounts
                    .entry(canonical)
                    .or_default()
                    .push(PathBuf::from(&mountpoint));
            }
            let is_live = mountpoint == "/" || LIVE_MEDIUM_MOUNTS.contains(&mountpoint.as_str());
            if is_live && let Some(name) = parse_devno(devno).and_then(|(ma, mi)| sys_name(ma, mi))
            {
                live_devices.push(name);
            }
        }
        let swaps = read("/proc/swaps")
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .map(|p| fs::canonicalize(p).unwrap_or_else(|_| p.into()))
            .collect();
        let mut by_id: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
        if let Ok(entries) = fs::read_dir("/dev/disk/by-id") {
            let mut links: Vec<PathBuf> =
                entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
            links.sort();
            for link in links.into_iter().filter(|l| names_the_disk(l)) {
                if let Ok(target) = fs::canonicalize(&link) {
                    by_id.entry(target).or_default().push(link);
                }
            }
        }
        Context {
            mounts,
            swaps,
            pool_vdevs: imported_pool_vdevs(),
            by_id,
            live_devices,
        }
    }
}

/// Whether a /dev/disk/by-id link names the device itself (its bus, model, serial, WWN), not
/// what is on it: udev also links LVM physical volumes and md members there by their content's
/// uuid, which changes when the disk is wiped and so is no name for an answer file.
fn names_the_disk(link: &Path) -> bool {
    let name = link.file_name().unwrap_or_default().to_string_lossy();
    ![
        "lvm-pv-uuid-",
        "md-uuid-",
        "md-name-",
        "dm-uuid-",
        "dm-name-",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// Vdevs of imported pools, from `zpool list -vHPL`; none when ZFS is not loaded here.
fn imported_pool_vdevs() -> BTreeMap<PathBuf, String> {
    let mut vdevs = BTreeMap::new();
    let Ok(out) = Command::new("zpool").args(["list", "-vHPL"]).output() else {
        return vdevs;
    };
    if !out.status.success() {
        return vdevs;
    }
    let mut pool = String::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if !line.starts_with('\t') {
            pool = line.split('\t').next().unwrap_or_default().to_string();
        } else if let Some(dev) = line.trim_start().split('\t').next()
            && dev.starts_with("/dev/")
        {
            let canonical = fs::canonicalize(dev).unwrap_or_else(|_| dev.into());
            vdevs.insert(canonical, pool.clone());
        }
    }
    vdevs
}

fn read(path: impl AsRef<Path>) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    let v = read(path).trim().to_string();
    (!v.is_empty()).then_some(v)
}

fn parse_devno(text: &str) -> Option<(u32, u32)> {
    let (ma, mi) = text.split_once(':')?;
    Some((ma.parse().ok()?, mi.parse().ok()?))
}

/// The whole-disk kernel name for a device number (a partition's parent).
fn sys_name(major: u32, minor: u32) -> Option<String> {
    let link = fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    let dir = if link.join("partition").exists() {
        link.parent()?.to_path_buf()
    } else {
        link
    };
    Some(dir.file_name()?.to_string_lossy().into_owned())
}

/// The kernel name of a device number, without going to the parent disk.
fn sys_name_of_dev(rdev: u64) -> Option<String> {
    let (major, minor) = (libc_major(rdev), libc_minor(rdev));
    let link = fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// glibc's gnu_dev_major/minor, so no libc crate is needed for two bit operations.
fn libc_major(dev: u64) -> u32 {
    (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)) as u32
}
fn libc_minor(dev: u64) -> u32 {
    (((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)) as u32
}

/// Mountinfo escapes spaces and a few other characters as octal.
fn unescape_mount(text: &str) -> String {
    text.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// udev's properties (`E:KEY=value` lines) for a block device.
fn udev_properties(sys: &Path) -> BTreeMap<String, String> {
    let devno = read(sys.join("dev")).trim().to_string();
    read(format!("/run/udev/data/b{devno}"))
        .lines()
        .filter_map(|l| l.strip_prefix("E:"))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Disks kldload may consider; md, device-mapper, ram, optical and empty devices are not.
fn is_candidate_disk(name: &str, size: u64) -> bool {
    let skip = ["ram", "zram", "dm-", "md", "sr", "fd", "zd", "nbd"];
    size > 0 && !skip.iter().any(|p| name.starts_with(p))
}

/// What the holder `name` (a directory in a disk's `holders/`) is: md arrays by name,
/// device-mapper devices by their uuid's prefix (which LVM and cryptsetup set).
fn read_holder(name: &str) -> Holder {
    let dm = Path::new("/sys/block").join(name).join("dm");
    let kind = if name.starts_with("md") {
        HolderKind::Md
    } else if let Some(mapping) = read_trimmed(dm.join("name")) {
        let uuid = read_trimmed(dm.join("uuid")).unwrap_or_default();
        dm_holder_kind(&uuid, mapping)
    } else {
        HolderKind::Other
    };
    Holder {
        name: name.to_string(),
        kind,
    }
}

/// A device-mapper device's kind from its uuid (`LVM-...`, `CRYPT-...`) and mapping name.
fn dm_holder_kind(uuid: &str, mapping: String) -> HolderKind {
    if uuid.starts_with("LVM-") {
        HolderKind::Lvm {
            volume_group: lvm_volume_group(&mapping),
        }
    } else if uuid.starts_with("CRYPT-") {
        HolderKind::Crypt { mapping }
    } else {
        HolderKind::DeviceMapper { mapping }
    }
}

/// The volume group in an LVM mapping name `vg-lv`, where a `-` inside either name is written
/// `--` (as `dmsetup splitname` reads it).
fn lvm_volume_group(mapping: &str) -> String {
    let mut vg = String::new();
    let mut chars = mapping.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '-' {
            vg.push(c);
        } else if chars.peek() == Some(&'-') {
            chars.next();
            vg.push('-');
        } else {
            break;
        }
    }
    vg
}

fn read_disk(name: &str, ctx: &Context) -> Option<BlockDevice> {
    let sys = Path::new("/sys/block").join(name);
    if !sys.exists() {
        return None;
    }
    let size = read_trimmed(sys.join("size"))?.parse::<u64>().ok()? * 512;
    if !is_candidate_disk(name, size) {
        return None;
    }
    let path = PathBuf::from("/dev").join(name);
    let udev = udev_properties(&sys);
    let mut partitions: Vec<String> = fs::read_dir(&sys)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("partition").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    partitions.sort();

    let mut disk = BlockDevice {
        name: name.to_string(),
        by_id: ctx.by_id.get(&path).cloned().unwrap_or_default(),
        size,
        model: udev
            .get("ID_MODEL")
            .map(|m| m.replace('_', " "))
            .or_else(|| read_trimmed(sys.join("device/model"))),
        serial: udev
            .get("ID_SERIAL_SHORT")
            .or_else(|| udev.get("ID_SERIAL"))
            .cloned()
            .or_else(|| read_trimmed(sys.join("device/serial"))),
        read_only: read_trimmed(sys.join("ro")).as_deref() == Some("1"),
        partition_table: udev.get("ID_PART_TABLE_TYPE").cloned(),
        live_medium: ctx.live_devices.iter().any(|d| d == name),
        path,
        ..Default::default()
    };
    // The disk itself and each partition: signatures, mounts, swap, holders, pools.
    let mut members = vec![(name.to_string(), sys.clone())];
    members.extend(partitions.iter().map(|p| (p.clone(), sys.join(p))));
    for (member, member_sys) in &members {
        let dev = PathBuf::from("/dev").join(member);
        let props = if member == name {
            udev.clone()
        } else {
            udev_properties(member_sys)
        };
        if let Some(fs_type) = props.get("ID_FS_TYPE") {
            disk.signatures.push(format!("{member}: {fs_type}"));
            if fs_type == "zfs_member" {
                disk.zfs_label = Some(
                    props
                        .get("ID_FS_LABEL")
                        .cloned()
                        .unwrap_or_else(|| "?".into()),
                );
            }
        }
        for mountpoint in ctx.mounts.get(&dev).into_iter().flatten() {
            disk.mounts.push((dev.clone(), mountpoint.clone()));
        }
        if ctx.swaps.contains(&dev) {
            disk.swap.push(dev.clone());
        }
        if let Ok(holders) = fs::read_dir(member_sys.join("holders")) {
            for h in holders.filter_map(|e| e.ok()) {
                disk.holders
                    .push(read_holder(&h.file_name().to_string_lossy()));
            }
        }
        if let Some(pool) = ctx.pool_vdevs.get(&dev) {
            disk.imported_pool = Some(pool.clone());
        }
    }
    disk.partitions = partitions;
    Some(disk)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// glibc's makedev, to check the split against.
    fn makedev(major: u64, minor: u64) -> u64 {
        ((major & 0xffff_f000) << 32)
            | ((major & 0xfff) << 8)
            | ((minor & 0xffff_ff00) << 12)
            | (minor & 0xff)
    }

    #[test]
    fn device_numbers_split_like_glibc() {
        for (major, minor) in [(8, 16), (259, 3), (259, 300), (4100, 1 << 20)] {
            let dev = makedev(major, minor);
            assert_eq!(
                (libc_major(dev), libc_minor(dev)),
                (major as u32, minor as u32)
            );
        }
        assert_eq!(parse_devno("8:16"), Some((8, 16)));
    }

    #[test]
    fn device_mapper_holders_by_uuid() {
        assert_eq!(
            dm_holder_kind("LVM-abc123", "my--vg-root".into()),
            HolderKind::Lvm {
                volume_group: "my-vg".into()
            }
        );
        assert_eq!(lvm_volume_group("data-lv--one"), "data");
        assert_eq!(
            dm_holder_kind("CRYPT-LUKS2-0f1e-luks-x", "luks-x".into()),
            HolderKind::Crypt {
                mapping: "luks-x".into()
            }
        );
        assert_eq!(
            dm_holder_kind("", "plain".into()),
            HolderKind::DeviceMapper {
                mapping: "plain".into()
            }
        );
    }

    #[test]
    fn by_id_names_of_the_disk_not_of_its_contents() {
        assert!(names_the_disk(Path::new(
            "/dev/disk/by-id/virtio-kldload-extra-5"
        )));
        assert!(names_the_disk(Path::new(
            "/dev/disk/by-id/nvme-eui.0025388b91b3c2f1"
        )));
        assert!(!names_the_disk(Path::new(
            "/dev/disk/by-id/lvm-pv-uuid-9iMbfl-GbAC-GEXZ-fpd0-uEe6-f8S3-Ppw3WN"
        )));
        assert!(!names_the_disk(Path::new(
            "/dev/disk/by-id/md-uuid-0a1b:2c3d"
        )));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mount("/mnt/my\\040disk"), "/mnt/my disk");
    }

    #[test]
    fn candidate_disks() {
        assert!(is_candidate_disk("vda", 1 << 30));
        assert!(is_candidate_disk("nvme0n1", 1 << 30));
        assert!(!is_candidate_disk("loop0", 0));
        assert!(!is_candidate_disk("dm-0", 1 << 30));
        assert!(!is_candidate_disk("zd0", 1 << 30));
    }

    /// Reads this machine for real: whatever it has, every disk listed must exist.
    #[test]
    fn lists_this_machines_disks() {
        for disk in LinuxSystem.disks().unwrap() {
            assert!(
                disk.path.exists(),
                "{} listed but missing",
                disk.path.display()
            );
            assert!(disk.size > 0);
        }
    }
}
