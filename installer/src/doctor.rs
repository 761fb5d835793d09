//! `kldload doctor`, run on an installed system (kldload puts itself there, and a unit runs it at
//! every boot): checks that the hostid is one value in the five places ZFS and ZFSBootMenu read
//! it, and when they disagree says which place holds what and the commands that make them agree.
//! (ARCHITECTURE.md, "One hostid": ZFSBootMenu imports the pool with 0x00bab10c and passes it on
//! as `spl.spl_hostid`; a rewritten /etc/hostid still boots, until something imports the pool
//! with the initramfs's or /etc/hostid's value instead.) The reference is the value the system
//! runs with, the SPL's: when a pool was last imported under another hostid, ZFSBootMenu's
//! default `zbm.import_policy=hostid` imports it under the label's value and passes that on, and
//! the fix then makes /etc/hostid and the initramfs agree with it.
//!
//! It also checks what ZFSBootMenu will boot the running boot environment with: the kernel it
//! picks and whether that kernel's initramfs has zfs.ko ([`kernels`], ZFSBootMenu's rules in `zbm`), and whether the command
//! line it reads kept the console ([`commandline`]).
//!
//! Reading the places is separate from judging them, so the judgement is unit-tested.

pub mod boot_environments;
pub mod keys;

use crate::config::ZFSBOOTMENU_HOSTID;
use crate::initrd::readings::{self, size_and_time};
use crate::zbm::hostid::{parse_hostid_file, parse_kernel_number};
use crate::zbm::image::ZbmImage;
use crate::zbm::{commandline, kernels};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// What one place holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Value(u32),
    /// The place exists but holds no hostid: no /etc/hostid file, none in the initramfs, no
    /// `spl.spl_hostid` on the command line, the SPL's 0 ("read /etc/hostid").
    Absent,
    /// It could not be read (not root, a tool missing, the pool not imported): named in the
    /// report, never taken for a disagreement.
    Unreadable,
}

impl Place {
    fn value(self) -> Option<u32> {
        match self {
            Place::Value(v) => Some(v),
            _ => None,
        }
    }

    fn show(self) -> String {
        match self {
            Place::Value(v) => format!("0x{v:08x}"),
            Place::Absent => "(none)".into(),
            Place::Unreadable => "(not readable)".into(),
        }
    }
}

/// The hostid as each place has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostidReadings {
    /// /etc/hostid: what `update-initramfs` copies, and what ZFS uses when the SPL has no value.
    pub etc: Place,
    /// /etc/hostid inside the running kernel's initramfs (what its ZFS uses without an SPL value).
    pub initramfs: Place,
    /// `spl.spl_hostid=` on /proc/cmdline: what ZFSBootMenu passed on (its last occurrence, read
    /// as the kernel reads it).
    pub boot_menu: Place,
    /// The SPL module's `spl_hostid` parameter: the hostid this system runs with (Absent: 0,
    /// the SPL then reads /etc/hostid).
    pub spl: Place,
    /// The hostid in the root pool's label (who imported it last).
    pub pool_label: Place,
}

/// What `doctor` concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// One line per place: `name: value`.
    pub readings: Vec<String>,
    /// Empty when everything agrees.
    pub problems: Vec<String>,
    /// The commands that fix them.
    pub fix: Vec<String>,
    /// How many places could not be read.
    pub unreadable: usize,
    /// The hostid this system runs with, which every place must hold.
    pub running: u32,
}

impl Diagnosis {
    pub fn healthy(&self) -> bool {
        self.problems.is_empty()
    }

    /// The report a person reads: the problems and the fix first, then what was read.
    pub fn report(&self) -> String {
        let mut out = String::new();
        if !self.healthy() {
            for p in &self.problems {
                let _ = writeln!(out, "kldload doctor: PROBLEM: {p}");
            }
            if !self.fix.is_empty() {
                let _ = writeln!(out, "kldload doctor: fix: {}", self.fix.join(" && "));
            }
        } else if self.unreadable == 0 {
            out.push_str("kldload doctor: the hostid agrees in every place\n");
        } else {
            let _ = writeln!(
                out,
                "kldload doctor: the hostid agrees in every place read ({} not readable: run as root?)",
                self.unreadable
            );
        }
        for r in &self.readings {
            let _ = writeln!(out, "  {r}");
        }
        out
    }
}

