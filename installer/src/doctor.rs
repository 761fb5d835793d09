//! `kldload doctor`, run on an installed system (kldload puts itself there, and a unit runs it at
//! every boot): checks that the hostid is one value in the five places ZFS and ZFSBootMenu read
//! it, and when they disagree says which place holds what and the commands that make them agree.
//! (ARCHITECTURE.md, "One hostid": ZFSBootMenu imports the pool with 0x00bab10c and passes it on
//! as `spl.spl_hostid`; a rewritten /etc/hostid still boots, until something imports the pool
//! with the initramfs's or /etc/hostid's value instead.)
//!
//! Reading the places is separate from judging them, so the judgement is unit-tested.

use crate::config::ZFSBOOTMENU_HOSTID;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// The hostid as each place has it; `None` where the place could not be read (named in the
/// report, never taken for a disagreement).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostidReadings {
    /// /etc/hostid (what `update-initramfs` copies and `zpool` commands use).
    pub etc: Option<u32>,
    /// /etc/hostid inside the running kernel's initramfs (what imported the pool at boot).
    pub initramfs: Option<u32>,
    /// `spl.spl_hostid=` on /proc/cmdline (what ZFSBootMenu passed on).
    pub boot_menu: Option<u32>,
    /// The SPL module's `spl_hostid` parameter (0: the SPL reads /etc/hostid instead).
    pub spl: Option<u32>,
    /// The hostid in the root pool's label (who imported it last).
    pub pool_label: Option<u32>,
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
}

impl Diagnosis {
    pub fn healthy(&self) -> bool {
        self.problems.is_empty()
    }

    /// The report a person reads: the problems and the fix first, then what was read.
    pub fn report(&self) -> String {
        let mut out = String::new();
        if self.healthy() {
            out.push_str("kldload doctor: the hostid agrees in every place\n");
        } else {
            for p in &self.problems {
                let _ = writeln!(out, "kldload doctor: PROBLEM: {p}");
            }
            let _ = writeln!(out, "kldload doctor: fix: {}", self.fix.join(" && "));
        }
        for r in &self.readings {
            let _ = writeln!(out, "  {r}");
        }
        out
    }
}

fn show(value: Option<u32>) -> String {
    value.map_or_else(|| "(not readable)".into(), |v| format!("0x{v:08x}"))
}

/// Judges the readings. The value everything must agree on is the one the machine runs with:
/// the SPL's (ZFSBootMenu's `spl.spl_hostid`, else 0x00bab10c as kldload installs it).
pub fn diagnose(r: &HostidReadings, pool: &str) -> Diagnosis {
    let running = match r.spl {
        Some(v) if v != 0 => Some(v),
        _ => r.boot_menu.or(Some(ZFSBOOTMENU_HOSTID)),
    };
    let want = running.unwrap_or(ZFSBOOTMENU_HOSTID);
    let places = [
        ("/etc/hostid", r.etc),
        ("the initramfs's /etc/hostid", r.initramfs),
        ("ZFSBootMenu's spl.spl_hostid", r.boot_menu),
        ("the SPL's spl_hostid", r.spl.filter(|v| *v != 0)),
        (&*format!("pool {pool}'s label"), r.pool_label),
    ];
    let readings = places
        .iter()
        .map(|(name, v)| format!("{name}: {}", show(*v)))
        .collect();
    let mut problems = Vec::new();
    for (name, value) in &places {
        if let Some(v) = value
            && *v != want
        {
            problems.push(format!(
                "{name} is 0x{v:08x}, but this system runs with hostid 0x{want:08x} (the value \
                 ZFSBootMenu imports the pool with and passes on as spl.spl_hostid)"
            ));
        }
    }
    let mut fix = Vec::new();
    if r.etc.is_some_and(|v| v != want) || r.initramfs.is_some_and(|v| v != want) {
        fix.push(format!("zgenhostid -f 0x{want:08x}"));
        fix.push("update-initramfs -u -k all".into());
    }
    if r.pool_label.is_some_and(|v| v != want) {
        // Importing under the right hostid rewrites the label; for the root pool that is the
        // next boot, so a reboot after the fix above is enough.
        fix.push("reboot".into());
    }
    if fix.is_empty() && !problems.is_empty() {
        fix.push(format!(
            "give ZFSBootMenu spl_hostid=0x{want:08x} (or drop a different one) in its firmware \
             entry's load options"
        ));
    }
    Diagnosis {
        readings,
        problems,
        fix,
    }
}

/// A hostid as /etc/hostid stores it: four bytes, little-endian.
pub fn parse_hostid_file(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?))
}

