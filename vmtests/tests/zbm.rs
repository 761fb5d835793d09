//! ZFSBootMenu on machines kldload installed, driven over the serial console the way a person
//! does. Each test boots a copy-on-write copy of the shared base install (made once per medium),
//! with its own transcript and report. Run by `cargo xtask vm-test <distro>`.

use anyhow::ensure;
use kldload::config::ZFSBOOTMENU_HOSTID;
use std::time::Duration;
use vmtests::answers::ROOT_PASSWORD;
use vmtests::machine::Machine;
use vmtests::run::{LOGIN_TIMEOUT, MENU_TIMEOUT, Run, scenario_on_installed_base};
use vmtests::zbm::{KernelChoice, SCREEN_TIMEOUT, Zbm, countdown_seconds};

const BOOTFS: &str = "rpool/ROOT/default";

/// Writes /root/before-snapshot, snapshots bootfs as `@name`, then writes /root/after-snapshot:
/// what a boot environment made from the snapshot has (or a rollback to it keeps) is then told
/// by which of the two files exists.
fn snapshot_between_two_files(m: &mut Machine, name: &str) -> anyhow::Result<String> {
    m.succeed(&format!(
        "echo before > /root/before-snapshot && zfs snapshot {BOOTFS}@{name} && \
         echo after > /root/after-snapshot && sync"
    ))
}

/// The dataset mounted at `/`, which must be `be`.
fn root_is(m: &mut Machine, be: &str) -> anyhow::Result<String> {
    let root = m.root_source()?;
    ensure!(root == be, "/ is {root}");
    Ok(root)
}

/// The firmware entry starts ZFSBootMenu on the serial console; Escape stops its countdown; the
/// menu lists the boot environments, the snapshot list shows @factory, the kernel list the
/// installed kernel; Return boots the selected environment, which comes up as `/`.
#[test]
#[ignore = "boots VMs: run with `cargo xtask vm-test debian`"]
fn menu_lists_snapshots_and_kernels_and_boots_the_selection() {
    scenario_on_installed_base("zbm-menu", |run| {
        let mut m = run.start_installed("menu")?;
        let mut zbm = Zbm::new(&mut m);
        let be = run.timed("firmware to countdown", |_| {
            zbm.wait_for_countdown(MENU_TIMEOUT)
        })?;
        run.check("the countdown names bootfs", || {
            ensure!(be == BOOTFS, "counting down to {be}, not {BOOTFS}");
            Ok(be.clone())
        });
        let listed = zbm.open_menu()?;
        run.check("the menu lists the boot environment", || {
            ensure!(listed.iter().any(|b| b == BOOTFS), "listed: {listed:?}");
            Ok(listed.join(" "))
        });
        let snapshots = zbm.snapshots();
        run.check("the snapshot list shows @factory", || {
            snapshots.and_then(|s| {
                ensure!(
                    s.iter().any(|s| s == &format!("{BOOTFS}@factory")),
                    "listed: {s:?}"
                );
                Ok(s.join(" "))
            })
        });
        zbm.back()?;
        let kernels = zbm.kernels()?;
        zbm.back()?;
        run.timed("menu to login", |_| {
            zbm.boot(BOOTFS)?;
            zbm.m.login_root(LOGIN_TIMEOUT)
        })?;
        run.check("Return booted the selection", || root_is(&mut m, BOOTFS));
        let running = format!("vmlinuz-{}", m.succeed("uname -r")?.trim());
        run.check("the kernel list showed the kernel that booted", || {
            ensure!(
                kernels.contains(&running),
                "listed {kernels:?}, booted {running}"
            );
            Ok(kernels.join(" "))
        });
        m.shutdown(Duration::from_secs(120))?;
        Ok(())
    });
}

