//! ZFSBootMenu for the medium: from --zfsbootmenu / $KLDLOAD_ZFSBOOTMENU, else the pinned
//! release, downloaded once into the cache and checked against its sha256.

use crate::run::{Log, run};
use anyhow::{Result, bail};
use kldload::zfsbootmenu::{RELEASE_SHA256, RELEASE_URL, RELEASE_VERSION};
use std::path::{Path, PathBuf};

pub fn resolve(log: &Log, given: Option<&Path>, cache: &Path) -> Result<PathBuf> {
    if let Some(p) = given {
        if !p.is_file() {
            bail!(
                "ZFSBootMenu file {} (from --zfsbootmenu or $KLDLOAD_ZFSBOOTMENU) does not exist",
                p.display()
            );
        }
        return Ok(p.to_owned());
    }
    // Where the installer looks too, when it runs on this machine.
    let dest = kldload::zfsbootmenu::cached_release(cache);
    if dest.is_file() && kldload::exec::file_sha256(&dest)? == RELEASE_SHA256 {
        return Ok(dest);
    }
    std::fs::create_dir_all(dest.parent().expect("a directory"))?;
    let partial = dest.with_extension("partial");
    let partial_s = partial.to_string_lossy().into_owned();
    if let Err(e) = run(
        log,
        &[
            "curl",
            "--fail",
            "--location",
            "--retry",
            "3",
            "--connect-timeout",
            "20",
            "--output",
            &partial_s,
            RELEASE_URL,
        ],
    ) {
        bail!(
            "cannot download ZFSBootMenu {RELEASE_VERSION} from {RELEASE_URL}: {e}\n\
             fix: give a ZFSBootMenu EFI file with --zfsbootmenu PATH (or $KLDLOAD_ZFSBOOTMENU)"
        );
    }
    let actual = kldload::exec::file_sha256(&partial)?;
    if actual != RELEASE_SHA256 {
        bail!(
            "the ZFSBootMenu download's sha256 is {actual}, not the pinned {RELEASE_SHA256}: not using it"
        );
    }
    std::fs::rename(&partial, &dest)?;
    Ok(dest)
}
