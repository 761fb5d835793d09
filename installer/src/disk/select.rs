//! Choosing the target disks: the answer file's paths as given, or the disks a filter matches.

use super::system::{BlockDevice, SystemView};
use crate::config::names::GlobPattern;
use crate::config::{DiskConfig, DiskFilter};
use std::path::PathBuf;

/// Why the disks could not be chosen.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error(
        "the disk filter {filter} matched {found} disk(s), but the layout needs exactly {wanted}.\n{candidates}\nfix: adjust [disks.filter] (or disks.count) so it matches exactly the disks to wipe"
    )]
    WrongCount {
        filter: String,
        found: usize,
        wanted: usize,
        candidates: String,
    },
    #[error("cannot list this machine's disks: {0}")]
    Listing(anyhow::Error),
}

/// Whether `disk` matches every field of `filter`.
pub fn filter_matches(filter: &DiskFilter, disk: &BlockDevice) -> bool {
    let glob = |pattern: &Option<GlobPattern>, value: Option<&str>| match pattern {
        None => true,
        Some(p) => {
            let Ok(p) = glob::Pattern::new(p.as_str()) else {
                return false;
            };
            value.is_some_and(|v| p.matches(v))
        }
    };
    let by_id_names: Vec<String> = disk
        .by_id
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let by_id_ok = match &filter.by_id {
        None => true,
        Some(_) => by_id_names.iter().any(|n| glob(&filter.by_id, Some(n))),
    };
    glob(&filter.serial, disk.serial.as_deref())
        && glob(&filter.model, disk.model.as_deref())
        && by_id_ok
        && filter.min_size.is_none_or(|min| disk.size >= min.bytes())
        && filter.max_size.is_none_or(|max| disk.size <= max.bytes())
}

/// The target disks' paths, in the order the pool will use them.
pub fn select_disks(
    config: &DiskConfig,
    system: &dyn SystemView,
) -> Result<Vec<PathBuf>, SelectError> {
    let Some(filter) = &config.filter else {
        return Ok(config
            .paths
            .iter()
            .map(|p| PathBuf::from(p.as_str()))
            .collect());
    };
    let wanted = config.count.unwrap_or(config.layout.min_disks());
    let all = system.disks().map_err(SelectError::Listing)?;
    let matched: Vec<&BlockDevice> = all.iter().filter(|d| filter_matches(filter, d)).collect();
    if matched.len() != wanted {
        let list = if all.is_empty() {
            "this machine has no disks".to_string()
        } else {
            all.iter()
                .map(|d| {
                    format!(
                        "  {} {} {}  {}  serial {}, model {}",
                        if filter_matches(filter, d) {
                            "matched"
                        } else {
                            "       "
                        },
                        d.path.display(),
                        crate::disk::human_size(d.size),
                        d.stable_path().display(),
                        d.serial.as_deref().unwrap_or("-"),
                        d.model.as_deref().unwrap_or("-"),
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        return Err(SelectError::WrongCount {
            filter: serde_json::to_string(filter).unwrap_or_default(),
            found: matched.len(),
            wanted,
            candidates: format!("this machine's disks:\n{list}"),
        });
    }
    Ok(matched
        .iter()
        .map(|d| d.stable_path().to_path_buf())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Layout;
    use crate::config::size::{ByteSize, EspSize};

    fn size(text: &str) -> ByteSize {
        ByteSize::parse(text).unwrap()
    }
    use crate::disk::system::FakeSystem;

    fn disk(name: &str, serial: &str, model: &str, gib: u64) -> BlockDevice {
        BlockDevice {
            name: name.into(),
            path: format!("/dev/{name}").into(),
            by_id: vec![format!("/dev/disk/by-id/virtio-{serial}").into()],
            size: gib << 30,
            serial: Some(serial.into()),
            model: Some(model.into()),
            ..Default::default()
        }
    }

    fn machine() -> FakeSystem {
        FakeSystem {
            disks: vec![
                disk("vda", "LIVE0", "QEMU disk", 2),
                disk("vdb", "TARGET1", "QEMU disk", 16),
                disk("vdc", "TARGET2", "Big disk", 64),
            ],
            ..Default::default()
        }
    }

    fn config(filter: DiskFilter, layout: Layout) -> DiskConfig {
        DiskConfig {
            layout,
            paths: vec![],
            filter: Some(filter),
            count: None,
            esp_size: EspSize::new(size("512MiB")).unwrap(),
        }
    }

    #[test]
    fn exactly_one_match_is_chosen_by_its_stable_name() {
        let f = DiskFilter {
            serial: Some(GlobPattern::new("TARGET1").unwrap()),
            ..Default::default()
        };
        let chosen = select_disks(&config(f, Layout::Single), &machine()).unwrap();
        assert_eq!(
            chosen,
            vec![PathBuf::from("/dev/disk/by-id/virtio-TARGET1")]
        );
    }

    #[test]
    fn globs_and_sizes() {
        let f = DiskFilter {
            serial: Some(GlobPattern::new("TARGET*").unwrap()),
            min_size: Some(size("8G")),
            ..Default::default()
        };
        let chosen = select_disks(&config(f, Layout::Mirror), &machine()).unwrap();
        assert_eq!(chosen.len(), 2);
        let f = DiskFilter {
            by_id: Some(GlobPattern::new("virtio-TARGET*").unwrap()),
            max_size: Some(size("32G")),
            ..Default::default()
        };
        let chosen = select_disks(&config(f, Layout::Single), &machine()).unwrap();
        assert_eq!(
            chosen,
            vec![PathBuf::from("/dev/disk/by-id/virtio-TARGET1")]
        );
    }

    #[test]
    fn no_match_lists_the_candidates() {
        let f = DiskFilter {
            model: Some(GlobPattern::new("Samsung*").unwrap()),
            ..Default::default()
        };
        let err = select_disks(&config(f, Layout::Single), &machine())
            .unwrap_err()
            .to_string();
        assert!(err.contains("matched 0 disk(s)"), "{err}");
        assert!(err.contains("/dev/vdb") && err.contains("TARGET2"), "{err}");
        assert!(err.contains("fix:"), "{err}");
    }

    #[test]
    fn too_many_matches_is_an_error() {
        let f = DiskFilter {
            model: Some(GlobPattern::new("*").unwrap()),
            ..Default::default()
        };
        let err = select_disks(&config(f, Layout::Single), &machine())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("matched 3 disk(s)") && err.contains("needs exactly 1"),
            "{err}"
        );
    }
}
