//! Phase 3, the live system: the payload's root plus the installer's tools, autologin on the
//! consoles, the medium mounted by its label, and the unattended-install service. Packed whole
//! as a compressed cpio archive: the kernel unpacks it into RAM and systemd runs from there, so
//! the medium needs no root filesystem of its own. `kldload` itself is added by the medium phase
//! as a second, small archive, so changing the installer does not rebuild this one.

use super::builder::Built;
use super::recipe::{
    LIVE_FILES, LIVE_MODULES_DROPPED, LIVE_PACKAGES, LIVE_PATHS_DROPPED, LIVE_UNITS_ENABLED,
    LIVE_UNITS_MASKED,
};
use crate::run::{ChrootMounts, Log, chroot, run};
use anyhow::{Context, Result, bail};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const INITRD: &str = "live.cpio.zst";
pub const KERNEL: &str = "vmlinuz";
pub const OS_RELEASE: &str = "os-release";

pub fn build(log: &Log, payload_root: &Path, built: &Built, entry: &Path) -> Result<()> {
    let root = entry.join("root");
    run(
        log,
        &[
            "cp",
            "--archive",
            "--reflink=auto",
            &payload_root.to_string_lossy(),
            &root.to_string_lossy(),
        ],
    )?;
    let resolv = root.join("etc/resolv.conf");
    let _ = fs::remove_file(&resolv);
    fs::copy("/etc/resolv.conf", &resolv)
        .context("the build host's /etc/resolv.conf, for apt in the live root")?;
    {
        let _mounts = ChrootMounts::new(log, &root)?;
        crate::run::apt_update(log, &root)?;
        let mut install = vec!["apt-get", "install", "--yes", "--no-install-recommends"];
        install.extend(LIVE_PACKAGES);
        chroot(log, &root, &install)?;
        chroot(log, &root, &["apt-get", "clean"])?;
    }
    fs::remove_file(&resolv)?;
    std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", &resolv)?;
    for e in fs::read_dir(root.join("var/lib/apt/lists"))?.filter_map(|e| e.ok()) {
        if e.path().is_file() {
            fs::remove_file(e.path())?;
        }
    }
    let modules = root.join(format!("lib/modules/{}", built.kernel));
    for dir in LIVE_MODULES_DROPPED {
        let _ = fs::remove_dir_all(modules.join(dir));
    }
    chroot(log, &root, &["depmod", "-a", &built.kernel])?;
    for dir in LIVE_PATHS_DROPPED {
        drop_keeping_copyrights(&root.join(dir))?;
    }
    for (path, mode, contents) in LIVE_FILES {
        let p = root.join(path);
        fs::create_dir_all(p.parent().expect("a file in a directory"))?;
        fs::write(&p, contents)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
    }
    let mut enable = vec!["systemctl", "enable"];
    enable.extend(LIVE_UNITS_ENABLED);
    chroot(log, &root, &enable)?;
    let mut mask = vec!["systemctl", "mask"];
    mask.extend(LIVE_UNITS_MASKED);
    chroot(log, &root, &mask)?;
    // The live system needs no sshd, and has no host keys for one.
    chroot(log, &root, &["systemctl", "disable", "ssh.service"])?;
    let _ = fs::remove_file(root.join("etc/systemd/system/sshd.service"));
    // The kernel runs /init from its initramfs: here that is systemd itself.
    std::os::unix::fs::symlink("/sbin/init", root.join("init"))?;

    fs::copy(
        root.join(format!("boot/vmlinuz-{}", built.kernel)),
        entry.join(KERNEL),
    )?;
    fs::copy(root.join("etc/os-release"), entry.join(OS_RELEASE))?;
    // The live system boots from its cpio archive: its own /boot and initramfs are dead weight.
    for e in fs::read_dir(root.join("boot"))?.filter_map(|e| e.ok()) {
        if e.path().is_file() {
            fs::remove_file(e.path())?;
        }
    }
    pack_cpio(&root, &entry.join(INITRD), 15)?;
    fs::remove_dir_all(&root)?;
    Ok(())
}

