//! Step 5: the hostid and an initramfs that imports the pool. The hostid is the one ZFSBootMenu
//! passes on (`spl.spl_hostid`), so /etc/hostid, the initramfs's copy, the SPL and the pool's
//! label all agree (ARCHITECTURE.md, "One hostid").

use super::Inputs;
use super::pool::key_file;
use crate::config::{Encryption, ZFSBOOTMENU_HOSTID};
use crate::plan::{Action, Step, StepId};

pub fn step(inputs: &Inputs) -> Step {
    let mut actions = vec![Action::run(
        [
            "zgenhostid",
            "-f",
            "-o",
            &inputs.target("etc/hostid"),
            &format!("0x{ZFSBOOTMENU_HOSTID:08x}"),
        ],
        "the target's /etc/hostid, copied into its initramfs next",
    )];
    if let Encryption::Passphrase { .. } = inputs.config.pool.encryption {
        let key = key_file(inputs.pool());
        actions.push(Action::run(
            ["install", "-m", "0000", &key, &inputs.target(&key)],
            "the pool's key file, so the booted system mounts without asking a second time",
        ));
        actions.push(Action::write(
            inputs.target("etc/initramfs-tools/conf.d/umask.conf"),
            "UMASK=0077\n",
            0o644,
            "the initramfs holds the key file: keep it readable by root only",
        ));
    }
    actions.push(Action::Run {
        argv: inputs.chroot(["update-initramfs", "-u", "-k", "all"]),
        why: "rebuild the initramfs with ZFS (zfs-initramfs) and this hostid".into(),
        stdin: None,
    });
    Step {
        id: StepId::Initramfs,
        title: "Initramfs: ZFS and the machine's hostid".into(),
        why: "the kernel ZFSBootMenu boots needs an initramfs that imports the pool and mounts root=zfs:".into(),
        actions,
    }
}
