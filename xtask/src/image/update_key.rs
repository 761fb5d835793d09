//! The update signing key: an OpenPGP key made once per builder entry, beside the MOK that signs
//! the ZFS modules, that signs the apt repository of every update `cargo xtask build-update`
//! makes from that builder. Its public part goes onto the medium and from there onto every
//! installed system ([`kldload::upgrade::UPDATE_KEY_FILE`]), where apt checks updates against it
//! (`signed-by`). The private key never leaves the builder entry.
//!
//! It is made on first need rather than in the builder phase, so builders cached before it
//! existed get one without a cold rebuild; the medium's cache key includes the public key, so a
//! new key makes a new medium.

use crate::run::{Log, output, run};
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// GnuPG's home for the key, inside the builder entry.
const HOME: &str = "update-key";
/// The exported public key (a binary OpenPGP certificate), inside the builder entry.
pub const PUBLIC: &str = "update-signing-key.gpg";

/// The builder entry's public update key, made with its private key when there is none yet.
pub fn ensure(log: &Log, builder_dir: &Path, build_id: &str) -> Result<PathBuf> {
    let public = builder_dir.join(PUBLIC);
    if public.is_file() {
        return Ok(public);
    }
    let home = builder_dir.join(HOME);
    // A half-made key from an interrupted run is made again.
    let _ = fs::remove_dir_all(&home);
    fs::create_dir_all(&home)?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&home, fs::Permissions::from_mode(0o700))?;
    let uid = format!("kldload build {build_id} update signing key");
    gpg(
        log,
        &home,
        &[
            "--passphrase",
            "",
            "--quick-generate-key",
            &uid,
            "rsa3072",
            "sign",
            "never",
        ],
    )?;
    let tmp = public.with_extension("partial");
    gpg(
        log,
        &home,
        &["--output", &tmp.to_string_lossy(), "--export", &uid],
    )?;
    anyhow::ensure!(
        fs::metadata(&tmp)?.len() > 0,
        "gpg exported an empty update key from {}",
        home.display()
    );
    fs::rename(&tmp, &public)?;
    Ok(public)
}

/// Signs `release` as an inline-signed `in_release` (apt's InRelease) with the builder entry's
/// update key.
pub fn clearsign(log: &Log, builder_dir: &Path, release: &Path, in_release: &Path) -> Result<()> {
    gpg(
        log,
        &builder_dir.join(HOME),
        &[
            "--digest-algo",
            "SHA512",
            "--output",
            &in_release.to_string_lossy(),
            "--clearsign",
            &release.to_string_lossy(),
        ],
    )
    .context("signing the update's Release file")
}

/// The fingerprint of the builder entry's update key, as `gpg` prints it (40 hex digits).
pub fn fingerprint(log: &Log, builder_dir: &Path) -> Result<String> {
    let listing = output(
        log,
        &[
            "gpg",
            "--homedir",
            &builder_dir.join(HOME).to_string_lossy(),
            "--batch",
            "--with-colons",
            "--list-keys",
        ],
    )?;
    listing
        .lines()
        .find_map(|l| l.strip_prefix("fpr:"))
        .and_then(|rest| rest.split(':').find(|f| !f.is_empty()))
        .map(str::to_string)
        .context("no fingerprint in gpg's listing of the update key")
}

/// Runs gpg on the key's home, without a terminal, then stops the agent it started (it would
/// otherwise hold the cache directory busy).
fn gpg(log: &Log, home: &Path, args: &[&str]) -> Result<()> {
    let home_arg = home.to_string_lossy();
    let mut argv = vec![
        "gpg",
        "--homedir",
        &home_arg,
        "--batch",
        "--yes",
        "--pinentry-mode",
        "loopback",
    ];
    argv.extend_from_slice(args);
    let result = run(log, &argv);
    let _ = run(
        log,
        &["gpgconf", "--homedir", &home_arg, "--kill", "gpg-agent"],
    );
    result
}
