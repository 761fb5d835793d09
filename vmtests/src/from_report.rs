//! A user's `kldload report` turned into a scenario file (`cargo xtask vm-repro --from-report
//! FILE`): a VM with that machine's boot-relevant state, built the way kldload builds machines
//! and then changed to match, booted through ZFSBootMenu, with the report's facts as checks.
//! What the scenario cannot reproduce (firmware quirks, hardware, what kldload's image does
//! not carry) is listed, in the file's description and on the terminal, never guessed.
//!
//! Reproduced: the root pool's layout (single, stripe, mirror, raidz1, raidz2) on as many disks
//! with the same logical sector sizes (sizes scaled down to the VM's), its name and compression,
//! native encryption of the boot environment; the boot environments' names (the one booted by
//! default renamed into place, the others cloned from it); every local `org.zfsbootmenu:*`
//! property, and kldload's own ones removed where the report has none; /etc/hostid and the
//! initramfs's hostid; the pool created with the report's enabled features that the VM's
//! readers know (`pool.features`: none the user's pool lacks), the others enabled after the
//! install; the default boot environment's kernels by name, each initramfs with or without
//! zfs.ko; each boot environment's canmount and mountpoint; the encryption root's keylocation;
//! other pools with a bootfs; the files of each ESP of the pool's disks and the firmware's
//! entries for them with the boot order; ZFSBootMenu's ZFS when it reads only openzfs-2.1.
//! vmtests/src/report_fields.rs says, field by field, what is made and what is not.
//!
//! The checks: the boot ends in the symptom the report's facts lead to (the firmware starts
//! nothing; ZFSBootMenu cannot import the pool; a command line without a serial console goes
//! silent; the default kernel without zfs.ko, or the key file, stops in its initramfs; a second
//! passphrase prompt; else ZFSBootMenu counts down to the report's bootfs and it logs in); then
//! the VM's own `kldload report`, taken the same way, says what the report says of everything
//! reproduced (`round_trip::BootFacts`).

use crate::round_trip::{VDEV_CLASSES, data_vdevs, default_kernel, root_pool, vdevs_made_by};
use crate::scenario::steps::{
    Boot, Crash, Install, Live, Passphrase, Reboot, Report as ReportStep, Run, Shutdown,
    Start as StartStep, SymptomStep, Unlock, ZbmCountdown,
};
use crate::scenario::{
    DiskOptions, ExtraDisk, Scenario, Start, Step, Symptom, TargetDisk, report_where,
};
use crate::shell::quoted as sh;
use crate::test_zbm::{GivenZfsBootMenu, TestZfsBootMenu};
use crate::zfs_features::{ZFS_2_1, ZFS_2_3, reads_only_zfs_2_1, zfsbootmenu_zfs};
use anyhow::{Context, Result, bail};
use kldload::config::Layout;
use kldload::report::{Dataset, Pool, Report, Vdev};
use std::collections::BTreeSet;
use toml::{Table, Value};

/// kldload's own boot environment, the one its install makes.
const INSTALLED_BE: &str = "ROOT/default";

/// The hostid of kldload's install (fixtures/answers/default.toml), which its ZFSBootMenu
/// imports the pool with.
const INSTALLED_HOSTID: &str = "0x00bab10c";

/// Every disk a generated scenario adds after the target (the target is the VM's 16 GiB).
const EXTRA_DISK_SIZE: &str = "16G";

/// The disk of another pool with a bootfs, which holds a kernel pair or two.
const OTHER_POOL_DISK_SIZE: &str = "2G";

/// A report file `--from-report` cannot rebuild: truncated, hand-edited into something `kldload
/// report` never writes, of another format, or of a machine with no ZFS root. It names the file,
/// the field and the problem; nothing is built (`cargo xtask` exits 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadReport(pub String);

/// Reads the report file `source`'s `text`: JSON, of this kldload's format, every field of the
/// type `kldload report` writes (the first that is not is named by its path), and the rules
/// across fields a generator relies on (a root pool with a bootfs among the datasets, boot
/// environments that are datasets, default kernels among their kernels).
pub fn read_report(text: &str, source: &str) -> std::result::Result<Report, BadReport> {
    let bad = |what: String| BadReport(format!("{source}: {what}"));
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        bad(format!(
            "not JSON ({e}){}",
            if e.is_eof() {
                ": the file ends early, perhaps cut off in the copy; take the report again"
            } else {
                ""
            }
        ))
    })?;
    match value.get("format").and_then(serde_json::Value::as_u64) {
        None => {
            return Err(bad(
                "no `format` number: not a file `kldload report` wrote".into()
            ));
        }
        Some(n) if n != u64::from(kldload::report::FORMAT) => {
            let which = if n > u64::from(kldload::report::FORMAT) {
                "newer than this kldload reads: update this repository"
            } else {
                "older than this kldload reads: take the report again with this kldload"
            };
            return Err(bad(format!(
                "`format` {n}: {which} (it reads format {})",
                kldload::report::FORMAT
            )));
        }
        Some(_) => {}
    }
    let report: Report = serde_path_to_error::deserialize(value).map_err(|e| {
        bad(format!(
            "field `{}`: {} (was the file edited by hand?)",
            e.path(),
            e.inner()
        ))
    })?;
    rules_across_fields(&report).map_err(bad)?;
    Ok(report)
}

/// The rules across a report's fields that `kldload report` keeps and [`generate`] relies on.
fn rules_across_fields(report: &Report) -> std::result::Result<(), String> {
    let root = root_pool(report).filter(|p| p.bootfs.is_some());
    let Some(i) = root.and_then(|r| report.pools.iter().position(|p| std::ptr::eq(p, r))) else {
        let pools: Vec<&str> = report.pools.iter().map(|p| p.name.as_str()).collect();
        return Err(format!(
            "`pools`: no pool has a bootfs ({}): the machine has no ZFS root to rebuild; take \
             the report on a machine that boots from ZFS, with its pool imported or importable",
            if pools.is_empty() {
                "no pool at all".to_string()
            } else {
                format!("pools {}", pools.join(", "))
            }
        ));
    };
    let datasets: std::collections::BTreeSet<&str> =
        report.datasets.iter().map(|d| d.name.as_str()).collect();
    let bootfs = report.pools[i].bootfs.as_deref().unwrap_or_default();
    if !datasets.contains(bootfs) {
        return Err(format!(
            "`pools[{i}].bootfs`: {bootfs} is none of the report's `datasets`"
        ));
    }
    for (j, be) in report.boot_environments.iter().enumerate() {
        if !datasets.contains(be.dataset.as_str()) {
            return Err(format!(
                "`boot_environments[{j}].dataset`: {} is none of the report's `datasets`",
                be.dataset
            ));
        }
        for (k, kernel) in be.kernels.iter().enumerate() {
            for (field, name) in [("kernel", &kernel.kernel), ("initramfs", &kernel.initramfs)] {
                if !is_file_name(name) {
                    return Err(format!(
                        "`boot_environments[{j}].kernels[{k}].{field}`: {name:?} is not the \
                         name of a file in /boot"
                    ));
                }
            }
        }
        if let Some(k) = &be.default_kernel
            && !be.kernels.iter().any(|x| &x.kernel == k)
        {
            return Err(format!(
                "`boot_environments[{j}].default_kernel`: {k} is none of its `kernels`"
            ));
        }
    }
    for (j, esp) in report.esps.iter().enumerate() {
        if let Some(path) = (esp.files.keys()).find(|p| !p.split('/').all(is_file_name)) {
            return Err(format!(
                "`esps[{j}].files`: {path:?} is not a path on the ESP (names joined by `/`)"
            ));
        }
    }
    Ok(())
}

/// The VM's `i`th disk (the target, then the extra disks) by its stable name.
fn disk_by_id(i: usize) -> String {
    let serial = match i {
        0 => crate::run::TARGET_SERIAL.to_string(),
        n => crate::run::extra_disk_serial(n - 1),
    };
    crate::run::disk_by_serial(&serial)
}

/// Whether `name` names a file directly in a directory: not empty, no `/`, not `.` or `..`.
fn is_file_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && name != "." && name != ".."
}

/// A generated scenario, and what it does and does not reproduce.
#[derive(Debug)]
pub struct Generated {
    pub scenario: Scenario,
    pub reproduced: Vec<String>,
    pub not_reproduced: Vec<String>,
    /// How its boot ends: the symptom the report's facts lead to.
    pub symptom: Symptom,
}

/// The root pool's layout as kldload's answer file says it, and how many disks it takes.
fn layout(pool: &Pool, notes: &mut Vec<String>) -> (Layout, usize) {
    let data: Vec<&Vdev> = data_vdevs(pool).collect();
    for class in pool
        .topology
        .iter()
        .filter(|v| VDEV_CLASSES.contains(&v.name.as_str()))
    {
        notes.push(format!(
            "the pool's {} vdevs ({}): not reproduced",
            class.name,
            class.children.len()
        ));
    }
    let Some(first) = data.first() else {
        return (Layout::Single, 1);
    };
    if data.iter().all(|v| v.children.is_empty()) {
        return if data.len() == 1 {
            (Layout::Single, 1)
        } else {
            (Layout::Stripe, data.len())
        };
    }
    if data.len() > 1 {
        notes.push(format!(
            "{} top-level vdevs: reproduced as one {}",
            data.len(),
            first.name
        ));
    }
    let n = first.children.len().max(1);
    let kind = first.name.split('-').next().unwrap_or_default();
    let layout = match kind {
        "mirror" => Layout::Mirror,
        "raidz" | "raidz1" => Layout::Raidz1,
        "raidz2" => Layout::Raidz2,
        "raidz3" => {
            notes.push("raidz3: reproduced as raidz2 (kldload makes up to raidz2)".into());
            return (Layout::Raidz2, n);
        }
        other => {
            notes.push(format!("a {other} vdev: reproduced as a mirror"));
            Layout::Mirror
        }
    };
    (layout, n.max(layout.min_disks()))
}

fn dataset<'r>(report: &'r Report, name: &str) -> Option<&'r Dataset> {
    report.datasets.iter().find(|d| d.name == name)
}

