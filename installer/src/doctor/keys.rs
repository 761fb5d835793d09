//! The key file an encrypted boot environment's initramfs needs. ZFSBootMenu asks for the
//! passphrase and unlocks the pool, then starts the boot environment's kernel, which imports
//! the pool again: its initramfs loads the key from the encryption root's `keylocation` file.
//! When that file is not in it, some initramfs ask a second time (zbm-dev/zfsbootmenu #785);
//! Debian's cannot load the key ("Key load error: Failed to open key material file") and stops
//! in its shell, where the passphrase is typed again (scenario `encryption-asked-twice`).
//! kldload's install puts the key file in /etc/zfs/keys/ and the initramfs (Debian's
//! zfs-initramfs copies /etc/zfs into it); an initramfs rebuilt while the file was away, or by
//! a tool that leaves it out, loses it.

/// What the doctor read about the boot environment's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReadings {
    /// The boot environment's encryption root; none when it is not encrypted.
    pub encryption_root: Option<String>,
    /// That root's `keylocation` (`prompt`, `file:///...`).
    pub keylocation: String,
    /// The initramfs ZFSBootMenu boots it with by default (a path in /boot).
    pub initramfs: Option<String>,
    /// Whether that initramfs has the key file (None: not read, or no file to look for).
    pub in_initramfs: Option<Result<bool, String>>,
}

/// The key file a `keylocation` names, as a path inside an initramfs (no leading `/`).
pub fn key_file_in_initramfs(keylocation: &str) -> Option<String> {
    keylocation
        .strip_prefix("file://")
        .map(|p| p.trim_start_matches('/').to_string())
}

/// The reading line and the problem, if any: a key file the default initramfs lacks.
pub fn judge(be: &str, r: &KeyReadings) -> (Option<String>, Option<String>) {
    let Some(root) = &r.encryption_root else {
        return (None, None);
    };
    let initramfs = r.initramfs.as_deref().unwrap_or("(none)");
    let found = match &r.in_initramfs {
        None if r.keylocation == "prompt" => {
            "keylocation=prompt: its boot asks after ZFSBootMenu did".to_string()
        }
        None => format!("keylocation={}", r.keylocation),
        Some(Ok(true)) => format!("the key file is in /boot/{initramfs}"),
        Some(Ok(false)) => format!("the key file is NOT in /boot/{initramfs}"),
        Some(Err(why)) => format!("/boot/{initramfs} not readable: {why}"),
    };
    let reading = format!("boot environment {be}: encryption root {root}, {found}");
    if r.in_initramfs != Some(Ok(false)) {
        return (Some(reading), None);
    }
    let file = r.keylocation.trim_start_matches("file://");
    let version = initramfs
        .strip_prefix("initrd.img-")
        .unwrap_or(initramfs)
        .to_string();
    let problem = format!(
        "the initramfs ZFSBootMenu boots {be} with, /boot/{initramfs}, has no {file}, the key \
         file of its encryption root {root} (keylocation={}): after ZFSBootMenu's prompt the \
         boot cannot load the key and stops, or asks for the passphrase a second time. fix: \
         update-initramfs -u -k {version} (with {file} in place)",
        r.keylocation
    );
    (Some(reading), Some(problem))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readings(in_initramfs: Option<Result<bool, String>>) -> KeyReadings {
        KeyReadings {
            encryption_root: Some("rpool".into()),
            keylocation: "file:///etc/zfs/keys/rpool.key".into(),
            initramfs: Some("initrd.img-6.12.48+deb13-amd64".into()),
            in_initramfs,
        }
    }

    #[test]
    fn a_key_file_the_initramfs_lacks_is_a_problem() {
        assert_eq!(
            key_file_in_initramfs("file:///etc/zfs/keys/rpool.key").as_deref(),
            Some("etc/zfs/keys/rpool.key")
        );
        assert_eq!(key_file_in_initramfs("prompt"), None);
        let (reading, problem) = judge("rpool/ROOT/default", &readings(Some(Ok(false))));
        assert!(
            reading
                .unwrap()
                .contains("NOT in /boot/initrd.img-6.12.48+deb13-amd64")
        );
        let problem = problem.expect("a problem");
        assert!(
            problem.starts_with(
                "the initramfs ZFSBootMenu boots rpool/ROOT/default with, \
                 /boot/initrd.img-6.12.48+deb13-amd64, has no /etc/zfs/keys/rpool.key"
            ),
            "{problem}"
        );
        assert!(problem.contains("fix: update-initramfs -u -k 6.12.48+deb13-amd64"));
    }

    #[test]
    fn a_key_in_place_or_no_encryption_is_sound() {
        assert_eq!(judge("b", &readings(Some(Ok(true)))).1, None);
        assert_eq!(judge("b", &readings(Some(Err("not root".into())))).1, None);
        let clear = KeyReadings {
            encryption_root: None,
            ..readings(None)
        };
        assert_eq!(judge("b", &clear), (None, None));
        let prompt = KeyReadings {
            keylocation: "prompt".into(),
            ..readings(None)
        };
        let (reading, problem) = judge("b", &prompt);
        assert_eq!(problem, None);
        assert!(reading.unwrap().contains("keylocation=prompt"));
    }
}
