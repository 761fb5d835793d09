//! The round trip of a user's bug: a machine's `kldload report`, the VM `--from-report` builds
//! from it, and that VM's own report, which must say the same of everything the rebuild
//! claims to reproduce ([`BootFacts`]). `cargo xtask vm-repro --round-trip SCENARIO` runs it
//! for a scenario file: the scenario up to its bug with a report taken there
//! (`Scenario::with_report_at_its_bug`), then the rebuild of that report, which must end in
//! the same symptom.

use anyhow::{Context, Result, ensure};
use kldload::report::{BootKernel, Pool, Report, Vdev};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::Path;

/// What a report says of a machine's boot, as far as `--from-report` reproduces it: two
/// machines with the same facts boot the same way through ZFSBootMenu. What it lists as not
/// reproduced (firmware entries, other pools, hardware) is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFacts {
    /// The root pool (the one with a bootfs).
    pub pool: String,
    /// Its data vdevs: each top-level vdev's kind (`disk`, `mirror`, `raidz1`, ...) and how
    /// many disks it has.
    pub layout: Vec<(String, usize)>,
    /// The logical sector sizes of the disks holding ZFS, in order.
    pub sector_sizes: Vec<u32>,
    /// The pool's bootfs: the boot environment ZFSBootMenu counts down to.
    pub bootfs: Option<String>,
    /// The pool's root dataset's.
    pub compression: Option<String>,
    /// The encryption root of the boot environment ZFSBootMenu boots by default, and its
    /// keylocation (`prompt`, or the file its boot loads the key from) and keyformat.
    pub encryption_root: Option<String>,
    pub keylocation: Option<String>,
    pub keyformat: Option<String>,
    /// The other pools with a bootfs, and it: ZFSBootMenu imports them too, and without
    /// `zbm.prefer` the first by name is its default.
    pub other_bootfs: BTreeMap<String, String>,
    /// The datasets ZFSBootMenu lists as boot environments, each with its `canmount` and
    /// whether its mountpoint is `legacy` (else `/`): `zfs mount -a` mounts one with canmount=on
    /// at every boot, over the one booted.
    pub boot_environments: BTreeMap<String, BootEnvironmentFact>,
    /// Every `org.zfsbootmenu:*` property set locally in the pool: (dataset, property) -> value.
    pub zfsbootmenu_properties: BTreeMap<(String, String), String>,
    /// The pool's `compatibility` property.
    pub compatibility: Option<String>,
    /// Features enabled or active.
    pub features: BTreeSet<String>,
    /// The active features that stop ZFSBootMenu's read-only import
    /// ([`crate::zfs_features::zbm_import_blockers`]):
    /// compared by state, as only an active one stops it.
    pub zbm_import_blockers: BTreeSet<String>,
    /// The default boot environment's /etc/hostid (in a report written before kldload read
    /// it there: the running system's).
    pub etc_hostid: Option<String>,
    /// The root pool's first label: the hostid that last imported it and its state (`0`
    /// active, `1` exported): what decides whether ZFSBootMenu imports it.
    pub label_hostid: Option<String>,
    pub label_state: Option<String>,
    /// The default boot environment's kernel list (file name, and whether its initramfs has
    /// zfs.ko), oldest first, and the kernel ZFSBootMenu boots by default: a rebuild gives its
    /// /boot the report's names, so a pin matches (or fails to match) as it did.
    pub kernels: Vec<(String, Option<bool>)>,
    pub default_kernel: Option<String>,
    /// The default boot environment's: whether the initramfs of the kernel ZFSBootMenu boots
    /// by default has zfs.ko, the hostid in it, and the command line it gets.
    pub default_initramfs_has_zfs: Option<bool>,
    pub default_initramfs_hostid: Option<String>,
    /// Whether that initramfs has the key file the keylocation names.
    pub default_initramfs_has_key_file: Option<bool>,
    pub commandline: Option<String>,
    /// The firmware's entries for files on the pool's disks, in boot order (those for files
    /// elsewhere cannot be made in the VM).
    pub firmware_entries: Vec<FirmwareFact>,
    /// The files on the ESP of each of the pool's disks, in the report's order (none for a
    /// disk without an ESP): what the firmware's entries and its fallback path can start.
    pub esp_files: Vec<Option<BTreeMap<String, EspFileFact>>>,
}

