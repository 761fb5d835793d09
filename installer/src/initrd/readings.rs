//! What `kldload doctor` reads in an initramfs image: whether it carries zfs.ko, and its
//! etc/hostid. Finding out decompresses most of the image (seconds of CPU under emulation, more
//! while the system starts beside it), and the doctor runs before every login, so the answers
//! are kept in [`CACHE`] with each file's size and modification time. The install fills it for
//! the images it leaves (`kldload inspect-initramfs --remember`), so the first boot reads none;
//! a changed image (`update-initramfs`, a new kernel) is read again.

use super::{InitrdError, Stop, read_files};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Where the readings are kept.
pub const CACHE: &str = "/var/cache/kldload/initramfs.json";

/// The initramfs images the doctor reads: every `initrd.img-*` in /boot (Debian's names).
pub const BOOT_IMAGES_PREFIX: &str = "initrd.img-";

/// What one initramfs image carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitramfsReadings {
    /// A ZFS module (zfs.ko, compressed or not) is in it.
    pub has_zfs: bool,
    /// The bytes of its etc/hostid; None when it has none.
    pub hostid: Option<Vec<u8>>,
}

impl InitramfsReadings {
    /// One line: `zfs.ko: yes, hostid: 0x00bab10c`.
    pub fn summary(&self) -> String {
        let zfs = if self.has_zfs { "yes" } else { "no" };
        let hostid = match &self.hostid {
            None => "none (no etc/hostid)".to_string(),
            // /etc/hostid holds the value as four bytes in the machine's order (little-endian
            // here), as zgenhostid writes it.
            Some(bytes) => match bytes[..] {
                [a, b, c, d] => format!("{:#010x}", u32::from_le_bytes([a, b, c, d])),
                _ => format!("unreadable ({} bytes)", bytes.len()),
            },
        };
        format!("zfs.ko: {zfs}, hostid: {hostid}")
    }
}

/// Whether an initramfs member is a ZFS module (`zfs.ko`, perhaps compressed).
pub fn is_zfs_module(member: &str) -> bool {
    let file = member.rsplit('/').next().unwrap_or(member);
    file == "zfs.ko" || file.strip_prefix("zfs.ko.").is_some()
}

/// That the initramfs `image` can import the pool on this machine: it has zfs.ko, and the
/// hostid in `hostid_file` (the system's /etc/hostid). Ok is the line saying so; Err says what
/// is missing.
pub fn check(image: &Path, hostid_file: &Path) -> Result<String, String> {
    let hostid = std::fs::read(hostid_file)
        .map_err(|e| format!("cannot read {}: {e}", hostid_file.display()))?;
    let r = read(image).map_err(|e| format!("cannot read {}: {e}", image.display()))?;
    let wanted = InitramfsReadings {
        has_zfs: true,
        hostid: Some(hostid),
    };
    if r == wanted {
        Ok(format!("{}: {}", image.display(), r.summary()))
    } else {
        Err(format!(
            "{} has {}; it must have zfs.ko: yes and the hostid of {} ({})",
            image.display(),
            r.summary(),
            hostid_file.display(),
            wanted.summary().trim_start_matches("zfs.ko: yes, ")
        ))
    }
}

/// Reads `image` in one walk, which stops once it has both zfs.ko and etc/hostid.
pub fn read(image: &Path) -> Result<InitramfsReadings, InitrdError> {
    let length = super::image_length(image)?;
    let (zfs, hostid) = (Cell::new(false), Cell::new(false));
    // Only the first of each is taken, so two files taken means both were found.
    let take = |name: &str| {
        let first = |seen: &Cell<bool>| !seen.replace(true);
        if is_zfs_module(name) {
            first(&zfs)
        } else if name == "etc/hostid" {
            first(&hostid)
        } else {
            false
        }
    };
    let files = read_files(image, 0..length, &take, Stop::After(2))?;
    Ok(InitramfsReadings {
        has_zfs: files.iter().any(|m| is_zfs_module(&m.name)),
        hostid: files
            .into_iter()
            .find(|m| m.name == "etc/hostid")
            .map(|m| m.data),
    })
}

/// One kept reading, valid while the file keeps its size and modification time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    size: u64,
    modified: SystemTime,
    readings: InitramfsReadings,
}

/// The kept readings, by the image's path.
pub struct Cache {
    path: PathBuf,
    entries: BTreeMap<String, Entry>,
    changed: bool,
}

impl Cache {
    /// The readings kept at `path`; none when the file is missing or unreadable.
    pub fn load(path: &Path) -> Cache {
        let entries = std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Cache {
            path: path.to_path_buf(),
            entries,
            changed: false,
        }
    }

    /// What `image` carries: the kept reading while the file is unchanged, else read and kept.
    pub fn readings(&mut self, image: &Path) -> Result<InitramfsReadings, String> {
        let (size, modified) = size_and_time(image)?;
        let kept = self.entries.get(&key(image));
        if let Some(e) = kept.filter(|e| e.size == size && e.modified == modified) {
            return Ok(e.readings.clone());
        }
        self.read_and_keep(image, size, modified)
    }

    /// Reads `image` whatever is kept for it, and keeps what was read.
    pub fn remember(&mut self, image: &Path) -> Result<InitramfsReadings, String> {
        let (size, modified) = size_and_time(image)?;
        self.read_and_keep(image, size, modified)
    }

