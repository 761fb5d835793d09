//! ZFSBootMenu's official release, trusted only through ZFSBootMenu's own chain: the tag's
//! `sha256.txt` (lines `SHA256 (<asset>) = <hex>`, as `sha256sum --tag` writes them) is signed
//! with signify into `sha256.sig` (the list embedded after the signature), by the key kept in
//! the source at releng/keys/zfsbootmenu.pub. kldload pins that public key, verifies the
//! signature (ed25519, with `libsignify`), picks the EFI asset by name from the signed list and
//! accepts the download only if its sha256 is the listed one: what `signify -C -p
//! zfsbootmenu.pub -x sha256.sig` does by hand. Nothing is installed from an unverified file.

use crate::hash::file_sha256;
use libsignify::{Codeable, PublicKey, Signature};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The release kldload installs by default.
pub const VERSION: &str = "3.1.0";

/// Where the tags' release assets are downloaded from.
pub const RELEASES_URL: &str = "https://github.com/zbm-dev/zfsbootmenu/releases/download";

/// ZFSBootMenu's signify public key, as releng/keys/zfsbootmenu.pub holds it in the source of
/// every release (the v3.1.0 tarball's copy, byte for byte).
pub const SIGNING_KEY: &str = "untrusted comment: ZFSBootMenu signing key public key\n\
                               RWSUawlGznCLF8NxEb1EyrGpP2eIR9l7JIZgLzCdv+64uBDvfXNJm+cF\n";

/// The signed checksum list's file name among a tag's assets.
pub const SIGNED_LIST: &str = "sha256.sig";

/// Long-term kernel series, oldest first: the default asset is the newest of these the signed
/// list has (ZFSBootMenu 3.1.0 ships 6.6, 6.12 and 6.18 builds).
pub const LTS_SERIES: [&str; 6] = ["5.10", "5.15", "6.1", "6.6", "6.12", "6.18"];

/// Why a release could not be used. Each says what was tried and what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(
        "cannot download {url}: {reason}\nfix: check the network, or give a ZFSBootMenu EFI file \
         (--zfsbootmenu PATH, $KLDLOAD_ZFSBOOTMENU or zfsbootmenu.source in the answer file)"
    )]
    Download { url: String, reason: String },
    #[error(
        "{url} is not signed by ZFSBootMenu's release key ({reason}): nothing from this release \
         is used\nfix: download again (a proxy or mirror may have changed it), or give a \
         ZFSBootMenu EFI file you checked yourself"
    )]
    BadSignature { url: String, reason: String },
    #[error(
        "the signed list of ZFSBootMenu {version} has no {wanted}; it lists: {listed}\n\
         fix: choose one of those kernel series (zfsbootmenu.kernel_series)"
    )]
    NotListed {
        version: String,
        wanted: String,
        listed: String,
    },
    #[error(
        "{name} downloaded from {url} has sha256 {actual}, but the signed list says {listed}: \
         not using it\nfix: download again, or give a ZFSBootMenu EFI file you checked yourself"
    )]
    HashMismatch {
        name: String,
        url: String,
        actual: String,
        listed: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// The base URL of a tag's assets.
pub fn tag_url(releases_url: &str, version: &str) -> String {
    format!("{}/v{version}", releases_url.trim_end_matches('/'))
}

/// The release EFI asset of `version` built on kernel `series`.
pub fn asset_name(version: &str, series: &str) -> String {
    format!("zfsbootmenu-release-x86_64-v{version}-linux{series}.EFI")
}

/// The checksum list `sha256.sig` carries, once its signature is verified with `key` (a
/// signify public key file's text): asset name -> lowercase sha256.
pub fn verified_list(signed: &str, key: &str) -> Result<BTreeMap<String, String>, String> {
    let (key, _) = PublicKey::from_base64(key).map_err(|e| format!("the public key: {e}"))?;
    let (signature, read) =
        Signature::from_base64(signed).map_err(|e| format!("not a signify signature: {e}"))?;
    let message = usize::try_from(read)
        .ok()
        .and_then(|n| signed.get(n..))
        .ok_or("no list after the signature")?;
    key.verify(message.as_bytes(), &signature)
        .map_err(|e| e.to_string())?;
    Ok(message.lines().filter_map(parse_tag_line).collect())
}

/// One `sha256sum --tag` line: `SHA256 (<name>) = <hex>`.
fn parse_tag_line(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("SHA256 (")?;
    let (name, hex) = rest.rsplit_once(") = ")?;
    let hex = hex.trim();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| (name.to_string(), hex.to_ascii_lowercase()))
}

