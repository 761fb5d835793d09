//! Which kernel ZFSBootMenu boots a boot environment with, and whether that kernel's initramfs
//! carries ZFS. The bug this catches (openzfs/zfs #11210, zbm-dev/zfsbootmenu #811): an upgrade
//! installs a new kernel for which DKMS did not build ZFS, so its initramfs has no zfs.ko;
//! ZFSBootMenu boots the newest kernel by default, and that boot cannot find its root.
//!
//! ZFSBootMenu's rules, as its 3.1.0 `find_be_kernels`, `find_be_initramfs` and
//! `select_kernel` (lib/zfsbootmenu-core.sh) have them: the kernels are the files
//! /boot/{vmlinux,vmlinuz,linux,linuz,kernel}{,-*}, in `sort -V` order, each with the first
//! initramfs found under a list of names; the default is the last one, unless the boot
//! environment's `org.zfsbootmenu:kernel` is set: then the last whose path (`/boot/<file>`)
//! matches it as a regular expression. Reading is separate from judging, so the judgement is
//! unit-tested on listings.

use crate::initrd::readings;
pub use crate::initrd::readings::is_zfs_module;
use std::cmp::Ordering;
use std::path::Path;

/// A kernel ZFSBootMenu lists for a boot environment, with the initramfs it pairs it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPair {
    /// The kernel's file name in /boot.
    pub kernel: String,
    /// The initramfs's file name in /boot.
    pub initramfs: String,
}

/// The kernel file names ZFSBootMenu looks for: these bases, alone or followed by `-<version>`.
const KERNEL_BASES: [&str; 5] = ["vmlinux", "vmlinuz", "linux", "linuz", "kernel"];

fn is_kernel_name(name: &str) -> bool {
    KERNEL_BASES.iter().any(|base| {
        name == *base
            || name
                .strip_prefix(base)
                .is_some_and(|rest| rest.starts_with('-'))
    })
}

/// The initramfs ZFSBootMenu pairs with the kernel file `kernel`, among the file names of its
/// directory: the common names first (Void and Arch, Debian, Alpine), then every
/// `initramfs`/`initrd` name with the kernel's name or version and a compression suffix.
pub fn initramfs_for(kernel: &str, files: &[String]) -> Option<String> {
    // The version starts at the first hyphen and may be empty.
    let version = kernel.find('-').map_or("", |i| &kernel[i..]);
    let common = [
        format!("initramfs-{kernel}.img"),
        format!("initramfs{version}.img"),
        format!("initrd.img-{kernel}"),
        format!("initrd.img{version}"),
        format!("initramfs-{kernel}"),
        format!("initramfs{version}"),
    ];
    let mut exhaustive = Vec::new();
    for img in [".img", ""] {
        for compression in ["", ".gz", ".bz2", ".xz", ".lzma", ".lz4", ".lzo", ".zstd"] {
            let ext = format!("{img}{compression}");
            for prefix in ["initramfs", "initrd"] {
                for label in [kernel, version] {
                    exhaustive.push(format!("{prefix}{label}{ext}"));
                    exhaustive.push(format!("{prefix}{ext}{label}"));
                }
            }
        }
    }
    common
        .into_iter()
        .chain(exhaustive)
        .find(|candidate| files.contains(candidate))
}

/// ZFSBootMenu's kernel list for a /boot that holds `files`: the kernels that have an
/// initramfs, in `sort -V` order (the last is the newest).
pub fn kernel_list(files: &[String]) -> Vec<KernelPair> {
    let mut kernels: Vec<&String> = files.iter().filter(|f| is_kernel_name(f)).collect();
    kernels.sort_by(|a, b| version_order(a, b));
    kernels
        .into_iter()
        .filter_map(|kernel| {
            initramfs_for(kernel, files).map(|initramfs| KernelPair {
                kernel: kernel.clone(),
                initramfs,
            })
        })
        .collect()
}

/// Why ZFSBootMenu boots the kernel it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The newest: `org.zfsbootmenu:kernel` is not set.
    Newest,
    /// The last one matching `org.zfsbootmenu:kernel`.
    Pinned(String),
    /// `org.zfsbootmenu:kernel` is set but matches none (or is not a regular expression): the
    /// newest, as ZFSBootMenu falls back to it.
    PinMatchesNone(String),
}

