//! `kldload report`: one JSON file that describes a machine's boot-relevant state, so a boot
//! bug can be reproduced elsewhere (`cargo xtask vm-repro --from-report`). It runs on any
//! ZFS-on-root Linux, not only kldload's, as root, and only reads: the fields of ZFSBootMenu's
//! bug-report form (its version and build, its kernel, the boot environment's distribution),
//! the disks and their partition tables, the pools (topology, properties, features, labels),
//! the datasets with every `org.zfsbootmenu:*` property, each boot environment's /boot (the
//! kernels ZFSBootMenu pairs with an initramfs, whether each initramfs has zfs.ko and which
//! hostid), the hostid in its places, the firmware's boot entries, the ESPs' files with their
//! sha256, and `zpool status`.
//!
//! It never reads the contents of user data, nor any key: only whether a dataset is encrypted,
//! its key's format and location. Serial numbers, WWNs, host and user names, IP and MAC
//! addresses are redacted (`redact.rs`) unless `--no-redact`. What it cannot read it names in
//! `notes` rather than guessing. Other boot environments and unmounted ESPs are mounted
//! read-only under a temporary directory, as ZFSBootMenu itself does, and unmounted again.

pub mod parse;
pub mod redact;

use crate::efivars;
use crate::zbm::image::ZbmImage;
use crate::zbm::kernels;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The report's format; `vm-repro --from-report` refuses another.
pub const FORMAT: u32 = 1;

/// The GPT type of an EFI system partition.
pub const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format: u32,
    /// The kldload that wrote it.
    pub kldload: String,
    /// Whether serials, names and addresses were taken out.
    pub redacted: bool,
    /// Where it ran: the machine's own system, or a rescue system (a live medium) reading the
    /// machine's disks. None in reports written before kldload said so.
    #[serde(default)]
    pub taken_on: Option<TakenOn>,
    /// The running system: on a rescue system its kernel, command line and hostid are the
    /// rescue system's, never the machine's (those are in `boot_environments`).
    pub system: System,
    pub hostid: Hostids,
    pub firmware: Firmware,
    pub disks: Vec<Disk>,
    pub pools: Vec<Pool>,
    pub datasets: Vec<Dataset>,
    pub boot_environments: Vec<BootEnvironment>,
    pub esps: Vec<Esp>,
    /// What could not be read, and why.
    pub notes: Vec<String>,
}

/// Where a report ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TakenOn {
    /// The machine's own system: `/` is one of its boot environments.
    Installed,
    /// Another system (kldload's live medium, any rescue system) with the machine's disks:
    /// pools it had not imported were imported read-only for the report and exported again.
    Rescue,
    /// ZFSBootMenu's recovery shell (kldload run from a boot environment or the ESP): its
    /// kernel, command line and hostid are ZFSBootMenu's, its pools as ZFSBootMenu imported
    /// them (read-only), and its tools fewer (no lsinitramfs, no efibootmgr: noted as unread).
    #[serde(rename = "zfsbootmenu")]
    ZfsBootMenu,
}

/// Files only ZFSBootMenu's initramfs has (its release file; its library, in 3.x): a report
/// that finds one runs in ZFSBootMenu's recovery shell.
pub const ZFSBOOTMENU_FILES: [&str; 2] = ["/etc/zbm-release", "/usr/lib/zfsbootmenu-core.sh"];

impl TakenOn {
    /// Where a system runs: whose mounts (/proc/self/mounts) are `mounts`, and that has one of
    /// [`ZFSBOOTMENU_FILES`] (`in_zfsbootmenu`) or not.
    pub fn of(mounts: &str, in_zfsbootmenu: bool) -> TakenOn {
        if in_zfsbootmenu {
            return TakenOn::ZfsBootMenu;
        }
        match crate::doctor::running_boot_environment(mounts) {
            Some(_) => TakenOn::Installed,
            None => TakenOn::Rescue,
        }
    }

