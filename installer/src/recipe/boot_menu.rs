//! Step 6: ZFSBootMenu on the ESP: the primary and backup EFI files, the fallback copy at
//! EFI/BOOT/BOOTX64.EFI (what firmware boots when it forgets its entries), firmware entries made
//! with efibootmgr, and the properties ZFSBootMenu reads from the pool.
//!
//! With Secure Boot (`Inputs::secure_boot`) the firmware starts shim instead, which starts
//! ZFSBootMenu signed with the build's MOK key:
//! - EFI/ZBM/shimx64.efi (signed by Microsoft, which the firmware's db trusts) and mmx64.efi
//!   (MokManager, which shim starts when an enrollment is pending or a file is refused);
//! - each firmware entry starts shimx64.efi with the load options `VMLINUZ.EFI <ZFSBootMenu's
//!   options>`: shim takes the first word as the file to start, from its own directory, and
//!   passes the rest on; the signed ZFSBootMenu has no embedded command line, since systemd's
//!   stub ignores load options under Secure Boot when it has one;
//! - the fallback path is shim too, with its fbx64.efi: on a fresh NVRAM it reads
//!   EFI/ZBM/BOOTX64.CSV, makes the entries again and starts the first.

use super::Inputs;
use crate::config::Family;
use crate::plan::{Action, Step, StepId};
use crate::zbm::source::ZbmSource;

/// Paths on the ESP.
pub const ZBM_PRIMARY: &str = "EFI/ZBM/VMLINUZ.EFI";
pub const ZBM_BACKUP: &str = "EFI/ZBM/VMLINUZ-BACKUP.EFI";
pub const FALLBACK: &str = "EFI/BOOT/BOOTX64.EFI";
/// With Secure Boot: shim and MokManager next to ZFSBootMenu, shim's fallback and MokManager
/// next to the fallback shim, and the list fbx64.efi makes entries from.
pub const SHIM: &str = "EFI/ZBM/shimx64.efi";
pub const MOK_MANAGER: &str = "EFI/ZBM/mmx64.efi";
pub const SHIM_FALLBACK: &str = "EFI/BOOT/fbx64.efi";
pub const FALLBACK_MOK_MANAGER: &str = "EFI/BOOT/mmx64.efi";
pub const SHIM_CSV: &str = "EFI/ZBM/BOOTX64.CSV";
/// Firmware entry labels (on a machine of one disk; with more, each disk's entries name it).
pub const ENTRY_PRIMARY: &str = "ZFSBootMenu";
pub const ENTRY_BACKUP: &str = "ZFSBootMenu (Backup)";

/// One firmware entry the step makes: its label, the file it starts and the disk whose ESP holds
/// that file; with Secure Boot, the firmware starts shim, which starts `esp_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareEntry {
    pub label: String,
    pub esp_file: &'static str,
    pub disk: std::path::PathBuf,
    pub through_shim: bool,
}

impl FirmwareEntry {
    /// What the firmware starts.
    pub fn loader(&self) -> &'static str {
        if self.through_shim {
            SHIM
        } else {
            self.esp_file
        }
    }

    /// The entry's load options for ZFSBootMenu's `options`: as they are, or after the file
    /// shim is to start (its name: shim looks in its own directory).
    pub fn load_options(&self, options: &str) -> String {
        if self.through_shim {
            let file = self.esp_file.rsplit('/').next().unwrap_or(self.esp_file);
            format!("{file} {options}")
        } else {
            options.to_string()
        }
    }
}

/// The firmware entries, in the order firmware should try them: every disk's primary (the
/// first disk's first), then every disk's backup. With one disk the labels are the plain
/// `ZFSBootMenu` and `ZFSBootMenu (Backup)`; with more each names its disk (`ZFSBootMenu (vdb)`),
/// as ZFSBootMenu's guides do, so the firmware can start from any disk that is left and a person
/// in the firmware's boot menu sees which disk an entry is.
pub fn firmware_entries(inputs: &Inputs) -> Vec<FirmwareEntry> {
    let several = inputs.disks.len() > 1;
    let label = |base: &str, disk: &std::path::Path| {
        if several {
            let name = disk.file_name().unwrap_or_default().to_string_lossy();
            match base.strip_suffix(')') {
                Some(open) => format!("{open}, {name})"),
                None => format!("{base} ({name})"),
            }
        } else {
            base.to_string()
        }
    };
    [(ENTRY_PRIMARY, ZBM_PRIMARY), (ENTRY_BACKUP, ZBM_BACKUP)]
        .into_iter()
        .flat_map(|(base, esp_file)| {
            inputs.disks.iter().map(move |disk| FirmwareEntry {
                label: label(base, disk),
                esp_file,
                disk: disk.clone(),
                through_shim: inputs.secure_boot,
            })
        })
        .collect()
}