/// Judges the readings. The value everything must agree on is the one the machine runs with:
/// the SPL's (ZFSBootMenu's `spl.spl_hostid`); when the SPL has none, kldload's 0x00bab10c.
pub fn diagnose(r: &HostidReadings, pool: &str) -> Diagnosis {
    let want = r
        .spl
        .value()
        .or(r.boot_menu.value())
        .unwrap_or(ZFSBOOTMENU_HOSTID);
    let label = format!("pool {pool}'s label");
    let places = [
        ("/etc/hostid", r.etc),
        ("the initramfs's /etc/hostid", r.initramfs),
        ("ZFSBootMenu's spl.spl_hostid", r.boot_menu),
        ("the SPL's spl_hostid", r.spl),
        (label.as_str(), r.pool_label),
    ];
    let readings = places
        .iter()
        .map(|(name, v)| format!("{name}: {}", v.show()))
        .collect();
    let mut problems = Vec::new();
    for (name, place) in &places {
        match place {
            Place::Value(v) if *v != want => problems.push(format!(
                "{name} is 0x{v:08x}, but this system runs with hostid 0x{want:08x} (the value \
                 ZFSBootMenu imports the pool with and passes on as spl.spl_hostid)"
            )),
            // Without a file the hostid is made up at random by whoever needs one.
            Place::Absent if *name == "/etc/hostid" || *name == "the initramfs's /etc/hostid" => {
                problems.push(format!(
                    "{name} is missing (this system runs with 0x{want:08x})"
                ))
            }
            _ => {}
        }
    }
    let differs = |p: Place| p != Place::Value(want) && p != Place::Unreadable;
    let mut fix = Vec::new();
    if differs(r.etc) || differs(r.initramfs) {
        fix.push(format!("zgenhostid -f 0x{want:08x}"));
        fix.push("update-initramfs -u -k all".into());
    }
    if r.pool_label.value().is_some_and(|v| v != want) {
        // The label is rewritten by the next import made with the running hostid.
        fix.push("reboot".into());
    }
    if fix.is_empty() && !problems.is_empty() {
        fix.push(format!(
            "give ZFSBootMenu spl_hostid=0x{want:08x} (or drop a different one) in its firmware \
             entry's load options"
        ));
    }
    let unreadable = places
        .iter()
        .filter(|(_, p)| *p == Place::Unreadable)
        .count();
    Diagnosis {
        readings,
        problems,
        fix,
        unreadable,
        running: want,
    }
}

/// ZFSBootMenu's EFI file on an installed system (its ESP is mounted at /boot/efi).
pub const INSTALLED_ZFSBOOTMENU: &str = "/boot/efi/EFI/ZBM/VMLINUZ.EFI";

/// The fallback copy on that ESP: what the firmware starts when it has no entry of ours (after
/// a firmware update or a CMOS reset, or with the disk in another machine).
pub const INSTALLED_FALLBACK: &str = "/boot/efi/EFI/BOOT/BOOTX64.EFI";

/// shim on that ESP, when the machine boots through it (Secure Boot): the fallback copy is then
/// shim, which starts ZFSBootMenu.
pub const INSTALLED_SHIM: &str = "/boot/efi/EFI/ZBM/shimx64.efi";

/// What the doctor reads about the fallback path on the ESP mounted at /boot/efi.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackReadings {
    /// No ESP is mounted at /boot/efi (a rescue system, or fstab's `nofail` mount failed).
    NoEsp,
    /// Whether [`INSTALLED_FALLBACK`] is there, and whether the machine boots through shim.
    Esp { fallback: bool, through_shim: bool },
}

/// Reads [`FallbackReadings`] on this machine (FAT finds the names whatever their case).
pub fn read_fallback() -> FallbackReadings {
    if !Path::new("/boot/efi/EFI").is_dir() {
        return FallbackReadings::NoEsp;
    }
    FallbackReadings::Esp {
        fallback: Path::new(INSTALLED_FALLBACK).is_file(),
        through_shim: Path::new(INSTALLED_SHIM).is_file(),
    }
}

impl Diagnosis {
    /// Adds whether the ESP has its fallback copy: without it the machine boots through its
    /// firmware entries alone, and a firmware that forgets them starts nothing.
    pub fn add_fallback(&mut self, r: FallbackReadings) {
        let (fallback, through_shim) = match r {
            FallbackReadings::NoEsp => {
                self.readings.push(format!(
                    "the fallback copy {INSTALLED_FALLBACK}: (not readable: no ESP mounted at \
                     /boot/efi)"
                ));
                self.unreadable += 1;
                return;
            }
            FallbackReadings::Esp {
                fallback,
                through_shim,
            } => (fallback, through_shim),
        };
        if fallback {
            self.readings
                .push(format!("the fallback copy {INSTALLED_FALLBACK}: there"));
            return;
        }
        self.readings
            .push(format!("the fallback copy {INSTALLED_FALLBACK}: (none)"));
        let (what, from) = if through_shim {
            ("shim", INSTALLED_SHIM)
        } else {
            ("ZFSBootMenu", INSTALLED_ZFSBOOTMENU)
        };
        self.problems.push(format!(
            "the ESP has no fallback copy {INSTALLED_FALLBACK}: the machine boots through its \
             firmware entries alone, and a firmware that forgets them (an update, a CMOS reset, \
             the disk in another machine) starts nothing. fix: mkdir -p /boot/efi/EFI/BOOT && \
             cp {from} {INSTALLED_FALLBACK} (the fallback copy is {what}, as kldload installs it)"
        ));
    }
}

/// What the doctor reads about ZFSBootMenu: what its EFI file carries, and the pool's features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZbmReadings {
    /// What its EFI file carries, or why it could not be read.
    pub image: Result<ZbmImage, String>,
    /// The root pool's features that are enabled or active, with their state (`zpool get`);
    /// none when it could not be read.
    pub pool_features: Option<Vec<(String, String)>>,
}

/// Where the doctor keeps what it read in ZFSBootMenu's EFI file, with the file's size and
/// modification time: decompressing its initramfs takes seconds under emulation, and the
/// doctor runs before every login, so the file is read again only when it changed.
pub const ZBM_READ_CACHE: &str = "/var/cache/kldload/zfsbootmenu-image.json";

#[derive(Serialize, Deserialize)]
struct CachedImage {
    /// What this kldload reads in the file ([`CACHE_FORMAT`]): an entry an older one wrote
    /// lacks a reading (zfs.ko's) and is read again.
    format: u32,
    size: u64,
    modified: std::time::SystemTime,
    image: ZbmImage,
}