/// A snapshot duplicated in ZFSBootMenu's snapshot list becomes a second boot environment;
/// selecting it in the menu and pressing Return boots it, with the snapshot's content (a file
/// written before the snapshot is there, one written after is not) and no origin (send/recv).
/// The same snapshot cloned (Alt+C) is listed too, and has the snapshot as its origin.
#[test]
#[ignore = "boots VMs: run with `cargo xtask vm-test debian`"]
fn a_duplicated_snapshot_boots_as_a_new_boot_environment_and_a_clone_keeps_its_origin() {
    scenario_on_installed_base("zbm-duplicate", |run| {
        let mut m = run.resume_logged_in("duplicate")?;
        snapshot_between_two_files(&mut m, "kept")?;
        m.reboot()?;
        let new_be = format!("{BOOTFS}_NEW");
        let mut zbm = Zbm::new(&mut m);
        zbm.wait_for_countdown(MENU_TIMEOUT)?;
        zbm.open_menu()?;
        let snapshots = zbm.snapshots()?;
        ensure!(
            snapshots.iter().any(|s| s == &format!("{BOOTFS}@kept")),
            "no @kept in {snapshots:?}"
        );
        zbm.select(&format!("{BOOTFS}@kept"))?;
        let clone = format!("{BOOTFS}_CLONE");
        let listed = run.timed("clone", |_| zbm.clone_selected_snapshot("default_CLONE"))?;
        run.check("the clone is listed as a boot environment", || {
            ensure!(listed.contains(&clone), "listed: {listed:?}");
            Ok(listed.join(" "))
        });
        zbm.select(BOOTFS)?;
        zbm.snapshots()?;
        zbm.select(&format!("{BOOTFS}@kept"))?;
        let listed = run.timed("duplicate", |_| zbm.duplicate_selected_snapshot())?;
        run.check("the duplicate is listed as a boot environment", || {
            ensure!(listed.contains(&new_be), "listed: {listed:?}");
            Ok(listed.join(" "))
        });
        zbm.boot(&new_be)?;
        m.login_root(LOGIN_TIMEOUT)?;
        run.check("Return booted the second boot environment", || {
            root_is(&mut m, &new_be)?;
            let cmdline = m.succeed("cat /proc/cmdline")?;
            ensure!(
                cmdline.contains(&format!("root=zfs:{new_be}")),
                "/proc/cmdline: {cmdline}"
            );
            Ok(format!("/ is {new_be}; {}", cmdline.trim()))
        });
        run.check("it has the snapshot's content", || {
            m.succeed("test -f /root/before-snapshot")?;
            m.fail("test -e /root/after-snapshot")?;
            let origin = m.succeed(&format!("zfs get -H -o value origin {new_be}"))?;
            ensure!(origin.trim() == "-", "origin {origin}");
            Ok("before-snapshot there, after-snapshot not, no origin".into())
        });
        run.check("the clone's origin is the snapshot", || {
            let origin = m.succeed(&format!("zfs get -H -o value origin {clone}"))?;
            ensure!(
                origin.trim() == format!("{BOOTFS}@kept"),
                "origin of {clone}: {origin}"
            );
            Ok(format!("{clone} origin {}", origin.trim()))
        });
        m.shutdown(Duration::from_secs(120))?;
        Ok(())
    });
}

/// Rolling back to a snapshot from ZFSBootMenu's snapshot list (Alt+R, typing ROLLBACK at its
/// warning) removes a file written after the snapshot and keeps one written before.
#[test]
#[ignore = "boots VMs: run with `cargo xtask vm-test debian`"]
fn rollback_removes_what_was_written_after_the_snapshot() {
    scenario_on_installed_base("zbm-rollback", |run| {
        let mut m = run.resume_logged_in("rollback")?;
        snapshot_between_two_files(&mut m, "before-change")?;
        m.reboot()?;
        let mut zbm = Zbm::new(&mut m);
        zbm.wait_for_countdown(MENU_TIMEOUT)?;
        zbm.open_menu()?;
        zbm.snapshots()?;
        zbm.select(&format!("{BOOTFS}@before-change"))?;
        run.timed("rollback", |_| zbm.rollback_to_selected_snapshot())?;
        zbm.boot(BOOTFS)?;
        m.login_root(LOGIN_TIMEOUT)?;
        run.check("the file written after the snapshot is gone", || {
            root_is(&mut m, BOOTFS)?;
            m.fail("test -e /root/after-snapshot")?;
            m.succeed("test -f /root/before-snapshot")?;
            Ok("after-snapshot gone, before-snapshot there".into())
        });
        m.shutdown(Duration::from_secs(120))?;
        Ok(())
    });
}

/// A second kernel in the boot environment: a copy of the installed one under a name that sorts
/// first (so ZFSBootMenu's own choice, the newest, stays the distribution's kernel), with a copy
/// of its initramfs that says in the kernel log that it booted ([`SECOND_KERNEL_MARK`]), so the
/// booted system can tell. The mark is a conf.d file of initramfs-tools (its init sources
/// conf/conf.d/* once /dev is mounted), added with `kldload add-to-initramfs`: seconds, where
/// building the image again with mkinitramfs took 131 s under TCG, and the test is about
/// ZFSBootMenu's kernel choice, not about making initramfs images.
const SECOND_KERNEL: &str = "vmlinuz-1.0-kldload-second";
const SECOND_KERNEL_MARK: &str = "kldload-second-kernel: booted with the second initramfs";

