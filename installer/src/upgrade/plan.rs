//! The upgrade as data: what `kldload upgrade` checks an update against, the new boot
//! environment's name, and the plan that makes it (snapshot, clone, install into the clone,
//! check its initramfs, make it the next boot). Nothing here reads the machine; the facts it
//! needs come in [`Facts`] ([`super::machine`] reads them).

use super::apt::{IsolatedApt, UpdateSource};
use super::update::UpdateInfo;
use crate::plan::{Action, Plan, Step, StepId};
use std::path::{Path, PathBuf};

/// Where the new boot environment is mounted while the update is installed into it.
pub const CLONE_ROOT: &str = "/run/kldload/upgrade-root";

/// The boot environment properties kldload keeps (user properties: ZFS keeps them with the
/// dataset, every tool shows them, ZFSBootMenu reads them without writing).
pub const STATE: &str = "org.kldload:state";
pub const KERNEL: &str = "org.kldload:kernel";
pub const ZFS: &str = "org.kldload:zfs";
pub const FROM: &str = "org.kldload:upgraded-from";

/// A boot environment's state, in [`STATE`].
pub mod state {
    /// Being made: a clone an upgrade has not finished (destroyed by the next upgrade).
    pub const INSTALLING: &str = "installing";
    /// Made, and the next boot; not yet booted to the end.
    pub const TRIAL: &str = "trial";
    /// Booted to the end (multi-user, the login): kept as a fallback.
    pub const GOOD: &str = "good";
    /// Its trial boot did not reach the end.
    pub const FAILED: &str = "failed";
}

/// What the machine is, as far as an upgrade cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub pool: String,
    /// The running boot environment (mounted at /).
    pub running: String,
    /// The pool's boot environments (the datasets right under `<pool>/ROOT`).
    pub boot_environments: Vec<String>,
    /// Those of them on trial ([`STATE`] = trial): made by an upgrade, not yet booted to the end.
    pub on_trial: Vec<String>,
    /// Those an earlier upgrade left unfinished ([`STATE`] = installing), never the running one.
    pub unfinished: Vec<String>,
    /// The running boot environment's locally set properties, (name, value), which its
    /// clone is given too (ZFSBootMenu's command line, kernel pin, and so on).
    pub local_properties: Vec<(String, String)>,
    /// The distro it runs, as kldload names them (debian-13).
    pub distro: String,
    /// The signer of the running zfs.ko (`modinfo --field=signer zfs`); None when unsigned.
    pub module_signer: Option<String>,
    /// Kernel releases the running boot environment has in /lib/modules.
    pub kernels: Vec<String>,
    /// The ZFS version running (`zfs version`'s userland, e.g. 2.3.9).
    pub zfs: String,
    /// The pool's features that are enabled or active.
    pub pool_features: Vec<String>,
    /// The dataset /var/lib/dpkg is on (`findmnt --target`).
    pub package_database: String,
    /// The running boot environment's `org.zfsbootmenu:commandline`, set or inherited.
    pub commandline: Option<String>,
    /// The date and time now, UTC: YYYYMMDD and HHMMSS.
    pub date: String,
    pub time: String,
}

/// Why an update is refused, each reason with its fix; empty when it may be installed.
pub fn refusals(info: &UpdateInfo, f: &Facts) -> Vec<String> {
    let mut out = Vec::new();
    if info.distro != f.distro {
        out.push(format!(
            "the update is for {}, and this machine runs {}. fix: build the update for {} \
             (cargo xtask build-update {})",
            info.distro, f.distro, f.distro, f.distro
        ));
    }
    match &f.module_signer {
        Some(signer) if *signer != info.module_signer => out.push(format!(
            "the update's zfs.ko is signed by {:?}, and this machine's by {signer:?}: with \
             Secure Boot on, its kernel would refuse the new zfs.ko. fix: build the update \
             from the build cache this machine's image came from",
            info.module_signer
        )),
        _ => {}
    }
    if f.package_database != f.running {
        out.push(format!(
            "the package database (/var/lib/dpkg) is on {}, outside the boot environment {}: \
             installing into a clone would change the running system's package records too (a \
             machine installed before kldload kept /var in the boot environment). fix: install \
             from a newer medium, or move /var/lib into {} by hand",
            f.package_database, f.running, f.running
        ));
    }
    for be in &f.on_trial {
        out.push(format!(
            "{be} is on trial already, from an earlier upgrade: reboot to try it (it is kept \
             once it has booted to the end), or remove it first. fix: reboot, or `zfs destroy \
             {be}`"
        ));
    }
    let unknown: Vec<&str> = (f.pool_features.iter())
        .filter(|feature| !info.features.contains(feature))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        out.push(format!(
            "the update's ZFS {} cannot import pool {}: it does not know the features {} that \
             the pool has enabled. fix: an update with ZFS {} or newer",
            info.zfs,
            f.pool,
            unknown.join(", "),
            f.zfs
        ));
    }
    out
}

