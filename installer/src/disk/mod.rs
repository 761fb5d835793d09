//! Disks: naming partitions, reading the machine ([`SystemView`]), choosing target disks, and the
//! safety checks that run before anything is written.

pub mod linux;
pub mod naming;
pub mod safety;
pub mod select;
pub mod system;

pub use linux::LinuxSystem;
pub use system::{BlockDevice, DeviceLookup, FakeSystem, SystemView};

/// A size for people: `2.0 GiB`, `512.0 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The `kldload disks` table: what a user needs to write `[disks]` in an answer file.
pub fn disks_table(disks: &[BlockDevice]) -> String {
    let mut out = String::new();
    if disks.is_empty() {
        out.push_str("no disks found\n");
        return out;
    }
    for d in disks {
        out.push_str(&format!(
            "{}  {}  model: {}  serial: {}\n    by-id: {}\n    holds: {}\n",
            d.path.display(),
            human_size(d.size),
            d.model.as_deref().unwrap_or("-"),
            d.serial.as_deref().unwrap_or("-"),
            if d.by_id.is_empty() {
                "-".to_string()
            } else {
                d.by_id
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            },
            d.contents_summary(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(2 << 30), "2.0 GiB");
        assert_eq!(human_size(512 << 20), "512.0 MiB");
    }

    #[test]
    fn table_names_what_is_on_each_disk() {
        let disks = vec![BlockDevice {
            name: "vdb".into(),
            path: "/dev/vdb".into(),
            by_id: vec!["/dev/disk/by-id/virtio-T1".into()],
            size: 16 << 30,
            partition_table: Some("gpt".into()),
            partitions: vec!["vdb1".into()],
            zfs_label: Some("old".into()),
            live_medium: true,
            ..Default::default()
        }];
        let t = disks_table(&disks);
        assert!(t.contains("/dev/disk/by-id/virtio-T1"), "{t}");
        assert!(
            t.contains("the live medium; gpt table, 1 partition(s); ZFS label of pool old"),
            "{t}"
        );
    }
}
