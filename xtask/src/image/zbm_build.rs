//! ZFSBootMenu built at image time from its pinned source, on the builder's kernel and its
//! DKMS-built, MOK-signed ZFS, so the boot menu's ZFS is the installed system's ZFS (a menu
//! whose ZFS is older than the pool's cannot read its newer features). The build is
//! ZFSBootMenu's own "local build, dracut": its Makefile installs `generate-zbm` and its dracut
//! module, and `generate-zbm` writes one EFI file. It runs in an overlay on the builder root,
//! so the cached builder stays as it was; only the EFI file and what it was made from are kept.

use super::builder::{self, Built};
use super::recipe::{ZBM_BUILD_PACKAGES, ZBM_EMBEDDED_CMDLINE};
use crate::run::{ChrootMounts, Log, Overlay, chroot};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};

/// The pinned source: ZFSBootMenu's tag archive, as GitHub serves it for the tag.
pub const VERSION: &str = kldload::zbm::release::VERSION;
pub const SOURCE_URL: &str =
    "https://github.com/zbm-dev/zfsbootmenu/archive/refs/tags/v3.1.0.tar.gz";
/// Its sha256: the value Void Linux's zfsbootmenu package pins for the same download.
pub const SOURCE_SHA256: &str = "55aa61ff7450131348dcfe45c2b7ea01bec84b559f0e8e149b3dc8dbd093eaff";

/// File names in the phase's cache entry.
pub const EFI: &str = "zfsbootmenu.EFI";
pub const INFO: &str = "zfsbootmenu.json";

/// What was built, kept as zfsbootmenu.json and carried by the medium beside the EFI file.
#[derive(Debug, Serialize)]
pub struct ZbmBuilt {
    pub version: String,
    pub source_sha256: String,
    /// The kernel release inside the EFI file (the builder's, the installed system's).
    pub kernel: String,
    /// The ZFS it imports pools with (the builder's DKMS build).
    pub zfs: String,
    /// Its embedded command line (firmware load options replace it, Secure Boot off).
    pub commandline: String,
    /// The hostid inside it (kldload's: it imports with the one the installed system uses).
    pub hostid: String,
}

/// The source tarball: `given` (checked against the pinned sha256), else the one kept in the
/// cache, else downloaded there and checked.
pub fn resolve_source(log: &Log, given: Option<&Path>, cache: &Path) -> Result<PathBuf> {
    let check = |path: &Path| -> Result<()> {
        let actual = kldload::hash::file_sha256(path)?;
        if actual != SOURCE_SHA256 {
            bail!(
                "{} has sha256 {actual}, not the pinned ZFSBootMenu {VERSION} source's \
                 {SOURCE_SHA256}\nfix: give the v{VERSION} tag archive ({SOURCE_URL})",
                path.display()
            );
        }
        Ok(())
    };
    if let Some(path) = given {
        if !path.is_file() {
            bail!(
                "ZFSBootMenu source {} (from --zfsbootmenu-source or \
                 $KLDLOAD_ZFSBOOTMENU_SOURCE) does not exist",
                path.display()
            );
        }
        check(path)?;
        return Ok(path.to_owned());
    }
    let kept = cache
        .join("zfsbootmenu")
        .join(format!("zfsbootmenu-{VERSION}.tar.gz"));
    if kept.is_file() && check(&kept).is_ok() {
        return Ok(kept);
    }
    fs::create_dir_all(kept.parent().expect("a directory"))?;
    let partial = kept.with_extension("partial");
    if let Err(e) = kldload::zbm::release::curl(SOURCE_URL, &partial) {
        bail!(
            "cannot download ZFSBootMenu {VERSION}'s source from {SOURCE_URL}: {e}\n\
             fix: give the tarball with --zfsbootmenu-source PATH (or $KLDLOAD_ZFSBOOTMENU_SOURCE), \
             or a finished EFI file with --zfsbootmenu PATH"
        );
    }
    check(&partial)?;
    fs::rename(&partial, &kept)?;
    log.note(&format!("ZFSBootMenu source kept at {}", kept.display()));
    Ok(kept)
}

/// The generate-zbm configuration: one EFI file (no separate kernel and initramfs), the
/// release build's dracut flags, the builder's kernel, kldload's embedded command line.
/// `--no-hostonly`: the image boots other machines than the one it is built on. dracut-ng
/// builds host-only unless told otherwise (from 110; Debian forky's dracut 112), and host-only
/// keeps only the modules of the building machine's hardware, which has no ZFS loaded in a
/// chroot: zfs.ko and spl.ko were left out, without a warning, and ZFSBootMenu stopped in its
/// emergency shell at the first boot. Older dracut (bookworm's 059, trixie's 106) did not.
pub fn generate_zbm_config(kernel: &str) -> String {
    format!(
        "Global:\n  ManageImages: true\n  DracutConfDir: /etc/zfsbootmenu/dracut.conf.d\n  \
         DracutFlags:\n    - \"--no-early-microcode\"\n    - \"--no-hostonly\"\n\
         Components:\n  Enabled: false\n\
         EFI:\n  ImageDir: /zbm-out\n  Versions: false\n  Enabled: true\n\
         Kernel:\n  Path: /boot/vmlinuz-{kernel}\n  CommandLine: {ZBM_EMBEDDED_CMDLINE}\n"
    )
}