/// Grows when [`ZbmImage`] gains a reading.
const CACHE_FORMAT: u32 = 2;

/// What ZFSBootMenu's EFI file at `path` carries: from `cache` when the file is unchanged,
/// else read (and the cache rewritten, if it can be).
fn zbm_image_cached(path: &Path, cache: &Path) -> Result<ZbmImage, String> {
    let (size, modified) = size_and_time(path)?;
    let cached = std::fs::read(cache)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<CachedImage>(&bytes).ok())
        .filter(|c| c.format == CACHE_FORMAT && c.size == size && c.modified == modified);
    if let Some(c) = cached {
        return Ok(c.image);
    }
    let image = crate::zbm::image::read(path).map_err(|e| e.to_string())?;
    let _ = write_zbm_cache(cache, size, modified, &image);
    Ok(image)
}

/// Reads ZFSBootMenu's EFI file at `path` and keeps what it carries in `cache`, whatever the
/// cache held: what the install does (`kldload inspect-zfsbootmenu --remember`, in the target),
/// so the doctor's first boot finds it there instead of decompressing ZFSBootMenu's initramfs
/// while the system starts (7 s of CPU under TCG, on the critical chain before the login).
pub fn remember_zbm_image(path: &Path, cache: &Path) -> Result<ZbmImage, String> {
    let (size, modified) = size_and_time(path)?;
    let image = crate::zbm::image::read(path).map_err(|e| e.to_string())?;
    write_zbm_cache(cache, size, modified, &image)
        .map_err(|e| format!("writing {}: {e}", cache.display()))?;
    Ok(image)
}

/// Writes `image`, read from a file of `size` bytes last modified at `modified`, to `cache`.
fn write_zbm_cache(
    cache: &Path,
    size: u64,
    modified: std::time::SystemTime,
    image: &ZbmImage,
) -> std::io::Result<()> {
    let entry = CachedImage {
        format: CACHE_FORMAT,
        size,
        modified,
        image: image.clone(),
    };
    if let Some(dir) = cache.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(cache, serde_json::to_vec(&entry).expect("serializable"))
}

/// Reads [`ZbmReadings`] on this machine.
pub fn read_zbm(pool: &str) -> ZbmReadings {
    ZbmReadings {
        image: zbm_image_cached(Path::new(INSTALLED_ZFSBOOTMENU), Path::new(ZBM_READ_CACHE)),
        pool_features: output(&["zpool", "get", "-H", "-o", "property,value", "all", pool])
            .map(|text| pool_features(&text)),
    }
}

/// The features `zpool get -H -o property,value all` lists as enabled or active.
pub fn pool_features(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let (property, state) = l.split_once('\t')?;
            let feature = property.strip_prefix("feature@")?;
            matches!(state.trim(), "enabled" | "active")
                .then(|| (feature.to_string(), state.trim().to_string()))
        })
        .collect()
}

impl Diagnosis {
    /// Adds what ZFSBootMenu's EFI file says: the hostid it carries (shown, and said when it
    /// is not the one the system runs with: with its default `zbm.import_policy=hostid`
    /// ZFSBootMenu then follows the pool's label, so it boots, and the install never makes
    /// that; not a problem of its own), and its ZFS must read every feature the pool has
    /// enabled (an active one it does not know stops the import now; an enabled one does at
    /// its first use, and a feature cannot be turned off again).
    pub fn add_zfsbootmenu(&mut self, z: &ZbmReadings, pool: &str) {
        let running = self.running;
        let image = match &z.image {
            Ok(image) => image,
            Err(why) => {
                self.readings
                    .push(format!("ZFSBootMenu's EFI file: (not readable: {why})"));
                self.unreadable += 1;
                return;
            }
        };
        let hostid = match image.hostid {
            None => "(none)".to_string(),
            Some(h) if h == running => format!("0x{h:08x}"),
            Some(h) => format!(
                "0x{h:08x} (not the 0x{running:08x} this system runs with: it followed the \
                 pool's label; with zbm.import_policy=strict it would refuse the pool)"
            ),
        };
        self.readings.push(format!(
            "ZFSBootMenu's EFI file {INSTALLED_ZFSBOOTMENU}: hostid {hostid}, its ZFS reads {}",
            image
                .zfs_features
                .as_ref()
                .map_or("(unknown)", |s| s.name.as_str())
        ));
        self.readings.push(if image.boot_trial {
            "ZFSBootMenu carries kldload's boot-trial hook: a boot environment `kldload \
             upgrade` makes is tried once, and kept only if it boots to the end"
                .to_string()
        } else {
            "ZFSBootMenu has no kldload boot-trial hook (not the image's own): a boot \
             environment `kldload upgrade` makes becomes the bootfs at once, and going back is by \
             hand, picking the previous one in its menu"
                .to_string()
        });
        if image.zfs_module.is_none() {
            self.problems.push(format!(
                "ZFSBootMenu's EFI file {INSTALLED_ZFSBOOTMENU} has no zfs.ko in its initramfs: \
                 at the next boot it stops in its emergency shell (\"unable to load ZFS kernel \
                 modules\") and imports no pool. fix: put back a ZFSBootMenu that carries it (the \
                 medium's, or EFI/ZBM/VMLINUZ-BACKUP.EFI if `kldload inspect-zfsbootmenu` shows \
                 zfs.ko in it); one built with dracut needs --no-hostonly"
            ));
        }
        let (Some(set), Some(features)) = (&image.zfs_features, &z.pool_features) else {
            if z.pool_features.is_none() {
                self.unreadable += 1;
            }
            return;
        };
        let shown: Vec<String> = features
            .iter()
            .filter(|(f, _)| !set.reads(f))
            .map(|(f, state)| format!("{f} ({state})"))
            .collect();
        if !shown.is_empty() {
            self.problems.push(format!(
                "pool {pool} has features ZFSBootMenu's ZFS ({}) cannot read: {}; an active one \
                 stops ZFSBootMenu from importing the pool, an enabled one does once it is used, \
                 and features cannot be turned off. fix: install a ZFSBootMenu whose ZFS reads \
                 them (built from source on this system's ZFS: `cargo xtask build-image`) as \
                 EFI/ZBM/VMLINUZ.EFI, VMLINUZ-BACKUP.EFI and EFI/BOOT/BOOTX64.EFI on every ESP \
                 (booting through shim, with EFI/ZBM/shimx64.efi: its medium's MOK-signed \
                 zfsbootmenu/VMLINUZ-SIGNED.EFI as EFI/ZBM/VMLINUZ.EFI and VMLINUZ-BACKUP.EFI \
                 only; EFI/BOOT/BOOTX64.EFI is shim and stays)",
                set.name,
                shown.join(", ")
            ));
        }
    }
}