/// The asset to install: `series`'s if given, else the newest long-term series the list has.
/// Returns its name and listed sha256.
pub fn pick_asset(
    list: &BTreeMap<String, String>,
    version: &str,
    series: Option<&str>,
) -> Result<(String, String), ReleaseError> {
    let wanted: Vec<String> = match series {
        Some(s) => vec![asset_name(version, s)],
        None => LTS_SERIES
            .iter()
            .rev()
            .map(|s| asset_name(version, s))
            .collect(),
    };
    wanted
        .iter()
        .find_map(|name| list.get(name).map(|sha| (name.clone(), sha.clone())))
        .ok_or_else(|| ReleaseError::NotListed {
            version: version.to_string(),
            wanted: match series {
                Some(_) => wanted[0].clone(),
                None => format!(
                    "release EFI file for a long-term kernel ({})",
                    LTS_SERIES.join(", ")
                ),
            },
            listed: list.keys().cloned().collect::<Vec<_>>().join(", "),
        })
}

/// What [`download_verified`] installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub name: String,
    pub sha256: String,
    pub path: PathBuf,
}

/// Downloads `sha256.sig` of `version` from `releases_url`, verifies it with `key`, picks the
/// asset (see [`pick_asset`]), downloads it into `dir` and checks it against the signed list.
/// `fetch(url, dest)` downloads one file (curl, as argv). On any failure nothing is left in
/// `dir` under the asset's name.
pub fn download_verified(
    releases_url: &str,
    version: &str,
    series: Option<&str>,
    key: &str,
    dir: &Path,
    fetch: impl Fn(&str, &Path) -> Result<(), String>,
) -> Result<Verified, ReleaseError> {
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let base = tag_url(releases_url, version);
    let list_url = format!("{base}/{SIGNED_LIST}");
    fetch(&list_url, &dir.join(SIGNED_LIST)).map_err(|reason| ReleaseError::Download {
        url: list_url.clone(),
        reason,
    })?;
    let (name, listed) = picked_from_signed_list(dir, &list_url, version, series, key)?;
    let url = format!("{base}/{name}");
    let partial = dir.join(format!("{name}.partial"));
    let result = fetch(&url, &partial)
        .map_err(|reason| ReleaseError::Download {
            url: url.clone(),
            reason,
        })
        .and_then(|()| check_listed(&partial, &name, &url, &listed));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    let path = dir.join(&name);
    std::fs::rename(&partial, &path).map_err(io(format!("renaming {}", partial.display())))?;
    Ok(Verified {
        name,
        sha256: listed,
        path,
    })
}

/// A release an earlier [`download_verified`] kept in `dir`, checked again offline: its
/// `sha256.sig` verified with `key`, the asset picked as then, its sha256 the listed one.
pub fn verify_local(
    dir: &Path,
    version: &str,
    series: Option<&str>,
    key: &str,
) -> Result<Verified, ReleaseError> {
    let list_path = dir.join(SIGNED_LIST).display().to_string();
    let (name, listed) = picked_from_signed_list(dir, &list_path, version, series, key)?;
    let path = dir.join(&name);
    check_listed(&path, &name, &path.display().to_string(), &listed)?;
    Ok(Verified {
        name,
        sha256: listed,
        path,
    })
}

/// An I/O error, saying what was being done.
fn io(what: String) -> impl FnOnce(std::io::Error) -> ReleaseError {
    move |source| ReleaseError::Io { what, source }
}

