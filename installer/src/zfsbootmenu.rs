//! Where ZFSBootMenu's EFI file comes from, in order: `--zfsbootmenu` or the answer file, the
//! copy on the live medium, the build cache (where `cargo xtask build-image` keeps the pinned
//! release it downloaded, found when kldload runs on the machine that built images), or the
//! official release at a pinned version and sha256.

use crate::config::{Config, MEDIUM_ZFSBOOTMENU};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The pinned ZFSBootMenu release.
pub const RELEASE_VERSION: &str = "3.1.0";
/// Its release EFI asset.
pub const RELEASE_URL: &str = "https://github.com/zbm-dev/zfsbootmenu/releases/download/v3.1.0/zfsbootmenu-release-x86_64-v3.1.0-linux6.6.EFI";
/// The sha256 of that asset, checked after download.
pub const RELEASE_SHA256: &str = "d4a67012f03659c91a1f227aa6739b4b41bd5c7d0bd64e89aa7358bf08826cfd";

/// The build cache's root, as `cargo xtask` uses it by default.
pub const BUILD_CACHE: &str = "/var/cache/kldload";

/// Where the build cache keeps the pinned release under `cache_root`: named by its sha256, so
/// a file there is the pinned one (it is checked when it is stored).
pub fn cached_release(cache_root: &Path) -> PathBuf {
    cache_root
        .join("zfsbootmenu")
        .join(format!("{RELEASE_SHA256}.EFI"))
}

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
/// copy or the build cache's when `exists` says it is there, then the pinned release (whose
/// origin names every place looked at, for the error if the download fails).
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
            url: url.to_string(),
            sha256: sha256.to_string(),
            origin: "zfsbootmenu.url in the answer file".into(),
        };
    }
    if exists(Path::new(MEDIUM_ZFSBOOTMENU)) {
        return ZbmSource::File {
            path: MEDIUM_ZFSBOOTMENU.into(),
            origin: "the live medium's copy".into(),
        };
    }
    let cached = cached_release(Path::new(BUILD_CACHE));
    if exists(&cached) {
        return ZbmSource::File {
            origin: format!("the build cache ({})", cached.display()),
            path: cached,
        };
    }
    ZbmSource::Download {
        url: RELEASE_URL.into(),
        sha256: RELEASE_SHA256.into(),
        origin: format!(
            "the pinned ZFSBootMenu {RELEASE_VERSION} release: no --zfsbootmenu or \
             zfsbootmenu.path given, none on a live medium at {MEDIUM_ZFSBOOTMENU}, none in the \
             build cache at {}",
            cached.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::test_config as config;

    fn path_of(source: &ZbmSource) -> Option<&Path> {
        match source {
            ZbmSource::File { path, .. } => Some(path),
            ZbmSource::Download { .. } => None,
        }
    }

    #[test]
    fn each_source_wins_over_the_ones_after_it() {
        let everywhere = |_: &Path| true;
        let c = config("path = \"/answers.EFI\"");
        let flag = Path::new("/flag.EFI");
        assert_eq!(
            path_of(&choose_source(&c, Some(flag), everywhere)),
            Some(flag)
        );
        assert_eq!(
            path_of(&choose_source(&c, None, everywhere)),
            Some(Path::new("/answers.EFI"))
        );
        let c = config("");
        assert_eq!(
            path_of(&choose_source(&c, None, everywhere)),
            Some(Path::new(MEDIUM_ZFSBOOTMENU))
        );
        let cached = cached_release(Path::new(BUILD_CACHE));
        let only_cache = |p: &Path| p == cached;
        let source = choose_source(&c, None, only_cache);
        assert_eq!(path_of(&source), Some(cached.as_path()));
        assert!(source.origin().contains("build cache"));
    }

    #[test]
    fn with_nothing_local_the_pinned_release_is_downloaded_and_every_place_is_named() {
        let source = choose_source(&config(""), None, |_| false);
        let ZbmSource::Download {
            url,
            sha256,
            origin,
        } = source
        else {
            panic!("{source:?}")
        };
        assert_eq!(
            (url.as_str(), sha256.as_str()),
            (RELEASE_URL, RELEASE_SHA256)
        );
        for place in [
            "--zfsbootmenu",
            "zfsbootmenu.path",
            MEDIUM_ZFSBOOTMENU,
            BUILD_CACHE,
        ] {
            assert!(origin.contains(place), "{origin} does not name {place}");
        }
    }

    #[test]
    fn an_answer_file_url_is_downloaded_with_its_own_sha256() {
        let sha = "a".repeat(64);
        let c = config(&format!(
            "url = \"https://example.org/zbm.EFI\"\nsha256 = \"{sha}\""
        ));
        let source = choose_source(&c, None, |_| true);
        assert_eq!(
            source,
            ZbmSource::Download {
                url: "https://example.org/zbm.EFI".into(),
                sha256: sha,
                origin: "zfsbootmenu.url in the answer file".into(),
            }
        );
    }
}