/// Builds ZFSBootMenu into `entry` from `source` on the builder root in `builder_dir`, with
/// `hostid` in its image (kldload's for the medium; another for the VM test of a ZFSBootMenu
/// built elsewhere).
pub fn build(
    log: &Log,
    distro: &super::recipe::ImageDistro,
    builder_dir: &Path,
    built: &Built,
    source: &Path,
    hostid: u32,
    entry: &Path,
) -> Result<()> {
    let overlay = Overlay::new(
        log,
        &builder_dir.join(builder::ROOT),
        &entry.join("overlay"),
    )?;
    {
        let root = overlay.merged.clone();
        let _mounts = ChrootMounts::new(log, &root)?;
        crate::run::apt_update(log, &root)?;
        // zfsutils-linux from where the builder's ZFS came (bookworm-backports for debian-12).
        let mut install = vec!["apt-get", "install", "--yes", "--no-install-recommends"];
        install.extend(distro.zfs_target_release());
        install.extend(ZBM_BUILD_PACKAGES);
        chroot(log, &root, &install)?;
        let tarball = format!("/usr/src/zfsbootmenu-{VERSION}.tar.gz");
        fs::copy(source, root.join(tarball.trim_start_matches('/')))?;
        chroot(log, &root, &["tar", "-xzf", &tarball, "-C", "/usr/src"])?;
        let src = format!("/usr/src/zfsbootmenu-{VERSION}");
        chroot(log, &root, &["make", "-C", &src, "core", "dracut"])?;
        // ZFSBootMenu's dracut module copies /etc/hostid into the image.
        chroot(
            log,
            &root,
            &["zgenhostid", "-f", &format!("0x{hostid:08x}")],
        )?;
        install_hooks(&root)?;
        fs::write(
            root.join("etc/zfsbootmenu/kldload.yaml"),
            generate_zbm_config(&built.kernel),
        )?;
        chroot(
            log,
            &root,
            &["generate-zbm", "--config", "/etc/zfsbootmenu/kldload.yaml"],
        )?;
        fs::copy(root.join("zbm-out/vmlinuz.EFI"), entry.join(EFI))
            .context("generate-zbm wrote no /zbm-out/vmlinuz.EFI")?;
        // generate-zbm writes it 0600; it holds no secret (the hostid is everyone's).
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(entry.join(EFI), fs::Permissions::from_mode(0o644))?;
    }
    overlay.remove()?;
    check_carries_zfs(&entry.join(EFI), &built.kernel, distro.name)?;
    let info = ZbmBuilt {
        version: VERSION.into(),
        source_sha256: SOURCE_SHA256.into(),
        kernel: built.kernel.clone(),
        zfs: built.zfs.clone(),
        commandline: ZBM_EMBEDDED_CMDLINE.into(),
        hostid: format!("0x{hostid:08x}"),
    };
    fs::write(entry.join(INFO), serde_json::to_string_pretty(&info)?)?;
    Ok(())
}

/// kldload's ZFSBootMenu hooks (`kldload::upgrade::trial::hooks`: a boot environment on trial
/// booted once, the fallback by itself) in ZFSBootMenu's hook root, which its dracut module
/// copies into the image (/libexec/hooks/<stage>.d/).
fn install_hooks(root: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for (path, script) in kldload::upgrade::trial::hooks() {
        let file = root.join("etc/zfsbootmenu/hooks").join(path);
        fs::create_dir_all(file.parent().expect("a hook directory"))?;
        fs::write(&file, script)?;
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// Fails unless the ZFSBootMenu at `efi` carries zfs.ko in its initramfs: without it, it
/// imports nothing, and that is better learnt here, in seconds, than at a VM's first boot.
fn check_carries_zfs(efi: &Path, kernel: &str, distro: &str) -> Result<()> {
    let image = kldload::zbm::image::read(efi)?;
    if !image.boot_trial {
        bail!(
            "the ZFSBootMenu built on {distro} has no kldload boot-trial hook (/libexec/hooks/{}): \
             `kldload upgrade` would not get its fallback. The file is kept at {}",
            kldload::upgrade::trial::BOOT_SEL_HOOK,
            efi.display()
        );
    }
    if image.zfs_module.is_none() {
        bail!(
            "the ZFSBootMenu built on {distro} (kernel {kernel}) has no zfs.ko in its \
             initramfs: it would stop in its emergency shell (\"unable to load ZFS kernel \
             modules\") at the first boot. The file is kept at {}. Is dracut building \
             host-only (see generate-zbm's DracutFlags in xtask/src/image/zbm_build.rs)?",
            efi.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_zbm_makes_one_efi_file_from_the_builders_kernel_with_kldloads_command_line() {
        let config = generate_zbm_config("6.12.117+deb13-amd64");
        for line in [
            "Components:\n  Enabled: false",
            "ImageDir: /zbm-out\n  Versions: false\n  Enabled: true",
            "Path: /boot/vmlinuz-6.12.117+deb13-amd64",
            "CommandLine: quiet loglevel=0 nomodeset zbm.prefer=rpool",
            "--no-early-microcode",
            "--no-hostonly",
        ] {
            assert!(config.contains(line), "{line:?} not in:\n{config}");
        }
    }
}
