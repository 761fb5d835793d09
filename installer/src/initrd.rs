//! One file read out of an initramfs image without unpacking it. An image is one or more cpio
//! archives in the "newc" format: first the uncompressed ones (early microcode), then one
//! compressed with gzip, zstd, xz, lz4, bzip2, lzma or lzop. The reader walks the uncompressed
//! archives, pipes the compressed rest through its decompressor (the tools unmkinitramfs uses)
//! and stops at the file. initramfs-tools writes its archive sorted by path, so `etc/hostid`
//! comes long before the kernel modules: `kldload doctor` decompresses a few hundred KiB
//! instead of writing the whole image out to disk at every boot (seconds on a slow machine).

pub mod add;
pub mod readings;

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum InitrdError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a cpio archive at byte {offset} ({why})")]
    Format {
        path: String,
        offset: u64,
        why: String,
    },
    #[error("{path}: its compressed archive needs `{tool}`: {source}")]
    Decompressor {
        path: String,
        tool: String,
        source: std::io::Error,
    },
}

/// A cpio "newc" header's fixed part: the magic and 13 eight-digit hex fields.
const HEADER: usize = 110;
const TRAILER: &str = "TRAILER!!!";

/// The decompressor of a compressed archive that starts with `magic`, as argv.
pub fn decompressor(magic: &[u8]) -> Option<&'static [&'static str]> {
    const TOOLS: [(&[u8], &[&str]); 7] = [
        (&[0x1f, 0x8b], &["gzip", "-dc"]),
        (&[0x28, 0xb5, 0x2f, 0xfd], &["zstd", "-dcq"]),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], &["xz", "-dc"]),
        (&[0x02, 0x21, 0x4c, 0x18], &["lz4", "-dc"]),
        (b"BZh", &["bzip2", "-dc"]),
        (&[0x5d, 0x00, 0x00], &["xz", "-dc", "--format=lzma"]),
        (&[0x89, b'L', b'Z', b'O'], &["lzop", "-dc"]),
    ];
    TOOLS
        .iter()
        .find(|(m, _)| magic.starts_with(m))
        .map(|(_, argv)| *argv)
}

/// One entry of a cpio stream: its path (without a leading `./` or `/`), its data's size, and
/// the bytes its header and name took.
struct Entry {
    name: String,
    /// A symbolic link: its data is the link's target.
    link: bool,
    size: u64,
    header_bytes: u64,
}

/// Rounds `n` up to a multiple of 4, as newc pads names and data.
fn pad4(n: u64) -> u64 {
    (n + 3) & !3
}

/// Reads the next header and name from `r`; None at a clean end of input.
fn next_entry(r: &mut impl Read) -> std::io::Result<Option<Result<Entry, String>>> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut header[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Ok(Some(Err("the archive ends inside a header".into()))),
            n => got += n,
        }
    }
    if &header[..6] != b"070701" && &header[..6] != b"070702" {
        return Ok(Some(Err(format!(
            "no newc magic: {:?}",
            String::from_utf8_lossy(&header[..6])
        ))));
    }
    let field = |i: usize| {
        let text = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i]).unwrap_or("");
        u64::from_str_radix(text, 16).map_err(|_| format!("bad header field {text:?}"))
    };
    let (mode, size, name_size) = match (field(1), field(6), field(11)) {
        (Ok(m), Ok(s), Ok(n)) => (m, s, n),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Ok(Some(Err(e))),
    };
    let header_bytes = pad4(HEADER as u64 + name_size);
    let mut name = vec![0u8; (header_bytes - HEADER as u64) as usize];
    r.read_exact(&mut name)?;
    name.truncate(name_size.saturating_sub(1) as usize);
    let name = String::from_utf8_lossy(&name);
    let name = name.trim_start_matches("./").trim_start_matches('/');
    Ok(Some(Ok(Entry {
        name: name.to_string(),
        link: mode & 0o170000 == 0o120000,
        size,
        header_bytes,
    })))
}

/// Skips `n` bytes of `r`.
fn skip(r: &mut impl Read, n: u64) -> std::io::Result<()> {
    let copied = std::io::copy(&mut r.by_ref().take(n), &mut std::io::sink())?;
    if copied < n {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// When a walk over the archives stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// At the first file taken.
    AtFirst,
    /// Once this many files are taken.
    After(usize),
    /// At the end of the image: every file taken.
    AtEnd,
}

impl Stop {
    /// Whether a walk that has taken `taken` files is done.
    fn reached(self, taken: usize) -> bool {
        match self {
            Stop::AtFirst => taken >= 1,
            Stop::After(n) => taken >= n,
            Stop::AtEnd => false,
        }
    }
}

/// A file taken from an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its path, without a leading `./` or `/`.
    pub name: String,
    /// Its contents; a symbolic link's target when `link`.
    pub data: Vec<u8>,
    pub link: bool,
}

