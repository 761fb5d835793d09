//! The image build's output, checked from the outside: the payload's ZFS modules are signed by
//! this build's key, the payload carries no compiler, headers, DKMS or private key, the medium's
//! ESP boots the live system and carries the payload its manifest describes.
//! Run by `cargo xtask vm-test <distro>` (and so by CI), after it builds the medium.

use std::path::{Path, PathBuf};
use std::process::Command;

fn env_path(name: &str) -> PathBuf {
    std::env::var_os(name)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("${name} is not set: run `cargo xtask vm-test debian`"))
}

fn sh(argv: &[&str]) -> String {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256(path: &Path) -> String {
    kldload::exec::file_sha256(path).unwrap()
}

#[test]
#[ignore = "needs a built medium: run with `cargo xtask vm-test debian`"]
fn payload_and_medium() {
    let medium = env_path("KLDLOAD_VMTEST_MEDIUM");
    let payload_dir = env_path("KLDLOAD_VMTEST_PAYLOAD_DIR");
    let builder_dir = env_path("KLDLOAD_VMTEST_BUILDER_DIR");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(payload_dir.join("manifest.json")).unwrap())
            .unwrap();
    let tarball = payload_dir.join("payload.tar.zst");

    // The manifest describes this tarball.
    assert_eq!(manifest["sha256"].as_str().unwrap(), sha256(&tarball));
    assert_eq!(
        manifest["size"].as_u64().unwrap(),
        std::fs::metadata(&tarball).unwrap().len()
    );
    let packages: Vec<String> = manifest["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_str().unwrap().to_string())
        .collect();
    assert!(
        packages.iter().any(|p| p == "zfsutils-linux")
            && packages
                .iter()
                .any(|p| p.starts_with("kldload-zfs-modules-"))
    );

    let listing = sh(&[
        "tar",
        "--zstd",
        "--list",
        "--file",
        &tarball.to_string_lossy(),
    ]);
    let kernel = manifest["kernel"].as_str().unwrap();
    let zfs_ko = listing
        .lines()
        .find(|l| l.contains(&format!("lib/modules/{kernel}/updates/dkms/zfs.ko")))
        .unwrap_or_else(|| panic!("no zfs.ko for {kernel} in the payload"));
    for forbidden in [
        "usr/bin/gcc",
        "usr/bin/cc",
        "usr/bin/cpp",
        "usr/sbin/dkms",
        "usr/src/linux-headers-",
        "mok.key",
        "etc/ssh/ssh_host_",
    ] {
        let found: Vec<&str> = listing.lines().filter(|l| l.contains(forbidden)).collect();
        assert!(found.is_empty(), "the payload holds {forbidden}: {found:?}");
    }

    // zfs.ko is signed by this build's key: the signer is the subject of the builder's certificate.
    let dir = tempfile::tempdir().unwrap();
    sh(&[
        "tar",
        "--zstd",
        "--extract",
        "--file",
        &tarball.to_string_lossy(),
        "--directory",
        &dir.path().to_string_lossy(),
        zfs_ko,
    ]);
    let signer = sh(&[
        "modinfo",
        "--field=signer",
        &dir.path().join(zfs_ko).to_string_lossy(),
    ]);
    let subject = sh(&[
        "openssl",
        "x509",
        "-inform",
        "DER",
        "-noout",
        "-subject",
        "-nameopt",
        "multiline",
        "-in",
        &builder_dir.join("mok/mok.der").to_string_lossy(),
    ]);
    assert_eq!(signer.trim(), manifest["module_signer"].as_str().unwrap());
    assert!(
        subject.contains(signer.trim()),
        "signer {signer:?} is not the build certificate's subject {subject:?}"
    );
    // The private key never reaches the medium either.
    let key = std::fs::read(builder_dir.join("mok/mok.key")).unwrap();
    let medium_bytes = std::fs::read(&medium).unwrap();
    assert!(
        !medium_bytes.windows(64).any(|w| w == &key[100..164]),
        "the medium contains the module signing key"
    );

    // The medium's ESP: the live system's EFI file, the payload and its manifest.
    let esp = format!("{}@@1M", medium.display());
    let boot = sh(&["mdir", "-i", &esp, "-b", "::/EFI/BOOT"]);
    assert!(boot.contains("BOOTX64.EFI"), "{boot}");
    let copy = dir.path().join("payload-on-medium.tar.zst");
    sh(&[
        "mcopy",
        "-i",
        &esp,
        "::/payload.tar.zst",
        &copy.to_string_lossy(),
    ]);
    assert_eq!(sha256(&copy), manifest["sha256"].as_str().unwrap());
    let on_medium = sh(&["mtype", "-i", &esp, "::/manifest.json"]);
    let on_medium: serde_json::Value = serde_json::from_str(&on_medium).unwrap();
    assert_eq!(on_medium, manifest);
}
