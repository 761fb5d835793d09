//! What a ZFSBootMenu EFI file carries that the installed system must agree with, read from the
//! file itself rather than from where it came from (built here, given by path, the release):
//! - its embedded command line (the `.cmdline` section), what it runs with when the firmware
//!   passes no load options (the fallback path); a file signed for Secure Boot has none, so that
//!   the load options shim passes on are used (systemd's stub ignores them under Secure Boot
//!   when the file has a command line of its own);
//! - whether it is signed (an Authenticode signature, which Secure Boot checks), and the
//!   signature's bytes, which carry the signer's certificate;
//! - the `/etc/hostid` in its initramfs (the `.initrd` section): a local build carries the
//!   building machine's, imports pools with it and passes it on as `spl.spl_hostid`, so the
//!   install must use that value everywhere; a release build carries none (then 0x00bab10c);
//! - whether its initramfs carries zfs.ko: without it ZFSBootMenu stops in its emergency shell
//!   ("unable to load ZFS kernel modules") and imports nothing. A dracut that builds in host-only
//!   mode (dracut-ng's default since 110, Debian forky's 112) leaves it out without a word when
//!   the building machine has no ZFS loaded;
//! - the feature set of its ZFS: the newest `openzfs-X.Y` compatibility file its zfsutils put in
//!   the image (usr/share/zfs/compatibility.d), which lists every feature that ZFS can read. A
//!   pool with a feature outside it is one this ZFSBootMenu cannot import.
//!
//! The file is a unified kernel image: a PE executable whose sections hold the kernel, the
//! initramfs and the command line, read with the `object` crate.

use crate::initrd::{self, Files, InitrdError, Stop};
use object::read::pe::PeFile64;
use object::{Object, ObjectSection, ReadCache};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;

/// kldload's boot-trial hook, in ZFSBootMenu's hook directories (`crate::upgrade::trial`).
pub const BOOT_TRIAL_HOOK: &str = "boot-sel.d/kldload-trial";

/// Where zfsutils keeps its compatibility files, in an initramfs's paths.
pub const COMPATIBILITY_DIR: &str = "usr/share/zfs/compatibility.d";

/// What one ZFSBootMenu EFI file carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZbmImage {
    /// The embedded command line; none: the file has no `.cmdline` section (a file signed for
    /// Secure Boot, whose options come from its firmware entry through shim).
    pub cmdline: Option<String>,
    /// Whether it carries an Authenticode signature (the PE certificate table).
    pub signed: bool,
    /// The hostid it imports with and passes on; none: it has no /etc/hostid.
    pub hostid: Option<u32>,
    /// What its ZFS can read; none when its image has no compatibility files.
    pub zfs_features: Option<FeatureSet>,
    /// Its version and build date, from /etc/zbm-release in its initramfs (`VERSION`,
    /// `BUILD_ID`); none when it has no such file.
    #[serde(default)]
    pub release: Option<ZbmRelease>,
    /// The version string of its kernel (the `.linux` section's bzImage header), e.g.
    /// `6.1.0-50-amd64 (debian-kernel@lists.debian.org) #1 SMP ... Debian 6.1.176-1 ...`.
    #[serde(default)]
    pub kernel: Option<String>,
    /// Where zfs.ko is in its initramfs (e.g. `usr/lib/modules/K/updates/dkms/zfs.ko.xz`);
    /// none: it has none, and cannot import a pool. Reports written before kldload read this
    /// have none too.
    #[serde(default)]
    pub zfs_module: Option<String>,
    /// It carries kldload's boot-trial hook (`crate::upgrade::trial`): built at image time by
    /// kldload, it boots a boot environment on trial once and falls back by itself.
    #[serde(default)]
    pub boot_trial: bool,
}

/// What /etc/zbm-release in a ZFSBootMenu image says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZbmRelease {
    pub version: Option<String>,
    pub build_id: Option<String>,
}

/// A named set of pool features, as in a `compatibility.d` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureSet {
    /// The file's name, e.g. `openzfs-2.3-linux`: also the value `zpool create -o
    /// compatibility=` takes.
    pub name: String,
    pub features: BTreeSet<String>,
}

