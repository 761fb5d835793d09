//! Secure Boot enforced: the firmware's Secure Boot build with Microsoft's keys, and the build's
//! MOK certificate enrolled (as its owner does once with `mokutil --import` and MokManager).
//! The chain: firmware -> shim (signed by Microsoft) -> the EFI file signed with the MOK ->
//! a locked-down kernel that loads only signed modules, the MOK-signed zfs.ko among them.

use anyhow::{Context, ensure};
use kldload::recipe::boot_menu::{ZBM_BACKUP, ZBM_PRIMARY};
use std::time::Duration;
use vmtests::checks;
use vmtests::machine::Machine;
use vmtests::run::{LIVE_BOOT_TIMEOUT, LOGIN_TIMEOUT, MENU_TIMEOUT, Run, test_on_blank_disk};
use vmtests::zbm::Zbm;

/// The variable the firmware reports Secure Boot's state in (1: enforced).
const SECURE_BOOT_VAR: &str =
    "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// The MOK list shim hands to the kernel: there only when shim started the boot.
const MOK_LIST_RT: &str =
    "/sys/firmware/efi/efivars/MokListRT-605dab50-e046-4300-abb6-3dd810dd8b23";

/// The build's MOK certificate's subject, as the medium's manifest names it.
fn module_signer(run: &Run) -> anyhow::Result<String> {
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        run.medium_file(kldload::medium::ESP_MANIFEST)?.path(),
    )?)?;
    Ok(manifest["module_signer"]
        .as_str()
        .context("no module_signer in the medium's manifest")?
        .to_string())
}