/// ZFSBootMenu's own command line, given as the entries' load options (which replace the one
/// embedded in the EFI file, so everything wanted is repeated here) and embedded in the
/// installed file too, for the fallback path. `zbm.prefer=<pool>` keeps
/// the installed pool the default whatever other pools the machine carries (ZFSBootMenu would
/// otherwise take the bootfs of the first pool by name), unless the answer file's `commandline`
/// already prefers one. `zbm.timeout` comes from the answer file's `timeout`, unless its
/// `commandline` already says how the menu starts: ZFSBootMenu lets `zbm.timeout` win over
/// `zbm.skip` and `zbm.show` (seen in the VM tests), so adding it then would undo what the user
/// asked for.
pub fn zbm_load_options(inputs: &Inputs) -> String {
    let z = &inputs.config.zfsbootmenu;
    let mut line = z.commandline.as_str().trim().to_string();
    if !line
        .split_whitespace()
        .any(|w| w.starts_with("zbm.prefer="))
    {
        line.push_str(&format!(" zbm.prefer={}", inputs.pool()));
    }
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

/// Where the live system keeps a downloaded release while it is verified.
pub const RELEASE_WORK: &str = "/run/kldload/zfsbootmenu-release";

/// Where a downloaded ZFSBootMenu EFI file waits, verified, for the boot menu step.
pub const FETCHED: &str = "/run/kldload/zfsbootmenu/VMLINUZ.EFI";

/// Step 0, for a ZFSBootMenu that is downloaded: fetched and verified before any disk is
/// touched, so that a failed download or check leaves every disk as it was, and so that
/// `kldload install` reads the file (its hostid, its ZFS's features) and makes the rest of the
/// plan from it, as it does for a local file. None for a local file, and for FreeBSD (its own
/// loader, no ZFSBootMenu).
pub fn fetch_step(inputs: &Inputs) -> Option<Step> {
    if inputs.config.distro.family() == Family::FreeBsd {
        return None;
    }
    let dir = std::path::Path::new(FETCHED)
        .parent()
        .expect("FETCHED is in a directory");
    let mut actions = vec![Action::run(
        ["mkdir", "-p", &dir.to_string_lossy()],
        "where the download waits, on the live system",
    )];
    match &inputs.zfsbootmenu {
        ZbmSource::File { .. } => return None,
        ZbmSource::Download {
            url,
            sha256,
            origin,
        } => {
            let mut curl = vec!["curl", "--fail", "--location"];
            curl.extend(crate::zbm::release::CURL_RETRIES);
            curl.extend(["--output", FETCHED, url]);
            actions.push(Action::run(curl, format!("download ZFSBootMenu: {origin}")));
            actions.push(Action::VerifySha256 {
                path: FETCHED.into(),
                sha256: sha256.clone(),
                why: "refuse a download that is not the pinned file".into(),
            });
        }
        ZbmSource::Release {
            version,
            kernel_series,
            origin,
        } => {
            actions.push(Action::DownloadRelease {
                releases_url: crate::zbm::release::RELEASES_URL.into(),
                version: version.clone(),
                kernel_series: kernel_series.clone(),
                work: RELEASE_WORK.into(),
                dest: FETCHED.into(),
                why: format!(
                    "ZFSBootMenu's EFI file, from {origin}: its signed checksum list checked \
                     with ZFSBootMenu's key, the file with the list"
                ),
            });
        }
    }
    Some(Step {
        id: StepId::FetchBootMenu,
        title: "Fetch ZFSBootMenu: downloaded and verified before any disk is touched".into(),
        why: "a failed download or check leaves every disk as it was; the file's hostid and \
              ZFS are known before the pool is made"
            .into(),
        actions,
    })
}

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
    if inputs.config.encryption.enabled {
        actions.push(Action::run(
            [
                "zfs",
                "set",
                &format!("org.zfsbootmenu:keysource={}", inputs.boot_environment()),
                inputs.pool(),
            ],
            "ZFSBootMenu reads the key file from the boot environment once the passphrase has \
             unlocked it, and keeps it: re-importing the pool (a changed hostid, a new boot \
             environment) asks no second time",
        ));
    }
    actions.extend(mount_first_esp(inputs));
    actions.push(Action::run(
        ["mkdir", "-p", &on_esp("EFI/ZBM"), &on_esp("EFI/BOOT")],
        "ZFSBootMenu's directory and the firmware's fallback directory",
    ));
    let (file, origin) = match &inputs.zfsbootmenu {
        ZbmSource::File { path, origin } => (path.to_string_lossy().into_owned(), origin.clone()),
        source => (
            FETCHED.into(),
            format!("{}, fetched first", source.origin()),
        ),
    };
    let options = zbm_load_options(inputs);
    if inputs.secure_boot {
        actions.extend(through_shim(inputs, &file, &origin, &options));
    } else {
        actions.extend(started_directly(inputs, &file, &origin, &options));
    }
    actions.extend(copy_to_other_esps(inputs));
    // Made last one first: efibootmgr puts each new entry first in BootOrder, so the first
    // disk's primary leads.
    for entry in firmware_entries(inputs).iter().rev() {
        actions.push(firmware_entry(entry, Some(&entry.load_options(&options))));
    }
    actions.extend(mok_enrollment(inputs));
    Step {
        id: StepId::BootMenu,
        title: "Boot menu: ZFSBootMenu on the ESP, its fallback copy and firmware entries".into(),
        why: "firmware starts ZFSBootMenu, which imports the pool and boots a kernel from a boot environment".into(),
        actions,
    }
}