/// The files taken so far, in archive order.
pub type Files = Vec<Member>;

/// How walking one archive ended.
enum Walked {
    /// The caller has what it asked for.
    Done,
    /// Its trailer: the archive ended here.
    Trailer,
    /// The input ended without a trailer.
    End,
}

/// Walks the cpio archive `r` up to its trailer (or as many files taken as `stop` asks for),
/// adding the files `take` wants to `files`; `consumed` counts its bytes.
fn walk(
    r: &mut impl Read,
    take: &dyn Fn(&str) -> bool,
    stop: Stop,
    files: &mut Files,
    consumed: &mut u64,
) -> Result<Walked, String> {
    loop {
        let entry = match next_entry(r) {
            Ok(None) => return Ok(Walked::End),
            Ok(Some(entry)) => entry?,
            Err(e) => return Err(e.to_string()),
        };
        *consumed += entry.header_bytes;
        if entry.name == TRAILER {
            return Ok(Walked::Trailer);
        }
        if take(&entry.name) {
            let mut data = vec![0u8; entry.size as usize];
            r.read_exact(&mut data).map_err(|e| e.to_string())?;
            skip(r, pad4(entry.size) - entry.size).map_err(|e| e.to_string())?;
            files.push(Member {
                name: entry.name,
                data,
                link: entry.link,
            });
            if stop.reached(files.len()) {
                return Ok(Walked::Done);
            }
        } else {
            skip(r, pad4(entry.size)).map_err(|e| e.to_string())?;
        }
        *consumed += pad4(entry.size);
    }
}

/// The length of the file `image`.
pub fn image_length(image: &Path) -> Result<u64, InitrdError> {
    std::fs::metadata(image)
        .map(|m| m.len())
        .map_err(|source| InitrdError::Io {
            path: image.display().to_string(),
            source,
        })
}

/// The contents of `wanted` (a path such as `etc/hostid`) in the initramfs image at `image`,
/// or None when the image has no such file.
pub fn read_file(image: &Path, wanted: &str) -> Result<Option<Vec<u8>>, InitrdError> {
    let length = image_length(image)?;
    let files = read_files(image, 0..length, &|name| name == wanted, Stop::AtFirst)?;
    Ok(files.into_iter().next().map(|m| m.data))
}

/// The files `take` wants from the initramfs image that lies in `region` of the file `image`
/// (the whole file, or the `.initrd` section of a unified kernel image), in archive order.
pub fn read_files(
    image: &Path,
    region: Range<u64>,
    take: &dyn Fn(&str) -> bool,
    stop: Stop,
) -> Result<Files, InitrdError> {
    let mut files = Files::new();
    let uncompressed = walk_uncompressed(image, region.clone(), take, stop, &mut files)?;
    let Uncompressed::Compressed { file, offset, argv } = uncompressed else {
        return Ok(files);
    };
    let compressed = file.take(region.end - offset);
    let path = image.display().to_string();
    read_compressed(compressed, argv, take, stop, files, &path, offset)
}

/// Where the first compressed archive of the initramfs image `image` starts: the offset after
/// its uncompressed archives and their padding (the file's length when all are uncompressed).
pub fn compressed_start(image: &Path) -> Result<u64, InitrdError> {
    let length = image_length(image)?;
    let mut none = Files::new();
    match walk_uncompressed(image, 0..length, &|_| false, Stop::AtEnd, &mut none)? {
        Uncompressed::Compressed { offset, .. } => Ok(offset),
        Uncompressed::Done => Ok(length),
    }
}

/// How a walk over an image's uncompressed archives ended.
enum Uncompressed {
    /// The caller has what it asked for, or the region ended.
    Done,
    /// A compressed archive starts at `offset`; `argv` decompresses it; `file` is the image.
    Compressed {
        file: File,
        offset: u64,
        argv: &'static [&'static str],
    },
}

