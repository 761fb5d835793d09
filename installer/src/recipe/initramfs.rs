//! Step 5: the hostid and an initramfs that imports the pool (initramfs-tools on Debian, dracut
//! on Rocky). The hostid is the one ZFSBootMenu passes on (`spl.spl_hostid`), so /etc/hostid, the
//! initramfs's copy, the SPL and the pool's label all agree (ARCHITECTURE.md, "One hostid").
//! FreeBSD has no initramfs: its loader reads the pool itself, told so by loader.conf.

use super::pool::key_file;
use super::{BaseSource, Inputs, TARGET_ROOT};
use crate::config::{Family, ZFSBOOTMENU_HOSTID};
use crate::plan::{Action, Step, StepId};

pub fn step(inputs: &Inputs) -> Step {
    let family = inputs.config.distro.family();
    if family == Family::FreeBsd {
        return freebsd_loader(inputs);
    }
    let mut actions = vec![Action::run(
        [
            "zgenhostid",
            "-f",
            "-o",
            &inputs.target("etc/hostid"),
            &inputs.hostid_arg(),
        ],
        "the target's /etc/hostid, copied into its initramfs next",
    )];
    let encrypted = inputs.config.encryption.enabled;
    if encrypted {
        let key = key_file(inputs.pool());
        actions.push(Action::run(
            ["install", "-D", "-m", "0000", &key, &inputs.target(&key)],
            "the pool's key file, so the booted system mounts without asking a second time",
        ));
    }
    let umask = || {
        Action::write(
            inputs.target("etc/initramfs-tools/conf.d/umask.conf"),
            "UMASK=0077\n",
            0o644,
            "the initramfs holds the key file (Debian's zfs-initramfs copies /etc/zfs \
             whole into it, for the boot's `zfs load-key`): keep it readable by root only",
        )
    };
    let payload_initramfs_kept = match family {
        Family::Debian
            if matches!(inputs.source, BaseSource::Image(_))
                && inputs.hostid() == ZFSBOOTMENU_HOSTID =>
        {
            // The payload's initramfs was made at image time with ZFS and this same hostid
            // (a ZFSBootMenu carrying another one needs it made again, below);
            // rebuilding it here would take minutes on a slow machine and change nothing but
            // the key file, which is added to it instead (192 s against 4 s under TCG here).
            // (The target's own update-initramfs makes the next one after a kernel upgrade.)
            if encrypted {
                actions.push(umask());
                actions.push(Action::AddToInitramfs {
                    root: TARGET_ROOT.into(),
                    files: vec![key_file(inputs.pool()).trim_start_matches('/').to_string()],
                    why: "the key file into the payload's initramfs, for the boot's \
                          `zfs load-key` after ZFSBootMenu's prompt: an archive of its own \
                          before the compressed one, the rest of the image as made at image time"
                        .into(),
                });
            }
            true
        }
        Family::Debian => {
            if encrypted {
                actions.push(umask());
            }
            actions.push(Action::Run {
                argv: inputs.chroot(["update-initramfs", "-u", "-k", "all"]),
                why: "rebuild the initramfs with ZFS (zfs-initramfs) and this hostid".into(),
                stdin: None,
            });
            false
        }
        _ => {
            let mut conf = String::from(
                "# Written by kldload: the hostid ZFSBootMenu imports with.\ninstall_items+=\" /etc/hostid \"\n",
            );
            if encrypted {
                conf.push_str(&format!(
                    "install_items+=\" {} \"\n",
                    key_file(inputs.pool())
                ));
            }
            actions.push(Action::write(
                inputs.target("etc/dracut.conf.d/kldload.conf"),
                conf,
                0o644,
                "dracut puts these files into the initramfs",
            ));
            actions.push(Action::Run {
                argv: inputs.chroot(["dracut", "--force", "--regenerate-all"]),
                why: "rebuild the initramfs with ZFS (zfs-dracut) and this hostid".into(),
                stdin: None,
            });
            false
        }
    };
    let why = if payload_initramfs_kept && encrypted {
        "the kernel ZFSBootMenu boots needs an initramfs that imports the pool and mounts root=zfs:; \
         the payload's, made at image time with ZFS and this hostid, is that initramfs, with the \
         pool's key file added"
    } else if payload_initramfs_kept {
        "the kernel ZFSBootMenu boots needs an initramfs that imports the pool and mounts root=zfs:; \
         the payload's, made at image time with ZFS and this hostid, is that initramfs"
    } else {
        "the kernel ZFSBootMenu boots needs an initramfs that imports the pool and mounts root=zfs:"
    };
    Step {
        id: StepId::Initramfs,
        title: "Initramfs: ZFS and the machine's hostid".into(),
        why: why.into(),
        actions,
    }
}

