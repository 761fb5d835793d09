//! ZFSBootMenu for the medium: from --zfsbootmenu / $KLDLOAD_ZFSBOOTMENU, else the official
//! release, downloaded once into the cache and verified through ZFSBootMenu's signed checksum
//! list (`kldload::zbm::release`); the kept copy is verified again, offline, every time it is used.

use crate::run::Log;
use anyhow::{Result, bail};
use kldload::zbm::release::{
    RELEASES_URL, SIGNING_KEY, VERSION, curl, download_verified, verify_local,
};
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
    let dir = kldload::zbm::source::release_cache(cache);
    if let Ok(kept) = verify_local(&dir, VERSION, None, SIGNING_KEY) {
        return Ok(kept.path);
    }
    log.note(&format!(
        "downloading ZFSBootMenu {VERSION} from {RELEASES_URL} into {}",
        dir.display()
    ));
    let got = download_verified(RELEASES_URL, VERSION, None, SIGNING_KEY, &dir, curl)?;
    log.note(&format!(
        "{}: signature verified, sha256 {} as listed",
        got.name, got.sha256
    ));
    Ok(got.path)
}