/// The medium boots with Secure Boot enforced, and its live system (the one that installs) has
/// the MOK-signed ZFS module loaded under lockdown.
#[test]
#[ignore = "boots VMs: run with `cargo xtask vm-test debian secure-boot`"]
fn secure_boot_live_medium() {
    test_on_blank_disk("secure-boot-live", |run| {
        run.secure_boot(true)?;
        let signer = module_signer(run)?;
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
            shim_started_the_boot(&mut m)
        });
        run.check("the kernel is locked down", || locked_down(&mut m));
        run.check("the MOK-signed zfs.ko is loaded", || {
            m.succeed("modprobe zfs")?;
            zfs_loaded_signed_by(&mut m, &signer)
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
#[ignore = "boots VMs: run with `cargo xtask vm-test debian secure-boot`"]
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

/// With Secure Boot enforced, the medium installs unattended with the main job's answer file
/// (`secure_boot.mode` left at "auto": the live system booted with Secure Boot on, so the ESP
/// boots through shim), and the installed disk boots through shim, ZFSBootMenu signed with the
/// MOK, and Debian's signed kernel, which ZFSBootMenu kexecs under lockdown. Then the main
/// job's checks and Secure Boot's own in the installed system; what Secure Boot refuses (a
/// module unsigned or signed by another key, a ZFSBootMenu signed by another key, a boot
/// environment whose kernel is unsigned) while the signed ones still boot; the same disk and
/// NVRAM with Secure Boot turned off, for the time Secure Boot costs; last, a fresh NVRAM with
/// Secure Boot on, where shim's fallback makes the entries again.
#[test]
#[ignore = "boots VMs: run with `cargo xtask vm-test debian secure-boot`"]
fn secure_boot_install() {
    test_on_blank_disk("secure-boot-install", |run| {
        run.secure_boot(true)?;
        let signer = module_signer(run)?;
        run.install_and_inspect()?;
        // What "auto" resolved to on the live system (Secure Boot on) and the ZFSBootMenu it
        // then took (the medium's, signed): the checks compare with the plan made so.
        let mut config = kldload::config::Config::load(&run.answers)?;
        config.secure_boot.mode = kldload::config::SecureBootMode::On;
        config.zfsbootmenu.source = Some(kldload::config::ZbmChoice::Built);
        // A ZFSBootMenu signed by a key the machine does not trust, handed over as a disk.
        let other_key_zbm = zfsbootmenu_signed_by_another_key(run)?;
        let other_key_zbm_size = std::fs::metadata(&other_key_zbm)?.len();
        let other_key_disk = run.add_file_as_disk(&other_key_zbm)?;
        let mut m = run.boot_installed("installed-secure-boot-on")?;
        run.timed("checks", |run| {
            checks::run_all(&mut m, run, &config);
            secure_boot_checks(&mut m, run, &signer);
            module_refusals(&mut m, run);
            Ok(())
        })?;

        // The primary ZFSBootMenu replaced by the one signed by another key; a boot
        // environment whose kernel has its signature taken off.
        m.succeed(&format!(
            "head -c {other_key_zbm_size} {other_key_disk} > /boot/efi/{ZBM_PRIMARY} && sync"
        ))?;
        m.succeed(UNSIGNED_KERNEL_BE)?;
        m.reboot()?;
        let refused = run.timed("shim's refusal, then the backup entry", |_| {
            // shim shows each refusal in a box with an OK button and waits for a key, as a
            // person sees it; then it starts MokManager, which waits 10 s for a key, tries
            // the file again, refuses it again (OK once more), and gives up: the firmware then
            // starts the next entry, the backup. Read from the console's stream, not the
            // emulated screen: the first box is drawn in the firmware's 80x50 text mode, taller
            // than the screen the harness emulates, where its rows land on one another.
            let backup = format!("\"{}\"", kldload::recipe::boot_menu::ENTRY_BACKUP);
            let mut refusals = 0;
            loop {
                // The box's own text: after the last refusal shim also prints
                // "start_image() returned Security Violation" outside any box.
                let (found, _) = m
                    .console
                    .wait_for_any(&["Verification failed", &backup], MENU_TIMEOUT)?;
                if found == 1 {
                    break;
                }
                refusals += 1;
                ensure!(refusals <= 3, "shim refused the file {refusals} times");
                // The button is drawn after the text; then the box reads the key.
                m.console.wait_for(" OK ", Duration::from_secs(30))?;
                std::thread::sleep(Duration::from_secs(1));
                m.console.mark("Return: OK at shim's refusal");
                m.console.send("\r")?;
            }
            m.console.clear_screen();
            let target = Zbm::new(&mut m).wait_for_countdown(MENU_TIMEOUT)?;
            Ok((refusals, target))
        });
        run.check(
            "shim refuses a ZFSBootMenu signed by another key, the backup entry boots",
            || {
                let (refusals, target) = refused?;
                ensure!(refusals > 0, "shim refused nothing");
                Ok(format!(
                    "Verification failed: (0x1A) Security Violation ({refusals}x, around \
                     MokManager); the backup entry's ZFSBootMenu counts down to {target}"
                ))
            },
        );
        let mut zbm = Zbm::new(&mut m);
        zbm.open_menu()?;
        zbm.boot(UNSIGNED_BE)?;
        let not_loaded = m.console.wait_for(
            "Unable to load kernel or initramfs into memory",
            Duration::from_secs(120),
        );
        let mut zbm = Zbm::new(&mut m);
        let menu_again = zbm.wait_for_menu();
        run.check(
            "ZFSBootMenu does not kexec an unsigned kernel, the signed one boots",
            || {
                not_loaded?;
                menu_again?;
                Ok("Unable to load kernel or initramfs into memory; back to the menu".into())
            },
        );
        zbm.boot(BOOTFS)?;
        m.login_root(LOGIN_TIMEOUT)?;
        run.check(
            "booted from the backup entry, the signed boot environment",
            || {
                let root = m.root_source()?;
                ensure!(root == BOOTFS, "/ is {root}");
                let vars = vmtests::efivars::read(&mut m)?;
                let booted = vars
                    .booted()
                    .map(|e| e.description.clone())
                    .unwrap_or_default();
                ensure!(
                    booted == kldload::recipe::boot_menu::ENTRY_BACKUP,
                    "BootCurrent is {booted:?}"
                );
                Ok(format!("/ is {BOOTFS}, BootCurrent {booted:?}"))
            },
        );
        // Put back as installed, for the boot with Secure Boot off.
        m.succeed(&format!(
            "cp /boot/efi/{ZBM_BACKUP} /boot/efi/{ZBM_PRIMARY} && sync"
        ))?;
        m.shutdown(Duration::from_secs(120))?;

        run.set_secure_boot_keeping_nvram(false)?;
        let mut m =
            run.boot_installed_timed_as("installed-secure-boot-off", ", Secure Boot off")?;
        run.check("the same disk boots with Secure Boot off", || {
            let state = m.succeed("mokutil --sb-state || true")?;
            ensure!(
                state.contains("disabled"),
                "mokutil --sb-state: {}",
                state.trim()
            );
            Ok(format!("mokutil: {}", state.trim()))
        });
        m.shutdown(Duration::from_secs(120))?;

        // A fresh NVRAM (a new motherboard, a firmware reset) with Secure Boot on and the MOK
        // enrolled: the firmware starts the disk's EFI/BOOT/BOOTX64.EFI (shim), shim its
        // fbx64.efi, which makes the entries again from EFI/ZBM/BOOTX64.CSV and starts the
        // first of them itself (BootCurrent stays the firmware's entry for the disk).
        run.secure_boot(true)?;
        let mut m = run.boot_installed_timed_as("installed-fresh-nvram", ", fresh NVRAM")?;
        run.check(
            "on a fresh NVRAM shim's fallback boots ZFSBootMenu and makes the entries again",
            || {
                let vars = vmtests::efivars::read(&mut m)?;
                // This boot: the firmware's own entry for the disk (its removable path), from
                // which fbx64.efi started the first entry it made.
                let booted = vars.booted().context("BootCurrent names no entry")?;
                ensure!(
                    booted.file.is_none()
                        || booted.file.as_deref() == Some("\\EFI\\BOOT\\BOOTX64.EFI"),
                    "booted {booted:?}, not the disk's fallback path"
                );
                let shim =
                    kldload::recipe::boot_menu::firmware_path(kldload::recipe::boot_menu::SHIM);
                let mut made = Vec::new();
                for (label, file) in [
                    (kldload::recipe::boot_menu::ENTRY_PRIMARY, "VMLINUZ.EFI "),
                    (
                        kldload::recipe::boot_menu::ENTRY_BACKUP,
                        "VMLINUZ-BACKUP.EFI ",
                    ),
                ] {
                    let (_, entry) = vars
                        .entries
                        .iter()
                        .find(|(_, e)| e.description == label)
                        .with_context(|| format!("no entry {label:?}: {:?}", vars.entries))?;
                    let options = entry.options.clone().unwrap_or_default();
                    ensure!(
                        entry.file.as_deref() == Some(shim.as_str())
                            && options.starts_with(file)
                            && options.contains("zbm.prefer=rpool"),
                        "{label:?} is {entry:?}"
                    );
                    made.push(format!("{label:?}: {options:?}"));
                }
                Ok(format!(
                    "booted {:?}; made {}",
                    booted.description,
                    made.join(", ")
                ))
            },
        );
        m.shutdown(Duration::from_secs(120))?;
        Ok(())
    });
}

const BOOTFS: &str = "rpool/ROOT/default";
/// A boot environment whose kernel has no signature.
const UNSIGNED_BE: &str = "rpool/ROOT/unsigned-kernel";

/// Makes [`UNSIGNED_BE`], a clone of the installed one, and takes the Authenticode signature
/// off its kernels (perl, which Debian always has: the PE certificate table's data directory
/// entry zeroed and the table cut from the file's end).
const UNSIGNED_KERNEL_BE: &str = r#"set -e
zfs snapshot rpool/ROOT/default@unsigned-kernel
zfs clone -o canmount=noauto -o mountpoint=/ rpool/ROOT/default@unsigned-kernel rpool/ROOT/unsigned-kernel
mkdir -p /run/unsigned-kernel
mount -t zfs -o zfsutil rpool/ROOT/unsigned-kernel /run/unsigned-kernel
for k in /run/unsigned-kernel/boot/vmlinuz-*; do
  perl -e 'open(my $h, "+<:raw", $ARGV[0]) or die; local $/; my $d = <$h>;
    my $opt = unpack("V", substr($d, 0x3c, 4)) + 24;
    die "not PE32+" unless unpack("v", substr($d, $opt, 2)) == 0x20b;
    my $dir = $opt + 112 + 4 * 8; my ($off, $size) = unpack("VV", substr($d, $dir, 8));
    die "not signed" unless $size;
    substr($d, $dir, 8) = pack("VV", 0, 0); $d = substr($d, 0, $off);
    seek($h, 0, 0); print $h $d; truncate($h, length $d);' "$k"
done
umount /run/unsigned-kernel
echo unsigned: /run/unsigned-kernel/boot/vmlinuz-*"#;

/// The medium's signed ZFSBootMenu, its signature taken off and signed again with a key made
/// here and enrolled nowhere (sbsigntool and openssl on the host).
fn zfsbootmenu_signed_by_another_key(run: &Run) -> anyhow::Result<std::path::PathBuf> {
    let signed = run.medium_file("zfsbootmenu/VMLINUZ-SIGNED.EFI")?;
    let dir = run.dir.join("other-key");
    std::fs::create_dir_all(&dir)?;
    let (key, cert, out) = (
        dir.join("other.key"),
        dir.join("other.pem"),
        dir.join("VMLINUZ-OTHER-KEY.EFI"),
    );
    let sh = |argv: &[&std::ffi::OsStr]| -> anyhow::Result<()> {
        let status = std::process::Command::new(argv[0])
            .args(&argv[1..])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .with_context(|| format!("{:?}", argv[0]))?;
        ensure!(status.success(), "{argv:?} failed");
        Ok(())
    };
    sh(&[
        "sbattach".as_ref(),
        "--remove".as_ref(),
        signed.path().as_os_str(),
    ])?;
    sh(&[
        "openssl".as_ref(),
        "req".as_ref(),
        "-x509".as_ref(),
        "-newkey".as_ref(),
        "rsa:2048".as_ref(),
        "-nodes".as_ref(),
        "-days".as_ref(),
        "1".as_ref(),
        "-subj".as_ref(),
        "/CN=a key enrolled nowhere".as_ref(),
        "-keyout".as_ref(),
        key.as_os_str(),
        "-out".as_ref(),
        cert.as_os_str(),
    ])?;
    sh(&[
        "sbsign".as_ref(),
        "--key".as_ref(),
        key.as_os_str(),
        "--cert".as_ref(),
        cert.as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
        signed.path().as_os_str(),
    ])?;
    Ok(out)
}

/// A module the kernel refuses under lockdown: Debian's dummy.ko with its signature taken off,
/// and the same signed by a key made here (openssl cms, in the kernel's module signature
/// format); Debian's own, signed, loads (so the files, not the copying, are what is refused).
fn module_refusals(m: &mut Machine, run: &mut Run) {
    let made = m.succeed(MODULES_TO_REFUSE);
    let attempt = |m: &mut Machine, file: &str| -> anyhow::Result<String> {
        let out = m.execute(&format!("insmod /run/modules/{file}"))?;
        let loaded = m.execute("grep -q '^dummy ' /proc/modules")?.status == 0;
        let _ = m.execute("rmmod dummy");
        Ok(format!("{}|{}|{}", out.status, loaded, out.stderr.trim()))
    };
    let results = made.and_then(|_| {
        Ok((
            attempt(m, "signed.ko")?,
            attempt(m, "unsigned.ko")?,
            attempt(m, "other-key.ko")?,
            m.succeed("dmesg | grep -iE 'lockdown|module verification|rejected' | tail -n 4")?,
        ))
    });
    let (signed, unsigned, other, log) = match results {
        Ok(r) => r,
        Err(e) => {
            run.check("the kernel refuses an unsigned module", || Err(e));
            return;
        }
    };
    run.check("Debian's signed dummy.ko loads (the control)", || {
        ensure!(signed.starts_with("0|true"), "insmod: {signed}");
        Ok("loaded".into())
    });
    for (name, result) in [
        ("the kernel refuses an unsigned module", &unsigned),
        ("the kernel refuses a module signed by another key", &other),
    ] {
        run.check(name, || {
            ensure!(
                !result.starts_with("0|") && result.contains("|false|"),
                "insmod: {result}"
            );
            let said = result.rsplit('|').next().unwrap_or_default();
            Ok(format!(
                "insmod: {said}; dmesg: {}",
                log.trim().replace('\n', " | ")
            ))
        });
    }
}

/// In the installed system: /run/modules/signed.ko (Debian's dummy.ko, decompressed: xz on
/// Debian 13, none on Debian 12),
/// unsigned.ko (its signature cut off: the PKCS#7 blob, the 12-byte `struct module_signature`
/// holding its length, and the marker) and other-key.ko (that, signed with a new key).
const MODULES_TO_REFUSE: &str = r#"set -e
mkdir -p /run/modules && cd /run/modules
module="$(modinfo -n dummy)"
case "$module" in
  *.xz) zstd -dcq --format=xz "$module" ;;
  *.zst) zstd -dcq "$module" ;;
  *) cat "$module" ;;
