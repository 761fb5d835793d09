//! Step 1: each disk gets a fresh GPT with an EFI system partition and one partition for ZFS.
//! No swap partition (swap, if wanted, is a zvol) and no /boot: ZFSBootMenu reads kernels from ZFS.

use super::Inputs;
use crate::config::Family;
use crate::plan::{Action, Step, StepId};

/// Partition numbers, the same on every disk.
pub const ESP_PARTITION: u32 = 1;
pub const ZFS_PARTITION: u32 = 2;

pub fn step(inputs: &Inputs) -> Step {
    let esp_mib = inputs.config.disks.esp_size.mib();
    let pool = inputs.pool();
    let freebsd = inputs.config.distro.family() == Family::FreeBsd;
    // FreeBSD finds its ESP by GPT label (/dev/gpt/efiboot0) and wants its own ZFS type code.
    let zfs_type = if freebsd { "A504" } else { "BF00" };
    let mut actions = Vec::new();
    for (index, disk) in inputs.disks.iter().enumerate() {
        let esp_name = if freebsd {
            format!("efiboot{index}")
        } else {
            "ESP".to_string()
        };
        let disk_arg = disk.to_string_lossy().into_owned();
        actions.push(Action::run(
            ["wipefs", "--all", &disk_arg],
            format!("erase old partition-table and filesystem signatures on {disk_arg}"),
        ));
        actions.push(Action::run(
            ["sgdisk", "--zap-all", &disk_arg],
            "destroy the old GPT and MBR structures, including the backup GPT at the disk's end",
        ));
        actions.push(Action::run(
            [
                "sgdisk",
                &format!("--new={ESP_PARTITION}:1M:+{esp_mib}M"),
                &format!("--typecode={ESP_PARTITION}:EF00"),
                &format!("--change-name={ESP_PARTITION}:{esp_name}"),
                &disk_arg,
            ],
            format!("{esp_mib} MiB EFI system partition, 1 MiB-aligned: holds ZFSBootMenu and the fallback loader"),
        ));
        actions.push(Action::run(
            [
                "sgdisk",
                &format!("--new={ZFS_PARTITION}:0:0"),
                &format!("--typecode={ZFS_PARTITION}:{zfs_type}"),
                &format!("--change-name={ZFS_PARTITION}:{pool}"),
                &disk_arg,
            ],
            "the rest of the disk for ZFS",
        ));
        actions.push(Action::run(
            ["udevadm", "settle"],
            "wait for udev to create the new partitions' device nodes and links",
        ));
        let esp = inputs.esp_partition(disk).to_string_lossy().into_owned();
        actions.push(Action::run(
            [
                "mkfs.vfat",
                "-F",
                "32",
                "-n",
                "EFI",
                "-i",
                &inputs.esp_volume_id(index),
                &esp,
            ],
            "FAT32 as UEFI requires; the volume id is chosen by the plan so fstab can name it",
        ));
    }
    Step {
        id: StepId::Partition,
        title: "Partition: GPT, a FAT32 ESP and a ZFS partition on each disk".into(),
        why: "UEFI boots from a FAT ESP; everything else, kernels included, lives in ZFS".into(),
        actions,
    }
}
