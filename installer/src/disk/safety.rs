//! The checks made before anything is written: each target disk exists, is a whole disk, is not
//! in use, is not the live medium, is big enough, and holds nothing unless `--force` says so.

use super::human_size;
use super::system::{DeviceLookup, SystemView};
use crate::config::{Layout, MIN_DISK_SIZE};
use std::fmt;
use std::path::{Path, PathBuf};

/// One reason not to touch a disk: what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub disk: PathBuf,
    pub problem: String,
    pub fix: String,
    /// `--force` overrides it (old data, not something in use).
    pub overridable: bool,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refusing {}: {}; fix: {}",
            self.disk.display(),
            self.problem,
            self.fix
        )
    }
}

/// All refusals for a set of target disks, shown together so one run tells everything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Refusals(pub Vec<Refusal>);

impl fmt::Display for Refusals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

/// Checks every target disk for `layout`; `force` lets disks with old contents (and disks of
/// very different sizes) through, never disks in use.
pub fn check_disks(
    disks: &[PathBuf],
    layout: Layout,
    system: &dyn SystemView,
    force: bool,
) -> Result<(), Refusals> {
    let mut refusals = Vec::new();
    if !system.booted_with_uefi() {
        refusals.push(Refusal {
            disk: PathBuf::from("(this machine)"),
            problem:
                "the live system was not booted through UEFI, so no firmware boot entry can be made"
                    .into(),
            fix: "boot the live medium in UEFI mode (not legacy/CSM)".into(),
            overridable: false,
        });
    }
    for path in disks {
        if let Some(r) = check_disk(path, system) {
            refusals.push(r);
        }
    }
    refusals.extend(same_disk_twice(disks, system));
    refusals.extend(sizes_far_apart(disks, layout, system));
    refusals.retain(|r| !(force && r.overridable));
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(Refusals(refusals))
    }
}

/// How much bigger than the smallest disk the largest may be before a layout that uses each
/// disk only up to the smallest's size is refused: 10%.
const SIZE_SPREAD_PERCENT: u64 = 10;

/// Disks of very different sizes in a mirror or raidz, which uses each only up to the
/// smallest's size: the rest of the bigger ones would lie unused. Names the usable size.
fn sizes_far_apart(disks: &[PathBuf], layout: Layout, system: &dyn SystemView) -> Vec<Refusal> {
    let sizes: Vec<(PathBuf, u64)> = disks
        .iter()
        .filter_map(|p| match system.lookup(p) {
            DeviceLookup::Disk(d) => Some((p.clone(), d.size)),
            _ => None,
        })
        .collect();
    if !layout.bounded_by_smallest() || sizes.len() < 2 {
        return vec![];
    }
    let smallest = sizes.iter().map(|(_, s)| *s).min().unwrap_or(0);
    let Some((largest_disk, largest)) = sizes.iter().max_by_key(|(_, s)| *s) else {
        return vec![];
    };
    if largest * 100 <= smallest * (100 + SIZE_SPREAD_PERCENT) {
        return vec![];
    }
    let all: Vec<u64> = sizes.iter().map(|(_, s)| *s).collect();
    let total: u64 = all.iter().sum();
    vec![Refusal {
        disk: largest_disk.clone(),
        problem: format!(
            "it is {} and the smallest disk {}: a {} uses each disk only up to the smallest's \
             size, so the pool would hold about {} of these disks' {}",
            human_size(*largest),
            human_size(smallest),
            format!("{layout:?}").to_lowercase(),
            human_size(layout.usable_bytes(&all)),
            human_size(total)
        ),
        fix: "use disks of about the same size (within 10%), or pass --force to accept the \
              unused space"
            .into(),
        overridable: true,
    }]
}