fn second_kernel_script() -> String {
    format!(
        r#"set -e
cp /boot/vmlinuz-$(uname -r) /boot/{SECOND_KERNEL}
work=$(mktemp -d)
mkdir -p $work/boot $work/conf/conf.d
cp /boot/initrd.img-$(uname -r) $work/boot/initrd.img-1.0-kldload-second
echo 'echo "{SECOND_KERNEL_MARK}" > /dev/kmsg' > $work/conf/conf.d/kldload-second-kernel
kldload add-to-initramfs $work conf/conf.d/kldload-second-kernel
mv $work/boot/initrd.img-1.0-kldload-second /boot/
rm -r $work
sync"#
    )
}

/// The kernel list offers a second kernel; Alt+D makes it the default, which sets
/// `org.zfsbootmenu:kernel` and the next boot uses it; Alt+U clears it and the distribution's
/// kernel boots again.
#[test]
#[ignore = "boots VMs: run with `cargo xtask vm-test debian`"]
fn a_second_kernel_set_as_default_boots_and_clearing_it_goes_back() {
    scenario_on_installed_base("zbm-kernels", |run| {
        let mut m = run.resume_logged_in("kernels")?;
        run.timed("second kernel and initramfs", |_| {
            m.succeed(&second_kernel_script())
        })?;
        m.reboot()?;
        let mut zbm = Zbm::new(&mut m);
        zbm.wait_for_countdown(MENU_TIMEOUT)?;
        zbm.open_menu()?;
        let kernels = zbm.kernels()?;
        run.check("the kernel list offers the second kernel", || {
            ensure!(
                kernels.iter().any(|k| k == SECOND_KERNEL) && kernels.len() >= 2,
                "listed: {kernels:?}"
            );
            Ok(kernels.join(" "))
        });
        zbm.make_kernel_default(&KernelChoice::Named(SECOND_KERNEL.into()))?;
        // The preview above the list is drawn after the list.
        let preview = zbm.wait("the preview naming the default kernel", |s| {
            s.lines()
                .any(|l| l.contains(BOOTFS) && l.contains(SECOND_KERNEL))
        });
        run.check("the menu's preview names the default kernel", || {
            preview.map(|s| {
                s.lines()
                    .find(|l| l.contains(SECOND_KERNEL))
                    .unwrap_or_default()
                    .trim_matches(|c: char| c.is_whitespace() || "│┌┐─".contains(c))
                    .to_string()
            })
        });
        zbm.boot(BOOTFS)?;
        m.login_root(LOGIN_TIMEOUT)?;
        run.check(
            "Alt+D set org.zfsbootmenu:kernel and the boot used that kernel",
            || {
                let property = m.succeed(&format!(
                    "zfs get -H -o value org.zfsbootmenu:kernel {BOOTFS}"
                ))?;
                ensure!(
                    property.trim() == format!("{SECOND_KERNEL}$"),
                    "org.zfsbootmenu:kernel is {property}"
                );
                m.succeed(&format!("dmesg | grep -F {SECOND_KERNEL_MARK:?}"))?;
                Ok(format!(
                    "org.zfsbootmenu:kernel={}; booted with its initramfs",
                    property.trim()
                ))
            },
        );
        m.reboot()?;
        let mut zbm = Zbm::new(&mut m);
        zbm.wait_for_countdown(MENU_TIMEOUT)?;
        zbm.open_menu()?;
        zbm.kernels()?;
        zbm.clear_default_kernel()?;
        zbm.boot(BOOTFS)?;
        m.login_root(LOGIN_TIMEOUT)?;
        run.check(
            "Alt+U cleared it and the distribution's kernel booted",
            || {
                let property = m.succeed(&format!(
                    "zfs get -H -o value org.zfsbootmenu:kernel {BOOTFS}"
                ))?;
                ensure!(
                    property.trim() == "-",
                    "org.zfsbootmenu:kernel is {property}"
                );
                m.fail(&format!("dmesg | grep -F {SECOND_KERNEL_MARK:?}"))?;
                Ok("org.zfsbootmenu:kernel unset; booted without the second initramfs".into())
            },
        );
        m.shutdown(Duration::from_secs(120))?;
        Ok(())
    });
}