/// Removes the tree `dir`, but for the files named `copyright` in it (and their directories).
fn drop_keeping_copyrights(dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.filter_map(|e| e.ok()) {
        let (path, kind) = (e.path(), e.file_type()?);
        if kind.is_dir() {
            drop_keeping_copyrights(&path)?;
            // Empty now unless it held a copyright file.
            let _ = fs::remove_dir(&path);
        } else if e.file_name() != "copyright" {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Every path under `root`, relative (`./etc`, ...), parents before children, sorted.
fn tree(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from(".")];
    while let Some(rel) = stack.pop() {
        let abs = root.join(&rel);
        out.push(rel.clone());
        let meta = fs::symlink_metadata(&abs)?;
        if meta.is_dir() {
            let mut children: Vec<PathBuf> = fs::read_dir(&abs)?
                .filter_map(|e| e.ok())
                .map(|e| rel.join(e.file_name()))
                .collect();
            children.sort();
            children.reverse();
            stack.extend(children);
        }
    }
    Ok(out)
}

/// Packs `root` as a newc cpio archive compressed with zstd at `level`: `cpio` reads the file
/// list this walks, `zstd` compresses its output.
pub fn pack_cpio(root: &Path, dest: &Path, level: u32) -> Result<()> {
    let paths = tree(root)?;
    let out = fs::File::create(dest)?;
    let mut cpio = Command::new("cpio")
        .args(["--create", "--format=newc", "--null", "--quiet"])
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cpio (apt install cpio)")?;
    let zstd = Command::new("zstd")
        .args(["-T0", &format!("-{level}"), "-q", "-c"])
        .stdin(cpio.stdout.take().expect("piped"))
        .stdout(out)
        .spawn()
        .context("zstd")?;
    {
        let mut list = cpio.stdin.take().expect("piped");
        for p in &paths {
            list.write_all(p.as_os_str().as_encoded_bytes())?;
            list.write_all(b"\0")?;
        }
    }
    let (c, z) = (cpio.wait()?, zstd.wait_with_output()?);
    if !c.success() || !z.status.success() {
        bail!(
            "packing {} failed (cpio {c}, zstd {})",
            dest.display(),
            z.status
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_a_tree_the_kernel_can_unpack() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("usr/local/bin")).unwrap();
        fs::write(root.join("usr/local/bin/tool"), "#!/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/sbin/init", root.join("init")).unwrap();
        let archive = dir.path().join("a.cpio.zst");
        pack_cpio(&root, &archive, 3).unwrap();
        let listing = Command::new("sh")
            .args([
                "-c",
                &format!("zstd -dc {} | cpio -t --quiet", archive.display()),
            ])
            .output()
            .unwrap();
        let names = String::from_utf8_lossy(&listing.stdout);
        let names: Vec<&str> = names.lines().collect();
        assert_eq!(
            names,
            [
                ".",
                "init",
                "usr",
                "usr/local",
                "usr/local/bin",
                "usr/local/bin/tool"
            ]
        );
    }

    #[test]
    fn dropped_documentation_keeps_its_copyright_files() {
        let dir = tempfile::tempdir().unwrap();
        let doc = dir.path().join("usr/share/doc");
        fs::create_dir_all(doc.join("zfsutils-linux/examples")).unwrap();
        fs::write(doc.join("zfsutils-linux/copyright"), "CDDL").unwrap();
        fs::write(doc.join("zfsutils-linux/changelog.Debian.gz"), "x").unwrap();
        fs::write(doc.join("zfsutils-linux/examples/a"), "x").unwrap();
        fs::create_dir_all(doc.join("empty-after")).unwrap();
        fs::write(doc.join("empty-after/README"), "x").unwrap();
        std::os::unix::fs::symlink("zfsutils-linux", doc.join("libzfs6linux")).unwrap();
        drop_keeping_copyrights(&doc).unwrap();
        let left: Vec<PathBuf> = tree(&doc).unwrap();
        assert_eq!(
            left,
            [
                PathBuf::from("."),
                PathBuf::from("./zfsutils-linux"),
                PathBuf::from("./zfsutils-linux/copyright")
            ]
        );
        // A tree that is not there is nothing to drop.
        drop_keeping_copyrights(&dir.path().join("usr/share/i18n")).unwrap();
    }
}
