//! The host's packages: what `cargo xtask` needs installed (with apt, as root) before it builds
//! an image or boots a VM, and the one place it runs apt on the host.

use anyhow::{Context, Result, bail};
use std::path::Path;

/// Whether this process runs as root (apt, debootstrap and chroot need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        .unwrap_or(false)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(tool).is_file())
}

/// Installs missing host packages when root; otherwise says exactly what to run.
pub fn ensure_host_packages(tools: &[(&str, &str)]) -> Result<()> {
    let mut missing: Vec<&str> = tools
        .iter()
        .filter(|(t, _)| !on_path(t))
        .map(|(_, p)| *p)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let mut argv = vec!["apt-get", "install", "--yes", "--no-install-recommends"];
    argv.extend(&missing);
    if !is_root() {
        bail!(
            "missing host packages; install them with:\n  sudo {}",
            crate::run::shown(&argv)
        );
    }
    eprintln!("installing host packages: {}", missing.join(" "));
    apt(&argv)
}

/// Runs apt on the host, never asking (no terminal in CI).
fn apt(argv: &[&str]) -> Result<()> {
    let status = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| format!("running {}", argv[0]))?;
    if !status.success() {
        bail!("`{}` failed", crate::run::shown(argv));
    }
    Ok(())
}

/// Host tools the other tests need: signify-openbsd signs a fake ZFSBootMenu release and curl
/// downloads it (installer/tests/zbm_release.rs); cpio packs and lists initramfs archives
/// (installer/tests/cli.rs, xtask's image::live); man renders kldload's manual page
/// (installer/tests/cli.rs).
pub const TEST_TOOLS: [(&str, &str); 4] = [
    ("signify-openbsd", "signify-openbsd"),
    ("curl", "curl"),
    ("cpio", "cpio"),
    ("man", "man-db"),
];

/// Host tools the VM tests need, and their packages.
pub const VM_TOOLS: [(&str, &str); 6] = [
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-img", "qemu-utils"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("efibootmgr", "efibootmgr"),
    ("sbverify", "sbsigntool"),
];

fn os_codename() -> String {
    std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .unwrap_or_default()
        .trim_matches('"')
        .to_string()
}

/// Where bookworm-backports is added to the host's apt sources, when a package needs it.
const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/kldload-backports.sources";

/// Installs `packages` from bookworm-backports (Debian 12), adding that suite to the host's
/// apt sources first when it is not there.
fn install_from_bookworm_backports(packages: &[&str]) -> Result<()> {
    let source = Path::new(BACKPORTS_SOURCE);
    let mirror = kldload::mirror::host_debian_mirror(Path::new("/"))
        .context("no Debian mirror in this host's apt sources, for bookworm-backports")?;
    let text = format!(
        "# Added by `cargo xtask vm-test`: QEMU 10, OVMF and virt-firmware for the VM tests.\n\
         Types: deb\nURIs: {}\nSuites: bookworm-backports\nComponents: main contrib\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        mirror.as_str()
    );
    let mut install = vec![
        "apt-get",
        "install",
        "-t",
        "bookworm-backports",
        "--no-install-recommends",
    ];
    install.extend(packages);
    if !is_root() {
        bail!(
            "{} missing. As root:\n  printf '{}' > {}\n  apt-get update\n  {}",
            packages.join(", "),
            text.replace('\n', "\\n"),
            source.display(),
            crate::run::shown(&install)
        );
    }
    if !source.exists() {
        std::fs::write(source, text)?;
    }
    apt(&["apt-get", "update", "-q"])?;
    install.push("--yes");
    apt(&install)
}

/// Installs QEMU, OVMF and the other VM tools when missing (virt-fw-vars only for
/// `secure_boot`: a run that takes a Secure Boot test). On Debian 12, QEMU, OVMF and
/// virt-firmware come from bookworm-backports (QEMU 10 and OVMF beside the preinstalled
/// qemu-utils 10, which bookworm's own QEMU 7.2 would remove; virt-fw-vars is not in bookworm).
pub fn ensure_vm_packages(secure_boot: bool) -> Result<()> {
    let qemu_missing = !Path::new("/usr/bin/qemu-system-x86_64").exists()
        || !Path::new(vmtests::ovmf::DEBIAN_CODE).exists();
    let bookworm = os_codename() == "bookworm";
    if qemu_missing && bookworm {
        install_from_bookworm_backports(&["qemu-system-x86", "qemu-utils", "ovmf"])?;
    } else if qemu_missing {
        ensure_host_packages(&[
            ("qemu-system-x86_64", "qemu-system-x86"),
            ("qemu-img", "qemu-utils"),
        ])?;
        if !Path::new(vmtests::ovmf::DEBIAN_CODE).exists() {
            // The harness falls back to $OVMF_CODE/$OVMF_VARS or the ovmf-prebuilt download.
            let _ = ensure_host_packages(&[("__ovmf_marker__", "ovmf")]);
        }
    }
    // The Secure Boot tests enroll the build's MOK into the firmware's variables with it.
    if secure_boot && !on_path("virt-fw-vars") {
        if bookworm {
            install_from_bookworm_backports(&["python3-virt-firmware"])?;
        } else {
            ensure_host_packages(&[("virt-fw-vars", "python3-virt-firmware")])?;
        }
    }
    ensure_host_packages(&VM_TOOLS)
}