/// Walks the uncompressed archives at the start of `region` of `image` (and the zeros that
/// pad them), adding the files `take` wants to `files`, up to the first compressed archive.
fn walk_uncompressed(
    image: &Path,
    region: Range<u64>,
    take: &dyn Fn(&str) -> bool,
    stop: Stop,
    files: &mut Files,
) -> Result<Uncompressed, InitrdError> {
    let path = image.display().to_string();
    let io = |source| InitrdError::Io {
        path: path.clone(),
        source,
    };
    let mut file = File::open(image).map_err(io)?;
    let mut offset = region.start;
    loop {
        // Archives are padded (to 4 bytes, or 512 by some tools) with zeros: skip them.
        let mut magic = [0u8; 6];
        loop {
            if offset >= region.end {
                return Ok(Uncompressed::Done);
            }
            file.seek(SeekFrom::Start(offset)).map_err(io)?;
            let want = magic.len().min((region.end - offset) as usize);
            let n = file.read(&mut magic[..want]).map_err(io)?;
            match magic[..n].iter().position(|&b| b != 0) {
                Some(0) => break,
                Some(zeros) => offset += zeros as u64,
                None if n == 0 => return Ok(Uncompressed::Done),
                None => offset += n as u64,
            }
        }
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        if &magic == b"070701" || &magic == b"070702" {
            let mut consumed = 0;
            let mut reader = BufReader::new((&mut file).take(region.end - offset));
            let walked = walk(&mut reader, take, stop, files, &mut consumed).map_err(|why| {
                InitrdError::Format {
                    path: path.clone(),
                    offset,
                    why,
                }
            })?;
            match walked {
                Walked::Trailer => offset += consumed,
                Walked::Done | Walked::End => return Ok(Uncompressed::Done),
            }
            continue;
        }
        let Some(argv) = decompressor(&magic) else {
            return Err(InitrdError::Format {
                path,
                offset,
                why: format!("neither cpio nor a known compression: {magic:02x?}"),
            });
        };
        return Ok(Uncompressed::Compressed { file, offset, argv });
    }
}