fn freebsd_loader(inputs: &Inputs) -> Step {
    let mut conf = String::from("zfs_load=\"YES\"\n");
    if inputs.config.zfsbootmenu.serial_console.is_some() {
        conf.push_str(
            "boot_multicons=\"YES\"\nconsole=\"comconsole,efi\"\ncomconsole_speed=\"115200\"\n",
        );
    }
    Step {
        id: StepId::Initramfs,
        title: "Loader configuration: ZFS from the loader (FreeBSD has no initramfs)".into(),
        why: "FreeBSD's loader reads the kernel from the pool's bootfs and loads ZFS before it"
            .into(),
        actions: vec![Action::write(
            inputs.target("boot/loader.conf"),
            conf,
            0o644,
            "load ZFS at boot",
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::pool;
    use crate::recipe::testing::{commands, inputs};

    #[test]
    fn the_hostid_inside_zfsbootmenu_is_written_everywhere_and_the_initramfs_remade() {
        let config = crate::config::test_config("");
        let own = inputs(&config, Some(0xdead_beef), None);
        let live = commands(&pool::step(&own));
        assert_eq!(live[0], "zgenhostid -f 0xdeadbeef");
        let target = commands(&step(&own));
        assert_eq!(target[0], "zgenhostid -f -o /mnt/etc/hostid 0xdeadbeef");
        assert!(
            target
                .iter()
                .any(|c| c.ends_with("update-initramfs -u -k all")),
            "the payload's initramfs holds 0x00bab10c: {target:?}"
        );
        // A release build (no hostid) or kldload's own: the payload's initramfs is right.
        for hostid in [None, Some(ZFSBOOTMENU_HOSTID)] {
            let same = inputs(&config, hostid, None);
            assert_eq!(
                commands(&step(&same)),
                ["zgenhostid -f -o /mnt/etc/hostid 0x00bab10c"]
            );
            assert_eq!(commands(&pool::step(&same))[0], "zgenhostid -f 0x00bab10c");
        }
    }

    #[test]
    fn an_encrypted_install_adds_the_key_file_to_the_payloads_initramfs() {
        let config = crate::config::test_config("[encryption]\nenabled = true");
        let added = |s: &Step| -> Vec<Vec<String>> {
            (s.actions.iter())
                .filter_map(|a| match a {
                    Action::AddToInitramfs { root, files, .. } => {
                        assert_eq!(root, std::path::Path::new("/mnt"));
                        Some(files.clone())
                    }
                    _ => None,
                })
                .collect()
        };
        let writes = |s: &Step| -> Vec<String> {
            (s.actions.iter())
                .filter_map(|a| match a {
                    Action::WriteFile { path, .. } => Some(path.display().to_string()),
                    _ => None,
                })
                .collect()
        };
        let same = step(&inputs(&config, Some(ZFSBOOTMENU_HOSTID), None));
        assert_eq!(added(&same), [["etc/zfs/keys/rpool.key"]]);
        assert!(
            !commands(&same)
                .iter()
                .any(|c| c.contains("update-initramfs")),
            "{:?}",
            commands(&same)
        );
        // update-initramfs later, by the user or a kernel upgrade, keeps the image root's.
        assert_eq!(
            writes(&same),
            ["/mnt/etc/initramfs-tools/conf.d/umask.conf"]
        );
        // Another hostid: the image is made again, with the key file in it.
        let other = step(&inputs(&config, Some(0xdead_beef), None));
        assert!(added(&other).is_empty());
        assert!(
            commands(&other)
                .iter()
                .any(|c| c.ends_with("update-initramfs -u -k all"))
        );
        assert_eq!(
            writes(&other),
            ["/mnt/etc/initramfs-tools/conf.d/umask.conf"]
        );
    }
}
