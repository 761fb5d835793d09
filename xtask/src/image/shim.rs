//! Secure Boot's first stage, from Debian: shim signed by Microsoft (`shim-signed`), which
//! firmware with Microsoft's keys starts, and its MokManager and fallback
//! (`shim-helpers-amd64-signed`): MokManager enrolls a MOK certificate at the keyboard, the
//! fallback makes firmware entries again on a fresh NVRAM. shim starts `grubx64.efi` from its own
//! directory, verified against the firmware's db, its built-in Debian certificate and the
//! enrolled MOKs; kldload puts there what it signs with the build's MOK key ([`sign`]).
//!
//! The packages are downloaded from the image's own suite, not installed (shim-signed pulls in
//! GRUB), in an overlay on the builder root, as a cache phase of their own.

use super::builder;
use crate::run::{ChrootMounts, Log, Overlay, chroot, output, run};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::Path;

pub const PACKAGES: [&str; 2] = ["shim-signed", "shim-helpers-amd64-signed"];

/// The files kept in the phase's cache entry, and where the packages put them.
pub const FILES: [(&str, &str); 3] = [
    (SHIM, "usr/lib/shim/shimx64.efi.signed"),
    (MOK_MANAGER, "usr/lib/shim/mmx64.efi.signed"),
    (FALLBACK, "usr/lib/shim/fbx64.efi.signed"),
];
pub const SHIM: &str = "shimx64.efi";
pub const MOK_MANAGER: &str = "mmx64.efi";
/// shim's fallback: started from EFI/BOOT, shim runs it when it is there, and it makes firmware
/// entries from the BOOTX64.CSV files in EFI/*/ (installed ESPs; not on the medium's EFI/BOOT).
pub const FALLBACK: &str = "fbx64.efi";
/// The name shim starts next (its DEFAULT_LOADER), in its own directory.
pub const NEXT_STAGE: &str = "grubx64.efi";
pub const INFO: &str = "shim.json";

/// What was downloaded: each package as `name version` (EFI/BOOT/shim.json on the medium).
#[derive(Debug, Serialize, Deserialize)]
pub struct Shim {
    pub packages: Vec<String>,
}

/// Downloads the packages with the builder root's apt sources and keeps their EFI files in
/// `entry`.
pub fn fetch(log: &Log, builder_dir: &Path, entry: &Path) -> Result<()> {
    let overlay = Overlay::new(
        log,
        &builder_dir.join(builder::ROOT),
        &entry.join("overlay"),
    )?;
    let debs = overlay.merged.join("tmp/shim");
    let mut packages = Vec::new();
    {
        let _mounts = ChrootMounts::new(log, &overlay.merged)?;
        crate::run::apt_update(log, &overlay.merged)?;
        fs::create_dir_all(&debs)?;
        let mut download = vec!["env", "--chdir=/tmp/shim", "apt-get", "download"];
        download.extend(PACKAGES);
        chroot(log, &overlay.merged, &download)?;
        let unpacked = entry.join("unpacked");
        for deb in fs::read_dir(&debs)? {
            let deb = deb?.path();
            let deb = deb.to_string_lossy();
            let fields = output(log, &["dpkg-deb", "--field", &deb, "Package", "Version"])?;
            packages.push(
                fields
                    .lines()
                    .map(field_value)
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            run(
                log,
                &["dpkg-deb", "--extract", &deb, &unpacked.to_string_lossy()],
            )?;
        }
        for (name, path) in FILES {
            fs::copy(unpacked.join(path), entry.join(name))
                .with_context(|| format!("{path} is in none of {}", PACKAGES.join(", ")))?;
        }
        fs::remove_dir_all(&unpacked)?;
    }
    overlay.remove()?;
    packages.sort();
    fs::write(
        entry.join(INFO),
        serde_json::to_string_pretty(&Shim { packages })?,
    )?;
    Ok(())
}

/// `Field: value` -> `value`.
fn field_value(line: &str) -> &str {
    line.split_once(": ").map_or(line, |(_, v)| v).trim()
}

/// Signs `image` for shim with the build's MOK key (in `mok_dir`, its certificate's subject
/// `CN=signer`) into `signed`, and checks the result: shim refuses an image without an `.sbat`
/// section (its revocation data); the file must carry one signature, by that certificate, and
/// verify. (`sbverify --cert` alone is not that check: it also passes a file signed by anyone
/// whose signature carries its own chain, Microsoft's shim for one.)
pub fn sign(
    log: &Log,
    mok_dir: &Path,
    signer: &str,
    image: &Path,
    signed: &Path,
    work: &Path,
) -> Result<()> {
    let sections = output(log, &["objdump", "-h", &image.to_string_lossy()])?;
    if !sections
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(".sbat"))
    {
        bail!(
            "{} has no .sbat section, and shim refuses to start an image without one",
            image.display()
        );
    }
    // sbsign takes the certificate as PEM; the medium carries it as DER for mokutil.
    let pem = work.join("mok.pem");
    let pem_arg = pem.to_string_lossy();
    run(
        log,
        &[
            "openssl",
            "x509",
            "-inform",
            "DER",
            "-in",
            &mok_dir.join("mok.der").to_string_lossy(),
            "-out",
            &pem_arg,
        ],
    )?;
    run(
        log,
        &[
            "sbsign",
            "--key",
            &mok_dir.join("mok.key").to_string_lossy(),
            "--cert",
            &pem_arg,
            "--output",
            &signed.to_string_lossy(),
            &image.to_string_lossy(),
        ],
    )?;
    run(
        log,
        &["sbverify", "--cert", &pem_arg, &signed.to_string_lossy()],
    )?;
    let listing = output(log, &["sbverify", "--list", &signed.to_string_lossy()])?;
    if !kldload::secure_boot::signed_only_by(&listing, signer) {
        bail!(
            "{} is not signed once, by {signer:?}:\n{listing}",
            signed.display()
        );
    }
    fs::remove_file(&pem)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_fields_are_read_as_name_and_version() {
        let text = "Package: shim-signed\nVersion: 1.47+16.1-2\n";
        let line: Vec<&str> = text.lines().map(field_value).collect();
        assert_eq!(line.join(" "), "shim-signed 1.47+16.1-2");
    }
}