/// What the doctor reads about the running boot environment: its kernels and the
/// `org.zfsbootmenu:commandline` of it and its ancestors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEnvironmentReadings {
    pub kernels: kernels::KernelReadings,
    /// None when `zfs get` failed.
    pub commandline: Option<Vec<commandline::Property>>,
    /// None when `zfs get` failed.
    pub key: Option<keys::KeyReadings>,
}

/// The dataset mounted at / when / is ZFS (the boot environment this system booted), from
/// /proc/self/mounts.
pub fn running_boot_environment(mounts: &str) -> Option<String> {
    root_mounts(mounts)
        .find(|(_, fstype)| *fstype == "zfs")
        .map(|(source, _)| source.to_string())
}

/// The entries of /proc/self/mounts mounted at /, in order: `(source, fstype)`.
fn root_mounts(mounts: &str) -> impl DoubleEndedIterator<Item = (&str, &str)> {
    mounts.lines().filter_map(|l| {
        let mut fields = l.split_whitespace();
        let (source, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (target == "/").then_some((source, fstype))
    })
}

/// `kldload doctor`'s exit status when / is not ZFS: not a running kldload system, so nothing
/// to check and no fix to give (1 is a problem found, 0 all well).
pub const EXIT_ROOT_NOT_ZFS: i32 = 3;

/// What is mounted at / when it is not ZFS, `(source, fstype)`, from /proc/self/mounts (the
/// last entry for /, the one on top); None when / is ZFS or no entry says.
pub fn root_not_zfs(mounts: &str) -> Option<(String, String)> {
    let (source, fstype) = root_mounts(mounts).next_back()?;
    (fstype != "zfs").then(|| (source.to_string(), fstype.to_string()))
}

/// What the doctor says on a system whose / is not ZFS.
pub fn root_not_zfs_message(source: &str, fstype: &str) -> String {
    format!(
        "kldload doctor: / is {fstype} ({source}), not ZFS: this is not a running kldload \
         system, so there is nothing to check.\nOn the live medium, `zpool import -R /mnt rpool` \
         reaches an installed system's pool, and `kldload report` describes the disks' pools.\n"
    )
}

/// Reads the root pool's bootfs and its datasets that mount at /; None when / is not ZFS or
/// ZFS's tools cannot say.
pub fn read_boot_environments(pool: &str) -> Option<boot_environments::BootEnvironmentsReadings> {
    let running = running_boot_environment(&std::fs::read_to_string("/proc/self/mounts").ok()?)?;
    let bootfs = output(&["zpool", "get", "-H", "-o", "value", "bootfs", pool])?;
    let list = output(&[
        "zfs",
        "list",
        "-H",
        "-t",
        "filesystem",
        "-r",
        "-o",
        "name,canmount,mountpoint",
        pool,
    ])?;
    let states = output(&[
        "zfs",
        "list",
        "-H",
        "-o",
        "name,org.kldload:state",
        "-d",
        "1",
        &format!("{pool}/ROOT"),
    ])
    .unwrap_or_default();
    Some(boot_environments::BootEnvironmentsReadings {
        pool: pool.to_string(),
        bootfs: boot_environments::parse_bootfs(&bootfs),
        running,
        mounted_at_root: boot_environments::parse_mounted_at_root(&list),
        upgrades: boot_environments::parse_states(&states),
    })
}

/// Reads [`BootEnvironmentReadings`] on this machine; None when / is not ZFS.
pub fn read_boot_environment() -> Option<BootEnvironmentReadings> {
    let be = running_boot_environment(&std::fs::read_to_string("/proc/self/mounts").ok()?)?;
    let pinned = output(&[
        "zfs",
        "get",
        "-H",
        "-o",
        "value",
        "org.zfsbootmenu:kernel",
        &be,
    ])
    .map(|v| v.trim().to_string())
    .filter(|v| v != "-");
    let mut argv = vec!["zfs", "get", "-H", "-o", "name,value,source"];
    argv.push("org.zfsbootmenu:commandline");
    let lineage = commandline::lineage(&be);
    argv.extend(lineage.iter().map(String::as_str));
    let kernels = kernels::read(&be, Path::new("/boot"), pinned);
    Some(BootEnvironmentReadings {
        key: read_key(&be, &kernels),
        kernels,
        commandline: output(&argv).map(|text| commandline::parse(&text)),
    })
}

/// The boot environment's encryption root, its keylocation, and whether the initramfs
/// ZFSBootMenu boots it with by default has the key file.
fn read_key(be: &str, k: &kernels::KernelReadings) -> Option<keys::KeyReadings> {
    let get = |property: &str, dataset: &str| {
        output(&["zfs", "get", "-H", "-o", "value", property, dataset])
            .map(|v| v.trim().to_string())
    };
    let root = get("encryptionroot", be)?;
    if root == "-" || root.is_empty() {
        return Some(keys::KeyReadings {
            encryption_root: None,
            keylocation: String::new(),
            initramfs: None,
            in_initramfs: None,
        });
    }
    let keylocation = get("keylocation", &root)?;
    let list: Vec<kernels::KernelPair> = k.kernels.iter().map(|(p, _)| p.clone()).collect();
    let initramfs =
        kernels::default_kernel(&list, k.pinned.as_deref()).map(|(i, _)| list[i].initramfs.clone());
    let in_initramfs = match (&initramfs, keys::key_file_in_initramfs(&keylocation)) {
        (Some(image), Some(file)) => Some(
            crate::initrd::read_file(&Path::new("/boot").join(image), &file)
                .map(|found| found.is_some())
                .map_err(|e| e.to_string()),
        ),
        _ => None,
    };
    Some(keys::KeyReadings {
        encryption_root: Some(root),
        keylocation,
        initramfs,
        in_initramfs,
    })
}

impl Diagnosis {
    /// Adds what ZFSBootMenu will boot the running boot environment with: the kernel it picks
    /// (a problem when that kernel's initramfs has no zfs.ko, or lacks the key file of an
    /// encrypted root) and the command line (a problem when the boot environment's own value
    /// hides its parent's console). `None`: / is not ZFS.
    /// What the next unattended boot takes: the pool's bootfs, and no second root.
    pub fn add_boot_environments(
        &mut self,
        r: Option<&boot_environments::BootEnvironmentsReadings>,
    ) {
        let Some(r) = r else {
            self.readings
                .push("the pool's bootfs and boot environments (not readable)".into());
            self.unreadable += 1;
            return;
        };
        let (lines, problems) = boot_environments::judge(r);
        self.readings.extend(lines);
        self.problems.extend(problems);
    }

    pub fn add_boot_environment(&mut self, r: Option<&BootEnvironmentReadings>) {
        let Some(r) = r else {
            self.readings
                .push("boot environment: (/ is not a ZFS dataset)".into());
            self.unreadable += 1;
            return;
        };
        let (lines, problem) = kernels::judge(&r.kernels);
        self.readings.extend(lines);
        self.problems.extend(problem);
        let be = &r.kernels.boot_environment;
        match &r.commandline {
            Some(props) => {
                let (line, problem) = commandline::judge(be, props);
                self.readings.push(line);
                self.problems.extend(problem);
            }
            None => {
                self.readings.push(format!(
                    "boot environment {be}: ZFSBootMenu's command line (not readable)"
                ));
                self.unreadable += 1;
            }
        }
        match &r.key {
            Some(key) => {
                let (line, problem) = keys::judge(be, key);
                self.readings.extend(line);
                self.problems.extend(problem);
            }
            None => {
                self.readings.push(format!(
                    "boot environment {be}: its encryption root (not readable)"
                ));
                self.unreadable += 1;
            }
        }
    }
}

/// The value of the last `spl.spl_hostid=` on a kernel command line (the kernel lets the last
/// one win); Absent when there is none, Unreadable when it is not a number.
pub fn boot_menu_hostid(cmdline: &str) -> Place {
    match cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("spl.spl_hostid="))
        .next_back()
    {
        None => Place::Absent,
        Some(v) => parse_kernel_number(v).map_or(Place::Unreadable, Place::Value),
    }
}