impl BootFacts {
    /// The facts of `report`'s root pool (the one with a bootfs, else the first) and its
    /// default boot environment.
    pub fn of(report: &Report) -> Result<BootFacts> {
        let pool = root_pool(report).context("the report names no pool")?;
        let name = &pool.name;
        let in_pool = |d: &str| d == name || d.starts_with(&format!("{name}/"));
        let layout = data_vdevs(pool).map(vdev_kind).collect();
        let sector_sizes = zfs_disk_sectors(report, pool);
        let dataset = |n: &str| report.datasets.iter().find(|d| d.name == n);
        let default_be = (pool.bootfs.as_ref())
            .and_then(|b| report.boot_environments.iter().find(|e| &e.dataset == b));
        let default_kernel = pool
            .bootfs
            .as_deref()
            .and_then(|b| default_kernel(report, b));
        let encryption_root = (pool.bootfs.as_deref())
            .and_then(dataset)
            .and_then(|d| d.encryption_root.as_deref())
            .and_then(dataset);
        Ok(BootFacts {
            pool: name.clone(),
            layout,
            sector_sizes,
            bootfs: pool.bootfs.clone(),
            other_bootfs: (report.pools.iter())
                .filter(|p| p.name != *name)
                .filter_map(|p| Some((p.name.clone(), p.bootfs.clone()?)))
                .collect(),
            compression: dataset(name).and_then(|d| d.compression.clone()),
            encryption_root: encryption_root.map(|r| r.name.clone()),
            keylocation: encryption_root.and_then(|r| r.keylocation.clone()),
            keyformat: encryption_root.and_then(|r| r.keyformat.clone()),
            boot_environments: (report.boot_environments.iter())
                .filter(|b| in_pool(&b.dataset))
                .map(|b| {
                    let d = dataset(&b.dataset);
                    let fact = BootEnvironmentFact {
                        canmount: d.and_then(|d| d.canmount.clone()),
                        legacy: d.and_then(|d| d.mountpoint.as_deref()) == Some("legacy"),
                    };
                    (b.dataset.clone(), fact)
                })
                .collect(),
            zfsbootmenu_properties: (report.datasets.iter())
                .filter(|d| in_pool(&d.name))
                .flat_map(|d| {
                    (d.zfsbootmenu.iter())
                        .filter(|(_, v)| v.source == "local")
                        .map(|(p, v)| ((d.name.clone(), p.clone()), v.value.clone()))
                })
                .collect(),
            compatibility: pool.compatibility.clone(),
            features: (pool.features.iter())
                .filter(|(_, state)| *state != "disabled")
                .map(|(f, _)| f.clone())
                .collect(),
            // A report from before kldload read the boot environment's (no `taken_on`
            // either): the running system's, which was the machine's then.
            etc_hostid: match report.taken_on {
                Some(_) => default_be.and_then(|b| b.etc_hostid.clone()),
                None => report.hostid.etc_hostid.clone(),
            },
            zbm_import_blockers: crate::zfs_features::zbm_import_blockers(report, pool),
            label_hostid: pool.labels.first().and_then(|l| l.facts.hostid.clone()),
            label_state: pool.labels.first().and_then(|l| l.facts.state.clone()),
            kernels: default_be.map_or_else(Vec::new, |b| {
                (b.kernels.iter())
                    .map(|k| (k.kernel.clone(), k.initramfs_has_zfs))
                    .collect()
            }),
            default_kernel: default_be.and_then(|b| b.default_kernel.clone()),
            default_initramfs_has_zfs: default_kernel.and_then(|k| k.initramfs_has_zfs),
            default_initramfs_hostid: default_kernel.and_then(|k| k.initramfs_hostid.clone()),
            default_initramfs_has_key_file: default_kernel.and_then(|k| k.initramfs_has_key_file),
            commandline: default_be.map(|b| b.commandline.clone()),
            firmware_entries: (firmware_entries(report, pool).into_iter())
                .filter(|e| e.disk.is_some())
                .collect(),
            esp_files: esp_files(report, pool),
        })
    }

