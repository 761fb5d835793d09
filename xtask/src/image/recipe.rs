//! What goes into an image, as data: the distros, the package sets of each root, and the files
//! the live system is configured with. Everything here feeds the cache keys, so changing a
//! package list or a file rebuilds exactly the phases it belongs to.

/// Bump when the build steps change in a way the package lists do not show.
pub const RECIPE_VERSION: &str = "2";

/// A distro `build-image` can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageDistro {
    /// The name on the command line and in cache paths.
    pub name: &'static str,
    pub suite: &'static str,
    /// A suite ZFS is taken from when the release's own is too old.
    pub zfs_suite: Option<&'static str>,
}

pub const DISTROS: [ImageDistro; 3] = [
    ImageDistro {
        name: "debian-13",
        suite: "trixie",
        zfs_suite: None,
    },
    // bookworm's ZFS 2.1 cannot import pools with the features ZFSBootMenu's 2.3 writes;
    // bookworm-backports carries 2.3.
    ImageDistro {
        name: "debian-12",
        suite: "bookworm",
        zfs_suite: Some("bookworm-backports"),
    },
    // Debian testing: the newest kernel and zfs-dkms, where a kernel that outruns OpenZFS shows
    // first (build-image then says "zfs does not build for kernel X").
    ImageDistro {
        name: "debian-14",
        suite: "forky",
        zfs_suite: None,
    },
];

/// Not a distro to install: the builder of the ZFSBootMenu with an older ZFS than any system
/// kldload installs (bookworm main's 2.1), for the VM scenario of a pool whose features the
/// boot menu's ZFS cannot read.
pub const ZFS_2_1_BUILDER: ImageDistro = ImageDistro {
    name: "debian-12-zfs-2.1",
    suite: "bookworm",
    zfs_suite: None,
};

impl ImageDistro {
    /// What `debian` means, and what `cargo xtask ci` tests.
    pub const DEFAULT: ImageDistro = DISTROS[0];

    /// Finds a distro by name; `debian` means debian-13. Unknown names list the known ones.
    pub fn find(name: &str) -> anyhow::Result<ImageDistro> {
        let name = if name == "debian" { "debian-13" } else { name };
        DISTROS
            .iter()
            .copied()
            .find(|d| d.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = DISTROS.iter().map(|d| d.name).collect();
                anyhow::anyhow!(
                    "unknown distro {name:?}: build-image knows debian (= debian-13), {}",
                    known.join(", ")
                )
            })
    }

    /// The system its medium installs (the VM tests' distro): a builder that is no distro of
    /// kldload's ([`ZFS_2_1_BUILDER`]) has none.
    pub fn installs(&self) -> anyhow::Result<kldload::config::Distro> {
        self.name.parse().map_err(anyhow::Error::msg)
    }

    /// The apt sources of the build roots (deb822).
    pub fn sources(&self, mirror: &str) -> String {
        let mut suites = format!("{} {}-updates", self.suite, self.suite);
        if let Some(z) = self.zfs_suite {
            suites.push(' ');
            suites.push_str(z);
        }
        format!(
            "Types: deb\nURIs: {mirror}\nSuites: {suites}\nComponents: main contrib\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
    }

    /// apt-get options that take ZFS from `zfs_suite` when there is one.
    pub fn zfs_target_release(&self) -> Vec<&'static str> {
        match self.zfs_suite {
            Some(s) => vec!["-t", s],
            None => vec![],
        }
    }
}

/// The builder root: a kernel with its headers, and DKMS building ZFS for exactly that kernel.
/// It is never shipped: compilers, headers and the signing key stay here.
pub const BUILDER_PACKAGES: [&str; 6] = [
    "linux-image-amd64",
    "linux-headers-amd64",
    "dkms",
    // The EFI stub the live system's kernel, initrd and command line are wrapped in.
    "systemd-boot-efi",
    "zstd",
    "ca-certificates",
];

