//! Secure Boot enforced: the firmware's Secure Boot build with Microsoft's keys, and the build's
//! MOK certificate enrolled (as its owner does once with `mokutil --import` and MokManager).
//! The chain: firmware -> shim (signed by Microsoft) -> the EFI file signed with the MOK ->
//! a locked-down kernel that loads only signed modules, the MOK-signed zfs.ko among them.

use anyhow::{Context, ensure};
use std::time::Duration;
use vmtests::flow::{LIVE_BOOT_TIMEOUT, test_on_blank_disk};

/// The variable the firmware reports Secure Boot's state in (1: enforced).
const SECURE_BOOT_VAR: &str =
    "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// The MOK list shim hands to the kernel: there only when shim started the boot.
const MOK_LIST_RT: &str =
    "/sys/firmware/efi/efivars/MokListRT-605dab50-e046-4300-abb6-3dd810dd8b23";

/// The medium boots with Secure Boot enforced, and its live system (the one that installs) has
/// the MOK-signed ZFS module loaded under lockdown.
#[test]
#[ignore = "boots VMs: run with `cargo xtask vm-test debian secure_boot`"]
fn secure_boot_live_medium() {
    test_on_blank_disk("secure-boot-live", |run| {
        run.secure_boot(true)?;
        let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
            run.medium_file("manifest.json")?.path(),
        )?)?;
        let signer = manifest["module_signer"]
            .as_str()
            .context("no module_signer in the medium's manifest")?
            .to_string();
        let mut m = run.start_medium("live", false)?;
        run.timed("firmware to live shell", |_| {
            m.console.wait_for_regex(r"[#$] $", LIVE_BOOT_TIMEOUT)?;
            m.start_shell()
        })?;
        run.check("the firmware enforces Secure Boot", || {
            let bytes = m.succeed(&format!("od -An -t u1 {SECURE_BOOT_VAR}"))?;
            // Four bytes of attributes, then the value.
            let value = bytes.split_whitespace().last().unwrap_or_default();
            ensure!(value == "1", "SecureBoot is {value:?} ({})", bytes.trim());
            Ok("SecureBoot=1".into())
        });
        run.check("shim started the boot (its MokListRT is there)", || {
            m.succeed(&format!("test -e {MOK_LIST_RT}"))?;
            Ok(MOK_LIST_RT.rsplit('/').next().unwrap_or_default().into())
        });
        run.check("the kernel is locked down", || {
            let mode = m.succeed("cat /sys/kernel/security/lockdown")?;
            ensure!(
                mode.contains("[integrity]") || mode.contains("[confidentiality]"),
                "lockdown: {}",
                mode.trim()
            );
            Ok(mode.trim().into())
        });
        run.check("the MOK-signed zfs.ko is loaded", || {
            m.succeed("modprobe zfs && grep -q '^zfs ' /proc/modules")?;
            let actual = m.succeed("modinfo -F signer zfs")?;
            ensure!(
                actual.trim() == signer,
                "zfs.ko is signed by {actual:?}, not {signer:?}"
            );
            Ok(format!("signer {signer:?}"))
        });
        run.check("the kernel trusts the build's key", || {
            let keys = m.succeed("grep -F 'kldload build' /proc/keys")?;
            let log = m.succeed("dmesg | grep -E 'MokListRT|kldload build' || true")?;
            Ok(format!(
                "{} | {}",
                keys.trim(),
                log.trim().replace('\n', " | ")
            ))
        });
        m.crash()?;
        Ok(())
    });
}

/// Without the build's MOK enrolled, shim refuses the medium's signed EFI file: Secure Boot is
/// what stops it, not something else going wrong.
#[test]
#[ignore = "boots VMs: run with `cargo xtask vm-test debian secure_boot`"]
fn secure_boot_refuses_the_medium_without_its_mok() {
    test_on_blank_disk("secure-boot-no-mok", |run| {
        run.secure_boot(false)?;
        let mut m = run.start_medium("live", false)?;
        let refused = run.timed("firmware to shim's refusal", |_| {
            m.console.wait_for_regex(
                r"Verification failed: \(0x1A\) Security Violation",
                Duration::from_secs(120),
            )
        });
        run.check("shim refuses the live system's EFI file", || {
            refused?;
            Ok("Verification failed: (0x1A) Security Violation".into())
        });
        let started = m.console.wait_for("Linux version", Duration::from_secs(20));
        run.check("no kernel starts", || {
            ensure!(started.is_err(), "a kernel started after the refusal");
            Ok("nothing after the refusal in 20 s".into())
        });
        m.crash()?;
        Ok(())
    });
}
