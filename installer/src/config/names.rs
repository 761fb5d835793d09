//! Validated strings: every string from the answer file that ends up in an argv or a file, and
//! the patterns and URLs that choose what the install uses.
//!
//! Each type can only be built through its validating constructor (also used by serde), so a
//! value that reaches the plan can never start with `-` (and be read as an option), contain a
//! space, quote or newline (and become a second shell word or line), or name something ZFS or
//! the kernel would reject later, half-way through an install.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a name was refused: shown after the key that held it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

fn refuse(what: &str, value: &str, why: &str) -> NameError {
    NameError(format!("{what} {value:?} is not valid: {why}"))
}

macro_rules! validated_string {
    ($(#[doc = $doc:literal])* $name:ident, $check:ident) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        /// A string, described by the type's doc comment (its rules are checked when parsed).
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                super::reference::string_schema(&[$($doc),*])
            }
        }

        impl $name {
            /// Validates `value`, returning a message that names the problem when it is refused.
            pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
                let value = value.into();
                $check(&value)?;
                Ok(Self(value))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, NameError> {
                Self::new(value)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// Characters ZFS allows in a pool name or a dataset path component.
fn is_zfs_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

fn check_pool_name(v: &str) -> Result<(), NameError> {
    const WHAT: &str = "pool name";
    let first = v
        .chars()
        .next()
        .ok_or_else(|| refuse(WHAT, v, "it is empty"))?;
    if !first.is_ascii_alphabetic() {
        return Err(refuse(WHAT, v, "it must start with a letter"));
    }
    if v.len() > 200 {
        return Err(refuse(WHAT, v, "it is longer than 200 characters"));
    }
    if let Some(c) = v.chars().find(|c| !is_zfs_name_char(*c)) {
        return Err(refuse(
            WHAT,
            v,
            &format!("{c:?} is not allowed (use letters, digits, '_', '-', '.', ':')"),
        ));
    }
    // zpoolconcepts(7): "The pool names mirror, raidz, draid, spare and log are reserved, as
    // are names beginning with mirror, raidz, draid, and spare" (vdev type words).
    for reserved in ["mirror", "raidz", "draid", "spare"] {
        if v.starts_with(reserved) {
            return Err(refuse(
                WHAT,
                v,
                &format!("names starting with {reserved:?} are reserved by ZFS"),
            ));
        }
    }
    if v == "log" {
        return Err(refuse(WHAT, v, "the name \"log\" is reserved by ZFS"));
    }
    if v.len() >= 2 && v.starts_with('c') && v.as_bytes()[1].is_ascii_digit() {
        return Err(refuse(
            WHAT,
            v,
            "names like c0, c1... are reserved by ZFS (they look like device names)",
        ));
    }
    Ok(())
}

fn check_dataset_path(v: &str) -> Result<(), NameError> {
    const WHAT: &str = "dataset";
    if v.is_empty() {
        return Err(refuse(WHAT, v, "it is empty"));
    }
    if v.len() > 200 {
        return Err(refuse(WHAT, v, "it is longer than 200 characters"));
    }
    for component in v.split('/') {
        if component.is_empty() {
            return Err(refuse(
                WHAT,
                v,
                "it has an empty component (a leading, trailing or doubled '/'); name it relative to the pool, e.g. \"srv/www\"",
            ));
        }
        if component == "." || component == ".." {
            return Err(refuse(WHAT, v, "'.' and '..' are not dataset names"));
        }
        if component.starts_with('-') {
            return Err(refuse(WHAT, v, "a component may not start with '-'"));
        }
        if let Some(c) = component.chars().find(|c| !is_zfs_name_char(*c)) {
            return Err(refuse(
                WHAT,
                v,
                &format!("{c:?} is not allowed (use letters, digits, '_', '-', '.', ':')"),
            ));
        }
    }
    Ok(())
}

fn check_hostname(v: &str) -> Result<(), NameError> {
    const WHAT: &str = "hostname";
    if v.is_empty() {
        return Err(refuse(WHAT, v, "it is empty"));
    }
    if v.len() > 253 {
        return Err(refuse(WHAT, v, "it is longer than 253 characters"));
    }
    for label in v.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(refuse(
                WHAT,
                v,
                "each dot-separated label must be 1 to 63 characters long",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(refuse(WHAT, v, "a label may not start or end with '-'"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(refuse(
                WHAT,
                v,
                &format!("{c:?} is not allowed (use letters, digits and '-', RFC 1123)"),
            ));
        }
    }
    Ok(())
}

fn check_property_name(v: &str) -> Result<(), NameError> {
    const WHAT: &str = "ZFS property";
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_:.-".contains(c);
    if v.is_empty() || !v.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(refuse(WHAT, v, "it must start with a lowercase letter"));
    }
    if let Some(c) = v.chars().find(|c| !ok_char(*c)) {
        return Err(refuse(
            WHAT,
            v,
            &format!("{c:?} is not allowed in a property name"),
        ));
    }
    Ok(())
}

/// A value may be anything printable on one line: it always travels as one argv word
/// (`-o name=value`), and the shell printer quotes it.
fn check_one_line(what: &str, v: &str) -> Result<(), NameError> {
    if v.is_empty() {
        return Err(refuse(what, v, "it is empty"));
    }
    if v.starts_with('-') {
        return Err(refuse(what, v, "it may not start with '-'"));
    }
    if v.chars().any(char::is_control) {
        return Err(refuse(
            what,
            v,
            "it contains a control character (newline, tab...)",
        ));
    }
    Ok(())
}

fn check_property_value(v: &str) -> Result<(), NameError> {
    check_one_line("property value", v)
}

fn check_mountpoint(v: &str) -> Result<(), NameError> {
    const WHAT: &str = "mountpoint";
    if v == "none" || v == "legacy" {
        return Ok(());
    }
    check_one_line(WHAT, v)?;
    if !v.starts_with('/') {
        return Err(refuse(
            WHAT,
            v,
            "it must be an absolute path, \"none\" or \"legacy\"",
        ));
    }
    if v.split('/').any(|c| c == "..") {
        return Err(refuse(WHAT, v, "'..' is not allowed"));
    }
    if v.contains(char::is_whitespace) {
        return Err(refuse(WHAT, v, "it may not contain spaces"));
    }
    Ok(())
}

fn check_interface_name(v: &str) -> Result<(), NameError> {
    const WHAT: &str = "interface name";
    if v.is_empty() || v.len() > 15 {
        return Err(refuse(WHAT, v, "it must be 1 to 15 characters long"));
    }
    if v.starts_with('-') {
        return Err(refuse(WHAT, v, "it may not start with '-'"));
    }
    // '*' and '?' are allowed: systemd-networkd's Name= takes glob patterns.
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.-*?".contains(*c)))
    {
        return Err(refuse(WHAT, v, &format!("{c:?} is not allowed")));
    }
    Ok(())
}

fn check_mac_address(v: &str) -> Result<(), NameError> {
    let parts: Vec<&str> = v.split(':').collect();
    let valid = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if valid {
        Ok(())
    } else {
        Err(refuse(
            "MAC address",
            v,
            "write it as six hex pairs separated by ':', e.g. 52:54:00:12:34:56",
        ))
    }
}

fn check_timezone(v: &str) -> Result<(), NameError> {
    const WHAT: &str = "timezone";
    check_one_line(WHAT, v)?;
    if v.starts_with('/') || v.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err(refuse(
            WHAT,
            v,
            "give a name from the tz database, e.g. \"Europe/Paris\" or \"UTC\"",
        ));
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_+-/".contains(*c)))
    {
        return Err(refuse(WHAT, v, &format!("{c:?} is not allowed")));
    }
    Ok(())
}

fn check_locale(v: &str) -> Result<(), NameError> {
    const WHAT: &str = "locale";
    check_one_line(WHAT, v)?;
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.@-".contains(*c)))
    {
        return Err(refuse(
            WHAT,
            v,
            &format!("{c:?} is not allowed (e.g. \"en_US.UTF-8\")"),
        ));
    }
    Ok(())
}

fn check_password_hash(v: &str) -> Result<(), NameError> {
    const WHAT: &str = "root password hash";
    check_one_line(WHAT, v)?;
    let crypt_char = |c: char| c.is_ascii_alphanumeric() || "./$=,-".contains(c);
    if !v.starts_with('$') || !v.chars().all(crypt_char) {
        return Err(NameError(format!(
            "{WHAT} is not valid: give a crypt(3) hash such as the output of `openssl passwd -6` \
             or `mkpasswd -m yescrypt` (it starts with '$' and holds only letters, digits and ./$=,-), never the password itself"
        )));
    }
    Ok(())
}

fn check_mok_password_hash(v: &str) -> Result<(), NameError> {
    const WHAT: &str = "MokManager password hash";
    check_one_line(WHAT, v)?;
    let parts: Vec<&str> = v.split('$').collect();
    let b64 = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "./".contains(c))
    };
    if !(parts.len() == 4
        && parts[0].is_empty()
        && parts[1] == "6"
        && b64(parts[2])
        && b64(parts[3]))
    {
        return Err(NameError(format!(
            "{WHAT} is not valid: give a SHA-512 crypt hash (`$6$salt$hash`, as \
             `mokutil --generate-hash` or `openssl passwd -6` prints it; MokManager reads no \
             other kind), never the password itself"
        )));
    }
    Ok(())
}

fn check_ssh_key(v: &str) -> Result<(), NameError> {
    const WHAT: &str = "SSH authorized key";
    check_one_line(WHAT, v)?;
    let key_type = v.split_whitespace().next().unwrap_or_default();
    let known = key_type.starts_with("ssh-")
        || key_type.starts_with("ecdsa-")
        || key_type.starts_with("sk-");
    if !known || v.split_whitespace().count() < 2 {
        return Err(refuse(
            WHAT,
            v,
            "expected one public key line, e.g. \"ssh-ed25519 AAAA... user@host\"",
        ));
    }
    Ok(())
}

validated_string!(
    /// An absolute path to a file on the installing system, e.g. `/run/secrets/pool`.
    FilePath,
    check_file_path
);
validated_string!(
    /// A ZFS pool name, e.g. `rpool`.
    PoolName,
    check_pool_name
);
validated_string!(
    /// A dataset path relative to the pool, e.g. `ROOT/default` or `srv/www`.
    DatasetPath,
    check_dataset_path
);
validated_string!(
    /// The installed system's host name (RFC 1123).
    Hostname,
    check_hostname
);
validated_string!(
    /// A ZFS property name, native (`quota`) or user (`com.example:backup`).
    PropertyName,
    check_property_name
);
validated_string!(
    /// A ZFS property value: one printable line.
    PropertyValue,
    check_property_value
);
validated_string!(
    /// A dataset mountpoint: an absolute path, `none` or `legacy`.
    Mountpoint,
    check_mountpoint
);
validated_string!(
    /// A network interface name or systemd-networkd `Name=` glob.
    InterfaceName,
    check_interface_name
);
validated_string!(
    /// A MAC address, `52:54:00:12:34:56`.
    MacAddress,
    check_mac_address
);
validated_string!(
    /// A tz database name, `Europe/Paris`.
    Timezone,
    check_timezone
);
validated_string!(
    /// A locale, `en_US.UTF-8`.
    Locale,
    check_locale
);
validated_string!(
    /// A crypt(3) password hash.
    PasswordHash,
    check_password_hash
);
validated_string!(
    /// The hash of MokManager's one-time password: SHA-512 crypt (`$6$salt$hash`), the form
    /// `mokutil --generate-hash` and `openssl passwd -6` print and MokManager checks.
    MokPasswordHash,
    check_mok_password_hash
);
validated_string!(
    /// One OpenSSH public key line.
    SshPublicKey,
    check_ssh_key
);

fn check_file_path(v: &str) -> Result<(), NameError> {
    if !v.starts_with('/') || v.ends_with('/') || v.contains(['\n', '\0']) {
        return Err(refuse(
            "path",
            v,
            "give the absolute path of a file, on one line, e.g. /run/secrets/pool-passphrase",
        ));
    }
    Ok(())
}

fn check_device_path(v: &str) -> Result<(), NameError> {
    if !v.starts_with("/dev/") || v.contains(char::is_whitespace) {
        return Err(NameError(format!(
            "{v:?} is not a device path: use /dev/disk/by-id/... or /dev/<name>"
        )));
    }
    Ok(())
}

fn check_compression(v: &str) -> Result<(), NameError> {
    let levels = |prefix: &str, max: u32| {
        v.strip_prefix(prefix)
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=max).contains(&n))
    };
    let known = matches!(
        v,
        "on" | "off" | "lz4" | "zstd" | "gzip" | "zle" | "lzjb" | "zstd-fast"
    ) || levels("zstd-", 19)
        || levels("gzip-", 9)
        || levels("zstd-fast-", 1000);
    if !known {
        return Err(NameError(format!(
            "{v:?} is not a ZFS compression: use lz4, zstd, zstd-1..19, gzip, gzip-1..9, zle, lzjb, on or off"
        )));
    }
    Ok(())
}

