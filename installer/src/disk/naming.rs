//! Partition device paths from a disk's path.

use std::path::{Path, PathBuf};

/// The path of partition `number` on `disk`, the way udev names it:
/// `/dev/sda` -> `/dev/sda1`, `/dev/nvme0n1` -> `/dev/nvme0n1p1` (a name ending in a digit gets
/// a `p`), and a `/dev/disk/by-*` link -> `<link>-part1`.
pub fn partition_path(disk: &Path, number: u32) -> PathBuf {
    let text = disk.to_string_lossy();
    if text.starts_with("/dev/disk/") {
        return PathBuf::from(format!("{text}-part{number}"));
    }
    let separator = if text.ends_with(|c: char| c.is_ascii_digit()) {
        "p"
    } else {
        ""
    };
    PathBuf::from(format!("{text}{separator}{number}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kernel_names() {
        let p = |d: &str, n| partition_path(Path::new(d), n).display().to_string();
        assert_eq!(p("/dev/sda", 1), "/dev/sda1");
        assert_eq!(p("/dev/vda", 2), "/dev/vda2");
        assert_eq!(p("/dev/nvme0n1", 1), "/dev/nvme0n1p1");
        assert_eq!(p("/dev/mmcblk0", 2), "/dev/mmcblk0p2");
        assert_eq!(p("/dev/loop0", 1), "/dev/loop0p1");
        assert_eq!(
            p("/dev/disk/by-id/ata-QEMU_HARDDISK_QM00001", 1),
            "/dev/disk/by-id/ata-QEMU_HARDDISK_QM00001-part1"
        );
        assert_eq!(
            p("/dev/disk/by-id/nvme-eui.0025388b91b4c8a2", 2),
            "/dev/disk/by-id/nvme-eui.0025388b91b4c8a2-part2"
        );
    }

    proptest! {
        /// The partition path always extends the disk path with the number at its end.
        #[test]
        fn partition_extends_disk(name in "[a-z]{1,8}[0-9]{0,3}(n[0-9])?", number in 1u32..128) {
            let disk = PathBuf::from(format!("/dev/{name}"));
            let part = partition_path(&disk, number).display().to_string();
            let disk_text = disk.display().to_string();
            prop_assert!(part.starts_with(&disk_text));
            prop_assert!(part.ends_with(&number.to_string()));
            let middle = &part[disk_text.len()..part.len() - number.to_string().len()];
            // Without the `p`, nvme0n1 + 1 would read as nvme0n11: a different device.
            prop_assert_eq!(middle == "p", name.ends_with(|c: char| c.is_ascii_digit()));
        }
    }
}
