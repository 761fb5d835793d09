//! Files added to an initramfs image without rebuilding it: a small uncompressed "newc"
//! archive placed after the image's uncompressed archives and before its compressed one, where
//! initramfs-tools itself puts uncompressed archives (early microcode; on Debian 13 the
//! already-compressed kernel modules). The kernel unpacks every archive in order; lsinitramfs,
//! unmkinitramfs and [`super::read_file`] read them all.
//!
//! Why: an encrypted install needs the pool's key file in the initramfs, and rebuilding the
//! payload's initramfs for it took 190 s under emulation (minutes on a slow machine too), the
//! same image otherwise. A later `update-initramfs` makes a whole new image, with the file in
//! it when it is still on the system (Debian's zfs-initramfs copies /etc/zfs).
//!
//! Added after the compressed archive instead, a file would be unpacked last by the kernel but
//! stay invisible to lsinitramfs and unmkinitramfs, which stop at the first archive's trailer
//! there: so this only adds files the image does not have.

use super::{InitrdError, TRAILER, compressed_start, image_length, read_files};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// The mode of an image with files added: root's only, as what is added is usually secret
/// (the key file), like the image `update-initramfs` makes with `UMASK=0077`.
pub const IMAGE_MODE: u32 = 0o600;

/// Archives are padded with zeros to this, as `cpio -o` pads them: unmkinitramfs steps from
/// one uncompressed archive to the next in blocks of this size.
const BLOCK: usize = 512;

/// One entry of a new archive: a directory or a regular file as the root it comes from has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// Its path in the archive, relative (`etc/zfs/keys/rpool.key`).
    pub name: String,
    /// `st_mode`: the file type and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: u64,
    /// A regular file's contents; empty for a directory.
    pub data: Vec<u8>,
}

/// A newc archive of `entries` (inode numbers counted from 1), its trailer, and zeros up to a
/// multiple of 512 bytes.
pub fn newc_archive(entries: &[NewEntry]) -> Vec<u8> {
    let trailer = NewEntry {
        name: TRAILER.into(),
        mode: 0,
        uid: 0,
        gid: 0,
        mtime: 0,
        data: vec![],
    };
    let mut out = Vec::new();
    for (n, e) in entries.iter().chain([&trailer]).enumerate() {
        let is_dir = e.mode & 0o170000 == 0o040000;
        let ino = if e.name == TRAILER { 0 } else { n as u64 + 1 };
        // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
        // rdevminor, namesize, check
        let fields = [
            ino,
            e.mode as u64,
            e.uid as u64,
            e.gid as u64,
            if is_dir { 2 } else { 1 },
            e.mtime,
            e.data.len() as u64,
            0,
            0,
            0,
            0,
            e.name.len() as u64 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(e.name.as_bytes());
        out.push(0);
        pad_to(&mut out, 4);
        out.extend_from_slice(&e.data);
        pad_to(&mut out, 4);
    }
    pad_to(&mut out, BLOCK);
    out
}

fn pad_to(out: &mut Vec<u8>, multiple: usize) {
    out.resize(out.len().div_ceil(multiple) * multiple, 0);
}

/// Why files cannot be added.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error(
        "{0:?} is not a relative path inside the root (no `..`): name the file as the \
             initramfs should hold it, e.g. etc/zfs/keys/rpool.key"
    )]
    BadName(String),
    #[error("{path}: {why}")]
    Source { path: String, why: String },
    #[error(
        "{image} already holds {name}: added again, one copy would hide the other; rebuild the \
         image instead (update-initramfs -u)"
    )]
    AlreadyThere { image: String, name: String },
    #[error("{0} holds no initramfs image (initrd.img-*): nothing to add the files to")]
    NoImage(String),
    #[error(transparent)]
    Image(#[from] InitrdError),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// The entries that put `files` (paths relative to `root`) into an archive: each file's parent
/// directories first, once each, then the file, with the modes, owners and times `root` has.
/// Only directories and regular files are taken.
pub fn entries_from(root: &Path, files: &[String]) -> Result<Vec<NewEntry>, AddError> {
    let mut entries: Vec<NewEntry> = Vec::new();
    for file in files {
        let name = relative_name(file)?;
        let parts: Vec<&str> = name.split('/').collect();
        for depth in 1..=parts.len() {
            let name = parts[..depth].join("/");
            if entries.iter().any(|e| e.name == name) {
                continue;
            }
            let last = depth == parts.len();
            entries.push(entry(root, &name, last)?);
        }
    }
    Ok(entries)
}

/// `file` as a relative path without `.` or `..`, a leading `/` dropped.
fn relative_name(file: &str) -> Result<String, AddError> {
    let bad = || AddError::BadName(file.to_string());
    let parts: Vec<String> = Path::new(file.trim_start_matches('/'))
        .components()
        .map(|c| match c {
            Component::Normal(p) => Ok(p.to_string_lossy().into_owned()),
            _ => Err(bad()),
        })
        .collect::<Result<_, _>>()?;
    if parts.is_empty() {
        return Err(bad());
    }
    Ok(parts.join("/"))
}

/// The entry for `name` under `root`: a directory, or (when `file`) a regular file.
fn entry(root: &Path, name: &str, file: bool) -> Result<NewEntry, AddError> {
    let path = root.join(name);
    let source = |why: String| AddError::Source {
        path: path.display().to_string(),
        why,
    };
    let meta = std::fs::symlink_metadata(&path).map_err(|e| source(e.to_string()))?;
    let data = if file {
        if !meta.file_type().is_file() {
            return Err(source("not a regular file".into()));
        }
        std::fs::read(&path).map_err(|e| source(e.to_string()))?
    } else {
        if !meta.file_type().is_dir() {
            return Err(source("not a directory".into()));
        }
        vec![]
    };
    Ok(NewEntry {
        name: name.to_string(),
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: meta.mtime().max(0) as u64,
        data,
    })
}

/// Adds `files` of `root` to the initramfs image `image`: a new image with their archive
/// before the compressed one, written beside it ([`IMAGE_MODE`]) and renamed over it, so a
/// power cut leaves the old image or the new one. Refused when the image already holds one of
/// the files.
pub fn add_files(image: &Path, root: &Path, files: &[String]) -> Result<(), AddError> {
    add_entries(image, &entries_from(root, files)?)
}

/// [`add_files`] with the files already read ([`entries_from`]).
fn add_entries(image: &Path, entries: &[NewEntry]) -> Result<(), AddError> {
    let length = image_length(image)?;
    let added: Vec<&str> = (entries.iter())
        .filter(|e| e.mode & 0o170000 == 0o100000)
        .map(|e| e.name.as_str())
        .collect();
    let held = read_files(
        image,
        0..length,
        &|name| added.contains(&name),
        super::Stop::AtFirst,
    )?;
    if let Some(found) = held.first() {
        return Err(AddError::AlreadyThere {
            image: image.display().to_string(),
            name: found.name.clone(),
        });
    }
    let start = compressed_start(image)?;
    let new = new_path(image);
    let write = |source| AddError::Write {
        path: new.display().to_string(),
        source,
    };
    let result = (|| {
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(IMAGE_MODE)
            .open(&new)?;
        let mut old = File::open(image)?;
        std::io::copy(&mut (&mut old).take(start), &mut out)?;
        out.write_all(&newc_archive(entries))?;
        old.seek(SeekFrom::Start(start))?;
        std::io::copy(&mut old, &mut out)?;
        out.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(IMAGE_MODE))?;
        out.sync_all()?;
        std::fs::rename(&new, image)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&new);
    }
    result.map_err(write)
}

