//! Phase 1, the builder root: the distro's kernel and headers, and DKMS building ZFS for exactly
//! that kernel (not the host's), signed with a MOK key pair made for this build. The result is
//! a small package of the signed modules that provides `zfs-modules` to apt. Nothing of this
//! root is shipped; the private key stays in the cache entry.

use super::recipe::{BUILDER_PACKAGES, BUILDER_ZFS_PACKAGES, ImageDistro};
use crate::run::{ChrootMounts, Log, apt_update, chroot, chroot_output, output, run};
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
    let script = debootstrap_script(Path::new(DEBOOTSTRAP_SCRIPTS), distro.suite);
    argv.extend(script.as_deref());
    run(log, &argv)?;
    let _ = fs::remove_file(root.join("etc/apt/sources.list"));
    fs::write(
        root.join("etc/apt/sources.list.d/debian.sources"),
        distro.sources(mirror),
    )?;
    Ok(())
}

/// Where debootstrap keeps its per-release scripts.
const DEBOOTSTRAP_SCRIPTS: &str = "/usr/share/debootstrap/scripts";

/// The script debootstrap is to use for `suite` when it has none by that name (a Debian 12
/// host's debootstrap predates forky): sid's, which every Debian release since bullseye's
/// script is. None when debootstrap knows the suite.
fn debootstrap_script(scripts: &Path, suite: &str) -> Option<String> {
    let sid = scripts.join("sid");
    if scripts.join(suite).exists() || !sid.exists() {
        return None;
    }
    Some(sid.display().to_string())
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
    apt_update(log, &root)?;
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
        // DKMS's build failed when it left a make.log and no zfs.ko; else apt failed otherwise
        // (a download, a maintainer script after a good build), and says so itself.
        return Err(match dkms_make_log(&root) {
            Some(make_log) if !built_zfs_ko(&root) => ZfsDoesNotBuild::read(&root, make_log).into(),
            _ => e.context("installing zfs-dkms"),
        });
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
    let (zfs_version, deb) = package_signed_modules(log, &root, &kernel, &signer, entry)?;
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

/// The ZFS modules DKMS built in `root` for `kernel`: uncompressed ([`decompress_modules`]),
/// zfs.ko checked to be signed by `signer`, and packaged into `entry` ([`modules_package`]).
/// Returns ZFS's version and the package's file name. The builder and the update build
/// (`super::update`) both end with it.
pub fn package_signed_modules(
    log: &Log,
    root: &Path,
    kernel: &str,
    signer: &str,
    entry: &Path,
) -> Result<(String, String)> {
    let zfs_version = dkms_version(root, "zfs")?;
    let module_dir = root.join(format!("lib/modules/{kernel}/updates/dkms"));
    decompress_modules(log, root, &module_dir, kernel)?;
    let modules: Vec<PathBuf> = fs::read_dir(&module_dir)
        .with_context(|| {
            format!(
                "DKMS built nothing for {kernel}:\n{}",
                dkms_make_log_tail(root)
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
                dkms_make_log_tail(root)
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
    let deb = modules_package(log, entry, kernel, &zfs_version, &modules)?;
    Ok((zfs_version, deb))
}

/// DKMS compresses the modules it builds as the kernel's own are (xz on Debian), and the kernel
/// then unpacks zfs.ko on every load: `modprobe zfs` took 3.9-5.4 s under TCG against 3.3-3.4 s
/// for the same module uncompressed (2026-12-07, this project's 2-core machine, one sitting; the
/// function tracer put the difference in `module_decompress`). It is loaded twice a boot
/// (ZFSBootMenu's and the system's) and once a live boot, and the 12 MB file costs little where
/// it lies: the initramfs is compressed whole, the pool's datasets are compressed, and the
/// package itself is. So the package carries them uncompressed; the signature DKMS appended
/// before compressing stays (`modinfo --field=signer` reads it either way). The builder root's
/// module index is made again, for ZFSBootMenu's dracut, which builds from this root.
fn decompress_modules(log: &Log, root: &Path, module_dir: &Path, kernel: &str) -> Result<()> {
    let Ok(entries) = fs::read_dir(module_dir) else {
        return Ok(()); // reported as "DKMS built nothing" by the caller
    };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".ko.xz") {
            let in_root = Path::new("/").join(e.path().strip_prefix(root)?);
            chroot(
                log,
                root,
                &["xz", "--decompress", &in_root.to_string_lossy()],
            )?;
        }
    }
    chroot(log, root, &["depmod", "-a", kernel])
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
pub(super) fn dkms_version(root: &Path, module: &str) -> Result<String> {
    let dir = root.join("var/lib/dkms").join(module);
    fs::read_dir(&dir)
        .with_context(|| format!("no {} (DKMS did not register {module})", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(|c: char| c.is_ascii_digit()))
        .with_context(|| format!("no version under {}", dir.display()))
}

/// DKMS's build log in the builder root, if a build of it ran.
pub(super) fn dkms_make_log(root: &Path) -> Option<PathBuf> {
    let modules = fs::read_dir(root.join("var/lib/dkms")).ok()?;
    modules
        .filter_map(|e| e.ok())
        .flat_map(|m| fs::read_dir(m.path()).into_iter().flatten())
        .filter_map(|v| v.ok())
        .map(|v| v.path().join("build/make.log"))
        .find(|log| log.exists())
}

/// Whether DKMS installed a zfs.ko for the root's kernel.
fn built_zfs_ko(root: &Path) -> bool {
    let Ok(kernel) = kernel_release(root) else {
        return false;
    };
    fs::read_dir(root.join(format!("lib/modules/{kernel}/updates/dkms")))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("zfs.ko"))
}

/// The end of DKMS's build log, for a build that made no zfs.ko.
fn dkms_make_log_tail(root: &Path) -> String {
    match dkms_make_log(root) {
        Some(log) => format!("{}:\n{}", log.display(), crate::run::tail_of(&log, 40)),
        None => "(no make.log found)".into(),
    }
}

/// DKMS could not build ZFS for the builder's kernel. It happens upstream, first on Debian
/// testing, when a new kernel outruns OpenZFS: said in one line with both versions, then the
/// errors of DKMS's log, so the matrix can mark the distro "zfs does not build for kernel X"
/// rather than fail without a word.
#[derive(Debug)]
pub struct ZfsDoesNotBuild {
    pub kernel: String,
    pub zfs: String,
    /// The log's error lines ([`dkms_error_lines`]).
    pub errors: Vec<String>,
    /// DKMS's make.log (in the failed build's .partial entry, kept until the next build).
    pub make_log: PathBuf,
}

impl ZfsDoesNotBuild {
    fn read(root: &Path, make_log: PathBuf) -> ZfsDoesNotBuild {
        let text = fs::read_to_string(&make_log).unwrap_or_default();
        ZfsDoesNotBuild {
            kernel: kernel_release(root).unwrap_or_else(|e| format!("(unknown: {e})")),
            zfs: dkms_version(root, "zfs").unwrap_or_else(|_| "(unknown)".into()),
            errors: dkms_error_lines(&text),
            make_log,
        }
    }

    /// The matrix's word for it.
    pub fn short(&self) -> String {
        format!("zfs does not build for kernel {}", self.kernel)
    }
}

impl std::fmt::Display for ZfsDoesNotBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} (ZFS {}, zfs-dkms); DKMS's log: {}",
            self.short(),
            self.zfs,
            self.make_log.display()
        )?;
        if self.errors.is_empty() {
            write!(f, "  (the log has no error line; read its end)")?;
        }
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ZfsDoesNotBuild {}

/// The lines of a DKMS make.log that say why the build failed: the compiler's and configure's
/// `error:` lines and configure's `***` explanations, in order, each once, at most 12.
pub fn dkms_error_lines(log: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in log.lines().map(str::trim) {
        let wanted = line.contains("error:") || line.starts_with("*** ");
        if wanted && !out.iter().any(|l| l == line) {
            out.push(line.to_string());
        }
        if out.len() == 12 {
            break;
        }
    }
    out
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
    build_deb(log, &pkg, &entry.join(&file))?;
    Ok(file)
}

/// Packs the package tree `pkg` (its DEBIAN/ and files, owned by root) into `deb`, then removes
/// the tree.
pub(super) fn build_deb(log: &Log, pkg: &Path, deb: &Path) -> Result<()> {
    run(
        log,
        &[
            "dpkg-deb",
            "--root-owner-group",
            "--build",
            &pkg.to_string_lossy(),
            &deb.to_string_lossy(),
        ],
    )?;
    fs::remove_dir_all(pkg)?;
    Ok(())
}

/// Unpacks the package `deb`'s files into `dir` (dpkg-deb --extract), for reading one of them.
pub(super) fn extract_deb(log: &Log, deb: &Path, dir: &Path) -> Result<()> {
    run(
        log,
        &[
            "dpkg-deb",
            "--extract",
            &deb.to_string_lossy(),
            &dir.to_string_lossy(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of the make.log DKMS keeps when OpenZFS's configure refuses a kernel newer
    /// than it knows, then when the compiler does.
    const REFUSED: &str =
        "DKMS (dkms-3.2.2) make.log for zfs/2.4.4 for kernel 7.2.12+deb14-amd64 (x86_64)
Building module(s)
# command: ./configure --disable-dependency-tracking --with-config=kernel
checking for bdev_open_by_path() exists... no
configure: error:
\t*** None of the expected \"bdev_open\" interfaces were detected.
\t*** This may be because your kernel version is newer than what is
\t*** supported, or you are using a patched custom kernel with
\t*** incompatible modifications.
\t***
\t*** ZFS Version: zfs-2.4.4-1
\t*** Compatible Kernels: 4.18 - 6.17

# exit code: 1
";
    const BROKEN: &str = "  CC [M]  module/os/linux/zfs/zpl_file.o
module/os/linux/zfs/zpl_file.c:1044:10: error: 'struct file_operations' has no member named 'iterate_shared'
module/os/linux/zfs/zpl_file.c:1044:10: error: 'struct file_operations' has no member named 'iterate_shared'
make[4]: *** [scripts/Makefile.build:287: module/os/linux/zfs/zpl_file.o] Error 1
";

    #[test]
    fn a_kernel_zfs_does_not_know_is_said_in_one_line_with_dkms_errors() {
        let e = ZfsDoesNotBuild {
            kernel: "7.2.12+deb14-amd64".into(),
            zfs: "2.4.4".into(),
            errors: dkms_error_lines(REFUSED),
            make_log: "/c/debian-14/builder.partial/root/var/lib/dkms/zfs/2.4.4/build/make.log"
                .into(),
        };
        assert_eq!(
            e.short(),
            "zfs does not build for kernel 7.2.12+deb14-amd64"
        );
        let text = e.to_string();
        let first = text.lines().next().unwrap();
        assert!(first.starts_with("zfs does not build for kernel 7.2.12+deb14-amd64 (ZFS 2.4.4"));
        assert!(text.contains("\n  *** None of the expected \"bdev_open\" interfaces"));
        assert!(text.contains("*** Compatible Kernels: 4.18 - 6.17"));
        assert!(!text.contains("checking for"));
        // anyhow keeps it findable for the matrix.
        let wrapped = anyhow::Error::from(e).context("building the image");
        assert!(wrapped.downcast_ref::<ZfsDoesNotBuild>().is_some());
    }

    #[test]
    fn a_release_debootstrap_does_not_know_takes_sids_script() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["sid", "trixie"] {
            fs::write(dir.path().join(name), "").unwrap();
        }
        assert_eq!(debootstrap_script(dir.path(), "trixie"), None);
        assert_eq!(
            debootstrap_script(dir.path(), "forky"),
            Some(dir.path().join("sid").display().to_string())
        );
        // No sid script either: debootstrap says what it lacks.
        fs::remove_file(dir.path().join("sid")).unwrap();
        assert_eq!(debootstrap_script(dir.path(), "forky"), None);
    }

    #[test]
    fn compiler_errors_each_once_and_no_make_noise() {
        assert_eq!(
            dkms_error_lines(BROKEN),
            [
                "module/os/linux/zfs/zpl_file.c:1044:10: error: 'struct file_operations' has no member named 'iterate_shared'"
            ]
        );
        assert_eq!(dkms_error_lines(&"x.c:1:1: error: e\n".repeat(3)).len(), 1);
        let many: String = (0..30).map(|i| format!("x.c:{i}:1: error: e\n")).collect();
        assert_eq!(dkms_error_lines(&many).len(), 12);
    }
}