/// The index in `list` of the kernel ZFSBootMenu boots by default, and why; None for an empty
/// list. `pinned` is the boot environment's `org.zfsbootmenu:kernel` (None when not set).
/// ZFSBootMenu matches it with bash's `=~` (POSIX extended expressions); the `regex` crate
/// agrees with those on the patterns people set (a version, `6\.1`, `lts$`).
pub fn default_kernel(list: &[KernelPair], pinned: Option<&str>) -> Option<(usize, Choice)> {
    let newest = list.len().checked_sub(1)?;
    let Some(pin) = pinned else {
        return Some((newest, Choice::Newest));
    };
    let matched = regex::Regex::new(pin).ok().and_then(|re| {
        list.iter()
            .rposition(|k| re.is_match(&format!("/boot/{}", k.kernel)))
    });
    Some(match matched {
        Some(i) => (i, Choice::Pinned(pin.to_string())),
        None => (newest, Choice::PinMatchesNone(pin.to_string())),
    })
}

/// Whether `pin` is `kernel`'s file name (or /boot path) written as it is, perhaps anchored
/// with `^`/`$`: what a person, or ZFSBootMenu's Ctrl+D, means by it.
fn pin_names_literally(pin: &str, kernel: &str) -> bool {
    let bare = pin.trim_start_matches('^').trim_end_matches('$');
    bare == kernel || bare == format!("/boot/{kernel}")
}

/// `text` as a POSIX extended regular expression that matches it literally (a kernel version
/// for `org.zfsbootmenu:kernel`, which bash's `=~` reads).
pub fn ere_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if ".[]()*+?{}|^$\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `sort -V`'s order of two file names (GNU's filevercmp, without its special cases for
/// hidden files and file suffixes, which kernel names do not have): Debian's version
/// comparison, digits compared as numbers, `~` before anything, letters before other signs.
pub fn version_order(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let order = |c: Option<&u8>| -> i32 {
        match c {
            None => 0,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(*c),
            Some(b'~') => -1,
            Some(c) => i32::from(*c) + 256,
        }
    };
    let digit = |s: &[u8], i: usize| s.get(i).is_some_and(u8::is_ascii_digit);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ca, cb) = (order(a.get(i)), order(b.get(j)));
            if ca != cb {
                return ca.cmp(&cb);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_difference = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_difference == Ordering::Equal {
                first_difference = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_difference != Ordering::Equal {
            return first_difference;
        }
    }
    Ordering::Equal
}

/// What the doctor read about one boot environment's kernels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelReadings {
    /// The boot environment (the dataset mounted at /).
    pub boot_environment: String,
    /// Its `org.zfsbootmenu:kernel`, when set.
    pub pinned: Option<String>,
    /// ZFSBootMenu's kernel list, each with whether its initramfs has zfs.ko (or why that
    /// could not be read).
    pub kernels: Vec<(KernelPair, Result<bool, String>)>,
}

