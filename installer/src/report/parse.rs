//! The command outputs `kldload report` reads, parsed: `lsblk --json`, `zpool get -H -p`,
//! `zpool list -v -H -P`, `zfs get -H -p`, `zdb -l`, os-release. Pure functions over text, so
//! each is unit-tested on recorded output.

use super::{Dataset, Disk, LabelFacts, Partition, Vdev};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The columns `kldload report` asks `lsblk` for.
pub const LSBLK_COLUMNS: &str = "NAME,PATH,TYPE,SIZE,LOG-SEC,PHY-SEC,PTTYPE,PARTTYPE,\
                                 PARTTYPENAME,PARTLABEL,PARTUUID,FSTYPE,SERIAL,WWN,MODEL,RO";

#[derive(Deserialize)]
struct Lsblk {
    blockdevices: Vec<LsblkDevice>,
}

#[derive(Deserialize)]
struct LsblkDevice {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    size: Option<u64>,
    #[serde(rename = "log-sec")]
    log_sec: Option<u32>,
    #[serde(rename = "phy-sec")]
    phy_sec: Option<u32>,
    pttype: Option<String>,
    parttype: Option<String>,
    parttypename: Option<String>,
    partlabel: Option<String>,
    partuuid: Option<String>,
    fstype: Option<String>,
    serial: Option<String>,
    wwn: Option<String>,
    model: Option<String>,
    ro: Option<bool>,
    #[serde(default)]
    children: Vec<LsblkDevice>,
}

/// The disks of `lsblk --json --bytes -o LSBLK_COLUMNS`, with their partitions; `start` gives
/// a partition's first sector (512-byte units, as /sys/class/block/<part>/start has it).
/// Devices without a size (an empty drive) and loop, ram and zram devices are left out.
pub fn disks(lsblk_json: &str, start: impl Fn(&str) -> Option<u64>) -> Result<Vec<Disk>, String> {
    let parsed: Lsblk = serde_json::from_str(lsblk_json).map_err(|e| e.to_string())?;
    Ok(parsed
        .blockdevices
        .into_iter()
        .filter(|d| d.kind == "disk" && d.size.unwrap_or(0) > 0)
        .filter(|d| {
            !["loop", "ram", "zram"]
                .iter()
                .any(|p| d.name.starts_with(p))
        })
        .map(|d| {
            let partitions = d
                .children
                .iter()
                .filter(|c| c.kind == "part")
                .map(|c| Partition {
                    name: c.name.clone(),
                    start_sector: start(&c.name),
                    size_bytes: c.size.unwrap_or(0),
                    type_guid: c.parttype.clone(),
                    type_name: c.parttypename.clone(),
                    label: c.partlabel.clone(),
                    uuid: c.partuuid.clone(),
                    filesystem: c.fstype.clone(),
                })
                .collect();
            Disk {
                name: d.name,
                size_bytes: d.size.unwrap_or(0),
                logical_sector_bytes: d.log_sec,
                physical_sector_bytes: d.phy_sec,
                model: d.model.map(|m| m.trim().to_string()),
                serial: d.serial,
                wwn: d.wwn,
                read_only: d.ro.unwrap_or(false),
                partition_table: d.pttype,
                partitions,
            }
        })
        .collect())
}

/// `name\tproperty\tvalue\tsource` lines (`zpool get -H -p -o ...` and `zfs get -H -p -o
/// name,property,value,source`) by name, then property: (value, source).
pub fn properties(text: &str) -> BTreeMap<String, BTreeMap<String, (String, String)>> {
    let mut out: BTreeMap<String, BTreeMap<String, (String, String)>> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.splitn(4, '\t').collect();
        if let [name, property, value, source] = fields[..] {
            out.entry(name.to_string()).or_default().insert(
                property.to_string(),
                (value.to_string(), source.trim_end().to_string()),
            );
        }
    }
    out
}

/// The dataset properties a boot depends on, read for every dataset; with every
/// `org.zfsbootmenu:*` property, local or inherited.
pub const DATASET_PROPERTIES: [&str; 10] = [
    "type",
    "mountpoint",
    "canmount",
    "mounted",
    "encryption",
    "encryptionroot",
    "keylocation",
    "keyformat",
    "keystatus",
    "compression",
];