    /// What differs between the facts of an `original` machine and those of its `rebuilt`
    /// VM, each naming the fact and both values; empty when they agree.
    pub fn differences(original: &BootFacts, rebuilt: &BootFacts) -> Vec<Difference> {
        let mut out = Vec::new();
        let mut compare = |what: &str, a: String, b: String| {
            if a != b {
                out.push(Difference {
                    fact: what.to_string(),
                    text: format!("{what}: the report has {a}, the VM {b}"),
                });
            }
        };
        let (o, r) = (original, rebuilt);
        compare("pool", o.pool.clone(), r.pool.clone());
        // Each compared by its Debug form, in the order the differences are listed.
        let debug = |what, a: &dyn Debug, b: &dyn Debug| (what, format!("{a:?}"), format!("{b:?}"));
        let before_properties = [
            debug("layout", &o.layout, &r.layout),
            debug("sector sizes", &o.sector_sizes, &r.sector_sizes),
            debug("bootfs", &o.bootfs, &r.bootfs),
            debug(
                "other pools with a bootfs",
                &o.other_bootfs,
                &r.other_bootfs,
            ),
            debug("compression", &o.compression, &r.compression),
            debug("encryption root", &o.encryption_root, &r.encryption_root),
            debug("keylocation", &o.keylocation, &r.keylocation),
            debug("keyformat", &o.keyformat, &r.keyformat),
            debug(
                "boot environments",
                &o.boot_environments,
                &r.boot_environments,
            ),
        ];
        for (what, a, b) in before_properties {
            compare(what, a, b);
        }
        let props: BTreeSet<&(String, String)> = (o.zfsbootmenu_properties.keys())
            .chain(r.zfsbootmenu_properties.keys())
            .collect();
        for key in props {
            compare(
                &format!("{} on {}", key.1, key.0),
                format!("{:?}", o.zfsbootmenu_properties.get(key)),
                format!("{:?}", r.zfsbootmenu_properties.get(key)),
            );
        }
        let (what, a, b) = debug("compatibility", &o.compatibility, &r.compatibility);
        compare(what, a, b);
        let only = |a: &BTreeSet<String>, b: &BTreeSet<String>| {
            a.difference(b).cloned().collect::<Vec<_>>().join(" ")
        };
        if o.features != r.features {
            compare(
                "features enabled",
                format!("{} that the VM has not", only(&o.features, &r.features)),
                format!("{} that the report has not", only(&r.features, &o.features)),
            );
        }
        let (what, a, b) = debug(
            "active features that stop ZFSBootMenu's read-only import",
            &o.zbm_import_blockers,
            &r.zbm_import_blockers,
        );
        compare(what, a, b);
        let after_features = [
            debug("/etc/hostid", &o.etc_hostid, &r.etc_hostid),
            debug(
                "the hostid in the pool's label",
                &o.label_hostid,
                &r.label_hostid,
            ),
            debug(
                "the pool's state in its label",
                &o.label_state,
                &r.label_state,
            ),
            debug(
                "the default boot environment's kernels",
                &o.kernels,
                &r.kernels,
            ),
            debug(
                "the kernel ZFSBootMenu boots by default",
                &o.default_kernel,
                &r.default_kernel,
            ),
            debug(
                "zfs.ko in the default kernel's initramfs",
                &o.default_initramfs_has_zfs,
                &r.default_initramfs_has_zfs,
            ),
            debug(
                "the hostid in the default kernel's initramfs",
                &o.default_initramfs_hostid,
                &r.default_initramfs_hostid,
            ),
            debug(
                "the key file in the default kernel's initramfs",
                &o.default_initramfs_has_key_file,
                &r.default_initramfs_has_key_file,
            ),
            debug(
                "the default boot environment's command line",
                &o.commandline,
                &r.commandline,
            ),
            debug(
                "the firmware's entries for the pool's disks",
                &o.firmware_entries,
                &r.firmware_entries,
            ),
            debug(
                "the files on the pool's disks' ESPs",
                &o.esp_files,
                &r.esp_files,
            ),
        ];
        for (what, a, b) in after_features {
            compare(what, a, b);
        }
        out
    }
}

/// A boot environment's properties that decide how it mounts, as a round trip compares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEnvironmentFact {
    pub canmount: Option<String>,
    /// mountpoint=legacy (with `org.zfsbootmenu:active=on`); else `/`.
    pub legacy: bool,
}

/// A firmware entry for a file on a disk, as a round trip compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareFact {
    pub description: String,
    /// Which of the pool's disks (in the report's order) holds the file's partition; none
    /// when it is on no disk of the pool.
    pub disk: Option<usize>,
    pub file: String,
    pub options: Option<String>,
}

/// The firmware's entries for a file on a partition (ZFSBootMenu's, shim's, another OS's), in
/// boot order, then those not in it by number: which of them the firmware tries first, and
/// with what, decides what boots. The firmware's own (shell, network, a disk's fallback path)
/// have no file.
pub fn firmware_entries(report: &Report, pool: &Pool) -> Vec<FirmwareFact> {
    let disks = pool_disks(report, pool);
    let disk_of = |guid: &str| {
        disks.iter().position(|d| {
            (d.partitions.iter()).any(|p| {
                p.uuid
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(guid))
            })
        })
    };
    (entries_for_files(report).into_iter())
        .map(|e| FirmwareFact {
            description: e.description.clone(),
            disk: e.partition_guid.as_deref().and_then(disk_of),
            file: e.file.clone().unwrap_or_default(),
            options: e.options.clone(),
        })
        .collect()
}

/// A file on an ESP as a round trip compares it: a ZFSBootMenu (and whether its ZFS reads no
/// more than ZFS 2.1's features, the one difference between the ZFSBootMenus a rebuild has),
/// or another file (compared by its path only: a report has its hash, not its bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EspFileFact {
    ZfsBootMenu { reads_only_zfs_2_1: bool },
    Other,
}