/// How the new boot environment becomes the next boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextBoot {
    /// On trial ([`super::trial`]): ZFSBootMenu (built at image time, with kldload's hook)
    /// boots it once; the bootfs stays the running one until it has booted to the end.
    Trial,
    /// As the pool's bootfs at once: the ZFSBootMenu on the ESP has no trial hook (one the
    /// user gave), so going back is picking the old boot environment in its menu.
    Bootfs,
}

/// What a boot environment on trial adds to its kernel command line: a kernel panic, or an
/// initramfs that cannot mount the root (initramfs-tools' panic), restarts the machine after
/// 10 seconds instead of waiting for someone at the console; the next boot is the previous
/// boot environment. Taken off again once it has booted to the end.
pub const TRIAL_PANIC: &str = "panic=10";

/// Whether the running system already has what the update brings (nothing to do).
pub fn already_there(info: &UpdateInfo, f: &Facts) -> bool {
    f.kernels.contains(&info.kernel) && f.zfs == info.zfs
}

/// The new boot environment's dataset: `<pool>/ROOT/<kernel version>-<date>` (the kernel's
/// release without its Debian ABI and flavour: `7.2.12`), `-2`, `-3`... when taken.
pub fn new_boot_environment(info: &UpdateInfo, f: &Facts) -> String {
    let version: String = info
        .kernel
        .split(['+', '-'])
        .next()
        .unwrap_or(&info.kernel)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    let base = format!("{}/ROOT/{version}-{}", f.pool, f.date);
    (1..)
        .map(|n| match n {
            1 => base.clone(),
            n => format!("{base}-{n}"),
        })
        .find(|name| !f.boot_environments.contains(name))
        .expect("a free name")
}

/// The snapshot of the running boot environment an upgrade clones (and a failed one destroys).
pub fn origin_snapshot(f: &Facts) -> String {
    format!("{}@kldload-upgrade-{}-{}", f.running, f.date, f.time)
}