/// The datasets of `zfs get -H -p -o name,property,value,source -t filesystem,volume all`
/// (any snapshot in the text is left out).
pub fn datasets(text: &str) -> Vec<Dataset> {
    properties(text)
        .into_iter()
        .filter(|(name, _)| !name.contains('@'))
        .map(|(name, props)| {
            let get = |p: &str| {
                props
                    .get(p)
                    .map(|(v, _)| v.clone())
                    .filter(|v| v != "-" && !v.is_empty())
            };
            let zfsbootmenu = props
                .iter()
                .filter(|(p, _)| p.starts_with("org.zfsbootmenu:"))
                .map(|(p, (value, source))| (p.clone(), super::SourcedValue::new(value, source)))
                .collect();
            Dataset {
                kind: get("type").unwrap_or_default(),
                mountpoint: get("mountpoint"),
                canmount: get("canmount"),
                mounted: get("mounted").map(|m| m == "yes"),
                encryption: get("encryption"),
                encryption_root: get("encryptionroot"),
                keylocation: get("keylocation"),
                keyformat: get("keyformat"),
                keystatus: get("keystatus"),
                compression: get("compression"),
                zfsbootmenu,
                name,
            }
        })
        .collect()
}

/// The vdev tree of `zpool status -P <pool>`'s config section: below the pool's own line,
/// each vdev and device indented two spaces deeper than its parent; `logs`, `cache`,
/// `spares`, `dedup` and `special` open their classes at the pool's depth. (`zpool list -v
/// -H` prints every vdev line with one tab whatever its depth, so it cannot give the tree.)
pub fn topology(status: &str) -> Vec<Vdev> {
    let mut lines = status
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("config:"))
        .skip(1)
        .skip_while(|l| !l.trim_start().starts_with("NAME"))
        .skip(1);
    // The pool's own line sets the base indentation.
    let Some(pool) = lines.next() else {
        return Vec::new();
    };
    let indent = |l: &str| {
        l.replace('\t', "        ")
            .chars()
            .take_while(|c| *c == ' ')
            .count()
    };
    let base = indent(pool);
    let flat: Vec<(usize, Vdev)> = lines
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?;
            Some((
                indent(line).saturating_sub(base) / 2,
                Vdev {
                    name: name.to_string(),
                    size: None,
                    children: Vec::new(),
                },
            ))
        })
        .collect();
    nest(&flat)
}

/// Each item with the deeper items that follow it as its children.
fn nest(items: &[(usize, Vdev)]) -> Vec<Vdev> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let (depth, vdev) = &items[i];
        let end = items[i + 1..]
            .iter()
            .position(|(d, _)| d <= depth)
            .map_or(items.len(), |p| i + 1 + p);
        let mut vdev = vdev.clone();
        vdev.children = nest(&items[i + 1..end]);
        out.push(vdev);
        i = end;
    }
    out
}

/// The facts of `zdb -l <device>` a boot depends on (its first label).
pub fn label(text: &str) -> LabelFacts {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let rest = l.trim().strip_prefix(key)?.strip_prefix(':')?;
            Some(rest.trim().trim_matches('\'').to_string())
        })
    };
    LabelFacts {
        pool: field("name"),
        state: field("state"),
        hostid: field("hostid")
            .and_then(|h| crate::zbm::hostid::parse_kernel_number(&h))
            .map(|h| format!("0x{h:08x}")),
        hostname: field("hostname"),
        txg: field("txg"),
        version: field("version"),
    }
}

/// A pool `zpool import` lists as importable: its name and numeric id (two pools may share a
/// name; the id tells them apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Importable {
    pub name: String,
    pub id: Option<String>,
}

/// The pools `zpool import` (without arguments) lists as importable, in its order.
pub fn importable_pools(text: &str) -> Vec<Importable> {
    let mut pools: Vec<Importable> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("pool:").map(str::trim) {
            if !name.is_empty() {
                pools.push(Importable {
                    name: name.to_string(),
                    id: None,
                });
            }
        } else if let Some(id) = line.strip_prefix("id:").map(str::trim)
            && let Some(last) = pools.last_mut()
            && last.id.is_none()
            && !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
        {
            last.id = Some(id.to_string());
        }
    }
    pools
}