impl ZbmImage {
    /// What a person reads: one fact a line.
    pub fn summary(&self) -> String {
        let hostid = match self.hostid {
            Some(h) => format!("0x{h:08x} (it imports with it and passes it on as spl.spl_hostid)"),
            None => "none (a release build: it imports with 0x00bab10c)".into(),
        };
        let zfs = match &self.zfs_features {
            Some(set) => format!("{} ({} features)", set.name, set.features.len()),
            None => "unknown (no openzfs-X.Y file in its usr/share/zfs/compatibility.d)".into(),
        };
        let cmdline = match &self.cmdline {
            Some(line) => line.as_str(),
            None => "none (its options come from the firmware entry)",
        };
        let module = match &self.zfs_module {
            Some(path) => path.as_str(),
            None => "NONE: it cannot load ZFS, and stops in its emergency shell",
        };
        let signed = if self.signed {
            "yes (Authenticode: shim checks it when Secure Boot is on)"
        } else {
            "no"
        };
        format!(
            "embedded command line: {cmdline}\nhostid: {hostid}\nits ZFS reads: {zfs}\n\
             zfs.ko: {module}\nsigned: {signed}\n"
        )
    }
}

impl FeatureSet {
    /// Whether a ZFS with this set reads pool feature `feature`.
    pub fn reads(&self, feature: &str) -> bool {
        self.features.contains(feature)
    }

    /// The features of `enabled` this set lacks, in order.
    pub fn unreadable<'a>(&self, enabled: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        enabled
            .into_iter()
            .filter(|f| !self.reads(f))
            .map(String::from)
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ZbmImageError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not an EFI executable ({why})")]
    NotPe { path: String, why: String },
    #[error(
        "{path} has no {section} section: it is not a unified kernel image such as \
         ZFSBootMenu's EFI file (give the EFI file, not the kernel or a tarball)"
    )]
    NoSection { path: String, section: &'static str },
    #[error("{0}")]
    Initrd(#[from] InitrdError),
}

/// Reads what the EFI file at `path` carries. Decompresses its initramfs once (a second or two
/// on a slow machine: the compatibility files are near its end).
pub fn read(path: &Path) -> Result<ZbmImage, ZbmImageError> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|source| ZbmImageError::Io {
        path: shown.clone(),
        source,
    })?;
    let cache = ReadCache::new(file);
    let pe = PeFile64::parse(&cache).map_err(|e| ZbmImageError::NotPe {
        path: shown.clone(),
        why: e.to_string(),
    })?;
    let section = |section: &'static str| {
        pe.section_by_name(section).ok_or(ZbmImageError::NoSection {
            path: shown.clone(),
            section,
        })
    };
    let cmdline = match pe.section_by_name(".cmdline") {
        None => None,
        Some(cmdline) => {
            let bytes = cmdline.data().map_err(|e| ZbmImageError::NotPe {
                path: shown.clone(),
                why: format!("its .cmdline section: {e}"),
            })?;
            Some(
                String::from_utf8_lossy(bytes)
                    .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                    .to_string(),
            )
        }
    };
    let signed = certificate_table(&pe).is_some();
    let (offset, size) = section(".initrd")?
        .file_range()
        .ok_or_else(|| ZbmImageError::NotPe {
            path: shown.clone(),
            why: "its .initrd section has no data in the file".into(),
        })?;
    let trial_hook = format!("libexec/hooks/{BOOT_TRIAL_HOOK}");
    let wanted = |name: &str| {
        name == trial_hook
            || name == "etc/hostid"
            || name == "etc/zbm-release"
            || name.starts_with(COMPATIBILITY_DIR)
            || crate::zbm::kernels::is_zfs_module(name)
    };
    let files = initrd::read_files(path, offset..offset + size, &wanted, Stop::AtEnd)?;
    let kernel = pe
        .section_by_name(".linux")
        .and_then(|s| s.data().ok())
        .and_then(bzimage_version);
    Ok(ZbmImage {
        cmdline,
        signed,
        hostid: files
            .iter()
            .find(|m| m.name == "etc/hostid" && !m.link)
            .and_then(|m| crate::zbm::hostid::parse_hostid_file(&m.data)),
        zfs_features: newest_openzfs(&files),
        release: files
            .iter()
            .find(|m| m.name == "etc/zbm-release" && !m.link)
            .map(|m| parse_zbm_release(&String::from_utf8_lossy(&m.data))),
        kernel,
        zfs_module: files
            .iter()
            .find(|m| crate::zbm::kernels::is_zfs_module(&m.name) && !m.link)
            .map(|m| m.name.clone()),
        boot_trial: files.iter().any(|m| m.name == trial_hook),
    })
}