/// The upgrade's plan: `new` made from the running boot environment and the update installed
/// into it; the running one is only snapshotted.
pub fn plan(
    info: &UpdateInfo,
    f: &Facts,
    apt: &IsolatedApt,
    source: &UpdateSource,
    new: &str,
    next_boot: NextBoot,
) -> Plan {
    let root = Path::new(CLONE_ROOT);
    let in_root = |path: &str| root.join(path.trim_start_matches('/'));
    let snapshot = origin_snapshot(f);
    let mut clone = vec!["zfs".to_string(), "clone".into()];
    let mut set = |property: &str, value: &str| {
        clone.extend(["-o".to_string(), format!("{property}={value}")]);
    };
    set("canmount", "noauto");
    set("mountpoint", "/");
    for (property, value) in &f.local_properties {
        let ours = property.starts_with("org.kldload:");
        let trial_line = next_boot == NextBoot::Trial && property == "org.zfsbootmenu:commandline";
        if !ours && !trial_line && !matches!(property.as_str(), "canmount" | "mountpoint") {
            set(property, value);
        }
    }
    if next_boot == NextBoot::Trial {
        let line = match f.commandline.as_deref() {
            Some(line) => format!("{line} {TRIAL_PANIC}"),
            None => TRIAL_PANIC.to_string(),
        };
        set("org.zfsbootmenu:commandline", &line);
    }
    set(STATE, state::INSTALLING);
    set(KERNEL, &info.kernel);
    set(ZFS, &info.zfs);
    set(FROM, &f.running);
    clone.extend([snapshot.clone(), new.to_string()]);

    let make = Step {
        id: StepId::UpgradeBootEnvironment,
        title: format!("Boot environment: {new}, a clone of {}", f.running),
        why: "the update goes into a copy; the running system is never changed".into(),
        actions: vec![
            Action::run(
                ["zfs", "snapshot", &snapshot],
                "the running boot environment as it is now: the clone's origin",
            ),
            Action::run(
                clone,
                "the new boot environment: noauto (only the booted one is mounted at /), its \
                 origin's own properties, and marked installing until the upgrade ends",
            ),
        ],
    };

    let root_s = CLONE_ROOT.to_string();
    // Plain binds, no submounts: the clone unmounts whole afterwards (an rbind of /sys takes
    // its cgroup mounts along, which stay busy).
    let bind = |what: &str, why: &str| {
        Action::run(
            ["mount", "--bind", what, &in_root(what).to_string_lossy()],
            why,
        )
    };
    let mut install_argv = vec![
        "env".to_string(),
        "DEBIAN_FRONTEND=noninteractive".into(),
        "chroot".into(),
        root_s.clone(),
    ];
    install_argv.extend(apt.apt_get(&[
        "install",
        "--yes",
        "--no-install-recommends",
        super::UPDATE_PACKAGE,
    ]));
    let apt_dir = apt.dir.to_string_lossy().into_owned();
    let mut install = Step {
        id: StepId::UpgradeInstall,
        title: format!(
            "Install kernel {} and ZFS {} into {new}",
            info.kernel, info.zfs
        ),
        why: "apt installs the checked packages into the clone only".into(),
        actions: vec![
            Action::run(
                ["mkdir", "-p", CLONE_ROOT],
                "where the new boot environment is mounted",
            ),
            Action::run(
                ["mount", "-t", "zfs", "-o", "zfsutil", new, CLONE_ROOT],
                "mount the new boot environment (its mountpoint is /, taken by the running one)",
            ),
            Action::run(
                [
                    "mount",
                    "-t",
                    "proc",
                    "proc",
                    &in_root("proc").to_string_lossy(),
                ],
                "apt, the kernel's scripts and update-initramfs read /proc",
            ),
            bind("/sys", "update-initramfs reads the devices"),
            bind("/dev", "the kernel's and ZFS's scripts use /dev"),
            bind(
                "/var/log",
                "dpkg's and apt's logs go to the pool's log dataset, as they do on the running system",
            ),
            Action::run(
                ["mkdir", "-p", &in_root(&apt_dir).to_string_lossy()],
                "where the checked update is seen from inside the clone",
            ),
            Action::run(
                [
                    "mount",
                    "--bind",
                    &apt_dir,
                    &in_root(&apt_dir).to_string_lossy(),
                ],
                "the update's lists and packages, as apt checked and downloaded them",
            ),
        ],
    };
    if let UpdateSource::Directory(dir) = source {
        // apt reads a file: source's Packages where it is, not from its lists.
        let dir = dir.to_string_lossy();
        install.actions.extend([
            Action::run(
                ["mkdir", "-p", &in_root(&dir).to_string_lossy()],
                "where the update's directory is seen from inside the clone",
            ),
            Action::run(
                [
                    "mount",
                    "--bind",
                    "-o",
                    "ro",
                    &dir,
                    &in_root(&dir).to_string_lossy(),
                ],
                "apt reads a directory's packages where they are",
            ),
        ]);
    }
    install.actions.push(Action::run(
        install_argv,
        "the update's package, which depends on exactly its kernel, ZFS modules and \
                 userland; its kernel's scripts make its initramfs with this machine's hostid",
    ));

    let initrd = in_root(&format!("boot/initrd.img-{}", info.kernel));
    let check = Step {
        id: StepId::UpgradeInitramfs,
        title: format!("Check the initramfs of kernel {}", info.kernel),
        why: "a boot environment whose initramfs cannot import the pool must not be booted".into(),
        actions: vec![Action::CheckInitramfs {
            image: initrd,
            hostid_file: in_root("etc/hostid"),
            why: "zfs.ko and this machine's hostid must be in the new kernel's initramfs".into(),
        }],
    };

    let mut next = Step {
        id: StepId::UpgradeNextBoot,
        title: format!("Make {new} the next boot"),
        why: "the new boot environment boots next; the running one stays as it is".into(),
        actions: vec![
            Action::run(
                ["umount", "--recursive", CLONE_ROOT],
                "the new boot environment is complete",
            ),
            Action::run(
                ["zfs", "set", &format!("{STATE}={}", state::TRIAL), new],
                "made: on trial until it has booted to the end",
            ),
        ],
    };
    let variable = |name: &str| format!("{name}-{}", super::trial::VENDOR_GUID);
    if next_boot == NextBoot::Trial {
        next.actions.push(Action::RemoveEfiVariable {
            name: variable(super::trial::TRIED),
            why: "a try recorded for an earlier trial is no longer wanted".into(),
        });
    }
    next.actions.push(match next_boot {
        NextBoot::Trial => Action::SetEfiVariable {
            name: variable(super::trial::VARIABLE),
            text: format!("{new}\n"),
            why: "ZFSBootMenu's kldload hook boots it once in place of the bootfs, which stays \
                  the running one until the new one has booted to the end"
                .into(),
        },
        NextBoot::Bootfs => Action::run(
            ["zpool", "set", &format!("bootfs={new}"), &f.pool],
            "ZFSBootMenu counts down to the pool's bootfs: the new boot environment boots \
             next, and the previous one stays in the menu (this ZFSBootMenu has no trial hook)",
        ),
    });

    Plan {
        distro: f.distro.clone(),
        target_root: PathBuf::from(CLONE_ROOT),
        disks: vec![],
        steps: vec![make, install, check, next],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> UpdateInfo {
        UpdateInfo {
            distro: "debian-13".into(),
            suite: "trixie-backports".into(),
            kernel: "7.2.12+deb13-amd64".into(),
            zfs: "2.4.4".into(),
            module_signer: "kldload build b1 module signing key".into(),
            features: vec!["async_destroy".into(), "zstd_compress".into()],
        }
    }

    fn facts() -> Facts {
        Facts {
            pool: "rpool".into(),
            running: "rpool/ROOT/default".into(),
            boot_environments: vec!["rpool/ROOT/default".into()],
            on_trial: vec![],
            unfinished: vec![],
            local_properties: vec![
                ("mountpoint".into(), "/".into()),
                ("canmount".into(), "noauto".into()),
                (
                    "org.zfsbootmenu:commandline".into(),
                    "console=ttyS0,115200".into(),
                ),
                ("org.kldload:state".into(), "good".into()),
            ],
            distro: "debian-13".into(),
            module_signer: Some("kldload build b1 module signing key".into()),
            kernels: vec!["6.12.117+deb13-amd64".into()],
            zfs: "2.3.9".into(),
            pool_features: vec!["async_destroy".into()],
            commandline: Some("console=ttyS0,115200".into()),
            package_database: "rpool/ROOT/default".into(),
            date: "20261208".into(),
            time: "031500".into(),
        }
    }

    /// The doctor names each state an upgrade writes in its own words.
    #[test]
    fn the_doctor_reads_the_states_an_upgrade_writes() {
        use crate::doctor::boot_environments::{BootEnvironmentsReadings, judge};
        let said = |state: &str| {
            let r = BootEnvironmentsReadings {
                pool: "rpool".into(),
                bootfs: Some("rpool/ROOT/default".into()),
                running: "rpool/ROOT/default".into(),
                mounted_at_root: vec![],
                upgrades: vec![("rpool/ROOT/new".into(), state.into())],
            };
            judge(&r).0.pop().unwrap()
        };
        assert!(said(state::TRIAL).contains("on trial"));
        assert!(said(state::FAILED).contains("failed: its trial boot did not reach the end"));
        assert!(said(state::INSTALLING).contains("left unfinished by an upgrade"));
        assert_eq!(said(state::GOOD), "rpool/ROOT/new: good (kldload upgrade)");
    }

    #[test]
    fn an_update_for_this_machine_is_taken() {
        assert_eq!(refusals(&info(), &facts()), Vec::<String>::new());
        assert!(!already_there(&info(), &facts()));
        let mut f = facts();
        f.kernels.push("7.2.12+deb13-amd64".into());
        f.zfs = "2.4.4".into();
        assert!(already_there(&info(), &f));
    }

    #[test]
    fn another_distro_another_signer_and_unknown_features_are_refused_with_fixes() {
        let mut f = facts();
        f.distro = "debian-12".into();
        f.module_signer = Some("kldload build other module signing key".into());
        f.pool_features
            .extend(["block_cloning".into(), "raidz_expansion".into()]);
        f.on_trial = vec!["rpool/ROOT/7.2.11-20261201".into()];
        let r = refusals(&info(), &f);
        assert_eq!(r.len(), 4, "{r:#?}");
        assert!(r[2].starts_with("rpool/ROOT/7.2.11-20261201 is on trial already"));
        assert!(r[0].starts_with("the update is for debian-13, and this machine runs debian-12"));
        assert!(r[1].contains("signed by \"kldload build b1 module signing key\""));
        assert!(r[3].contains("does not know the features block_cloning, raidz_expansion"));
        assert!(r.iter().all(|r| r.contains("fix: ")));
        // A package database outside the boot environment (an older install's rpool/var).
        let mut old_layout = facts();
        old_layout.package_database = "rpool/var".into();
        let r = refusals(&info(), &old_layout);
        assert_eq!(r.len(), 1, "{r:#?}");
        assert!(r[0].starts_with("the package database (/var/lib/dpkg) is on rpool/var, outside"));
        // Unsigned modules (a machine without Secure Boot's signing) are not compared.
        f = facts();
        f.module_signer = None;
        assert!(refusals(&info(), &f).is_empty());
    }

    #[test]
    fn the_new_boot_environment_is_named_by_kernel_and_date_and_never_taken() {
        let mut f = facts();
        assert_eq!(
            new_boot_environment(&info(), &f),
            "rpool/ROOT/7.2.12-20261208"
        );
        f.boot_environments.extend([
            "rpool/ROOT/7.2.12-20261208".into(),
            "rpool/ROOT/7.2.12-20261208-2".into(),
        ]);
        assert_eq!(
            new_boot_environment(&info(), &f),
            "rpool/ROOT/7.2.12-20261208-3"
        );
    }

    #[test]
    fn on_trial_the_bootfs_stays_and_the_variable_names_the_new_one() {
        let apt = IsolatedApt::new("/run/kldload/update");
        let new = "rpool/ROOT/7.2.12-20261208";
        let source = UpdateSource::Url("http://10.0.2.2:8080/update".into());
        let p = plan(&info(), &facts(), &apt, &source, new, NextBoot::Trial);
        let actions: Vec<&Action> = p.steps.iter().flat_map(|s| &s.actions).collect();
        assert!(
            !actions
                .iter()
                .any(|a| a.argv().is_some_and(|argv| argv[0] == "zpool")),
            "no bootfs change on trial"
        );
        assert!(actions.iter().any(|a| matches!(a,
            Action::SetEfiVariable { name, text, .. }
                if name == "KldloadBootTrial-b57dc227-a3a2-4fda-9107-bca43f5c1b5d"
                    && text == "rpool/ROOT/7.2.12-20261208\n")));
        let clone = actions
            .iter()
            .find_map(|a| a.argv().filter(|argv| argv[1] == "clone"))
            .unwrap()
            .join(" ");
        assert!(
            clone.contains("-o org.zfsbootmenu:commandline=console=ttyS0,115200 panic=10 "),
            "{clone}"
        );
        // A URL's packages were downloaded: nothing of a directory is bound in.
        assert!(!actions.iter().any(|a| {
            a.argv()
                .is_some_and(|argv| argv.contains(&"ro".to_string()))
        }));
    }

    #[test]
    fn the_plan_clones_installs_checks_and_only_then_switches_bootfs() {
        let apt = IsolatedApt::new("/run/kldload/update");
        let new = "rpool/ROOT/7.2.12-20261208";
        let source = UpdateSource::Directory("/media/stick/update".into());
        let p = plan(&info(), &facts(), &apt, &source, new, NextBoot::Bootfs);
        let lines: Vec<String> = (p.steps.iter())
            .flat_map(|s| &s.actions)
            .map(|a| match a.argv() {
                Some(argv) => argv.join(" "),
                None => format!("{a:?}"),
            })
            .collect();
        let at = |prefix: &str| {
            lines
                .iter()
                .position(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} in {lines:#?}"))
        };
        assert_eq!(
            lines[at("zfs clone")],
            "zfs clone -o canmount=noauto -o mountpoint=/ \
             -o org.zfsbootmenu:commandline=console=ttyS0,115200 -o org.kldload:state=installing \
             -o org.kldload:kernel=7.2.12+deb13-amd64 -o org.kldload:zfs=2.4.4 \
             -o org.kldload:upgraded-from=rpool/ROOT/default \
             rpool/ROOT/default@kldload-upgrade-20261208-031500 rpool/ROOT/7.2.12-20261208"
        );
        assert!(at("zfs snapshot") < at("zfs clone"));
        assert!(at("zfs clone") < at("env DEBIAN_FRONTEND=noninteractive chroot"));
        // A directory's packages are read where they are: seen from inside the clone.
        assert!(
            at(
                "mount --bind -o ro /media/stick/update /run/kldload/upgrade-root/media/stick/update"
            ) < at("env DEBIAN_FRONTEND")
        );
        assert!(at("env DEBIAN_FRONTEND") < at("CheckInitramfs"));
        assert!(at("CheckInitramfs") < at("zpool set bootfs=rpool/ROOT/7.2.12-20261208 rpool"));
        // Nothing touches the running boot environment but its snapshot.
        for l in &lines {
            assert!(
                !l.contains("rpool/ROOT/default")
                    || l.starts_with("zfs snapshot")
                    || l.starts_with("zfs clone"),
                "{l}"
            );
        }
    }
}