/// The ESP on each of the pool's disks, in the report's order; none for a disk without one.
pub fn pool_esps<'r>(report: &'r Report, pool: &Pool) -> Vec<Option<&'r kldload::report::Esp>> {
    (pool_disks(report, pool).into_iter())
        .map(|d| (report.esps.iter()).find(|e| d.partitions.iter().any(|p| p.name == e.partition)))
        .collect()
}

/// The files of each of the pool's disks' ESPs ([`pool_esps`]) by path in lower case: FAT
/// and the firmware find a file whatever the case of its name.
pub fn esp_files(report: &Report, pool: &Pool) -> Vec<Option<BTreeMap<String, EspFileFact>>> {
    (pool_esps(report, pool).into_iter())
        .map(|esp| {
            esp.map(|e| {
                (e.files.keys())
                    .map(|path| (path.to_lowercase(), esp_file_fact(e, path)))
                    .collect()
            })
        })
        .collect()
}

/// What the file at `path` on `esp` is.
pub fn esp_file_fact(esp: &kldload::report::Esp, path: &str) -> EspFileFact {
    match esp.zfsbootmenu.get(path) {
        Some(image) => EspFileFact::ZfsBootMenu {
            reads_only_zfs_2_1: crate::zfs_features::reads_only_zfs_2_1(
                image.zfs_features.as_ref().map(|f| f.name.as_str()),
            ),
        },
        None => EspFileFact::Other,
    }
}

/// The firmware's entries for a file, in boot order, then those not in it by number.
fn entries_for_files(report: &Report) -> Vec<&kldload::report::FirmwareEntry> {
    let firmware = &report.firmware;
    let place = |n: u16| {
        (firmware.boot_order.iter())
            .position(|&o| o == n)
            .unwrap_or(usize::MAX)
    };
    let mut entries: Vec<&kldload::report::FirmwareEntry> = (firmware.entries.iter())
        .filter(|e| e.file.is_some())
        .collect();
    entries.sort_by_key(|e| (place(e.number), e.number));
    entries
}

/// The pool a report's machine boots from: the one its running boot environment is on; else
/// (a report from a rescue system) the one the firmware's first entry for a file tells
/// ZFSBootMenu to prefer (`zbm.prefer=NAME`); else the first with a bootfs; else the first.
pub fn root_pool(report: &Report) -> Option<&Pool> {
    let named = |name: &str| report.pools.iter().find(|p| p.name == name);
    let running = (report.boot_environments.iter())
        .find(|b| b.running)
        .and_then(|b| b.dataset.split('/').next())
        .and_then(named);
    let preferred = || {
        let options = entries_for_files(report).first()?.options.as_deref()?;
        let name = (options.split_whitespace()).find_map(|w| w.strip_prefix("zbm.prefer="))?;
        named(name.trim_end_matches('!')).filter(|p| p.bootfs.is_some())
    };
    running
        .or_else(preferred)
        .or_else(|| report.pools.iter().find(|p| p.bootfs.is_some()))
        .or(report.pools.first())
}

/// The vdev classes that hold no pool data (`zpool status` lists them after the data vdevs).
pub const VDEV_CLASSES: [&str; 5] = ["logs", "cache", "spares", "dedup", "special"];

/// A pool's top-level data vdevs.
pub fn data_vdevs(pool: &Pool) -> impl Iterator<Item = &Vdev> {
    (pool.topology.iter()).filter(|v| !VDEV_CLASSES.contains(&v.name.as_str()))
}

/// The logical sector sizes of the disks holding `pool`, in the report's order: those with
/// one of its devices (a partition, or the disk itself), else, in a report that does not tie
/// pools to disks (written before kldload read `devices`), every disk with a ZFS partition.
fn zfs_disk_sectors(report: &Report, pool: &Pool) -> Vec<u32> {
    (pool_disks(report, pool).into_iter())
        .map(|d| d.logical_sector_bytes.unwrap_or(512))
        .collect()
}

/// The disks holding `pool`, in the report's order: the VM's disks are made in this order.
fn pool_disks<'r>(report: &'r Report, pool: &Pool) -> Vec<&'r kldload::report::Disk> {
    let holds_pool = |d: &&kldload::report::Disk| {
        if pool.devices.is_empty() {
            return (d.partitions.iter()).any(|p| p.filesystem.as_deref() == Some("zfs_member"));
        }
        pool.devices.contains(&d.name)
            || (d.partitions.iter()).any(|p| pool.devices.contains(&p.name))
    };
    report.disks.iter().filter(holds_pool).collect()
}

/// The kernel ZFSBootMenu boots by default in the boot environment `be`, as the report read it.
pub fn default_kernel<'r>(report: &'r Report, be: &str) -> Option<&'r BootKernel> {
    let be = report.boot_environments.iter().find(|b| b.dataset == be)?;
    let k = be.default_kernel.as_ref()?;
    be.kernels.iter().find(|x| &x.kernel == k)
}