/// /etc/zbm-release's `VERSION` and `BUILD_ID` (os-release's format).
pub fn parse_zbm_release(text: &str) -> ZbmRelease {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let value = l.strip_prefix(key)?.strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_string())
        })
    };
    ZbmRelease {
        version: field("VERSION"),
        build_id: field("BUILD_ID"),
    }
}

/// The version string a bzImage carries (Linux boot protocol: the header's `kernel_version`
/// at 0x20e is its offset minus 0x200, the string NUL-terminated); None when the bytes are not
/// a bzImage ("HdrS" at 0x202).
pub fn bzimage_version(image: &[u8]) -> Option<String> {
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let at = usize::from(u16::from_le_bytes([*image.get(0x20e)?, *image.get(0x20f)?])) + 0x200;
    let bytes = image.get(at..)?;
    let end = bytes.iter().take(512).position(|b| *b == 0)?;
    Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

/// Where the PE certificate table (the Authenticode signatures) is in the file: (offset, size).
/// Its data directory entry holds a file offset, not an address, and none when unsigned.
fn certificate_table<'data, R: object::ReadRef<'data>>(
    pe: &PeFile64<'data, R>,
) -> Option<(u64, u64)> {
    use object::LittleEndian as LE;
    let table = pe.data_directory(object::pe::IMAGE_DIRECTORY_ENTRY_SECURITY)?;
    let size = table.size.get(LE);
    (size > 0).then(|| (u64::from(table.virtual_address.get(LE)), u64::from(size)))
}

/// The signature bytes of a signed EFI file (its certificate table: each entry a
/// WIN_CERTIFICATE holding a PKCS#7 SignedData, which carries the signer's certificate);
/// none when the file is unsigned.
pub fn signature(path: &Path) -> Result<Option<Vec<u8>>, ZbmImageError> {
    use std::os::unix::fs::FileExt;
    let shown = path.display().to_string();
    let io = |source| ZbmImageError::Io {
        path: shown.clone(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let cache = ReadCache::new(&file);
    let pe = PeFile64::parse(&cache).map_err(|e| ZbmImageError::NotPe {
        path: shown.clone(),
        why: e.to_string(),
    })?;
    let Some((offset, size)) = certificate_table(&pe) else {
        return Ok(None);
    };
    let mut bytes = vec![0; usize::try_from(size).unwrap_or(0)];
    file.read_exact_at(&mut bytes, offset).map_err(io)?;
    Ok(Some(bytes))
}

/// Why an embedded command line was left as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdlineKept {
    /// The file is signed: its signature covers the section, and Secure Boot would refuse the
    /// file changed.
    Signed,
    /// The section holds at most `room` bytes before the next one.
    NoRoom { room: u32 },
}

impl std::fmt::Display for CmdlineKept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CmdlineKept::Signed => f.write_str("the file is signed (its signature covers it)"),
            CmdlineKept::NoRoom { room } => write!(f, "its .cmdline section holds {room} bytes"),
        }
    }
}