esac > signed.ko
perl -e 'local $/; my $m = <STDIN>; my $mark = "~Module signature appended~
";
  die "not signed" unless substr($m, -length $mark) eq $mark;
  my $len = unpack("N", substr($m, -length($mark) - 4, 4));
  print substr($m, 0, length($m) - length($mark) - 12 - $len);' < signed.ko > unsigned.ko
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=a key enrolled nowhere"   -keyout other.key -out other.pem 2>/dev/null
openssl cms -sign -binary -noattr -nocerts -md sha256 -outform DER -signer other.pem   -inkey other.key -in unsigned.ko -out other.p7s
perl -e 'local $/; open(my $m, "<:raw", "unsigned.ko"); open(my $s, "<:raw", "other.p7s");
  my ($mod, $sig) = (<$m>, <$s>);
  print $mod, $sig, pack("CCCCCxxxN", 0, 0, 2, 0, 0, length $sig), "~Module signature appended~
";' > other-key.ko
ls -l"#;

/// shim's MokListRT is there: only shim makes it, so shim started this boot.
fn shim_started_the_boot(m: &mut Machine) -> anyhow::Result<String> {
    m.succeed(&format!("test -e {MOK_LIST_RT}"))?;
    Ok(MOK_LIST_RT.rsplit('/').next().unwrap_or_default().into())
}

