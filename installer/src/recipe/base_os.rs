//! Step 3: the base system onto the pool: the prebuilt payload (kernel, ZFS modules built and
//! signed at image time, no compiler), or, on request, from a mirror with the distro's own tool:
//! debootstrap and apt (Debian), dnf (Rocky), or the release's base and kernel sets (FreeBSD).

use super::{BaseSource, Inputs, PlanError, TARGET_ROOT};
use crate::config::{Distro, Family};
use crate::plan::{Action, Stdin, Step, StepId};

/// Where the install log is kept on the target.
pub const INSTALL_LOG: &str = "var/log/kldload/install.log";

/// Debian's release name for a distro.
pub fn debian_suite(distro: Distro) -> Option<&'static str> {
    match distro {
        Distro::Debian13 => Some("trixie"),
        Distro::Debian12 => Some("bookworm"),
        Distro::Debian14 => Some("forky"),
        _ => None,
    }
}

/// Packages a Debian target needs beyond debootstrap's default set, when installing from a
/// mirror (the payload already holds them, with ZFS prebuilt instead of zfs-dkms).
pub fn debian_mirror_packages(distro: Distro) -> Vec<&'static str> {
    let mut p = vec![
        "linux-image-amd64",
        "linux-headers-amd64",
        "zfs-dkms",
        "zfsutils-linux",
        "zfs-initramfs",
        "efibootmgr",
        "openssh-server",
        "locales",
        "zstd",
        "wireguard-tools",
        "dosfstools",
    ];
    if matches!(distro, Distro::Debian13 | Distro::Debian14) {
        // A package of its own since trixie; part of systemd before.
        p.push("systemd-resolved");
    }
    p
}

/// Packages of a Rocky Linux 9 target (kmod-zfs comes with `zfs` from the OpenZFS repository).
pub const ROCKY_PACKAGES: [&str; 11] = [
    "@core",
    "kernel",
    "zfs",
    "zfs-dracut",
    "efibootmgr",
    "openssh-server",
    "NetworkManager",
    "wireguard-tools",
    "zstd",
    "dosfstools",
    "glibc-langpack-en",
];