/// The hostid and state `zdb -l` prints for a label (`    hostid: 12235020`, `    state: 0`),
/// parsed by the harness, not by `kldload report`'s reader: to check what the report says.
pub fn zdb_label_hostid_and_state(text: &str) -> (Option<String>, Option<String>) {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            (k == key).then(|| v.trim().trim_matches('\'').to_string())
        })
    };
    let hostid = field("hostid")
        .and_then(|h| h.parse::<u64>().ok())
        .map(|h| format!("0x{h:08x}"));
    (hostid, field("state"))
}

/// The facts that decide the symptom, read again on the machine `m` after the report by
/// other tools than `kldload report`'s readers and parsed by the harness, each compared with
/// what `report`, taken there, says: the root pool's first label (`zdb -l`: the hostid that
/// last imported it and its state), its bootfs (`zpool get`), and whether the initramfs of the
/// kernel ZFSBootMenu boots by default has zfs.ko (`lsinitramfs`, the boot environment mounted
/// read-only when it is not /; not read when it cannot be mounted, e.g. its key not loaded).
/// On a rescue system the pool is imported read-only for the reading, and exported again.
/// What was read, or every difference.
pub fn deciding_facts_read_independently(
    m: &mut crate::machine::Machine,
    report: &Report,
) -> Result<String> {
    let pool = root_pool(report).context("the report names no pool")?;
    let label = pool
        .labels
        .first()
        .context("the report has no label of the pool")?;
    // The kernel name: the report's device paths may be redacted (by-id serials).
    let device = (pool.devices.first())
        .map(|d| format!("/dev/{d}"))
        .unwrap_or_else(|| label.device.clone());
    let text = m.succeed(&format!("zdb -l {device}"))?;
    let (hostid, state) = zdb_label_hostid_and_state(&text);
    let mut wrong = Vec::new();
    if hostid != label.facts.hostid || state != label.facts.state {
        wrong.push(format!(
            "zdb -l {device} says hostid {hostid:?}, state {state:?}; the report says hostid \
             {:?}, state {:?}",
            label.facts.hostid, label.facts.state
        ));
    }
    let kernel = (pool.bootfs.as_deref()).and_then(|b| default_kernel(report, b));
    let initramfs = kernel.map(|k| k.initramfs.clone());
    let script = boot_facts_script(
        &pool.name,
        pool.properties.get("guid"),
        initramfs.as_deref(),
    );
    let read = parse_boot_facts(&m.succeed(&script)?);
    if read.bootfs != pool.bootfs {
        wrong.push(format!(
            "zpool get bootfs says {:?}; the report says {:?}",
            read.bootfs, pool.bootfs
        ));
    }
    let report_zfs = kernel.and_then(|k| k.initramfs_has_zfs);
    if let Some(has) = read.initramfs_has_zfs
        && Some(has) != report_zfs
    {
        wrong.push(format!(
            "lsinitramfs of {} says zfs.ko {}; the report says {report_zfs:?}",
            initramfs.as_deref().unwrap_or_default(),
            if has { "in it" } else { "not in it" }
        ));
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(format!(
        "zdb -l {device}, zpool get and lsinitramfs agree: hostid {}, state {}, bootfs {}, \
         zfs.ko {}",
        hostid.unwrap_or_default(),
        state.unwrap_or_default(),
        read.bootfs.as_deref().unwrap_or("-"),
        match read.initramfs_has_zfs {
            Some(true) => "in the default initramfs",
            Some(false) => "not in the default initramfs",
            None => "not read (the boot environment could not be mounted)",
        }
    ))
}

/// The shell script that prints `bootfs NAME` for `pool` and, when the bootfs can be read,
/// `zfs.ko N`: how many zfs.ko files `lsinitramfs` lists in its /boot/`initramfs`. A pool not
/// imported is imported read-only (by `guid`, when known) and exported after; a boot environment that is not / is
/// mounted read-only for the moment.
fn boot_facts_script(pool: &str, guid: Option<&String>, initramfs: Option<&str>) -> String {
    use crate::shell::quoted as quote;
    let mut lines = vec![
        format!("pool={}", quote(pool)),
        // By its guid when the report has it: another disk's pool may have the same name.
        format!("which={}", quote(guid.map_or(pool, |g| g.as_str()))),
        "opened=".into(),
        "if ! zpool list -H -o name \"$pool\" >/dev/null 2>&1; then".into(),
        "  zpool import -N -f -o readonly=on \"$which\" && opened=1".into(),
        "fi".into(),
        "bootfs=$(zpool get -H -o value bootfs \"$pool\")".into(),
        "echo \"bootfs $bootfs\"".into(),
    ];
    if let Some(initramfs) = initramfs {
        lines.extend([
            "root=".into(),
            "if [ \"$(findmnt -n -o SOURCE /)\" = \"$bootfs\" ]; then root=/; else".into(),
            "  dir=$(mktemp -d)".into(),
            "  mount -t zfs -o ro,zfsutil \"$bootfs\" \"$dir\" 2>/dev/null && root=$dir".into(),
            "fi".into(),
            format!(
                "[ -z \"$root\" ] || echo \"zfs.ko $(lsinitramfs \"$root/boot/\"{} | grep -c -E \
                 '(^|/)zfs\\.ko(\\.[a-z]+)?$' || true)\"",
                quote(initramfs)
            ),
            "[ -z \"$root\" ] || [ \"$root\" = / ] || umount \"$root\"".into(),
        ]);
    }
    lines.push("[ -z \"$opened\" ] || zpool export \"$pool\"".into());
    lines.join("\n")
}

/// What [`boot_facts_script`] printed.
#[derive(Debug, PartialEq, Eq)]
struct BootFactsRead {
    bootfs: Option<String>,
    initramfs_has_zfs: Option<bool>,
}

fn parse_boot_facts(text: &str) -> BootFactsRead {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ').map(str::trim))
    };
    BootFactsRead {
        bootfs: field("bootfs")
            .filter(|b| *b != "-" && !b.is_empty())
            .map(String::from),
        initramfs_has_zfs: field("zfs.ko")
            .and_then(|n| n.parse::<u32>().ok())
            .map(|n| n > 0),
    }
}