/// A disk named twice under different names (`/dev/vda` and its by-id link): the layout would
/// count it as two disks, and a mirror of one disk with itself protects nothing.
fn same_disk_twice(disks: &[PathBuf], system: &dyn SystemView) -> Vec<Refusal> {
    let mut seen: Vec<(PathBuf, &Path)> = Vec::new();
    let mut refusals = Vec::new();
    for path in disks {
        let DeviceLookup::Disk(disk) = system.lookup(path) else {
            continue;
        };
        match seen
            .iter()
            .find(|(kernel_path, _)| *kernel_path == disk.path)
        {
            Some((kernel_path, first)) => refusals.push(Refusal {
                disk: path.clone(),
                problem: format!(
                    "it is the same disk as {} ({}), given twice",
                    first.display(),
                    kernel_path.display()
                ),
                fix: "name each disk once in disks.paths (see `kldload disks`)".into(),
                overridable: false,
            }),
            None => seen.push((disk.path.clone(), path)),
        }
    }
    refusals
}

/// The first reason to refuse `path`: in-use problems before old contents, so the message names
/// what actually needs doing.
fn check_disk(path: &Path, system: &dyn SystemView) -> Option<Refusal> {
    let refuse = |problem: String, fix: &str, overridable| Refusal {
        disk: path.to_owned(),
        problem,
        fix: fix.to_string(),
        overridable,
    };
    let disk = match system.lookup(path) {
        DeviceLookup::NotFound => {
            return Some(refuse(
                "it does not exist".into(),
                "check the name with `kldload disks` and correct disks.paths",
                false,
            ));
        }
        DeviceLookup::NotBlockDevice => {
            return Some(refuse(
                "it is not a block device".into(),
                "name a disk under /dev (see `kldload disks`)",
                false,
            ));
        }
        DeviceLookup::Partition { disk } => {
            return Some(refuse(
                format!("it is a partition of {}, not a whole disk", disk.display()),
                "name the whole disk; kldload partitions it itself",
                false,
            ));
        }
        DeviceLookup::NotADisk { name } => {
            return Some(refuse(
                format!(
                    "{name} is not a disk kldload can partition (RAID, device-mapper or RAM device)"
                ),
                "name a physical disk (see `kldload disks`)",
                false,
            ));
        }
        DeviceLookup::Disk(disk) => disk,
    };
    if disk.live_medium {
        return Some(refuse(
            "it is the live medium this system is running from".into(),
            "choose another disk (see `kldload disks`)",
            false,
        ));
    }
    if let Some((dev, mountpoint)) = disk.mounts.first() {
        return Some(refuse(
            format!("{} is mounted on {}", dev.display(), mountpoint.display()),
            &format!("unmount it first (umount {})", mountpoint.display()),
            false,
        ));
    }
    if let Some(swap) = disk.swap.first() {
        return Some(refuse(
            format!("{} is in use as swap", swap.display()),
            &format!("turn it off first (swapoff {})", swap.display()),
            false,
        ));
    }
    if let Some(holder) = disk.holders.first() {
        return Some(refuse(
            format!("it is in use by the {holder}"),
            &format!(
                "make sure it holds nothing you need, then release it first ({})",
                holder.release_command()
            ),
            false,
        ));
    }
    if let Some(pool) = &disk.imported_pool {
        return Some(refuse(
            format!("it belongs to the imported pool {pool}"),
            &format!("export or destroy that pool first (zpool export {pool})"),
            false,
        ));
    }
    if disk.read_only {
        return Some(refuse(
            "it is read-only".into(),
            "choose a writable disk",
            false,
        ));
    }
    if disk.size < MIN_DISK_SIZE {
        return Some(refuse(
            format!(
                "it is {}, smaller than the {} kldload needs",
                human_size(disk.size),
                human_size(MIN_DISK_SIZE)
            ),
            "use a larger disk",
            false,
        ));
    }
    if let Some(pool) = &disk.zfs_label {
        return Some(refuse(
            format!("it holds a ZFS label of pool {pool} (not imported)"),
            "make sure that pool holds nothing you need, then pass --force to wipe it",
            true,
        ));
    }
    if let Some(table) = &disk.partition_table {
        return Some(refuse(
            format!(
                "it holds a {table} partition table with {} partition(s)",
                disk.partitions.len()
            ),
            "make sure it holds nothing you need, then pass --force to wipe it",
            true,
        ));
    }
    if let Some(signature) = disk.signatures.first() {
        return Some(refuse(
            format!("it holds data ({signature})"),
            "make sure it holds nothing you need, then pass --force to wipe it",
            true,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::system::{BlockDevice, FakeSystem, Holder, HolderKind};

    fn blank(name: &str) -> BlockDevice {
        BlockDevice {
            name: name.into(),
            path: format!("/dev/{name}").into(),
            size: 16 << 30,
            ..Default::default()
        }
    }

    fn machine_with(disk: BlockDevice) -> FakeSystem {
        FakeSystem {
            disks: vec![disk],
            links: vec![("/dev/disk/by-id/virtio-T1".into(), "/dev/vdb".into())],
            partitions: vec![("/dev/vdb1".into(), "/dev/vdb".into())],
            files: vec!["/etc/passwd".into()],
            uefi: true,
        }
    }

    fn refusal(disk: BlockDevice, path: &str, force: bool) -> Option<Refusal> {
        check_disks(&[path.into()], Layout::Single, &machine_with(disk), force)
            .err()
            .map(|r| r.0.into_iter().next().unwrap())
    }

    #[test]
    fn a_blank_disk_passes_by_any_name() {
        assert_eq!(refusal(blank("vdb"), "/dev/vdb", false), None);
        assert_eq!(
            refusal(blank("vdb"), "/dev/disk/by-id/virtio-T1", false),
            None
        );
    }

    #[test]
    fn each_problem_is_named_with_its_fix() {
        let cases: Vec<(BlockDevice, &str, &str, &str)> = vec![
            (blank("vdb"), "/dev/vdz", "does not exist", "kldload disks"),
            (blank("vdb"), "/etc/passwd", "not a block device", "/dev"),
            (
                blank("vdb"),
                "/dev/vdb1",
                "partition of /dev/vdb",
                "whole disk",
            ),
            (
                BlockDevice {
                    live_medium: true,
                    ..blank("vdb")
                },
                "/dev/vdb",
                "live medium",
                "another disk",
            ),
            (
                BlockDevice {
                    mounts: vec![("/dev/vdb1".into(), "/mnt".into())],
                    ..blank("vdb")
                },
                "/dev/vdb",
                "/dev/vdb1 is mounted on /mnt",
                "umount /mnt",
            ),
            (
                BlockDevice {
                    swap: vec!["/dev/vdb2".into()],
                    ..blank("vdb")
                },
                "/dev/vdb",
                "swap",
                "swapoff /dev/vdb2",
            ),
            (
                BlockDevice {
                    holders: vec![Holder {
                        name: "md127".into(),
                        kind: HolderKind::Md,
                    }],
                    ..blank("vdb")
                },
                "/dev/vdb",
                "in use by the md array /dev/md127",
                "mdadm --stop /dev/md127",
            ),
            (
                BlockDevice {
                    holders: vec![Holder {
                        name: "dm-0".into(),
                        kind: HolderKind::Lvm {
                            volume_group: "data".into(),
                        },
                    }],
                    ..blank("vdb")
                },
                "/dev/vdb",
                "in use by the LVM volume group data (dm-0)",
                "vgchange -an data",
            ),
            (
                BlockDevice {
                    imported_pool: Some("tank".into()),
                    ..blank("vdb")
                },
                "/dev/vdb",
                "imported pool tank",
                "zpool export tank",
            ),
            (
                BlockDevice {
                    size: 2 << 30,
                    ..blank("vdb")
                },
                "/dev/vdb",
                "2.0 GiB, smaller than the 4.0 GiB",
                "larger disk",
            ),
            (
                BlockDevice {
                    read_only: true,
                    ..blank("vdb")
                },
                "/dev/vdb",
                "read-only",
                "writable",
            ),
        ];
        for (disk, path, problem, fix) in cases {
            let r = refusal(disk.clone(), path, false)
                .unwrap_or_else(|| panic!("{path} {disk:?} passed"));
            assert!(r.problem.contains(problem), "{r}");
            assert!(r.fix.contains(fix), "{r}");
            assert!(!r.overridable, "{r}");
            // In-use problems are never overridden by --force.
            assert!(refusal(disk, path, true).is_some());
        }
    }

    #[test]
    fn old_contents_need_force() {
        let cases = vec![
            BlockDevice {
                partition_table: Some("gpt".into()),
                partitions: vec!["vdb1".into()],
                ..blank("vdb")
            },
            BlockDevice {
                zfs_label: Some("oldpool".into()),
                ..blank("vdb")
            },
            BlockDevice {
                signatures: vec!["vdb: ext4".into()],
                ..blank("vdb")
            },
        ];
        for disk in cases {
            let r = refusal(disk.clone(), "/dev/vdb", false).expect("refused without --force");
            assert!(r.overridable && r.fix.contains("--force"), "{r}");
            assert_eq!(refusal(disk, "/dev/vdb", true), None);
        }
    }

    #[test]
    fn one_disk_by_two_names_is_refused_even_with_force() {
        let m = machine_with(blank("vdb"));
        let err = check_disks(
            &["/dev/vdb".into(), "/dev/disk/by-id/virtio-T1".into()],
            Layout::Mirror,
            &m,
            true,
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        let r = &err.0[0];
        assert_eq!(r.disk, Path::new("/dev/disk/by-id/virtio-T1"));
        assert!(
            r.problem.contains("same disk as /dev/vdb") && r.fix.contains("once"),
            "{r}"
        );
    }

    #[test]
    fn legacy_boot_is_refused() {
        let mut m = machine_with(blank("vdb"));
        m.uefi = false;
        let err = check_disks(&["/dev/vdb".into()], Layout::Single, &m, true).unwrap_err();
        assert!(err.to_string().contains("UEFI"), "{err}");
    }

    #[test]
    fn every_refusal_is_reported() {
        let m = machine_with(blank("vdb"));
        let err = check_disks(
            &["/dev/vdx".into(), "/dev/vdy".into()],
            Layout::Mirror,
            &m,
            false,
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 2);
        assert!(err.to_string().contains("/dev/vdx") && err.to_string().contains("/dev/vdy"));
    }

    /// Two blank disks of `a` and `b` GiB, /dev/vdb and /dev/vdc.
    fn two_disks(a: u64, b: u64) -> FakeSystem {
        let mut m = machine_with(BlockDevice {
            size: a << 30,
            ..blank("vdb")
        });
        m.disks.push(BlockDevice {
            size: b << 30,
            ..blank("vdc")
        });
        m
    }

    #[test]
    fn a_mirror_of_very_different_disks_names_the_usable_size() {
        let disks: [PathBuf; 2] = ["/dev/vdb".into(), "/dev/vdc".into()];
        let err = check_disks(&disks, Layout::Mirror, &two_disks(16, 64), false).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        let r = &err.0[0];
        assert_eq!(r.disk, Path::new("/dev/vdc"));
        assert!(
            r.problem.contains("64.0 GiB")
                && r.problem.contains("16.0 GiB")
                && r.problem
                    .contains("about 16.0 GiB of these disks' 80.0 GiB"),
            "{r}"
        );
        assert!(r.overridable && r.fix.contains("--force"), "{r}");
        assert!(check_disks(&disks, Layout::Mirror, &two_disks(16, 64), true).is_ok());
        // Within 10% is about the same size; a stripe uses all of each disk.
        assert!(check_disks(&disks, Layout::Mirror, &two_disks(100, 110), false).is_ok());
        assert!(check_disks(&disks, Layout::Mirror, &two_disks(100, 111), false).is_err());
        assert!(check_disks(&disks, Layout::Stripe, &two_disks(16, 64), false).is_ok());
    }

    #[test]
    fn each_layout_says_what_it_holds() {
        let gib = 1u64 << 30;
        let four = [4 * gib, 4 * gib, 4 * gib, 8 * gib];
        assert_eq!(Layout::Mirror.usable_bytes(&four), 4 * gib);
        assert_eq!(Layout::Raidz1.usable_bytes(&four), 12 * gib);
        assert_eq!(Layout::Raidz2.usable_bytes(&four), 8 * gib);
        assert_eq!(Layout::Stripe.usable_bytes(&four), 20 * gib);
        assert_eq!(Layout::Single.usable_bytes(&[4 * gib]), 4 * gib);
    }
}
