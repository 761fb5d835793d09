//! The recipe's datasets, as data: each one a boundary for compression, quota, snapshots and
//! encryption, with the properties it is created with and why. `Config::datasets()` merges the
//! answer file's additions into them; step 2 (`recipe/pool.rs`) creates them.

use crate::config::names::{DatasetPath, Mountpoint, PropertyName, PropertyValue};
use serde::Serialize;
use std::collections::BTreeMap;

/// One dataset of the layout, with every property it is created with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dataset {
    pub path: DatasetPath,
    pub mountpoint: Mountpoint,
    /// `noauto` for boot environments (the initramfs mounts the chosen one), `off` for containers.
    pub canmount: Option<&'static str>,
    pub properties: BTreeMap<PropertyName, PropertyValue>,
    pub why: String,
}

/// The recipe's datasets: each one a boundary for compression, quota, snapshots and encryption.
pub fn recipe_datasets() -> Vec<Dataset> {
    let ds = |path: &str, mountpoint: &str, canmount, props: &[(&str, &str)], why: &str| Dataset {
        path: DatasetPath::new(path).expect("valid"),
        mountpoint: Mountpoint::new(mountpoint).expect("valid"),
        canmount,
        properties: props
            .iter()
            .map(|(k, v)| {
                (
                    PropertyName::new(*k).expect("valid"),
                    PropertyValue::new(*v).expect("valid"),
                )
            })
            .collect(),
        why: why.into(),
    };
    vec![
        ds(
            "ROOT",
            "none",
            Some("off"),
            &[],
            "container of boot environments: ZFSBootMenu lists the datasets under it",
        ),
        ds(
            "ROOT/default",
            "/",
            Some("noauto"),
            &[],
            "the first boot environment; noauto so only the one being booted is mounted at /",
        ),
        ds(
            "home",
            "/home",
            None,
            &[],
            "user data, kept apart from boot environments and their rollbacks",
        ),
        ds(
            "var",
            "/var",
            Some("off"),
            &[],
            "a container only: /var itself stays in the boot environment, so the package \
             database (/var/lib/dpkg, /var/lib/apt) follows the system it describes through \
             upgrades, clones and rollbacks; the children below leave it",
        ),
        ds(
            "var/log",
            "/var/log",
            None,
            &[],
            "logs survive a rollback of the system and compress well",
        ),
        ds(
            "tmp",
            "/tmp",
            None,
            &[
                ("sync", "disabled"),
                ("exec", "off"),
                ("setuid", "off"),
                ("devices", "off"),
            ],
            "scratch space: no sync writes, nothing runs from it",
        ),
    ]
}