    fn read_and_keep(
        &mut self,
        image: &Path,
        size: u64,
        modified: SystemTime,
    ) -> Result<InitramfsReadings, String> {
        let readings = read(image).map_err(|e| e.to_string())?;
        let entry = Entry {
            size,
            modified,
            readings: readings.clone(),
        };
        self.entries.insert(key(image), entry);
        self.changed = true;
        Ok(readings)
    }

    /// Writes the readings back when any were added.
    pub fn save(&self) -> std::io::Result<()> {
        if !self.changed {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let bytes = serde_json::to_vec(&self.entries).expect("serializable");
        std::fs::write(&self.path, bytes)
    }
}

fn key(image: &Path) -> String {
    image.display().to_string()
}

/// What a kept reading of the file at `path` is keyed on: its size and modification time (the
/// doctor's cache of ZFSBootMenu's readings keys on the same).
pub fn size_and_time(path: &Path) -> Result<(u64, SystemTime), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((meta.len(), meta.modified().map_err(|e| e.to_string())?))
}

/// The initramfs images in `boot`, by path, in name order.
pub fn boot_images(boot: &Path) -> Vec<PathBuf> {
    let mut images: Vec<PathBuf> = std::fs::read_dir(boot)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(BOOT_IMAGES_PREFIX)
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    images.sort();
    images
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::initrd::testing::{compress, cpio};
    use std::io::Write;

    fn image(main: &[(&str, &[u8])]) -> Option<tempfile::NamedTempFile> {
        let early = cpio(&[("kernel/x86/microcode/GenuineIntel.bin", b"ucode")]);
        let compressed = compress("zstd", &cpio(main))?;
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&early).unwrap();
        file.write_all(&compressed).unwrap();
        Some(file)
    }

    const ZFS_KO: &str = "usr/lib/modules/6.12.48+deb13-amd64/updates/dkms/zfs.ko";

    #[test]
    fn both_readings_whichever_comes_first_and_absence_of_each() {
        let hostid = [0x0c, 0xb1, 0xba, 0x00];
        type Case<'a> = (&'a [(&'a str, &'a [u8])], bool, Option<&'a [u8]>);
        let cases: [Case; 4] = [
            (
                &[("etc/hostid", &hostid), (ZFS_KO, b"elf")],
                true,
                Some(&hostid),
            ),
            (
                &[(ZFS_KO, b"elf"), ("etc/hostid", &hostid)],
                true,
                Some(&hostid),
            ),
            (
                &[("etc/hostid", &hostid), ("bin/sh", b"sh")],
                false,
                Some(&hostid),
            ),
            (&[(ZFS_KO, b"elf"), ("bin/sh", b"sh")], true, None),
        ];
        for (files, has_zfs, id) in cases {
            let Some(file) = image(files) else {
                eprintln!("zstd is not installed here: not tested");
                return;
            };
            let got = read(file.path()).unwrap();
            assert_eq!(got.has_zfs, has_zfs, "{files:?}");
            assert_eq!(got.hostid.as_deref(), id, "{files:?}");
        }
    }

    #[test]
    fn a_kept_reading_is_used_until_the_image_changes_and_remember_reads_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache_path = dir.path().join("cache/initramfs.json");
        let Some(file) = image(&[(ZFS_KO, b"elf"), ("etc/hostid", &[1, 0, 0, 0])]) else {
            eprintln!("zstd is not installed here: not tested");
            return;
        };
        let mut cache = Cache::load(&cache_path);
        let first = cache.readings(file.path()).unwrap();
        assert!(first.has_zfs);
        cache.save().unwrap();

        // A kept reading is taken as it is while the file keeps its size and time: this one
        // is made to differ from the image, so taking it shows the image was not read.
        let mut entries: BTreeMap<String, Entry> =
            serde_json::from_slice(&std::fs::read(&cache_path).unwrap()).unwrap();
        entries.get_mut(&key(file.path())).unwrap().readings.has_zfs = false;
        std::fs::write(&cache_path, serde_json::to_vec(&entries).unwrap()).unwrap();
        let mut cache = Cache::load(&cache_path);
        assert!(!cache.readings(file.path()).unwrap().has_zfs);
        // `remember` reads the image whatever is kept.
        assert!(cache.remember(file.path()).unwrap().has_zfs);

        // A changed image (another size) is read again.
        let Some(other) = image(&[("bin/sh", b"sh")]) else {
            return;
        };
        std::fs::copy(other.path(), file.path()).unwrap();
        let again = Cache::load(&cache_path).readings(file.path()).unwrap();
        assert_eq!(
            again,
            InitramfsReadings {
                has_zfs: false,
                hostid: None
            }
        );
    }

    #[test]
    fn boot_images_are_the_initrd_img_files() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "initrd.img-6.12.48+deb13-amd64",
            "initrd.img-6.1.0-40-amd64",
            "vmlinuz-6.1.0-40-amd64",
            "config-6.1.0-40-amd64",
        ] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        let names: Vec<String> = boot_images(dir.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "initrd.img-6.1.0-40-amd64",
                "initrd.img-6.12.48+deb13-amd64"
            ]
        );
    }
}