/// The reading lines and the problem, if any: the kernel ZFSBootMenu boots by default has no
/// zfs.ko in its initramfs. Another kernel without one is said in its reading only: it boots
/// when chosen in ZFSBootMenu's kernel list, and fails then, but the default boot is sound.
pub fn judge(r: &KernelReadings) -> (Vec<String>, Option<String>) {
    let be = &r.boot_environment;
    let list: Vec<KernelPair> = r.kernels.iter().map(|(k, _)| k.clone()).collect();
    let Some((default, choice)) = default_kernel(&list, r.pinned.as_deref()) else {
        return (
            vec![format!(
                "boot environment {be}: no kernel with an initramfs in /boot (ZFSBootMenu lists none)"
            )],
            Some(format!(
                "boot environment {be} has no kernel with an initramfs in /boot: ZFSBootMenu \
                 cannot boot it. fix: apt install --reinstall linux-image-$(uname -r) zfs-initramfs \
                 (the running kernel's own package: linux-image-amd64 would bring a newer \
                 kernel, for which no zfs.ko may exist)"
            )),
        );
    };
    let why = match &choice {
        Choice::Newest => "the newest".to_string(),
        Choice::Pinned(pin) => format!("org.zfsbootmenu:kernel={pin}"),
        Choice::PinMatchesNone(pin) => {
            format!("the newest: org.zfsbootmenu:kernel={pin} matches no kernel")
        }
    };
    let readings = r
        .kernels
        .iter()
        .enumerate()
        .map(|(i, (k, zfs))| {
            let zfs = match zfs {
                Ok(true) => "zfs.ko in it".to_string(),
                Ok(false) => "NO zfs.ko in it".to_string(),
                Err(why) => format!("zfs.ko not readable: {why}"),
            };
            let default = if i == default {
                format!(", booted by default ({why})")
            } else {
                String::new()
            };
            format!(
                "boot environment {be}: /boot/{} with /boot/{}, {zfs}{default}",
                k.kernel, k.initramfs
            )
        })
        .collect();
    let mut problems = Vec::new();
    if let Choice::PinMatchesNone(pin) = &choice
        && let Some(meant) = list.iter().find(|k| pin_names_literally(pin, &k.kernel))
    {
        let problem = format!(
            "{be}'s org.zfsbootmenu:kernel={pin} is meant for /boot/{}, but read as a regular \
             expression, as ZFSBootMenu reads it, it matches no kernel ('+' and '.' are \
             operators there), so ZFSBootMenu boots the newest, /boot/{}; ZFSBootMenu's own \
             \"set default\" in its kernel list (Ctrl+D) writes file names so. fix: zfs set \
             org.zfsbootmenu:kernel='{}$' {be}",
            meant.kernel,
            list[default].kernel,
            ere_escape(&meant.kernel)
        );
        problems.push(problem);
    }
    let (pair, zfs) = &r.kernels[default];
    if *zfs != Ok(false) {
        return (readings, join(problems));
    }
    // An unversioned kernel (`vmlinuz`) runs with the running kernel's modules.
    let version = pair
        .kernel
        .find('-')
        .map_or("$(uname -r)", |i| &pair.kernel[i + 1..]);
    let working: Vec<&str> = r
        .kernels
        .iter()
        .filter(|(_, zfs)| *zfs == Ok(true))
        .map(|(k, _)| k.kernel.as_str())
        .collect();
    let pin = working.last().map_or(String::new(), |k| {
        let v = k.find('-').map_or(*k, |i| &k[i + 1..]);
        format!(
            ", or boot a kernel that has it: zfs set org.zfsbootmenu:kernel='{}$' {be} (or pick \
             it in ZFSBootMenu's kernel list, Ctrl+K)",
            ere_escape(v)
        )
    });
    let problem = format!(
        "ZFSBootMenu boots {be} with /boot/{} by default ({why}), but its initramfs /boot/{} \
         has no zfs.ko: that boot cannot mount its root. fix: build ZFS for that kernel and \
         put it in the initramfs (dkms autoinstall -k {version} && update-initramfs -u -k \
         {version}){pin}",
        pair.kernel, pair.initramfs
    );
    problems.push(problem);
    (readings, join(problems))
}

/// Two problems found at once are said as one, in order.
fn join(problems: Vec<String>) -> Option<String> {
    (!problems.is_empty()).then(|| problems.join("; and "))
}

