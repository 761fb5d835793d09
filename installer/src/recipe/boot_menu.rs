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
/// embedded in the EFI file, so everything wanted is repeated here).
pub fn zbm_load_options(inputs: &Inputs) -> String {
    let z = &inputs.config.zfsbootmenu;
    let mut line = format!("{} zbm.timeout={}", z.commandline.trim(), z.timeout);
    if let Some(serial) = &z.serial_console {
        line.push_str(&format!(" console={serial}"));
    }
    line.trim().to_string()
}

/// The installed kernel's command line, kept in `org.zfsbootmenu:commandline` on <pool>/ROOT so
/// every boot environment inherits it. ZFSBootMenu adds `root=zfs:<BE>` and `spl.spl_hostid`.
pub fn kernel_commandline(inputs: &Inputs) -> String {
    let z = &inputs.config.zfsbootmenu;
    let mut line = z.kernel_commandline.trim().to_string();
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

/// Every other disk of a mirror or raidz gets the same files on its own ESP, so the machine
/// boots from any surviving disk.
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
