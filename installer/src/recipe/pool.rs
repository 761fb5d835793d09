//! Step 2: the pool and its datasets. Pool-wide properties are set once on the root dataset and
//! inherited; each dataset then adds its own, so every dataset is a boundary for compression,
//! quotas, snapshots and encryption.

use super::{Inputs, TARGET_ROOT};
use crate::config::Family;
use crate::plan::{Action, Contents, Step, StepId};

/// The key file an encrypted pool is created with: the passphrase, mode 0000, on the live
/// system and then in the target and its initramfs, so the booted system mounts without asking
/// a second time (ZFSBootMenu asked). ZFSBootMenu's own image never holds it: its prompt takes
/// over when the file is not there.
pub fn key_file(pool: &str) -> String {
    format!("/etc/zfs/keys/{pool}.key")
}

/// The properties that make a dataset an encryption root, its key read from the key file.
fn encryption_options(pool: &str) -> [String; 3] {
    [
        "encryption=aes-256-gcm".into(),
        "keyformat=passphrase".into(),
        format!("keylocation=file://{}", key_file(pool)),
    ]
}

pub fn step(inputs: &Inputs) -> Step {
    let config = inputs.config;
    let pool = inputs.pool();
    let mut actions = vec![Action::run(
        ["zgenhostid", "-f", &inputs.hostid_arg()],
        "the live system takes the hostid ZFSBootMenu will import with, so the pool's label agrees with it",
    )];
    let mut create: Vec<String> = ["zpool", "create", "-f"].map(String::from).to_vec();
    let mut opt = |flag: &str, value: String| {
        create.push(flag.into());
        create.push(value);
    };
    opt("-o", format!("ashift={}", config.pool.ashift));
    opt("-o", "autotrim=on".into());
    opt("-o", "cachefile=/etc/zfs/zpool.cache".into());
    if config.distro.family() == Family::FreeBsd {
        // Only features FreeBSD 14's OpenZFS 2.2 knows, whatever the live system's ZFS is.
        opt("-o", "compatibility=openzfs-2.2-freebsd".into());
    } else if let Some(set) = inputs.pool_compatibility() {
        // Only features ZFSBootMenu's ZFS and the boot environment's both read; `zpool upgrade`
        // stays within them until the property is changed.
        opt("-o", format!("compatibility={set}"));
    }
    if let Some(features) = &config.pool.features {
        // Exactly the answer file's features: none enabled but those named.
        create.push("-d".into());
        for feature in features {
            create.push("-o".into());
            create.push(format!("feature@{feature}=enabled"));
        }
    }
    let mut opt = |flag: &str, value: String| {
        create.push(flag.into());
        create.push(value);
    };
    opt("-O", format!("compression={}", config.pool.compression));
    opt("-O", "acltype=posixacl".into());
    opt("-O", "xattr=sa".into());
    // As OpenZFS's Root on ZFS guides: dnodes sized to hold the SA xattrs (ACLs, SELinux labels)
    // beside the file instead of in a spill block, and file names compared in Unicode's
    // normal form D, so two spellings of one name cannot both exist (names must be UTF-8).
    // dnodesize needs the feature large_dnode, which a pool of older features may lack.
    if config.pool.has_feature("large_dnode") {
        opt("-O", "dnodesize=auto".into());
    }
    opt("-O", "normalization=formD".into());
    opt("-O", "relatime=on".into());
    opt("-O", "mountpoint=none".into());
    opt("-O", "canmount=off".into());
    if config.encryption.enabled {
        actions.push(Action::run(
            ["mkdir", "-p", "-m", "0700", "/etc/zfs/keys"],
            "the key file's directory on the live system",
        ));
        actions.push(Action::WriteFile {
            path: key_file(pool).into(),
            contents: Contents::Secret {
                variable: crate::passphrase::VARIABLE.into(),
            },
            mode: 0o000,
            why:
                "the passphrase, read by zpool create through keylocation (never on a command line)"
                    .into(),
        });
        if config.encryption.datasets.encryption_roots().contains(&"") {
            // The pool's root dataset is the encryption root: every dataset under one key.
            for option in encryption_options(pool) {
                opt("-O", option);
            }
        }
    }
    if config.distro.family() != Family::FreeBsd {
        // Services with their own mount namespace (udevd, logind, resolved) receive every mount
        // made under a shared mount point and may keep a copy after it is unmounted here, which
        // leaves the pool "busy" at export. A private mount point keeps the target's mounts
        // to this namespace.
        actions.push(Action::run(
            ["mkdir", "-p", TARGET_ROOT],
            "the directory the target is assembled under",
        ));
        actions.push(Action::run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                "mode=0755",
                "--make-private",
                "kldload-target",
                TARGET_ROOT,
            ],
            format!(
                "a private mount point at {TARGET_ROOT}: no other process's mount namespace gets \
                 copies of the target's mounts, which would keep the pool busy at export"
            ),
        ));
    }
    opt("-R", TARGET_ROOT.into());
    create.push(pool.to_string());
    if let Some(word) = config.disks.layout.vdev_word() {
        create.push(word.into());
    }
    for disk in &inputs.disks {
        create.push(inputs.zfs_partition(disk).to_string_lossy().into_owned());
    }
    actions.push(Action::Run {
        argv: create,
        why: format!(
            "the pool: ashift={} for 4K sectors, {} compression, POSIX ACLs and xattrs in dnodes, \
             names in Unicode normal form D, mounted under {TARGET_ROOT} while installing; -f because the partitions are new",
            config.pool.ashift, config.pool.compression
        ),
        stdin: None,
    });

    for dataset in config.datasets() {
        let name = inputs.dataset(dataset.path.as_str());
        let mut argv: Vec<String> = vec!["zfs".into(), "create".into()];
        if dataset.path.as_str().contains('/') && !is_recipe_parent(dataset.path.as_str()) {
            argv.push("-p".into());
        }
        argv.push("-o".into());
        argv.push(format!("mountpoint={}", dataset.mountpoint));
        if let Some(canmount) = dataset.canmount {
            argv.push("-o".into());
            argv.push(format!("canmount={canmount}"));
        }
        for (k, v) in &dataset.properties {
            argv.push("-o".into());
            argv.push(format!("{k}={v}"));
        }
        let mut why = format!("{name}: {}", dataset.why);
        let path = dataset.path.as_str();
        if config.encryption.enabled
            && config
                .encryption
                .datasets
                .encryption_roots()
                .contains(&path)
        {
            for option in encryption_options(pool) {
                argv.push("-o".into());
                argv.push(option);
            }
            why.push_str("; an encryption root, with the pool's one passphrase");
        }
        argv.push(name.clone());
        actions.push(Action::Run {
            argv,
            why,
            stdin: None,
        });
        if dataset.path.as_str() == "ROOT/default" {
            actions.push(Action::run(
                ["zpool", "set", &format!("bootfs={name}"), pool],
                "the boot environment ZFSBootMenu's countdown boots",
            ));
            actions.push(Action::run(
                ["zfs", "mount", &name],
                format!("canmount=noauto: mount the new root at {TARGET_ROOT} by hand, before the datasets under it"),
            ));
        }
    }
    actions.push(Action::run(
        ["chmod", "1777", &inputs.target("tmp")],
        "/tmp is writable by everyone, sticky",
    ));
    if let Some(swap) = config.pool.swap_size {
        let zvol = inputs.dataset("swap");
        actions.push(Action::run(
            [
                "zfs",
                "create",
                "-V",
                &swap.to_string(),
                "-b",
                "4096",
                "-o",
                "compression=zle",
                "-o",
                "logbias=throughput",
                "-o",
                "sync=always",
                "-o",
                "primarycache=metadata",
                "-o",
                "secondarycache=none",
                "-o",
                "com.sun:auto-snapshot=false",
                &zvol,
            ],
            "a swap zvol, set up as OpenZFS recommends to keep swapping from needing memory",
        ));
        actions.push(Action::run(
            ["udevadm", "settle"],
            "wait for the zvol's device node",
        ));
        actions.push(Action::run(
            ["mkswap", "-f", &format!("/dev/zvol/{zvol}")],
            "format the zvol as swap",
        ));
    }
    Step {
        id: StepId::PoolAndDatasets,
        title: format!("Pool and datasets: {pool} with the recipe's datasets"),
        why: "the pool carries the whole system; datasets split it where policies differ".into(),
        actions,
    }
}