/// The scenario that rebuilds `report`'s machine, called `name` (its report file's stem).
/// `report` is one [`read_report`] accepted: its format and the rules across its fields are
/// checked there, once.
pub fn generate(report: &Report, source: &str) -> Result<Generated> {
    let mut reproduced = Vec::new();
    let mut notes = Vec::new();
    let pool = root_pool(report).with_context(|| format!("{source} names no pool"))?;
    // The facts the VM's own report will knowingly differ in (the last step's `except`).
    let mut except: Vec<String> = Vec::new();
    // Other pools: those with a bootfs are made (ZFSBootMenu imports every pool it finds, and
    // their bootfs can take over the boot), each on a disk of its own; the rest are listed.
    let mut other_bootable = Vec::new();
    for other in report.pools.iter().filter(|p| p.name != pool.name) {
        match &other.bootfs {
            Some(b) if kldload::config::names::PoolName::new(&other.name).is_ok() => {
                other_bootable.push((other, b.clone()));
            }
            Some(_) => {
                notes.push(format!(
                    "pool {}: a name kldload's checks refuse, not made",
                    other.name
                ));
                except.push("other pools with a bootfs".into());
            }
            None => notes.push(format!(
                "pool {}: it has no bootfs, and only pools with one are made",
                other.name
            )),
        }
    }
    let name = &pool.name;
    let bootfs = pool
        .bootfs
        .clone()
        .unwrap_or_else(|| format!("{name}/{INSTALLED_BE}"));

    // What the VM's own report is compared with at the end.
    let original = crate::round_trip::BootFacts::of(report)?;

    // Disks and layout.
    let (layout, disks) = layout(pool, &mut notes);
    let disks = disks.max(1);
    let mut sectors = original.sector_sizes.clone();
    sectors.resize(disks, 512);
    reproduced.push(format!(
        "{} on {disks} disk(s) with {sectors:?}-byte logical sectors",
        layout.name()
    ));
    if original.layout != vdevs_made_by(layout, disks) {
        except.push("layout".into());
    }
    let made: Vec<u32> = (sectors.iter())
        .map(|&n| if n == 4096 { 4096 } else { 512 })
        .collect();
    if original.sector_sizes != made {
        except.push("sector sizes".into());
    }
    // The scenario: blank disks as the report's, the answers and steps below.
    let mut scenario = Scenario {
        summary: format!("the machine of {source}, rebuilt from its report"),
        start: Start::Blank,
        ..Default::default()
    };
    if sectors[0] == 4096 {
        scenario.target = TargetDisk {
            sector_size: Some(4096),
        };
    }
    scenario.extra_disks = (sectors.iter().skip(1))
        .map(|&n| {
            if n == 4096 {
                ExtraDisk::Table(DiskOptions {
                    size: EXTRA_DISK_SIZE.into(),
                    read_only: false,
                    sector_size: Some(4096),
                })
            } else {
                ExtraDisk::Size(EXTRA_DISK_SIZE.into())
            }
        })
        .collect();
    scenario
        .extra_disks
        .extend((other_bootable.iter()).map(|_| ExtraDisk::Size(OTHER_POOL_DISK_SIZE.into())));
    if sectors.iter().any(|n| *n != 512 && *n != 4096) {
        notes.push(format!(
            "sector sizes {sectors:?}: only 512 and 4096 are made here"
        ));
    }
    let mut answers = Table::new();
    let mut answer_disks = Table::new();
    answer_disks.insert("layout".into(), layout.name().into());
    let paths = (0..disks).map(|i| Value::from(disk_by_id(i))).collect();
    answer_disks.insert("paths".into(), Value::Array(paths));
    answers.insert("disks".into(), Value::Table(answer_disks));
    let mut answer_pool = Table::new();
    if kldload::config::names::PoolName::new(name).is_ok() {
        answer_pool.insert("name".into(), name.as_str().into());
        reproduced.push(format!("pool name {name}"));
    } else {
        bail!("pool name {name:?} is not one kldload can make");
    }
    let root_compression = dataset(report, name).and_then(|d| d.compression.clone());
    if let Some(c) = root_compression {
        if kldload::config::names::Compression::new(&c).is_ok() {
            answer_pool.insert("compression".into(), c.as_str().into());
            reproduced.push(format!("compression={c}"));
        } else {
            notes.push(format!("compression={c}: kept kldload's lz4"));
            except.push("compression".into());
        }
    }
    // The pool is created with the report's enabled features that the VM's readers know, and
    // no other (`pool.features`); the rest are enabled after the install.
    let zbm_zfs = zfsbootmenu_zfs(report);
    let older_zfs = reads_only_zfs_2_1(zbm_zfs.as_deref());
    let enabled: Vec<&String> = (pool.features.iter())
        .filter(|(_, state)| *state != "disabled")
        .map(|(f, _)| f)
        .collect();
    let created = if older_zfs { ZFS_2_1 } else { ZFS_2_3 };
    let known = kldload::zbm::image::parse_features(created);
    let (mut at_creation, after): (Vec<&String>, Vec<&String>) =
        enabled.iter().partition(|f| known.contains(f.as_str()));
    // What the install's own settings need (a real pool that uses them has them).
    let compression = answer_pool
        .get("compression")
        .and_then(|c| c.as_str())
        .and_then(|c| kldload::config::names::Compression::new(c).ok())
        .unwrap_or_else(|| kldload::config::names::Compression::new("lz4").expect("valid"));
    let encrypted = dataset(report, &bootfs).and_then(|d| d.encryption_root.clone());
    let needed = [
        compression.feature(),
        encrypted.as_ref().map(|_| "encryption"),
    ];
    let added: Vec<String> = (needed.into_iter().flatten())
        .filter(|f| !enabled.iter().any(|e| e.as_str() == *f))
        .map(String::from)
        .collect();
    at_creation.extend(&added);
    let mut names = Vec::new();
    for f in &at_creation {
        if kldload::config::names::FeatureName::new(f.as_str()).is_err() {
            bail!("pool feature {f:?} is not a feature name kldload can give zpool");
        }
        names.push(Value::from(f.as_str()));
    }
    answer_pool.insert("features".into(), Value::Array(names));
    reproduced.push(format!(
        "the pool created with its {} enabled features {} knows",
        at_creation.len() - added.len(),
        if older_zfs { "ZFS 2.1" } else { "ZFS 2.3" }
    ));
    if !added.is_empty() {
        notes.push(format!(
            "features the report's pool lacks, enabled for the install's compression or \
             encryption: {}",
            added.join(", ")
        ));
    }
    answers.insert("pool".into(), Value::Table(answer_pool));

    if let Some(root) = &encrypted {
        reproduced.push(format!("encrypted, encryption root {root} (a passphrase)"));
        if root != name {
            notes.push(format!(
                "encryption root {root}: reproduced as the pool's root dataset (kldload's)"
            ));
            except.push("encryption root".into());
        }
    }

    // The changes made on the installed system.
    let mut script = vec!["set -e".to_string()];
    let installed = format!("{name}/{INSTALLED_BE}");
    if bootfs != installed {
        let parent = bootfs.rsplit_once('/').map(|(p, _)| p).unwrap_or(name);
        script.push(format!(
            "zfs list {p} >/dev/null 2>&1 || zfs create -p -o canmount=off -o mountpoint=none {p}",
            p = sh(parent)
        ));
        script.push(format!("zfs rename -u {} {}", sh(&installed), sh(&bootfs)));
        script.push(format!("zpool set bootfs={} {}", sh(&bootfs), sh(name)));
        reproduced.push(format!("the default boot environment is {bootfs}"));
    }
    let bes: Vec<&str> = (report.boot_environments.iter())
        .map(|b| b.dataset.as_str())
        .filter(|b| *b != bootfs && b.starts_with(&format!("{name}/")))
        .collect();
    if !bes.is_empty() {
        script.push(format!("zfs snapshot {}@kldload-repro", sh(&bootfs)));
        for be in &bes {
            script.push(format!(
                "zfs clone -p -o canmount=noauto -o mountpoint=/ {}@kldload-repro {}",
                sh(&bootfs),
                sh(be)
            ));
        }
        reproduced.push(format!("boot environments {} (clones)", bes.join(", ")));
    }
    // How each boot environment mounts, as the report's (kldload's and the clones' are
    // canmount=noauto, mountpoint=/); `-u`: nothing is mounted or unmounted now.
    for be in std::iter::once(bootfs.as_str()).chain(bes.iter().copied()) {
        let Some(d) = dataset(report, be) else {
            continue;
        };
        match d.canmount.as_deref() {
            None | Some("noauto") => {}
            Some(c @ ("on" | "off")) => {
                script.push(format!("zfs set -u canmount={c} {}", sh(be)));
                reproduced.push(format!("canmount={c} on {be}"));
            }
            Some(other) => {
                notes.push(format!("canmount={other:?} on {be}: not a value zfs takes"));
                except.push("boot environments".into());
            }
        }
        if d.mountpoint.as_deref() == Some("legacy") {
            script.push(format!("zfs set -u mountpoint=legacy {}", sh(be)));
            reproduced.push(format!("mountpoint=legacy on {be}"));
        }
    }
    // ZFSBootMenu's properties: the report's local ones, kldload's own removed where the
    // report has none.
    let kldload_own = [
        (format!("{name}/ROOT"), "org.zfsbootmenu:commandline"),
        (name.clone(), "org.zfsbootmenu:keysource"),
    ];
    for (ds, prop) in &kldload_own {
        let local = dataset(report, ds)
            .and_then(|d| d.zfsbootmenu.get(*prop))
            .is_some_and(|v| v.source == "local");
        if !local {
            script.push(format!("zfs inherit {prop} {}", sh(ds)));
        }
    }
    for d in report
        .datasets
        .iter()
        .filter(|d| d.name == *name || d.name.starts_with(&format!("{name}/")))
    {
        for (prop, v) in d.zfsbootmenu.iter().filter(|(_, v)| v.source == "local") {
            // The pool's root, kldload's ROOT, the boot environments and every dataset above
            // them (made by `zfs create -p` and `zfs clone -p`).
            let above = |be: &str| be == d.name || be.starts_with(&format!("{}/", d.name));
            let exists = d.name == format!("{name}/ROOT")
                || above(&bootfs)
                || bes.iter().any(|be| above(be));
            if !exists {
                notes.push(format!(
                    "{prop} on {}: that dataset is not reproduced",
                    d.name
                ));
                except.push(format!("{prop} on {}", d.name));
                continue;
            }
            script.push(format!(
                "zfs set {} {}",
                sh(&format!("{prop}={}", v.value)),
                sh(&d.name)
            ));
            reproduced.push(format!("{prop}={:?} on {}", v.value, d.name));
            if prop == "org.zfsbootmenu:kernel" {
                notes.push(
                    "org.zfsbootmenu:kernel names the user's kernels: set as it is, matched \
                     against this VM's"
                        .into(),
                );
            }
        }
    }
    // Hostids.
    let default_kernel = default_kernel(report, &bootfs);
    // The boot environment's own (a report from a rescue system has the rescue system's in
    // `hostid`).
    let etc = original.etc_hostid.clone();
    let etc_unread = etc.is_none()
        && report
            .taken_on
            .is_some_and(kldload::report::TakenOn::elsewhere)
        && (report.boot_environments.iter())
            .find(|b| b.dataset == bootfs)
            .is_none_or(|b| b.unreadable.is_some());
    let initramfs = default_kernel.and_then(|k| k.initramfs_hostid.clone());
    if let Some(ih) = initramfs.as_ref().filter(|h| *h != INSTALLED_HOSTID) {
        script.push(format!(
            "zgenhostid -f {} && update-initramfs -u -k $(uname -r) >/dev/null 2>&1",
            sh(ih)
        ));
        reproduced.push(format!("the initramfs's hostid {ih}"));
    }
    // /etc/hostid as the report's is made last: every initramfs made before (the key file,
    // a kernel without zfs.ko) is made under the initramfs's hostid, as the report's were.
    let mut etc_hostid_last = Vec::new();
    match &etc {
        Some(h) if h != INSTALLED_HOSTID || initramfs.as_ref().is_some_and(|i| i != h) => {
            etc_hostid_last.push(format!("zgenhostid -f {}", sh(h)));
            reproduced.push(format!("/etc/hostid {h}"));
        }
        None if etc_unread => {
            notes.push("/etc/hostid: the boot environment could not be read".into());
            except.push("/etc/hostid".into());
        }
        None => {
            etc_hostid_last.push("rm -f /etc/hostid".into());
            reproduced.push("no /etc/hostid".into());
        }
        _ => {}
    }
    // The compatibility property as the report has it, then the features the install could
    // not create the pool with (ones the VM's ZFSBootMenu cannot read: the bug, perhaps).
    let compatibility = pool.compatibility.clone().unwrap_or_else(|| "off".into());
    script.push(format!(
        "zpool set compatibility={} {}",
        sh(&compatibility),
        sh(name)
    ));
    for f in &after {
        script.push(format!(
            "zpool set {} {} 2>/dev/null || echo {}",
            sh(&format!("feature@{f}=enabled")),
            sh(name),
            sh(&format!("not known to this ZFS: {f}"))
        ));
    }
    reproduced.push(format!(
        "compatibility={compatibility}; {} features enabled after the install",
        after.len()
    ));
    // Other pools with a bootfs: made on their own disks, with the report's kernels in their
    // bootfs (copies of the VM's), exported, as a second disk's pool is found at boot.
    for (j, (other, other_bootfs)) in other_bootable.iter().enumerate() {
        let kernels: Vec<&kldload::report::BootKernel> = (report.boot_environments.iter())
            .find(|b| &b.dataset == other_bootfs)
            .map(|b| b.kernels.iter().collect())
            .unwrap_or_default();
        // Its compatibility, or, for a ZFSBootMenu with ZFS 2.1, ZFS 2.1's features: with
        // 2.3's, head_errlog (active once enabled) would stop that ZFSBootMenu importing it.
        let compatibility = (other.compatibility.clone())
            .filter(|c| c != "off")
            .or_else(|| older_zfs.then(|| "openzfs-2.1-linux".to_string()));
        script.push(other_pool_with_a_bootfs(
            &other.name,
            other_bootfs,
            &disk_by_id(disks + j),
            compatibility.as_deref(),
            &kernels,
        ));
        reproduced.push(format!(
            "pool {} on a disk of its own, exported, its bootfs {other_bootfs} with {} kernel(s)",
            other.name,
            kernels.len().max(1)
        ));
        notes.push(format!(
            "pool {}: its bootfs and kernels only (a single disk, no other dataset)",
            other.name
        ));
    }
    // The encryption root's key: where its boot loads it from, and whether the default
    // initramfs has that file.
    let root_ds = encrypted.as_deref().and_then(|r| dataset(report, r));
    let keylocation = root_ds.and_then(|d| d.keylocation.clone());
    let kldload_key = kldload::recipe::pool::key_file(name);
    let key_file = keylocation
        .as_deref()
        .and_then(|l| l.strip_prefix("file://"));
    let key_lost = key_file.is_some()
        && default_kernel.is_some_and(|k| k.initramfs_has_key_file == Some(false));
    match (keylocation.as_deref(), key_file) {
        (None, _) => {}
        (Some("prompt"), _) => {
            script.push(format!("zfs set keylocation=prompt {}", sh(name)));
            reproduced.push(
                "keylocation=prompt: the boot environment's initramfs asks for the key again"
                    .into(),
            );
        }
        (Some(_), Some(file)) if file.starts_with('/') => {
            if !file.starts_with("/etc/zfs/") && !key_lost {
                // Debian's zfs-initramfs carries /etc/zfs only: a key file elsewhere reaches
                // the initramfs through a hook of its own, as the user's machine must have one.
                let hook = "/etc/initramfs-tools/hooks/kldload-key-file";
                script.push(format!(
                    "printf '%s\\n' '#!/bin/sh' '[ \"$1\" = prereqs ] && exit 0' \
                     '. /usr/share/initramfs-tools/hook-functions' {} > {hook}",
                    sh(&format!("copy_file key {}", sh(file)))
                ));
                script.push(format!("chmod +x {hook}"));
                notes.push(format!(
                    "the key file {file} outside /etc/zfs: put in the initramfs by a hook of \
                     the rebuild's"
                ));
            }
            if file != kldload_key {
                script.push(format!("mkdir -p \"$(dirname {f})\"", f = sh(file)));
                script.push(format!("cp {} {}", sh(&kldload_key), sh(file)));
                script.push(format!(
                    "zfs set {} {}",
                    sh(&format!("keylocation=file://{file}")),
                    sh(name)
                ));
            }
            // The initramfs made again with the file there or, as the report says, without.
            let (away, back) = if key_lost {
                (
                    format!("mv {} /root/kldload-key", sh(file)),
                    format!("mv /root/kldload-key {}", sh(file)),
                )
            } else {
                (":".into(), ":".into())
            };
            if file != kldload_key || key_lost {
                script.push(away);
                script.push("update-initramfs -u -k $(uname -r) >/dev/null 2>&1".into());
                script.push(back);
            }
            reproduced.push(format!(
                "keylocation=file://{file}, {} the default initramfs",
                if key_lost { "not in" } else { "in" }
            ));
        }
        (Some(other), _) => {
            notes.push(format!("keylocation={other}: kldload's key file is kept"));
            except.push("keylocation".into());
        }
    }
    if let Some(f) = root_ds.and_then(|d| d.keyformat.as_deref())
        && f != "passphrase"
    {
        notes.push(format!(
            "keyformat={f}: the rebuild's is a passphrase, which the harness types"
        ));
        except.push("keyformat".into());
    }

    // The default boot environment's kernels, by name, with or without zfs.ko.
    let no_zfs = default_kernel.is_some_and(|k| k.initramfs_has_zfs == Some(false));
    let default_be = (report.boot_environments.iter()).find(|b| b.dataset == bootfs);
    match default_be.map(|b| b.kernels.as_slice()) {
        Some(kernels) if !kernels.is_empty() => {
            script.push(kernels_as_the_report_s(kernels));
            reproduced.push(format!(
                "the kernels of {bootfs} by name, each initramfs with or without zfs.ko as the \
                 report's: {}",
                kernels
                    .iter()
                    .map(|k| format!(
                        "{}{}",
                        k.kernel,
                        if k.initramfs_has_zfs == Some(false) {
                            " (no zfs.ko)"
                        } else {
                            ""
                        }
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let hostids: BTreeSet<Option<&String>> = kernels
                .iter()
                .map(|k| k.initramfs_hostid.as_ref())
                .collect();
            if hostids.len() > 1 {
                notes.push(
                    "each kernel's initramfs hostid: all are made with the default kernel's".into(),
                );
            }
            if kernels.iter().any(|k| k.initramfs_has_zfs.is_none()) {
                notes.push("an initramfs the report could not read: made with zfs.ko".into());
                except.push("the default boot environment's kernels".into());
            }
        }
        _ => {
            // An encrypted boot environment reported without its key, or /boot unreadable:
            // nothing of its initramfs is known.
            notes.push(format!(
                "the kernels of {bootfs}: the report lists none; kldload's own is kept"
            ));
            except.extend(
                [
                    "the default boot environment's kernels",
                    "the kernel ZFSBootMenu boots by default",
                    "zfs.ko in the default kernel's initramfs",
                    "the hostid in the default kernel's initramfs",
                    "the key file in the default kernel's initramfs",
                ]
                .map(String::from),
            );
        }
    }
    script.extend(etc_hostid_last);
    // ZFSBootMenu.
    let images: Vec<&kldload::zbm::image::ZbmImage> = report
        .esps
        .iter()
        .flat_map(|e| e.zfsbootmenu.values())
        .collect();
    if older_zfs {
        scenario.zfsbootmenu = Some(GivenZfsBootMenu::Test(TestZfsBootMenu::Zfs21));
        reproduced.push(format!(
            "ZFSBootMenu whose ZFS reads {} (the nearest built here: openzfs-2.1-linux)",
            zbm_zfs.clone().unwrap_or_default()
        ));
    }
    let versions: Vec<String> = images
        .iter()
        .filter_map(|i| i.release.as_ref()?.version.clone())
        .collect();
    if versions.iter().any(|v| v != "3.1.0") {
        notes.push(format!(
            "ZFSBootMenu {}: the nearest here is 3.1.0",
            versions.join(", ")
        ));
    }
    // The files on the pool's disks' ESPs, as the report's.
    let esps = crate::round_trip::pool_esps(report, pool);
    // What the firmware can start afterwards; none known: kldload's files, kept.
    let mut startable: Option<BTreeSet<(usize, String)>> = None;
    if esps.iter().any(Option::is_some) {
        let made = esp_files_as_the_report_s(&esps, disks, older_zfs);
        startable = Some(made.startable);
        script.push(made.script);
        reproduced.push(format!(
            "the files on the pool's disks' ESPs: {}",
            (esps.iter().take(disks))
                .map(|e| e.map_or("no ESP".to_string(), |e| {
                    e.files.keys().cloned().collect::<Vec<_>>().join(" ")
                }))
                .collect::<Vec<_>>()
                .join("; ")
        ));
        if !made.not_made.is_empty() {
            notes.extend(made.not_made);
            except.push("the files on the pool's disks' ESPs".into());
        }
    } else {
        notes.push("the report found no ESP on the pool's disks: kldload's files are kept".into());
        except.push("the files on the pool's disks' ESPs".into());
    }
    // The firmware's entries for files on the pool's disks, as the report's.
    let all_entries = crate::round_trip::firmware_entries(report, pool);
    let entries: Vec<_> = (all_entries.iter())
        .filter(|e| e.disk.is_some())
        .cloned()
        .collect();
    // An entry on a disk the rebuild does not make (a log or cache device's) is left out.
    let (entries, beyond): (Vec<_>, Vec<_>) =
        (entries.into_iter()).partition(|e| e.disk.is_some_and(|d| d < disks));
    if !beyond.is_empty() {
        notes.push(format!(
            "{} firmware entries for files on the pool's log or cache disks: not made",
            beyond.len()
        ));
        except.push("the firmware's entries for the pool's disks".into());
    }
    if report.firmware.uefi {
        let order = boot_order_items(report, &all_entries, &entries);
        script.push(firmware_entries_as_the_report_s(&entries, &order));
        reproduced.push(format!(
            "the firmware's entries for files on the pool's ESPs, in boot order: {}",
            if entries.is_empty() {
                "none (kldload's removed)".to_string()
            } else {
                (entries.iter())
                    .map(|e| format!("{:?}", e.description))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
        notes.push(
            "the firmware's own entries (its shell, network and disk fallbacks): OVMF's, in the \
             report's order where their descriptions are the report's"
                .into(),
        );
        let elsewhere = all_entries.len() - entries.len() - beyond.len();
        if elsewhere > 0 {
            notes.push(format!(
                "{elsewhere} firmware entries for files on no disk of the pool: not made"
            ));
        }
    } else {
        notes.push("the machine booted without UEFI: kldload's firmware entries are kept".into());
        except.push("the firmware's entries for the pool's disks".into());
    }
    notes.push("the machine's firmware, disks' models and other hardware".into());

    // Steps.
    let check = |text: &str| Some(text.to_string());
    let mut steps: Vec<Step> = vec![
        Install {
            check: check("it installs with the report's layout"),
            ..Default::default()
        }
        .into(),
    ];
    let booted = "kldload's install of it boots";
    if encrypted.is_some() {
        steps.push(StartStep::default().into());
        steps.push(
            Unlock {
                check: check(booted),
                ..Default::default()
            }
            .into(),
        );
    } else {
        steps.push(
            Boot {
                check: check(booted),
                ..Default::default()
            }
            .into(),
        );
    }
    steps.push(
        Run {
            command: script.join("\n") + "\n",
            timeout_secs: Some(1800),
            check: check("the report's state made on it"),
            ..Default::default()
        }
        .into(),
    );
    // The pool's last import, as its label says, when it is not the installed system's own:
    // made from the live medium under that hostid (and exported, when the label says so).
    // A booted rebuild's label has the hostid its ZFSBootMenu imports with, kldload's.
    let label = pool.labels.first().map(|l| &l.facts);
    let imported_by = label
        .and_then(|l| l.hostid.clone())
        .filter(|h| h != INSTALLED_HOSTID);
    let exported = label.is_some_and(|l| l.state.as_deref() == Some("1"));
    if label.is_some_and(|l| l.hostid.is_none()) {
        // A machine without a hostid imports without one; ZFSBootMenu's here has kldload's.
        notes.push("the pool's label has no hostid: the rebuild's has kldload's".into());
        except.push("the hostid in the pool's label".into());
    }
    if imported_by.is_some() || exported {
        let mut import = vec!["set -e".to_string()];
        if let Some(h) = &imported_by {
            import.push(format!("zgenhostid -f {}", sh(h)));
            reproduced.push(format!("the pool last imported by hostid {h}"));
        }
        import.push(format!("zpool import -f -N {}", sh(name)));
        if exported {
            import.push(format!("zpool export {}", sh(name)));
            reproduced.push("the pool exported".into());
        }
        steps.push(Shutdown {}.into());
        steps.push(Live {}.into());
        steps.push(
            Run {
                command: import.join("\n") + "\n",
                check: check("the pool's label made as the report's"),
                ..Default::default()
            }
            .into(),
        );
        steps.push(Crash {}.into());
        steps.push(
            StartStep {
                disks: None,
                boot_from: Some("target".into()),
            }
            .into(),
        );
    } else {
        steps.push(Reboot {}.into());
    }
    let commandline = (report.boot_environments.iter())
        .find(|b| b.dataset == bootfs)
        .map(|b| b.commandline.clone())
        .unwrap_or_default();
    let silent = !commandline
        .split_whitespace()
        .any(|w| w.starts_with("console=ttyS0"));
    // ZFSBootMenu imports read-only, and cannot when a feature its ZFS does not know is active
    // and not read-only compatible.
    // Only those the rebuild makes active count: a feature enabled after the install is
    // active only when it activates on enabling.
    let blockers = crate::zfs_features::zbm_import_blockers(report, pool);
    let (unreadable, not_made_active): (BTreeSet<String>, BTreeSet<String>) = (blockers
        .into_iter())
    .partition(|f| crate::zfs_features::ACTIVE_ONCE_ENABLED.contains(&f.as_str()));
    if !not_made_active.is_empty() {
        notes.push(format!(
            "active features that stop ZFSBootMenu's import, made only enabled here (they \
             activate when used, not when enabled): {}",
            not_made_active.into_iter().collect::<Vec<_>>().join(", ")
        ));
        except.push("active features that stop ZFSBootMenu's read-only import".into());
    }
    let asks_again = keylocation.as_deref() == Some("prompt");
    // The firmware starts an entry's file, else a disk's fallback copy.
    let starts_something = startable.as_ref().is_none_or(|files| {
        use kldload::recipe::boot_menu::{FALLBACK, firmware_path};
        let starts = |e: &crate::round_trip::FirmwareFact| {
            (files.iter()).any(|(disk, path)| {
                e.disk == Some(*disk) && firmware_path(path).eq_ignore_ascii_case(&e.file)
            })
        };
        entries.iter().any(starts) || files.iter().any(|(_, p)| p.eq_ignore_ascii_case(FALLBACK))
    });
    let symptom = if !starts_something {
        reproduced.push(
            "the firmware finds nothing to start: no entry's file and no fallback copy on the \
             pool's ESPs"
                .into(),
        );
        Symptom::NoBootLoader
    } else if !unreadable.is_empty() {
        reproduced.push(format!(
            "ZFSBootMenu cannot import the pool: active features its ZFS does not read ({})",
            unreadable
                .iter()
                .map(|f| f.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Symptom::ImportFails
    } else if silent {
        // What the kernel and initramfs print (a shell, a prompt) goes elsewhere.
        reproduced.push(format!(
            "the command line {commandline:?}: no serial console after ZFSBootMenu"
        ));
        Symptom::Silent
    } else if no_zfs || key_lost {
        // Debian's initramfs without ZFS, or without the key file after ZFSBootMenu
        // unlocked the pool ("Key load error"), stops in its shell.
        Symptom::InitramfsShell
    } else if encrypted.is_some() && asks_again {
        Symptom::PassphraseAgain
    } else {
        Symptom::Login
    };
    // ZFSBootMenu that cannot import the pool (or that the firmware does not start) neither
    // counts down nor asks for its key.
    if !matches!(symptom, Symptom::ImportFails | Symptom::NoBootLoader) {
        steps.push(
            ZbmCountdown {
                be: bootfs.clone(),
                check: Some(format!(
                    "ZFSBootMenu counts down to {bootfs}, the report's bootfs"
                )),
            }
            .into(),
        );
        if encrypted.is_some() {
            // ZFSBootMenu asks for the key once its countdown has run out.
            steps.push(
                Passphrase {
                    prompt: "Enter passphrase for".into(),
                    check: None,
                }
                .into(),
            );
        }
    }
    steps.push(
        SymptomStep {
            is: symptom,
            timeout_secs: None,
            check: Some(format!(
                "it ends as the report's machine did: {}",
                symptom.name()
            )),
        }
        .into(),
    );
    if symptom.boots() {
        steps.push(
            Run {
                command: format!("zpool get -H -o value bootfs,compatibility {}", sh(name)),
                stdout: Some(format!(
                    "^{}\n{}\n$",
                    regex::escape(&bootfs),
                    regex::escape(&compatibility)
                )),
                check: check("the pool's bootfs and compatibility are the report's"),
                ..Default::default()
            }
            .into(),
        );
    }
    // The rebuild's one encryption root is the pool's root dataset (kldload's).
    let roots: Vec<String> = encrypted.iter().map(|_| name.clone()).collect();
    steps.extend(report_where(
        symptom,
        &roots,
        ReportStep {
            same_as: Some(source.to_string()),
            except,
            check: check(if symptom.boots() {
                "this VM's own report has the report's boot-relevant facts"
            } else {
                "this VM's report, from the live medium, has the report's boot-relevant facts"
            }),
        },
    ));
    if encrypted.is_some() {
        scenario.answers_file = Some("encrypted.toml".into());
    }
    scenario.answers = answers;
    scenario.steps = steps;
    scenario.description = description(source, &reproduced, &notes);
    Ok(Generated {
        symptom,
        scenario,
        reproduced,
        not_reproduced: notes,
    })
}

/// The script that makes the firmware's entries as the report's `entries` (those for a file on
/// one of the pool's disks, in boot order): every entry of the VM's for a file on a disk
/// (kldload's) is removed, each of the report's made on the same disk's ESP with its
/// description, file and load options, and the boot order starts with them, the firmware's own
/// entries after. Entries for files elsewhere are left out.
fn firmware_entries_as_the_report_s(
    entries: &[crate::round_trip::FirmwareFact],
    order: &[BootOrderItem],
) -> String {
    let mut lines = vec![
        "for n in $(efibootmgr -v | sed -n 's/^Boot\\([0-9A-F]\\{4\\}\\).*HD(.*/\\1/p'); do \
         efibootmgr -q -b $n -B; done"
            .to_string(),
    ];
    let mut made = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let disk = e.disk.unwrap_or_default();
        let number = format!("{:04X}", 0x1000 + i);
        let mut argv = vec![
            "efibootmgr".to_string(),
            "-q".into(),
            "-c".into(),
            "-b".into(),
            number.clone(),
            "-d".into(),
            disk_by_id(disk),
            "-p".into(),
            kldload::recipe::partition::ESP_PARTITION.to_string(),
            "-L".into(),
            sh(&e.description),
            "-l".into(),
            sh(&e.file),
        ];
        if let Some(options) = &e.options {
            argv.extend(["-u".into(), sh(options)]);
        }
        lines.push(argv.join(" "));
        made.push(number);
    }
    // The boot order as the report's: each made entry where the report has it, each of the
    // firmware's own where the report has one of the same description (the disk's fallback
    // before the firmware's shell, say), then the VM's others in their order.
    lines.push(
        "num() { efibootmgr | sed -n 's/^Boot\\([0-9A-F]\\{4\\}\\)\\*\\{0,1\\} \\([^\t]*\\).*/\\1\t\\2/p' \
         | awk -F '\t' -v d=\"$1\" '$2 == d { print $1; exit }'; }"
            .into(),
    );
    lines.push(
        "add() { [ -z \"$1\" ] || case \",$order,\" in *\",$1,\"*) ;; *) order=\"${order:+$order,}$1\" ;; esac; }"
            .into(),
    );
    lines.push("order=".into());
    for item in order {
        lines.push(match item {
            BootOrderItem::Made(i) => format!("add {}", made[*i]),
            BootOrderItem::Firmware(description) => format!("add \"$(num {})\"", sh(description)),
        });
    }
    lines.push(
        "for n in $(efibootmgr | sed -n 's/^BootOrder: //p' | tr , ' '); do add $n; done".into(),
    );
    lines.push(r#"[ -z "$order" ] || efibootmgr -q -o "$order""#.into());
    lines.join("\n")
}

/// One place of the report's boot order: an entry the rebuild makes (its index among them), or
/// one of the firmware's own, by its description.
#[derive(Debug, Clone, PartialEq)]
enum BootOrderItem {
    Made(usize),
    Firmware(String),
}

/// The report's boot order as [`BootOrderItem`]s: of its entries for files (`facts`, as
/// `round_trip::firmware_entries` read them), those `entries` (the rebuild's) has, and its
/// entries without a file; others are left out.
fn boot_order_items(
    report: &Report,
    facts: &[crate::round_trip::FirmwareFact],
    entries: &[crate::round_trip::FirmwareFact],
) -> Vec<BootOrderItem> {
    let firmware = &report.firmware;
    (firmware.boot_order.iter())
        .filter_map(|n| firmware.entries.iter().find(|e| e.number == *n))
        .filter_map(|e| match &e.file {
            None => Some(BootOrderItem::Firmware(e.description.clone())),
            Some(file) => {
                let fact = facts.iter().find(|f| {
                    &f.file == file && f.description == e.description && f.options == e.options
                })?;
                entries
                    .iter()
                    .position(|m| m == fact)
                    .map(BootOrderItem::Made)
            }
        })
        .collect()
}

/// What [`esp_files_as_the_report_s`] makes: the script, and what it cannot make.
struct EspFiles {
    script: String,
    not_made: Vec<String>,
    /// What the firmware can start on the VM's disks afterwards: (disk, path in lower case).
    startable: BTreeSet<(usize, String)>,
}

/// kldload's files on each ESP, each a ZFSBootMenu.
const KLDLOAD_ESP_FILES: [&str; 3] = [
    kldload::recipe::boot_menu::ZBM_PRIMARY,
    kldload::recipe::boot_menu::ZBM_BACKUP,
    kldload::recipe::boot_menu::FALLBACK,
];

/// The script that gives the ESP on each of the VM's first `disks` disks the files of the
/// report's ESP on the same disk of the pool (`esps`, [`crate::round_trip::pool_esps`]):
/// files the report's lacks are removed (a missing fallback copy, a second ESP never
/// written), and each ZFSBootMenu file of the report's is the VM's ZFSBootMenu at the same
/// path (a ZFSBootMenu elsewhere, as a guide put it). Other files (shim, another OS's
/// loader) cannot be made: a report has their hash, not their bytes. `older_zfs`: the VM's
/// ZFSBootMenu is the one built with ZFS 2.1.
fn esp_files_as_the_report_s(
    esps: &[Option<&kldload::report::Esp>],
    disks: usize,
    older_zfs: bool,
) -> EspFiles {
    use crate::round_trip::{EspFileFact, esp_file_fact};
    const MOUNT: &str = "/mnt/kldload-esp";
    const ZBM_COPY: &str = "/root/kldload-zfsbootmenu.efi";
    let mut not_made = Vec::new();
    let mut startable = BTreeSet::new();
    let kldload_s = |path: &str| {
        KLDLOAD_ESP_FILES
            .iter()
            .any(|k| k.eq_ignore_ascii_case(path))
    };
    let mut lines = vec![
        format!(
            "cp /boot/efi/{} {ZBM_COPY}",
            kldload::recipe::boot_menu::ZBM_PRIMARY
        ),
        format!("mkdir -p {MOUNT}"),
    ];
    for (i, esp) in esps.iter().enumerate().take(disks) {
        let Some(esp) = esp else {
            startable.extend(KLDLOAD_ESP_FILES.map(|f| (i, f.to_lowercase())));
            not_made.push(format!(
                "disk {i} of the pool has no ESP in the report: the rebuild's has kldload's files"
            ));
            continue;
        };
        let partition = format!(
            "{}-part{}",
            disk_by_id(i),
            kldload::recipe::partition::ESP_PARTITION
        );
        lines.push(format!("mount -t vfat {} {MOUNT}", sh(&partition)));
        let keep: Vec<String> = (esp.files.keys()).map(|p| sh(&p.to_lowercase())).collect();
        if keep.is_empty() {
            lines.push(format!("find {MOUNT} -type f -delete"));
        } else {
            lines.push(format!(
                "find {MOUNT} -type f | while IFS= read -r f; do \
                 case \"$(printf '%s' \"${{f#{MOUNT}/}}\" | tr '[:upper:]' '[:lower:]')\" in \
                 {}) ;; *) rm -f \"$f\" ;; esac; done",
                keep.join("|")
            ));
        }
        for path in esp.files.keys() {
            match esp_file_fact(esp, path) {
                EspFileFact::ZfsBootMenu { reads_only_zfs_2_1 } => {
                    startable.insert((i, path.to_lowercase()));
                    let target = format!("{MOUNT}/{path}");
                    lines.push(format!(
                        "mkdir -p \"$(dirname {t})\" && cp {ZBM_COPY} {t}",
                        t = sh(&target)
                    ));
                    if reads_only_zfs_2_1 != older_zfs {
                        not_made.push(format!(
                            "disk {i}'s ESP: {path} is a ZFSBootMenu whose ZFS reads {}, made as \
                             the rebuild's other ZFSBootMenus",
                            if reads_only_zfs_2_1 {
                                "only ZFS 2.1's features"
                            } else {
                                "newer features than ZFS 2.1's"
                            }
                        ));
                    }
                }
                // At one of kldload's paths the VM's ZFSBootMenu is kept in its place (a
                // Secure Boot machine's shim at the fallback path): the firmware starts it.
                EspFileFact::Other if kldload_s(path) => {
                    startable.insert((i, path.to_lowercase()));
                    not_made.push(format!(
                        "disk {i}'s ESP: {path} is not ZFSBootMenu, and a report has its hash, \
                         not its bytes: the VM's ZFSBootMenu stands in its place"
                    ));
                }
                EspFileFact::Other => not_made.push(format!(
                    "disk {i}'s ESP: {path} is not ZFSBootMenu, and a report has its hash, not \
                     its bytes: not made"
                )),
            }
        }
        lines.push(format!("umount {MOUNT}"));
    }
    EspFiles {
        script: lines.join("\n"),
        not_made,
        startable,
    }
}

/// The script that makes pool `name` on `disk` (with `compatibility`, when given) with the
/// boot environment `bootfs` as its
/// bootfs, holding `kernels` by name (copies of the running pair; the running pair's names
/// when the report lists none), then exports it.
fn other_pool_with_a_bootfs(
    name: &str,
    bootfs: &str,
    disk: &str,
    compatibility: Option<&str>,
    kernels: &[&kldload::report::BootKernel],
) -> String {
    let compatibility = compatibility.map_or(String::new(), |c| {
        format!("-o {} ", sh(&format!("compatibility={c}")))
    });
    let mut lines = vec![
        format!(
            "zpool create -f {compatibility}-O mountpoint=none {} {disk}",
            sh(name)
        ),
        format!(
            "zfs create -p -o mountpoint=/ -o canmount=noauto {}",
            sh(bootfs)
        ),
        "dir=$(mktemp -d)".to_string(),
        format!("mount -t zfs -o zfsutil {} $dir", sh(bootfs)),
        "mkdir $dir/boot".into(),
    ];
    if kernels.is_empty() {
        lines.push("cp /boot/vmlinuz-$(uname -r) /boot/initrd.img-$(uname -r) $dir/boot/".into());
    }
    for k in kernels {
        lines.push(format!(
            "cp /boot/vmlinuz-$(uname -r) $dir/boot/{}",
            sh(&k.kernel)
        ));
        lines.push(format!(
            "cp /boot/initrd.img-$(uname -r) $dir/boot/{}",
            sh(&k.initramfs)
        ));
    }
    lines.extend([
        "umount $dir".to_string(),
        format!("zpool set bootfs={} {}", sh(bootfs), sh(name)),
        format!("zpool export {}", sh(name)),
    ]);
    lines.join("\n")
}

/// The script that gives /boot the report's kernels: each a copy of the running kernel under
/// the report's file name, with a copy of the running initramfs (zfs.ko in it) or of one made
/// without zfs.ko (as DKMS leaves a kernel it built nothing for), as the report says; the VM's
/// own pair is removed, so ZFSBootMenu picks among the report's names (its pin too) as it did
/// on the user's machine. Runs after the hostid is made, which the copies carry.
fn kernels_as_the_report_s(kernels: &[kldload::report::BootKernel]) -> String {
    let mut lines = vec![
        "running=$(uname -r)".to_string(),
        "made=/root/kldload-kernels".into(),
        "mkdir -p $made".into(),
        "cp /boot/vmlinuz-$running $made/vmlinuz".into(),
        format!(
            "cp /boot/initrd.img-$running $made/{}",
            Initramfs::WithZfs.file()
        ),
    ];
    let kinds: Vec<Initramfs> = kernels.iter().map(Initramfs::as_the_report_s).collect();
    if kinds.contains(&Initramfs::WithoutZfs) {
        // DKMS built nothing for it: zfs-initramfs's hook is there (the hostid too), zfs.ko
        // is not.
        lines.extend(
            [
                "modules=$(find /lib/modules/$running -name 'zfs.ko*' -o -name 'spl.ko*')",
                "tar -cPf $made/zfs-modules.tar $modules",
                "rm $modules",
                &format!(
                    "mkinitramfs -o $made/{} $running",
                    Initramfs::WithoutZfs.file()
                ),
                "tar -xPf $made/zfs-modules.tar",
            ]
            .map(String::from),
        );
    }
    if kinds.contains(&Initramfs::WithoutZfsHook) {
        // No zfs-initramfs hook at all (removed, or an upgrade that lost it): neither zfs.ko
        // nor the hostid it copies.
        lines.extend(
            [
                "mv /usr/share/initramfs-tools/hooks/zfs $made/zfs-hook",
                &format!(
                    "mkinitramfs -o $made/{} $running",
                    Initramfs::WithoutZfsHook.file()
                ),
                "mv $made/zfs-hook /usr/share/initramfs-tools/hooks/zfs",
            ]
            .map(String::from),
        );
    }
    lines.push("rm -f /boot/vmlinuz-* /boot/initrd.img-*".into());
    for (k, kind) in kernels.iter().zip(&kinds) {
        lines.push(format!("cp $made/vmlinuz /boot/{}", sh(&k.kernel)));
        lines.push(format!(
            "cp $made/{} /boot/{}",
            kind.file(),
            sh(&k.initramfs)
        ));
    }
    lines.push("rm -r $made".into());
    lines.join("\n")
}

/// How the rebuild makes a kernel's initramfs, as the report read the user's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Initramfs {
    /// A copy of the VM's (zfs.ko, the hostid), also for one the report could not read.
    WithZfs,
    /// zfs-initramfs's hook there, zfs.ko not (DKMS built nothing for that kernel).
    WithoutZfs,
    /// No zfs.ko and no hostid: zfs-initramfs's hook was not there.
    WithoutZfsHook,
}

impl Initramfs {
    fn as_the_report_s(k: &kldload::report::BootKernel) -> Initramfs {
        match k.initramfs_has_zfs {
            Some(false) if k.initramfs_hostid.is_none() => Initramfs::WithoutZfsHook,
            Some(false) => Initramfs::WithoutZfs,
            _ => Initramfs::WithZfs,
        }
    }

    /// Its file in the script's directory of made initramfs images.
    fn file(self) -> &'static str {
        match self {
            Initramfs::WithZfs => "with-zfs",
            Initramfs::WithoutZfs => "without-zfs",
            Initramfs::WithoutZfsHook => "without-zfs-hook",
        }
    }
}

/// The generated scenario's description: where it comes from, what it reproduces and what not,
/// then every report field it does not reproduce, with why (`report_fields`).
fn description(source: &str, reproduced: &[String], not_reproduced: &[String]) -> String {
    let (made, not) = crate::report_fields::counts();
    let list = |items: &[String]| {
        items
            .iter()
            .map(|r| format!("- {r}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "Made by `cargo xtask vm-repro --from-report {source}`.\n\nReproduced:\n{}\n\nNot \
         reproduced:\n{}\n\nThe report's fields: {made} reproduced, {not} not, of {}; those \
         not:\n{}\n",
        list(reproduced),
        list(not_reproduced),
        made + not,
        list(&crate::report_fields::not_reproduced())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kldload::report::*;
    use std::collections::BTreeMap;

    fn leaf(name: &str) -> Vdev {
        Vdev {
            name: name.into(),
            size: Some("15.5G".into()),
            children: Vec::new(),
        }
    }

    fn ds(name: &str, mountpoint: &str, zbm: &[(&str, &str, &str)]) -> Dataset {
        Dataset {
            name: name.into(),
            kind: "filesystem".into(),
            mountpoint: Some(mountpoint.into()),
            canmount: Some("noauto".into()),
            mounted: None,
            encryption: None,
            encryption_root: None,
            keylocation: None,
            keyformat: None,
            keystatus: None,
            compression: Some("lz4".into()),
            zfsbootmenu: zbm
                .iter()
                .map(|(p, v, src)| (p.to_string(), SourcedValue::new(v, src)))
                .collect(),
        }
    }

    fn disk(name: &str, sector: u32) -> Disk {
        Disk {
            name: name.into(),
            size_bytes: 1 << 40,
            logical_sector_bytes: Some(sector),
            physical_sector_bytes: Some(sector),
            model: None,
            serial: Some("<serial-1>".into()),
            wwn: None,
            read_only: false,
            partition_table: Some("gpt".into()),
            partitions: vec![
                Partition {
                    name: format!("{name}p1"),
                    start_sector: Some(2048),
                    size_bytes: 512 << 20,
                    type_guid: Some(kldload::report::ESP_TYPE.into()),
                    type_name: None,
                    label: None,
                    uuid: None,
                    filesystem: Some("vfat".into()),
                },
                Partition {
                    name: format!("{name}p2"),
                    start_sector: Some(1050624),
                    size_bytes: 1 << 39,
                    type_guid: None,
                    type_name: None,
                    label: None,
                    uuid: None,
                    filesystem: Some("zfs_member".into()),
                },
            ],
        }
    }

    /// A ZFSBootMenu as `kldload report` reads one, its ZFS reading `zfs` (`openzfs-2.3-linux`).
    fn zbm_image(zfs: &str) -> kldload::zbm::image::ZbmImage {
        kldload::zbm::image::ZbmImage {
            cmdline: None,
            signed: false,
            hostid: None,
            zfs_features: Some(kldload::zbm::image::FeatureSet {
                name: zfs.into(),
                features: Default::default(),
            }),
            release: Some(kldload::zbm::image::ZbmRelease {
                version: Some("3.1.0".into()),
                build_id: None,
            }),
            kernel: None,
            zfs_module: None,
            boot_trial: false,
        }
    }

    /// The ESP `partition` as kldload's install leaves it: ZFSBootMenu, its backup and the
    /// fallback copy.
    fn kldload_esp(partition: &str) -> Esp {
        let files = [
            "EFI/BOOT/BOOTX64.EFI",
            "EFI/ZBM/VMLINUZ-BACKUP.EFI",
            "EFI/ZBM/VMLINUZ.EFI",
        ];
        Esp {
            partition: partition.into(),
            partition_uuid: None,
            mounted_at: Some("/boot/efi".into()),
            files: (files.iter())
                .map(|f| {
                    let file = kldload::report::EspFile {
                        size: 55386112,
                        sha256: "a5f4d5471519".into(),
                    };
                    (f.to_string(), file)
                })
                .collect(),
            zfsbootmenu: (files.iter())
                .map(|f| (f.to_string(), zbm_image("openzfs-2.3-linux")))
                .collect(),
        }
    }

    /// kldload's own install, as `kldload report` describes it.
    fn kldload_install() -> Report {
        let kcl = "quiet console=tty0 console=ttyS0,115200";
        Report {
            format: FORMAT,
            kldload: "0.1.0".into(),
            redacted: true,
            taken_on: Some(TakenOn::Installed),
            system: System {
                distribution: Some("Debian GNU/Linux 13 (trixie)".into()),
                distribution_id: Some("debian".into()),
                distribution_version: Some("13".into()),
                kernel: "6.12.48+deb13-amd64".into(),
                zfs_module: Some("2.3.2-2".into()),
                cmdline: format!("root=zfs:rpool/ROOT/default {kcl}"),
                hostname: "<hostname-1>".into(),
            },
            hostid: Hostids {
                etc_hostid: Some("0x00bab10c".into()),
                spl_hostid: Some("0x00bab10c".into()),
            },
            firmware: Firmware {
                uefi: true,
                secure_boot: Some(false),
                boot_current: Some(5),
                boot_order: vec![5, 4],
                entries: Vec::new(),
            },
            disks: vec![disk("vda", 512)],
            pools: vec![Pool {
                name: "rpool".into(),
                health: Some("ONLINE".into()),
                bootfs: Some("rpool/ROOT/default".into()),
                compatibility: Some("openzfs-2.3-linux".into()),
                properties: BTreeMap::new(),
                features: [("head_errlog", "active"), ("draid", "disabled")]
                    .iter()
                    .map(|(f, s)| (f.to_string(), s.to_string()))
                    .collect(),
                topology: vec![leaf("/dev/disk/by-id/virtio-<serial-1>-part2")],
                labels: Vec::new(),
                status: String::new(),
                devices: vec!["vdap2".into()],
            }],
            datasets: vec![
                ds("rpool", "none", &[]),
                ds(
                    "rpool/ROOT",
                    "none",
                    &[("org.zfsbootmenu:commandline", kcl, "local")],
                ),
                ds(
                    "rpool/ROOT/default",
                    "/",
                    &[(
                        "org.zfsbootmenu:commandline",
                        kcl,
                        "inherited from rpool/ROOT",
                    )],
                ),
            ],
            boot_environments: vec![BootEnvironment {
                dataset: "rpool/ROOT/default".into(),
                running: true,
                distribution: Some("Debian GNU/Linux 13 (trixie)".into()),
                etc_hostid: Some("0x00bab10c".into()),
                boot_files: BTreeMap::new(),
                kernels: vec![BootKernel {
                    kernel: "vmlinuz-6.12.48+deb13-amd64".into(),
                    initramfs: "initrd.img-6.12.48+deb13-amd64".into(),
                    initramfs_has_zfs: Some(true),
                    initramfs_hostid: Some("0x00bab10c".into()),
                    initramfs_has_key_file: None,
                }],
                default_kernel: Some("vmlinuz-6.12.48+deb13-amd64".into()),
                default_kernel_reason: Some("the newest".into()),
                commandline: kcl.into(),
                unreadable: None,
            }],
            esps: vec![kldload_esp("vdap1")],
            notes: Vec::new(),
        }
    }

    /// The generated scenario as its file's text.
    fn text(g: &Generated) -> String {
        g.scenario.to_toml().unwrap()
    }

    /// The generated file, loaded and validated as the scenario runner loads it; it is the
    /// scenario generated.
    fn load(g: &Generated) -> crate::scenario::Scenario {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("generated.toml");
        std::fs::write(&path, text(g)).unwrap();
        let loaded =
            crate::scenario::Scenario::load(&path).unwrap_or_else(|e| panic!("{e:#}\n{}", text(g)));
        assert_eq!(loaded, g.scenario);
        loaded
    }

    fn steps(g: &Generated) -> Vec<&'static str> {
        g.scenario.steps.iter().map(Step::kind).collect()
    }

    /// The facts the generated report step excepts from its comparison (it must have one).
    fn excepted(g: &Generated) -> Vec<String> {
        let report = (g.scenario.steps.iter())
            .find_map(|s| match s {
                Step::Report(r) => Some(r),
                _ => None,
            })
            .expect("a report step");
        assert!(report.same_as.is_some(), "{report:?}");
        report.except.clone()
    }

    /// The `pool.features` a generated scenario's answers create the pool with.
    fn creation_features(scenario: &crate::scenario::Scenario) -> Option<Vec<&str>> {
        (scenario.answers.get("pool"))
            .and_then(|p| p.get("features"))
            .and_then(|f| f.as_array())
            .map(|f| f.iter().map(|x| x.as_str().unwrap()).collect())
    }

    #[test]
    fn what_is_made_otherwise_is_excepted_from_the_last_comparison() {
        let mut r = kldload_install();
        let disks: Vec<Vdev> = (0..5)
            .map(|i| leaf(&format!("/dev/vd{}2", (b'a' + i) as char)))
            .collect();
        r.pools[0].topology = vec![Vdev {
            name: "raidz3-0".into(),
            size: None,
            children: disks,
        }];
        r.disks = (0..5).map(|i| disk(&format!("vd{i}"), 512)).collect();
        r.pools[0].devices = (0..5).map(|i| format!("vd{i}p2")).collect();
        r.esps = (0..5).map(|i| kldload_esp(&format!("vd{i}p1"))).collect();
        r.datasets[2].encryption_root = Some("rpool/ROOT".into());
        let g = generate(&r, "user.json").unwrap();
        assert_eq!(excepted(&g), ["layout", "encryption root"]);
        let same = generate(&kldload_install(), "user.json").unwrap();
        assert!(excepted(&same).is_empty(), "{}", text(&same));
    }

    #[test]
    fn kldload_s_own_install_is_rebuilt_as_it_is() {
        let g = generate(&kldload_install(), "report.json").unwrap();
        let scenario = load(&g);
        assert_eq!(scenario.start, crate::scenario::Start::Blank);
        assert!(scenario.extra_disks.is_empty());
        assert_eq!(
            steps(&g),
            [
                "install",
                "boot",
                "run",
                "reboot",
                "zbm-countdown",
                "symptom",
                "run",
                "report",
                "shutdown"
            ]
        );
        assert!(text(&g).contains("layout = \"single\""), "{}", text(&g));
        // Created with exactly the report's enabled features, not the disabled ones.
        let scenario = load(&g);
        let features = creation_features(&scenario);
        // lz4_compress: the report (made up) lacks it, and the install's lz4 needs it.
        assert_eq!(
            features,
            Some(vec!["head_errlog", "lz4_compress"]),
            "{}",
            text(&g)
        );
        assert!(
            text(&g).contains("enabled for the install's compression or encryption: lz4_compress")
        );
        assert!(!text(&g).contains("draid"));
        assert!(!text(&g).contains("zfs rename"));
        assert!(!text(&g).contains("zfs inherit org.zfsbootmenu:commandline"));
        assert!(text(&g).contains("zfs inherit org.zfsbootmenu:keysource 'rpool'"));
        // No entry for a file: kldload's are removed, none made.
        let script = state_script(&g);
        assert!(script.contains("efibootmgr -q -b $n -B"), "{script}");
        assert!(!script.contains("efibootmgr -q -c"), "{script}");
    }

    /// The boot order the script sets, run by bash against a stand-in for efibootmgr that lists
    /// what OVMF's does after the install (efibootmgr 18's format): the firmware's own entries
    /// where the report has their descriptions, the disk's fallback before the shell.
    #[test]
    fn the_boot_order_is_the_report_s_by_description() {
        let fact = |description: &str, file: &str| crate::round_trip::FirmwareFact {
            description: description.into(),
            disk: Some(0),
            file: file.into(),
            options: None,
        };
        let entries = [
            fact("ZFSBootMenu", r"\EFI\ZBM\VMLINUZ.EFI"),
            fact("ZFSBootMenu (Backup)", r"\EFI\ZBM\VMLINUZ-BACKUP.EFI"),
        ];
        let order = [
            BootOrderItem::Firmware("UiApp".into()),
            BootOrderItem::Firmware("UEFI Misc Device".into()),
            BootOrderItem::Made(0),
            BootOrderItem::Made(1),
            BootOrderItem::Firmware("EFI Internal Shell".into()),
            BootOrderItem::Firmware("UEFI PXEv4 (MAC:<mac>)".into()),
        ];
        let script = firmware_entries_as_the_report_s(&entries, &order);
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        let listing = "BootCurrent: 0004\nBootOrder: 1001,1000,0000,0003,0002,0001\n\
                       Boot0000* UiApp\tFvVol(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1)\n\
                       Boot0001* UEFI Misc Device\tPciRoot(0x0)/Pci(0x3,0x0){auto_created_boot_option}\n\
                       Boot0002* UEFI PXEv4 (MAC:525400123456)\tPciRoot(0x0)/Pci(0x2,0x0)\n\
                       Boot0003* EFI Internal Shell\tFvVol(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1)\n\
                       Boot0004* ZFSBootMenu\tHD(1,GPT,27bb8520-f627-499c-b888-142736585505,0x800,0x100000)/\\EFI\\ZBM\\VMLINUZ.EFI\n\
                       Boot1000* ZFSBootMenu\tHD(1,GPT,27bb8520-f627-499c-b888-142736585505,0x800,0x100000)/\\EFI\\ZBM\\VMLINUZ.EFI\n\
                       Boot1001* ZFSBootMenu (Backup)\tHD(1,GPT,27bb8520-f627-499c-b888-142736585505,0x800,0x100000)/\\EFI\\ZBM\\VMLINUZ-BACKUP.EFI\n";
        let stand_in = format!(
            "efibootmgr() {{ case \"$*\" in *-B*|*-c*|*-o*) echo \"$*\" >> {log};; *) printf '{listing}';; esac; }}\n",
            log = log.display()
        );
        let status = std::process::Command::new("bash")
            .args(["-e", "-c", &format!("{stand_in}{script}")])
            .status()
            .unwrap();
        assert!(status.success(), "{script}");
        let calls = std::fs::read_to_string(&log).unwrap();
        let calls: Vec<&str> = calls.lines().collect();
        // Every entry for a file on a disk removed (the stand-in lists the made ones from the
        // start), none of the firmware's own.
        assert_eq!(
            calls[..3],
            ["-q -b 0004 -B", "-q -b 1000 -B", "-q -b 1001 -B"],
            "{calls:?}"
        );
        assert!(
            calls[3].starts_with("-q -c -b 1000 -d /dev/disk/by-id/virtio-kldload-target"),
            "{calls:?}"
        );
        assert_eq!(
            calls.last().copied(),
            Some("-q -o 0000,0001,1000,1001,0003,0002"),
            "{calls:?}"
        );
    }

    /// The script that makes the report's state on the installed VM.
    fn state_script(g: &Generated) -> String {
        (load(g).steps.iter())
            .find_map(|s| match s {
                Step::Run(r) if r.check.as_deref() == Some("the report's state made on it") => {
                    Some(r.command.clone())
                }
                _ => None,
            })
            .expect("a run step makes the report's state")
    }

    /// Another pool with a bootfs is made on a disk of its own with the report's kernels in its
    /// bootfs, and exported; a pool without one is only listed.
    #[test]
    fn another_pool_with_a_bootfs_is_made_on_a_disk_of_its_own() {
        let mut r = kldload_install();
        let mut apool = r.pools[0].clone();
        apool.name = "apool".into();
        apool.bootfs = Some("apool/ROOT/other".into());
        apool.devices = vec!["vdb".into()];
        apool.compatibility = None;
        let mut data = r.pools[0].clone();
        data.name = "tank".into();
        data.bootfs = None;
        data.devices = vec!["vdc".into()];
        r.pools.insert(0, apool);
        r.pools.push(data);
        let mut other_be = r.boot_environments[0].clone();
        other_be.dataset = "apool/ROOT/other".into();
        other_be.running = false;
        r.boot_environments.push(other_be);
        r.datasets.push(r.datasets[2].clone());
        r.datasets.last_mut().unwrap().name = "apool/ROOT/other".into();
        let g = generate(&r, "user.json").unwrap();
        let scenario = load(&g);
        assert_eq!(scenario.extra_disks, [ExtraDisk::Size("2G".into())]);
        let script = state_script(&g);
        for line in [
            "zpool create -f -O mountpoint=none 'apool' /dev/disk/by-id/virtio-kldload-extra-0",
            "cp /boot/vmlinuz-$(uname -r) $dir/boot/'vmlinuz-6.12.48+deb13-amd64'",
            "zpool set bootfs='apool/ROOT/other' 'apool'",
            "zpool export 'apool'",
        ] {
            assert!(script.lines().any(|l| l == line), "{line}\n{script}");
        }
        // Created with ZFS 2.3's features here (no compatibility); with the report's when it
        // has one.
        assert!(
            script.contains("zpool create -f -O mountpoint=none 'apool'"),
            "{script}"
        );
        let mut compat = r.clone();
        compat.pools[0].compatibility = Some("openzfs-2.1-linux".into());
        let script_21 = state_script(&generate(&compat, "user.json").unwrap());
        assert!(
            script_21.contains(
                "zpool create -f -o 'compatibility=openzfs-2.1-linux' -O mountpoint=none 'apool'"
            ),
            "{script_21}"
        );
        // Made before the root pool's kernels are replaced, from the running pair.
        assert!(script.find("zpool export 'apool'") < script.find("rm -f /boot/vmlinuz-*"));
        assert!(
            (g.not_reproduced.iter()).any(|n| n.starts_with("pool tank: it has no bootfs")),
            "{:?}",
            g.not_reproduced
        );
    }

    #[test]
    fn the_firmware_s_entries_for_the_pool_s_disks_are_made_in_boot_order() {
        let mut r = kldload_install();
        let esp = "27bb8520-f627-499c-b888-142736585505";
        r.disks[0].partitions.insert(
            0,
            Partition {
                name: "vda1".into(),
                start_sector: Some(2048),
                size_bytes: 512 << 20,
                type_guid: None,
                type_name: None,
                label: None,
                uuid: Some(esp.into()),
                filesystem: Some("vfat".into()),
            },
        );
        let entry = |number, description: &str, guid: Option<&str>, file: Option<&str>| {
            kldload::report::FirmwareEntry {
                number,
                description: description.into(),
                partition_guid: guid.map(String::from),
                file: file.map(String::from),
                options: file.map(|_| "zbm.prefer=rpool console=ttyS0,115200".into()),
            }
        };
        // As `kldload report` reads them: GUIDs in capitals here, by number.
        r.firmware.entries = vec![
            entry(0, "UiApp", None, None),
            entry(
                4,
                "ZFSBootMenu (Backup)",
                Some(&esp.to_uppercase()),
                Some(r"\EFI\ZBM\VMLINUZ-BACKUP.EFI"),
            ),
            entry(5, "ZFSBootMenu", Some(esp), Some(r"\EFI\ZBM\VMLINUZ.EFI")),
            entry(
                6,
                "Windows Boot Manager",
                Some("0e0e0e0e-0000-4000-8000-000000000000"),
                Some(r"\EFI\Microsoft\Boot\bootmgfw.efi"),
            ),
        ];
        r.firmware.boot_order = vec![0, 5, 6, 4];
        let g = generate(&r, "user.json").unwrap();
        let script = state_script(&g);
        let made: Vec<&str> = (script.lines())
            .filter(|l| l.starts_with("efibootmgr -q -c"))
            .collect();
        assert_eq!(
            made,
            [
                "efibootmgr -q -c -b 1000 -d /dev/disk/by-id/virtio-kldload-target -p 1 -L \
                 'ZFSBootMenu' -l '\\EFI\\ZBM\\VMLINUZ.EFI' -u 'zbm.prefer=rpool console=ttyS0,115200'",
                "efibootmgr -q -c -b 1001 -d /dev/disk/by-id/virtio-kldload-target -p 1 -L \
                 'ZFSBootMenu (Backup)' -l '\\EFI\\ZBM\\VMLINUZ-BACKUP.EFI' -u \
                 'zbm.prefer=rpool console=ttyS0,115200'",
            ],
            "{script}"
        );
        // The order: UiApp (by description), the made entries where the report has them.
        assert!(
            script.contains("add \"$(num 'UiApp')\"\nadd 1000\nadd 1001\n"),
            "{script}"
        );
        assert!(
            g.not_reproduced
                .contains(&"1 firmware entries for files on no disk of the pool: not made".into()),
            "{:?}",
            g.not_reproduced
        );
        // The comparison sees the same entries in the VM's report (lower-case GUIDs there).
        let facts = crate::round_trip::BootFacts::of(&r).unwrap();
        let names: Vec<&str> = (facts.firmware_entries.iter())
            .map(|e| e.description.as_str())
            .collect();
        assert_eq!(names, ["ZFSBootMenu", "ZFSBootMenu (Backup)"]);
    }

    /// A mirror whose first ESP lost its fallback copy and whose second holds ZFSBootMenu at
    /// a path of its own and another OS's loader: each ESP gets the report's paths, the VM's
    /// other files removed; the loader cannot be made, and is listed.
    #[test]
    fn each_esp_gets_the_report_s_files() {
        let mut r = kldload_install();
        r.disks = vec![disk("vda", 512), disk("vdb", 512)];
        r.pools[0].devices = vec!["vdap2".into(), "vdbp2".into()];
        r.pools[0].topology = vec![Vdev {
            name: "mirror-0".into(),
            size: None,
            children: vec![leaf("/dev/vda2"), leaf("/dev/vdb2")],
        }];
        let mut first = kldload_esp("vdap1");
        first.files.remove("EFI/BOOT/BOOTX64.EFI");
        first.zfsbootmenu.remove("EFI/BOOT/BOOTX64.EFI");
        let mut second = kldload_esp("vdbp1");
        second.files = [
            ("EFI/zbm/zfsbootmenu.EFI", 55386112),
            ("EFI/debian/grubx64.efi", 1),
        ]
        .into_iter()
        .map(|(f, size)| {
            let file = kldload::report::EspFile {
                size,
                sha256: "00".into(),
            };
            (f.to_string(), file)
        })
        .collect();
        second.zfsbootmenu = [(
            "EFI/zbm/zfsbootmenu.EFI".to_string(),
            zbm_image("openzfs-2.3-linux"),
        )]
        .into_iter()
        .collect();
        r.esps = vec![first, second];
        let g = generate(&r, "user.json").unwrap();
        let script = state_script(&g);
        assert!(
            script.contains("mount -t vfat '/dev/disk/by-id/virtio-kldload-target-part1' "),
            "{script}"
        );
        assert!(
            script.contains("mount -t vfat '/dev/disk/by-id/virtio-kldload-extra-0-part1' "),
            "{script}"
        );
        assert!(
            script.contains("'efi/zbm/vmlinuz-backup.efi'|'efi/zbm/vmlinuz.efi')"),
            "{script}"
        );
        assert!(
            script.contains("'efi/debian/grubx64.efi'|'efi/zbm/zfsbootmenu.efi')"),
            "{script}"
        );
        assert!(
            script.contains(
                "cp /root/kldload-zfsbootmenu.efi '/mnt/kldload-esp/EFI/zbm/zfsbootmenu.EFI'"
            ),
            "{script}"
        );
        assert!(!script.contains("/mnt/kldload-esp/EFI/debian"), "{script}");
        assert!(
            (g.not_reproduced.iter())
                .any(|n| n.starts_with("disk 1's ESP: EFI/debian/grubx64.efi is not ZFSBootMenu")),
            "{:?}",
            g.not_reproduced
        );
        assert!(excepted(&g).contains(&"the files on the pool's disks' ESPs".to_string()));
        // The facts compared: by disk, lower case, ZFSBootMenu or not.
        let facts = crate::round_trip::BootFacts::of(&r).unwrap();
        let zbm = crate::round_trip::EspFileFact::ZfsBootMenu {
            reads_only_zfs_2_1: false,
        };
        let files = |f: &[(&str, crate::round_trip::EspFileFact)]| {
            Some(f.iter().map(|(p, k)| (p.to_string(), *k)).collect())
        };
        assert_eq!(
            facts.esp_files,
            vec![
                files(&[
                    ("efi/zbm/vmlinuz-backup.efi", zbm),
                    ("efi/zbm/vmlinuz.efi", zbm)
                ]),
                files(&[
                    (
                        "efi/debian/grubx64.efi",
                        crate::round_trip::EspFileFact::Other
                    ),
                    ("efi/zbm/zfsbootmenu.efi", zbm)
                ]),
            ]
        );
        // kldload's own ESP is made as it is, nothing listed.
        let same = generate(&kldload_install(), "user.json").unwrap();
        assert!(
            !same.not_reproduced.iter().any(|n| n.contains("ESP")),
            "{:?}",
            same.not_reproduced
        );
    }

    /// Each boot environment mounts as the report's: a second one with canmount=on (mounted
    /// over / by `zfs mount -a` at every boot) and one with a legacy mountpoint are made so,
    /// without mounting anything now; kldload's noauto is left.
    #[test]
    fn each_boot_environment_s_canmount_and_mountpoint_are_the_report_s() {
        let mut r = kldload_install();
        let mut on = ds("rpool/ROOT/old", "/", &[]);
        on.canmount = Some("on".into());
        let legacy = ds(
            "rpool/ROOT/legacy",
            "legacy",
            &[("org.zfsbootmenu:active", "on", "local")],
        );
        r.datasets.extend([on, legacy]);
        for name in ["rpool/ROOT/old", "rpool/ROOT/legacy"] {
            let mut be = r.boot_environments[0].clone();
            be.dataset = name.into();
            be.running = false;
            r.boot_environments.push(be);
        }
        let g = generate(&r, "user.json").unwrap();
        let script = state_script(&g);
        assert!(
            script.contains("zfs set -u canmount=on 'rpool/ROOT/old'"),
            "{script}"
        );
        assert!(
            script.contains("zfs set -u mountpoint=legacy 'rpool/ROOT/legacy'"),
            "{script}"
        );
        assert!(
            !script.contains("canmount=noauto 'rpool/ROOT/default'"),
            "{script}"
        );
        let facts = crate::round_trip::BootFacts::of(&r).unwrap();
        assert_eq!(
            facts.boot_environments["rpool/ROOT/old"],
            crate::round_trip::BootEnvironmentFact {
                canmount: Some("on".into()),
                legacy: false
            }
        );
        assert!(facts.boot_environments["rpool/ROOT/legacy"].legacy);
        // A value zfs does not take is listed, and excepted.
        r.datasets
            .iter_mut()
            .find(|d| d.name == "rpool/ROOT/old")
            .unwrap()
            .canmount = Some("sometimes".into());
        let g = generate(&r, "user.json").unwrap();
        assert!(excepted(&g).contains(&"boot environments".to_string()));
    }

    /// The removal the script makes, run by bash on a directory standing in for the ESP: the
    /// report's paths kept whatever their case, the rest gone.
    #[test]
    fn the_files_the_report_s_esp_lacks_are_removed() {
        let mut r = kldload_install();
        r.esps[0].files.remove("EFI/BOOT/BOOTX64.EFI");
        r.esps[0].zfsbootmenu.remove("EFI/BOOT/BOOTX64.EFI");
        let script = state_script(&generate(&r, "user.json").unwrap());
        let removal = (script.lines())
            .find(|l| l.starts_with("find /mnt/kldload-esp -type f |"))
            .expect("a removal")
            .to_string();
        let esp = tempfile::tempdir().unwrap();
        let root = esp.path().to_str().unwrap();
        for f in [
            "EFI/BOOT/BOOTX64.EFI",
            "EFI/ZBM/vmlinuz.efi",
            "EFI/ZBM/VMLINUZ-BACKUP.EFI",
        ] {
            let path = esp.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        let out = std::process::Command::new("bash")
            .args(["-ec", &removal.replace("/mnt/kldload-esp", root)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!esp.path().join("EFI/BOOT/BOOTX64.EFI").exists());
        assert!(esp.path().join("EFI/ZBM/vmlinuz.efi").exists());
        assert!(esp.path().join("EFI/ZBM/VMLINUZ-BACKUP.EFI").exists());
    }

    /// No entry for a file and no fallback copy: the firmware starts nothing, the machine is
    /// reported from the live medium. An entry whose file is there, or the fallback copy, and
    /// it boots.
    #[test]
    fn nothing_to_start_is_predicted_from_the_entries_and_the_esp() {
        let mut r = kldload_install();
        r.esps[0].files.remove("EFI/BOOT/BOOTX64.EFI");
        r.esps[0].zfsbootmenu.remove("EFI/BOOT/BOOTX64.EFI");
        let g = generate(&r, "user.json").unwrap();
        assert_eq!(g.symptom, Symptom::NoBootLoader);
        assert_eq!(
            steps(&g),
            [
                "install", "boot", "run", "reboot", "symptom", "crash", "live", "report"
            ]
        );
        // An entry for ZFSBootMenu's file on the pool's disk: it boots.
        let guid = "27bb8520-f627-499c-b888-142736585505";
        r.disks[0].partitions[0].uuid = Some(guid.into());
        r.firmware.entries = vec![kldload::report::FirmwareEntry {
            number: 5,
            description: "ZFSBootMenu".into(),
            partition_guid: Some(guid.to_uppercase()),
            file: Some(r"\EFI\ZBM\VMLINUZ.EFI".into()),
            options: None,
        }];
        assert_eq!(generate(&r, "user.json").unwrap().symptom, Symptom::Login);
        // An entry for a file the ESP lacks does not.
        r.firmware.entries[0].file = Some(r"\EFI\ZBM\GONE.EFI".into());
        assert_eq!(
            generate(&r, "user.json").unwrap().symptom,
            Symptom::NoBootLoader
        );
        // The fallback copy alone: it boots.
        assert_eq!(
            generate(&kldload_install(), "user.json").unwrap().symptom,
            Symptom::Login
        );
    }

    #[test]
    fn a_mirror_of_4kn_disks_with_its_own_names_and_a_silent_command_line() {
        let mut r = kldload_install();
        r.disks = vec![disk("nvme0n1", 4096), disk("nvme1n1", 4096)];
        r.pools[0].devices = vec!["nvme0n1p2".into(), "nvme1n1p2".into()];
        r.pools[0].name = "tank".into();
        r.pools[0].bootfs = Some("tank/sys/debian".into());
        r.pools[0].topology = vec![Vdev {
            name: "mirror-0".into(),
            size: None,
            children: vec![leaf("/dev/nvme0n1p2"), leaf("/dev/nvme1n1p2")],
        }];
        r.datasets = vec![
            ds("tank", "none", &[]),
            ds(
                "tank/sys",
                "none",
                &[("org.zfsbootmenu:commandline", "ro", "local")],
            ),
            ds(
                "tank/sys/debian",
                "/",
                &[("org.zfsbootmenu:commandline", "", "local")],
            ),
            ds("tank/sys/old", "/", &[]),
        ];
        r.boot_environments[0].dataset = "tank/sys/debian".into();
        r.boot_environments[0].commandline = String::new();
        let mut old = r.boot_environments[0].clone();
        old.dataset = "tank/sys/old".into();
        r.boot_environments.push(old);
        let g = generate(&r, "user.json").unwrap();
        let scenario = load(&g);
        assert_eq!(scenario.extra_disks.len(), 1);
        assert_eq!(scenario.extra_disks[0].options().sector_size, Some(4096));
        assert_eq!(scenario.target.sector_size, Some(4096));
        assert!(text(&g).contains("layout = \"mirror\""));
        assert!(text(&g).contains("name = \"tank\""));
        assert!(text(&g).contains("zfs rename -u 'tank/ROOT/default' 'tank/sys/debian'"));
        assert!(
            text(&g).contains(
                "zfs clone -p -o canmount=noauto -o mountpoint=/ 'tank/sys/debian'@kldload-repro \
                 'tank/sys/old'"
            ),
            "{}",
            text(&g)
        );
        assert!(text(&g).contains("zfs set 'org.zfsbootmenu:commandline=' 'tank/sys/debian'"));
        assert!(text(&g).contains("zfs inherit org.zfsbootmenu:commandline 'tank/ROOT'"));
        // On the parent the rename makes too.
        assert!(text(&g).contains("zfs set 'org.zfsbootmenu:commandline=ro' 'tank/sys'"));
        assert_eq!(
            steps(&g),
            [
                "install",
                "boot",
                "run",
                "reboot",
                "zbm-countdown",
                "symptom",
                "crash",
                "live",
                "report"
            ]
        );
    }

    #[test]
    fn the_default_kernel_without_zfs_stops_in_its_initramfs() {
        let mut r = kldload_install();
        r.boot_environments[0].kernels[0].initramfs_has_zfs = Some(false);
        let g = generate(&r, "user.json").unwrap();
        load(&g);
        let t = text(&g);
        assert!(
            t.contains("mkinitramfs -o $made/without-zfs $running"),
            "{t}"
        );
        assert!(t.contains("cp $made/without-zfs /boot/'initrd.img-6.12.48+deb13-amd64'"));
        assert!(!t.contains("$made/with-zfs /boot/"), "{t}");
        // /etc/hostid other than the initramfs's is made last, after every initramfs is made
        // under the initramfs's.
        let mut mismatch = r.clone();
        mismatch.boot_environments[0].etc_hostid = Some("0x12345678".into());
        let t = state_script(&generate(&mismatch, "user.json").unwrap());
        let last = t
            .rfind("zgenhostid -f '0x12345678'")
            .expect("/etc/hostid made");
        assert!(t.find("mkinitramfs").is_some_and(|m| m < last), "{t}");
        assert!(
            t.find("cp $made/without-zfs").is_some_and(|c| c < last),
            "{t}"
        );
        // Without the hostid too (broken-upgrade: zfs-initramfs's hook gone), made without
        // the hook.
        let mut no_hook = r.clone();
        no_hook.boot_environments[0].kernels[0].initramfs_hostid = None;
        let t = state_script(&generate(&no_hook, "user.json").unwrap());
        assert!(
            t.contains("mkinitramfs -o $made/without-zfs-hook $running"),
            "{t}"
        );
        assert!(!t.contains("mkinitramfs -o $made/without-zfs "), "{t}");
        assert!(t.contains("cp $made/without-zfs-hook /boot/'initrd.img-6.12.48+deb13-amd64'"));
        assert_eq!(
            steps(&g),
            [
                "install",
                "boot",
                "run",
                "reboot",
                "zbm-countdown",
                "symptom",
                "crash",
                "live",
                "report"
            ]
        );
    }

    #[test]
    fn an_encrypted_root_is_unlocked_and_an_old_zfsbootmenu_is_the_zfs_2_1_one() {
        let mut r = kldload_install();
        r.datasets[2].encryption_root = Some("rpool".into());
        r.esps = vec![Esp {
            partition: "vda1".into(),
            partition_uuid: None,
            mounted_at: Some("/boot/efi".into()),
            files: BTreeMap::new(),
            zfsbootmenu: [(
                "EFI/ZBM/VMLINUZ.EFI".to_string(),
                kldload::zbm::image::ZbmImage {
                    cmdline: None,
                    signed: false,
                    hostid: None,
                    zfs_features: Some(kldload::zbm::image::FeatureSet {
                        name: "openzfs-2.1-linux".into(),
                        features: Default::default(),
                    }),
                    release: Some(kldload::zbm::image::ZbmRelease {
                        version: Some("2.3.0".into()),
                        build_id: None,
                    }),
                    kernel: None,
                    zfs_module: Some("usr/lib/modules/6.1.0-9-amd64/extra/zfs.ko".into()),
                    boot_trial: false,
                },
            )]
            .into_iter()
            .collect(),
        }];
        let g = generate(&r, "user.json").unwrap();
        let scenario = load(&g);
        assert_eq!(
            scenario.zfsbootmenu,
            Some(GivenZfsBootMenu::Test(TestZfsBootMenu::Zfs21))
        );
        assert_eq!(scenario.answers_file.as_deref(), Some("encrypted.toml"));
        // head_errlog is active and ZFS 2.1 does not read it: ZFSBootMenu cannot import the
        // pool, so it neither counts down nor asks for the key; the report comes from the
        // live medium.
        assert_eq!(g.symptom, Symptom::ImportFails);
        // The report from the live medium: the pool imported read-only and its key loaded
        // at the console, as a user would, so that the report reads the boot environment.
        assert_eq!(
            steps(&g),
            [
                "install",
                "start",
                "unlock",
                "run",
                "reboot",
                "symptom",
                "crash",
                "live",
                "run",
                "console-type",
                "passphrase",
                "run",
                "report"
            ]
        );
        // Only enabled, it is no obstacle: the countdown, the key, a login.
        let mut enabled = r.clone();
        (enabled.pools[0].features).insert("head_errlog".into(), "enabled".into());
        let g_enabled = generate(&enabled, "user.json").unwrap();
        assert_eq!(g_enabled.symptom, Symptom::Login);
        assert_eq!(
            steps(&g_enabled),
            [
                "install",
                "start",
                "unlock",
                "run",
                "reboot",
                "zbm-countdown",
                "passphrase",
                "symptom",
                "run",
                "report",
                "shutdown"
            ]
        );
        // blake3 active (unknown to ZFS 2.1, not read-only compatible): the rebuild can only
        // enable it, so it is named and excepted, and the rebuild predicts a login.
        let mut blake3 = enabled.clone();
        (blake3.pools[0].features).insert("blake3".into(), "active".into());
        let g_blake3 = generate(&blake3, "user.json").unwrap();
        assert_eq!(g_blake3.symptom, Symptom::Login);
        assert!(
            excepted(&g_blake3)
                .contains(&"active features that stop ZFSBootMenu's read-only import".into()),
            "{:?}",
            excepted(&g_blake3)
        );
        // zilsaxattr active, unknown to ZFS 2.1 but read-only compatible: ZFSBootMenu's
        // read-only import does not mind it.
        let mut ro_compat = enabled.clone();
        (ro_compat.pools[0].features).insert("zilsaxattr".into(), "active".into());
        assert_eq!(
            generate(&ro_compat, "user.json").unwrap().symptom,
            Symptom::Login
        );
        // keylocation=prompt: the boot environment's initramfs asks again (zbm-dev #785).
        let mut prompt = enabled.clone();
        prompt.datasets[0].keylocation = Some("prompt".into());
        let g_prompt = generate(&prompt, "user.json").unwrap();
        assert_eq!(g_prompt.symptom, Symptom::PassphraseAgain);
        assert!(state_script(&g_prompt).contains("zfs set keylocation=prompt 'rpool'"));
        // A key file the default initramfs lacks: Debian's initramfs stops in its shell.
        let mut lost = enabled.clone();
        lost.datasets[0].keylocation = Some("file:///etc/zfs/keys/rpool.key".into());
        lost.boot_environments[0].kernels[0].initramfs_has_key_file = Some(false);
        let g_lost = generate(&lost, "user.json").unwrap();
        assert_eq!(g_lost.symptom, Symptom::InitramfsShell);
        let script = state_script(&g_lost);
        assert!(
            script.contains(
                "mv '/etc/zfs/keys/rpool.key' /root/kldload-key\n\
                 update-initramfs -u -k $(uname -r) >/dev/null 2>&1\n\
                 mv /root/kldload-key '/etc/zfs/keys/rpool.key'"
            ),
            "{script}"
        );
        // A key file outside /etc/zfs reaches the initramfs through a hook the rebuild writes;
        // the line that writes it, run by sh, writes this hook.
        let mut elsewhere = lost.clone();
        elsewhere.datasets[0].keylocation = Some("file:///root/it's.key".into());
        elsewhere.boot_environments[0].kernels[0].initramfs_has_key_file = Some(true);
        let script = state_script(&generate(&elsewhere, "user.json").unwrap());
        let line = (script.lines())
            .find(|l| l.starts_with("printf"))
            .expect("a hook is written");
        let dir = tempfile::tempdir().unwrap();
        let hook = dir.path().join("hook");
        let line = line.replace(
            "/etc/initramfs-tools/hooks/kldload-key-file",
            hook.to_str().unwrap(),
        );
        let status = std::process::Command::new("sh")
            .args(["-c", &line])
            .status()
            .unwrap();
        assert!(status.success(), "{line}");
        assert_eq!(
            std::fs::read_to_string(&hook).unwrap(),
            "#!/bin/sh\n[ \"$1\" = prereqs ] && exit 0\n. /usr/share/initramfs-tools/hook-functions\n\
             copy_file key '/root/it'\\''s.key'\n"
        );
        assert!(
            script.contains("update-initramfs -u -k $(uname -r)"),
            "{script}"
        );
        // With it there, nothing is made again and it boots.
        lost.boot_environments[0].kernels[0].initramfs_has_key_file = Some(true);
        let g_kept = generate(&lost, "user.json").unwrap();
        assert_eq!(g_kept.symptom, Symptom::Login);
        assert!(!state_script(&g_kept).contains("kldload-key"));
        assert!(
            g.not_reproduced
                .iter()
                .any(|n| n.contains("ZFSBootMenu 2.3.0"))
        );
        // ZFS 2.1's ZFSBootMenu: head_errlog (2.2) cannot be a creation feature; it is enabled
        // after the install, which is the bug such a machine has.
        let features = creation_features(&scenario);
        assert_eq!(
            features,
            Some(vec!["lz4_compress", "encryption"]),
            "{}",
            text(&g)
        );
        assert!(
            text(&g).contains("zpool set 'feature@head_errlog=enabled' 'rpool'"),
            "{}",
            text(&g)
        );
    }

    /// A report `kldload report` wrote on kldload's debian install (the VM test's, redacted).
    #[test]
    fn a_recorded_report_of_kldload_s_install() {
        let report = crate::recorded::report();
        let g = generate(&report, "kldload-debian-13.json").unwrap();
        load(&g);
        assert_eq!(
            steps(&g),
            [
                "install",
                "boot",
                "run",
                "reboot",
                "zbm-countdown",
                "symptom",
                "run",
                "report",
                "shutdown"
            ]
        );
        assert!(text(&g).contains("layout = \"single\""));
        assert!(text(&g).contains("zpool set compatibility='openzfs-2.3-linux' 'rpool'"));
        assert!(!text(&g).contains("zgenhostid"), "{}", text(&g));
        assert!(
            g.reproduced
                .iter()
                .any(|r| r.starts_with("single on 1 disk(s) with [512]"))
        );
    }

    /// The pool-imported-elsewhere machine: its label names another host; the rebuild makes
    /// that import from the live medium under that hostid, and boots from the disk after.
    #[test]
    fn a_pool_last_imported_by_another_host_is_imported_so_from_the_live_medium() {
        let mut r = kldload_install();
        let label = |hostid: &str, state: &str| Label {
            device: "/dev/vda2".into(),
            facts: LabelFacts {
                pool: Some("rpool".into()),
                state: Some(state.into()),
                hostid: Some(hostid.into()),
                hostname: None,
                txg: None,
                version: None,
            },
        };
        r.pools[0].labels = vec![label("0x00bab10c", "0")];
        let healthy = generate(&r, "user.json").unwrap();
        assert!(!steps(&healthy).contains(&"live"), "{}", text(&healthy));
        r.pools[0].labels = vec![label("0x12345678", "0")];
        let g = generate(&r, "user.json").unwrap();
        load(&g);
        assert_eq!(
            steps(&g),
            [
                "install",
                "boot",
                "run",
                "shutdown",
                "live",
                "run",
                "crash",
                "start",
                "zbm-countdown",
                "symptom",
                "run",
                "report",
                "shutdown"
            ]
        );
        assert!(
            text(&g).contains("zgenhostid -f '0x12345678'\nzpool import -f -N 'rpool'\n"),
            "{}",
            text(&g)
        );
        r.pools[0].labels = vec![label("0x00bab10c", "1")];
        let g = generate(&r, "user.json").unwrap();
        assert!(text(&g).contains("zpool export 'rpool'"), "{}", text(&g));
        assert!(
            !text(&g).contains("zgenhostid -f '0x00bab10c'"),
            "{}",
            text(&g)
        );
    }

    /// Reports `--from-report` cannot rebuild, each refused naming the field and the problem.
    #[test]
    fn bad_reports_are_refused_by_field() {
        let text = crate::recorded::report_text();
        let good = read_report(&text, "r.json").unwrap();
        let refused = |text: &str| read_report(text, "r.json").unwrap_err().to_string();
        let json = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            f(&mut v);
            v.to_string()
        };
        let e = refused(&text[..text.len() / 2]);
        assert!(
            e.starts_with("r.json: not JSON") && e.contains("ends early"),
            "{e}"
        );
        let e = refused(&json(&|v| v["format"] = 2.into()));
        assert!(
            e.contains("`format` 2: newer than this kldload reads"),
            "{e}"
        );
        let e = refused(&json(&|v| {
            v.as_object_mut().unwrap().remove("format");
        }));
        assert!(e.contains("no `format`"), "{e}");
        let e = refused(&json(&|v| v["pools"][0]["bootfs"] = 7.into()));
        assert!(
            e.contains("field `pools[0].bootfs`: invalid type: integer `7`"),
            "{e}"
        );
        let e = refused(&json(&|v| {
            v["boot_environments"][0]
                .as_object_mut()
                .unwrap()
                .remove("kernels");
        }));
        assert!(
            e.contains("field `boot_environments[0]`: missing field `kernels`"),
            "{e}"
        );
        let e = refused(&json(&|v| v["pools"] = serde_json::json!([])));
        assert!(
            e.contains("`pools`: no pool has a bootfs (no pool at all)"),
            "{e}"
        );
        let e = refused(&json(&|v| {
            v["pools"][0]["bootfs"] = serde_json::Value::Null
        }));
        assert!(e.contains("no pool has a bootfs (pools rpool)"), "{e}");
        let e = refused(&json(&|v| {
            v["pools"][0]["bootfs"] = "rpool/ROOT/gone".into()
        }));
        assert!(
            e.contains("`pools[0].bootfs`: rpool/ROOT/gone is none of the report's `datasets`"),
            "{e}"
        );
        let e = refused(&json(&|v| {
            v["boot_environments"][0]["default_kernel"] = "vmlinuz-9.9".into()
        }));
        assert!(
            e.contains("`boot_environments[0].default_kernel`: vmlinuz-9.9 is none"),
            "{e}"
        );
        let e = refused(&json(&|v| {
            let files = v["esps"][0]["files"].as_object_mut().unwrap();
            let file = files.values().next().unwrap().clone();
            files.insert("EFI/../../etc/passwd".into(), file);
        }));
        assert!(
            e.contains("`esps[0].files`: \"EFI/../../etc/passwd\" is not a path on the ESP"),
            "{e}"
        );
        // The positive control: the same file, untouched, reads as the report it is.
        assert_eq!(good.pools[0].name, "rpool");
    }
}