/// The firmware starts ZFSBootMenu itself: the file with the load options embedded (for the
/// fallback copy, which starts without any), its backup and the fallback copy.
fn started_directly(inputs: &Inputs, file: &str, origin: &str, options: &str) -> Vec<Action> {
    let on_esp = |p: &str| inputs.target(&format!("boot/efi/{p}"));
    let primary = on_esp(ZBM_PRIMARY);
    vec![
        Action::run(
            ["install", "-m", "0644", file, &primary],
            format!("ZFSBootMenu's EFI file, from {origin}"),
        ),
        Action::EmbedCmdline {
            file: primary.clone().into(),
            line: options.to_string(),
            why: "the load options embedded in the file as well: the fallback copy is started \
                  without any, and then shows the same menu on the same console (a signed file \
                  is left as it is)"
                .into(),
        },
        Action::run(
            ["cp", &primary, &on_esp(ZBM_BACKUP)],
            "a backup copy with its own firmware entry, to boot when an update breaks the primary",
        ),
        Action::run(
            ["cp", &primary, &on_esp(FALLBACK)],
            "the fallback path firmware boots when its NVRAM entries are lost",
        ),
    ]
}

/// Secure Boot: the firmware starts shim, shim the signed ZFSBootMenu (see the module's doc).
fn through_shim(inputs: &Inputs, file: &str, origin: &str, options: &str) -> Vec<Action> {
    use crate::medium::{LIVE_MOK_MANAGER, LIVE_SHIM, LIVE_SHIM_FALLBACK};
    let on_esp = |p: &str| inputs.target(&format!("boot/efi/{p}"));
    let install = |from: &str, to: &str, why: &str| {
        Action::run(["install", "-m", "0644", from, &on_esp(to)], why)
    };
    vec![
        install(
            LIVE_SHIM,
            SHIM,
            "shim, Debian's, signed by Microsoft (the key in the firmware's db): it checks \
             ZFSBootMenu's signature against the enrolled MOK",
        ),
        install(
            LIVE_MOK_MANAGER,
            MOK_MANAGER,
            "MokManager: shim starts it when a MOK enrollment is pending (`mokutil --import`) or \
             when it refuses a file",
        ),
        install(
            file,
            ZBM_PRIMARY,
            &format!(
                "ZFSBootMenu's EFI file, signed with the MOK key, from {origin}; no command line \
                 is embedded (it would hide the entry's load options under Secure Boot)"
            ),
        ),
        Action::run(
            ["cp", &on_esp(ZBM_PRIMARY), &on_esp(ZBM_BACKUP)],
            "a backup copy with its own firmware entry, to boot when an update breaks the primary",
        ),
        install(
            LIVE_SHIM,
            FALLBACK,
            "the fallback path firmware boots when its NVRAM entries are lost: shim again",
        ),
        install(
            LIVE_SHIM_FALLBACK,
            SHIM_FALLBACK,
            "shim's fallback: started from EFI/BOOT, shim runs it, and it makes the firmware \
             entries again from EFI/ZBM/BOOTX64.CSV and starts the first",
        ),
        install(
            LIVE_MOK_MANAGER,
            FALLBACK_MOK_MANAGER,
            "MokManager next to the fallback shim as well",
        ),
        Action::run_with_stdin(
            [
                "iconv",
                "--from-code=UTF-8",
                "--to-code=UTF-16LE",
                &format!("--output={}", on_esp(SHIM_CSV)),
            ],
            crate::plan::Stdin::Text {
                text: shim_csv(options),
            },
            "the entries shim's fallback makes, in the UCS-2 it reads",
        ),
    ]
}

