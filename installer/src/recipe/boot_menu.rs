//! Step 6: ZFSBootMenu on the ESP: the primary and backup EFI files, the fallback copy at
//! EFI/BOOT/BOOTX64.EFI (what firmware boots when it forgets its entries), firmware entries made
//! with efibootmgr, and the properties ZFSBootMenu reads from the pool.

use super::Inputs;
use crate::config::Family;
use crate::plan::{Action, Step, StepId};
use crate::zfsbootmenu::ZbmSource;

/// Paths on the ESP.
pub const ZBM_PRIMARY: &str = "EFI/ZBM/VMLINUZ.EFI";
pub const ZBM_BACKUP: &str = "EFI/ZBM/VMLINUZ-BACKUP.EFI";
pub const FALLBACK: &str = "EFI/BOOT/BOOTX64.EFI";
/// Firmware entry labels.
pub const ENTRY_PRIMARY: &str = "ZFSBootMenu";
pub const ENTRY_BACKUP: &str = "ZFSBootMenu (Backup)";

/// ZFSBootMenu's own command line, given as the entries' load options (which replace the one
/// embedded in the EFI file, so everything wanted is repeated here). `zbm.timeout` comes from
/// the answer file's `timeout`, unless its `commandline` already says how the menu starts:
/// ZFSBootMenu lets `zbm.timeout` win over `zbm.skip` and `zbm.show` (seen in the VM tests), so
/// adding it then would undo what the user asked for.
pub fn zbm_load_options(inputs: &Inputs) -> String {
    let z = &inputs.config.zfsbootmenu;
    let mut line = z.commandline.as_str().trim().to_string();
    let decides_the_menu = line
        .split_whitespace()
        .any(|word| matches!(word, "zbm.skip" | "zbm.show") || word.starts_with("zbm.timeout="));
    if !decides_the_menu {
        line.push_str(&format!(" zbm.timeout={}", z.timeout));
    }
    if let Some(serial) = &z.serial_console {
        line.push_str(&format!(" console={serial}"));
    }
    line.trim().to_string()
}

/// The installed kernel's command line, kept in `org.zfsbootmenu:commandline` on <pool>/ROOT so
/// every boot environment inherits it. ZFSBootMenu adds `root=zfs:<BE>` and `spl.spl_hostid`.
pub fn kernel_commandline(inputs: &Inputs) -> String {
    let z = &inputs.config.zfsbootmenu;
    let mut line = z.kernel_commandline.as_str().trim().to_string();
    if let Some(serial) = &z.serial_console {
        line.push_str(&format!(" console=tty0 console={serial}"));
    }
    line.trim().to_string()
}

/// A path on the ESP as firmware names it: `\EFI\ZBM\VMLINUZ.EFI`.
pub fn firmware_path(esp_path: &str) -> String {
    format!("\\{}", esp_path.replace('/', "\\"))
}

/// FreeBSD's own loader on the ESP.
pub const FREEBSD_LOADER: &str = "EFI/FreeBSD/loader.efi";

