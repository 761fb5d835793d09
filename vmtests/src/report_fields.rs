//! What `vm-repro --from-report` does with each field of a `kldload report`, by the field's
//! path: reproduced by the generated scenario (and how), or not (and why). Nothing is left
//! unsaid: a unit test walks every field of a report and fails on one this table does not name,
//! and on a name no report has. The generated scenario's description lists the fields not
//! reproduced with their reasons.
//!
//! Paths: `pools[].labels[].hostid` is that field of every label of every pool; `{}` stands for
//! the keys of a map (`pools[].features{}`: every feature); in a map of records, `{}` alone is
//! the keys themselves (`esps[].files{}`: every file's path).

/// What the generated scenario does with one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Reproduced, and how.
    Reproduced(&'static str),
    /// Not reproduced, and why.
    NotReproduced(&'static str),
}

use Field::{NotReproduced as Not, Reproduced as Made};

const ABOUT_THE_REPORT: Field = Not("about the report itself, not the machine");
const RUNNING_SYSTEM: Field = Not(
    "the system the report ran on (a rescue system's is not the machine's); the VM runs \
     kldload's image",
);
const HARDWARE: Field = Not("hardware: the VM's disks are QEMU's virtio disks");
const FIRMWARE: Field = Not("the firmware: the VM's is OVMF, its Secure Boot as the scenario's");
/// The entries for files on the pool's disks: made with efibootmgr in OVMF's store.
const FIRMWARE_ENTRY: Field =
    Made("each entry for a file on the pool's disks: efibootmgr on the same disk's ESP");
/// The files are made by path on the same disk's ESP, their bytes are not.
const ESP_FILE_BYTES: Field = Not(
    "a file's bytes: each ZFSBootMenu is the VM's (kldload's 3.1.0, or the one built with ZFS \
     2.1); another file's bytes are not in a report, and the file is listed as not made",
);
const ZFSBOOTMENU_BUILD: Field = Not(
    "ZFSBootMenu's build: kldload's (3.1.0, its command line and hostid), or the one built \
     with ZFS 2.1",
);
const LABEL_DETAIL: Field = Not("a label's bookkeeping: made by ZFS as the pool is used");

/// Every field of a report (format 1) and what `--from-report` does with it.
pub const FIELDS: &[(&str, Field)] = &[
    ("format", ABOUT_THE_REPORT),
    ("kldload", ABOUT_THE_REPORT),
    ("redacted", ABOUT_THE_REPORT),
    ("taken_on", ABOUT_THE_REPORT),
    ("notes[]", ABOUT_THE_REPORT),
    ("system.distribution", RUNNING_SYSTEM),
    ("system.distribution_id", RUNNING_SYSTEM),
    ("system.distribution_version", RUNNING_SYSTEM),
    ("system.kernel", RUNNING_SYSTEM),
    ("system.zfs_module", RUNNING_SYSTEM),
    ("system.cmdline", RUNNING_SYSTEM),
    ("system.hostname", RUNNING_SYSTEM),
    (
        "hostid.etc_hostid",
        Made("when taken on the machine and its boot environment's is not known: zgenhostid"),
    ),
    (
        "hostid.spl_hostid",
        Made("through the label's hostid, which ZFSBootMenu imports with and passes on"),
    ),
    ("firmware.uefi", FIRMWARE),
    ("firmware.secure_boot", FIRMWARE),
    (
        "firmware.boot_current",
        Not("which entry booted follows from the entries and the order"),
    ),
    (
        "firmware.boot_order[]",
        Made("the reproduced entries first, in the report's order; OVMF's own after"),
    ),
    (
        "firmware.entries[].number",
        Not("numbers are the firmware's bookkeeping; the order is reproduced"),
    ),
    ("firmware.entries[].description", FIRMWARE_ENTRY),
    (
        "firmware.entries[].partition_guid",
        Made("as the disk of the pool holding that partition"),
    ),
    ("firmware.entries[].file", FIRMWARE_ENTRY),
    ("firmware.entries[].options", FIRMWARE_ENTRY),
    ("disks[].name", HARDWARE),
    ("disks[].size_bytes", Not("scaled to the VM's 16 GiB disks")),
    (
        "disks[].logical_sector_bytes",
        Made("each disk of the root pool with 512- or 4096-byte sectors"),
    ),
    (
        "disks[].physical_sector_bytes",
        Not("QEMU's disks here have physical sectors of their logical size (no 512e disk)"),
    ),
    ("disks[].model", HARDWARE),
    ("disks[].serial", HARDWARE),
    ("disks[].wwn", HARDWARE),
    ("disks[].read_only", HARDWARE),
    ("disks[].partition_table", Not("kldload's GPT")),
    ("disks[].partitions[].name", HARDWARE),
    (
        "disks[].partitions[].start_sector",
        Not("kldload's partitions"),
    ),
    (
        "disks[].partitions[].size_bytes",
        Not("kldload's partitions"),
    ),
    (
        "disks[].partitions[].type_guid",
        Not("kldload's partitions"),
    ),
    (
        "disks[].partitions[].type_name",
        Not("kldload's partitions"),
    ),
    ("disks[].partitions[].label", Not("kldload's partitions")),
    ("disks[].partitions[].uuid", Not("kldload's partitions")),
    (
        "disks[].partitions[].filesystem",
        Made("which disks hold the pool, in a report without `devices`"),
    ),
    (
        "pools[].name",
        Made("the root pool's name; other pools are not made"),
    ),
    ("pools[].health", Not("the pool's state as ZFS finds it")),
    (
        "pools[].bootfs",
        Made("the default boot environment renamed into place, zpool bootfs"),
    ),
    ("pools[].compatibility", Made("zpool set compatibility")),
    (
        "pools[].properties{}",
        Not("pool properties other than bootfs and compatibility: kldload's"),
    ),
    (
        "pools[].features{}",
        Made(
            "the enabled ones: the pool created with those the VM's ZFS knows, the rest \
             enabled after",
        ),
    ),
    (
        "pools[].topology[].name",
        Made("the root pool's layout (single, stripe, mirror, raidz1, raidz2)"),
    ),
    ("pools[].topology[].size", Not("scaled to the VM's disks")),
    (
        "pools[].topology[].children[]",
        Made("as many disks in the vdev"),
    ),
    ("pools[].labels[].device", HARDWARE),
    (
        "pools[].labels[].hostid",
        Made("another host's import made from the live medium under that hostid"),
    ),
    (
        "pools[].labels[].state",
        Made("an exported pool exported from the live medium"),
    ),
    ("pools[].labels[].pool", Made("as the pool's name")),
    ("pools[].labels[].hostname", LABEL_DETAIL),
    ("pools[].labels[].txg", LABEL_DETAIL),
    ("pools[].labels[].version", LABEL_DETAIL),
    (
        "pools[].devices[]",
        Made("ties the pool to its disks' sector sizes"),
    ),
    ("pools[].status", Not("the pool's state as ZFS finds it")),
    (
        "datasets[].name",
        Made("the boot environments and the datasets above them; kldload's others"),
    ),
    ("datasets[].kind", Not("volumes are not made")),
    (
        "datasets[].mountpoint",
        Made("every boot environment's: / or legacy (`zfs set -u`)"),
    ),
    (
        "datasets[].canmount",
        Made("every boot environment's: on, off or noauto (`zfs set -u`)"),
    ),
    (
        "datasets[].mounted",
        Not("the state of the system the report ran on"),
    ),
    ("datasets[].encryption", Not("kldload's aes-256-gcm")),
    (
        "datasets[].encryption_root",
        Made("the boot environment's, at the pool's root when it was elsewhere"),
    ),
    (
        "datasets[].keylocation",
        Made("the encryption root's: prompt, or a key file (a copy of kldload's)"),
    ),
    (
        "datasets[].keyformat",
        Not("a passphrase, which the harness types; another is named in except"),
    ),
    (
        "datasets[].keystatus",
        Not("the state of the system the report ran on"),
    ),
    (
        "datasets[].compression",
        Made("the pool's root dataset's, inherited below"),
    ),
    (
        "datasets[].zfsbootmenu{}",
        Made("each local org.zfsbootmenu:* property by name"),
    ),
    (
        "datasets[].zfsbootmenu{}.value",
        Made("every local org.zfsbootmenu:* property, empty values too"),
    ),
    (
        "datasets[].zfsbootmenu{}.source",
        Made("local ones set, kldload's own inherited where the report has none"),
    ),
    (
        "boot_environments[].dataset",
        Made("renamed or cloned into place"),
    ),
    ("boot_environments[].running", RUNNING_SYSTEM),
    ("boot_environments[].distribution", Not("kldload's image")),
    (
        "boot_environments[].etc_hostid",
        Made("the default boot environment's, zgenhostid; the others are its clones"),
    ),
    (
        "boot_environments[].boot_files{}",
        Not("files of /boot other than the kernel pairs"),
    ),
    (
        "boot_environments[].kernels[].kernel",
        Made(
            "the default boot environment's, by file name: copies of the VM's kernel; the \
             other boot environments are its clones",
        ),
    ),
    (
        "boot_environments[].kernels[].initramfs",
        Made("by file name: copies of the VM's initramfs, with zfs.ko or without"),
    ),
    (
        "boot_environments[].kernels[].initramfs_has_zfs",
        Made("each kernel's: the VM's initramfs, or one made without zfs.ko"),
    ),
    (
        "boot_environments[].kernels[].initramfs_has_key_file",
        Made("the default kernel's: update-initramfs with the key file moved away"),
    ),
    (
        "boot_environments[].kernels[].initramfs_hostid",
        Made("the default kernel's: update-initramfs under that hostid"),
    ),
    (
        "boot_environments[].default_kernel",
        Made("follows from the kernels' names and the pin"),
    ),
    (
        "boot_environments[].default_kernel_reason",
        Made("as default_kernel"),
    ),
    (
        "boot_environments[].commandline",
        Made("follows from the org.zfsbootmenu:commandline properties"),
    ),
    (
        "boot_environments[].unreadable",
        Not("the state of the system the report ran on"),
    ),
    ("esps[].partition", HARDWARE),
    ("esps[].partition_uuid", HARDWARE),
    ("esps[].mounted_at", RUNNING_SYSTEM),
    (
        "esps[].files{}",
        Made("each path on the same disk's ESP (ZFSBootMenu files), the VM's other files removed"),
    ),
    ("esps[].files{}.size", ESP_FILE_BYTES),
    ("esps[].files{}.sha256", ESP_FILE_BYTES),
    (
        "esps[].zfsbootmenu{}",
        Made("each ZFSBootMenu file's path, on the same disk's ESP"),
    ),
    ("esps[].zfsbootmenu{}.cmdline", ZFSBOOTMENU_BUILD),
    ("esps[].zfsbootmenu{}.signed", ZFSBOOTMENU_BUILD),
    ("esps[].zfsbootmenu{}.hostid", ZFSBOOTMENU_BUILD),
    (
        "esps[].zfsbootmenu{}.zfs_features.name",
        Made("the ZFSBootMenu built with ZFS 2.1 when the report's reads no more"),
    ),
    (
        "esps[].zfsbootmenu{}.zfs_features.features[]",
        Made("as zfs_features.name"),
    ),
    ("esps[].zfsbootmenu{}.release.version", ZFSBOOTMENU_BUILD),
    ("esps[].zfsbootmenu{}.release.build_id", ZFSBOOTMENU_BUILD),
    ("esps[].zfsbootmenu{}.kernel", ZFSBOOTMENU_BUILD),
    ("esps[].zfsbootmenu{}.zfs_module", ZFSBOOTMENU_BUILD),
    ("esps[].zfsbootmenu{}.boot_trial", ZFSBOOTMENU_BUILD),
];

/// The fields that are maps (their keys are names, not fields): `{}` in a path.
const MAPS: [&str; 6] = [
    "pools[].properties",
    "pools[].features",
    "datasets[].zfsbootmenu",
    "boot_environments[].boot_files",
    "esps[].files",
    "esps[].zfsbootmenu",
];

/// The paths of every leaf field of `value` (a report as JSON), `[]` for arrays' items and
/// `{}` for maps' keys; an empty array is a leaf of its own (an empty map has no fields).
pub fn field_paths(value: &serde_json::Value) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    walk(value, String::new(), &mut out);
    out
}