/// The kernel runs locked down (integrity or confidentiality), as under Secure Boot.
fn locked_down(m: &mut Machine) -> anyhow::Result<String> {
    let mode = m.succeed("cat /sys/kernel/security/lockdown")?;
    ensure!(
        mode.contains("[integrity]") || mode.contains("[confidentiality]"),
        "lockdown: {}",
        mode.trim()
    );
    Ok(mode.trim().into())
}

/// zfs.ko is loaded, and signed by `signer` (the build's MOK).
fn zfs_loaded_signed_by(m: &mut Machine, signer: &str) -> anyhow::Result<String> {
    m.succeed("grep -q '^zfs ' /proc/modules")?;
    let actual = m.succeed("modinfo -F signer zfs")?;
    ensure!(
        actual.trim() == signer,
        "zfs.ko is signed by {actual:?}, not {signer:?}"
    );
    Ok(format!("signer {signer:?}"))
}

/// Secure Boot's checks in the installed system: enforced, shim started the boot, the kernel
/// locked down, the MOK-signed zfs.ko loaded, and the keyring that holds the build's key.
fn secure_boot_checks(m: &mut Machine, run: &mut Run, signer: &str) {
    run.check("mokutil: Secure Boot enabled", || {
        let state = m.succeed("mokutil --sb-state")?;
        ensure!(
            state.contains("SecureBoot enabled"),
            "mokutil --sb-state: {}",
            state.trim()
        );
        Ok(state.trim().into())
    });
    run.check("shim started the boot (its MokListRT is there)", || {
        shim_started_the_boot(m)
    });
    run.check("the installed kernel is locked down", || locked_down(m));
    run.check("the installed system loaded the MOK-signed zfs.ko", || {
        zfs_loaded_signed_by(m, signer)
    });
    run.check(
        "the build's key is in the kernel's .machine keyring",
        || {
            // Where MOKs go (CONFIG_INTEGRITY_MACHINE_KEYRING), linked into .secondary_trusted_keys,
            // which module signatures are checked against.
            let found = m.succeed(&format!(
                "for k in .builtin_trusted_keys .secondary_trusted_keys .machine .platform; do \
             keyctl show %:$k 2>/dev/null | grep -qF '{signer}' && echo $k; done; true"
            ))?;
            let rings: Vec<&str> = found.split_whitespace().collect();
            ensure!(
                rings.contains(&".machine"),
                "in {rings:?}, not .machine: {}",
                m.succeed("keyctl show %:.machine; keyctl show %:.platform; true")?
            );
            Ok(format!("in {}", rings.join(", ")))
        },
    );
}

