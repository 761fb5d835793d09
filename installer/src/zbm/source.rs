//! Where ZFSBootMenu's EFI file comes from: `--zfsbootmenu`, else the answer file's
//! `zfsbootmenu.source` ("built": the live medium's copy, which `cargo xtask build-image` built
//! from source; "release": the build cache's verified copy of the official release, else the
//! release downloaded and verified by its signature, `crate::zbm::release`; or a path) or `url`.
//! Left out: the medium's copy where there is one, else the release.

use crate::config::{Config, ZbmChoice};
use crate::medium::LIVE_ZFSBOOTMENU;
use crate::zbm::release;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The build cache's root, as `cargo xtask` uses it by default.
pub const BUILD_CACHE: &str = "/var/cache/kldload";

/// Where the build cache keeps the release under `cache_root`: the tag's `sha256.sig` and the
/// asset picked from it, checked again whenever they are used (`release::verify_local`).
pub fn release_cache(cache_root: &Path) -> PathBuf {
    cache_root
        .join("zfsbootmenu")
        .join(format!("v{}", release::VERSION))
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
    /// The official release, its checksum list verified with ZFSBootMenu's signing key.
    Release {
        version: String,
        /// The kernel series of the EFI file; none: the newest long-term one listed.
        kernel_series: Option<String>,
        origin: String,
    },
}

impl ZbmSource {
    /// Where the choice came from, for the plan's comments.
    pub fn origin(&self) -> &str {
        match self {
            ZbmSource::File { origin, .. }
            | ZbmSource::Download { origin, .. }
            | ZbmSource::Release { origin, .. } => origin,
        }
    }
}

/// Picks the source: `override_path` (`--zfsbootmenu`), then the answer file's path or URL;
/// "built" is the medium's copy (refused later, before anything is written, when `exists` says
/// it is not there); "release" is `cached` (the build cache's release, verified), else the
/// download; with no choice, the medium's copy when it is there, else the release (whose origin
/// then names every place looked at, for the error if the download fails).
pub fn choose_source(
    config: &Config,
    override_path: Option<&Path>,
    exists: impl Fn(&Path) -> bool,
    cached: Option<PathBuf>,
) -> ZbmSource {
    let z = &config.zfsbootmenu;
    if let Some(path) = override_path {
        return ZbmSource::File {
            path: path.to_owned(),
            origin: "--zfsbootmenu".into(),
        };
    }
    if let Some(ZbmChoice::File(path)) = &z.source {
        return ZbmSource::File {
            path: path.clone(),
            origin: "zfsbootmenu.source in the answer file".into(),
        };
    }
    if let (Some(url), Some(sha256)) = (&z.url, &z.sha256) {
        return ZbmSource::Download {
            url: url.to_string(),
            sha256: sha256.to_string(),
            origin: "zfsbootmenu.url in the answer file".into(),
        };
    }
    if z.source == Some(ZbmChoice::Built) {
        return ZbmSource::File {
            path: LIVE_ZFSBOOTMENU.into(),
            origin: "zfsbootmenu.source = \"built\": the live medium's copy, built from \
                     ZFSBootMenu's source by `cargo xtask build-image`"
                .into(),
        };
    }
    if z.source.is_none() && exists(Path::new(LIVE_ZFSBOOTMENU)) {
        return ZbmSource::File {
            path: LIVE_ZFSBOOTMENU.into(),
            origin: "the live medium's copy".into(),
        };
    }
    let cache = release_cache(Path::new(BUILD_CACHE));
    let looked_at = if z.source.is_none() {
        format!(
            "no --zfsbootmenu or zfsbootmenu.source given, none on a live medium at \
             {LIVE_ZFSBOOTMENU}, none in the build cache at {}",
            cache.display()
        )
    } else {
        format!(
            "zfsbootmenu.source = \"release\", none in the build cache at {}",
            cache.display()
        )
    };
    if let Some(path) = cached {
        return ZbmSource::File {
            origin: format!(
                "the build cache ({}), its signature verified",
                cache.display()
            ),
            path,
        };
    }
    ZbmSource::Release {
        version: release::VERSION.into(),
        kernel_series: z.kernel_series.as_ref().map(|s| s.to_string()),
        origin: format!(
            "the ZFSBootMenu {} release, verified by its signing key: {looked_at}",
            release::VERSION,
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
            ZbmSource::Download { .. } | ZbmSource::Release { .. } => None,
        }
    }

    #[test]
    fn each_source_wins_over_the_ones_after_it() {
        let everywhere = |_: &Path| true;
        let cached = || Some(PathBuf::from("/cache/z.EFI"));
        let c = config("source = \"/answers.EFI\"");
        let flag = Path::new("/flag.EFI");
        assert_eq!(
            path_of(&choose_source(&c, Some(flag), everywhere, cached())),
            Some(flag)
        );
        assert_eq!(
            path_of(&choose_source(&c, None, everywhere, cached())),
            Some(Path::new("/answers.EFI"))
        );
        let c = config("");
        assert_eq!(
            path_of(&choose_source(&c, None, everywhere, cached())),
            Some(Path::new(LIVE_ZFSBOOTMENU))
        );
        let source = choose_source(&c, None, |_| false, cached());
        assert_eq!(path_of(&source), Some(Path::new("/cache/z.EFI")));
        assert!(source.origin().contains("build cache"));
    }

    #[test]
    fn with_nothing_local_the_signed_release_is_downloaded_and_every_place_is_named() {
        let source = choose_source(&config(""), None, |_| false, None);
        let ZbmSource::Release {
            version,
            kernel_series,
            origin,
        } = source
        else {
            panic!("{source:?}")
        };
        assert_eq!((version.as_str(), kernel_series), (release::VERSION, None));
        for place in [
            "--zfsbootmenu",
            "zfsbootmenu.source",
            LIVE_ZFSBOOTMENU,
            BUILD_CACHE,
        ] {
            assert!(origin.contains(place), "{origin} does not name {place}");
        }
        let source = choose_source(&config("kernel_series = \"6.6\""), None, |_| false, None);
        assert!(
            matches!(&source, ZbmSource::Release { kernel_series: Some(s), .. } if s == "6.6"),
            "{source:?}"
        );
    }

    #[test]
    fn built_is_the_medium_copy_even_when_missing_and_release_never_is() {
        let built = config("source = \"built\"");
        for there in [true, false] {
            let source = choose_source(&built, None, |_| there, Some("/cache/z.EFI".into()));
            assert_eq!(path_of(&source), Some(Path::new(LIVE_ZFSBOOTMENU)));
            assert!(source.origin().contains("built"), "{source:?}");
        }
        let release = config("source = \"release\"");
        let source = choose_source(&release, None, |_| true, Some("/cache/z.EFI".into()));
        assert_eq!(path_of(&source), Some(Path::new("/cache/z.EFI")));
        let source = choose_source(&release, None, |_| true, None);
        assert!(
            matches!(&source, ZbmSource::Release { origin, .. } if origin.contains("source = \"release\"")),
            "{source:?}"
        );
    }

    #[test]
    fn an_answer_file_url_is_downloaded_with_its_own_sha256() {
        let sha = "a".repeat(64);
        let c = config(&format!(
            "url = \"https://example.org/zbm.EFI\"\nsha256 = \"{sha}\""
        ));
        let source = choose_source(&c, None, |_| true, None);
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