fn walk(v: &serde_json::Value, path: String, out: &mut std::collections::BTreeSet<String>) {
    use serde_json::Value;
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match v {
        Value::Object(map) if MAPS.contains(&path.as_str()) => {
            let inner = format!("{path}{{}}");
            // A map of records: its keys (a property's name, a file's path) are a field too.
            if map.values().any(|x| x.is_object()) {
                out.insert(inner.clone());
            }
            for x in map.values() {
                walk(x, inner.clone(), out);
            }
        }
        Value::Object(map) => {
            for (k, x) in map {
                walk(x, join(k), out);
            }
        }
        Value::Array(items) => {
            let leaf = format!("{path}[]");
            if items.is_empty() || items.iter().all(|x| !x.is_object()) {
                out.insert(leaf.clone());
            }
            // A vdev's children are vdevs: their fields are the vdev's.
            let inner = path.strip_suffix(".children").map_or(leaf, String::from);
            for x in items.iter().filter(|x| x.is_object()) {
                walk(x, inner.clone(), out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

/// How many fields the table says are reproduced, and how many it lists as not.
pub fn counts() -> (usize, usize) {
    let made = FIELDS
        .iter()
        .filter(|(_, f)| matches!(f, Field::Reproduced(_)))
        .count();
    (made, FIELDS.len() - made)
}

/// The fields not reproduced, each with why: for a generated scenario's description.
pub fn not_reproduced() -> Vec<String> {
    FIELDS
        .iter()
        .filter_map(|(path, f)| match f {
            Field::NotReproduced(why) => Some(format!("`{path}`: {why}")),
            Field::Reproduced(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kldload::report::TakenOn;

    /// Every field of a report, each named by the table, and no name the report lacks.
    #[test]
    fn every_field_of_a_report_is_reproduced_or_listed() {
        let mut report = crate::recorded::report();
        // The recorded report predates some fields: set them, so they are walked too.
        report.taken_on = Some(TakenOn::Rescue);
        for be in &mut report.boot_environments {
            be.etc_hostid = Some("0x00bab10c".into());
        }
        report.notes.push("a note".into());
        let mut vdev = report.pools[0].topology[0].clone();
        vdev.children = vec![vdev.clone()];
        report.pools[0].topology.push(vdev);
        let paths = field_paths(&serde_json::to_value(&report).unwrap());
        let named: std::collections::BTreeSet<String> =
            FIELDS.iter().map(|(p, _)| p.to_string()).collect();
        let unnamed: Vec<&String> = paths.difference(&named).collect();
        assert!(
            unnamed.is_empty(),
            "fields neither reproduced nor listed (add each to FIELDS): {unnamed:?}"
        );
        let stale: Vec<&String> = named.difference(&paths).collect();
        assert!(
            stale.is_empty(),
            "FIELDS names fields no report has: {stale:?}"
        );
        let (made, not) = counts();
        assert_eq!(made + not, paths.len());
    }

    #[test]
    fn paths_name_maps_and_arrays() {
        let v = serde_json::json!({
            "pools": [{"features": {"a": "active"}, "topology": [{"children": []}]}],
            "firmware": {"boot_order": [1, 2]}
        });
        let paths: Vec<String> = field_paths(&v).into_iter().collect();
        assert_eq!(
            paths,
            [
                "firmware.boot_order[]",
                "pools[].features{}",
                "pools[].topology[].children[]"
            ]
        );
    }
}
