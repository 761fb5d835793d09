//! Phase 2, the target payload: a separate root with the builder's exact kernel, the signed ZFS
//! modules package, zfsutils and zfs-initramfs, boot and network tools, and no compiler, headers
//! or DKMS. Packed as a zstd tarball with a manifest. Its root is kept for the live system.

use super::builder::Built;
use super::recipe::{
    ImageDistro, PAYLOAD_PACKAGES, PAYLOAD_PACKAGES_PURGED, PAYLOAD_UNITS_DISABLED, is_build_tool,
};
use crate::run::{ChrootMounts, Log, chroot, chroot_output, output, run};
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::Path;

pub const ROOT: &str = "root";
pub const TARBALL: &str = "payload.tar.zst";
pub const MANIFEST: &str = "manifest.json";

/// What the payload holds, written beside it and onto the medium.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub distro: String,
    pub suite: String,
    pub kernel: String,
    pub zfs: String,
    /// The subject of the certificate the ZFS modules are signed with.
    pub module_signer: String,
    /// Installed packages: (name, version).
    pub packages: Vec<(String, String)>,
    /// The tarball's size in bytes and sha256.
    pub size: u64,
    pub sha256: String,
}

pub fn build(
    log: &Log,
    distro: &ImageDistro,
    mirror: &str,
    debs: &Path,
    built: &Built,
    builder: &Path,
    entry: &Path,
) -> Result<Manifest> {
    let root = entry.join(ROOT);
    super::builder::bootstrap(log, distro, mirror, debs, &root, None)?;
    {
        let _mounts = ChrootMounts::new(log, &root)?;
        crate::run::apt_update(log, &root)?;
        let deb_in_root = format!("/tmp/{}", built.modules_deb);
        fs::copy(
            builder.join(&built.modules_deb),
            root.join(deb_in_root.trim_start_matches('/')),
        )?;
        let kernel_pkg = format!(
            "linux-image-{}={}",
            built.kernel, built.kernel_package_version
        );
        let mut install = vec!["apt-get", "install", "--yes", "--no-install-recommends"];
        install.extend(distro.zfs_target_release());
        install.extend([deb_in_root.as_str(), kernel_pkg.as_str()]);
        install.extend(PAYLOAD_PACKAGES);
        chroot(log, &root, &install)?;
        let mut purge = vec!["apt-get", "purge", "--yes", "--auto-remove"];
        purge.extend(PAYLOAD_PACKAGES_PURGED);
        chroot(log, &root, &purge)?;
        let mut disable = vec!["systemctl", "disable"];
        disable.extend(PAYLOAD_UNITS_DISABLED);
        chroot(log, &root, &disable)?;
        fs::remove_file(root.join(deb_in_root.trim_start_matches('/')))?;
        // The hostid every kldload install uses (ARCHITECTURE.md, "One hostid"), so the
        // initramfs built here already carries it.
        let hostid = format!("0x{:08x}", kldload::config::ZFSBOOTMENU_HOSTID);
        chroot(log, &root, &["zgenhostid", "-f", &hostid])?;
        chroot(log, &root, &["update-initramfs", "-u", "-k", "all"])?;
        chroot(log, &root, &["apt-get", "clean"])?;
    }
    check_payload(log, &root, built)?;
    clean_for_shipping(&root)?;
    let tarball = entry.join(TARBALL);
    run(
        log,
        &[
            "tar",
            "--create",
            "--use-compress-program=zstd -T0 -9",
            "--file",
            &tarball.to_string_lossy(),
            "--directory",
            &root.to_string_lossy(),
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "--acls",
            "--one-file-system",
            ".",
        ],
    )?;
    let packages = chroot_output(
        log,
        &root,
        &[
            "dpkg-query",
            "--show",
            "--showformat=${Package}\t${Version}\n",
        ],
    )?
    .lines()
    .filter_map(|l| l.split_once('\t'))
    .map(|(p, v)| (p.to_string(), v.to_string()))
    .collect();
    let manifest = Manifest {
        distro: distro.name.into(),
        suite: distro.suite.into(),
        kernel: built.kernel.clone(),
        zfs: built.zfs.clone(),
        module_signer: built.signer.clone(),
        packages,
        size: fs::metadata(&tarball)?.len(),
        sha256: kldload::hash::file_sha256(&tarball)?,
    };
    fs::write(
        entry.join(MANIFEST),
        serde_json::to_string_pretty(&manifest)?,
    )?;
    Ok(manifest)
}

/// The payload must have the builder's signed modules for its one kernel, and no build tools.
fn check_payload(log: &Log, root: &Path, built: &Built) -> Result<()> {
    let packages = chroot_output(
        log,
        root,
        &["dpkg-query", "--show", "--showformat=${Package}\n"],
    )?;
    let forbidden: Vec<&str> = packages.lines().filter(|p| is_build_tool(p)).collect();
    if !forbidden.is_empty() {
        bail!("the payload pulled in build tools it must not have: {forbidden:?}");
    }
    let kernels: Vec<String> = fs::read_dir(root.join("lib/modules"))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    if kernels != [built.kernel.clone()] {
        bail!(
            "the payload has kernels {kernels:?}, expected only {}",
            built.kernel
        );
    }
    let dir = root.join(format!("lib/modules/{}/updates/dkms", built.kernel));
    let zfs_ko = fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("zfs.ko"))
        });
    let Some(zfs_ko) = zfs_ko else {
        bail!("no zfs.ko in {}", dir.display())
    };
    let signer = output(
        log,
        &["modinfo", "--field=signer", &zfs_ko.to_string_lossy()],
    )?;
    if signer.trim() != built.signer {
        bail!(
            "the payload's zfs.ko is signed by {:?}, not {:?}",
            signer.trim(),
            built.signer
        );
    }
    Ok(())
}

/// What must not travel in an image: each machine makes its own host keys and machine id.
fn clean_for_shipping(root: &Path) -> Result<()> {
    for e in fs::read_dir(root.join("etc/ssh"))?.filter_map(|e| e.ok()) {
        if e.file_name().to_string_lossy().starts_with("ssh_host_") {
            fs::remove_file(e.path())?;
        }
    }
    // Empty, not absent: systemd makes a new id at first boot and treats it as first boot.
    fs::write(root.join("etc/machine-id"), "")?;
    let _ = fs::remove_file(root.join("var/lib/dbus/machine-id"));
    let lists = root.join("var/lib/apt/lists");
    for e in fs::read_dir(&lists)?.filter_map(|e| e.ok()) {
        if e.path().is_file() {
            fs::remove_file(e.path())?;
        }
    }
    let resolv = root.join("etc/resolv.conf");
    if resolv.symlink_metadata().is_ok_and(|m| m.is_file()) {
        // The build host's resolver, copied by debootstrap: not the target's.
        fs::remove_file(&resolv)?;
    }
    Ok(())
}