/// One fact two reports do not agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The fact's name (`layout`, `compression`, `org.zfsbootmenu:kernel on rpool/ROOT`, ...),
    /// as a `report` step's `except` names the facts a rebuild knowingly did not reproduce.
    pub fact: String,
    /// The fact and both values.
    pub text: String,
}

/// A top-level vdev's kind (`disk` for a disk on its own, else the kind in its name:
/// `mirror-0` is a mirror) and how many disks it has.
fn vdev_kind(v: &Vdev) -> (String, usize) {
    if v.children.is_empty() {
        return ("disk".into(), 1);
    }
    let kind = v.name.split('-').next().unwrap_or_default();
    let kind = if kind == "raidz" { "raidz1" } else { kind };
    (kind.to_string(), v.children.len())
}

/// The data vdevs kldload's install makes for `layout` on `disks` disks, as [`BootFacts`]
/// describes a pool's: one vdev of the layout's kind (the word `zpool create` gets), or, for
/// one disk or disks side by side, a `disk` vdev each.
pub fn vdevs_made_by(layout: kldload::config::Layout, disks: usize) -> Vec<(String, usize)> {
    match layout.vdev_word() {
        None => vec![("disk".to_string(), 1); disks],
        Some(kind) => vec![(kind.to_string(), disks)],
    }
}

