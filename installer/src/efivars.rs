//! UEFI boot variables as the firmware holds them, read from efivarfs and decoded here (UEFI
//! 2.10 §3.1.3 EFI_LOAD_OPTION, §10.3 device path nodes), so the VM checks and `kldload report`
//! have exact values rather than one efibootmgr version's way of printing them.

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use std::path::Path;

/// Removes the variable at `path` in efivarfs, if it is there. efivarfs makes every variable
/// it does not know immutable, so its flag is cleared first (`chattr -i`: the ioctl without
/// unsafe code).
pub fn remove_variable(path: &Path) -> std::io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let chattr = std::process::Command::new("chattr")
        .arg("-i")
        .arg(path)
        .status()?;
    if !chattr.success() {
        return Err(std::io::Error::other(format!(
            "chattr -i {} failed ({chattr})",
            path.display()
        )));
    }
    std::fs::remove_file(path)
}

/// The vendor GUID of the global boot variables (Boot####, BootCurrent, BootOrder).
pub const GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// Where Linux shows the firmware's variables.
pub const EFIVARFS: &str = "/sys/firmware/efi/efivars";

/// One Boot#### variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadOption {
    /// The entry's label, e.g. "ZFSBootMenu".
    pub description: String,
    /// The GPT partition GUID of the device path's hard-drive node (lower case), if any.
    pub partition_guid: Option<String>,
    /// The device path's file path node, e.g. `\EFI\ZBM\VMLINUZ.EFI`.
    pub file: Option<String>,
    /// The optional data read as UTF-16 text (what `efibootmgr --unicode` wrote), without its
    /// terminating NUL; None when there is none.
    pub options: Option<String>,
}

/// The boot entries a running machine's firmware holds, and the one it booted this time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootVariables {
    /// BootCurrent.
    pub current: u16,
    /// Each Boot#### by its number.
    pub entries: Vec<(u16, LoadOption)>,
}

impl BootVariables {
    /// The entry the firmware booted, if it is still there.
    pub fn booted(&self) -> Option<&LoadOption> {
        self.entries
            .iter()
            .find(|(n, _)| *n == self.current)
            .map(|(_, e)| e)
    }
}

/// The boot variables as far as they decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadVariables {
    /// BootCurrent; none when it cannot be read.
    pub current: Option<u16>,
    /// Every Boot#### that decodes, by number.
    pub entries: Vec<(u16, LoadOption)>,
    /// Each variable that does not, and why.
    pub problems: Vec<String>,
}

/// What efivarfs at `dir` (on this machine) holds: one odd entry of a vendor's firmware costs
/// only itself.
pub fn read_lenient(dir: &Path) -> Result<ReadVariables> {
    let var = |name: &str| {
        let path = dir.join(format!("{name}-{GLOBAL_GUID}"));
        std::fs::read(&path).with_context(|| path.display().to_string())
    };
    let mut problems = Vec::new();
    let current = match var("BootCurrent").and_then(|v| parse_boot_current(&v)) {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(format!("BootCurrent: {e:#}"));
            None
        }
    };
    let mut entries = Vec::new();
    for name in boot_entry_names(dir)? {
        let number = u16::from_str_radix(&name[4..], 16)?;
        match var(&name).and_then(|v| parse_load_option(&v)) {
            Ok(option) => entries.push((number, option)),
            Err(e) => problems.push(format!("{name}: {e:#}")),
        }
    }
    entries.sort_by_key(|(n, _)| *n);
    Ok(ReadVariables {
        current,
        entries,
        problems,
    })
}

/// The names of the Boot#### variables in efivarfs at `dir`, sorted.
fn boot_entry_names(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| dir.display().to_string())?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let entry = name.strip_suffix(&format!("-{GLOBAL_GUID}"))?.to_string();
            let hex = entry.strip_prefix("Boot")?;
            (hex.len() == 4 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(entry)
        })
        .collect();
    names.sort();
    Ok(names)
}

/// BootOrder from efivarfs at `dir`: the entries' numbers in the order the firmware tries them.
pub fn read_boot_order(dir: &Path) -> Result<Vec<u16>> {
    let path = dir.join(format!("BootOrder-{GLOBAL_GUID}"));
    parse_boot_order(&std::fs::read(&path).with_context(|| path.display().to_string())?)
}

/// BootOrder's value: little-endian u16 entry numbers.
pub fn parse_boot_order(var: &[u8]) -> Result<Vec<u16>> {
    let v = value(var)?;
    ensure!(
        v.len() % 2 == 0,
        "BootOrder is {} bytes, not pairs",
        v.len()
    );
    Ok(v.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect())
}

/// Strips efivarfs's leading 4 bytes of variable attributes.
fn value(var: &[u8]) -> Result<&[u8]> {
    ensure!(var.len() >= 4, "shorter than its attributes");
    Ok(&var[4..])
}

/// BootCurrent: the entry the firmware booted this time.
pub fn parse_boot_current(var: &[u8]) -> Result<u16> {
    let v = value(var)?;
    ensure!(v.len() == 2, "BootCurrent is {} bytes, not 2", v.len());
    Ok(u16::from_le_bytes([v[0], v[1]]))
}

fn u16_at(b: &[u8], at: usize) -> Result<u16> {
    let s = b.get(at..at + 2).context("truncated")?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

/// UTF-16LE text up to its NUL (or the end); the text and the bytes it took, NUL included.
fn utf16z(b: &[u8]) -> Result<(String, usize)> {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    let used = (units.len() * 2 + 2).min(b.len());
    // Firmware puts binary data in load options too: shown as text, never refused.
    Ok((String::from_utf16_lossy(&units), used))
}

/// A GUID as text: the first three fields are little-endian in memory.
fn guid(b: &[u8]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10..16]
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    )
}