/// Reads the five places on this machine. `pool` is the root pool.
pub fn read_hostids(pool: &str) -> HostidReadings {
    let etc = match std::fs::read("/etc/hostid") {
        Ok(bytes) => parse_hostid_file(&bytes).map_or(Place::Unreadable, Place::Value),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Place::Absent,
        Err(_) => Place::Unreadable,
    };
    let spl = match std::fs::read_to_string("/sys/module/spl/parameters/spl_hostid")
        .ok()
        .and_then(|t| parse_kernel_number(&t))
    {
        Some(0) => Place::Absent,
        Some(v) => Place::Value(v),
        None => Place::Unreadable,
    };
    HostidReadings {
        etc,
        initramfs: initramfs_hostid(),
        boot_menu: boot_menu_hostid(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default()),
        spl,
        pool_label: pool_label_hostid(pool).map_or(Place::Unreadable, Place::Value),
    }
}

fn output(argv: &[&str]) -> Option<String> {
    let out = Command::new(argv[0]).args(&argv[1..]).output();
    tracing::debug!(?argv, status = ?out.as_ref().map(|o| o.status), "doctor reads");
    let out = out.ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// /etc/hostid in the running kernel's initramfs, read out of the image without unpacking it
/// (`crate::initrd`), or kept from an earlier reading of the same file
/// ([`crate::initrd::readings`]).
fn initramfs_hostid() -> Place {
    let Some(release) = output(&["uname", "-r"]) else {
        return Place::Unreadable;
    };
    let image = format!("/boot/initrd.img-{}", release.trim());
    if !Path::new(&image).is_file() {
        return Place::Unreadable;
    }
    let mut cache = readings::Cache::load(Path::new(readings::CACHE));
    let read = cache.readings(Path::new(&image));
    // A cache that cannot be written is read again next time: nothing to report.
    let _ = cache.save();
    match read {
        Ok(r) => match r.hostid {
            None => Place::Absent,
            Some(bytes) => parse_hostid_file(&bytes).map_or(Place::Unreadable, Place::Value),
        },
        Err(_) => Place::Unreadable,
    }
}

/// The hostid in the label of the pool's first disk (`zdb -l`).
fn pool_label_hostid(pool: &str) -> Option<u32> {
    let devices = output(&["zpool", "list", "-vHPL", pool])?;
    let device = devices
        .split_whitespace()
        .find(|w| w.starts_with("/dev/"))?
        .to_string();
    label_hostid(&output(&["zdb", "-l", &device])?)
}

/// The hostid in `zdb -l`'s print of a label (its first `hostid:` line).
pub fn label_hostid(zdb_label: &str) -> Option<u32> {
    zdb_label.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("hostid:")?;
        parse_kernel_number(rest.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: u32 = ZFSBOOTMENU_HOSTID;

    /// The live medium's / (a tmpfs over the kernel's rootfs) and an ext4 machine are not
    /// ZFS; an installed system's is, also with a tmpfs mounted under it.
    #[test]
    fn a_root_that_is_not_zfs_is_named_with_its_type() {
        let live = "rootfs / rootfs rw 0 0\nproc /proc proc rw 0 0\n\
                    tmpfs / tmpfs rw,relatime 0 0\n";
        assert_eq!(root_not_zfs(live), Some(("tmpfs".into(), "tmpfs".into())));
        let ext4 = "/dev/sda2 / ext4 rw,relatime 0 0\n/dev/sda1 /boot/efi vfat rw 0 0\n";
        assert_eq!(
            root_not_zfs(ext4),
            Some(("/dev/sda2".into(), "ext4".into()))
        );
        let zfs = "rpool/ROOT/default / zfs rw,relatime,xattr,posixacl 0 0\n\
                   tmpfs /tmp tmpfs rw 0 0\n";
        assert_eq!(root_not_zfs(zfs), None);
        let message = root_not_zfs_message("/dev/sda2", "ext4");
        assert!(
            message.contains("/ is ext4 (/dev/sda2), not ZFS"),
            "{message}"
        );
        assert!(!message.contains("fix:"), "{message}");
    }

    fn all(v: u32) -> HostidReadings {
        HostidReadings {
            etc: Place::Value(v),
            initramfs: Place::Value(v),
            boot_menu: Place::Value(v),
            spl: Place::Value(v),
            pool_label: Place::Value(v),
        }
    }

    #[test]
    fn the_boot_environment_is_the_zfs_dataset_at_root() {
        let mounts = "sysfs /sys sysfs rw 0 0\n\
            rpool/ROOT/default / zfs rw,relatime,xattr,posixacl 0 0\n\
            rpool/home /home zfs rw 0 0\n";
        assert_eq!(
            running_boot_environment(mounts).as_deref(),
            Some("rpool/ROOT/default")
        );
        assert_eq!(running_boot_environment("/dev/sda2 / ext4 rw 0 0\n"), None);
        let mut d = diagnose(&all(OK), "rpool");
        d.add_boot_environment(None);
        assert!(d.healthy());
        assert_eq!(d.unreadable, 1);
    }

    #[test]
    fn one_value_everywhere_is_healthy() {
        let d = diagnose(&all(OK), "rpool");
        assert!(d.healthy(), "{}", d.report());
        assert!(d.report().contains("agrees in every place\n"));
        assert_eq!(d.readings.len(), 5);
    }

    #[test]
    fn a_rewritten_etc_hostid_is_named_with_the_fix() {
        let r = HostidReadings {
            etc: Place::Value(0x1234_5678),
            ..all(OK)
        };
        let d = diagnose(&r, "rpool");
        assert!(!d.healthy());
        assert_eq!(d.problems.len(), 1);
        assert!(
            d.problems[0].starts_with("/etc/hostid is 0x12345678"),
            "{d:?}"
        );
        assert!(d.problems[0].contains("0x00bab10c"));
        assert_eq!(
            d.fix,
            ["zgenhostid -f 0x00bab10c", "update-initramfs -u -k all"]
        );
        let report = d.report();
        assert!(report.contains("PROBLEM"), "{report}");
        assert!(report.contains("fix: zgenhostid -f 0x00bab10c && update-initramfs -u -k all"));
    }

    #[test]
    fn a_missing_hostid_file_is_a_problem() {
        let r = HostidReadings {
            etc: Place::Absent,
            ..all(OK)
        };
        let d = diagnose(&r, "rpool");
        assert_eq!(
            d.problems,
            ["/etc/hostid is missing (this system runs with 0x00bab10c)"]
        );
        assert_eq!(d.fix[0], "zgenhostid -f 0x00bab10c");
    }

    #[test]
    fn the_running_value_wins_and_an_unreadable_place_is_no_disagreement() {
        let r = HostidReadings {
            initramfs: Place::Unreadable,
            ..all(0x0102_0304)
        };
        let d = diagnose(&r, "tank");
        assert!(d.healthy(), "{}", d.report());
        assert!(d.report().contains("every place read (1 not readable"));
        assert!(
            d.report()
                .contains("the initramfs's /etc/hostid: (not readable)")
        );
        assert!(d.report().contains("pool tank's label: 0x01020304"));
    }

    #[test]
    fn without_an_spl_value_kldloads_hostid_is_the_reference() {
        let r = HostidReadings {
            spl: Place::Absent,
            boot_menu: Place::Absent,
            ..all(OK)
        };
        let d = diagnose(&r, "rpool");
        assert!(d.healthy(), "{}", d.report());
        assert!(d.report().contains("the SPL's spl_hostid: (none)"));
    }

    #[test]
    fn a_stale_pool_label_asks_for_a_reboot() {
        let r = HostidReadings {
            pool_label: Place::Value(7),
            ..all(OK)
        };
        let d = diagnose(&r, "rpool");
        assert_eq!(d.fix, ["reboot"]);
    }

    #[test]
    fn hostids_parse_as_files_and_as_the_kernel_reads_numbers() {
        assert_eq!(parse_hostid_file(&[0x0c, 0xb1, 0xba, 0x00]), Some(OK));
        assert_eq!(parse_hostid_file(&[1, 2]), None);
        assert_eq!(parse_kernel_number("0x00bab10c\n"), Some(OK));
        assert_eq!(parse_kernel_number("0X00BAB10C"), Some(OK));
        assert_eq!(parse_kernel_number("12235020"), Some(OK));
        assert_eq!(parse_kernel_number("010"), Some(8));
        assert_eq!(parse_kernel_number("0"), Some(0));
        assert_eq!(parse_kernel_number("00bab10c"), None);
        assert_eq!(parse_kernel_number("0xnothex"), None);
    }

    #[test]
    fn the_last_spl_hostid_on_the_command_line_wins() {
        assert_eq!(
            boot_menu_hostid("root=zfs:x spl.spl_hostid=0x1 quiet spl.spl_hostid=0x00bab10c"),
            Place::Value(OK)
        );
        assert_eq!(boot_menu_hostid("quiet"), Place::Absent);
        assert_eq!(
            boot_menu_hostid("spl.spl_hostid=0xnothex"),
            Place::Unreadable
        );
    }

    fn zbm(hostid: Option<u32>, features: &[&str]) -> ZbmImage {
        ZbmImage {
            cmdline: Some("quiet".into()),
            signed: false,
            hostid,
            zfs_features: Some(crate::zbm::image::FeatureSet {
                name: "openzfs-2.1-linux".into(),
                features: features.iter().map(|f| f.to_string()).collect(),
            }),
            release: None,
            kernel: None,
            zfs_module: Some("usr/lib/modules/6.1.0-50-amd64/updates/dkms/zfs.ko.xz".into()),
            boot_trial: false,
        }
    }

    fn enabled(list: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            list.iter()
                .map(|(f, s)| (f.to_string(), s.to_string()))
                .collect(),
        )
    }

    #[test]
    fn features_zfsbootmenus_zfs_cannot_read_are_named_with_their_state_and_the_fix() {
        let mut d = diagnose(&all(OK), "rpool");
        let readings = ZbmReadings {
            image: Ok(zbm(None, &["async_destroy", "lz4_compress"])),
            pool_features: enabled(&[
                ("async_destroy", "enabled"),
                ("block_cloning", "active"),
                ("longname", "enabled"),
            ]),
        };
        d.add_zfsbootmenu(&readings, "rpool");
        assert!(!d.healthy());
        let report = d.report();
        assert!(
            report.contains(
                "PROBLEM: pool rpool has features ZFSBootMenu's ZFS (openzfs-2.1-linux) cannot \
                 read: block_cloning (active), longname (enabled)"
            ),
            "{report}"
        );
        assert!(report.contains("cargo xtask build-image"), "{report}");
        assert!(!report.contains("kldload doctor: fix:"), "{report}");
        let mut d = diagnose(&all(OK), "rpool");
        let readable = ZbmReadings {
            pool_features: enabled(&[("lz4_compress", "active")]),
            ..readings
        };
        d.add_zfsbootmenu(&readable, "rpool");
        assert!(d.healthy(), "{}", d.report());
        assert!(d.report().contains("its ZFS reads openzfs-2.1-linux"));
    }

    #[test]
    fn a_zfsbootmenu_carrying_another_hostid_is_said_but_no_problem_of_its_own() {
        let features = enabled(&[]);
        let mut d = diagnose(&all(0x1234_5678), "rpool");
        d.add_zfsbootmenu(
            &ZbmReadings {
                image: Ok(zbm(Some(0x1234_5678), &[])),
                pool_features: features.clone(),
            },
            "rpool",
        );
        assert!(d.healthy(), "{}", d.report());
        let mut d = diagnose(&all(OK), "rpool");
        d.add_zfsbootmenu(
            &ZbmReadings {
                image: Ok(zbm(Some(0x1234_5678), &[])),
                pool_features: features,
            },
            "rpool",
        );
        assert!(d.healthy(), "{}", d.report());
        assert!(
            d.report()
                .contains("hostid 0x12345678 (not the 0x00bab10c this system runs with"),
            "{}",
            d.report()
        );
        let mut d = diagnose(&all(OK), "rpool");
        d.add_zfsbootmenu(
            &ZbmReadings {
                image: Err("no such file".into()),
                pool_features: None,
            },
            "rpool",
        );
        assert!(d.healthy());
        assert_eq!(d.unreadable, 1);
    }

    #[test]
    fn a_zfsbootmenu_without_zfs_ko_is_a_problem() {
        let mut d = diagnose(&all(OK), "rpool");
        d.add_zfsbootmenu(
            &ZbmReadings {
                image: Ok(ZbmImage {
                    zfs_module: None,
                    ..zbm(Some(OK), &[])
                }),
                pool_features: enabled(&[]),
            },
            "rpool",
        );
        assert!(!d.healthy());
        let report = d.report();
        assert!(
            report.contains(&format!(
                "PROBLEM: ZFSBootMenu's EFI file {INSTALLED_ZFSBOOTMENU} has no zfs.ko in its \
                 initramfs"
            )),
            "{report}"
        );
        assert!(report.contains("--no-hostonly"), "{report}");
    }

    /// No fallback copy: a problem naming the file and the copy that makes it, shim's under
    /// Secure Boot; with it (the control), nothing to say.
    #[test]
    fn an_esp_without_its_fallback_copy_is_a_problem() {
        let judged = |readings| {
            let mut d = diagnose(&all(OK), "rpool");
            d.add_fallback(readings);
            d
        };
        let esp = |fallback, through_shim| FallbackReadings::Esp {
            fallback,
            through_shim,
        };
        let d = judged(esp(false, false));
        assert!(!d.healthy());
        let report = d.report();
        assert!(
            report.contains(
                "PROBLEM: the ESP has no fallback copy /boot/efi/EFI/BOOT/BOOTX64.EFI: the \
                 machine boots through its firmware entries alone"
            ),
            "{report}"
        );
        assert!(
            report.contains(
                "fix: mkdir -p /boot/efi/EFI/BOOT && cp /boot/efi/EFI/ZBM/VMLINUZ.EFI \
                 /boot/efi/EFI/BOOT/BOOTX64.EFI"
            ),
            "{report}"
        );
        let shim = judged(esp(false, true)).report();
        assert!(
            shim.contains("cp /boot/efi/EFI/ZBM/shimx64.efi /boot/efi/EFI/BOOT/BOOTX64.EFI"),
            "{shim}"
        );
        let there = judged(esp(true, false));
        assert!(there.healthy(), "{}", there.report());
        assert!(
            there
                .report()
                .contains("/boot/efi/EFI/BOOT/BOOTX64.EFI: there")
        );
        // No ESP mounted: not readable, no problem made up.
        let none = judged(FallbackReadings::NoEsp);
        assert!(none.healthy());
        assert_eq!(none.unreadable, 1);
    }

    #[test]
    fn zpool_gets_enabled_and_active_features_are_read() {
        let text = "size\t9G\nfeature@async_destroy\tenabled\nfeature@lz4_compress\tactive\n\
                    feature@draid\tdisabled\n";
        assert_eq!(
            pool_features(text),
            [
                ("async_destroy".to_string(), "enabled".to_string()),
                ("lz4_compress".to_string(), "active".to_string())
            ]
        );
    }

    #[test]
    fn the_efi_file_is_read_again_only_when_it_changed() {
        use crate::initrd::testing::Entry;
        let Some(efi) =
            crate::zbm::image::tests::zbm_efi("quiet", &[Entry::file("etc/hostid", &[1, 0, 0, 0])])
        else {
            eprintln!("zstd is not installed here: not tested");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache/zbm.json");
        let first = zbm_image_cached(efi.path(), &cache).unwrap();
        assert_eq!(first.hostid, Some(1));
        // A cache entry for the same size and time is taken as is: doctored, it shows.
        let text = std::fs::read_to_string(&cache).unwrap();
        std::fs::write(&cache, text.replace("\"hostid\":1", "\"hostid\":2")).unwrap();
        assert_eq!(
            zbm_image_cached(efi.path(), &cache).unwrap().hostid,
            Some(2)
        );
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        efi.as_file().set_modified(later).unwrap();
        assert_eq!(
            zbm_image_cached(efi.path(), &cache).unwrap().hostid,
            Some(1)
        );
        // Remembered (as the install does): the file read again whatever the cache held, and
        // the entry then taken as is.
        let current = std::fs::read_to_string(&cache).unwrap();
        std::fs::write(&cache, current.replace("\"hostid\":1", "\"hostid\":2")).unwrap();
        assert_eq!(
            zbm_image_cached(efi.path(), &cache).unwrap().hostid,
            Some(2)
        );
        assert_eq!(
            remember_zbm_image(efi.path(), &cache).unwrap().hostid,
            Some(1)
        );
        let remembered = std::fs::read_to_string(&cache).unwrap();
        std::fs::write(&cache, remembered.replace("\"hostid\":1", "\"hostid\":3")).unwrap();
        assert_eq!(
            zbm_image_cached(efi.path(), &cache).unwrap().hostid,
            Some(3)
        );
        std::fs::write(&cache, &remembered).unwrap();
        // An entry an older kldload wrote lacks a reading: it is read again, not trusted.
        let text = std::fs::read_to_string(&cache).unwrap();
        let older = text
            .replace(&format!("\"format\":{CACHE_FORMAT},"), "\"format\":1,")
            .replace("\"hostid\":1", "\"hostid\":2");
        assert_ne!(older, text.replace("\"hostid\":1", "\"hostid\":2"));
        std::fs::write(&cache, older).unwrap();
        assert_eq!(
            zbm_image_cached(efi.path(), &cache).unwrap().hostid,
            Some(1)
        );
    }
}