/// What ZFSBootMenu's build and its image need in the builder root (its README's list for a
/// Debian builder), installed in an overlay so the builder itself is unchanged.
pub const ZBM_BUILD_PACKAGES: [&str; 12] = [
    "libsort-versions-perl",
    "libboolean-perl",
    "libyaml-pp-perl",
    "fzf",
    "make",
    "mbuffer",
    "kexec-tools",
    "dracut-core",
    "bsdextrautils",
    "procps",
    "cryptsetup-bin",
    "zfsutils-linux",
];

/// The command line built into ZFSBootMenu's EFI file: the release build's, and `zbm.prefer`
/// for kldload's default pool. The installer replaces it with the answer file's load options
/// (`zbm_image::set_cmdline`). The copy signed for Secure Boot has none: its options come from
/// the firmware entry through shim (see `installer/src/recipe/boot_menu.rs`).
pub const ZBM_EMBEDDED_CMDLINE: &str = "quiet loglevel=0 nomodeset zbm.prefer=rpool";

/// Installed after the signing key is configured, so DKMS signs what it builds.
pub const BUILDER_ZFS_PACKAGES: [&str; 1] = ["zfs-dkms"];

/// The target payload: what an installed machine runs. The kernel (`linux-image-<version>`,
/// the builder's exact one) and the prebuilt ZFS module package are added to these. The kernel
/// metapackage is left out on purpose: an `apt upgrade` must not bring a kernel without ZFS.
pub const PAYLOAD_PACKAGES: [&str; 19] = [
    "zfsutils-linux",
    "zfs-initramfs",
    "zfs-zed",
    "efibootmgr",
    "kexec-tools",
    "wireguard-tools",
    "openssh-server",
    "zstd",
    "systemd-sysv",
    "systemd-resolved",
    "udev",
    "kmod",
    "locales",
    "dosfstools",
    "ca-certificates",
    "iproute2",
    "initramfs-tools",
    // Secure Boot: its state and MOK enrollment (`mokutil --sb-state`, `--import`), and the
    // kernel's keyrings by name (`keyctl`).
    "mokutil",
    "keyutils",
];

/// Packages of debootstrap's default set (required and important) the payload purges. An
/// installed machine's network is systemd-networkd's (installer/src/recipe/system_configuration.rs);
/// ifupdown would start networking.service at every boot beside it, with nothing in
/// /etc/network/interfaces to do, on the path to the login prompt.
pub const PAYLOAD_PACKAGES_PURGED: [&str; 1] = ["ifupdown"];

/// Units of the payload's packages disabled on an installed machine, which have nothing to do
/// there: e2fsprogs' online ext4 scrub works on LVM snapshots (lvm2 is not installed, and the
/// file systems are ZFS); its reaper otherwise runs at every boot.
pub const PAYLOAD_UNITS_DISABLED: [&str; 2] = ["e2scrub_reap.service", "e2scrub_all.timer"];

/// What the live system adds to the payload to run installs. mdadm and lvm2: a machine's disks
/// may be md members or LVM volumes; the live system shows them (and stops or deactivates them
/// when a user decides to), and the installer must see them as in use, not as blank.
pub const LIVE_PACKAGES: [&str; 7] = [
    "gdisk",
    "curl",
    "debootstrap",
    "less",
    "mtools",
    "mdadm",
    "lvm2",
];

/// Kernel module directories the live system does without (it installs, it does not play
/// sound or drive GPUs), to keep its initrd small.
pub const LIVE_MODULES_DROPPED: [&str; 9] = [
    "kernel/sound",
    "kernel/drivers/gpu",
    "kernel/drivers/media",
    "kernel/drivers/net/wireless",
    "kernel/drivers/infiniband",
    "kernel/drivers/staging",
    "kernel/drivers/bluetooth",
    "kernel/net/bluetooth",
    "kernel/drivers/iio",
];

