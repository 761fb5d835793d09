//! How a boot bug shows itself: the symptom a scenario ends in, which a rebuild from its report
//! must end in too (`vm-repro --round-trip`). Each symptom is what a person at the serial
//! console sees, and one way to wait for it.

use serde::{Deserialize, Serialize};

/// What the console shows when the bug holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Symptom {
    /// The machine boots to a login prompt (the bug is in what it runs with, not in booting).
    Login,
    /// The boot environment's initramfs cannot load ZFS and stops in its shell.
    InitramfsShell,
    /// ZFSBootMenu finds no boot environment with a kernel.
    NoBootEnvironments,
    /// ZFSBootMenu cannot import the pool (features its ZFS lacks, a pool in use elsewhere).
    ImportFails,
    /// A second passphrase prompt after ZFSBootMenu's.
    PassphraseAgain,
    /// After ZFSBootMenu the serial console shows nothing: no kernel, no login prompt.
    Silent,
    /// The firmware finds nothing to start on the disks (no entry's file, no fallback copy):
    /// OVMF ends in its UEFI shell, as a PC ends in its setup or "no bootable device".
    NoBootLoader,
}

impl Symptom {
    /// Every symptom, in the order of the README's table.
    pub const ALL: [Symptom; 7] = [
        Symptom::Login,
        Symptom::InitramfsShell,
        Symptom::NoBootEnvironments,
        Symptom::ImportFails,
        Symptom::PassphraseAgain,
        Symptom::Silent,
        Symptom::NoBootLoader,
    ];

    /// Its name in scenario files (`is = "initramfs-shell"`).
    pub fn name(self) -> &'static str {
        match self {
            Symptom::Login => "login",
            Symptom::InitramfsShell => "initramfs-shell",
            Symptom::NoBootEnvironments => "no-boot-environments",
            Symptom::ImportFails => "import-fails",
            Symptom::PassphraseAgain => "passphrase-again",
            Symptom::Silent => "silent",
            Symptom::NoBootLoader => "no-boot-loader",
        }
    }

    /// The console text (a regex) that shows it; for [`Symptom::Silent`], what must not appear.
    /// Login is the harness's own login (a prompt, then a root shell).
    pub fn console(self) -> &'static str {
        match self {
            Symptom::Login => "login:",
            Symptom::InitramfsShell => r"Failed to load ZFS modules|ALERT!|\(initramfs\)",
            Symptom::NoBootEnvironments => "No boot environments with kernels found",
            // "Unable to import rpool, retrying in 05 seconds", the name coloured.
            Symptom::ImportFails => "Unable to import",
            Symptom::PassphraseAgain => "Enter passphrase for",
            Symptom::Silent => "login:|Linux version|systemd",
            // OVMF's boot manager, once every entry before its shell failed.
            Symptom::NoBootLoader => r#"BdsDxe: starting Boot[0-9A-F]{4} "EFI Internal Shell""#,
        }
    }

    /// Whether the machine is running its own system when the symptom holds, so a report is
    /// taken there; for the others it is taken from the live medium, as a user would.
    pub fn boots(self) -> bool {
        self == Symptom::Login
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_symptom_has_a_name_and_a_console_regex() {
        for s in Symptom::ALL {
            let text = toml::to_string(&std::collections::BTreeMap::from([("is", s)])).unwrap();
            assert_eq!(text.trim(), format!("is = \"{}\"", s.name()));
            regex::Regex::new(s.console()).unwrap();
        }
        // What the scenarios saw on the console.
        let initramfs = regex::Regex::new(Symptom::InitramfsShell.console()).unwrap();
        assert!(initramfs.is_match("Gave up waiting for root file system device.\nALERT! "));
        assert!(!initramfs.is_match("Welcome to Debian GNU/Linux 13 (trixie)!"));
        // ZFSBootMenu 3.1.0's 50-import-pools, as the serial console carries it.
        let import = regex::Regex::new(Symptom::ImportFails.console()).unwrap();
        assert!(import.is_match("Unable to import \x1b[0;35mrpool\x1b[0m, retrying in"));
        // OVMF's boot manager on the serial console (a fresh-nvram rebuild's transcript).
        let shell = regex::Regex::new(Symptom::NoBootLoader.console()).unwrap();
        assert!(shell.is_match(
            "BdsDxe: starting Boot0003 \"EFI Internal Shell\" from Fv(7CB8BDC9-F8EB-4F34-AAEA-\
             3EE4AF6516A1)/FvFile(7C04A583-9E3E-4F1C-AD65-E05268D0B4D1)"
        ));
        assert!(!shell.is_match(
            "BdsDxe: starting Boot0005 \"ZFSBootMenu\" from HD(1,GPT,A02FDD33-A83B-4A16-BA8C-\
             10451453D74A,0x800,0x100000)/\\EFI\\ZBM\\VMLINUZ.EFI"
        ));
    }
}
