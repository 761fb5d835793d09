//! The pool's passphrase for an encrypted install: where it comes from and what ZFS accepts.
//! It is never in the answer file, the plan, a log, a command line or the environment of a
//! command kldload runs: it goes from its source into the key file (written by the installer
//! itself, mode 0000) and from there to `zpool create` by `keylocation=file://`.

use crate::config::{Config, Secret};
use std::path::Path;

/// The environment variable an install reads the passphrase from (and `kldload plan`'s script).
pub const VARIABLE: &str = "KLDLOAD_POOL_PASSPHRASE";
/// QEMU's fw_cfg: the unattended channel of a VM.
pub const FW_CFG: &str = crate::medium::FW_CFG_PASSPHRASE;
/// A passphrase a user put on the live medium next to its answer file.
pub const MEDIUM: &str = crate::medium::LIVE_PASSPHRASE;

/// A passphrase ZFS accepts: 8 to 512 bytes on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passphrase(Secret);

impl Passphrase {
    /// Validates `text`, whose one trailing newline (a file's last line) is not part of it.
    pub fn new(text: &str) -> Result<Passphrase, String> {
        let text = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(text);
        if text.contains(['\n', '\r', '\0']) {
            return Err("it must be one line".into());
        }
        if !(8..=512).contains(&text.len()) {
            return Err(format!(
                "ZFS takes 8 to 512 bytes and it has {}",
                text.len()
            ));
        }
        Ok(Passphrase(Secret(text.to_string())))
    }

    pub fn secret(&self) -> &Secret {
        &self.0
    }
}

/// Where the passphrase is looked for, first found wins: the answer file's `passphrase_file`,
/// `$KLDLOAD_POOL_PASSPHRASE` (its value given as `from_env`), QEMU's fw_cfg, the medium. `root`
/// is the installing system's root (`/`; a directory in tests) under which fw_cfg and the
/// medium are looked up. Returns the passphrase and where it was found.
pub fn find(
    config: &Config,
    from_env: Option<&str>,
    root: &Path,
) -> Result<(Passphrase, String), String> {
    let read = |path: &Path, named: &str| -> Result<(Passphrase, String), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the passphrase from {named}: {e}"))?;
        let p = Passphrase::new(&text)
            .map_err(|e| format!("the passphrase in {named} is not usable: {e}"))?;
        Ok((p, named.to_string()))
    };
    if let Some(file) = &config.encryption.passphrase_file {
        return read(
            Path::new(file.as_str()),
            &format!("{file} (encryption.passphrase_file)"),
        );
    }
    if let Some(text) = from_env {
        let p = Passphrase::new(text)
            .map_err(|e| format!("the passphrase in ${VARIABLE} is not usable: {e}"))?;
        return Ok((p, format!("${VARIABLE}")));
    }
    for channel in [FW_CFG, MEDIUM] {
        let path = root.join(channel.trim_start_matches('/'));
        if path.exists() {
            return read(&path, channel);
        }
    }
    Err(format!(
        "[encryption] is on and there is no passphrase: put it in a file named by \
         encryption.passphrase_file, or in ${VARIABLE}, or (on the live medium) in {MEDIUM} \
         or QEMU's fw_cfg opt/kldload/passphrase"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passphrase_is_one_line_of_8_to_512_bytes_its_last_newline_dropped() {
        assert_eq!(
            Passphrase::new("correct horse\n").unwrap().secret().0,
            "correct horse"
        );
        assert_eq!(
            Passphrase::new("12345678\r\n").unwrap().secret().0,
            "12345678"
        );
        assert!(Passphrase::new("1234567").unwrap_err().contains("has 7"));
        assert!(Passphrase::new(&"x".repeat(513)).is_err());
        assert!(
            Passphrase::new("two\nlines here")
                .unwrap_err()
                .contains("one line")
        );
        // Its text shows nowhere in debug output.
        assert!(!format!("{:?}", Passphrase::new("correct horse").unwrap()).contains("horse"));
    }

    fn encrypted(extra: &str) -> Config {
        crate::config::Config::parse(
            &format!(
                "hostname = \"h\"\n[disks]\npaths = [\"/dev/vda\"]\n[root]\n\
                 password_hash = \"$6$s$h\"\n[encryption]\nenabled = true\n{extra}"
            ),
            "answers.toml",
        )
        .unwrap()
    }

    #[test]
    fn the_answer_files_file_then_the_environment_then_fw_cfg_then_the_medium() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("pass");
        std::fs::write(&file, "from the file\n").unwrap();
        let c = encrypted(&format!(
            "passphrase_file = {:?}",
            file.display().to_string()
        ));
        let (p, from) = find(&c, Some("from the environment"), root.path()).unwrap();
        assert_eq!(
            (p.secret().0.as_str(), from.contains("passphrase_file")),
            ("from the file", true)
        );

        let c = encrypted("");
        let e = find(&c, None, root.path()).unwrap_err();
        assert!(e.contains(VARIABLE) && e.contains(MEDIUM), "{e}");
        let medium = root.path().join(MEDIUM.trim_start_matches('/'));
        std::fs::create_dir_all(medium.parent().unwrap()).unwrap();
        std::fs::write(&medium, "on the medium").unwrap();
        assert_eq!(find(&c, None, root.path()).unwrap().1, MEDIUM);
        let fw_cfg = root.path().join(FW_CFG.trim_start_matches('/'));
        std::fs::create_dir_all(fw_cfg.parent().unwrap()).unwrap();
        std::fs::write(&fw_cfg, "through fw_cfg").unwrap();
        assert_eq!(find(&c, None, root.path()).unwrap().1, FW_CFG);
        let (p, from) = find(&c, Some("from the environment"), root.path()).unwrap();
        assert_eq!(p.secret().0, "from the environment");
        assert_eq!(from, format!("${VARIABLE}"));
        let e = find(&c, Some("short"), root.path()).unwrap_err();
        assert!(e.contains("not usable") && !e.contains("short"), "{e}");
    }
}
