//! Step 7: what makes the first boot work and the install undoable: zpool.cache and the ZFS
//! services, everything unmounted, a recursive `@factory` snapshot, and the pool exported so
//! ZFSBootMenu imports it cleanly.

use super::{Inputs, TARGET_ROOT};
use crate::config::Family;
use crate::plan::{Action, Step, StepId};

/// The snapshot of every dataset as installed.
pub const FACTORY_SNAPSHOT: &str = "factory";

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
    if linux {
        actions.push(Action::Run {
            argv: inputs.chroot([
                "systemctl",
                "enable",
                "zfs-import-cache.service",
                "zfs-mount.service",
                "zfs-import.target",
                "zfs.target",
                "zfs-zed.service",
            ]),
            why: "import the pool and mount its datasets at boot; zed reports faults".into(),
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