/// Reads `dir`'s `sha256.sig` (fetched from `origin`, named in errors), verifies it with
/// `key` and picks the asset from it: its name and listed sha256.
fn picked_from_signed_list(
    dir: &Path,
    origin: &str,
    version: &str,
    series: Option<&str>,
    key: &str,
) -> Result<(String, String), ReleaseError> {
    let list_path = dir.join(SIGNED_LIST);
    let signed = std::fs::read_to_string(&list_path)
        .map_err(io(format!("reading {}", list_path.display())))?;
    let list = verified_list(&signed, key).map_err(|reason| ReleaseError::BadSignature {
        url: origin.to_string(),
        reason,
    })?;
    pick_asset(&list, version, series)
}

/// `path` (asset `name`, from `origin`) has the `listed` sha256.
fn check_listed(path: &Path, name: &str, origin: &str, listed: &str) -> Result<(), ReleaseError> {
    let actual = file_sha256(path).map_err(io(format!("reading {}", path.display())))?;
    if actual == listed {
        Ok(())
    } else {
        Err(ReleaseError::HashMismatch {
            name: name.to_string(),
            url: origin.to_string(),
            actual,
            listed: listed.to_string(),
        })
    }
}

/// Downloads `url` to `dest` with curl (argv, no shell): fails on HTTP errors, follows
/// redirects (GitHub's assets are served from elsewhere), retries a flaky network.
/// curl's retries for a download on a live system, whose DHCP may still be on its way: every
/// error retried for ~30 s.
pub const CURL_RETRIES: [&str; 5] = ["--retry", "6", "--retry-delay", "5", "--retry-all-errors"];

pub fn curl(url: &str, dest: &Path) -> Result<(), String> {
    let out = std::process::Command::new("curl")
        .args(CURL_RETRIES)
        .args([
            "--fail",
            "--silent",
            "--show-error",
            "--location",
            "--connect-timeout",
            "20",
            "--output",
        ])
        .arg(dest)
        .arg(url)
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_lines_parse_and_anything_else_is_skipped() {
        let hex = "ab".repeat(32);
        assert_eq!(
            parse_tag_line(&format!("SHA256 (a (b).EFI) = {hex}")),
            Some(("a (b).EFI".into(), hex.clone()))
        );
        assert_eq!(parse_tag_line(&format!("{hex}  a.EFI")), None);
        assert_eq!(parse_tag_line("SHA256 (a.EFI) = 1234"), None);
        assert_eq!(parse_tag_line("MD5 (a.EFI) = 00"), None);
    }

    #[test]
    fn the_newest_long_term_series_listed_is_the_default() {
        let list: BTreeMap<String, String> = ["6.6", "6.12", "6.18", "6.19"]
            .iter()
            .map(|s| (asset_name("3.1.0", s), s.to_string()))
            .chain([(
                "zfsbootmenu-recovery-x86_64-v3.1.0-linux6.18.EFI".to_string(),
                "r".to_string(),
            )])
            .collect();
        let pick = |series| pick_asset(&list, "3.1.0", series).map(|(name, _)| name);
        assert_eq!(
            pick(None).unwrap(),
            "zfsbootmenu-release-x86_64-v3.1.0-linux6.18.EFI"
        );
        assert_eq!(
            pick(Some("6.6")).unwrap(),
            "zfsbootmenu-release-x86_64-v3.1.0-linux6.6.EFI"
        );
        let e = pick(Some("5.4")).unwrap_err().to_string();
        assert!(
            e.contains("linux5.4.EFI") && e.contains("linux6.12.EFI"),
            "{e}"
        );
        let none = pick_asset(&BTreeMap::new(), "3.1.0", None).unwrap_err();
        assert!(none.to_string().contains("long-term"), "{none}");
    }

    #[test]
    fn the_pinned_key_parses() {
        let (key, _) = PublicKey::from_base64(SIGNING_KEY).unwrap();
        assert_eq!(key.key().len(), 32);
    }
}