/// The recovery shell (Alt+R in the menu) sees the pool and `exit` brings the menu back; a
/// command line edited there (Alt+E) is in /proc/cmdline of that boot and gone from the next.
#[test]
#[ignore = "boots VMs: run with `cargo xtask vm-test debian`"]
fn recovery_shell_and_a_command_line_edited_for_one_boot() {
    scenario_on_installed_base("zbm-shell-cmdline", |run| {
        let mut m = run.start_installed("shell-cmdline")?;
        let mut zbm = Zbm::new(&mut m);
        zbm.wait_for_countdown(MENU_TIMEOUT)?;
        zbm.open_menu()?;
        zbm.open_recovery_shell()?;
        let pool_line = |s: &str| {
            s.lines()
                .any(|l| l.contains("rpool") && l.contains("ONLINE") && !l.contains("zpool"))
        };
        let screen =
            zbm.recovery_shell_run("zpool list -H -o name,health", pool_line, SCREEN_TIMEOUT);
        run.check("the recovery shell runs commands against the pool", || {
            screen.map(|s| {
                s.lines()
                    .find(|l| pool_line(l))
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        });
        // `kldload report` where a user with no other system runs it: the binary copied from
        // the boot environment (mounted read-only for the copy), the report written in the
        // shell's /tmp. It must say where it ran, and have read the pool's boot environment.
        let report = "mkdir -p /tmp/be && mount -o zfsutil,ro -t zfs rpool/ROOT/default /tmp/be \
                      && cp /tmp/be/usr/local/sbin/kldload /tmp/ && umount /tmp/be \
                      && /tmp/kldload report -o /tmp/r.json >/dev/null 2>&1; \
                      grep -o '\"taken_on\": \"[a-z]*\"' /tmp/r.json; \
                      grep -c '\"dataset\": \"rpool/ROOT/default\"' /tmp/r.json; \
                      echo report-exit-$?";
        // The typed line has `$?`; the output has the number.
        let ended = |s: &str| {
            (s.lines()).any(|l| {
                (l.trim().strip_prefix("report-exit-"))
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
            })
        };
        let screen = zbm.recovery_shell_run(report, ended, Duration::from_secs(300));
        run.check(
            "kldload report in the recovery shell says it ran in ZFSBootMenu and reads the pool",
            || {
                let s = screen?;
                ensure!(
                    s.contains("\"taken_on\": \"zfsbootmenu\""),
                    "no taken_on zfsbootmenu:\n{s}"
                );
                let lines: Vec<&str> = s.lines().map(str::trim).collect();
                let at = (lines.iter()).position(|l| l.starts_with("report-exit-0"));
                ensure!(
                    at.is_some_and(|i| i > 0 && lines[i - 1].parse::<u32>().is_ok_and(|n| n > 0)),
                    "the report names no boot environment rpool/ROOT/default:\n{s}"
                );
                Ok("taken_on zfsbootmenu; rpool/ROOT/default among its boot environments".into())
            },
        );
        let listed = zbm.leave_recovery_shell();
        run.check("exit brings the menu back", || listed.map(|l| l.join(" ")));
        zbm.append_to_command_line_once("kldload.one_boot=1")?;
        zbm.boot(BOOTFS)?;
        m.login_root(LOGIN_TIMEOUT)?;
        let cmdline = m.succeed("cat /proc/cmdline")?;
        run.check("the edited command line is the booted one", || {
            ensure!(
                cmdline.contains("kldload.one_boot=1"),
                "/proc/cmdline: {cmdline}"
            );
            Ok(cmdline.trim().to_string())
        });
        m.reboot()?;
        m.login_root(MENU_TIMEOUT + LOGIN_TIMEOUT)?;
        let cmdline = m.succeed("cat /proc/cmdline")?;
        run.check("the next boot has the usual command line", || {
            root_is(&mut m, BOOTFS)?;
            ensure!(
                !cmdline.contains("kldload.one_boot"),
                "/proc/cmdline: {cmdline}"
            );
            Ok(cmdline.trim().to_string())
        });
        m.shutdown(Duration::from_secs(120))?;
        Ok(())
    });
}

/// ZFSBootMenu's own command line is the firmware entry's load options (they replace the
/// embedded one). Rewrites the `ZFSBootMenu` entry: the serial console and `extra` (kldload's
/// `zbm.timeout` is left out, so `zbm.skip` and `zbm.show` are not overridden by it).
fn set_zbm_options(m: &mut Machine, extra: &str) -> anyhow::Result<String> {
    let entries = m.succeed("efibootmgr")?;
    let number = entries
        .lines()
        .find_map(|l| {
            // "Boot0004* ZFSBootMenu" (efibootmgr 18 adds a tab and the device path).
            let (boot, rest) = l.split_once(' ')?;
            let label = rest.split('\t').next().unwrap_or_default();
            (label.trim() == "ZFSBootMenu")
                .then(|| boot.trim_start_matches("Boot").trim_end_matches('*'))
        })
        .ok_or_else(|| anyhow::anyhow!("no ZFSBootMenu entry in:\n{entries}"))?
        .to_string();
    let options = format!("quiet loglevel=0 nomodeset console=ttyS0,115200 {extra}");
    m.succeed(&format!(
        "efibootmgr -q -b {number} -B && efibootmgr -q --create --disk /dev/vda --part 1 \
         --label ZFSBootMenu --loader '\\EFI\\ZBM\\VMLINUZ.EFI' --unicode '{options}'"
    ))?;
    Ok(options)
}

/// Reboots and logs in at the next login prompt, timed as `phase`; what the console showed
/// from the reboot to the prompt (ZFSBootMenu's countdown, if it drew one).
fn reboot_and_log_in(run: &mut Run, m: &mut Machine, phase: &str) -> anyhow::Result<String> {
    m.reboot()?;
    let shown = run.timed(phase, |_| {
        m.console.wait_for("login: ", MENU_TIMEOUT + LOGIN_TIMEOUT)
    })?;
    m.login_at_prompt("root", ROOT_PASSWORD)?;
    Ok(shown)
}

/// `zbm.skip` boots bootfs with no menu and no countdown; `zbm.show` shows the menu at once
/// and waits for a key past the countdown's time; an invalid `spl_hostid` does not stop it, and
/// the entry's other options still count (its own `zbm.timeout`). The boot with the bad hostid
/// comes first: its countdown, read from the console the way the `zbm.skip` check reads it, is
/// the control that shows that check can see a countdown when there is one.
#[test]
#[ignore = "boots VMs: run with `cargo xtask vm-test debian`"]
fn load_options_skip_show_and_a_bad_hostid() {
    scenario_on_installed_base("zbm-options", |run| {
        let mut m = run.resume_logged_in("options")?;

        // kldload's own entry says zbm.timeout=2: 12 is this entry's.
        set_zbm_options(&mut m, "zbm.timeout=12 spl_hostid=0xnothex")?;
        let before_login = reboot_and_log_in(run, &mut m, "bad spl_hostid: firmware to login")?;
        let spl = m.succeed("cat /sys/module/spl/parameters/spl_hostid")?;
        run.check("an invalid spl_hostid does not stop it", || {
            root_is(&mut m, BOOTFS)?;
            let spl = kldload::zbm::hostid::parse_kernel_number(&spl);
            ensure!(
                spl == Some(ZFSBOOTMENU_HOSTID),
                "the SPL's hostid is {spl:?}, not ZFSBootMenu's 0x{ZFSBOOTMENU_HOSTID:08x}"
            );
            Ok(format!(
                "booted {BOOTFS}; SPL hostid 0x{ZFSBOOTMENU_HOSTID:08x}"
            ))
        });
        run.check("the same entry's zbm.timeout=12 is used", || {
            let seconds = countdown_seconds(&before_login);
            let first = seconds.iter().max().copied();
            ensure!(
                first.is_some_and(|s| (10..=12).contains(&s)),
                "the console's countdown started from {first:?} (all: {seconds:?}), not 12"
            );
            Ok(format!(
                "countdown from {} seconds",
                first.unwrap_or_default()
            ))
        });

        set_zbm_options(&mut m, "zbm.skip")?;
        let skipped = reboot_and_log_in(run, &mut m, "zbm.skip: firmware to login")?;
        run.check("zbm.skip boots without menu or countdown", || {
            ensure!(
                !countdown_seconds(&before_login).is_empty(),
                "control: the boot before showed no countdown either"
            );
            ensure!(
                !skipped.contains("boot menu")
                    && !skipped.contains("BE >")
                    && countdown_seconds(&skipped).is_empty(),
                "ZFSBootMenu drew its countdown or menu"
            );
            root_is(&mut m, BOOTFS)?;
            Ok(format!(
                "no countdown, no menu (the boot before showed one); / is {BOOTFS}"
            ))
        });

        set_zbm_options(&mut m, "zbm.show")?;
        m.reboot()?;
        let mut zbm = Zbm::new(&mut m);
        let listed = zbm.wait_for_menu()?;
        std::thread::sleep(Duration::from_secs(15));
        let screen = zbm.m.console.screen();
        run.check("zbm.show waits in the menu", || {
            ensure!(
                screen.contains("BE >") && listed.iter().any(|b| b == BOOTFS),
                "15 s later the screen is:\n{screen}"
            );
            Ok(format!(
                "menu still up 15 s later, listing {}",
                listed.join(" ")
            ))
        });
        zbm.boot(BOOTFS)?;
        m.login_root(LOGIN_TIMEOUT)?;

        m.shutdown(Duration::from_secs(120))?;
        Ok(())
    });
}