/// A Boot#### variable (with efivarfs's attribute bytes in front).
pub fn parse_load_option(var: &[u8]) -> Result<LoadOption> {
    let v = value(var)?;
    let path_len = u16_at(v, 4)? as usize;
    let (description, used) = utf16z(v.get(6..).context("no description")?)?;
    let path_start = 6 + used;
    let path = v
        .get(path_start..path_start + path_len)
        .context("the device path is cut short")?;
    let mut option = LoadOption {
        description,
        partition_guid: None,
        file: None,
        options: None,
    };
    let mut at = 0;
    while at + 4 <= path.len() {
        let (kind, sub, len) = (path[at], path[at + 1], u16_at(path, at + 2)? as usize);
        if len < 4 || at + len > path.len() {
            bail!("a device path node of {len} bytes at {at}");
        }
        let data = &path[at + 4..at + len];
        match (kind, sub) {
            // Media, hard drive: number u32, start u64, size u64, signature [16], format, type.
            (4, 1) if data.len() >= 38 && data[37] == 2 => {
                option.partition_guid = Some(guid(&data[20..36]));
            }
            (4, 4) => option.file = Some(utf16z(data)?.0),
            (0x7f, 0xff) => break,
            _ => {}
        }
        at += len;
    }
    let rest = &v[path_start + path_len..];
    if !rest.is_empty() {
        let (text, _) = utf16z(rest)?;
        option.options = Some(text);
    }
    Ok(option)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16()
            .chain([0])
            .flat_map(|u| u.to_le_bytes())
            .collect()
    }

    /// A Boot#### variable as efibootmgr writes one: attributes, then the load option.
    fn boot_var(label: &str, guid_bytes: [u8; 16], file: &str, options: Option<&str>) -> Vec<u8> {
        let mut hd = vec![4, 1, 42, 0];
        hd.extend(1u32.to_le_bytes());
        hd.extend(2048u64.to_le_bytes());
        hd.extend(1048576u64.to_le_bytes());
        hd.extend(guid_bytes);
        hd.extend([2, 2]);
        let f = utf16(file);
        let mut fp = vec![4, 4];
        fp.extend(((f.len() + 4) as u16).to_le_bytes());
        fp.extend(f);
        let path: Vec<u8> = [hd, fp, vec![0x7f, 0xff, 4, 0]].concat();
        let mut v = vec![7, 0, 0, 0];
        v.extend(1u32.to_le_bytes());
        v.extend((path.len() as u16).to_le_bytes());
        v.extend(utf16(label));
        v.extend(path);
        if let Some(o) = options {
            v.extend(utf16(o));
        }
        v
    }

    #[test]
    fn a_boot_entry_with_load_options() {
        let g = [
            0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        let var = boot_var(
            "ZFSBootMenu",
            g,
            "\\EFI\\ZBM\\VMLINUZ.EFI",
            Some("zbm.timeout=5 console=ttyS0,115200"),
        );
        let o = parse_load_option(&var).unwrap();
        assert_eq!(o.description, "ZFSBootMenu");
        assert_eq!(
            o.partition_guid.as_deref(),
            Some("12345678-9abc-def0-0102-030405060708")
        );
        assert_eq!(o.file.as_deref(), Some("\\EFI\\ZBM\\VMLINUZ.EFI"));
        assert_eq!(
            o.options.as_deref(),
            Some("zbm.timeout=5 console=ttyS0,115200")
        );
        let none = parse_load_option(&boot_var("X", g, "\\a.efi", None)).unwrap();
        assert_eq!(none.options, None);
        assert!(parse_load_option(&var[..20]).is_err());
    }

    #[test]
    fn boot_current_and_order() {
        assert_eq!(parse_boot_current(&[7, 0, 0, 0, 3, 0]).unwrap(), 3);
        assert!(parse_boot_current(&[7, 0, 0, 0, 3]).is_err());
        assert_eq!(
            parse_boot_order(&[7, 0, 0, 0, 5, 0, 4, 0, 1, 0]).unwrap(),
            [5, 4, 1]
        );
        assert!(parse_boot_order(&[7, 0, 0, 0, 5]).is_err());
    }

    #[test]
    fn variables_read_from_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let g = [0u8; 16];
        let put = |name: &str, bytes: &[u8]| {
            std::fs::write(dir.path().join(format!("{name}-{GLOBAL_GUID}")), bytes).unwrap()
        };
        put(
            "Boot0005",
            &boot_var("ZFSBootMenu", g, "\\EFI\\ZBM\\VMLINUZ.EFI", Some("x")),
        );
        put(
            "Boot0004",
            &boot_var("ZFSBootMenu (Backup)", g, "\\b.efi", None),
        );
        put("BootCurrent", &[7, 0, 0, 0, 5, 0]);
        put("BootOrder", &[7, 0, 0, 0, 5, 0, 4, 0]);
        put("BootOrderX", &[0]);
        put("Boot0007", &[7, 0, 0, 0, 1]);
        let ReadVariables {
            current,
            entries,
            problems,
        } = read_lenient(dir.path()).unwrap();
        assert_eq!(current, Some(5));
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].0, 4);
        let vars = BootVariables {
            current: 5,
            entries,
        };
        assert_eq!(vars.booted().unwrap().description, "ZFSBootMenu");
        // The cut-short entry is named, the others kept.
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("Boot0007"), "{problems:?}");
        assert_eq!(read_boot_order(dir.path()).unwrap(), [5, 4]);
    }
}
