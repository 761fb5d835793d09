//! The `kldload` binary as a user runs it: output, messages and exit statuses.
//! Every command here either writes nothing by design (plan, validate, disks) or is refused
//! before writing (install with a disk that does not exist).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// The binary with `args`, as in CI, with none of the host's kldload settings.
fn kldload_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kldload"));
    command
        .args(args)
        .env("CI", "true")
        .env_remove("KLDLOAD_ZFSBOOTMENU")
        .env_remove("KLDLOAD_POOL_PASSPHRASE");
    command
}

fn kldload(args: &[&str]) -> Output {
    kldload_command(args).output().expect("kldload runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An answer file in a temporary directory.
fn answer_file(dir: &tempfile::TempDir, body: &str) -> String {
    let path = dir.path().join("answers.toml");
    std::fs::write(&path, body).unwrap();
    path.to_string_lossy().into_owned()
}

/// `--config -` reads the answer file from standard input: the same plan as from the file,
/// and a malformed one is named as `<stdin>` in the error.
#[test]
fn the_answer_file_from_stdin_with_a_dash() {
    use std::io::Write as _;
    let file = fixtures().join("answers/default.toml");
    let piped = |text: &[u8]| {
        let mut child = kldload_command(&["plan", "--config", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kldload runs");
        child.stdin.take().unwrap().write_all(text).unwrap();
        child.wait_with_output().unwrap()
    };
    let from_stdin = piped(&std::fs::read(&file).unwrap());
    assert!(from_stdin.status.success(), "{}", text(&from_stdin.stderr));
    let from_file = kldload(&["plan", "--config", &file.to_string_lossy()]);
    assert_eq!(text(&from_stdin.stdout), text(&from_file.stdout));
    assert!(text(&from_stdin.stdout).contains("zpool create"));
    let malformed = piped(b"hostname = \"x\"\n[disks\n");
    assert_eq!(malformed.status.code(), Some(2));
    assert!(
        text(&malformed.stderr).contains("<stdin>:2:"),
        "{}",
        text(&malformed.stderr)
    );
}

#[test]
fn plan_prints_the_recipe() {
    let config = fixtures().join("answers/default.toml");
    let out = kldload(&["plan", "--config", &config.to_string_lossy()]);
    let script = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let create = script
        .lines()
        .find(|l| l.trim_start().starts_with("zpool create"))
        .expect("zpool create");
    for opt in [
        "ashift=12",
        "compression=lz4",
        "acltype=posixacl",
        "xattr=sa",
    ] {
        assert!(create.contains(opt), "{opt} missing from: {create}");
    }
    for dataset in [
        "-o mountpoint=none -o canmount=off rpool/ROOT",
        "-o mountpoint=/ -o canmount=noauto rpool/ROOT/default",
        "-o mountpoint=/home rpool/home",
        "-o mountpoint=/var -o canmount=off rpool/var",
        "-o mountpoint=/var/log rpool/var/log",
        "-o mountpoint=/tmp -o devices=off -o exec=off -o setuid=off -o sync=disabled rpool/tmp",
    ] {
        assert!(
            script.contains(&format!("zfs create {dataset}\n")),
            "missing dataset {dataset}"
        );
    }
    for expected in [
        "sgdisk --new=1:1M:+512M --typecode=1:EF00",
        "mkfs.vfat -F 32",
        "/mnt/boot/efi/EFI/BOOT/BOOTX64.EFI",
        "efibootmgr --create --disk /dev/vda --part 1 --label ZFSBootMenu",
        "zfs snapshot -r rpool@factory",
        "zpool export rpool",
    ] {
        assert!(script.contains(expected), "missing: {expected}");
    }
    // The script is valid bash.
    let check = Command::new("bash")
        .args(["-n", "-c", &script])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check.stderr));
}

/// The step ids of the JSON plan for the answer file `config`, ZFSBootMenu from `zfsbootmenu`
/// when given.
fn json_plan_steps(config: &Path, zfsbootmenu: Option<&str>) -> Vec<String> {
    let mut command = kldload_command(&[
        "plan",
        "--config",
        &config.to_string_lossy(),
        "--format",
        "json",
    ]);
    if let Some(file) = zfsbootmenu {
        command.env("KLDLOAD_ZFSBOOTMENU", file);
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn plan_as_json() {
    let recipe = [
        "partition",
        "pool_and_datasets",
        "base_os",
        "system_configuration",
        "initramfs",
        "boot_menu",
        "finalize",
    ];
    let config = fixtures().join("answers/default.toml");
    assert_eq!(
        json_plan_steps(&config, Some("/srv/zbm/VMLINUZ.EFI")),
        recipe
    );
    // A download is fetched and verified first, before any disk is touched.
    let dir = tempfile::tempdir().unwrap();
    let body = std::fs::read_to_string(&config).unwrap().replace(
        "[zfsbootmenu]",
        &format!(
            "[zfsbootmenu]\nurl = \"https://example.org/zbm.EFI\"\nsha256 = \"{}\"",
            "a".repeat(64)
        ),
    );
    let with_url = answer_file(&dir, &body);
    let steps = json_plan_steps(Path::new(&with_url), None);
    assert_eq!(steps[0], "fetch_boot_menu");
    assert_eq!(steps[1..], recipe);
}

#[test]
fn zfsbootmenu_path_from_the_environment() {
    let config = fixtures().join("answers/default.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_kldload"))
        .args(["plan", "--config", &config.to_string_lossy()])
        .env("KLDLOAD_ZFSBOOTMENU", "/srv/zbm/VMLINUZ.EFI")
        .output()
        .unwrap();
    let script = text(&out.stdout);
    assert!(
        script.contains("install -m 0644 /srv/zbm/VMLINUZ.EFI /mnt/boot/efi/EFI/ZBM/VMLINUZ.EFI"),
        "{script}"
    );
    assert!(!script.contains("curl"));
}

#[test]
fn a_zfsbootmenu_file_that_is_no_efi_executable_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let not_efi = dir.path().join("VMLINUZ.EFI");
    std::fs::write(&not_efi, "<html>404 Not Found</html>").unwrap();
    let config = fixtures().join("answers/default.toml");
    let out = kldload_command(&["plan", "--config", &config.to_string_lossy()])
        .env("KLDLOAD_ZFSBOOTMENU", &not_efi)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is not an EFI executable"), "{err}");
    assert!(err.contains("kldload inspect-zfsbootmenu FILE"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn remember_keeps_only_the_readings_of_the_file_the_doctor_checks() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("VMLINUZ.EFI");
    std::fs::write(&other, "<html>404 Not Found</html>").unwrap();
    let out = kldload(&[
        "inspect-zfsbootmenu",
        "--remember",
        &other.to_string_lossy(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--remember keeps the readings of /boot/efi/EFI/ZBM/VMLINUZ.EFI only"),
        "{err}"
    );
    assert!(err.contains("leave FILE out"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn set_zfsbootmenu_cmdline_leaves_a_file_that_is_no_efi_executable_alone() {
    let dir = tempfile::tempdir().unwrap();
    let not_efi = dir.path().join("VMLINUZ.EFI");
    std::fs::write(&not_efi, "<html>404 Not Found</html>").unwrap();
    let out = kldload(&[
        "set-zfsbootmenu-cmdline",
        &not_efi.to_string_lossy(),
        "quiet zbm.prefer=rpool",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is not an EFI executable"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&not_efi).unwrap(),
        "<html>404 Not Found</html>"
    );
}

#[test]
fn add_to_initramfs_adds_to_every_image_and_refuses_what_it_cannot_do() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_string_lossy().to_string();
    std::fs::create_dir_all(root.path().join("etc/zfs/keys")).unwrap();
    std::fs::write(root.path().join("etc/zfs/keys/rpool.key"), "k\n").unwrap();
    std::fs::create_dir_all(root.path().join("boot")).unwrap();

    let out = kldload(&["add-to-initramfs", &r, "etc/zfs/keys/rpool.key"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("holds no initramfs image"), "{err}");

    let out = kldload(&["add-to-initramfs", &r, "../etc/shadow"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not a relative path inside the root"), "{err}");

    // An image as GNU cpio and gzip write one (no kldload code makes it).
    let image = root.path().join("boot/initrd.img-6.12.0-test");
    std::fs::write(root.path().join("etc/hostname"), "box\n").unwrap();
    let made = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {r}/etc && echo hostname | cpio --quiet -o -H newc | gzip > {}",
            image.display()
        ))
        .status()
        .ok()
        .filter(|s| s.success());
    if made.is_none() {
        eprintln!("cpio or gzip is not installed here: the success case is not tested");
        return;
    }
    let out = kldload(&["add-to-initramfs", &r, "etc/zfs/keys/rpool.key"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("etc/zfs/keys/rpool.key added"));
    // GNU cpio reads the image's first archive, now the one added before the compressed one.
    let listing = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("cpio --quiet -t < {}", image.display()))
        .output()
        .unwrap();
    assert_eq!(
        text(&listing.stdout),
        "etc\netc/zfs\netc/zfs/keys\netc/zfs/keys/rpool.key\n"
    );
}

/// `unattended --answers FILE` installs from FILE without looking on the command line, fw_cfg
/// or the medium. Both answer files here leave a shell when the install fails (`after_install`
/// would otherwise power the machine off: this one runs the tests).
#[test]
fn unattended_takes_the_answer_file_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-answers.toml");
    let out = kldload(&["unattended", "--answers", &missing.to_string_lossy()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("unattended install with {}", missing.display())),
        "{err}"
    );
    assert!(
        err.contains("INSTALL FAILED: the answer file was not usable"),
        "{err}"
    );

    let file = answer_file(
        &dir,
        "hostname = \"box\"\nafter_install = \"shell\"\n\
         [disks]\npaths = [\"/dev/disk/by-id/kldload-test-no-such-disk\"]\n\
         [root]\npassword_hash = \"$6$x$y\"\n",
    );
    let out = kldload(&["unattended", "--answers", &file]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("unattended install with {file}")),
        "{err}"
    );
    assert!(
        err.contains("refusing /dev/disk/by-id/kldload-test-no-such-disk: it does not exist"),
        "{err}"
    );
    assert!(err.contains("leaving a shell on the consoles"), "{err}");
}

#[test]
fn a_malformed_answer_file_exits_2_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = answer_file(&dir, "hostname = \"box\"\n[disks]\npaths = [\"/dev/vdb\"\n");
    let out = kldload(&["plan", "--config", &file]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("answers.toml:3:"), "{err}");
}

#[test]
fn a_bad_name_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = answer_file(
        &dir,
        "hostname = \"box\"\n[disks]\npaths = [\"/dev/vdb\"]\n[pool]\nname = \"raidz-pool\"\n[root]\npassword_hash = \"$6$x$y\"\n",
    );
    for cmd in ["plan", "validate", "install"] {
        let out = kldload(&[cmd, "--config", &file]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        assert!(
            text(&out.stderr).contains("key `pool.name`"),
            "{cmd}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_missing_disk_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = answer_file(
        &dir,
        "hostname = \"box\"\n[disks]\npaths = [\"/dev/disk/by-id/kldload-test-no-such-disk\"]\n\
         [root]\npassword_hash = \"$6$x$y\"\n",
    );
    for cmd in [
        vec!["validate", "--config", &file],
        vec!["install", "--config", &file, "--yes"],
    ] {
        let out = kldload(&cmd);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {err}");
        assert!(
            err.contains("refusing /dev/disk/by-id/kldload-test-no-such-disk: it does not exist; fix: check the name with `kldload disks`"),
            "{err}"
        );
        assert!(err.contains("nothing was written to any disk"), "{err}");
    }
}

#[test]
fn an_encrypted_install_without_a_usable_passphrase_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = answer_file(
        &dir,
        "hostname = \"box\"\n[disks]\npaths = [\"/dev/disk/by-id/kldload-test-no-such-disk\"]\n\
         [root]\npassword_hash = \"$6$x$y\"\n[encryption]\nenabled = true\n",
    );
    for (passphrase, message) in [
        (
            None,
            "there is no passphrase: put it in a file named by encryption.passphrase_file, or in $KLDLOAD_POOL_PASSPHRASE",
        ),
        (
            Some("1234567"),
            "the passphrase in $KLDLOAD_POOL_PASSPHRASE is not usable: ZFS takes 8 to 512 bytes and it has 7",
        ),
    ] {
        for args in [
            vec!["validate", "--config", &file],
            vec!["install", "--config", &file, "--yes"],
        ] {
            let cmd = args[0];
            let mut command = Command::new(env!("CARGO_BIN_EXE_kldload"));
            command.args(&args);
            command
                .env("CI", "true")
                .env_remove("KLDLOAD_POOL_PASSPHRASE");
            if let Some(p) = passphrase {
                command.env("KLDLOAD_POOL_PASSPHRASE", p);
            }
            let out = command.output().unwrap();
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
            assert!(err.contains(message), "{cmd}: {err}");
            assert!(err.contains("nothing was written to any disk"), "{err}");
            assert!(!err.contains("1234567"), "the passphrase is echoed: {err}");
        }
    }
}

#[test]
fn disks_lists_this_machine() {
    let out = kldload(&["disks", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let disks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(disks.is_array());
}

/// `validate --offline` checks the answer file alone: everything.toml names disks this machine
/// does not have, and is valid; a bad value is refused with its key, exit 2.
#[test]
fn validate_offline_needs_no_disks() {
    let everything = fixtures().join("answers/everything.toml");
    let out = kldload(&[
        "validate",
        "--offline",
        "--config",
        everything.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.starts_with("answer file is valid: debian-12 on pool tank (mirror)\n"),
        "{said}"
    );
    assert!(
        said.contains("not checked here (offline): its disks"),
        "{said}"
    );
    // The control: without --offline the same file is checked against this machine's disks,
    // which have none of its by-id names.
    let online = kldload(&["validate", "--config", everything.to_str().unwrap()]);
    assert_eq!(online.status.code(), Some(2), "{}", text(&online.stdout));

    let dir = tempfile::tempdir().unwrap();
    let bad = answer_file(
        &dir,
        "hostname = \"-bad\"\n[disks]\npaths = [\"/dev/disk/by-id/x\"]\n",
    );
    let out = kldload(&["validate", "--offline", "--config", &bad]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("hostname"),
        "{}",
        text(&out.stderr)
    );
}

/// `kldload schema` prints a JSON Schema whose top-level keys are those everything.toml uses.
#[test]
fn schema_names_every_top_level_key_of_everything_toml() {
    let out = kldload(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let properties = schema["properties"].as_object().expect("properties");
    let everything: toml::Value = toml::from_str(
        &std::fs::read_to_string(fixtures().join("answers/everything.toml")).unwrap(),
    )
    .unwrap();
    for key in everything.as_table().unwrap().keys() {
        assert!(properties.contains_key(key), "{key} is not in the schema");
    }
    assert_eq!(
        schema["additionalProperties"], false,
        "unknown keys are refused"
    );
}

/// What git says the binary's sources are: the last commit that changed installer/ or the
/// workspace's manifests, and whether they differ from it (as a user would look it up).
fn sources_commit_by_git() -> String {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sources = ["installer", "Cargo.toml", "Cargo.lock"];
    let log = Command::new("git")
        .arg("-C")
        .arg(&workspace)
        .args(["log", "-1", "--format=%H", "--"])
        .args(sources)
        .output()
        .expect("git runs");
    let commit = text(&log.stdout).trim().to_string();
    let diff = Command::new("git")
        .arg("-C")
        .arg(&workspace)
        .args(["diff", "--quiet", "HEAD", "--"])
        .args(sources)
        .status()
        .expect("git runs");
    let modified = if diff.code() == Some(1) {
        "-modified"
    } else {
        ""
    };
    format!("{}{modified}", &commit[..12])
}

/// `--version` names the commit of the sources it was built from and the image it came with;
/// on a host outside an image, none.
#[test]
fn version_names_the_commit_and_the_image() {
    let out = kldload(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        format!(
            "kldload {} (commit {}, image none)\n",
            env!("CARGO_PKG_VERSION"),
            sources_commit_by_git()
        )
    );
}

/// The completion scripts are valid for their shells (bash parses its own), and name the
/// subcommands; the manual page is roff that man renders, listing them too.
#[test]
fn completions_and_the_manual_page_cover_the_commands() {
    let bash = kldload(&["completions", "bash"]);
    assert!(bash.status.success(), "{}", text(&bash.stderr));
    let script = text(&bash.stdout);
    for word in ["install", "doctor", "report", "--config"] {
        assert!(script.contains(word), "bash completion lacks {word}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kldload.bash");
    std::fs::write(&file, &script).unwrap();
    let parsed = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(parsed.status.success(), "bash -n: {}", text(&parsed.stderr));
    for shell in ["zsh", "fish"] {
        let out = kldload(&["completions", shell]);
        assert!(
            out.status.success() && text(&out.stdout).contains("doctor"),
            "{shell}"
        );
    }
    // The hidden boot-time entry points are not offered.
    assert!(!script.contains("unattended") && !script.contains("pools-to-import"));
    // Its control: a visible command is (above), so the check can see one.
    let man = kldload(&["man"]);
    assert!(man.status.success());
    let page = dir.path().join("kldload.8");
    std::fs::write(&page, &man.stdout).unwrap();
    let rendered = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&page)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .output()
        .expect("man runs (Debian package man-db)");
    let shown = text(&rendered.stdout);
    assert!(rendered.status.success(), "{}", text(&rendered.stderr));
    for word in ["kldload", "install", "doctor", "completions"] {
        assert!(shown.contains(word), "the manual lacks {word}:\n{shown}");
    }
}