pub fn step(inputs: &Inputs) -> Step {
    if inputs.config.distro.family() == Family::FreeBsd {
        return freebsd_loader(inputs);
    }
    let esp_mount = inputs.target("boot/efi");
    let on_esp = |p: &str| format!("{esp_mount}/{p}");
    let mut actions = vec![Action::run(
        [
            "zfs",
            "set",
            &format!("org.zfsbootmenu:commandline={}", kernel_commandline(inputs)),
            &inputs.dataset("ROOT"),
        ],
        "the kernel command line ZFSBootMenu boots every boot environment with",
    )];
    actions.push(Action::run(
        ["mkdir", "-p", &esp_mount],
        "the ESP's mountpoint in the target",
    ));
    let first_esp = inputs
        .esp_partition(&inputs.disks[0])
        .to_string_lossy()
        .into_owned();
    actions.push(Action::run(
        ["mount", "-t", "vfat", &first_esp, &esp_mount],
        "mount the first disk's ESP",
    ));
    actions.push(Action::run(
        ["mkdir", "-p", &on_esp("EFI/ZBM"), &on_esp("EFI/BOOT")],
        "ZFSBootMenu's directory and the firmware's fallback directory",
    ));
    let primary = on_esp(ZBM_PRIMARY);
    match &inputs.zfsbootmenu {
        ZbmSource::File { path, origin } => {
            actions.push(Action::run(
                ["install", "-m", "0644", &path.to_string_lossy(), &primary],
                format!("ZFSBootMenu's EFI file, from {origin}"),
            ));
        }
        ZbmSource::Download {
            url,
            sha256,
            origin,
        } => {
            actions.push(Action::run(
                [
                    "curl",
                    "--fail",
                    "--location",
                    "--retry",
                    "3",
                    "--output",
                    &primary,
                    url,
                ],
                format!("download ZFSBootMenu: {origin}"),
            ));
            actions.push(Action::VerifySha256 {
                path: primary.clone().into(),
                sha256: sha256.clone(),
                why: "refuse a download that is not the pinned file".into(),
            });
        }
    }
    actions.push(Action::run(
        ["cp", &primary, &on_esp(ZBM_BACKUP)],
        "a backup copy with its own firmware entry, to boot when an update breaks the primary",
    ));
    actions.push(Action::run(
        ["cp", &primary, &on_esp(FALLBACK)],
        "the fallback path firmware boots when its NVRAM entries are lost",
    ));
    actions.extend(copy_to_other_esps(inputs));
    let options = zbm_load_options(inputs);
    // Made backup first: efibootmgr puts each new entry first in BootOrder, so the primary leads.
    for (label, file) in [(ENTRY_BACKUP, ZBM_BACKUP), (ENTRY_PRIMARY, ZBM_PRIMARY)] {
        actions.push(firmware_entry(inputs, label, file, Some(&options)));
    }
    Step {
        id: StepId::BootMenu,
        title: "Boot menu: ZFSBootMenu on the ESP, its fallback copy and firmware entries".into(),
        why: "firmware starts ZFSBootMenu, which imports the pool and boots a kernel from a boot environment".into(),
        actions,
    }
}

fn mount_first_esp(inputs: &Inputs) -> Vec<Action> {
    let esp_mount = inputs.target("boot/efi");
    let first_esp = inputs
        .esp_partition(&inputs.disks[0])
        .to_string_lossy()
        .into_owned();
    vec![
        Action::run(
            ["mkdir", "-p", &esp_mount],
            "the ESP's mountpoint in the target",
        ),
        Action::run(
            ["mount", "-t", "vfat", &first_esp, &esp_mount],
            "mount the first disk's ESP",
        ),
    ]
}

/// Every other disk (mirror, raidz, stripe) gets the same files on its own ESP, so the firmware
/// can start ZFSBootMenu from any disk that is left.
fn copy_to_other_esps(inputs: &Inputs) -> Vec<Action> {
    let esp_efi = inputs.target("boot/efi/EFI");
    let mut actions = Vec::new();
    for disk in &inputs.disks[1..] {
        let esp = inputs.esp_partition(disk).to_string_lossy().into_owned();
        let mnt = "/run/kldload/esp";
        actions.push(Action::run(
            ["mkdir", "-p", mnt],
            "a temporary mountpoint for another disk's ESP",
        ));
        actions.push(Action::run(
            ["mount", "-t", "vfat", &esp, mnt],
            format!("{esp}: another disk's ESP"),
        ));
        actions.push(Action::run(
            ["cp", "-r", &esp_efi, &format!("{mnt}/")],
            "the same boot files, so this disk boots alone",
        ));
        actions.push(Action::run(["umount", mnt], "done with it"));
    }
    actions
}

/// A firmware boot entry for a file on the first disk's ESP.
fn firmware_entry(
    inputs: &Inputs,
    label: &str,
    esp_file: &str,
    load_options: Option<&str>,
) -> Action {
    let disk = inputs.disks[0].to_string_lossy().into_owned();
    let part = super::partition::ESP_PARTITION.to_string();
    let loader = firmware_path(esp_file);
    let mut argv = vec![
        "efibootmgr",
        "--create",
        "--disk",
        &disk,
        "--part",
        &part,
        "--label",
        label,
        "--loader",
        &loader,
    ];
    if let Some(options) = load_options {
        argv.extend(["--unicode", options]);
    }
    let why = match load_options {
        Some(_) => {
            format!("firmware entry {label:?}; its load options are ZFSBootMenu's command line")
        }
        None => format!("firmware entry {label:?}"),
    };
    Action::run(argv, why)
}