/// The target's apt sources (deb822). Debian 12 adds bookworm-backports, where its ZFS 2.3 is:
/// bookworm's own 2.1 cannot import a pool made by a newer ZFS.
pub fn debian_sources(distro: Distro, mirror: &str) -> String {
    let suite = debian_suite(distro).unwrap_or("trixie");
    let mut suites = format!("{suite} {suite}-updates");
    if distro == Distro::Debian12 {
        suites.push_str(" bookworm-backports");
    }
    format!(
        "Types: deb\nURIs: {mirror}\nSuites: {suites}\nComponents: main contrib non-free-firmware\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
}

pub fn step(inputs: &Inputs) -> Result<Step, PlanError> {
    let distro = inputs.config.distro;
    let family = distro.family();
    let log_dir = inputs.target("var/log/kldload");
    let mut actions = vec![
        Action::run(
            ["mkdir", "-p", &log_dir],
            "where the install log is kept on the target",
        ),
        Action::LogTo {
            path: Some(inputs.target(INSTALL_LOG).into()),
            why: "from here on the install log is also written to the target".into(),
        },
    ];
    match (&inputs.source, family) {
        (BaseSource::Image(image), _) => actions.push(Action::run_with_stdin(
            [
                "tar",
                // 1 MiB records, so file data reaches ZFS in writes of up to 1 MiB, not tar's
                // default 10 KiB: a fifth less time laying the payload onto the pool under TCG.
                // Records read whole from zstd's pipe, as GNU tar's manual asks for pipes.
                "--blocking-factor=2048",
                "--read-full-records",
                "--extract",
                "--zstd",
                "--file=-",
                &format!("--directory={TARGET_ROOT}"),
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=*",
                "--acls",
            ],
            Stdin::File {
                path: image.clone(),
            },
            "lay the prebuilt base system onto the pool, keeping owners, ACLs and capabilities",
        )),
        (BaseSource::Mirror(mirror), Family::Debian) => {
            let suite = debian_suite(distro).expect("a Debian distro");
            actions.push(Action::run(
                [
                    "debootstrap",
                    "--arch=amd64",
                    "--components=main,contrib",
                    "--include=ca-certificates",
                    suite,
                    TARGET_ROOT,
                    mirror.as_str(),
                ],
                format!("a minimal Debian {suite} from the mirror"),
            ));
        }
        (BaseSource::Mirror(mirror), Family::Rhel) => {
            actions.extend(rocky_from_mirror(inputs, mirror.as_str())?)
        }
        (BaseSource::Mirror(mirror), Family::FreeBsd) => {
            actions.push(Action::run(
                ["mkdir", "-p", "/run/kldload"],
                "where the sets are downloaded",
            ));
            for set in ["base", "kernel"] {
                let file = format!("/run/kldload/{set}.txz");
                actions.push(Action::run(
                    [
                        "curl",
                        "--fail",
                        "--location",
                        "--retry",
                        "3",
                        "--output",
                        &file,
                        &format!("{}/{set}.txz", mirror.as_str()),
                    ],
                    format!("FreeBSD's {set} set from the release's dist directory"),
                ));
                actions.push(Action::run(
                    [
                        "bsdtar",
                        "--extract",
                        "--preserve-permissions",
                        "--file",
                        &file,
                        "--directory",
                        TARGET_ROOT,
                    ],
                    format!("unpack the {set} set (bsdtar keeps FreeBSD's file flags)"),
                ));
            }
        }
    }
    if family == Family::Debian
        && let Some(mirror) = &inputs.mirror
    {
        actions.push(Action::run(
            ["rm", "-f", &inputs.target("etc/apt/sources.list")],
            "one sources file, in deb822 form",
        ));
        actions.push(Action::write(
            inputs.target("etc/apt/sources.list.d/debian.sources"),
            debian_sources(distro, mirror.as_str()),
            0o644,
            "the installed system's package sources",
        ));
    }
    if family != Family::FreeBsd {
        // FreeBSD's binaries do not run on the Linux live system: it is configured by files only.
        for fs in ["dev", "proc", "sys"] {
            let inside = inputs.target(fs);
            actions.push(Action::run(
                ["mkdir", "-p", &inside],
                format!("/{fs}'s mountpoint in the target"),
            ));
            actions.push(Action::run(
                ["mount", "--rbind", &format!("/{fs}"), &inside],
                format!("/{fs} inside the target, for the commands run in it"),
            ));
            actions.push(Action::run(
                ["mount", "--make-rslave", &inside],
                "so unmounting it later does not unmount the live system's own",
            ));
        }
    }
    if let (BaseSource::Mirror(_), Family::Debian) = (&inputs.source, family) {
        let noninteractive = |args: &[&str]| {
            let mut argv = vec!["env", "DEBIAN_FRONTEND=noninteractive"];
            argv.extend_from_slice(args);
            inputs.chroot(argv)
        };
        actions.push(Action::Run {
            argv: noninteractive(&["apt-get", "update"]),
            why: "read the package lists".into(),
            stdin: None,
        });
        let mut install = vec!["apt-get", "install", "--yes", "--no-install-recommends"];
        if distro == Distro::Debian12 {
            install.extend(["-t", "bookworm-backports"]);
        }
        install.extend(debian_mirror_packages(distro));
        actions.push(Action::Run {
            argv: noninteractive(&install),
            why: "kernel, ZFS (built by DKMS for that kernel), boot tools and sshd".into(),
            stdin: None,
        });
    }
    Ok(Step {
        id: StepId::BaseOs,
        title: format!("Base OS: {distro} onto the pool"),
        why: "the system itself; with the prebuilt payload no compiler runs on the target".into(),
        actions,
    })
}

/// Rocky Linux 9 with dnf into the target: BaseOS and AppStream from the mirror (signatures
/// checked with Rocky's key from that mirror), ZFS from the OpenZFS EL9 kmod repository.
fn rocky_from_mirror(inputs: &Inputs, mirror: &str) -> Result<Vec<Action>, PlanError> {
    let zfs_repo = inputs.config.source.zfs_repo.as_ref().ok_or_else(|| {
        PlanError::Unsupported(
            "rocky-9 from a mirror needs source.zfs_repo (the OpenZFS EL9 kmod repository)".into(),
        )
    })?;
    let root = format!("--installroot={TARGET_ROOT}");
    let mut dnf: Vec<String> = [
        "dnf",
        &root,
        "--releasever=9",
        "--assumeyes",
        "--setopt=install_weak_deps=False",
        "--disablerepo=*",
    ]
    .map(String::from)
    .to_vec();
    for (id, path) in [
        ("kldload-baseos", "BaseOS"),
        ("kldload-appstream", "AppStream"),
    ] {
        dnf.push(format!("--repofrompath={id},{mirror}/9/{path}/x86_64/os/"));
        dnf.push(format!("--enablerepo={id}"));
    }
    dnf.push(format!("--repofrompath=kldload-zfs,{zfs_repo}"));
    dnf.push("--enablerepo=kldload-zfs".into());
    // The OpenZFS key is not on the Rocky mirror; its packages are taken over the URL the answer
    // file names.
    dnf.push("--setopt=kldload-zfs.gpgcheck=0".into());
    dnf.push("install".into());
    dnf.extend(ROCKY_PACKAGES.map(String::from));
    Ok(vec![
        Action::run(["rpm", &format!("--root={TARGET_ROOT}"), "--initdb"], "an empty RPM database in the target"),
        Action::run(
            ["rpm", &format!("--root={TARGET_ROOT}"), "--import", &format!("{mirror}/RPM-GPG-KEY-Rocky-9")],
            "trust Rocky's signing key, from the mirror, for the packages' signatures",
        ),
        Action::Run {
            argv: dnf,
            why: "Rocky Linux 9 with its kernel, ZFS (kmod built for RHEL's stable kernel ABI) and boot tools".into(),
            stdin: None,
        },
    ])
}
