//! ZFSBootMenu EFI files that VM tests install in place of the medium's, as a user installs one
//! made elsewhere. `cargo xtask vm-test` builds each only for a run that takes a test needing
//! it (they cost a build each) and names it in the test's environment.

use serde::{Deserialize, Serialize};

/// One such ZFSBootMenu; in a scenario file, `zfsbootmenu = "<name>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TestZfsBootMenu {
    /// Built from the pinned source with another hostid inside (as any ZFSBootMenu built on
    /// another machine is).
    #[serde(rename = "other-hostid")]
    OtherHostid,
    /// Built from the pinned source on debian-12 with bookworm main's ZFS 2.1: older than the
    /// ZFS of every system kldload installs, as a ZFSBootMenu left behind by an upgrade is.
    #[serde(rename = "zfs-2.1")]
    Zfs21,
}

impl TestZfsBootMenu {
    pub const ALL: [TestZfsBootMenu; 2] = [TestZfsBootMenu::OtherHostid, TestZfsBootMenu::Zfs21];

    /// Its name in a scenario file.
    pub fn name(self) -> &'static str {
        match self {
            TestZfsBootMenu::OtherHostid => "other-hostid",
            TestZfsBootMenu::Zfs21 => "zfs-2.1",
        }
    }

    /// The variable `cargo xtask vm-test` names its EFI file in (crate::env's contract).
    pub(crate) fn variable(self) -> &'static str {
        match self {
            TestZfsBootMenu::OtherHostid => "KLDLOAD_VMTEST_ZFSBOOTMENU_OTHER_HOSTID",
            TestZfsBootMenu::Zfs21 => "KLDLOAD_VMTEST_ZFSBOOTMENU_ZFS_2_1",
        }
    }
}