/// Reads [`KernelReadings`] for the boot environment `be` (the dataset mounted at /), whose
/// /boot is `boot`: its `org.zfsbootmenu:kernel` (from `zfs get`) and its kernel list.
pub fn read(be: &str, boot: &Path, pinned: Option<String>) -> KernelReadings {
    let files: Vec<String> = std::fs::read_dir(boot)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let mut cache = readings::Cache::load(Path::new(readings::CACHE));
    let kernels = kernel_list(&files)
        .into_iter()
        .map(|pair| {
            let zfs = cache
                .readings(&boot.join(&pair.initramfs))
                .map(|r| r.has_zfs);
            (pair, zfs)
        })
        .collect();
    // A cache that cannot be written is read again next time: nothing to report.
    let _ = cache.save();
    KernelReadings {
        boot_environment: be.to_string(),
        pinned,
        kernels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// A Debian /boot after an upgrade to a kernel DKMS did not build ZFS for.
    fn debian_boot() -> Vec<String> {
        names(&[
            "config-6.12.48+deb13-amd64",
            "initrd.img-6.12.48+deb13-amd64",
            "System.map-6.12.48+deb13-amd64",
            "vmlinuz-6.12.48+deb13-amd64",
            "config-6.12.57+deb13-amd64",
            "initrd.img-6.12.57+deb13-amd64",
            "vmlinuz-6.12.57+deb13-amd64",
            "vmlinuz-6.12.9+deb13-amd64",
        ])
    }

    #[test]
    fn debian_kernels_pair_with_their_initrd_in_version_order() {
        let list = kernel_list(&debian_boot());
        let kernels: Vec<&str> = list.iter().map(|k| k.kernel.as_str()).collect();
        // 6.12.9 has no initramfs: not listed. 57 sorts after 48 as a number.
        assert_eq!(
            kernels,
            ["vmlinuz-6.12.48+deb13-amd64", "vmlinuz-6.12.57+deb13-amd64"]
        );
        assert_eq!(list[1].initramfs, "initrd.img-6.12.57+deb13-amd64");
    }

    #[test]
    fn other_distributions_initramfs_names() {
        let files = names(&[
            "vmlinuz-linux",
            "initramfs-linux.img",
            "vmlinuz-6.6.1_1",
            "initramfs-6.6.1_1.img",
            "vmlinuz-lts",
            "initramfs-lts",
            "kernel-7.0",
            "initrd-7.0.zstd",
        ]);
        let pairs: Vec<(String, String)> = kernel_list(&files)
            .into_iter()
            .map(|k| (k.kernel, k.initramfs))
            .collect();
        assert!(pairs.contains(&("vmlinuz-linux".into(), "initramfs-linux.img".into())));
        assert!(pairs.contains(&("vmlinuz-6.6.1_1".into(), "initramfs-6.6.1_1.img".into())));
        assert!(pairs.contains(&("vmlinuz-lts".into(), "initramfs-lts".into())));
        assert!(pairs.contains(&("kernel-7.0".into(), "initrd-7.0.zstd".into())));
        assert!(!is_kernel_name("vmlinuz.old"));
    }

    #[test]
    fn sort_v_order() {
        let mut v = names(&[
            "vmlinuz-6.12.57+deb13-amd64",
            "vmlinuz-6.1.0-10-amd64",
            "vmlinuz-6.12.9+deb13-amd64",
            "vmlinuz-6.1.0-9-amd64",
            "vmlinuz",
            "vmlinuz-6.1.0-10-amd64~rc1",
        ]);
        v.sort_by(|a, b| version_order(a, b));
        // As GNU `sort -V` prints them (checked with coreutils 9.1).
        assert_eq!(
            v,
            [
                "vmlinuz",
                "vmlinuz-6.1.0-9-amd64",
                "vmlinuz-6.1.0-10-amd64~rc1",
                "vmlinuz-6.1.0-10-amd64",
                "vmlinuz-6.12.9+deb13-amd64",
                "vmlinuz-6.12.57+deb13-amd64",
            ]
        );
    }

    proptest! {
        /// An order: antisymmetric, and equal only for equal names (no leading zeros).
        #[test]
        fn version_order_is_antisymmetric(a in "[a-z0-9.+~-]{0,12}", b in "[a-z0-9.+~-]{0,12}") {
            prop_assert_eq!(version_order(&a, &b), version_order(&b, &a).reverse());
        }
    }

    #[test]
    fn the_pin_wins_when_it_matches() {
        let list = kernel_list(&debian_boot());
        assert_eq!(default_kernel(&list, None), Some((1, Choice::Newest)));
        assert_eq!(
            default_kernel(&list, Some("6\\.12\\.48")),
            Some((0, Choice::Pinned("6\\.12\\.48".into())))
        );
        assert_eq!(
            default_kernel(&list, Some("5\\.10")),
            Some((1, Choice::PinMatchesNone("5\\.10".into())))
        );
        assert_eq!(default_kernel(&[], None), None);
    }

    #[test]
    fn zfs_modules_by_name() {
        assert!(is_zfs_module(
            "usr/lib/modules/6.12.48+deb13-amd64/updates/dkms/zfs.ko.xz"
        ));
        assert!(is_zfs_module(
            "lib/modules/6.1.0-9-amd64/updates/dkms/zfs.ko"
        ));
        assert!(!is_zfs_module(
            "lib/modules/6.1.0-9-amd64/updates/dkms/zzstd.ko"
        ));
        assert!(!is_zfs_module("usr/sbin/zfs"));
    }

    fn readings(zfs: [bool; 2], pinned: Option<&str>) -> KernelReadings {
        KernelReadings {
            boot_environment: "rpool/ROOT/default".into(),
            pinned: pinned.map(String::from),
            kernels: kernel_list(&debian_boot())
                .into_iter()
                .zip(zfs)
                .map(|(k, z)| (k, Ok(z)))
                .collect(),
        }
    }

    #[test]
    fn the_newest_kernel_without_zfs_is_a_problem_with_both_fixes() {
        let (lines, problem) = judge(&readings([true, false], None));
        assert_eq!(lines.len(), 2);
        assert!(
            lines[1].ends_with("NO zfs.ko in it, booted by default (the newest)"),
            "{lines:?}"
        );
        let problem = problem.expect("a problem");
        assert!(
            problem.starts_with(
                "ZFSBootMenu boots rpool/ROOT/default with /boot/vmlinuz-6.12.57+deb13-amd64 \
                 by default (the newest), but its initramfs /boot/initrd.img-6.12.57+deb13-amd64 \
                 has no zfs.ko"
            ),
            "{problem}"
        );
        assert!(problem.contains("dkms autoinstall -k 6.12.57+deb13-amd64"));
        assert!(problem.contains(
            "zfs set org.zfsbootmenu:kernel='6\\.12\\.48\\+deb13-amd64$' rpool/ROOT/default"
        ));
    }

    #[test]
    fn pinned_to_a_kernel_with_zfs_is_sound() {
        let (lines, problem) = judge(&readings([true, false], Some("6\\.12\\.48\\+deb13-amd64")));
        assert_eq!(problem, None);
        assert!(lines[0].contains("booted by default (org.zfsbootmenu:kernel="));
        assert!(lines[1].ends_with("NO zfs.ko in it"), "{lines:?}");
        // A pin that names a kernel without ZFS is the problem again.
        let (_, problem) = judge(&readings([false, true], Some("6\\.12\\.48")));
        assert!(problem.is_some_and(|p| p.contains("(org.zfsbootmenu:kernel=6\\.12\\.48)")));
    }

    #[test]
    fn a_pin_written_as_the_file_name_matches_nothing_when_it_has_a_plus() {
        // What ZFSBootMenu 3.1.0's Ctrl+D writes for the older kernel.
        let pin = "vmlinuz-6.12.48+deb13-amd64$";
        let list = kernel_list(&debian_boot());
        assert_eq!(
            default_kernel(&list, Some(pin)),
            Some((1, Choice::PinMatchesNone(pin.into())))
        );
        let (_, problem) = judge(&readings([true, true], Some(pin)));
        let problem = problem.expect("a problem");
        assert!(
            problem.starts_with(
                "rpool/ROOT/default's org.zfsbootmenu:kernel=vmlinuz-6.12.48+deb13-amd64$ is \
                 meant for /boot/vmlinuz-6.12.48+deb13-amd64, but"
            ),
            "{problem}"
        );
        let fix = "zfs set org.zfsbootmenu:kernel='vmlinuz-6\\.12\\.48\\+deb13-amd64$' rpool/ROOT/default";
        assert!(problem.ends_with(fix), "{problem}");
        // The fixed pin matches, as bash's =~ would.
        let fixed = "vmlinuz-6\\.12\\.48\\+deb13-amd64$";
        assert_eq!(
            default_kernel(&list, Some(fixed)),
            Some((0, Choice::Pinned(fixed.into())))
        );
        // A pin for a kernel that is gone is said in the reading only.
        let (lines, problem) = judge(&readings([true, true], Some("vmlinuz-5.10.0-9-amd64$")));
        assert_eq!(problem, None);
        assert!(lines[1].contains("matches no kernel"), "{lines:?}");
    }

    /// A kldload machine has no kernel metapackage: the fix reinstalls the running kernel's
    /// own package, not `linux-image-amd64`, which would bring a kernel with no zfs.ko.
    #[test]
    fn no_kernel_at_all_is_fixed_with_the_running_kernels_own_package() {
        let mut r = readings([true, true], None);
        r.kernels.clear();
        let (lines, problem) = judge(&r);
        assert!(
            lines[0].contains("no kernel with an initramfs"),
            "{lines:?}"
        );
        let problem = problem.expect("a problem");
        assert!(
            problem.contains("fix: apt install --reinstall linux-image-$(uname -r) zfs-initramfs"),
            "{problem}"
        );
        assert!(
            !problem.contains("linux-image-amd64 zfs-initramfs"),
            "{problem}"
        );
    }

    #[test]
    fn an_unreadable_initramfs_is_no_problem() {
        let mut r = readings([true, true], None);
        r.kernels[1].1 = Err("not root".into());
        let (lines, problem) = judge(&r);
        assert_eq!(problem, None);
        assert!(lines[1].contains("zfs.ko not readable: not root"));
    }
}