/// Where the install keeps the MokManager password's hash for mokutil, on the live system.
pub const MOK_PASSWORD_HASH_FILE: &str = "/run/kldload/mok-password.hash";

/// `secure_boot.enroll_mok_password_hash`: shim is asked to enroll the medium's MOK at the next
/// boot (MokNew and MokAuth in the NVRAM, written by `mokutil --import`); MokManager then shows
/// the key and asks for the one-time password.
fn mok_enrollment(inputs: &Inputs) -> Vec<Action> {
    let Some(hash) = (inputs.enroll_mok)
        .then_some(inputs.config.secure_boot.enroll_mok_password_hash.as_ref())
        .flatten()
    else {
        return Vec::new();
    };
    vec![
        Action::WriteFile {
            path: MOK_PASSWORD_HASH_FILE.into(),
            contents: crate::plan::Contents::Text {
                text: format!("{}\n", hash.as_str()),
            },
            mode: 0o600,
            why: "the one-time password's hash from the answer file, for mokutil".into(),
        },
        Action::run(
            [
                "mokutil",
                "--import",
                crate::medium::LIVE_MOK,
                "--hash-file",
                MOK_PASSWORD_HASH_FILE,
            ],
            "ask shim to enroll the medium's MOK certificate at the next boot: MokManager \
             starts, shows the key and asks for the password (Enroll MOK, Continue, Yes, the \
             password, Reboot)",
        ),
    ]
}

