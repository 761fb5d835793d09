//! What an update is, as both sides read it: `cargo xtask build-update` writes it into the
//! control fields of the update's own package ([`UPDATE_PACKAGE`]), and `kldload upgrade` reads
//! it back from the repository's Packages file once apt has checked its signature. One type,
//! so the two cannot drift apart.

use std::collections::BTreeMap;

/// The package every update carries: it depends on exactly the kernel, the ZFS modules built
/// for it and the ZFS userland of the update, and describes them in its `X-Kldload-*` fields.
pub const UPDATE_PACKAGE: &str = "kldload-update";

/// Where an installed system keeps the public key its updates must be signed with (put there
/// by the install, from the medium; the build that made the medium holds the private key).
pub const UPDATE_KEY_FILE: &str = "/usr/local/share/kldload/update-signing-key.gpg";

/// An update's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateInfo {
    /// The distro it is for, as kldload names it (debian-13).
    pub distro: String,
    /// The archive suite its kernel and ZFS come from (trixie, trixie-backports).
    pub suite: String,
    /// The kernel release (7.2.12+deb13-amd64).
    pub kernel: String,
    /// ZFS's version, of its modules and userland (2.4.4).
    pub zfs: String,
    /// The subject of the certificate its zfs.ko is signed with: the build's MOK.
    pub module_signer: String,
    /// The pool features its ZFS can import (its `openzfs-X.Y-linux` compatibility file).
    pub features: Vec<String>,
}

/// Field names in the package's control data.
const DISTRO: &str = "X-Kldload-Distro";
const SUITE: &str = "X-Kldload-Suite";
const KERNEL: &str = "X-Kldload-Kernel";
const ZFS: &str = "X-Kldload-Zfs";
const SIGNER: &str = "X-Kldload-Module-Signer";
const FEATURES: &str = "X-Kldload-Zfs-Features";

impl UpdateInfo {
    /// The fields as control-file lines (each ends in a newline).
    pub fn control_fields(&self) -> String {
        [
            (DISTRO, self.distro.clone()),
            (SUITE, self.suite.clone()),
            (KERNEL, self.kernel.clone()),
            (ZFS, self.zfs.clone()),
            (SIGNER, self.module_signer.clone()),
            (FEATURES, self.features.join(" ")),
        ]
        .iter()
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect()
    }

    /// Reads the fields of one package's stanza (as in a Packages file, or `apt-cache show`).
    pub fn from_stanza(stanza: &str) -> Result<UpdateInfo, String> {
        let fields = stanza_fields(stanza);
        let get = |name: &str| {
            fields
                .get(&name.to_ascii_lowercase())
                .cloned()
                .ok_or_else(|| format!("the update's package has no {name} field"))
        };
        Ok(UpdateInfo {
            distro: get(DISTRO)?,
            suite: get(SUITE)?,
            kernel: get(KERNEL)?,
            zfs: get(ZFS)?,
            module_signer: get(SIGNER)?,
            features: get(FEATURES)?
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        })
    }
}

/// A control stanza's single-line fields, by lower-cased name (field names are
/// case-insensitive); continuation lines are left out.
pub fn stanza_fields(stanza: &str) -> BTreeMap<String, String> {
    stanza
        .lines()
        .filter(|l| !l.starts_with([' ', '\t']))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

/// The pool features named by an OpenZFS compatibility file (`/usr/share/zfs/compatibility.d`):
/// names separated by commas, spaces or newlines, `#` to the end of a line a comment.
pub fn compatibility_features(text: &str) -> Vec<String> {
    let mut features: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split([',', ' ', '\t']))
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect();
    features.sort();
    features.dedup();
    features
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> UpdateInfo {
        UpdateInfo {
            distro: "debian-13".into(),
            suite: "trixie-backports".into(),
            kernel: "7.2.12+deb13-amd64".into(),
            zfs: "2.4.4".into(),
            module_signer: "kldload build 9036b37ebb8bf722 module signing key".into(),
            features: vec!["async_destroy".into(), "zstd_compress".into()],
        }
    }

    #[test]
    fn the_fields_written_are_the_fields_read_among_a_packages_others() {
        let stanza = format!(
            "Package: kldload-update\nVersion: 202612080300\nArchitecture: all\n{}\
             Description: an update\n a second line: with a colon\nSHA256: 00ff\n",
            info().control_fields()
        );
        assert_eq!(UpdateInfo::from_stanza(&stanza), Ok(info()));
    }

    #[test]
    fn a_missing_field_is_named() {
        let stanza = info()
            .control_fields()
            .replace("X-Kldload-Zfs: 2.4.4\n", "");
        assert_eq!(
            UpdateInfo::from_stanza(&stanza),
            Err("the update's package has no X-Kldload-Zfs field".into())
        );
    }

    #[test]
    fn a_compatibility_file_is_read_as_openzfs_writes_them() {
        // The head of OpenZFS 2.3's openzfs-2.3-linux, in its two separator styles.
        let text = "# Features supported by OpenZFS 2.3 on Linux\nallocation_classes\n\
                    async_destroy, blake3\nzstd_compress # the last\n\n";
        assert_eq!(
            compatibility_features(text),
            [
                "allocation_classes",
                "async_destroy",
                "blake3",
                "zstd_compress"
            ]
        );
    }
}
