//! The live medium's layout: the files on its EFI system partition, which `cargo xtask
//! build-image` writes, the live system mounts at [`MOUNT`], the installer reads and the VM tests
//! check. Each file is named once, as a path on the ESP (`ESP_*`, for the image build and the
//! tests, which read the medium with mtools) and as the live system sees it (`LIVE_*`, under
//! [`MOUNT`]: the test below holds them together).

/// Where the live system mounts the medium's ESP (files a user copies onto the stick are here).
pub const MOUNT: &str = "/run/kldload/medium";

/// Where the ESP starts on the medium's disk image, in MiB (mtools' `image@@1M`).
pub const ESP_OFFSET_MIB: u64 = 1;

/// Declares each name once, as two constants: the short one, and the full path (the name
/// between `$prefix` and `$suffix`).
macro_rules! paths {
    ($prefix:literal, $suffix:literal; $($(#[$doc:meta])* $short:ident, $full:ident = $name:literal;)*) => {
        $(
            $(#[$doc])*
            pub const $short: &str = $name;
            $(#[$doc])*
            pub const $full: &str = concat!($prefix, $name, $suffix);
        )*
    };
}

// The files of the medium's ESP: their path there, and under MOUNT on the live system.
paths! { "/run/kldload/medium/", "";
    /// The target payload: the base system as a tarball (see `cargo xtask build-image`).
    ESP_PAYLOAD, LIVE_PAYLOAD = "payload.tar.zst";
    /// What the payload holds (distro, kernel, ZFS, packages), as JSON.
    ESP_MANIFEST, LIVE_MANIFEST = "manifest.json";
    /// The medium's ZFSBootMenu EFI file.
    ESP_ZFSBOOTMENU, LIVE_ZFSBOOTMENU = "zfsbootmenu/VMLINUZ.EFI";
    /// The same ZFSBootMenu signed for Secure Boot with the build's MOK key, without an embedded
    /// command line (its options come from the firmware entry, through shim).
    ESP_ZFSBOOTMENU_SIGNED, LIVE_ZFSBOOTMENU_SIGNED = "zfsbootmenu/VMLINUZ-SIGNED.EFI";
    /// How the medium's ZFSBootMenu was built (its source, ZFS and kernel), as JSON.
    ESP_ZFSBOOTMENU_BUILD, LIVE_ZFSBOOTMENU_BUILD = "zfsbootmenu/BUILD.json";
    /// The certificate of the build's MOK key, which signed the medium's EFI files and ZFS.
    ESP_MOK, LIVE_MOK = "mok.der";
    /// shim (Debian's, signed by Microsoft), which the medium itself boots through.
    ESP_SHIM, LIVE_SHIM = "EFI/BOOT/BOOTX64.EFI";
    /// shim's MokManager, next to it.
    ESP_MOK_MANAGER, LIVE_MOK_MANAGER = "EFI/BOOT/mmx64.efi";
    /// What shim packages the medium carries, as JSON.
    ESP_SHIM_INFO, LIVE_SHIM_INFO = "EFI/BOOT/shim.json";
    /// shim's fallback (fbx64.efi), kept out of the medium's EFI/BOOT (there shim would run it
    /// instead of the live system) for installed ESPs.
    ESP_SHIM_FALLBACK, LIVE_SHIM_FALLBACK = "shim/fbx64.efi";
    /// An answer file a user copies onto the stick: the live system installs with it.
    ESP_ANSWERS, LIVE_ANSWERS = "answers.toml";
    /// A pool passphrase a user puts next to that answer file.
    ESP_PASSPHRASE, LIVE_PASSPHRASE = "passphrase";
    /// The install log, appended by every install run from the medium when the stick is
    /// writable (`crate::medium_log`): a failed install's evidence, kept where the user takes it.
    ESP_INSTALL_LOG, LIVE_INSTALL_LOG = "kldload-install.log";
}

// What QEMU hands a VM's live system through fw_cfg: its name for `-fw_cfg name=...,file=...`,
// and where the live system reads it.
paths! { "/sys/firmware/qemu_fw_cfg/by_name/", "/raw";
    /// The answer file of an unattended install in a VM (the VM tests').
    FW_CFG_ANSWERS_NAME, FW_CFG_ANSWERS = "opt/kldload/answers.toml";
    /// The pool passphrase of an unattended encrypted install in a VM.
    FW_CFG_PASSPHRASE_NAME, FW_CFG_PASSPHRASE = "opt/kldload/passphrase";
}

/// A path under [`MOUNT`] as a path on the ESP (`zfsbootmenu/VMLINUZ.EFI`), for a file the
/// answer file names on the medium; None for a path elsewhere.
pub fn on_esp(live_path: &str) -> Option<&str> {
    live_path
        .strip_prefix(MOUNT)
        .and_then(|p| p.strip_prefix('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_is_the_same_path_on_the_esp_and_on_the_live_system() {
        assert_eq!(
            LIVE_ZFSBOOTMENU,
            "/run/kldload/medium/zfsbootmenu/VMLINUZ.EFI"
        );
        assert_eq!(on_esp(LIVE_ZFSBOOTMENU), Some(ESP_ZFSBOOTMENU));
        assert_eq!(on_esp(LIVE_SHIM_FALLBACK), Some(ESP_SHIM_FALLBACK));
        assert_eq!(on_esp("/root/zbm.EFI"), None);
        assert_eq!(on_esp("/run/kldload/mediumX/a"), None);
        assert_eq!(
            FW_CFG_ANSWERS,
            "/sys/firmware/qemu_fw_cfg/by_name/opt/kldload/answers.toml/raw"
        );
    }
}