/// What else the live system does without, under /usr/share, to keep its initrd small (every
/// byte of it is read by the firmware, hashed by shim and unpacked by the kernel at each boot):
/// translations and localisation sources (it runs in C.UTF-8) and documentation, whose
/// `copyright` files stay (the medium is redistributed). Man pages stay, for the rescue shell.
pub const LIVE_PATHS_DROPPED: [&str; 3] = ["usr/share/locale", "usr/share/i18n", "usr/share/doc"];

/// Units the live system starts at boot: the unattended install, and the network (DHCP on
/// every wired interface, names resolved) that a mirror install or a ZFSBootMenu download needs.
pub const LIVE_UNITS_ENABLED: [&str; 3] = [
    "kldload-unattended.service",
    "systemd-networkd.service",
    "systemd-resolved.service",
];

/// Units the live system masks. Timers: a medium that lives for one install needs no upkeep,
/// and a service started mid-install would copy the target's mounts into its own mount
/// namespace. OpenZFS's boot-time import, mount, share and event daemon: the live system
/// imports no pool by itself (a person imports one with `zpool import -R /mnt`, the installer
/// makes its own), and those units made every live boot wait for `systemd-udev-settle` before
/// local-fs.target and so before the installer (the zfs module is loaded by modules-load.d).
pub const LIVE_UNITS_MASKED: [&str; 14] = [
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "logrotate.timer",
    "man-db.timer",
    "zfs-load-module.service",
    "zfs-import-cache.service",
    "zfs-import-scan.service",
    "zfs-mount.service",
    "zfs-share.service",
    "zfs-volume-wait.service",
    "zfs-zed.service",
];

/// Whether a package is a build tool the payload must not contain: a C compiler, DKMS, or
/// kernel headers. (gcc-14-base, a runtime library's base package, is not a compiler.)
pub fn is_build_tool(package: &str) -> bool {
    let versioned = |prefix: &str| {
        package == prefix
            || package
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()))
    };
    versioned("gcc")
        || versioned("cpp")
        || versioned("clang")
        || package == "dkms"
        || package.ends_with("-dkms")
        || package.starts_with("linux-headers-")
        || package == "build-essential"
}

/// The GPT partition name of the medium's ESP; the live system mounts it by this name.
pub const MEDIUM_LABEL: &str = "KLDLOAD";

/// The live kernel's command line: both consoles, serial last so /dev/console is the serial line.
pub const LIVE_CMDLINE: &str = "console=tty1 console=ttyS0,115200 panic=30";