fn check_glob(v: &str) -> Result<(), NameError> {
    glob::Pattern::new(v).map_err(|e| NameError(format!("bad pattern {v:?}: {e}")))?;
    Ok(())
}

fn check_http_url(v: &str) -> Result<(), NameError> {
    if !(v.starts_with("https://") || v.starts_with("http://")) || v.contains(char::is_whitespace) {
        return Err(NameError(format!("{v:?} is not an http(s) URL")));
    }
    Ok(())
}

fn check_sha256(v: &str) -> Result<(), NameError> {
    if !(v.len() == 64 && v.chars().all(|c| c.is_ascii_hexdigit())) {
        return Err(NameError(format!(
            "{v:?} is not a sha256: write its 64 hex digits"
        )));
    }
    Ok(())
}

fn check_kernel_commandline(v: &str) -> Result<(), NameError> {
    if v.chars().any(char::is_control) || v.contains(['"', '\'', '\\']) {
        return Err(NameError(
            "a kernel command line is one line without quotes or backslashes".into(),
        ));
    }
    Ok(())
}

fn check_serial_console(v: &str) -> Result<(), NameError> {
    let ok = v.starts_with("tty") && v.chars().all(|c| c.is_ascii_alphanumeric() || c == ',');
    if !ok {
        return Err(NameError(format!(
            "{v:?} is not a console: write e.g. \"ttyS0,115200\""
        )));
    }
    Ok(())
}