/// The recipe creates `ROOT` and `var` before their children, so those need no `-p`.
fn is_recipe_parent(path: &str) -> bool {
    matches!(
        path.rsplit_once('/').map(|(parent, _)| parent),
        Some("ROOT" | "var")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::testing::{commands, inputs};

    fn compatibility(inputs: &Inputs) -> Option<String> {
        let create = commands(&step(inputs))
            .into_iter()
            .find(|c| c.starts_with("zpool create"))
            .expect("zpool create");
        create
            .split_whitespace()
            .find_map(|w| w.strip_prefix("compatibility=").map(String::from))
    }

    #[test]
    fn the_pool_takes_only_features_zfsbootmenu_and_the_boot_environment_both_read() {
        let config = crate::config::test_config("");
        // ZFSBootMenu built with an older ZFS than the live system's: its set.
        let older = inputs(&config, None, Some("openzfs-2.1-linux"));
        assert_eq!(compatibility(&older).as_deref(), Some("openzfs-2.1-linux"));
        // Built with the same ZFS, or newer (the release's 2.4): the live system's set.
        for zbm in ["openzfs-2.3-linux", "openzfs-2.4-linux"] {
            let i = inputs(&config, None, Some(zbm));
            assert_eq!(compatibility(&i).as_deref(), Some("openzfs-2.3-linux"));
        }
        // Not known (a download): the live system's.
        let unknown = inputs(&config, None, None);
        assert_eq!(
            compatibility(&unknown).as_deref(),
            Some("openzfs-2.3-linux")
        );
        // A live system without compatibility files: no property.
        let mut bare = inputs(&config, None, Some("openzfs-2.1-linux"));
        bare.live_zfs_features = None;
        assert_eq!(compatibility(&bare), None);
    }

    /// `pool.features`: created with those and no other, within the compatibility set; without
    /// large_dnode, no dnodesize=auto (zpool create would refuse it).
    #[test]
    fn a_pool_of_exactly_the_answer_files_features() {
        let create = |config: &crate::config::Config| {
            commands(&step(&inputs(config, None, None)))
                .into_iter()
                .find(|c| c.starts_with("zpool create"))
                .expect("zpool create")
        };
        let default = create(&crate::config::test_config(""));
        assert!(!default.contains(" -d ") && default.contains("dnodesize=auto"));
        let mut config = crate::config::test_config("");
        config.pool.features = Some(
            ["async_destroy", "empty_bpobj"]
                .map(|f| crate::config::names::FeatureName::new(f).unwrap())
                .to_vec(),
        );
        let exact = create(&config);
        assert!(
            exact.contains(
                "-o compatibility=openzfs-2.3-linux -d -o feature@async_destroy=enabled \
                 -o feature@empty_bpobj=enabled -O compression=lz4"
            ),
            "{exact}"
        );
        assert!(!exact.contains("dnodesize"), "{exact}");
    }
}
