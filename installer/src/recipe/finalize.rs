//! Step 7: what makes the first boot work and the install undoable: zpool.cache and the ZFS
//! services, everything unmounted, a recursive `@factory` snapshot, and the pool exported so
//! ZFSBootMenu imports it cleanly.

use super::{Inputs, TARGET_ROOT};
use crate::config::Family;
use crate::plan::{Action, Step, StepId};

/// The snapshot of every dataset as installed.
pub const FACTORY_SNAPSHOT: &str = "factory";

/// The unit that runs `kldload doctor` at boot.
pub const DOCTOR_UNIT: &str = "kldload-doctor.service";

/// systemd's first-boot bookkeeping: it stamps /etc/.updated and /var/.updated with /usr's
/// time, which turns off the units with `ConditionNeedsUpdate=` (ldconfig, hwdb, catalog).
const UPDATE_DONE: &str = "/usr/lib/systemd/systemd-update-done";

/// Where the install puts kldload itself on the target, for the doctor.
const INSTALLED_KLDLOAD: &str = "/usr/local/sbin/kldload";

/// Quiet when all is well; otherwise its report goes to the console (before the login prompt)
/// and the journal, and the unit fails (so `systemctl --failed` shows it too).
fn doctor_unit(pool: &str) -> String {
    format!(
        "[Unit]\n\
         Description=kldload doctor: one hostid everywhere ZFS and ZFSBootMenu read it, and a ZFSBootMenu that reads the pool\n\
         After=zfs-import.target zfs-mount.service local-fs.target\n\
         Before=systemd-user-sessions.service\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={INSTALLED_KLDLOAD} doctor --quiet --pool {pool}\n\
         StandardOutput=journal+console\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

/// The unit that settles a boot environment's boot trial (`kldload upgrade`).
pub const BOOT_TRIAL_UNIT: &str = "kldload-boot-trial.service";

/// After the boot has reached multi-user (and boot-complete.target, where units that must pass
/// for a boot to count as good hook in): a boot environment on trial that got here is good and
/// becomes the pool's bootfs; one whose try ran out is marked failed
/// (installer/src/upgrade/trial.rs).
fn boot_trial_unit() -> String {
    format!(
        "[Unit]\n\
         Description=kldload: keep a boot environment on trial once it has booted to the end\n\
         Wants=boot-complete.target\n\
         After=multi-user.target boot-complete.target zfs-mount.service\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={INSTALLED_KLDLOAD} boot-trial\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

/// A drop-in for systemd-udev-settle.service: the boot waits for udev only when it has a pool
/// to import. On Debian only OpenZFS's import units want udev settled, so that the disks'
/// /dev/disk/by-id links exist before `zpool import -c`; the root pool is imported by the
/// initramfs, so a machine with no other pool waited for nothing (9-15 s of every boot under
/// TCG, on the way to the login). `kldload pools-to-import` exits 1 only when zpool.cache names
/// no pool that is not imported yet; any other status (pools to import, no cache, an error,
/// the binary gone) leaves the wait as OpenZFS has it.
pub const UDEV_SETTLE_DROP_IN: &str = "systemd-udev-settle.service.d/kldload.conf";

fn udev_settle_drop_in() -> String {
    format!(
        "# kldload: wait for udev only when a pool is left to import after the initramfs (a pool\n\
         # in /etc/zfs/zpool.cache not imported yet, or no cache at all). Exit status 1 of\n\
         # `kldload pools-to-import` skips the wait; any other runs it.\n\
         [Service]\n\
         ExecCondition=/bin/sh -c '{INSTALLED_KLDLOAD} pools-to-import; test $$? -ne 1'\n"
    )
}

/// The unit that loads the keys of encryption roots outside the boot environment.
pub const LOAD_KEYS_UNIT: &str = "kldload-load-keys.service";

/// The initramfs unlocks only the boot environment's encryption root (with the key file it
/// carries); `zfs mount -a` then skips any other encryption root (root-and-home's `home`) whose
/// key is not loaded. Debian masks OpenZFS's own zfs-load-key.service (a SysV script's name),
/// so kldload loads them itself, from the key file in the booted root, before the mounts.
/// `zfs load-key -r` passes over roots whose key is loaded already.
fn load_keys_unit(pool: &str) -> String {
    format!(
        "[Unit]\n\
         Description=kldload: load the ZFS keys of {pool}'s encryption roots before mounting\n\
         DefaultDependencies=no\n\
         After=zfs-import.target\n\
         Before=zfs-mount.service\n\
         ConditionPathIsDirectory=/sys/module/zfs\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart=/usr/sbin/zfs load-key -r {pool}\n\
         \n\
         [Install]\n\
         WantedBy=zfs-mount.service\n"
    )
}

pub fn step(inputs: &Inputs) -> Step {
    let pool = inputs.pool();
    let linux = inputs.config.distro.family() != Family::FreeBsd;
    // FreeBSD's loader and rc read the cache from /boot/zfs.
    let (cache_dir, cache) = if linux {
        ("etc/zfs", "etc/zfs/zpool.cache")
    } else {
        ("boot/zfs", "boot/zfs/zpool.cache")
    };
    let mut actions = vec![
        Action::run(
            ["mkdir", "-p", &inputs.target(cache_dir)],
            "where the target keeps its pool list",
        ),
        Action::run(
            ["cp", "/etc/zfs/zpool.cache", &inputs.target(cache)],
            "the pool list the installed system imports from at boot",
        ),
    ];
    let doctor = inputs
        .installer
        .as_ref()
        .filter(|_| inputs.config.distro.family() == Family::Debian);
    if let Some(installer) = doctor {
        actions.push(Action::run(
            [
                "install",
                "-m",
                "0755",
                &installer.to_string_lossy(),
                &inputs.target(INSTALLED_KLDLOAD.trim_start_matches('/')),
            ],
            "kldload itself, for `kldload doctor` on the installed system",
        ));
        for (file, what) in super::live_kldload_files() {
            actions.push(Action::run(
                [
                    "install",
                    "-D",
                    "-m",
                    "0644",
                    file,
                    &inputs.target(file.trim_start_matches('/')),
                ],
                what,
            ));
        }
        actions.push(Action::write(
            inputs.target(&format!("etc/systemd/system/{DOCTOR_UNIT}")),
            doctor_unit(pool),
            0o644,
            "at every boot, `kldload doctor` says on the console if the hostid disagrees anywhere",
        ));
        actions.push(Action::write(
            inputs.target(&format!("etc/systemd/system/{BOOT_TRIAL_UNIT}")),
            boot_trial_unit(),
            0o644,
            "after every boot, a boot environment `kldload upgrade` made that booted to the end \
             is kept (good, the pool's bootfs); one that did not is marked failed",
        ));
        let drop_in_dir = UDEV_SETTLE_DROP_IN.rsplit_once('/').expect("a dir").0;
        actions.push(Action::run(
            [
                "mkdir",
                "-p",
                &inputs.target(&format!("etc/systemd/system/{drop_in_dir}")),
            ],
            "where drop-ins for udev's settle unit go",
        ));
        actions.push(Action::write(
            inputs.target(&format!("etc/systemd/system/{UDEV_SETTLE_DROP_IN}")),
            udev_settle_drop_in(),
            0o644,
            "the boot waits for udev to settle only when a pool is left to import after the \
             initramfs (another pool in zpool.cache): the root pool's import needs no wait",
        ));
        actions.push(Action::Run {
            argv: inputs.chroot([INSTALLED_KLDLOAD, "inspect-zfsbootmenu", "--remember"]),
            why: "what ZFSBootMenu's file on the ESP carries, read now and kept for the doctor: \
                  its first boot would otherwise decompress ZFSBootMenu's initramfs while the \
                  system starts, before the login"
                .into(),
            stdin: None,
        });
        actions.push(Action::Run {
            argv: inputs.chroot([INSTALLED_KLDLOAD, "inspect-initramfs", "--remember"]),
            why: "whether each initramfs has zfs.ko, and its hostid, read now and kept for the \
                  doctor, which otherwise decompresses them at the first boot"
                .into(),
            stdin: None,
        });
    }
    let load_keys = linux && inputs.config.encryption.enabled;
    if load_keys {
        actions.push(Action::write(
            inputs.target(&format!("etc/systemd/system/{LOAD_KEYS_UNIT}")),
            load_keys_unit(pool),
            0o644,
            "at boot, the keys of encryption roots the initramfs did not unlock are loaded from \
             the key file before the datasets are mounted",
        ));
    }
    if linux {
        let mut units = vec![
            "zfs-import-cache.service",
            "zfs-mount.service",
            "zfs-import.target",
            "zfs.target",
            "zfs-zed.service",
        ];
        if doctor.is_some() {
            units.extend([DOCTOR_UNIT, BOOT_TRIAL_UNIT]);
        }
        if load_keys {
            units.push(LOAD_KEYS_UNIT);
        }
        let mut argv = vec!["systemctl", "enable"];
        argv.extend(units);
        let mut why = if load_keys {
            "import the pool, load its keys and mount its datasets at boot; zed reports faults"
        } else {
            "import the pool and mount its datasets at boot; zed reports faults"
        }
        .to_string();
        if doctor.is_some() {
            why.push_str("; kldload doctor checks the hostid");
        }
        actions.push(Action::Run {
            argv: inputs.chroot(argv),
            why,
            stdin: None,
        });
    }
    if inputs.config.distro.family() == Family::Debian {
        actions.push(Action::Run {
            argv: inputs.chroot([UPDATE_DONE]),
            why: "mark /etc and /var up to date with /usr, as the first boot would: the library \
                  cache, hardware database and journal catalog came with the packages, so the \
                  first boot rebuilds none of them (ldconfig.service) before the login"
                .into(),
            stdin: None,
        });
    }
    actions.push(Action::LogTo {
        path: None,
        why: "the target's filesystems are unmounted next: stop logging to them".into(),
    });
    actions.push(Action::run(
        ["umount", &inputs.target("boot/efi")],
        "unmount the ESP",
    ));
    if linux {
        for fs in ["dev", "proc", "sys"] {
            actions.push(Action::run(
                ["umount", "--recursive", &inputs.target(fs)],
                format!(
                    "unmount /{fs} from the target (a busy mount keeps the pool from exporting)"
                ),
            ));
        }
    }
    actions.push(Action::run(
        [
            "zfs",
            "snapshot",
            "-r",
            &format!("{pool}@{FACTORY_SNAPSHOT}"),
        ],
        "a snapshot of every dataset as installed, to roll back to or boot from the boot menu",
    ));
    actions.push(Action::run(
        ["zpool", "export", pool],
        "unmount everything and mark the pool cleanly exported for its first import",
    ));
    if linux {
        actions.push(Action::run(
            ["umount", TARGET_ROOT],
            "the private mount point the target was assembled under is no longer needed",
        ));
    }
    Step {
        id: StepId::Finalize,
        title: "Finalize: zpool.cache, ZFS services, @factory snapshot, export".into(),
        why: "the first boot imports a clean pool, and the installed state is kept as a snapshot"
            .into(),
        actions,
    }
}