/// `KEY=value` lines of os-release, quotes removed.
pub fn os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lsblk --json --bytes -o LSBLK_COLUMNS` on kldload's installed VM (util-linux 2.41).
    const LSBLK: &str = r#"{
   "blockdevices": [
      {"name":"sr0","path":"/dev/sr0","type":"rom","size":1073741312,"log-sec":2048,"phy-sec":2048,"pttype":null,"parttype":null,"parttypename":null,"partlabel":null,"partuuid":null,"fstype":null,"serial":"QM00003","wwn":null,"model":"QEMU DVD-ROM","ro":false},
      {"name":"zram0","path":"/dev/zram0","type":"disk","size":0,"log-sec":4096,"phy-sec":4096,"pttype":null,"parttype":null,"parttypename":null,"partlabel":null,"partuuid":null,"fstype":null,"serial":null,"wwn":null,"model":null,"ro":false},
      {"name":"vda","path":"/dev/vda","type":"disk","size":17179869184,"log-sec":512,"phy-sec":512,"pttype":"gpt","parttype":null,"parttypename":null,"partlabel":null,"partuuid":null,"fstype":null,"serial":"kldload-target","wwn":null,"model":null,"ro":false,
         "children": [
            {"name":"vda1","path":"/dev/vda1","type":"part","size":536870912,"log-sec":512,"phy-sec":512,"pttype":"gpt","parttype":"c12a7328-f81f-11d2-ba4b-00a0c93ec93b","parttypename":"EFI System","partlabel":"EFI","partuuid":"762943d0-2e69-4fb0-bada-793c539f61e8","fstype":"vfat","serial":null,"wwn":null,"model":null,"ro":false},
            {"name":"vda2","path":"/dev/vda2","type":"part","size":16641932800,"log-sec":512,"phy-sec":512,"pttype":"gpt","parttype":"6a898cc3-1dd2-11b2-99a6-080020736631","parttypename":"Solaris /usr & Apple ZFS","partlabel":"rpool","partuuid":"0f4c1a5e-4a5b-4c8e-9a3d-2f0e1b7c6d5a","fstype":"zfs_member","serial":null,"wwn":null,"model":null,"ro":false}
         ]
      }
   ]
}"#;

    #[test]
    fn disks_from_lsblk() {
        let disks = disks(LSBLK, |p| (p == "vda1").then_some(2048)).unwrap();
        assert_eq!(disks.len(), 1, "{disks:?}");
        let vda = &disks[0];
        assert_eq!(vda.size_bytes, 16 << 30);
        assert_eq!(vda.logical_sector_bytes, Some(512));
        assert_eq!(vda.partition_table.as_deref(), Some("gpt"));
        assert_eq!(vda.serial.as_deref(), Some("kldload-target"));
        assert_eq!(vda.partitions.len(), 2);
        assert_eq!(vda.partitions[0].start_sector, Some(2048));
        assert_eq!(vda.partitions[0].size_bytes, 512 << 20);
        assert_eq!(vda.partitions[0].type_name.as_deref(), Some("EFI System"));
        assert_eq!(vda.partitions[1].filesystem.as_deref(), Some("zfs_member"));
        assert!(super::disks("not json", |_| None).is_err());
    }

    #[test]
    fn datasets_with_zfsbootmenu_properties() {
        let text = "rpool\ttype\tfilesystem\t-\n\
            rpool\tmountpoint\tnone\tlocal\n\
            rpool/ROOT\torg.zfsbootmenu:commandline\tquiet console=ttyS0,115200\tlocal\n\
            rpool/ROOT/default\ttype\tfilesystem\t-\n\
            rpool/ROOT/default\tmountpoint\t/\tlocal\n\
            rpool/ROOT/default\tcanmount\tnoauto\tlocal\n\
            rpool/ROOT/default\tmounted\tyes\t-\n\
            rpool/ROOT/default\tencryption\toff\tdefault\n\
            rpool/ROOT/default\tkeylocation\tnone\tdefault\n\
            rpool/ROOT/default\tencryptionroot\t-\t-\n\
            rpool/ROOT/default\torg.zfsbootmenu:commandline\tquiet console=ttyS0,115200\tinherited from rpool/ROOT\n\
            rpool/ROOT/default@factory\ttype\tsnapshot\t-\n";
        let d = datasets(text);
        assert_eq!(
            d.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["rpool", "rpool/ROOT", "rpool/ROOT/default"]
        );
        let be = &d[2];
        assert_eq!(be.mountpoint.as_deref(), Some("/"));
        assert_eq!(be.canmount.as_deref(), Some("noauto"));
        assert_eq!(be.mounted, Some(true));
        assert_eq!(be.encryption_root, None);
        let kcl = &be.zfsbootmenu["org.zfsbootmenu:commandline"];
        assert_eq!(kcl.value, "quiet console=ttyS0,115200");
        assert_eq!(kcl.source, "inherited from rpool/ROOT");
    }

    #[test]
    fn a_mirror_and_a_log_from_zpool_status() {
        let status = "  pool: rpool\n state: ONLINE\nconfig:\n\n\
            \tNAME                                             STATE     READ WRITE CKSUM\n\
            \trpool                                            ONLINE       0     0     0\n\
            \t  mirror-0                                       ONLINE       0     0     0\n\
            \t    /dev/disk/by-id/virtio-kldload-target-part2  ONLINE       0     0     0\n\
            \t    /dev/disk/by-id/virtio-kldload-extra-0-part2 ONLINE       0     0     0\n\
            \tlogs\t\n\
            \t  /dev/vdc                                       ONLINE       0     0     0\n\
            \n\
            errors: No known data errors\n";
        let t = topology(status);
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!(t[0].name, "mirror-0");
        assert_eq!(t[0].children.len(), 2);
        assert_eq!(
            t[0].children[1].name,
            "/dev/disk/by-id/virtio-kldload-extra-0-part2"
        );
        assert_eq!(t[1].name, "logs");
        assert_eq!(t[1].children[0].name, "/dev/vdc");
        // One disk, as the VM test's report has it.
        let single = "config:\n\n\tNAME         STATE     READ WRITE CKSUM\n\
            \trpool        ONLINE       0     0     0\n\
            \t  /dev/vda2  ONLINE       0     0     0\n\nerrors: No known data errors\n";
        let t = topology(single);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].name, "/dev/vda2");
        assert!(t[0].children.is_empty());
        assert!(topology("").is_empty());
    }

    #[test]
    fn a_label_s_facts() {
        let text = "------------------------------------\n\
            LABEL 0\n\
            ------------------------------------\n\
            \x20   version: 5000\n\
            \x20   name: 'rpool'\n\
            \x20   state: 1\n\
            \x20   txg: 1234\n\
            \x20   pool_guid: 9219027250690550647\n\
            \x20   hostid: 12235020\n\
            \x20   hostname: 'kldload-test'\n";
        let l = label(text);
        assert_eq!(l.pool.as_deref(), Some("rpool"));
        assert_eq!(l.state.as_deref(), Some("1"));
        assert_eq!(l.hostid.as_deref(), Some("0x00bab10c"));
        assert_eq!(l.hostname.as_deref(), Some("kldload-test"));
        assert_eq!(l.txg.as_deref(), Some("1234"));
    }

    #[test]
    fn pools_zpool_import_lists() {
        // As zpool import prints them on kldload's live medium (ZFS 2.3), two pools.
        let text = "   pool: rpool\n     id: 1302386331410183409\n  state: ONLINE\n\
                    status: The pool was last accessed by another system.\n action: The pool \
                    can be imported using its name or numeric identifier and\n\tthe '-f' flag.\n\
                    config:\n\n\trpool       ONLINE\n\t  vda2      ONLINE\n\n   pool: tank\n\
                    \x20    id: 42\n  state: ONLINE\n config:\n\n\ttank  ONLINE\n\t  vdb  ONLINE\n";
        let listed = importable_pools(text);
        let named: Vec<(&str, Option<&str>)> = (listed.iter())
            .map(|p| (p.name.as_str(), p.id.as_deref()))
            .collect();
        assert_eq!(
            named,
            [("rpool", Some("1302386331410183409")), ("tank", Some("42"))]
        );
        assert!(importable_pools("no pools available to import\n").is_empty());
    }

    #[test]
    fn os_release_fields() {
        let r = os_release("PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nID=debian\n");
        assert_eq!(r["PRETTY_NAME"], "Debian GNU/Linux 13 (trixie)");
        assert_eq!(r["ID"], "debian");
    }
}
