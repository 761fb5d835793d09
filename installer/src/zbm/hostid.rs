//! Hostids as ZFS and ZFSBootMenu store and pass them: /etc/hostid's four bytes (in the system
//! and in an initramfs, ZFSBootMenu's included), and the number `spl.spl_hostid=` and the SPL's
//! parameter hold.

/// A hostid as /etc/hostid stores it: four bytes, little-endian.
pub fn parse_hostid_file(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?))
}

/// A number as the kernel reads a module parameter (base 0: `0x` hex, a leading `0` octal,
/// else decimal): `spl.spl_hostid=` on the command line, the SPL's parameter, `zdb`'s label.
pub fn parse_kernel_number(text: &str) -> Option<u32> {
    let t = text.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok()
    } else if t.len() > 1 && t.starts_with('0') {
        u32::from_str_radix(&t[1..], 8).ok()
    } else {
        t.parse().ok()
    }
}