/// The boot-relevant facts of `report` are those of the report file at `path`, but for those
/// `except` names (what a rebuild knowingly made otherwise); what was compared, or each
/// difference.
pub fn same_facts_as(path: &Path, report: &Report, except: &[String]) -> Result<String> {
    let original: Report = serde_json::from_str(
        &std::fs::read_to_string(path)
            .with_context(|| format!("reading the report to compare with, {}", path.display()))?,
    )
    .with_context(|| format!("{} does not parse", path.display()))?;
    let (excepted, differences): (Vec<_>, Vec<_>) =
        BootFacts::differences(&BootFacts::of(&original)?, &BootFacts::of(report)?)
            .into_iter()
            .partition(|d| except.contains(&d.fact));
    let texts = |ds: &[Difference]| ds.iter().map(|d| d.text.clone()).collect::<Vec<_>>();
    ensure!(
        differences.is_empty(),
        "this machine is not in the state of {}:\n{}",
        path.display(),
        texts(&differences).join("\n")
    );
    let mut said = format!("the boot-relevant facts of {}", path.display());
    if !excepted.is_empty() {
        said.push_str(&format!(
            " (but, as expected: {})",
            texts(&excepted).join("; ")
        ));
    }
    Ok(said)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::recorded::report as recorded;

    #[test]
    fn a_report_has_its_own_facts_and_each_change_is_named() {
        let report = recorded();
        let facts = BootFacts::of(&report).unwrap();
        assert_eq!(facts.pool, "rpool");
        assert_eq!(facts.layout, vec![("disk".to_string(), 1)]);
        assert_eq!(facts.bootfs.as_deref(), Some("rpool/ROOT/default"));
        assert!(facts.features.contains("large_dnode"));
        assert_eq!(facts.default_initramfs_has_zfs, Some(true));
        // The same machine read again (the report through its JSON): nothing differs.
        let again: Report = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
        assert!(BootFacts::differences(&facts, &BootFacts::of(&again).unwrap()).is_empty());

        let mut changed = report.clone();
        changed.pools[0]
            .features
            .insert("large_dnode".into(), "disabled".into());
        let default = changed.pools[0].bootfs.clone().unwrap();
        let be = (changed.boot_environments.iter_mut())
            .find(|b| b.dataset == default)
            .unwrap();
        be.commandline = "quiet".into();
        let k = be.default_kernel.clone().unwrap();
        (be.kernels.iter_mut().find(|x| x.kernel == k).unwrap()).initramfs_has_zfs = Some(false);
        let root = changed
            .datasets
            .iter_mut()
            .find(|d| d.name == "rpool/ROOT")
            .unwrap();
        root.zfsbootmenu.insert(
            "org.zfsbootmenu:kernel".into(),
            kldload::report::SourcedValue::new("6.1", "local"),
        );
        changed.pools[0].labels[0].facts.hostid = Some("0x12345678".into());
        let diffs = BootFacts::differences(&facts, &BootFacts::of(&changed).unwrap());
        let text: Vec<&str> = diffs.iter().map(|d| d.text.as_str()).collect();
        let text = text.join("\n");
        assert_eq!(diffs.len(), 6, "{text}");
        assert!(text.contains(
            "the default boot environment's kernels: the report has \
             [(\"vmlinuz-6.12.117+deb13-amd64\", Some(true))], the VM \
             [(\"vmlinuz-6.12.117+deb13-amd64\", Some(false))]"
        ));
        assert!(text.contains(
            "the hostid in the pool's label: the report has Some(\"0x00bab10c\"), the VM \
             Some(\"0x12345678\")"
        ));
        assert!(text.contains("features enabled: the report has large_dnode that the VM has not"));
        assert!(text.contains("the default boot environment's command line"));
        assert!(
            text.contains("zfs.ko in the default kernel's initramfs: the report has Some(true)")
        );
        assert!(text.contains(
            "org.zfsbootmenu:kernel on rpool/ROOT: the report has None, the VM Some(\"6.1\")"
        ));
    }

    /// The script is valid shell, and what it prints is read back (bootfs `-`: none).
    #[test]
    fn boot_facts_are_read_by_a_script_and_parsed() {
        let guid = "9219027250690550647".to_string();
        let script = boot_facts_script("rpool", Some(&guid), Some("initrd.img-6.12.0+deb-amd64"));
        assert!(script.contains("which='9219027250690550647'"), "{script}");
        let status = std::process::Command::new("sh")
            .args(["-n", "-c", &script])
            .status()
            .unwrap();
        assert!(status.success(), "{script}");
        assert!(script.contains("lsinitramfs \"$root/boot/\"'initrd.img-6.12.0+deb-amd64'"));
        assert_eq!(
            parse_boot_facts("bootfs rpool/ROOT/default\nzfs.ko 2\n"),
            BootFactsRead {
                bootfs: Some("rpool/ROOT/default".into()),
                initramfs_has_zfs: Some(true)
            }
        );
        assert_eq!(
            parse_boot_facts("bootfs -\nzfs.ko 0\n"),
            BootFactsRead {
                bootfs: None,
                initramfs_has_zfs: Some(false)
            }
        );
        assert_eq!(
            parse_boot_facts("bootfs rpool/ROOT/default\n").initramfs_has_zfs,
            None
        );
    }

    /// A kernel the rebuild names otherwise, and so boots by default, differs in both.
    #[test]
    fn kernels_are_compared_by_name() {
        let report = recorded();
        let facts = BootFacts::of(&report).unwrap();
        let mut changed = report.clone();
        let be = &mut changed.boot_environments[0];
        be.kernels[0].kernel = "vmlinuz-6.12.0+deb-amd64".into();
        be.default_kernel = Some("vmlinuz-6.12.0+deb-amd64".into());
        let diffs = BootFacts::differences(&facts, &BootFacts::of(&changed).unwrap());
        let facts: Vec<&str> = diffs.iter().map(|d| d.fact.as_str()).collect();
        assert_eq!(
            facts,
            [
                "the default boot environment's kernels",
                "the kernel ZFSBootMenu boots by default"
            ]
        );
    }

    /// On a rescue system the running system's /etc/hostid is the rescue system's: the
    /// machine's is its boot environment's, and none is taken for it when that was not read.
    #[test]
    fn a_rescue_system_s_hostid_is_not_the_machine_s() {
        use kldload::report::TakenOn;
        let mut report = recorded();
        report.taken_on = Some(TakenOn::Rescue);
        report.hostid.etc_hostid = Some("0xdeadbeef".into());
        assert_eq!(BootFacts::of(&report).unwrap().etc_hostid, None);
        let default = report.pools[0].bootfs.clone().unwrap();
        let be = (report.boot_environments.iter_mut())
            .find(|b| b.dataset == default)
            .unwrap();
        be.etc_hostid = Some("0x00bab10c".into());
        assert_eq!(
            BootFacts::of(&report).unwrap().etc_hostid.as_deref(),
            Some("0x00bab10c")
        );
        // Taken on the machine, a boot environment without /etc/hostid has none, whatever the
        // running one has.
        report.taken_on = Some(TakenOn::Installed);
        report
            .boot_environments
            .iter_mut()
            .for_each(|b| b.etc_hostid = None);
        assert_eq!(BootFacts::of(&report).unwrap().etc_hostid, None);
        // A report from before kldload said where it ran: the running system's.
        report.taken_on = None;
        assert_eq!(
            BootFacts::of(&report).unwrap().etc_hostid.as_deref(),
            Some("0xdeadbeef")
        );
    }

    /// A machine with a second pool on a 4Kn disk: the root pool's sector sizes are its own
    /// disk's, not every ZFS disk's; a report that does not tie pools to disks (no `devices`)
    /// reads every disk with a ZFS partition, as before.
    #[test]
    fn sector_sizes_are_the_root_pools_disks_only() {
        let mut report = recorded();
        let root_disk = report.disks[0].clone();
        let mut data_disk = root_disk.clone();
        data_disk.name = "vdb".into();
        data_disk.logical_sector_bytes = Some(4096);
        for p in &mut data_disk.partitions {
            p.name = p.name.replace("vda", "vdb");
        }
        report.disks.push(data_disk);
        let root_partition = (root_disk.partitions.iter())
            .find(|p| p.filesystem.as_deref() == Some("zfs_member"))
            .unwrap()
            .name
            .clone();
        report.pools[0].devices = vec![root_partition];
        assert_eq!(BootFacts::of(&report).unwrap().sector_sizes, [512]);
        report.pools[0].devices.clear();
        let first = root_disk.logical_sector_bytes.unwrap_or(512);
        assert_eq!(BootFacts::of(&report).unwrap().sector_sizes, [first, 4096]);
    }

    /// A second pool with a bootfs (apool, before rpool by name) is not taken for the root
    /// pool: the running boot environment's pool is, and on a rescue system the pool the
    /// firmware's first entry prefers; it is compared as another pool with a bootfs.
    #[test]
    fn the_root_pool_is_the_running_one_or_the_preferred_one() {
        let mut report = recorded();
        let mut other = report.pools[0].clone();
        other.name = "apool".into();
        other.bootfs = Some("apool/ROOT/other".into());
        other.devices = vec!["vdb".into()];
        report.pools.insert(0, other);
        assert_eq!(root_pool(&report).unwrap().name, "rpool");
        let facts = BootFacts::of(&report).unwrap();
        assert_eq!(facts.bootfs.as_deref(), Some("rpool/ROOT/default"));
        assert_eq!(
            facts.other_bootfs,
            BTreeMap::from([("apool".to_string(), "apool/ROOT/other".to_string())])
        );
        // From a rescue system: nothing runs from the pools; the firmware's zbm.prefer says.
        report.boot_environments[0].running = false;
        assert_eq!(root_pool(&report).unwrap().name, "rpool");
        // Without it, the first with a bootfs, as ZFSBootMenu would.
        report.firmware.entries.clear();
        assert_eq!(root_pool(&report).unwrap().name, "apool");
    }

    #[test]
    fn a_label_as_zdb_prints_it() {
        // zdb -l of kldload's install (ZFS 2.3), the lines around the two read.
        let text = "------------------------------------\nLABEL 0\n\
                    ------------------------------------\n    version: 5000\n    name: 'rpool'\n\
                    \x20   state: 0\n    txg: 49\n    pool_guid: 5472012276771178611\n\
                    \x20   errata: 0\n    hostid: 12235020\n    hostname: 'kldload'\n";
        assert_eq!(
            zdb_label_hostid_and_state(text),
            (Some("0x00bab10c".into()), Some("0".into()))
        );
        assert_eq!(
            zdb_label_hostid_and_state("failed to unpack label 0"),
            (None, None)
        );
    }

    #[test]
    fn a_mirror_and_its_disks_are_the_layout() {
        let mirror = Vdev {
            name: "mirror-0".into(),
            size: None,
            children: vec![
                Vdev {
                    name: "/dev/vda2".into(),
                    size: None,
                    children: vec![],
                },
                Vdev {
                    name: "/dev/vdb2".into(),
                    size: None,
                    children: vec![],
                },
            ],
        };
        assert_eq!(vdev_kind(&mirror), ("mirror".into(), 2));
        let raidz = Vdev {
            name: "raidz-0".into(),
            ..mirror.clone()
        };
        assert_eq!(vdev_kind(&raidz), ("raidz1".into(), 2));
        assert_eq!(vdev_kind(&mirror.children[0]), ("disk".into(), 1));
    }
}