    /// Whether the report ran on another system than the machine's own (a rescue system, or
    /// ZFSBootMenu): its kernel, command line and hostid are not the machine's.
    pub fn elsewhere(self) -> bool {
        self != TakenOn::Installed
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct System {
    /// os-release's PRETTY_NAME of the running system.
    pub distribution: Option<String>,
    /// os-release's ID and VERSION_ID, e.g. `debian`, `13`.
    pub distribution_id: Option<String>,
    pub distribution_version: Option<String>,
    /// `uname -r`.
    pub kernel: String,
    /// The loaded ZFS module's version (/sys/module/zfs/version).
    pub zfs_module: Option<String>,
    /// /proc/cmdline.
    pub cmdline: String,
    pub hostname: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hostids {
    /// /etc/hostid, `0x%08x`.
    pub etc_hostid: Option<String>,
    /// The SPL's `spl_hostid` parameter (none: 0, it reads /etc/hostid).
    pub spl_hostid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firmware {
    /// Booted through UEFI (/sys/firmware/efi exists).
    pub uefi: bool,
    pub secure_boot: Option<bool>,
    pub boot_current: Option<u16>,
    pub boot_order: Vec<u16>,
    pub entries: Vec<FirmwareEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirmwareEntry {
    pub number: u16,
    pub description: String,
    pub partition_guid: Option<String>,
    pub file: Option<String>,
    pub options: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    /// Kernel name, e.g. `nvme0n1`.
    pub name: String,
    pub size_bytes: u64,
    pub logical_sector_bytes: Option<u32>,
    pub physical_sector_bytes: Option<u32>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub read_only: bool,
    /// `gpt` or `dos`.
    pub partition_table: Option<String>,
    pub partitions: Vec<Partition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partition {
    pub name: String,
    /// In 512-byte sectors.
    pub start_sector: Option<u64>,
    pub size_bytes: u64,
    pub type_guid: Option<String>,
    pub type_name: Option<String>,
    pub label: Option<String>,
    pub uuid: Option<String>,
    pub filesystem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub name: String,
    pub health: Option<String>,
    pub bootfs: Option<String>,
    pub compatibility: Option<String>,
    /// Every pool property but the features (`zpool get -p all`).
    pub properties: BTreeMap<String, String>,
    /// Every feature and its state: enabled, active or disabled.
    pub features: BTreeMap<String, String>,
    pub topology: Vec<Vdev>,
    /// The first label of each leaf device (`zdb -l`).
    pub labels: Vec<Label>,
    /// The kernel names its leaf devices resolve to (`sda2`, `nvme0n1p2`, a whole disk's
    /// `sdb`), whatever path the pool was imported by: what ties the pool to the disks above.
    /// Empty in reports written before kldload read it.
    #[serde(default)]
    pub devices: Vec<String>,
    /// `zpool status -P` as printed.
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vdev {
    pub name: String,
    pub size: Option<String>,
    pub children: Vec<Vdev>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub device: String,
    #[serde(flatten)]
    pub facts: LabelFacts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelFacts {
    pub pool: Option<String>,
    /// The pool's state as the label has it (0 active, 1 exported, ...).
    pub state: Option<String>,
    /// Who last imported it, `0x%08x`.
    pub hostid: Option<String>,
    pub hostname: Option<String>,
    pub txg: Option<String>,
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcedValue {
    pub value: String,
    /// `local`, `inherited from <dataset>`, `default`, `-`.
    pub source: String,
}

impl SourcedValue {
    pub fn new(value: &str, source: &str) -> SourcedValue {
        SourcedValue {
            value: value.into(),
            source: source.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub name: String,
    /// `filesystem` or `volume`.
    pub kind: String,
    pub mountpoint: Option<String>,
    pub canmount: Option<String>,
    pub mounted: Option<bool>,
    pub encryption: Option<String>,
    pub encryption_root: Option<String>,
    /// `prompt` or a location; never the key.
    pub keylocation: Option<String>,
    pub keyformat: Option<String>,
    pub keystatus: Option<String>,
    pub compression: Option<String>,
    /// Every `org.zfsbootmenu:*` property, local or inherited.
    pub zfsbootmenu: BTreeMap<String, SourcedValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootEnvironment {
    pub dataset: String,
    /// Whether this system runs from it.
    pub running: bool,
    /// Its os-release's PRETTY_NAME.
    pub distribution: Option<String>,
    /// Its own /etc/hostid, `0x%08x` (what its initramfs is made with): read from the boot
    /// environment, so a report taken on a rescue system has the machine's. None in reports
    /// written before kldload read it, and when it has none.
    #[serde(default)]
    pub etc_hostid: Option<String>,
    /// The files of its /boot with their sizes (no contents).
    pub boot_files: BTreeMap<String, u64>,
    /// ZFSBootMenu's kernel list for it, oldest first.
    pub kernels: Vec<BootKernel>,
    /// The kernel ZFSBootMenu boots by default (its file name), and why.
    pub default_kernel: Option<String>,
    pub default_kernel_reason: Option<String>,
    /// The command line ZFSBootMenu reads for it (`org.zfsbootmenu:commandline` expanded).
    pub commandline: String,
    /// Why /boot could not be read, if it could not.
    pub unreadable: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootKernel {
    pub kernel: String,
    pub initramfs: String,
    /// Whether the initramfs has zfs.ko; none: it could not be read.
    pub initramfs_has_zfs: Option<bool>,
    /// The initramfs's /etc/hostid, `0x%08x`.
    pub initramfs_hostid: Option<String>,
    /// Whether the initramfs has the key file its boot environment's encryption root names
    /// (`keylocation=file://...`): without it Debian's initramfs cannot load the key after
    /// ZFSBootMenu did, and stops. None: not encrypted with a key file, or not read.
    #[serde(default)]
    pub initramfs_has_key_file: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Esp {
    /// The partition's kernel name.
    pub partition: String,
    pub partition_uuid: Option<String>,
    /// Where it is mounted; none when the report mounted it read-only for a moment.
    pub mounted_at: Option<String>,
    /// Each file: path (from the ESP's root, `/`-separated) -> size and sha256.
    pub files: BTreeMap<String, EspFile>,
    /// What each ZFSBootMenu EFI file on it carries, by path.
    pub zfsbootmenu: BTreeMap<String, ZbmImage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EspFile {
    pub size: u64,
    pub sha256: String,
}

/// Options of `kldload report`.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub redact: bool,
}

/// Runs `argv`; its stdout when it succeeds.
fn output(argv: &[&str]) -> Result<String, String> {
    let out = Command::new(argv[0]).args(&argv[1..]).output();
    tracing::debug!(?argv, status = ?out.as_ref().map(|o| o.status), "report reads");
    let out = out.map_err(|e| format!("{}: {e}", argv[0]))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn read_text(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Collects the report on this machine (as root), redacted when `options.redact`.
pub fn collect(options: Options) -> Report {
    let mut notes = Vec::new();
    let mut note = |what: &str, why: String| notes.push(format!("{what}: {why}"));
    let os = parse::os_release(&std::fs::read_to_string("/etc/os-release").unwrap_or_default());
    let hostname = read_text("/proc/sys/kernel/hostname").unwrap_or_default();
    let system = System {
        distribution: os.get("PRETTY_NAME").cloned(),
        distribution_id: os.get("ID").cloned(),
        distribution_version: os.get("VERSION_ID").cloned(),
        kernel: read_text("/proc/sys/kernel/osrelease").unwrap_or_default(),
        zfs_module: read_text("/sys/module/zfs/version"),
        cmdline: read_text("/proc/cmdline").unwrap_or_default(),
        hostname: hostname.clone(),
    };
    let hostid = Hostids {
        etc_hostid: std::fs::read("/etc/hostid")
            .ok()
            .and_then(|b| crate::zbm::hostid::parse_hostid_file(&b))
            .map(|h| format!("0x{h:08x}")),
        spl_hostid: read_text("/sys/module/spl/parameters/spl_hostid")
            .and_then(|t| crate::zbm::hostid::parse_kernel_number(&t))
            .filter(|h| *h != 0)
            .map(|h| format!("0x{h:08x}")),
    };
    // Read once: what runs from where, and which ESPs are mounted, do not change during the
    // report (its own mounts are made and undone inside each reader).
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let in_zfsbootmenu = ZFSBOOTMENU_FILES.iter().any(|f| Path::new(f).exists());
    let taken_on = TakenOn::of(&mounts, in_zfsbootmenu);
    // Every pool the system has not imported (on a rescue system, the machine's; on the
    // installed one, an exported pool or another disk's) is imported read-only for the report:
    // ZFSBootMenu imports every pool it finds, so another pool's bootfs can decide the boot.
    // Kept until the report is read: exports what it imported when dropped.
    let imported = ReadOnlyImports::of_importable_pools(&mut note);
    let firmware = read_firmware(&mut note);
    let disks = match output(&["lsblk", "--json", "--bytes", "-o", parse::LSBLK_COLUMNS]) {
        Ok(json) => parse::disks(&json, |part| {
            read_text(&format!("/sys/class/block/{part}/start")).and_then(|s| s.parse().ok())
        })
        .unwrap_or_else(|e| {
            note("disks", e);
            Vec::new()
        }),
        Err(e) => {
            note("disks", e);
            Vec::new()
        }
    };
    let pools = read_pools(&mut note);
    for (what, why) in imported_read_write_on_rescue(taken_on, &pools, &imported.pools) {
        note(&what, why);
    }
    let datasets = match output(&[
        "zfs",
        "get",
        "-H",
        "-p",
        "-o",
        "name,property,value,source",
        "-t",
        "filesystem,volume",
        "all",
    ]) {
        Ok(text) => parse::datasets(&text),
        Err(e) => {
            note("datasets", e);
            Vec::new()
        }
    };
    let boot_environments = read_boot_environments(&pools, &datasets, &mounts, &mut note);
    let esps = read_esps(&disks, &mounts, &mut note);
    let mut secrets = redact::Secrets {
        serials: disks.iter().filter_map(|d| d.serial.clone()).collect(),
        wwns: disks.iter().filter_map(|d| d.wwn.clone()).collect(),
        // A host named after its distribution (`debian`) would take the distribution's name
        // out of every path and field: such a name is no secret.
        hostnames: vec![hostname]
            .into_iter()
            .filter(|h| Some(h) != os.get("ID"))
            .collect(),
        users: users(&std::fs::read_to_string("/etc/passwd").unwrap_or_default()),
    };
    for pool in &pools {
        for label in &pool.labels {
            secrets.hostnames.extend(label.facts.hostname.clone());
        }
    }
    let report = Report {
        format: FORMAT,
        kldload: env!("CARGO_PKG_VERSION").to_string(),
        redacted: options.redact,
        taken_on: Some(taken_on),
        system,
        hostid,
        firmware,
        disks,
        pools,
        datasets,
        boot_environments,
        esps,
        notes,
    };
    if options.redact {
        redacted(&report, &secrets)
    } else {
        report
    }
}

/// `report` with every secret and address replaced (through its JSON form, so no field is
/// missed, keys included).
pub fn redacted(report: &Report, secrets: &redact::Secrets) -> Report {
    let mut value = serde_json::to_value(report).expect("serializable");
    redact::Redactor::new(secrets).value(&mut value);
    serde_json::from_value(value).expect("the same shape")
}

/// The names of people's accounts in /etc/passwd: a uid from 1000 up (not `nobody`'s).
pub fn users(passwd: &str) -> Vec<String> {
    passwd
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(':').collect();
            let uid: u32 = fields.get(2)?.parse().ok()?;
            ((1000..65534).contains(&uid)).then(|| fields[0].to_string())
        })
        .collect()
}

fn read_firmware(note: &mut impl FnMut(&str, String)) -> Firmware {
    let uefi = Path::new("/sys/firmware/efi").is_dir();
    let dir = Path::new(efivars::EFIVARFS);
    if !uefi {
        return Firmware {
            uefi,
            secure_boot: None,
            boot_current: None,
            boot_order: Vec::new(),
            entries: Vec::new(),
        };
    }
    let vars = efivars::read_lenient(dir).map_err(|e| note("firmware entries", format!("{e:#}")));
    let boot_order = efivars::read_boot_order(dir).unwrap_or_else(|e| {
        note("BootOrder", format!("{e:#}"));
        Vec::new()
    });
    let (boot_current, entries) = match vars {
        Ok(efivars::ReadVariables {
            current,
            entries,
            problems,
        }) => {
            for p in problems {
                note("firmware entry", p);
            }
            (
                current,
                entries
                    .into_iter()
                    .map(|(number, o)| FirmwareEntry {
                        number,
                        description: o.description,
                        partition_guid: o.partition_guid,
                        file: o.file,
                        options: o.options,
                    })
                    .collect(),
            )
        }
        Err(()) => (None, Vec::new()),
    };
    Firmware {
        uefi,
        secure_boot: Some(crate::secure_boot::enforced(Path::new("/"))),
        boot_current,
        boot_order,
        entries,
    }
}

fn read_pools(note: &mut impl FnMut(&str, String)) -> Vec<Pool> {
    let names = match output(&["zpool", "list", "-H", "-o", "name"]) {
        Ok(text) => text.lines().map(str::to_string).collect::<Vec<_>>(),
        Err(e) => {
            note("pools", e);
            return Vec::new();
        }
    };
    names
        .into_iter()
        .map(|name| {
            let props = output(&[
                "zpool",
                "get",
                "-H",
                "-p",
                "-o",
                "name,property,value,source",
                "all",
                &name,
            ])
            .map(|t| parse::properties(&t).remove(&name).unwrap_or_default())
            .unwrap_or_else(|e| {
                note(&format!("pool {name}'s properties"), e);
                BTreeMap::new()
            });
            let (features, properties): (BTreeMap<_, _>, BTreeMap<_, _>) = props
                .into_iter()
                .map(|(p, (v, _))| (p, v))
                .partition(|(p, _)| p.starts_with("feature@"));
            let features = features
                .into_iter()
                .map(|(p, v)| (p.trim_start_matches("feature@").to_string(), v))
                .collect();
            let get = |p: &str| {
                properties
                    .get(p)
                    .cloned()
                    .filter(|v| v != "-" && !v.is_empty())
            };
            let status = output(&["zpool", "status", "-P", &name]).unwrap_or_else(|e| {
                note(&format!("pool {name}'s status"), e.clone());
                e
            });
            let topology = parse::topology(&status);
            let devices = kernel_names(&leaves(&topology), |path| std::fs::canonicalize(path).ok());
            let labels = leaves(&topology)
                .into_iter()
                .filter_map(|device| {
                    let text = output(&["zdb", "-l", &device])
                        .map_err(|e| note(&format!("the label of {device}"), e))
                        .ok()?;
                    Some(Label {
                        device,
                        facts: parse::label(&text),
                    })
                })
                .collect();
            Pool {
                health: get("health"),
                bootfs: get("bootfs"),
                compatibility: get("compatibility"),
                status,
                name,
                properties,
                features,
                topology,
                labels,
                devices,
            }
        })
        .collect()
}

/// The pools a rescue system found on the disks and imported for the report: read-only
/// (nothing is written to them, their labels keep the machine's hostid and state), forced (a
/// pool last imported by the machine is "in use from another system" to the rescue system),
/// not mounted, under a temporary altroot; exported again when dropped.
#[derive(Default)]
struct ReadOnlyImports {
    pools: Vec<String>,
    altroot: Option<PathBuf>,
}

/// On a rescue system, the pools someone imported read-write before the report (not those the
/// report imported read-only): their labels then carry the rescue system's hostid and state,
/// not the machine's, and the report says so with what to do.
fn imported_read_write_on_rescue(
    taken_on: TakenOn,
    pools: &[Pool],
    imported_by_report: &[String],
) -> Vec<(String, String)> {
    if !taken_on.elsewhere() {
        return Vec::new();
    }
    (pools.iter())
        .filter(|p| !imported_by_report.contains(&p.name))
        .filter(|p| p.properties.get("readonly").map(String::as_str) == Some("off"))
        .map(|p| {
            (
                format!("pool {}", p.name),
                format!(
                    "imported read-write on this rescue system before the report: its labels \
                     now carry this system's hostid and state, not the machine's; `zpool export \
                     {0}`, then take the report with {0} not imported (or imported with -o \
                     readonly=on)",
                    p.name
                ),
            )
        })
        .collect()
}

impl ReadOnlyImports {
    /// Imports every pool `zpool import` lists (those not imported yet), by its id; one whose
    /// name an imported pool has already is left as it is, and noted.
    fn of_importable_pools(note: &mut impl FnMut(&str, String)) -> ReadOnlyImports {
        let mut imports = ReadOnlyImports::default();
        let listed = match output(&["zpool", "import"]) {
            Ok(text) => parse::importable_pools(&text),
            // `zpool import` exits 1 when it finds no pool to import.
            Err(_) => return imports,
        };
        if listed.is_empty() {
            return imports;
        }
        let altroot = match tempfile::Builder::new()
            .prefix("kldload-report-pools-")
            .tempdir()
        {
            Ok(dir) => dir.keep(),
            Err(e) => {
                note("pools not imported", e.to_string());
                return imports;
            }
        };
        let root = altroot.display().to_string();
        // Pools already imported keep their names: one of those is not imported again.
        let mut taken: Vec<String> = output(&["zpool", "list", "-H", "-o", "name"])
            .map(|t| t.lines().map(String::from).collect())
            .unwrap_or_default();
        for pool in listed {
            let name = pool.name;
            if taken.contains(&name) {
                note(
                    &format!("pool {name} (not imported)"),
                    format!(
                        "a pool named {name} is imported already; this one (id {}) is left as \
                         it is",
                        pool.id.as_deref().unwrap_or("unknown")
                    ),
                );
                continue;
            }
            // By id when `zpool import` gave one: two pools may share a name.
            let which = pool.id.clone().unwrap_or_else(|| name.clone());
            let argv = [
                "zpool",
                "import",
                "-N",
                "-f",
                "-o",
                "readonly=on",
                "-R",
                &root,
                &which,
            ];
            match output(&argv) {
                Ok(_) => {
                    imports.pools.push(name.clone());
                    taken.push(name);
                }
                Err(e) => note(&format!("pool {name} (not imported)"), e),
            }
        }
        imports.altroot = Some(altroot);
        imports
    }
}

impl Drop for ReadOnlyImports {
    fn drop(&mut self) {
        for name in &self.pools {
            if let Err(e) = output(&["zpool", "export", name]) {
                eprintln!(
                    "kldload report: pool {name}, imported read-only for the report, is still \
                     imported ({e}); `zpool export {name}` when done"
                );
            }
        }
        if let Some(dir) = &self.altroot {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The kernel names (`/dev/NAME`) the device paths `leaves` resolve to through `resolve`
/// (symbolic links such as /dev/disk/by-id/... followed), in order; a path that resolves to
/// nothing under /dev is left out.
fn kernel_names(leaves: &[String], resolve: impl Fn(&str) -> Option<PathBuf>) -> Vec<String> {
    leaves
        .iter()
        .filter_map(|leaf| {
            let real = resolve(leaf)?;
            let name = real.strip_prefix("/dev").ok()?.to_str()?;
            (!name.contains('/')).then(|| name.to_string())
        })
        .collect()
}

/// The devices at the leaves of a vdev tree (paths, as `zpool list -P` gives them).
fn leaves(vdevs: &[Vdev]) -> Vec<String> {
    vdevs
        .iter()
        .flat_map(|v| {
            if v.children.is_empty() {
                if v.name.starts_with('/') {
                    vec![v.name.clone()]
                } else {
                    Vec::new()
                }
            } else {
                leaves(&v.children)
            }
        })
        .collect()
}

/// A read-only mount for a moment, under a temporary directory: unmounted when dropped, and
/// the directory removed only once it is unmounted.
struct TemporaryMount {
    dir: PathBuf,
}

impl TemporaryMount {
    /// `mount -o ro [-t fstype] source <tmp>`; `zfsutil` lets a dataset with a mountpoint
    /// property be mounted elsewhere.
    fn new(source: &str, fstype: &str, extra: &str) -> Result<TemporaryMount, String> {
        let dir = tempfile::Builder::new()
            .prefix("kldload-report-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        let target = dir.display().to_string();
        let options = format!("ro{extra}");
        if let Err(e) = output(&["mount", "-t", fstype, "-o", &options, source, &target]) {
            let _ = std::fs::remove_dir(&dir);
            return Err(e);
        }
        Ok(TemporaryMount { dir })
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TemporaryMount {
    fn drop(&mut self) {
        // remove_dir fails on a directory still mounted: nothing under it is touched.
        if output(&["umount", &self.dir.display().to_string()]).is_ok() {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// The datasets ZFSBootMenu offers as boot environments (3.1.0's `find_be_candidates`):
/// `mountpoint=/` unless `org.zfsbootmenu:active=off`, and `mountpoint=legacy` with
/// `org.zfsbootmenu:active=on`. A pool imported with an altroot (a rescue system's `-R /mnt`)
/// shows its mountpoints under it: it is taken off first.
pub fn is_boot_environment(d: &Dataset, altroot: Option<&str>) -> bool {
    let active = d
        .zfsbootmenu
        .get("org.zfsbootmenu:active")
        .map(|v| v.value.as_str());
    let mountpoint = d.mountpoint.as_deref().map(|m| {
        altroot
            .filter(|a| *a != "/" && m.starts_with(*a))
            .map_or(m, |a| {
                let rest = &m[a.len()..];
                if rest.is_empty() { "/" } else { rest }
            })
    });
    match mountpoint {
        Some("/") => active != Some("off"),
        Some("legacy") => active == Some("on"),
        _ => false,
    }
}

fn read_boot_environments(
    pools: &[Pool],
    datasets: &[Dataset],
    mounts: &str,
    note: &mut impl FnMut(&str, String),
) -> Vec<BootEnvironment> {
    let running = crate::doctor::running_boot_environment(mounts);
    datasets
        .iter()
        .filter(|d| {
            let pool = d.name.split('/').next().unwrap_or_default();
            let altroot = (pools.iter())
                .find(|p| p.name == pool)
                .and_then(|p| p.properties.get("altroot"))
                .map(String::as_str)
                .filter(|a| *a != "-");
            is_boot_environment(d, altroot)
        })
        .map(|d| {
            let is_running = running.as_deref() == Some(d.name.as_str());
            let mount = if is_running {
                None
            } else {
                // A legacy mountpoint mounts as it is; any other needs zfsutil elsewhere.
                let zfsutil = if d.mountpoint.as_deref() == Some("legacy") {
                    ""
                } else {
                    ",zfsutil"
                };
                match TemporaryMount::new(&d.name, "zfs", zfsutil) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        note(&format!("boot environment {}", d.name), e.clone());
                        return boot_environment(d, datasets, is_running, None, Some(e));
                    }
                }
            };
            let root = mount
                .as_ref()
                .map_or(PathBuf::from("/"), |m| m.path().to_path_buf());
            boot_environment(d, datasets, is_running, Some(&root), None)
        })
        .collect()
}

/// What one boot environment, mounted at `root` (none: it could not be), has in /boot.
fn boot_environment(
    d: &Dataset,
    datasets: &[Dataset],
    running: bool,
    root: Option<&Path>,
    unreadable: Option<String>,
) -> BootEnvironment {
    let lineage = crate::zbm::commandline::lineage(&d.name);
    let props: Vec<crate::zbm::commandline::Property> = lineage
        .iter()
        .filter_map(|name| {
            let ds = datasets.iter().find(|x| &x.name == name)?;
            let p = ds.zfsbootmenu.get("org.zfsbootmenu:commandline");
            Some(crate::zbm::commandline::Property {
                dataset: name.clone(),
                value: p.map_or("-".into(), |p| p.value.clone()),
                source: p.map_or("-".into(), |p| p.source.clone()),
            })
        })
        .collect();
    let commandline = crate::zbm::commandline::effective(&d.name, &props);
    let pinned = d
        .zfsbootmenu
        .get("org.zfsbootmenu:kernel")
        .map(|p| p.value.clone());
    let mut be = BootEnvironment {
        dataset: d.name.clone(),
        running,
        distribution: None,
        etc_hostid: None,
        boot_files: BTreeMap::new(),
        kernels: Vec::new(),
        default_kernel: None,
        default_kernel_reason: None,
        commandline,
        unreadable,
    };
    let Some(root) = root else {
        return be;
    };
    be.distribution = std::fs::read_to_string(root.join("etc/os-release"))
        .ok()
        .and_then(|t| parse::os_release(&t).remove("PRETTY_NAME"));
    be.etc_hostid = std::fs::read(root.join("etc/hostid"))
        .ok()
        .and_then(|b| crate::zbm::hostid::parse_hostid_file(&b))
        .map(|h| format!("0x{h:08x}"));
    let boot = root.join("boot");
    be.boot_files = std::fs::read_dir(&boot)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let meta = e.metadata().ok()?;
                    meta.is_file()
                        .then(|| (e.file_name().to_string_lossy().into_owned(), meta.len()))
                })
                .collect()
        })
        .unwrap_or_default();
    let files: Vec<String> = be.boot_files.keys().cloned().collect();
    let list = kernels::kernel_list(&files);
    if let Some((i, choice)) = kernels::default_kernel(&list, pinned.as_deref()) {
        be.default_kernel = Some(list[i].kernel.clone());
        be.default_kernel_reason = Some(match choice {
            kernels::Choice::Newest => "the newest".into(),
            kernels::Choice::Pinned(p) => format!("org.zfsbootmenu:kernel={p}"),
            kernels::Choice::PinMatchesNone(p) => {
                format!("the newest: org.zfsbootmenu:kernel={p} matches no kernel")
            }
        });
    }
    // The key file the boot environment's encryption root names, as a path in an initramfs.
    let key_file = (d.encryption_root.as_ref())
        .and_then(|r| datasets.iter().find(|x| &x.name == r))
        .and_then(|r| r.keylocation.as_deref())
        .and_then(crate::doctor::keys::key_file_in_initramfs);
    be.kernels = list
        .into_iter()
        .map(|pair| {
            let image = boot.join(&pair.initramfs);
            let length = std::fs::metadata(&image).map(|m| m.len()).unwrap_or(0);
            let wanted = |name: &str| {
                name == "etc/hostid"
                    || kernels::is_zfs_module(name)
                    || key_file.as_deref() == Some(name)
            };
            let found =
                crate::initrd::read_files(&image, 0..length, &wanted, crate::initrd::Stop::AtEnd)
                    .ok();
            BootKernel {
                initramfs_has_zfs: found
                    .as_ref()
                    .map(|f| f.iter().any(|m| kernels::is_zfs_module(&m.name))),
                initramfs_hostid: found.as_ref().and_then(|f| {
                    f.iter()
                        .find(|m| m.name == "etc/hostid" && !m.link)
                        .and_then(|m| crate::zbm::hostid::parse_hostid_file(&m.data))
                        .map(|h| format!("0x{h:08x}"))
                }),
                initramfs_has_key_file: key_file
                    .as_ref()
                    .and_then(|k| (found.as_ref()).map(|f| f.iter().any(|m| &m.name == k))),
                kernel: pair.kernel,
                initramfs: pair.initramfs,
            }
        })
        .collect();
    be
}

/// Every ESP (by its GPT type) with its files; one not mounted is mounted read-only for the
/// moment.
fn read_esps(disks: &[Disk], mounts: &str, note: &mut impl FnMut(&str, String)) -> Vec<Esp> {
    let mut images: BTreeMap<String, ZbmImage> = BTreeMap::new();
    disks
        .iter()
        .flat_map(|d| &d.partitions)
        .filter(|p| p.type_guid.as_deref() == Some(ESP_TYPE))
        .filter_map(|p| {
            let device = format!("/dev/{}", p.name);
            let mounted_at = mounts.lines().find_map(|l| {
                let mut f = l.split_whitespace();
                let (source, target) = (f.next()?, f.next()?);
                (std::fs::canonicalize(source).ok()? == Path::new(&device))
                    .then(|| target.to_string())
            });
            let temporary = match &mounted_at {
                Some(_) => None,
                None => match TemporaryMount::new(&device, "vfat", "") {
                    Ok(m) => Some(m),
                    Err(e) => {
                        note(&format!("ESP {device}"), e);
                        return None;
                    }
                },
            };
            let root = temporary.as_ref().map_or_else(
                || PathBuf::from(mounted_at.clone().unwrap_or_default()),
                |m| m.path().to_path_buf(),
            );
            let mut files = BTreeMap::new();
            let mut zfsbootmenu = BTreeMap::new();
            for path in walk(&root) {
                let relative = path
                    .strip_prefix(&root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                let Ok(bytes) = std::fs::read(&path) else {
                    note(&format!("ESP file {relative}"), "not readable".into());
                    continue;
                };
                let sha256 = hex::encode(Sha256::digest(&bytes));
                if relative.to_ascii_lowercase().ends_with(".efi") {
                    // Read once per distinct file: the copies are the same bytes.
                    let image = match images.get(&sha256) {
                        Some(i) => Some(i.clone()),
                        None => crate::zbm::image::read(&path)
                            .ok()
                            .filter(|i| i.release.is_some()),
                    };
                    if let Some(image) = image {
                        images.insert(sha256.clone(), image.clone());
                        zfsbootmenu.insert(relative.clone(), image);
                    }
                }
                files.insert(
                    relative,
                    EspFile {
                        size: bytes.len() as u64,
                        sha256,
                    },
                );
            }
            Some(Esp {
                partition: p.name.clone(),
                partition_uuid: p.uuid.clone(),
                mounted_at,
                files,
                zfsbootmenu,
            })
        })
        .collect()
}

/// Every regular file under `root`, sorted.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            match e.file_type() {
                Ok(t) if t.is_dir() => dirs.push(e.path()),
                Ok(t) if t.is_file() => out.push(e.path()),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

impl Report {
    /// What a person reads after the report is written: the bug-report form's fields and the
    /// shape of the machine, a line each.
    pub fn summary(&self) -> String {
        let mut lines = Vec::new();
        let zbm: Vec<String> = self
            .esps
            .iter()
            .flat_map(|e| e.zfsbootmenu.iter().map(move |(p, i)| (e, p, i)))
            .map(|(e, path, image)| {
                let version = image
                    .release
                    .as_ref()
                    .and_then(|r| r.version.clone())
                    .unwrap_or_else(|| "?".into());
                let zfs = image
                    .zfs_features
                    .as_ref()
                    .map_or("?".to_string(), |f| f.name.clone());
                format!("{}:{path} {version} (its ZFS reads {zfs})", e.partition)
            })
            .collect();
        lines.push(format!(
            "ZFSBootMenu: {}",
            if zbm.is_empty() {
                "none found on an ESP".to_string()
            } else {
                zbm.join(", ")
            }
        ));
        match self.taken_on {
            Some(TakenOn::Rescue) => lines.push(
                "taken on a rescue system: its kernel, command line and hostid are not the \
                 machine's; pools it found not imported were imported read-only for the report"
                    .into(),
            ),
            Some(TakenOn::ZfsBootMenu) => lines.push(
                "taken in ZFSBootMenu's recovery shell: its kernel, command line and hostid are \
                 ZFSBootMenu's; the pools are as ZFSBootMenu imported them"
                    .into(),
            ),
            Some(TakenOn::Installed) | None => {}
        }
        lines.push(format!(
            "system: {} (kernel {}, ZFS {})",
            self.system.distribution.as_deref().unwrap_or("?"),
            self.system.kernel,
            self.system.zfs_module.as_deref().unwrap_or("not loaded")
        ));
        lines.push(format!(
            "firmware: {}; {} boot entries, BootCurrent {}",
            match (self.firmware.uefi, self.firmware.secure_boot) {
                (false, _) => "BIOS",
                (true, Some(true)) => "UEFI, Secure Boot on",
                _ => "UEFI",
            },
            self.firmware.entries.len(),
            self.firmware
                .boot_current
                .map_or("?".into(), |c| format!("{c:04X}"))
        ));
        for d in &self.disks {
            lines.push(format!(
                "disk {}: {} bytes, {}/{} byte sectors, {} partition(s)",
                d.name,
                d.size_bytes,
                d.logical_sector_bytes.unwrap_or(0),
                d.physical_sector_bytes.unwrap_or(0),
                d.partitions.len()
            ));
        }
        for p in &self.pools {
            lines.push(format!(
                "pool {}: {}, bootfs {}, compatibility {}, {} feature(s) active",
                p.name,
                p.health.as_deref().unwrap_or("?"),
                p.bootfs.as_deref().unwrap_or("-"),
                p.compatibility.as_deref().unwrap_or("-"),
                p.features.values().filter(|s| *s == "active").count()
            ));
        }
        for be in &self.boot_environments {
            lines.push(format!(
                "boot environment {}{}: {} kernel(s), default {}",
                be.dataset,
                if be.running { " (running)" } else { "" },
                be.kernels.len(),
                be.default_kernel.as_deref().unwrap_or("none")
            ));
        }
        for n in &self.notes {
            lines.push(format!("not read: {n}"));
        }
        lines.join("\n") + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a report ran: the machine's own system (/ a boot environment), a rescue system,
    /// or ZFSBootMenu's recovery shell (its files there, whatever / is), by that name in JSON.
    #[test]
    fn where_a_report_ran_is_told_from_the_mounts_and_zfsbootmenu_s_files() {
        let installed = "rpool/ROOT/default / zfs rw,relatime,xattr,posixacl 0 0\n";
        let live = "/dev/vdb2 /run/live/medium vfat ro 0 0\noverlay / overlay rw 0 0\n";
        assert_eq!(TakenOn::of(installed, false), TakenOn::Installed);
        assert_eq!(TakenOn::of(live, false), TakenOn::Rescue);
        assert_eq!(
            TakenOn::of("rootfs / rootfs rw 0 0\n", true),
            TakenOn::ZfsBootMenu
        );
        assert!(!TakenOn::Installed.elsewhere());
        assert!(TakenOn::Rescue.elsewhere() && TakenOn::ZfsBootMenu.elsewhere());
        assert_eq!(
            serde_json::to_string(&TakenOn::ZfsBootMenu).unwrap(),
            "\"zfsbootmenu\""
        );
        assert_eq!(
            serde_json::to_string(&TakenOn::Rescue).unwrap(),
            "\"rescue\""
        );
    }

    #[test]
    fn people_s_accounts_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
            nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
            ann:x:1000:1000:Ann,,,:/home/ann:/bin/bash\n\
            systemd-network:x:998:998::/:/usr/sbin/nologin\n";
        assert_eq!(users(passwd), ["ann"]);
    }

    #[test]
    fn a_pools_leaves_are_tied_to_kernel_names_whatever_path_it_was_imported_by() {
        let leaves = [
            "/dev/disk/by-id/nvme-Samsung_SSD_980_S64DNX0R-part2".to_string(),
            "/dev/vdb2".to_string(),
            "/dev/disk/by-id/gone-part2".to_string(),
            "/dev/mapper/crypt-data".to_string(),
        ];
        let names = kernel_names(&leaves, |path| match path {
            "/dev/disk/by-id/nvme-Samsung_SSD_980_S64DNX0R-part2" => Some("/dev/nvme0n1p2".into()),
            "/dev/vdb2" => Some("/dev/vdb2".into()),
            "/dev/mapper/crypt-data" => Some("/dev/mapper/crypt-data".into()),
            _ => None,
        });
        assert_eq!(names, ["nvme0n1p2", "vdb2"]);
    }

    /// A pool someone imported read-write on a rescue system is noted; one the report imported
    /// read-only, one imported read-only by hand, and any on the installed system are not.
    #[test]
    fn a_pool_imported_read_write_on_a_rescue_system_is_noted() {
        let pool = |name: &str, readonly: &str| Pool {
            name: name.into(),
            health: None,
            bootfs: None,
            compatibility: None,
            status: String::new(),
            properties: BTreeMap::from([("readonly".to_string(), readonly.to_string())]),
            features: BTreeMap::new(),
            topology: Vec::new(),
            labels: Vec::new(),
            devices: Vec::new(),
        };
        let pools = [
            pool("rpool", "off"),
            pool("tank", "on"),
            pool("data", "on"),
            pool("scratch", "off"),
        ];
        let by_report = ["data".to_string(), "scratch".to_string()];
        let noted = imported_read_write_on_rescue(TakenOn::Rescue, &pools, &by_report);
        let names: Vec<&str> = noted.iter().map(|(what, _)| what.as_str()).collect();
        assert_eq!(names, ["pool rpool"]);
        assert!(
            noted[0].1.contains("`zpool export rpool`"),
            "{}",
            noted[0].1
        );
        assert!(imported_read_write_on_rescue(TakenOn::Installed, &pools, &[]).is_empty());
    }

    /// Each kernel's initramfs, read as it is on disk: zfs.ko, the hostid, and the key file
    /// the boot environment's encryption root names (none asked when its key is prompted).
    #[test]
    fn each_initramfs_is_read_for_zfs_its_hostid_and_the_key_file() {
        use crate::initrd::testing::cpio;
        let root = tempfile::tempdir().unwrap();
        let boot = root.path().join("boot");
        std::fs::create_dir_all(&boot).unwrap();
        let zfs = "usr/lib/modules/6.1.0-1-amd64/updates/dkms/zfs.ko";
        let hostid: &[u8] = &[0x0c, 0xb1, 0xba, 0x00];
        for (version, files) in [
            (
                "6.1.0-1-amd64",
                vec![(zfs, &b"m"[..]), ("etc/hostid", hostid)],
            ),
            (
                "6.1.0-2-amd64",
                vec![
                    (zfs, &b"m"[..]),
                    ("etc/hostid", hostid),
                    ("etc/zfs/keys/rpool.key", b"not the passphrase"),
                ],
            ),
        ] {
            std::fs::write(boot.join(format!("vmlinuz-{version}")), b"k").unwrap();
            std::fs::write(boot.join(format!("initrd.img-{version}")), cpio(&files)).unwrap();
        }
        let dataset = |name: &str, root: Option<&str>, keylocation: Option<&str>| Dataset {
            name: name.into(),
            kind: "filesystem".into(),
            mountpoint: Some("/".into()),
            canmount: Some("noauto".into()),
            mounted: None,
            encryption: None,
            encryption_root: root.map(String::from),
            keylocation: keylocation.map(String::from),
            keyformat: None,
            keystatus: None,
            compression: None,
            zfsbootmenu: BTreeMap::new(),
        };
        let read = |keylocation: &str| {
            let datasets = [
                dataset("rpool", Some("rpool"), Some(keylocation)),
                dataset("rpool/ROOT/default", Some("rpool"), None),
            ];
            let be = boot_environment(&datasets[1], &datasets, false, Some(root.path()), None);
            (be.kernels.iter())
                .map(|k| {
                    (
                        k.initramfs_has_zfs,
                        k.initramfs_hostid.clone(),
                        k.initramfs_has_key_file,
                    )
                })
                .collect::<Vec<_>>()
        };
        let id = Some("0x00bab10c".to_string());
        assert_eq!(
            read("file:///etc/zfs/keys/rpool.key"),
            [
                (Some(true), id.clone(), Some(false)),
                (Some(true), id.clone(), Some(true))
            ]
        );
        assert_eq!(
            read("prompt"),
            [(Some(true), id.clone(), None), (Some(true), id, None)]
        );
    }

    #[test]
    fn boot_environments_by_zfsbootmenu_s_rule() {
        let ds = |mountpoint: &str, active: Option<&str>| Dataset {
            name: "rpool/ROOT/x".into(),
            kind: "filesystem".into(),
            mountpoint: Some(mountpoint.into()),
            canmount: Some("noauto".into()),
            mounted: None,
            encryption: None,
            encryption_root: None,
            keylocation: None,
            keyformat: None,
            keystatus: None,
            compression: None,
            zfsbootmenu: active
                .map(|a| {
                    (
                        "org.zfsbootmenu:active".to_string(),
                        SourcedValue::new(a, "local"),
                    )
                })
                .into_iter()
                .collect(),
        };
        assert!(is_boot_environment(&ds("/", None), None));
        assert!(!is_boot_environment(&ds("/", Some("off")), None));
        assert!(!is_boot_environment(&ds("legacy", None), None));
        assert!(is_boot_environment(&ds("legacy", Some("on")), None));
        assert!(!is_boot_environment(&ds("/home", None), None));
        // Imported by a rescue system with -R /mnt.
        assert!(is_boot_environment(&ds("/mnt", None), Some("/mnt")));
        assert!(!is_boot_environment(&ds("/mnt/home", None), Some("/mnt")));
    }

    #[test]
    fn the_leaves_of_a_vdev_tree() {
        let t = parse::topology(
            "config:\n\tNAME STATE\n\trpool ONLINE\n\t  mirror-0 ONLINE\n\t    /dev/vda2 ONLINE\n\
             \t    /dev/vdb2 ONLINE\n\tlogs\n\t  /dev/vdc ONLINE\n",
        );
        assert_eq!(leaves(&t), ["/dev/vda2", "/dev/vdb2", "/dev/vdc"]);
    }

    #[test]
    fn a_report_redacted_keeps_its_shape() {
        let report = Report {
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
                cmdline: "root=zfs:rpool/ROOT/default ip=10.0.2.15".into(),
                hostname: "ann-laptop".into(),
            },
            hostid: Hostids {
                etc_hostid: Some("0x00bab10c".into()),
                spl_hostid: None,
            },
            firmware: Firmware {
                uefi: true,
                secure_boot: Some(false),
                boot_current: Some(5),
                boot_order: vec![5, 4],
                entries: Vec::new(),
            },
            disks: parse::disks(
                r#"{"blockdevices":[{"name":"nvme0n1","type":"disk","size":512110190592,"log-sec":512,"phy-sec":512,"pttype":"gpt","serial":"S4EWNX0R123456","wwn":"eui.0025388b91b2c3d4","model":"Samsung SSD 970","ro":false}]}"#,
                |_| None,
            )
            .unwrap(),
            pools: Vec::new(),
            datasets: Vec::new(),
            boot_environments: Vec::new(),
            esps: Vec::new(),
            notes: vec!["pool rpool: /dev/disk/by-id/nvme-Samsung_SSD_970_S4EWNX0R123456-part2".into()],
        };
        let secrets = redact::Secrets {
            serials: vec!["S4EWNX0R123456".into()],
            wwns: vec!["eui.0025388b91b2c3d4".into()],
            hostnames: vec!["ann-laptop".into()],
            users: vec!["ann".into()],
        };
        let r = redacted(&report, &secrets);
        let json = serde_json::to_string(&r).unwrap();
        for secret in [
            "S4EWNX0R123456",
            "eui.0025388b91b2c3d4",
            "ann-laptop",
            "10.0.2.15",
        ] {
            assert!(!json.contains(secret), "{secret} in {json}");
        }
        assert_eq!(r.disks[0].serial.as_deref(), Some("<serial-1>"));
        assert_eq!(
            r.notes[0],
            "pool rpool: /dev/disk/by-id/nvme-Samsung_SSD_970_<serial-1>-part2"
        );
        assert_eq!(r.system.hostname, "<hostname-1>");
        assert_eq!(r.disks[0].size_bytes, 512110190592);
        assert!(
            r.summary()
                .contains("disk nvme0n1: 512110190592 bytes, 512/512 byte sectors")
        );
    }
}
