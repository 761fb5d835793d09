//! What each VM test needs besides the medium, in one table beside the tests: `cargo xtask`
//! prepares only what the tests a run takes need (a second ZFSBootMenu costs a build, the Secure
//! Boot tools an install). Scenarios say theirs in their own file (`zfsbootmenu = "..."`).

use crate::test_zbm::TestZfsBootMenu;

/// Something a VM test needs that the medium alone does not give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// virt-fw-vars (python3-virt-firmware), to enroll keys in the firmware's NVRAM.
    SecureBootTools,
    /// A ZFSBootMenu EFI file the user gives (the official release, or one named by the user).
    GivenZfsBootMenu,
    /// A ZFSBootMenu built for the test.
    TestZfsBootMenu(TestZfsBootMenu),
}

/// The Rust VM tests (vmtests/tests/*.rs) that need something, by their function's name.
pub const TESTS: &[(&str, Need)] = &[
    ("secure_boot_live_medium", Need::SecureBootTools),
    ("secure_boot_install", Need::SecureBootTools),
    (
        "secure_boot_enroll_mok_at_first_boot",
        Need::SecureBootTools,
    ),
    (
        "secure_boot_refuses_the_medium_without_its_mok",
        Need::SecureBootTools,
    ),
    (
        "install_with_a_given_zfsbootmenu_file",
        Need::GivenZfsBootMenu,
    ),
    (
        "install_with_a_zfsbootmenu_built_with_another_hostid",
        Need::TestZfsBootMenu(TestZfsBootMenu::OtherHostid),
    ),
];

/// What the test `name` needs.
pub fn of(name: &str) -> impl Iterator<Item = Need> + '_ {
    TESTS
        .iter()
        .filter(move |(t, _)| *t == name)
        .map(|(_, n)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `#[test]` functions of a test file, by name.
    fn tests_in(source: &str) -> Vec<&str> {
        source
            .split("#[test]")
            .skip(1)
            .filter_map(|rest| rest.split("fn ").nth(1)?.split('(').next())
            .collect()
    }

    /// Every test of tests/secure_boot.rs is in the table as needing the Secure Boot tools (one
    /// left out would fail on a fresh machine only), and every name in the table is a test.
    #[test]
    fn the_table_names_real_tests_and_every_secure_boot_test() {
        let secure_boot = tests_in(include_str!("../tests/secure_boot.rs"));
        assert!(!secure_boot.is_empty());
        for t in &secure_boot {
            assert!(
                of(t).any(|n| n == Need::SecureBootTools),
                "{t} is not in TESTS"
            );
        }
        let all: Vec<&str> = [
            include_str!("../tests/secure_boot.rs"),
            include_str!("../tests/install.rs"),
        ]
        .into_iter()
        .flat_map(tests_in)
        .collect();
        for (name, _) in TESTS {
            assert!(all.contains(name), "TESTS names {name}, which is no test");
        }
    }
}