/// EFI/ZBM/BOOTX64.CSV: a line per entry of one disk, `file,label,options,comment`, the
/// primary first (shim's fallback puts the entries it makes at the head of BootOrder in the
/// lines' order, and starts the first). The
/// fallback splits lines at every comma and keeps no quoting, so a word of the options with a
/// comma (`console=ttyS0,115200`) is cut there: the console keeps its device and runs at the
/// kernel's default speed until the entries are made again with `efibootmgr`.
pub fn shim_csv(options: &str) -> String {
    let options: Vec<&str> = options
        .split_whitespace()
        .map(|word| word.split(',').next().unwrap_or(word))
        .collect();
    let shim = SHIM.rsplit('/').next().unwrap_or(SHIM);
    [(ENTRY_PRIMARY, ZBM_PRIMARY), (ENTRY_BACKUP, ZBM_BACKUP)]
        .iter()
        .map(|(label, file)| {
            let file = file.rsplit('/').next().unwrap_or(file);
            format!("{shim},{label},{file} {},kldload\n", options.join(" "))
        })
        .collect()
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

/// A firmware boot entry for a file on one disk's ESP.
fn firmware_entry(entry: &FirmwareEntry, load_options: Option<&str>) -> Action {
    let disk = entry.disk.to_string_lossy().into_owned();
    let part = super::partition::ESP_PARTITION.to_string();
    let loader = firmware_path(entry.loader());
    let label = entry.label.as_str();
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
        Some(_) => format!(
            "firmware entry {label:?} for {disk}'s ESP; its load options are ZFSBootMenu's command line"
        ),
        None => format!("firmware entry {label:?} for {disk}'s ESP"),
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
    let entry = FirmwareEntry {
        label: "FreeBSD".into(),
        esp_file: FREEBSD_LOADER,
        disk: inputs.disks[0].clone(),
        through_shim: false,
    };
    actions.push(firmware_entry(&entry, None));
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
    use std::path::PathBuf;

    /// `fixtures/answers/default.toml`'s ZFSBootMenu settings, with `extra` lines in its table.
    fn config(extra: &str) -> Config {
        crate::config::test_config(&format!(
            "serial_console = \"ttyS0,115200\"\ntimeout = 5\n{extra}"
        ))
    }

    /// Inputs with no ZFSBootMenu file read (as when none is given).
    fn inputs(config: &Config) -> Inputs<'_> {
        Inputs {
            zbm_image: None,
            live_zfs_features: None,
            ..crate::recipe::testing::inputs(config, None, None)
        }
    }

    #[test]
    fn load_options_repeat_the_embedded_line_and_add_timeout_and_console() {
        let c = config("");
        assert_eq!(
            zbm_load_options(&inputs(&c)),
            "quiet loglevel=0 nomodeset zbm.prefer=rpool zbm.timeout=5 console=ttyS0,115200"
        );
    }

    #[test]
    fn load_options_leave_the_timeout_out_when_the_command_line_decides_the_menu() {
        for line in ["zbm.skip", "quiet zbm.show", "zbm.timeout=-1 quiet"] {
            let c = config(&format!("commandline = {line:?}"));
            let options = zbm_load_options(&inputs(&c));
            assert_eq!(
                options,
                format!("{line} zbm.prefer=rpool console=ttyS0,115200")
            );
        }
        // A word that merely starts like one does not count.
        let c = config("commandline = \"zbm.showx\"");
        assert!(zbm_load_options(&inputs(&c)).contains("zbm.timeout=5"));
    }

    #[test]
    fn load_options_prefer_the_installed_pool_unless_the_command_line_prefers_one() {
        let c = config("commandline = \"zbm.prefer=tank!\"");
        let options = zbm_load_options(&inputs(&c));
        assert!(!options.contains("zbm.prefer=rpool"), "{options}");
        assert!(options.starts_with("zbm.prefer=tank! "), "{options}");
    }

    #[test]
    fn with_several_disks_each_has_its_entries_named_after_it_first_disks_primary_first() {
        let c = config("");
        let mut i = inputs(&c);
        i.disks = vec![
            PathBuf::from("/dev/vda"),
            PathBuf::from("/dev/disk/by-id/virtio-two"),
        ];
        let calls = efibootmgr_calls(&step(&i));
        let made: Vec<(&str, &str)> = calls
            .iter()
            .map(|argv| (argv[3].as_str(), argv[7].as_str()))
            .collect();
        // Made in reverse: each new entry goes first in BootOrder.
        assert_eq!(
            made,
            [
                (
                    "/dev/disk/by-id/virtio-two",
                    "ZFSBootMenu (Backup, virtio-two)"
                ),
                ("/dev/vda", "ZFSBootMenu (Backup, vda)"),
                ("/dev/disk/by-id/virtio-two", "ZFSBootMenu (virtio-two)"),
                ("/dev/vda", "ZFSBootMenu (vda)"),
            ]
        );
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
                "quiet loglevel=0 nomodeset zbm.prefer=rpool zbm.timeout=5 console=ttyS0,115200",
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
    fn through_shim_entries_start_shim_with_zfsbootmenus_file_first_in_the_options() {
        let c = config("");
        let mut i = inputs(&c);
        i.secure_boot = true;
        let calls = efibootmgr_calls(&step(&i));
        let loaders_and_options: Vec<(&str, &str)> = calls
            .iter()
            .map(|argv| (argv[9].as_str(), argv[11].as_str()))
            .collect();
        let options =
            "quiet loglevel=0 nomodeset zbm.prefer=rpool zbm.timeout=5 console=ttyS0,115200";
        assert_eq!(
            loaders_and_options,
            [
                (
                    "\\EFI\\ZBM\\shimx64.efi",
                    format!("VMLINUZ-BACKUP.EFI {options}").as_str()
                ),
                (
                    "\\EFI\\ZBM\\shimx64.efi",
                    format!("VMLINUZ.EFI {options}").as_str()
                ),
            ]
        );
        let step = step(&i);
        assert!(
            !step
                .actions
                .iter()
                .any(|a| matches!(a, Action::EmbedCmdline { .. })),
            "a signed file is installed as it is"
        );
    }

    #[test]
    fn the_fallback_list_names_shim_primary_first_and_holds_no_comma_in_the_options() {
        let csv = shim_csv("quiet zbm.prefer=rpool console=ttyS0,115200n8 zbm.timeout=5");
        assert_eq!(
            csv,
            "shimx64.efi,ZFSBootMenu,VMLINUZ.EFI quiet zbm.prefer=rpool console=ttyS0 zbm.timeout=5,kldload\n\
             shimx64.efi,ZFSBootMenu (Backup),VMLINUZ-BACKUP.EFI quiet zbm.prefer=rpool console=ttyS0 zbm.timeout=5,kldload\n"
        );
        for line in csv.lines() {
            assert_eq!(line.matches(',').count(), 3, "{line}");
        }
    }

    #[test]
    fn firmware_paths_use_backslashes_from_the_esp_root() {
        assert_eq!(firmware_path(FALLBACK), "\\EFI\\BOOT\\BOOTX64.EFI");
    }
}
