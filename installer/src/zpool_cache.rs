//! The pools a boot imports after the initramfs: those /etc/zfs/zpool.cache names that are not
//! imported yet. They decide whether the boot waits for udev to settle (the disks' links must
//! exist before `zpool import -c`), which a machine whose only pool is the root pool, imported
//! by its initramfs, need not do.
//!
//! zpool.cache is an nvlist as libnvpair packs it natively (`fnvlist_pack`, NV_ENCODE_NATIVE, in
//! the writer's byte order): a 4-byte header, the list's version and flags, then its pairs. Each
//! pair is its own size, name length, element count, type and name, then its value; a pair
//! holding an nvlist (a pool's config, a vdev) is followed by that list's pairs and the 4 zero
//! bytes that end every list. So the pools are the top list's nvlist pairs, and their configs
//! are stepped over pair by pair without being decoded.

use std::collections::BTreeSet;
use std::path::Path;

/// Where OpenZFS keeps the pools to import at boot.
pub const ZPOOL_CACHE: &str = "/etc/zfs/zpool.cache";

/// Where the SPL lists each imported pool's statistics (a directory per pool, with `state`).
const POOL_KSTATS: &str = "/proc/spl/kstat/zfs";

/// libnvpair's NV_ENCODE_NATIVE, the header's first byte; its second is 1 for little-endian.
const NV_ENCODE_NATIVE: u8 = 0;
/// libnvpair's DATA_TYPE_NVLIST and DATA_TYPE_NVLIST_ARRAY: lists whose pairs follow the pair.
const DATA_TYPE_NVLIST: u32 = 19;
const DATA_TYPE_NVLIST_ARRAY: u32 = 20;
/// How deep lists may nest (libnvpair's own limit, nvpair_max_recursion).
const MAX_DEPTH: usize = 20;
/// A pair's fixed part: size, name length and reserve, element count, type.
const PAIR_HEADER: usize = 16;

/// What is wrong with a zpool.cache file.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadCache {
    #[error("it is not a natively packed nvlist (header {0:02x?})")]
    NotNative(Vec<u8>),
    #[error("it ends inside a pair, at byte {0}")]
    Truncated(usize),
    #[error("the pair at byte {0} has an impossible size {1}")]
    BadSize(usize, u32),
    #[error("the name at byte {0} is not UTF-8")]
    BadName(usize),
    #[error("its lists nest deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// A packed nvlist being read: its bytes and their byte order.
struct Packed<'a> {
    bytes: &'a [u8],
    little: bool,
}

/// One pair's fixed part and name.
struct Pair<'a> {
    size: usize,
    name: &'a str,
    elements: usize,
    kind: u32,
}