/// MokManager's one-time password in fixtures/answers/secure-boot.toml (its hash there).
const MOK_PASSWORD: &str = "kldload-mok";

/// A machine that does not trust the build's key yet, as a user's does: Secure Boot turned off
/// in the firmware's setup, the medium installs with `secure_boot.mode = "on"` and the
/// `enroll_mok_password_hash` of fixtures/answers/secure-boot.toml (`mokutil --import`); Secure
/// Boot turned on again, the first boot stops in MokManager, driven over the serial console as
/// a person does it (any key, Enroll MOK, Continue, Yes, the password, Reboot); then the machine
/// boots through shim and the signed ZFSBootMenu with the key enrolled.
#[test]
#[ignore = "boots VMs: run with `cargo xtask vm-test debian secure-boot`"]
fn secure_boot_enroll_mok_at_first_boot() {
    test_on_blank_disk("secure-boot-enroll-mok", |run| {
        run.secure_boot(false)?;
        run.set_secure_boot_keeping_nvram(false)?;
        let fixture = kldload::config::Config::load(
            &vmtests::env::project_root().join("fixtures/answers/secure-boot.toml"),
        )?;
        let hash = fixture
            .secure_boot
            .enroll_mok_password_hash
            .context("secure-boot.toml has no enroll_mok_password_hash")?;
        let mut secure_boot = toml::Table::new();
        secure_boot.insert("mode".into(), "on".into());
        secure_boot.insert("enroll_mok_password_hash".into(), hash.as_str().into());
        let mut changes = toml::Table::new();
        changes.insert("secure_boot".into(), secure_boot.into());
        vmtests::answers::merge_answers(&run.answers, &changes)?;
        run.install()?;
        run.set_secure_boot_keeping_nvram(true)?;
        let signer = module_signer(run)?;
        let mut m = run.start_installed("installed-enroll-mok")?;
        let enrolled = run.timed("MokManager: enroll the key", |_| {
            enroll_pending_mok(&mut m, MOK_PASSWORD)
        });
        run.check(
            "MokManager enrolls the key the install asked for, with its password",
            || {
                enrolled?;
                Ok("Enroll MOK, Continue, Yes, the password, Reboot".into())
            },
        );
        run.timed("reboot to login", |_| {
            Zbm::new(&mut m).wait_for_countdown(MENU_TIMEOUT)?;
            m.login_root(LOGIN_TIMEOUT)
        })?;
        run.check(
            "the key is enrolled and the machine boots with Secure Boot on",
            || {
                let state = m.succeed("mokutil --sb-state")?;
                ensure!(
                    state.contains("SecureBoot enabled"),
                    "mokutil: {}",
                    state.trim()
                );
                let enrolled =
                    m.succeed("mokutil --list-enrolled | grep -F 'CN=kldload build' | head -n 1")?;
                ensure!(
                    !enrolled.trim().is_empty(),
                    "the build's key is not in MokList"
                );
                let zfs = m.succeed("modinfo -F signer zfs")?;
                ensure!(zfs.trim() == signer, "zfs.ko is signed by {zfs:?}");
                Ok(format!(
                    "{}; MokList: {}; zfs.ko by {signer:?}",
                    state.trim(),
                    enrolled.trim()
                ))
            },
        );
        m.shutdown(Duration::from_secs(120))?;
        Ok(())
    });
}