/// Replaces the command line embedded in the EFI file at `path` with `line`, in place: the
/// `.cmdline` section's bytes (zeros after `line`, to the section's end in the file) and its
/// virtual size, which is how much of it the stub reads. The firmware starts the fallback copy
/// (EFI/BOOT/BOOTX64.EFI) without load options, so this line is all it then runs with. A signed
/// file is left as it is, and so is one whose section cannot hold `line` without reaching the
/// next section: `Ok(Err(why))`. Writes a few hundred bytes, never the whole file.
pub fn set_cmdline(path: &Path, line: &str) -> Result<Result<(), CmdlineKept>, ZbmImageError> {
    use object::LittleEndian as LE;
    use object::pe;
    use object::read::pe::{ImageNtHeaders, ImageOptionalHeader};
    use std::os::unix::fs::FileExt;
    let shown = path.display().to_string();
    let io = |source| ZbmImageError::Io {
        path: shown.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    let (header_at, data_at, raw_size, room) = {
        let cache = ReadCache::new(&file);
        let pe = PeFile64::parse(&cache).map_err(|e| ZbmImageError::NotPe {
            path: shown.clone(),
            why: e.to_string(),
        })?;
        if certificate_table(&pe).is_some() {
            return Ok(Err(CmdlineKept::Signed));
        }
        let table = pe.section_table();
        let (index, header) = table
            .iter()
            .enumerate()
            .find(|(_, h)| h.name == *b".cmdline")
            .ok_or(ZbmImageError::NoSection {
                path: shown.clone(),
                section: ".cmdline",
            })?;
        let address = header.virtual_address.get(LE);
        let raw_size = header.size_of_raw_data.get(LE);
        let next = table
            .iter()
            .map(|h| h.virtual_address.get(LE))
            .filter(|&a| a > address)
            .min();
        // Up to the next section, or the image's end when it is the last.
        let image_end = pe.nt_headers().optional_header().size_of_image();
        let end = next.unwrap_or(image_end);
        let room = raw_size.min(end.saturating_sub(address));
        // The section table follows the NT headers' signature, file header and optional header.
        let nt = u64::from(pe.dos_header().nt_headers_offset());
        let optional = u64::from(pe.nt_headers().file_header.size_of_optional_header.get(LE));
        let file_header = std::mem::size_of::<pe::ImageFileHeader>() as u64;
        let section_header = std::mem::size_of::<pe::ImageSectionHeader>() as u64;
        let header_at = nt + 4 + file_header + optional + section_header * index as u64;
        (
            header_at,
            u64::from(header.pointer_to_raw_data.get(LE)),
            raw_size,
            room,
        )
    };
    let file_len = file.metadata().map_err(io)?.len();
    if data_at + u64::from(raw_size) > file_len {
        return Err(ZbmImageError::NotPe {
            path: shown.clone(),
            why: "its .cmdline section reaches past the file's end".into(),
        });
    }
    let length = u32::try_from(line.len()).unwrap_or(u32::MAX);
    if length > room {
        return Ok(Err(CmdlineKept::NoRoom { room }));
    }
    let mut bytes = line.as_bytes().to_vec();
    bytes.resize(raw_size as usize, 0);
    file.write_all_at(&bytes, data_at).map_err(io)?;
    // VirtualSize is the header's third field, after the 8-byte name.
    file.write_all_at(&length.to_le_bytes(), header_at + 8)
        .map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(Ok(()))
}

/// `openzfs-2.3-linux` -> (2, 3, true); None for other names and other systems' files.
fn openzfs_version(name: &str) -> Option<(u32, u32, bool)> {
    let rest = name.strip_prefix("openzfs-")?;
    let (version, linux) = match rest.strip_suffix("-linux") {
        Some(v) => (v, true),
        None => (rest, false),
    };
    let (major, minor) = version.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?, linux))
}

/// The older of two `openzfs-X.Y[-linux]` set names (what both ZFSs read: the sets only grow),
/// or the known one when the other is none of those.
pub fn older_openzfs<'a>(a: &'a str, b: &'a str) -> &'a str {
    match (openzfs_version(a), openzfs_version(b)) {
        (Some(va), Some(vb)) if vb < va => b,
        (None, Some(_)) => b,
        _ => a,
    }
}

/// The newest `openzfs-X.Y` set among `names` (file names of a compatibility.d directory),
/// the Linux one when both are there.
pub fn newest_openzfs_name<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    names
        .into_iter()
        .filter_map(|n| Some((openzfs_version(n)?, n)))
        .max()
        .map(|(_, n)| n)
}

/// The newest `openzfs-X.Y` set among the compatibility files in `files` (the Linux one when
/// both exist), symbolic links followed within the directory.
pub fn newest_openzfs(files: &Files) -> Option<FeatureSet> {
    let in_dir = |m: &initrd::Member| {
        m.name
            .strip_prefix(COMPATIBILITY_DIR)
            .and_then(|n| n.strip_prefix('/'))
            .map(String::from)
    };
    let names: Vec<String> = files.iter().filter_map(&in_dir).collect();
    let name = newest_openzfs_name(names.iter().map(String::as_str))?.to_string();
    let mut current = name.clone();
    for _ in 0..8 {
        let member = files
            .iter()
            .find(|m| in_dir(m).as_deref() == Some(&current))?;
        if !member.link {
            return Some(FeatureSet {
                name,
                features: parse_features(&String::from_utf8_lossy(&member.data)),
            });
        }
        current = String::from_utf8_lossy(&member.data)
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
    }
    None
}