impl<'a> Packed<'a> {
    fn u32_at(&self, at: usize) -> Result<u32, BadCache> {
        let b = self.bytes.get(at..at + 4).ok_or(BadCache::Truncated(at))?;
        let b = [b[0], b[1], b[2], b[3]];
        Ok(if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    fn u16_at(&self, at: usize) -> Result<u16, BadCache> {
        let b = self.bytes.get(at..at + 2).ok_or(BadCache::Truncated(at))?;
        let b = [b[0], b[1]];
        Ok(if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }

    /// The pair at `at`; none at the 4 zero bytes that end a list.
    fn pair_at(&self, at: usize) -> Result<Option<Pair<'a>>, BadCache> {
        let size = self.u32_at(at)?;
        if size == 0 {
            return Ok(None);
        }
        let name_len = self.u16_at(at + 4)? as usize;
        if (size as usize) < PAIR_HEADER + name_len || size % 8 != 0 || name_len == 0 {
            return Err(BadCache::BadSize(at, size));
        }
        let start = at + PAIR_HEADER;
        let name = self
            .bytes
            .get(start..start + name_len - 1)
            .ok_or(BadCache::Truncated(start))?;
        Ok(Some(Pair {
            size: size as usize,
            name: std::str::from_utf8(name).map_err(|_| BadCache::BadName(start))?,
            elements: self.u32_at(at + 8)? as usize,
            kind: self.u32_at(at + 12)?,
        }))
    }

    /// Where the value after `pair` (at `at`) ends: past its own size, and past the lists a
    /// list pair carries after it.
    fn skip_pair(&self, at: usize, pair: &Pair, depth: usize) -> Result<usize, BadCache> {
        let mut at = at + pair.size;
        let lists = match pair.kind {
            DATA_TYPE_NVLIST => 1,
            DATA_TYPE_NVLIST_ARRAY => pair.elements,
            _ => 0,
        };
        for _ in 0..lists {
            at = self.skip_list(at, depth + 1)?;
        }
        Ok(at)
    }

    /// Where the list whose first pair is at `at` ends (past its 4 zero bytes).
    fn skip_list(&self, mut at: usize, depth: usize) -> Result<usize, BadCache> {
        if depth > MAX_DEPTH {
            return Err(BadCache::TooDeep);
        }
        while let Some(pair) = self.pair_at(at)? {
            at = self.skip_pair(at, &pair, depth)?;
        }
        Ok(at + 4)
    }
}

/// The names of the pools in a zpool.cache file's bytes, in the file's order.
pub fn pool_names(bytes: &[u8]) -> Result<Vec<String>, BadCache> {
    let header = bytes.get(..4).ok_or(BadCache::Truncated(0))?;
    if header[0] != NV_ENCODE_NATIVE {
        return Err(BadCache::NotNative(header.to_vec()));
    }
    let packed = Packed {
        bytes,
        little: header[1] == 1,
    };
    // The header, then the top list's version and flags.
    let mut at = 12;
    let mut names = Vec::new();
    while let Some(pair) = packed.pair_at(at)? {
        if pair.kind == DATA_TYPE_NVLIST {
            names.push(pair.name.to_string());
        }
        at = packed.skip_pair(at, &pair, 0)?;
    }
    Ok(names)
}

/// What the boot has left to import after the initramfs.
#[derive(Debug, PartialEq, Eq)]
pub enum PoolsToImport {
    /// The cache's pools are all imported (the root pool by the initramfs): no disk to wait for.
    None,
    /// These pools, named by the cache and not imported, are imported from their disks.
    Pools(Vec<String>),
    /// No usable cache: OpenZFS's zfs-import-scan imports whatever pool the disks hold, so every
    /// disk must be there first.
    Unknown(String),
}

impl PoolsToImport {
    /// From the cache file's bytes (none: the file is missing) and the imported pools' names.
    pub fn from(cache: Option<&[u8]>, imported: &BTreeSet<String>) -> PoolsToImport {
        let Some(bytes) = cache.filter(|b| !b.is_empty()) else {
            return PoolsToImport::Unknown(format!(
                "{ZPOOL_CACHE} is missing or empty: zfs-import-scan imports every pool it finds"
            ));
        };
        match pool_names(bytes) {
            Err(why) => PoolsToImport::Unknown(format!("{ZPOOL_CACHE} is unreadable: {why}")),
            Ok(names) => {
                let left: Vec<String> = names
                    .into_iter()
                    .filter(|n| !imported.contains(n))
                    .collect();
                if left.is_empty() {
                    PoolsToImport::None
                } else {
                    PoolsToImport::Pools(left)
                }
            }
        }
    }

    /// Whether the boot must wait for the disks (udev settled) before importing.
    pub fn must_wait(&self) -> bool {
        !matches!(self, PoolsToImport::None)
    }

    /// One line for a person or the journal.
    pub fn describe(&self) -> String {
        match self {
            PoolsToImport::None => {
                "none: every pool in zpool.cache is imported already (by the initramfs)".into()
            }
            PoolsToImport::Pools(p) => format!("{} (in zpool.cache, not imported)", p.join(" ")),
            PoolsToImport::Unknown(why) => format!("unknown: {why}"),
        }
    }
}

/// The pools imported now, by the SPL's statistics directories (no ZFS command needed).
pub fn imported_pools() -> BTreeSet<String> {
    imported_pools_in(Path::new(POOL_KSTATS))
}

fn imported_pools_in(kstats: &Path) -> BTreeSet<String> {
    std::fs::read_dir(kstats)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("state").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// What this machine's boot has left to import.
pub fn read_pools_to_import() -> PoolsToImport {
    let cache = std::fs::read(ZPOOL_CACHE).ok();
    PoolsToImport::from(cache.as_deref(), &imported_pools())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zpool.cache from a VM and the pool names `zdb -C -U FILE` printed for it there (its
    /// lines `NAME:` at the left margin): the expected names come from OpenZFS's own reader.
    fn fixture(name: &str) -> (Vec<u8>, Vec<String>) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/zpool-cache");
        let bytes = std::fs::read(dir.join(format!("{name}.cache"))).unwrap();
        let zdb = std::fs::read_to_string(dir.join(format!("{name}.zdb"))).unwrap();
        let names = zdb
            .lines()
            .filter_map(|l| l.strip_suffix(':'))
            .filter(|l| !l.starts_with(char::is_whitespace))
            .map(str::to_string)
            .collect();
        (bytes, names)
    }

    #[test]
    fn the_pools_are_the_ones_zdb_reads() {
        for name in ["rpool", "rpool-and-tank"] {
            let (bytes, expected) = fixture(name);
            assert!(!expected.is_empty(), "{name}.zdb names no pool");
            assert_eq!(pool_names(&bytes).unwrap(), expected, "{name}");
        }
    }

    #[test]
    fn only_pools_not_imported_are_left() {
        let (bytes, _) = fixture("rpool-and-tank");
        let imported = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            PoolsToImport::from(Some(&bytes), &imported(&["rpool"])),
            PoolsToImport::Pools(vec!["tank".into()])
        );
        let none = PoolsToImport::from(Some(&bytes), &imported(&["rpool", "tank"]));
        assert_eq!(none, PoolsToImport::None);
        assert!(!none.must_wait());
        let (rpool, _) = fixture("rpool");
        assert_eq!(
            PoolsToImport::from(Some(&rpool), &imported(&["rpool"])),
            PoolsToImport::None
        );
        // Nothing imported (the module not loaded): rpool is left, so the boot waits.
        assert!(PoolsToImport::from(Some(&rpool), &BTreeSet::new()).must_wait());
    }

    #[test]
    fn no_cache_or_a_bad_one_waits() {
        let imported: BTreeSet<String> = ["rpool".to_string()].into();
        for cache in [None, Some(&b""[..]), Some(&b"\x01\x01\x00\x00"[..])] {
            let pools = PoolsToImport::from(cache, &imported);
            assert!(
                matches!(pools, PoolsToImport::Unknown(_)) && pools.must_wait(),
                "{cache:?}: {pools:?}"
            );
        }
        let (bytes, _) = fixture("rpool-and-tank");
        for cut in [3, 13, 40, bytes.len() / 2, bytes.len() - 8] {
            assert!(
                matches!(
                    pool_names(&bytes[..cut]),
                    Err(BadCache::Truncated(_) | BadCache::BadSize(..))
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn imported_pools_are_the_kstat_directories_with_a_state() {
        let dir = tempfile::tempdir().unwrap();
        for (name, state) in [("rpool", true), ("tank", true), ("arcstats", false)] {
            if state {
                std::fs::create_dir(dir.path().join(name)).unwrap();
                std::fs::write(dir.path().join(name).join("state"), "ONLINE\n").unwrap();
            } else {
                std::fs::write(dir.path().join(name), "").unwrap();
            }
        }
        let got = imported_pools_in(dir.path());
        assert_eq!(got, ["rpool".to_string(), "tank".to_string()].into());
    }
}
