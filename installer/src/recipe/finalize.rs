//! Step 7: what makes the first boot work and the install undoable: zpool.cache and the ZFS
//! services, everything unmounted, a recursive `@factory` snapshot, and the pool exported so
//! ZFSBootMenu imports it cleanly.

use super::Inputs;
use crate::plan::{Action, Step, StepId};

/// The snapshot of every dataset as installed.
pub const FACTORY_SNAPSHOT: &str = "factory";

pub fn step(inputs: &Inputs) -> Step {
    let pool = inputs.pool();
    let mut actions = vec![
        Action::run(
            ["mkdir", "-p", &inputs.target("etc/zfs")],
            "the target's ZFS configuration directory",
        ),
        Action::run(
            [
                "cp",
                "/etc/zfs/zpool.cache",
                &inputs.target("etc/zfs/zpool.cache"),
            ],
            "zfs-import-cache imports the pool from this list at boot",
        ),
        Action::Run {
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
        },
        Action::LogTo {
            path: None,
            why: "the target's filesystems are unmounted next: stop logging to them".into(),
        },
        Action::run(["umount", &inputs.target("boot/efi")], "unmount the ESP"),
    ];
    for fs in ["dev", "proc", "sys"] {
        actions.push(Action::run(
            ["umount", "--recursive", &inputs.target(fs)],
            format!("unmount /{fs} from the target (a busy mount keeps the pool from exporting)"),
        ));
    }
    actions.push(Action::run(
        [
            "zfs",
            "snapshot",
            "-r",
            &format!("{pool}@{FACTORY_SNAPSHOT}"),
        ],
        "a snapshot of every dataset as installed, to roll back or boot from ZFSBootMenu",
    ));
    actions.push(Action::run(
        ["zpool", "export", pool],
        "unmount everything and mark the pool cleanly exported for its first import",
    ));
    Step {
        id: StepId::Finalize,
        title: "Finalize: zpool.cache, ZFS services, @factory snapshot, export".into(),
        why: "the first boot imports a clean pool, and the installed state is kept as a snapshot"
            .into(),
        actions,
    }
}