/// Adds `files` of `root` to every initramfs image in `root`/boot (`initrd.img-*`, as
/// initramfs-tools names them), checking every file before any image is changed: the images
/// changed, in name order.
pub fn add_to_every_image(root: &Path, files: &[String]) -> Result<Vec<PathBuf>, AddError> {
    let entries = entries_from(root, files)?;
    let boot = root.join("boot");
    let mut images: Vec<PathBuf> = std::fs::read_dir(&boot)
        .map_err(|e| AddError::Source {
            path: boot.display().to_string(),
            why: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("initrd.img-"))
        })
        .collect();
    images.sort();
    if images.is_empty() {
        return Err(AddError::NoImage(boot.display().to_string()));
    }
    for image in &images {
        add_entries(image, &entries)?;
    }
    Ok(images)
}

/// Where the new image is written before it replaces `image`.
fn new_path(image: &Path) -> PathBuf {
    let mut name = image.file_name().unwrap_or_default().to_os_string();
    name.push(".kldload-new");
    image.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{compress, cpio};
    use super::super::{Stop, read_file, read_files};
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};

    /// A root with the key file where an encrypted install leaves it.
    fn root_with_key() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let keys = root.path().join("etc/zfs/keys");
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
        let key = keys.join("rpool.key");
        std::fs::write(&key, b"passphrase-canary\n").unwrap();
        // (The install's is 0000; 0400 lets a test run without root read it too.)
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        root
    }

    /// GNU cpio's listing (`-tv`) of `archive`; None when cpio is not installed.
    fn cpio_listing(archive: &[u8]) -> Option<String> {
        let mut child = Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        child.stdin.take()?.write_all(archive).ok()?;
        let out = child.wait_with_output().ok()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(String::from_utf8(out.stdout).unwrap())
    }

    #[test]
    fn gnu_cpio_reads_the_archive_with_its_modes_and_sizes() {
        let root = root_with_key();
        let entries = entries_from(root.path(), &["/etc/zfs/keys/rpool.key".into()]).unwrap();
        let archive = newc_archive(&entries);
        assert_eq!(archive.len() % 512, 0);
        let Some(listing) = cpio_listing(&archive) else {
            eprintln!("cpio is not installed here: not tested");
            return;
        };
        let lines: Vec<Vec<&str>> = listing
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        let modes_names: Vec<(&str, &str)> =
            lines.iter().map(|l| (l[0], *l.last().unwrap())).collect();
        assert_eq!(
            modes_names,
            [
                ("drwxr-xr-x", "etc"),
                ("drwxr-xr-x", "etc/zfs"),
                ("drwx------", "etc/zfs/keys"),
                ("-r--------", "etc/zfs/keys/rpool.key"),
            ]
        );
        // `cpio -tv`: mode, links, owner, group, size, date, name.
        assert_eq!(lines[3][4], "18", "{listing}");
    }

    #[test]
    fn files_go_between_the_uncompressed_archives_and_the_compressed_one() {
        let root = root_with_key();
        let early = cpio(&[("kernel/x86/microcode/GenuineIntel.bin", b"microcode")]);
        let mut early = early;
        early.resize(early.len().div_ceil(512) * 512, 0);
        let main = cpio(&[
            ("etc/hostid", b"\x0c\xb1\xba\x00"),
            ("init", b"#!/bin/sh\n"),
        ]);
        let Some(compressed) = compress("zstd", &main) else {
            eprintln!("zstd is not installed here: not tested");
            return;
        };
        let image = tempfile::tempdir().unwrap();
        let path = image.path().join("initrd.img-6.12.0-test");
        std::fs::write(&path, [early.clone(), compressed.clone()].concat()).unwrap();
        add_files(&path, root.path(), &["etc/zfs/keys/rpool.key".into()]).unwrap();

        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..early.len()], &early[..], "the early archive first");
        assert_eq!(
            &bytes[bytes.len() - compressed.len()..],
            &compressed[..],
            "the compressed archive last, as it was"
        );
        assert_eq!(
            compressed_start(&path).unwrap(),
            (bytes.len() - compressed.len()) as u64
        );
        assert_eq!(
            read_file(&path, "etc/zfs/keys/rpool.key")
                .unwrap()
                .as_deref(),
            Some(&b"passphrase-canary\n"[..])
        );
        let names: Vec<String> = read_files(&path, 0..bytes.len() as u64, &|_| true, Stop::AtEnd)
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(
            names,
            [
                "kernel/x86/microcode/GenuineIntel.bin",
                "etc",
                "etc/zfs",
                "etc/zfs/keys",
                "etc/zfs/keys/rpool.key",
                "etc/hostid",
                "init"
            ]
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, IMAGE_MODE);
        assert!(!new_path(&path).exists());

        let again = add_files(&path, root.path(), &["etc/zfs/keys/rpool.key".into()]);
        assert!(
            matches!(&again, Err(AddError::AlreadyThere { name, .. }) if name == "etc/zfs/keys/rpool.key"),
            "{again:?}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "a refusal changes nothing"
        );
    }

    #[test]
    fn every_image_in_boot_gets_the_files_and_a_root_without_one_is_refused() {
        let root = root_with_key();
        let none = add_to_every_image(root.path(), &["etc/zfs/keys/rpool.key".into()]);
        assert!(matches!(none, Err(AddError::Source { .. })), "{none:?}");
        let boot = root.path().join("boot");
        std::fs::create_dir(&boot).unwrap();
        std::fs::write(boot.join("vmlinuz-6.12.0-a"), b"not an initramfs").unwrap();
        let none = add_to_every_image(root.path(), &["etc/zfs/keys/rpool.key".into()]);
        assert!(matches!(none, Err(AddError::NoImage(_))), "{none:?}");
        for version in ["6.12.0-b", "6.12.0-a"] {
            std::fs::write(
                boot.join(format!("initrd.img-{version}")),
                cpio(&[("init", b"")]),
            )
            .unwrap();
        }
        let changed = add_to_every_image(root.path(), &["etc/zfs/keys/rpool.key".into()]).unwrap();
        assert_eq!(
            changed,
            [
                boot.join("initrd.img-6.12.0-a"),
                boot.join("initrd.img-6.12.0-b")
            ]
        );
        for image in changed {
            assert!(
                read_file(&image, "etc/zfs/keys/rpool.key")
                    .unwrap()
                    .is_some()
            );
        }
    }

    #[test]
    fn bad_names_and_missing_files_are_refused_before_the_image_is_touched() {
        let root = root_with_key();
        for bad in ["", "/", "../etc/shadow", "etc/../../x", "./etc/hostid"] {
            let got = entries_from(root.path(), &[bad.into()]);
            assert!(matches!(got, Err(AddError::BadName(_))), "{bad}: {got:?}");
        }
        let missing = entries_from(root.path(), &["etc/zfs/keys/other.key".into()]);
        assert!(
            matches!(&missing, Err(AddError::Source { path, .. }) if path.ends_with("etc/zfs/keys/other.key")),
            "{missing:?}"
        );
        let dir = entries_from(root.path(), &["etc/zfs".into()]);
        assert!(
            matches!(&dir, Err(AddError::Source { why, .. }) if why == "not a regular file"),
            "{dir:?}"
        );
    }
}