validated_string!(
    /// A block device's path, `/dev/disk/by-id/...` or `/dev/<name>`; whether it exists and is
    /// a whole disk is checked against the machine, before anything is written.
    DevicePath,
    check_device_path
);
validated_string!(
    /// A ZFS `compression` value: lz4, zstd, zstd-1..19, gzip-1..9, ...
    Compression,
    check_compression
);
validated_string!(
    /// A shell-style glob (`*`, `?`, `[...]`) matched against a whole udev value.
    GlobPattern,
    check_glob
);
validated_string!(
    /// An http(s) URL to download from.
    HttpUrl,
    check_http_url
);
validated_string!(
    /// A sha256 digest, 64 hex digits.
    Sha256Hex,
    check_sha256
);
validated_string!(
    /// A kernel command line: one line, no quotes or backslashes (it is stored in a ZFS
    /// property and in firmware load options, and read back by shells).
    KernelCommandLine,
    check_kernel_commandline
);
validated_string!(
    /// A serial console as the kernel names it, `ttyS0,115200`.
    SerialConsole,
    check_serial_console
);
validated_string!(
    /// A Linux kernel series, `6.12`: which of a ZFSBootMenu release's EFI files to install.
    KernelSeries,
    check_kernel_series
);

impl Compression {
    /// The pool feature this compression needs (`on` is lz4 on every pool with that feature,
    /// and on older ones lzjb).
    pub fn feature(&self) -> Option<&'static str> {
        let v = self.as_str();
        if v == "lz4" {
            Some("lz4_compress")
        } else if v == "zstd" || v.starts_with("zstd-") {
            Some("zstd_compress")
        } else {
            None
        }
    }
}

