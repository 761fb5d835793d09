//! ZFSBootMenu on machines kldload installed, driven over the serial console the way a person
//! does. Each test boots a copy-on-write copy of the shared base install (made once per medium),
//! with its own transcript and report. Run by `cargo xtask vm-test <distro>`.

use anyhow::ensure;
use serial_test::file_serial;
use std::time::{Duration, Instant};
use vmtests::flow::{LOGIN_TIMEOUT, MENU_TIMEOUT, ROOT_PASSWORD, scenario_on_installed_base};
use vmtests::zbm::Zbm;

const BOOTFS: &str = "rpool/ROOT/default";

/// The firmware entry starts ZFSBootMenu on the serial console; Escape stops its countdown; the
/// menu lists the boot environments, the snapshot list shows @factory, the kernel list the
/// installed kernel; Return boots the selected environment, which comes up as `/`.
#[test]
#[ignore = "boots VMs: run with `cargo xtask vm-test debian`"]
#[file_serial(installed_base)]
fn menu_lists_snapshots_and_kernels_and_boots_the_selection() {
    scenario_on_installed_base("zbm-menu", |run| {
        let start = Instant::now();
        let mut m = run.start_installed("menu")?;
        let mut zbm = Zbm::new(&mut m);
        let counting_down = zbm.wait_for_countdown(MENU_TIMEOUT);
        run.report.phase("firmware to countdown", start.elapsed());
        let be = counting_down?;
        run.report.check(
            "the countdown names bootfs",
            if be == BOOTFS {
                Ok(be.clone())
            } else {
                Err(anyhow::anyhow!("counting down to {be}, not {BOOTFS}"))
            },
        );
        let listed = zbm.open_menu()?;
        run.report.check("the menu lists the boot environment", {
            let found = listed.iter().any(|b| b == BOOTFS);
            (|| {
                ensure!(found, "listed: {listed:?}");
                Ok(listed.join(" "))
            })()
        });
        let snapshots = zbm.snapshots();
        run.report.check(
            "the snapshot list shows @factory",
            snapshots.and_then(|s| {
                ensure!(
                    s.iter().any(|s| s == &format!("{BOOTFS}@factory")),
                    "listed: {s:?}"
                );
                Ok(s.join(" "))
            }),
        );
        zbm.back()?;
        let kernels = zbm.kernels();
        run.report.check(
            "the kernel list shows the installed kernel",
            kernels.and_then(|k| {
                ensure!(!k.is_empty(), "no kernel listed");
                Ok(k.join(" "))
            }),
        );
        zbm.back()?;
        let start = Instant::now();
        zbm.boot(BOOTFS)?;
        m.login("root", ROOT_PASSWORD, LOGIN_TIMEOUT)?;
        run.report.phase("menu to login", start.elapsed());
        let root = m.succeed("findmnt -n -o SOURCE /")?;
        run.report.check(
            "Return booted the selection",
            (|| {
                ensure!(root.trim() == BOOTFS, "/ is {root}");
                Ok(root.trim().to_string())
            })(),
        );
        m.shutdown(Duration::from_secs(120))?;
        Ok(())
    });
}

/// With the firmware's boot entries gone (a fresh NVRAM), the firmware falls back to the ESP's
/// EFI/BOOT/BOOTX64.EFI: ZFSBootMenu without load options (its menu on the graphics console
/// only) counts down and boots bootfs, whose own command line brings the login to the serial
/// console.
#[test]
#[ignore = "boots VMs: run with `cargo xtask vm-test debian`"]
#[file_serial(installed_base)]
fn a_fresh_nvram_boots_through_the_fallback_path() {
    scenario_on_installed_base("zbm-fallback", |run| {
        run.firmware.new_nvram(&run.nvram)?;
        let start = Instant::now();
        let mut m = run.start_installed("fallback")?;
        m.login("root", ROOT_PASSWORD, MENU_TIMEOUT + LOGIN_TIMEOUT)?;
        run.report.phase("firmware to login", start.elapsed());
        let root = m.succeed("findmnt -n -o SOURCE /")?;
        run.report.check(
            "bootfs booted",
            (|| {
                ensure!(root.trim() == BOOTFS, "/ is {root}");
                Ok(root.trim().to_string())
            })(),
        );
        let current = m.succeed("efibootmgr | sed -n 's/^BootCurrent: //p'")?;
        let entry = m.succeed(&format!("efibootmgr -v | grep '^Boot{}'", current.trim()))?;
        run.report.check(
            "the firmware booted its fallback, not a ZFSBootMenu entry",
            (|| {
                ensure!(
                    !entry.contains("ZFSBootMenu") && !entry.contains("ZBM"),
                    "booted {entry}"
                );
                Ok(entry.trim().to_string())
            })(),
        );
        m.shutdown(Duration::from_secs(120))?;
        Ok(())
    });
}