/// A hostid written as text: `0x00bab10c`, `00bab10c` or decimal (the SPL's parameter).
pub fn parse_hostid_text(text: &str) -> Option<u32> {
    let t = text.trim();
    match t.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None if t.chars().all(|c| c.is_ascii_digit()) => t.parse().ok(),
        None => u32::from_str_radix(t, 16).ok(),
    }
}

/// Reads the five places on this machine. `pool` is the root pool.
pub fn read_hostids(pool: &str) -> HostidReadings {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    HostidReadings {
        etc: std::fs::read("/etc/hostid")
            .ok()
            .and_then(|b| parse_hostid_file(&b)),
        initramfs: initramfs_hostid(),
        boot_menu: cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix("spl.spl_hostid="))
            .and_then(parse_hostid_text),
        spl: std::fs::read_to_string("/sys/module/spl/parameters/spl_hostid")
            .ok()
            .and_then(|t| parse_hostid_text(&t)),
        pool_label: pool_label_hostid(pool),
    }
}

fn output(argv: &[&str]) -> Option<String> {
    let out = Command::new(argv[0]).args(&argv[1..]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// /etc/hostid in the running kernel's initramfs, unpacked with the distribution's own tool.
fn initramfs_hostid() -> Option<u32> {
    let release = output(&["uname", "-r"])?;
    let image = format!("/boot/initrd.img-{}", release.trim());
    if !Path::new(&image).is_file() {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("kldload-doctor-{}", std::process::id()));
    let dir_s = dir.to_string_lossy().into_owned();
    let unpacked = output(&["unmkinitramfs", &image, &dir_s]).is_some();
    let found = unpacked
        .then(|| find_file(&dir, "etc/hostid"))
        .flatten()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| parse_hostid_file(&b));
    let _ = std::fs::remove_dir_all(&dir);
    found
}

/// `relative` under `dir` or under one of its subdirectories (unmkinitramfs puts the main
/// archive in main/ when there is an early one).
fn find_file(dir: &Path, relative: &str) -> Option<std::path::PathBuf> {
    let direct = dir.join(relative);
    if direct.is_file() {
        return Some(direct);
    }
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join(relative)))
        .find(|p| p.is_file())
}

/// The hostid in the label of the pool's first disk (`zdb -l`).
fn pool_label_hostid(pool: &str) -> Option<u32> {
    let devices = output(&["zpool", "list", "-vHPL", pool])?;
    let device = devices
        .split_whitespace()
        .find(|w| w.starts_with("/dev/"))?
        .to_string();
    let label = output(&["zdb", "-l", &device])?;
    label.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("hostid:")?;
        parse_hostid_text(rest.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: u32 = ZFSBOOTMENU_HOSTID;

    fn all(v: u32) -> HostidReadings {
        HostidReadings {
            etc: Some(v),
            initramfs: Some(v),
            boot_menu: Some(v),
            spl: Some(v),
            pool_label: Some(v),
        }
    }

    #[test]
    fn one_value_everywhere_is_healthy() {
        let d = diagnose(&all(OK), "rpool");
        assert!(d.healthy(), "{}", d.report());
        assert!(d.report().contains("agrees in every place"));
        assert_eq!(d.readings.len(), 5);
    }

    #[test]
    fn a_rewritten_etc_hostid_is_named_with_the_fix() {
        let r = HostidReadings {
            etc: Some(0x1234_5678),
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
    fn the_running_value_wins_and_an_unreadable_place_is_no_disagreement() {
        // SPL parameter 0 means "read /etc/hostid"; ZFSBootMenu's value is then the reference.
        let r = HostidReadings {
            spl: Some(0),
            initramfs: None,
            ..all(0x0102_0304)
        };
        let d = diagnose(&r, "tank");
        assert!(d.healthy(), "{}", d.report());
        assert!(
            d.report()
                .contains("the initramfs's /etc/hostid: (not readable)")
        );
        assert!(d.report().contains("pool tank's label: 0x01020304"));
    }

    #[test]
    fn a_stale_pool_label_asks_for_a_reboot() {
        let r = HostidReadings {
            pool_label: Some(7),
            ..all(OK)
        };
        let d = diagnose(&r, "rpool");
        assert_eq!(d.fix, ["reboot"]);
    }

    #[test]
    fn hostids_parse_as_files_and_as_text() {
        assert_eq!(parse_hostid_file(&[0x0c, 0xb1, 0xba, 0x00]), Some(OK));
        assert_eq!(parse_hostid_file(&[1, 2]), None);
        assert_eq!(parse_hostid_text("0x00bab10c\n"), Some(OK));
        assert_eq!(parse_hostid_text("00bab10c"), Some(OK));
        assert_eq!(parse_hostid_text("12235020"), Some(OK));
        assert_eq!(parse_hostid_text("0xnothex"), None);
    }
}