/// Files of the live system: (path, mode, contents).
pub const LIVE_FILES: [(&str, u32, &str); 8] = [
    (
        "etc/systemd/network/80-kldload-live.network",
        0o644,
        "# The live system's wired interfaces by DHCP, for installs from a mirror and ZFSBootMenu\n\
         # downloads; nothing waits for it otherwise.\n\
         [Match]\nType=ether\n\n[Network]\nDHCP=yes\n",
    ),
    (
        "etc/fstab",
        0o644,
        "# The live medium's ESP holds the payload, ZFSBootMenu and an optional answers.toml.\n\
         PARTLABEL=KLDLOAD /run/kldload/medium vfat ro,nofail,x-systemd.device-timeout=30s 0 0\n",
    ),
    ("etc/hostname", 0o644, "kldload-live\n"),
    (
        "etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf",
        0o644,
        "[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %I $TERM\n",
    ),
    (
        "etc/systemd/system/getty@tty1.service.d/autologin.conf",
        0o644,
        "[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --noclear %I $TERM\n",
    ),
    (
        "etc/systemd/system/kldload-unattended.service",
        0o644,
        "# Runs `kldload install` at boot when the medium, QEMU's fw_cfg or the kernel command line\n\
         # (kldload.answers=PATH) gives an answer file. The consoles' gettys wait for it, so its\n\
         # progress is not cut off by a login prompt. It waits for udev to settle: the disk safety\n\
         # checks read udev's database (signatures, partition tables) and answer files name disks\n\
         # by their /dev/disk/by-id links.\n\
         [Unit]\nDescription=kldload unattended install\n\
         Wants=systemd-udev-settle.service\n\
         After=local-fs.target systemd-udev-settle.service systemd-modules-load.service\n\
         Before=getty.target getty@tty1.service serial-getty@ttyS0.service\n\n\
         [Service]\nType=oneshot\nExecStart=/usr/local/bin/kldload unattended\n\
         StandardOutput=journal+console\nStandardError=journal+console\nTimeoutStartSec=infinity\n\n\
         [Install]\nWantedBy=multi-user.target\n",
    ),
    (
        "etc/modules-load.d/kldload.conf",
        0o644,
        "# QEMU hands answer files to the live system through fw_cfg.\nqemu_fw_cfg\nzfs\n",
    ),
    (
        "etc/issue",
        0o644,
        "kldload live system (\\l): `kldload disks`, then `kldload install --config FILE`\n\n",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every distro build-image knows installs one of kldload's, by the same name.
    #[test]
    fn each_image_installs_the_distro_of_its_name() {
        for d in DISTROS {
            assert_eq!(d.installs().unwrap().name(), d.name);
        }
        assert!(ZFS_2_1_BUILDER.installs().is_err());
    }

    #[test]
    fn distros_by_name() {
        assert_eq!(ImageDistro::find("debian").unwrap().suite, "trixie");
        assert_eq!(ImageDistro::find("debian-12").unwrap().suite, "bookworm");
        let err = ImageDistro::find("arch").unwrap_err().to_string();
        assert!(
            err.contains("debian-13") && err.contains("debian-12"),
            "{err}"
        );
    }

    #[test]
    fn bookworm_takes_zfs_from_backports() {
        let d = ImageDistro::find("debian-12").unwrap();
        assert!(
            d.sources("http://mirror.invalid/debian")
                .contains("bookworm-backports")
        );
        assert_eq!(d.zfs_target_release(), ["-t", "bookworm-backports"]);
        let t = ImageDistro::find("debian").unwrap();
        assert!(t.zfs_target_release().is_empty());
        assert!(
            t.sources("http://m.invalid/debian")
                .contains("Components: main contrib\n")
        );
    }

    #[test]
    fn build_tools() {
        for tool in [
            "gcc",
            "gcc-14",
            "cpp-12",
            "dkms",
            "zfs-dkms",
            "linux-headers-amd64",
            "linux-headers-6.12.117+deb13-amd64",
        ] {
            assert!(is_build_tool(tool), "{tool}");
        }
        for not_tool in [
            "gcc-14-base",
            "libgcc-s1",
            "zfsutils-linux",
            "linux-image-amd64",
            "cpio",
        ] {
            assert!(!is_build_tool(not_tool), "{not_tool}");
        }
    }

    #[test]
    fn the_payload_has_no_build_tools() {
        for p in PAYLOAD_PACKAGES.iter().chain(LIVE_PACKAGES.iter()) {
            assert!(
                !is_build_tool(p),
                "{p} would put a build tool on the target"
            );
        }
        assert!(
            PAYLOAD_PACKAGES.contains(&"zfs-initramfs")
                && PAYLOAD_PACKAGES.contains(&"wireguard-tools")
        );
    }

    #[test]
    fn the_live_system_mounts_the_medium_by_its_label() {
        let fstab = LIVE_FILES
            .iter()
            .find(|(p, _, _)| *p == "etc/fstab")
            .unwrap()
            .2;
        assert!(fstab.contains(&format!(
            "PARTLABEL={MEDIUM_LABEL} {}",
            kldload::medium::MOUNT
        )));
        assert!(fstab.contains(kldload::medium::MOUNT));
    }
}