/// The features a compatibility file lists: words separated by white space or commas, `#`
/// starting a comment.
pub fn parse_features(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .flat_map(|line| line.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::initrd::testing::{Entry, compress, cpio_entries};
    use object::pe;
    use object::write::pe::{NtHeaders, Writer};

    /// A unified kernel image as systemd's stub makes them: a PE file with `sections`.
    pub(crate) fn efi(sections: &[(&str, &[u8])]) -> Vec<u8> {
        efi_maybe_signed(sections, None)
    }

    /// The same, with `signature` as its certificate table (at the file's end, as sbsign puts
    /// it) when given.
    pub(crate) fn efi_maybe_signed(
        sections: &[(&str, &[u8])],
        signature: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = Writer::new(true, 0x1000, 0x200, &mut out);
        w.reserve_dos_header_and_stub();
        w.reserve_nt_headers(16);
        w.reserve_section_headers(sections.len() as u16);
        let ranges: Vec<_> = sections
            .iter()
            .map(|(name, data)| {
                let mut n = [0u8; 8];
                n[..name.len()].copy_from_slice(name.as_bytes());
                let flags = pe::IMAGE_SCN_CNT_INITIALIZED_DATA | pe::IMAGE_SCN_MEM_READ;
                w.reserve_section(n, flags, data.len() as u32, data.len() as u32)
            })
            .collect();
        if let Some(signature) = signature {
            w.reserve_certificate_table(signature.len() as u32);
        }
        w.write_dos_header_and_stub().unwrap();
        w.write_nt_headers(NtHeaders {
            machine: pe::IMAGE_FILE_MACHINE_AMD64,
            time_date_stamp: 0,
            characteristics: pe::IMAGE_FILE_EXECUTABLE_IMAGE,
            major_linker_version: 0,
            minor_linker_version: 0,
            address_of_entry_point: 0,
            image_base: 0x1_4000_0000,
            major_operating_system_version: 0,
            minor_operating_system_version: 0,
            major_image_version: 0,
            minor_image_version: 0,
            major_subsystem_version: 0,
            minor_subsystem_version: 0,
            subsystem: pe::IMAGE_SUBSYSTEM_EFI_APPLICATION,
            dll_characteristics: pe::DllFlags(0),
            size_of_stack_reserve: 0,
            size_of_stack_commit: 0,
            size_of_heap_reserve: 0,
            size_of_heap_commit: 0,
        });
        w.write_section_headers();
        for ((_, data), range) in sections.iter().zip(&ranges) {
            w.write_section(range.file_offset, data);
        }
        if let Some(signature) = signature {
            w.write_certificate_table(signature);
        }
        out
    }

    /// Where a Debian ZFSBootMenu carries zfs.ko: a test image that must import has it.
    pub(crate) const ZFS_KO: &str = "usr/lib/modules/6.1.0-50-amd64/updates/dkms/zfs.ko.xz";

    /// A ZFSBootMenu-like EFI file: its command line, an initramfs (zstd) with `entries`, and a
    /// kernel section after it.
    pub(crate) fn zbm_efi(cmdline: &str, entries: &[Entry]) -> Option<tempfile::NamedTempFile> {
        let initrd = compress("zstd", &cpio_entries(entries))?;
        let bytes = efi(&[
            (".cmdline", cmdline.as_bytes()),
            (".initrd", &initrd),
            (".linux", b"a kernel, not read"),
        ]);
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        Some(file)
    }

    fn compat(name: &str) -> String {
        format!("{COMPATIBILITY_DIR}/{name}")
    }

    #[test]
    fn hostid_command_line_and_the_newest_linux_feature_set_are_read() {
        let (c20, c22, c23, c23l, c23f, grub) = (
            compat("openzfs-2.0-linux"),
            compat("openzfs-2.2"),
            compat("openzfs-2.3"),
            compat("openzfs-2.3-linux"),
            compat("openzfs-2.3-freebsd"),
            compat("grub2"),
        );
        let entries = [
            Entry::file("etc/hostid", &[0xef, 0xbe, 0xad, 0xde]),
            Entry::file(&c20, b"# 2.0\nasync_destroy\n"),
            Entry::file(&c22, b"async_destroy, blake3\n"),
            Entry::file(
                &c23,
                b"# Features of 2.3\nasync_destroy\nblake3\nfast_dedup # new\n",
            ),
            Entry::link(&c23l, "openzfs-2.3"),
            Entry::file(&c23f, b"async_destroy\n"),
            Entry::file(&grub, b"async_destroy\n"),
            Entry::file(
                "usr/lib/modules/6.1.0-50-amd64/kernel/fs/zfsx.ko",
                b"not zfs",
            ),
            Entry::file(ZFS_KO, b"zfs"),
        ];
        let Some(file) = zbm_efi("quiet zbm.prefer=rpool\0", &entries) else {
            eprintln!("zstd is not installed here: not tested");
            return;
        };
        let image = read(file.path()).unwrap();
        assert_eq!(image.cmdline.as_deref(), Some("quiet zbm.prefer=rpool"));
        assert!(!image.signed);
        assert_eq!(image.hostid, Some(0xdeadbeef));
        assert_eq!(image.zfs_module.as_deref(), Some(ZFS_KO));
        let set = image.zfs_features.unwrap();
        assert_eq!(set.name, "openzfs-2.3-linux");
        assert_eq!(
            set.features.iter().map(String::as_str).collect::<Vec<_>>(),
            ["async_destroy", "blake3", "fast_dedup"]
        );
        assert_eq!(
            set.unreadable(["blake3", "raidz_expansion", "async_destroy", "longname"]),
            ["raidz_expansion", "longname"]
        );
    }

    #[test]
    fn a_release_build_has_no_hostid_and_what_is_no_unified_image_is_named() {
        let Some(file) = zbm_efi("quiet", &[Entry::file("etc/os-release", b"ID=void\n")]) else {
            return;
        };
        let image = read(file.path()).unwrap();
        assert_eq!((image.hostid, &image.zfs_features), (None, &None));
        assert_eq!(image.zfs_module, None);
        assert!(
            image.summary().contains("zfs.ko: NONE: it cannot load ZFS"),
            "{}",
            image.summary()
        );
        let mut kernel_only = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut kernel_only, &efi(&[(".linux", b"k")])).unwrap();
        let err = read(kernel_only.path()).unwrap_err().to_string();
        assert!(err.contains("no .initrd section"), "{err}");
        let mut text = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut text, b"#!/bin/sh\n").unwrap();
        let err = read(text.path()).unwrap_err().to_string();
        assert!(err.contains("is not an EFI executable"), "{err}");
    }

    #[test]
    fn a_signed_file_without_a_command_line_is_read_with_its_signature() {
        let Some(initrd) = compress(
            "zstd",
            &cpio_entries(&[Entry::file("etc/hostid", &[1, 0, 0, 0])]),
        ) else {
            return;
        };
        let signature = b"WIN_CERTIFICATE + PKCS#7, carrying the signer's certificate";
        let sections: [(&str, &[u8]); 2] = [(".initrd", &initrd), (".linux", b"a kernel")];
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, &efi_maybe_signed(&sections, Some(signature)))
            .unwrap();
        let image = read(file.path()).unwrap();
        assert_eq!(
            (image.cmdline, image.signed, image.hostid),
            (None, true, Some(1))
        );
        let read_back = self::signature(file.path()).unwrap().unwrap();
        assert!(read_back.starts_with(signature), "{read_back:?}");
        assert!(
            read_back.len() < signature.len() + 8,
            "padded to 8 bytes at most"
        );

        let mut unsigned = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut unsigned, &efi(&sections)).unwrap();
        assert!(!read(unsigned.path()).unwrap().signed);
        assert_eq!(self::signature(unsigned.path()).unwrap(), None);
    }

    #[test]
    fn the_embedded_command_line_is_replaced_in_place_and_nothing_else_changes() {
        let sections: [(&str, &[u8]); 3] = [
            (".cmdline", b"quiet loglevel=0 nomodeset"),
            (".initrd", b"an initramfs"),
            (".linux", b"a kernel"),
        ];
        let write = |bytes: &[u8]| {
            let mut file = tempfile::NamedTempFile::new().unwrap();
            std::io::Write::write_all(&mut file, bytes).unwrap();
            file
        };
        let section = |path: &Path, name: &str| {
            let bytes = std::fs::read(path).unwrap();
            let pe = PeFile64::parse(&*bytes).unwrap();
            pe.section_by_name(name).unwrap().data().unwrap().to_vec()
        };
        let file = write(&efi(&sections));
        let before = std::fs::read(file.path()).unwrap();
        let line = "quiet zbm.prefer=tank zbm.timeout=5 console=ttyS0,115200";
        assert_eq!(set_cmdline(file.path(), line).unwrap(), Ok(()));
        assert_eq!(section(file.path(), ".cmdline"), line.as_bytes());
        assert_eq!(section(file.path(), ".initrd"), b"an initramfs");
        assert_eq!(section(file.path(), ".linux"), b"a kernel");
        let after = std::fs::read(file.path()).unwrap();
        assert_eq!(after.len(), before.len());
        // Shorter again: the stub reads the new length, not the old line's tail.
        assert_eq!(set_cmdline(file.path(), "quiet").unwrap(), Ok(()));
        assert_eq!(section(file.path(), ".cmdline"), b"quiet");

        let long = "x".repeat(0x201);
        let room = set_cmdline(file.path(), &long).unwrap();
        assert!(
            matches!(room, Err(CmdlineKept::NoRoom { room }) if room <= 0x200),
            "{room:?}"
        );
        assert_eq!(section(file.path(), ".cmdline"), b"quiet");

        let signed = write(&efi_maybe_signed(&sections, Some(b"a signature")));
        let before = std::fs::read(signed.path()).unwrap();
        assert_eq!(
            set_cmdline(signed.path(), line).unwrap(),
            Err(CmdlineKept::Signed)
        );
        assert_eq!(std::fs::read(signed.path()).unwrap(), before);

        let kernel_only = write(&efi(&[(".linux", b"k")]));
        let err = set_cmdline(kernel_only.path(), line).unwrap_err();
        assert!(err.to_string().contains("no .cmdline section"), "{err}");
    }

    #[test]
    fn the_older_of_two_feature_sets_is_what_both_read() {
        assert_eq!(
            older_openzfs("openzfs-2.3-linux", "openzfs-2.1-linux"),
            "openzfs-2.1-linux"
        );
        assert_eq!(
            older_openzfs("openzfs-2.3-linux", "openzfs-2.10-linux"),
            "openzfs-2.3-linux"
        );
        assert_eq!(older_openzfs("grub2", "openzfs-2.2"), "openzfs-2.2");
        assert_eq!(
            newest_openzfs_name(["openzfs-2.2", "grub2", "openzfs-2.3-linux", "openzfs-2.3"]),
            Some("openzfs-2.3-linux")
        );
        assert_eq!(newest_openzfs_name(["grub2", "freebsd-11.0"]), None);
    }

    #[test]
    fn compatibility_files_parse_as_zfs_reads_them() {
        let set = parse_features("# c\nasync_destroy, bookmarks\n\n  lz4_compress\t#x\n");
        assert_eq!(set.len(), 3);
        assert_eq!(openzfs_version("openzfs-2.10-linux"), Some((2, 10, true)));
        assert_eq!(openzfs_version("openzfs-2.3-freebsd"), None);
        assert!(openzfs_version("openzfs-2.3") < openzfs_version("openzfs-2.3-linux"));
        assert!(openzfs_version("openzfs-2.10") > openzfs_version("openzfs-2.9-linux"));
    }

    #[test]
    fn zbm_release_and_kernel_version() {
        let r =
            parse_zbm_release("NAME=\"ZFSBootMenu\"\nVERSION=\"3.1.0\"\nBUILD_ID=\"2026-11-25\"\n");
        assert_eq!(r.version.as_deref(), Some("3.1.0"));
        assert_eq!(r.build_id.as_deref(), Some("2026-11-25"));
        assert_eq!(parse_zbm_release("").version, None);
        // A bzImage header: "HdrS" at 0x202, the version string's offset - 0x200 at 0x20e.
        let mut image = vec![0u8; 0x400];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        let text = b"6.1.0-50-amd64 (debian-kernel@lists.debian.org) #1 SMP\0";
        image[0x300..0x300 + text.len()].copy_from_slice(text);
        assert_eq!(
            bzimage_version(&image).as_deref(),
            Some("6.1.0-50-amd64 (debian-kernel@lists.debian.org) #1 SMP")
        );
        image[0x202] = b'X';
        assert_eq!(bzimage_version(&image), None);
    }
}