/// FreeBSD boots through its own loader.efi, taken from the installed system.
fn freebsd_loader(inputs: &Inputs) -> Step {
    let on_esp = |p: &str| inputs.target(&format!("boot/efi/{p}"));
    let mut actions = mount_first_esp(inputs);
    actions.push(Action::run(
        ["mkdir", "-p", &on_esp("EFI/FreeBSD"), &on_esp("EFI/BOOT")],
        "FreeBSD's directory and the firmware's fallback directory",
    ));
    for dest in [FREEBSD_LOADER, FALLBACK] {
        actions.push(Action::run(
            ["cp", &inputs.target("boot/loader.efi"), &on_esp(dest)],
            format!("FreeBSD's loader as {dest}"),
        ));
    }
    actions.extend(copy_to_other_esps(inputs));
    actions.push(firmware_entry(inputs, "FreeBSD", FREEBSD_LOADER, None));
    Step {
        id: StepId::BootMenu,
        title: "Boot loader: FreeBSD's loader.efi on the ESP, its fallback copy and a firmware entry".into(),
        why: "ZFSBootMenu boots Linux kernels only; FreeBSD's loader boots the pool's bootfs and offers its boot environments".into(),
        actions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::plan::Action;
    use crate::recipe::BaseSource;
    use std::path::PathBuf;

    /// `fixtures/answers/default.toml`'s ZFSBootMenu settings, with `extra` lines in its table.
    fn config(extra: &str) -> Config {
        crate::config::test_config(&format!(
            "serial_console = \"ttyS0,115200\"\ntimeout = 5\n{extra}"
        ))
    }

    fn inputs(config: &Config) -> Inputs<'_> {
        Inputs {
            config,
            disks: vec![PathBuf::from("/dev/vda")],
            source: BaseSource::Image("/payload.tar".into()),
            mirror: None,
            zfsbootmenu: ZbmSource::File {
                path: "/zbm.EFI".into(),
                origin: "test".into(),
            },
            installer: None,
        }
    }

    #[test]
    fn load_options_repeat_the_embedded_line_and_add_timeout_and_console() {
        let c = config("");
        assert_eq!(
            zbm_load_options(&inputs(&c)),
            "quiet loglevel=0 nomodeset zbm.timeout=5 console=ttyS0,115200"
        );
    }

    #[test]
    fn load_options_leave_the_timeout_out_when_the_command_line_decides_the_menu() {
        for line in ["zbm.skip", "quiet zbm.show", "zbm.timeout=-1 quiet"] {
            let c = config(&format!("commandline = {line:?}"));
            let options = zbm_load_options(&inputs(&c));
            assert_eq!(options, format!("{line} console=ttyS0,115200"));
        }
        // A word that merely starts like one does not count.
        let c = config("commandline = \"zbm.showx\"");
        assert!(zbm_load_options(&inputs(&c)).contains("zbm.timeout=5"));
    }

    #[test]
    fn kernel_command_line_sends_the_console_to_both_screens() {
        let c = config("kernel_commandline = \"quiet splash\"");
        assert_eq!(
            kernel_commandline(&inputs(&c)),
            "quiet splash console=tty0 console=ttyS0,115200"
        );
    }

    /// The argv of every efibootmgr call the step makes.
    fn efibootmgr_calls(step: &Step) -> Vec<Vec<String>> {
        step.actions
            .iter()
            .filter_map(|a| match a {
                Action::Run { argv, .. } if argv[0] == "efibootmgr" => Some(argv.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn two_firmware_entries_primary_made_last_so_it_boots_first() {
        let c = config("");
        let calls = efibootmgr_calls(&step(&inputs(&c)));
        let expected = |label: &str, loader: &str| -> Vec<String> {
            [
                "efibootmgr",
                "--create",
                "--disk",
                "/dev/vda",
                "--part",
                "1",
                "--label",
                label,
                "--loader",
                loader,
                "--unicode",
                "quiet loglevel=0 nomodeset zbm.timeout=5 console=ttyS0,115200",
            ]
            .map(String::from)
            .to_vec()
        };
        assert_eq!(
            calls,
            [
                expected("ZFSBootMenu (Backup)", "\\EFI\\ZBM\\VMLINUZ-BACKUP.EFI"),
                expected("ZFSBootMenu", "\\EFI\\ZBM\\VMLINUZ.EFI"),
            ]
        );
    }

    #[test]
    fn the_commandline_property_is_set_on_the_pools_root_dataset() {
        let c = config("");
        let step = step(&inputs(&c));
        let Action::Run { argv, .. } = &step.actions[0] else {
            panic!("first action: {:?}", step.actions[0]);
        };
        assert_eq!(
            argv,
            &[
                "zfs",
                "set",
                "org.zfsbootmenu:commandline=quiet console=tty0 console=ttyS0,115200",
                "rpool/ROOT"
            ]
        );
    }

    #[test]
    fn firmware_paths_use_backslashes_from_the_esp_root() {
        assert_eq!(firmware_path(FALLBACK), "\\EFI\\BOOT\\BOOTX64.EFI");
    }
}
