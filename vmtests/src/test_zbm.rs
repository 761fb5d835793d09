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

/// A ZFSBootMenu EFI file an install is given in place of the medium's; in a scenario file,
/// `zfsbootmenu = "given"` or the name of a [`TestZfsBootMenu`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum GivenZfsBootMenu {
    /// The user's own, as the official release is: `$KLDLOAD_VMTEST_GIVEN_ZFSBOOTMENU` (with
    /// the internet, the verified release). Shared by tests whose subject is not the medium's
    /// own ZFSBootMenu, so that one install proves both.
    UsersOwn,
    /// One `cargo xtask vm-test` built for the test.
    Test(TestZfsBootMenu),
}

impl GivenZfsBootMenu {
    /// [`GivenZfsBootMenu::UsersOwn`]'s name in a scenario file.
    pub const USERS_OWN: &'static str = "given";

    /// Its name in a scenario file.
    pub fn name(self) -> &'static str {
        match self {
            GivenZfsBootMenu::UsersOwn => Self::USERS_OWN,
            GivenZfsBootMenu::Test(t) => t.name(),
        }
    }
}

impl TryFrom<String> for GivenZfsBootMenu {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        if name == Self::USERS_OWN {
            return Ok(GivenZfsBootMenu::UsersOwn);
        }
        (TestZfsBootMenu::ALL.into_iter())
            .find(|t| t.name() == name)
            .map(GivenZfsBootMenu::Test)
            .ok_or_else(|| {
                let names: Vec<_> = std::iter::once(Self::USERS_OWN)
                    .chain(TestZfsBootMenu::ALL.map(TestZfsBootMenu::name))
                    .collect();
                format!(
                    "no ZFSBootMenu {name:?}: the ones there are: {}",
                    names.join(", ")
                )
            })
    }
}

impl From<GivenZfsBootMenu> for String {
    fn from(z: GivenZfsBootMenu) -> String {
        z.name().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_given_zfsbootmenu_is_read_back_by_its_name() {
        let all = std::iter::once(GivenZfsBootMenu::UsersOwn)
            .chain(TestZfsBootMenu::ALL.map(GivenZfsBootMenu::Test));
        for z in all {
            assert_eq!(GivenZfsBootMenu::try_from(z.name().to_string()), Ok(z));
        }
        let e = GivenZfsBootMenu::try_from("zfs-2.0".to_string()).unwrap_err();
        assert!(e.contains("given, other-hostid, zfs-2.1"), "{e}");
    }
}