/// Pipes `compressed` (the rest of the image's region) through `argv` and walks the archive
/// that comes out; the decompressor is stopped as soon as the walk ends.
fn read_compressed(
    mut compressed: impl Read + Send + 'static,
    argv: &[&str],
    take: &dyn Fn(&str) -> bool,
    stop: Stop,
    mut files: Files,
    path: &str,
    offset: u64,
) -> Result<Files, InitrdError> {
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| InitrdError::Decompressor {
            path: path.to_string(),
            tool: argv[0].to_string(),
            source,
        })?;
    let mut stdin = child.stdin.take().expect("piped");
    // A write error only means the decompressor was stopped early: nothing to report.
    let feeder = std::thread::spawn(move || {
        let _ = std::io::copy(&mut compressed, &mut stdin);
    });
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut consumed = 0;
    let walked = walk(&mut out, take, stop, &mut files, &mut consumed);
    drop(out);
    let _ = child.kill();
    let _ = child.wait();
    let _ = feeder.join();
    match walked {
        Ok(_) => Ok(files),
        Err(why) => Err(InitrdError::Format {
            path: path.to_string(),
            offset,
            why: format!("in its {} archive: {why}", argv[0]),
        }),
    }
}
/// Archives made the way initramfs tools make them, for tests here and in `zbm_image`.
#[cfg(test)]
pub(crate) mod testing {
    use super::TRAILER;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// One entry of an archive: a regular file or a symbolic link.
    pub(crate) struct Entry<'a> {
        name: &'a str,
        data: &'a [u8],
        mode: u64,
    }

    impl<'a> Entry<'a> {
        pub(crate) fn file(name: &'a str, data: &'a [u8]) -> Self {
            Entry {
                name,
                data,
                mode: 0o100644,
            }
        }
        pub(crate) fn link(name: &'a str, target: &'a str) -> Self {
            Entry {
                name,
                data: target.as_bytes(),
                mode: 0o120777,
            }
        }
    }

    /// A newc archive of regular `files` (path, contents), ended by its trailer.
    pub(crate) fn cpio(files: &[(&str, &[u8])]) -> Vec<u8> {
        let entries: Vec<_> = files.iter().map(|(n, d)| Entry::file(n, d)).collect();
        cpio_entries(&entries)
    }

    /// A newc archive of `entries`, ended by its trailer.
    pub(crate) fn cpio_entries(entries: &[Entry]) -> Vec<u8> {
        let mut out = Vec::new();
        let trailer = Entry::file(TRAILER, b"");
        for (n, e) in entries.iter().chain([&trailer]).enumerate() {
            let fields = [
                n as u64,
                e.mode,
                0,
                0,
                1,
                0,
                e.data.len() as u64,
                0,
                0,
                0,
                0,
            ];
            out.extend_from_slice(b"070701");
            for f in fields {
                out.extend_from_slice(format!("{f:08x}").as_bytes());
            }
            out.extend_from_slice(format!("{:08x}{:08x}", e.name.len() + 1, 0).as_bytes());
            out.extend_from_slice(e.name.as_bytes());
            out.push(0);
            while out.len() % 4 != 0 {
                out.push(0);
            }
            out.extend_from_slice(e.data);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        }
        out
    }

    /// `data` compressed by `tool`; none when the tool is not installed.
    pub(crate) fn compress(tool: &str, data: &[u8]) -> Option<Vec<u8>> {
        let mut child = Command::new(tool)
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        child.stdin.take()?.write_all(data).ok()?;
        Some(child.wait_with_output().ok()?.stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{compress, cpio};
    use super::*;
    use std::io::Write;

    /// An image as initramfs-tools makes it: an early archive, zero padding, then the main
    /// archive compressed by `tool`.
    fn image(tool: &str, main: &[(&str, &[u8])]) -> Option<tempfile::NamedTempFile> {
        let mut bytes = cpio(&[(
            "kernel/x86/microcode/GenuineIntel.bin",
            &b"early microcode"[..],
        )]);
        bytes.resize(bytes.len().div_ceil(512) * 512, 0);
        bytes.extend(compress(tool, &cpio(main))?);
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&bytes).unwrap();
        Some(file)
    }

    #[test]
    fn a_file_is_read_from_the_compressed_archive_after_an_early_one() {
        let big = vec![7u8; 100_001];
        let main: [(&str, &[u8]); 4] = [
            ("bin/sh", &big),
            ("conf/arch.conf", b"DPKG_ARCH=amd64\n"),
            ("etc/hostid", &[0x0c, 0xb1, 0xba, 0x00]),
            ("usr/lib/modules/zfs.ko", &big),
        ];
        for tool in ["gzip", "zstd"] {
            let Some(file) = image(tool, &main) else {
                eprintln!("{tool} is not installed here: not tested");
                continue;
            };
            let found = read_file(file.path(), "etc/hostid").unwrap();
            assert_eq!(
                found.as_deref(),
                Some(&[0x0c, 0xb1, 0xba, 0x00][..]),
                "{tool}"
            );
            assert_eq!(read_file(file.path(), "etc/machine-id").unwrap(), None);
            let early = read_file(file.path(), "kernel/x86/microcode/GenuineIntel.bin").unwrap();
            assert_eq!(early.as_deref(), Some(&b"early microcode"[..]));
        }
    }

    #[test]
    fn every_wanted_file_is_read_from_an_image_inside_a_larger_file() {
        // As in a unified kernel image: the initramfs is one section between others.
        let main: [(&str, &[u8]); 3] = [
            ("etc/hostid", b"\x01\x02\x03\x04"),
            ("usr/share/zfs/compatibility.d/openzfs-2.2-linux", b"a\n"),
            ("usr/share/zfs/compatibility.d/openzfs-2.3-linux", b"b\n"),
        ];
        let Some(image) = compress("zstd", &cpio(&main)) else {
            eprintln!("zstd is not installed here: not tested");
            return;
        };
        let mut bytes = b"MZ stub before the section".to_vec();
        let start = bytes.len() as u64;
        bytes.extend(&image);
        let end = bytes.len() as u64;
        bytes.extend(cpio(&[("etc/hostid", b"not in the region")]));
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&bytes).unwrap();
        let take = |name: &str| name.contains("compatibility.d/") || name == "etc/hostid";
        let names = |files: Files| files.into_iter().map(|m| m.name).collect::<Vec<_>>();
        let all = read_files(file.path(), start..end, &take, Stop::AtEnd).unwrap();
        assert_eq!(names(all), main.map(|(n, _)| n.to_string()).to_vec());
        let first = read_files(file.path(), start..end, &take, Stop::AtFirst).unwrap();
        let first: Vec<_> = first
            .into_iter()
            .map(|m| (m.name, m.data, m.link))
            .collect();
        assert_eq!(
            first,
            [("etc/hostid".into(), b"\x01\x02\x03\x04".to_vec(), false)]
        );
        let none = read_files(file.path(), start..end, &|_| false, Stop::AtEnd).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn an_uncompressed_image_and_a_leading_dot_slash_are_read() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&cpio(&[("./etc/hostid", b"abcd")])).unwrap();
        assert_eq!(
            read_file(file.path(), "etc/hostid").unwrap().as_deref(),
            Some(&b"abcd"[..])
        );
    }

    #[test]
    fn what_is_no_image_is_named() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"not an initramfs at all").unwrap();
        let err = read_file(file.path(), "etc/hostid")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("neither cpio nor a known compression"),
            "{err}"
        );
        let mut cut = tempfile::NamedTempFile::new().unwrap();
        cut.write_all(&cpio(&[("etc/hostid", b"abcd")])[..60])
            .unwrap();
        let err = read_file(cut.path(), "etc/hostid").unwrap_err().to_string();
        assert!(err.contains("ends inside a header"), "{err}");
    }

    #[test]
    fn compressions_are_told_by_their_magic() {
        assert_eq!(
            decompressor(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Some(&["zstd", "-dcq"][..])
        );
        assert_eq!(decompressor(&[0x1f, 0x8b, 8]), Some(&["gzip", "-dc"][..]));
        assert_eq!(decompressor(b"070701"), None);
    }
}
