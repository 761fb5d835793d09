//! Updates VM tests install with `kldload upgrade`, as a user does: made by `cargo xtask
//! build-update` (only for a run that takes a test needing one: each costs a DKMS build) and
//! handed to the machine on a USB stick, a FAT disk holding the update's directory as
//! [`STICK_DIR`], attached read-only with the serial [`STICK_SERIAL`].

use serde::{Deserialize, Serialize};

/// Where an update's kernel and ZFS come from; in a scenario file, `update = "<name>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateFrom {
    /// The image's own suite: security and point-release kernels.
    Suite,
    /// The suite's backports: a newer kernel series, and the newest ZFS that builds for it.
    Backports,
}

/// The update's directory on the stick.
pub const STICK_DIR: &str = "update";
/// The stick's disk serial: the guest finds it as /dev/disk/by-id/virtio-kldload-update.
pub const STICK_SERIAL: &str = "kldload-update";

impl UpdateFrom {
    pub const ALL: [UpdateFrom; 2] = [UpdateFrom::Suite, UpdateFrom::Backports];

    /// Its name on the command line and in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            UpdateFrom::Suite => "suite",
            UpdateFrom::Backports => "backports",
        }
    }

    /// The variable `cargo xtask vm-test` names its stick's image in (crate::env's contract).
    pub(crate) fn variable(self) -> &'static str {
        match self {
            UpdateFrom::Suite => "KLDLOAD_VMTEST_UPDATE_STICK_SUITE",
            UpdateFrom::Backports => "KLDLOAD_VMTEST_UPDATE_STICK_BACKPORTS",
        }
    }
}

impl std::str::FromStr for UpdateFrom {
    type Err = String;
    fn from_str(name: &str) -> Result<UpdateFrom, String> {
        UpdateFrom::ALL
            .into_iter()
            .find(|u| u.name() == name)
            .ok_or_else(|| format!("{name:?}: suite or backports"))
    }
}