/// Drives MokManager through the enrollment `mokutil --import` asked for: a key at its
/// countdown, "Enroll MOK" in its menu, "Continue" after the key's listing, "Yes", the
/// password, "Reboot". Down is the terminal's arrow (ESC [ B), which the firmware's serial
/// console reads as one.
fn enroll_pending_mok(m: &mut Machine, password: &str) -> anyhow::Result<()> {
    const DOWN: &str = "\x1b[B";
    let step = |m: &mut Machine, screen: &str, what: &str, keys: &str| -> anyhow::Result<()> {
        m.console.wait_for(screen, MENU_TIMEOUT)?;
        // The menu is drawn line by line after its title: a moment for the rest of it.
        std::thread::sleep(Duration::from_secs(2));
        m.console.mark(&format!("MokManager: {what}"));
        m.console.send(keys)
    };
    step(m, "Press any key to perform MOK management", "a key", " ")?;
    step(
        m,
        "Enroll MOK",
        "Down, Return: Enroll MOK",
        &format!("{DOWN}\r"),
    )?;
    step(
        m,
        "[Enroll MOK]",
        "Down, Return: Continue",
        &format!("{DOWN}\r"),
    )?;
    step(
        m,
        "Enroll the key(s)?",
        "Down, Return: Yes",
        &format!("{DOWN}\r"),
    )?;
    m.console.wait_for("Password", MENU_TIMEOUT)?;
    std::thread::sleep(Duration::from_secs(1));
    m.console
        .mark("MokManager: typed the one-time password (its text not recorded)");
    m.console.send(&format!("{password}\r"))?;
    step(m, "Reboot", "Return: Reboot", "\r")?;
    Ok(())
}
