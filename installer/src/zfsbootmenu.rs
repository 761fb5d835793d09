//! Where ZFSBootMenu's EFI file comes from, in order: the answer file (or `--zfsbootmenu`), the
//! copy on the live medium, or the official release at a pinned version and sha256.

use crate::config::{Config, MEDIUM_ZFSBOOTMENU};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The pinned ZFSBootMenu release.
pub const RELEASE_VERSION: &str = "3.1.0";
/// Its release EFI asset.
pub const RELEASE_URL: &str = "https://github.com/zbm-dev/zfsbootmenu/releases/download/v3.1.0/zfsbootmenu-release-x86_64-v3.1.0-linux6.6.EFI";
/// The sha256 of that asset, checked after download.
pub const RELEASE_SHA256: &str = "d4a67012f03659c91a1f227aa6739b4b41bd5c7d0bd64e89aa7358bf08826cfd";

/// The chosen source of the EFI file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum ZbmSource {
    /// A local file: copied as is.
    File { path: PathBuf, origin: String },
    /// A download, checked against its sha256.
    Download {
        url: String,
        sha256: String,
        origin: String,
    },
}

impl ZbmSource {
    /// Where the choice came from, for the plan's comments.
    pub fn origin(&self) -> &str {
        match self {
            ZbmSource::File { origin, .. } | ZbmSource::Download { origin, .. } => origin,
        }
    }
}

/// Picks the source: `override_path` (`--zfsbootmenu`), then the answer file, then the medium's
/// copy when `exists` says it is there, then the pinned release.
pub fn choose_source(
    config: &Config,
    override_path: Option<&Path>,
    exists: impl Fn(&Path) -> bool,
) -> ZbmSource {
    let z = &config.zfsbootmenu;
    if let Some(path) = override_path {
        return ZbmSource::File {
            path: path.to_owned(),
            origin: "--zfsbootmenu".into(),
        };
    }
    if let Some(path) = &z.path {
        return ZbmSource::File {
            path: path.clone(),
            origin: "zfsbootmenu.path in the answer file".into(),
        };
    }
    if let (Some(url), Some(sha256)) = (&z.url, &z.sha256) {
        return ZbmSource::Download {
            url: url.clone(),
            sha256: sha256.clone(),
            origin: "zfsbootmenu.url in the answer file".into(),
        };
    }
    if exists(Path::new(MEDIUM_ZFSBOOTMENU)) {
        return ZbmSource::File {
            path: MEDIUM_ZFSBOOTMENU.into(),
            origin: "the live medium's copy".into(),
        };
    }
    ZbmSource::Download {
        url: RELEASE_URL.into(),
        sha256: RELEASE_SHA256.into(),
        origin: format!(
            "the pinned ZFSBootMenu {RELEASE_VERSION} release (no zfsbootmenu.path given and none on a live medium at {MEDIUM_ZFSBOOTMENU})"
        ),
    }
}