validated_string!(
    /// A ZFS pool feature's short name, as `zpool get` lists it after `feature@`
    /// (`large_dnode`, `encryption`): lowercase letters, digits and `_`.
    FeatureName,
    check_feature_name
);

fn check_feature_name(v: &str) -> Result<(), NameError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        return Err(NameError(format!(
            "{v:?} is not a pool feature: write its short name as `zpool get all` lists it \
             after feature@, e.g. \"large_dnode\""
        )));
    }
    Ok(())
}

fn check_kernel_series(v: &str) -> Result<(), NameError> {
    let numbers = |part: &str| {
        !part.is_empty() && part.len() <= 3 && part.bytes().all(|b| b.is_ascii_digit())
    };
    match v.split_once('.') {
        Some((major, minor)) if numbers(major) && numbers(minor) => Ok(()),
        _ => Err(NameError(format!(
            "{v:?} is not a kernel series: write major.minor, e.g. \"6.12\""
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_that_choose_what_the_install_uses() {
        assert!(DevicePath::new("/dev/disk/by-id/nvme-X").is_ok());
        assert!(
            DevicePath::new("vdb")
                .unwrap_err()
                .0
                .contains("not a device path")
        );
        assert!(Compression::new("zstd-19").is_ok() && Compression::new("gzip-10").is_err());
        assert!(
            Compression::new("fast")
                .unwrap_err()
                .0
                .contains("not a ZFS compression")
        );
        assert!(GlobPattern::new("Samsung*").is_ok() && GlobPattern::new("[a").is_err());
        assert!(
            HttpUrl::new("https://x.invalid/z.efi").is_ok() && HttpUrl::new("ftp://x").is_err()
        );
        assert!(Sha256Hex::new("a".repeat(64)).is_ok() && Sha256Hex::new("abc").is_err());
        assert!(KernelCommandLine::new("quiet zbm.timeout=5").is_ok());
        assert!(KernelCommandLine::new("a \"b\"").is_err());
        assert!(SerialConsole::new("ttyS0,115200").is_ok());
        assert!(KernelSeries::new("6.12").is_ok() && KernelSeries::new("5.4").is_ok());
        for bad in ["6", "6.12.1", "6.x", ".12", "6.", "linux6.12"] {
            assert!(KernelSeries::new(bad).is_err(), "{bad}");
        }
        assert!(
            SerialConsole::new("ttyS0 115200")
                .unwrap_err()
                .0
                .contains("ttyS0,115200")
        );
    }

    #[test]
    fn pool_names() {
        assert!(PoolName::new("rpool").is_ok());
        assert!(PoolName::new("tank_2.a:b-c").is_ok());
        // ZFS reserves "log" itself, not names that start with it (zpoolconcepts(7)).
        assert!(PoolName::new("logs").is_ok());
        for bad in [
            "", "-o", "1pool", "mirror0", "raidz", "c0d0", "r pool", "r;pool", "pool/x", "log",
            "spare1", "draid2",
        ] {
            assert!(PoolName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn dataset_paths() {
        assert!(DatasetPath::new("ROOT/default").is_ok());
        assert!(DatasetPath::new("srv/www-1").is_ok());
        for bad in [
            "", "/srv", "srv/", "a//b", "..", "a/-o", "a b", "a\nb", "x$y",
        ] {
            assert!(DatasetPath::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn hostnames() {
        assert!(Hostname::new("kldload-test").is_ok());
        assert!(Hostname::new("host.example.org").is_ok());
        for bad in ["", "-h", "a_b", "host-", "a..b", "a b", &"x".repeat(64)] {
            assert!(Hostname::new(bad).is_err(), "{bad:?} accepted");
        }
        let err = Hostname::new("bad_name").unwrap_err();
        assert!(err.to_string().contains("'_' is not allowed"), "{err}");
    }

    #[test]
    fn properties_and_mountpoints() {
        assert!(PropertyName::new("quota").is_ok());
        assert!(PropertyName::new("com.example:backup").is_ok());
        assert!(PropertyName::new("Quota").is_err());
        assert!(PropertyName::new("quota=1").is_err());
        assert!(PropertyValue::new("10G").is_ok());
        assert!(PropertyValue::new("-f").is_err());
        assert!(PropertyValue::new("a\nb").is_err());
        assert!(Mountpoint::new("/srv/www").is_ok());
        assert!(Mountpoint::new("none").is_ok());
        assert!(Mountpoint::new("srv").is_err());
        assert!(Mountpoint::new("/srv/../etc").is_err());
    }

    #[test]
    fn network_and_identity_values() {
        assert!(MacAddress::new("52:54:00:12:34:56").is_ok());
        assert!(MacAddress::new("52-54-00-12-34-56").is_err());
        assert!(InterfaceName::new("en*").is_ok());
        assert!(InterfaceName::new("eth0;reboot").is_err());
        assert!(Timezone::new("Europe/Paris").is_ok());
        assert!(Timezone::new("../../etc/passwd").is_err());
        assert!(Locale::new("en_US.UTF-8").is_ok());
        assert!(PasswordHash::new("$6$salt$hash").is_ok());
        assert!(PasswordHash::new("hunter2").is_err());
        assert!(MokPasswordHash::new("$6$kldloadsalt$Xx8USiAKNDy1zHBk").is_ok());
        for bad in [
            "hunter2",
            "$y$j9T$salt$hash",
            "$6$salt",
            "$6$$hash",
            "$6$salt$hash x",
        ] {
            assert!(MokPasswordHash::new(bad).is_err(), "{bad}");
        }
        assert!(SshPublicKey::new("ssh-ed25519 AAAAC3Nza test@host").is_ok());
        assert!(SshPublicKey::new("AAAAC3Nza").is_err());
    }
}
