//! Phase 1, the builder root: the distro's kernel and headers, and DKMS building ZFS for exactly
//! that kernel (not the host's), signed with a MOK key pair made for this build. The result is
//! a small package of the signed modules that provides `zfs-modules` to apt. Nothing of this
//! root is shipped; the private key stays in the cache entry.

use super::recipe::{BUILDER_PACKAGES, BUILDER_ZFS_PACKAGES, ImageDistro};
use crate::run::{ChrootMounts, Log, chroot, chroot_output, output, run};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// What the builder made, kept as builder.json in its entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Built {
    /// The kernel release the modules are for, e.g. 6.12.117+deb13-amd64.
    pub kernel: String,
    /// The kernel's package version (linux-image-<kernel>).
    pub kernel_package_version: String,
    /// ZFS's version, e.g. 2.3.9.
    pub zfs: String,
    /// The module signing certificate's subject.
    pub signer: String,
    /// The modules package, relative to the entry.
    pub modules_deb: String,
}

/// File names inside the builder entry.
pub const ROOT: &str = "root";
pub const MOK_DIR: &str = "mok";
pub const INFO: &str = "builder.json";

pub fn load(entry: &Path) -> Result<Built> {
    let text = fs::read_to_string(entry.join(INFO))
        .with_context(|| format!("reading {}", entry.join(INFO).display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// debootstrap a root with the distro's sources, reusing downloaded .debs from `debs`.
/// `variant` is debootstrap's (`minbase`), or none for its default set (required + important).
pub fn bootstrap(
    log: &Log,
    distro: &ImageDistro,
    mirror: &str,
    debs: &Path,
    root: &Path,
    variant: Option<&str>,
) -> Result<()> {
    fs::create_dir_all(debs)?;
    let variant = variant.map(|v| format!("--variant={v}"));
    let cache = format!("--cache-dir={}", debs.display());
    let root_arg = root.to_string_lossy();
    let mut argv = vec!["debootstrap"];
    argv.extend(variant.as_deref());
    argv.extend([
        "--components=main,contrib",
        "--include=ca-certificates",
        &cache,
        distro.suite,
        &root_arg,
        mirror,
    ]);
    run(log, &argv)?;
    let _ = fs::remove_file(root.join("etc/apt/sources.list"));
    fs::write(
        root.join("etc/apt/sources.list.d/debian.sources"),
        distro.sources(mirror),
    )?;
    Ok(())
}

pub fn build(
    log: &Log,
    distro: &ImageDistro,
    mirror: &str,
    debs: &Path,
    entry: &Path,
    build_id: &str,
) -> Result<Built> {
    let root = entry.join(ROOT);
    bootstrap(log, distro, mirror, debs, &root, Some("minbase"))?;
    let _mounts = ChrootMounts::new(log, &root)?;
    chroot(log, &root, &["apt-get", "update"])?;
    let mut install = vec!["apt-get", "install", "--yes", "--no-install-recommends"];
    install.extend(BUILDER_PACKAGES);
    chroot(log, &root, &install)?;

    let signer = format!("kldload build {build_id} module signing key");
    make_mok(log, &entry.join(MOK_DIR), &signer)?;
    let in_root = root.join("root/mok");
    fs::create_dir_all(&in_root)?;
    for f in ["mok.key", "mok.der"] {
        fs::copy(entry.join(MOK_DIR).join(f), in_root.join(f))?;
    }
    // Both dkms releases read these; bookworm's 3.0 signs with its own key otherwise, trixie's
    // 3.2 not at all.
    fs::create_dir_all(root.join("etc/dkms/framework.conf.d"))?;
    fs::write(
        root.join("etc/dkms/framework.conf.d/kldload.conf"),
        "mok_signing_key=/root/mok/mok.key\nmok_certificate=/root/mok/mok.der\n",
    )?;

    let mut zfs = vec!["apt-get", "install", "--yes", "--no-install-recommends"];
    zfs.extend(distro.zfs_target_release());
    zfs.extend(BUILDER_ZFS_PACKAGES);
    if let Err(e) = chroot(log, &root, &zfs) {
        bail!("{e}\n\nDKMS's make.log:\n{}", dkms_make_log_tail(&root));
    }

    let kernel = kernel_release(&root)?;
    let kernel_package_version = chroot_output(
        log,
        &root,
        &[
            "dpkg-query",
            "--show",
            "--showformat=${Version}",
            &format!("linux-image-{kernel}"),
        ],
    )?;
    let zfs_version = dkms_version(&root, "zfs")?;
    let module_dir = root.join(format!("lib/modules/{kernel}/updates/dkms"));
    let modules: Vec<PathBuf> = fs::read_dir(&module_dir)
        .with_context(|| {
            format!(
                "DKMS built nothing for {kernel}:\n{}",
                dkms_make_log_tail(&root)
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().contains(".ko"))
        .collect();
    let zfs_ko = modules
        .iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("zfs.ko"))
        })
        .with_context(|| {
            format!(
                "no zfs.ko in {}:\n{}",
                module_dir.display(),
                dkms_make_log_tail(&root)
            )
        })?;
    let actual_signer = output(
        log,
        &["modinfo", "--field=signer", &zfs_ko.to_string_lossy()],
    )?;
    if actual_signer.trim() != signer {
        bail!(
            "zfs.ko is signed by {:?}, not by this build's key {signer:?}",
            actual_signer.trim()
        );
    }
    let deb = modules_package(log, entry, &kernel, &zfs_version, &modules)?;
    let built = Built {
        kernel,
        kernel_package_version: kernel_package_version.trim().to_string(),
        zfs: zfs_version,
        signer,
        modules_deb: deb,
    };
    fs::write(entry.join(INFO), serde_json::to_string_pretty(&built)?)?;
    Ok(built)
}

/// A MOK key pair (RSA 2048, X.509 DER certificate for `mokutil --import`), made per build.
fn make_mok(log: &Log, dir: &Path, subject: &str) -> Result<()> {
    fs::create_dir_all(dir)?;
    let key = dir.join("mok.key");
    let der = dir.join("mok.der");
    run(
        log,
        &[
            "openssl",
            "req",
            "-new",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "36500",
            "-outform",
            "DER",
            "-subj",
            &format!("/CN={subject}/"),
            "-keyout",
            &key.to_string_lossy(),
            "-out",
            &der.to_string_lossy(),
        ],
    )?;
    Ok(())
}

/// The only kernel release in the root.
fn kernel_release(root: &Path) -> Result<String> {
    let kernels: Vec<String> = fs::read_dir(root.join("lib/modules"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    match kernels.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("expected one kernel in the builder root, found {kernels:?}"),
    }
}

/// The version DKMS holds a module under (/var/lib/dkms/<module>/<version>).
fn dkms_version(root: &Path, module: &str) -> Result<String> {
    let dir = root.join("var/lib/dkms").join(module);
    fs::read_dir(&dir)
        .with_context(|| format!("no {} (DKMS did not register {module})", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(|c: char| c.is_ascii_digit()))
        .with_context(|| format!("no version under {}", dir.display()))
}

/// The end of DKMS's build log, for a failed build.
fn dkms_make_log_tail(root: &Path) -> String {
    let Ok(modules) = fs::read_dir(root.join("var/lib/dkms")) else {
        return "(no /var/lib/dkms: DKMS did not start)".into();
    };
    for m in modules.filter_map(|e| e.ok()) {
        for v in fs::read_dir(m.path())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
        {
            let log = v.path().join("build/make.log");
            if log.exists() {
                return format!("{}:\n{}", log.display(), crate::run::tail_of(&log, 40));
            }
        }
    }
    "(no make.log found)".into()
}

/// A small package of the signed modules: `Provides: zfs-modules`, which zfs-initramfs accepts
/// instead of zfs-dkms, and `Conflicts: zfs-dkms` so the two never meet.
fn modules_package(
    log: &Log,
    entry: &Path,
    kernel: &str,
    zfs: &str,
    modules: &[PathBuf],
) -> Result<String> {
    let pkg = entry.join("modules-pkg");
    let dest = pkg.join(format!("lib/modules/{kernel}/updates/dkms"));
    fs::create_dir_all(&dest)?;
    fs::create_dir_all(pkg.join("DEBIAN"))?;
    for m in modules {
        fs::copy(m, dest.join(m.file_name().expect("a file")))?;
    }
    let name = format!("kldload-zfs-modules-{kernel}").replace('+', "-");
    fs::write(
        pkg.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: {zfs}\nArchitecture: amd64\nMaintainer: kldload <kldload@localhost>\n\
             Depends: linux-image-{kernel}\nProvides: zfs-modules (= {zfs}), spl-modules (= {zfs})\n\
             Conflicts: zfs-dkms\nSection: kernel\nPriority: optional\n\
             Description: OpenZFS {zfs} kernel modules for Linux {kernel}\n \
             Built and signed by kldload's image build (cargo xtask build-image), so the\n \
             target needs no compiler and no DKMS.\n"
        ),
    )?;
    // postrm tolerates the kernel being removed first.
    for (s, script) in [
        (
            "postinst",
            format!("#!/bin/sh\nset -e\ndepmod -a {kernel}\n"),
        ),
        (
            "postrm",
            format!("#!/bin/sh\n[ -d /lib/modules/{kernel} ] && depmod -a {kernel} || true\n"),
        ),
    ] {
        let p = pkg.join("DEBIAN").join(s);
        fs::write(&p, script)?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
    }
    let file = format!("{name}_{zfs}_amd64.deb");
    run(
        log,
        &[
            "dpkg-deb",
            "--root-owner-group",
            "--build",
            &pkg.to_string_lossy(),
            &entry.join(&file).to_string_lossy(),
        ],
    )?;
    fs::remove_dir_all(&pkg)?;
    Ok(file)
}
