//! The image build's output, checked from the outside: the payload's ZFS modules are signed by
//! this build's key, the payload carries no compiler, headers, DKMS or private key, the medium's
//! ESP boots the live system and carries the payload its manifest describes.
//! Run by `cargo xtask vm-test <distro>` (and so by CI), after it builds the medium.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A path `cargo xtask vm-test` prepared (`vmtests::env`), or a panic saying how to get it.
fn prepared(path: Option<PathBuf>, what: &str) -> PathBuf {
    path.unwrap_or_else(|| panic!("no {what}: run `cargo xtask vm-test debian`"))
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

/// 64 bytes from the middle of the private key, as its PEM file and as DER: what a copy of it
/// in either form would contain.
fn private_key_pieces(pem_file: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let pem = std::fs::read(pem_file).unwrap();
    let der = Command::new("openssl")
        .args(["pkey", "-outform", "DER", "-in"])
        .arg(pem_file)
        .output()
        .unwrap();
    assert!(der.status.success(), "openssl pkey: {der:?}");
    let middle = |b: &[u8]| b[b.len() / 2..b.len() / 2 + 64].to_vec();
    vec![("PEM", middle(&pem)), ("DER", middle(&der.stdout))]
}

/// The file names in a stream of concatenated newc cpio archives, as the kernel unpacks an
/// initrd (`cpio -t` stops at the first archive's end). Each entry: a 110-byte header of
/// "070701" and 13 hex fields (the 7th the file's size, the 12th its name's), the name, the
/// data, each padded to 4 bytes; zero padding sits between archives.
fn cpio_names(stream: &mut dyn Read) -> Vec<String> {
    let mut r = std::io::BufReader::with_capacity(1 << 20, stream);
    let mut names = Vec::new();
    let mut word = [0u8; 4];
    // Archives are padded to 512 bytes: offsets counted from the stream's start stay 4-aligned.
    let pad = |n: usize| (4 - n % 4) % 4;
    loop {
        match r.read_exact(&mut word) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return names,
            Err(e) => panic!("reading the cpio stream: {e}"),
            Ok(()) if word == [0; 4] => continue,
            Ok(()) => {}
        }
        let mut rest = [0u8; 106];
        r.read_exact(&mut rest).unwrap();
        let header = [&word[..], &rest[..]].concat();
        assert_eq!(&header[..6], b"070701", "not a newc header");
        let field = |n: usize| {
            let hex = std::str::from_utf8(&header[6 + 8 * n..14 + 8 * n]).unwrap();
            usize::from_str_radix(hex, 16).unwrap()
        };
        let (file_size, name_size) = (field(6), field(11));
        let mut name = vec![0u8; name_size + pad(110 + name_size)];
        r.read_exact(&mut name).unwrap();
        let name = String::from_utf8_lossy(&name[..name_size - 1]).into_owned();
        let skip = (file_size + pad(file_size)) as u64;
        let skipped = std::io::copy(&mut (&mut r).take(skip), &mut std::io::sink()).unwrap();
        assert_eq!(skipped, skip, "{name} is cut short");
        if name != "TRAILER!!!" {
            names.push(name);
        }
    }
}

/// A zstd file's decompressed bytes, streamed from `zstd -dc` (which reads concatenated frames
/// too); the process goes when this does.
struct Decompressed {
    zstd: std::process::Child,
}

impl Read for Decompressed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.zstd.stdout.as_mut().expect("piped").read(buf)
    }
}

impl Drop for Decompressed {
    fn drop(&mut self) {
        let _ = self.zstd.kill();
        let _ = self.zstd.wait();
    }
}

fn decompressed(path: &Path) -> Decompressed {
    let zstd = Command::new("zstd")
        .args(["-dcq"])
        .arg(path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    Decompressed { zstd }
}

/// The first of `needles` (name, bytes) found in what `stream` yields, read in chunks that
/// overlap by the longest needle, so one that spans two chunks is found too.
fn stream_find<'n>(stream: &mut dyn Read, needles: &'n [(&str, Vec<u8>)]) -> Option<&'n str> {
    let longest = needles.iter().map(|(_, n)| n.len()).max().unwrap_or(1);
    let mut window: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = stream.read(&mut chunk).unwrap();
        if n == 0 {
            return None;
        }
        window.extend_from_slice(&chunk[..n]);
        if let Some((name, _)) = needles
            .iter()
            .find(|(_, needle)| memchr::memmem::find(&window, needle).is_some())
        {
            return Some(name);
        }
        let keep = window.len().saturating_sub(longest - 1);
        window.drain(..keep);
    }
}

fn sha256(path: &Path) -> String {
    kldload::hash::file_sha256(path).unwrap()
}

#[test]
#[ignore = "needs a built medium: run with `cargo xtask vm-test debian`"]
fn payload_and_medium() {
    let env = vmtests::env::VmTestEnv::from_env().unwrap();
    let medium = prepared(env.medium, "medium");
    let payload_dir = prepared(env.payload_dir, "payload");
    let builder_dir = prepared(env.builder_dir, "builder root");
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

    // zfs.ko and the initramfs, out of the payload in one pass.
    let initrd = listing
        .lines()
        .find(|l| l.contains(&format!("boot/initrd.img-{kernel}")))
        .unwrap_or_else(|| panic!("no initrd.img for {kernel} in the payload"));
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
        initrd,
    ]);
    // The payload's initramfs carries the hostid kldload installs, as `kldload doctor` reads it
    // at every boot: out of the image, without unpacking it.
    let hostid = kldload::initrd::read_file(&dir.path().join(initrd), "etc/hostid")
        .unwrap()
        .and_then(|bytes| kldload::zbm::hostid::parse_hostid_file(&bytes));
    assert_eq!(
        hostid,
        Some(kldload::config::ZFSBOOTMENU_HOSTID),
        "the payload's initramfs {initrd} has no etc/hostid of kldload's"
    );
    // zfs.ko is signed by this build's key: the signer is the subject of the builder's certificate.
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
    // zfs.ko is carried uncompressed (the kernel would unpack it on every load, ~2 s under
    // TCG): an ELF file as it lies in the payload, not an xz stream.
    let mut magic = [0u8; 4];
    std::fs::File::open(dir.path().join(zfs_ko))
        .and_then(|mut f| f.read_exact(&mut magic))
        .unwrap();
    assert!(
        zfs_ko.ends_with("zfs.ko") && magic == *b"\x7fELF",
        "the payload's {zfs_ko} is not an uncompressed module: it starts with {magic:02x?}"
    );
    assert!(
        subject.contains(signer.trim()),
        "signer {signer:?} is not the build certificate's subject {subject:?}"
    );
    // The private key never reaches the medium: not in its raw bytes, not inside the compressed
    // payload, not inside the live system's compressed initrd (in the EFI file's .initrd), as
    // the PEM file or as its DER encoding; and no file of that name is in their listings.
    let key_pieces = private_key_pieces(&builder_dir.join("mok/mok.key"));
    let found = |what: &str, stream: &mut dyn Read| {
        if let Some(form) = stream_find(stream, &key_pieces) {
            panic!("{what} contains the module signing key ({form})");
        }
    };
    found("the medium", &mut std::fs::File::open(&medium).unwrap());
    found("the payload", &mut decompressed(&tarball));
    let esp = vmtests::run::esp_of(&medium);
    // The live system's EFI file is the one shim starts.
    let efi = dir.path().join("grubx64.efi");
    sh(&[
        "mcopy",
        "-i",
        &esp,
        "::/EFI/BOOT/grubx64.efi",
        &efi.to_string_lossy(),
    ]);
    let initrd = dir.path().join("initrd.zst");
    sh(&[
        "objcopy",
        "-O",
        "binary",
        "--only-section=.initrd",
        &efi.to_string_lossy(),
        &initrd.to_string_lossy(),
    ]);
    found("the live initrd", &mut decompressed(&initrd));
    let names = cpio_names(&mut decompressed(&initrd));
    assert!(
        names.iter().any(|n| n.ends_with("usr/local/bin/kldload"))
            && names.iter().any(|n| n.ends_with("usr/sbin/zpool")),
        "the live initrd's listing is not the live system's root and kldload: {} names",
        names.len()
    );
    let keys: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .chain(listing.lines())
        .filter(|n| n.contains("mok.key") || n.ends_with("/mok"))
        .collect();
    assert!(
        keys.is_empty(),
        "a signing key's file is on the medium: {keys:?}"
    );

    // The medium's ESP: the live system's EFI file, the payload and its manifest.
    let boot = sh(&["mdir", "-i", &esp, "-b", "::/EFI/BOOT"]);
    for name in ["BOOTX64.EFI", "mmx64.efi", "grubx64.efi"] {
        assert!(
            boot.contains(name),
            "no EFI/BOOT/{name} on the medium: {boot}"
        );
    }
    // The certificate users enroll: the medium's copy.
    let mok_der = dir.path().join("mok.der");
    sh(&[
        "mcopy",
        "-i",
        &esp,
        "::/mok.der",
        &mok_der.to_string_lossy(),
    ]);
    assert!(
        std::fs::read(&mok_der).unwrap() == std::fs::read(builder_dir.join("mok/mok.der")).unwrap(),
        "the medium's mok.der is not the certificate of the key the build signed with"
    );
    let pem = dir.path().join("mok.pem");
    sh(&[
        "openssl",
        "x509",
        "-inform",
        "DER",
        "-in",
        &mok_der.to_string_lossy(),
        "-out",
        &pem.to_string_lossy(),
    ]);
    // Secure Boot: what shim starts (the live system's EFI file; ZFSBootMenu on installs that
    // boot through shim) carries the .sbat section shim requires and is signed by the build's
    // MOK (the certificate on the medium, which users enroll). The signed ZFSBootMenu has no
    // embedded command line (its entry's options are used then); the unsigned one keeps its.
    let zbm_signed = dir.path().join("VMLINUZ-SIGNED.EFI");
    sh(&[
        "mcopy",
        "-i",
        &esp,
        "::/zfsbootmenu/VMLINUZ-SIGNED.EFI",
        &zbm_signed.to_string_lossy(),
    ]);
    for file in [&efi, &zbm_signed] {
        let shown = file.file_name().unwrap().to_string_lossy();
        let sections = sh(&["objdump", "-h", &file.to_string_lossy()]);
        assert!(
            sections.contains(".sbat"),
            "{shown}: no .sbat section:\n{sections}"
        );
        sh(&[
            "sbverify",
            "--cert",
            &pem.to_string_lossy(),
            &file.to_string_lossy(),
        ]);
        // sbverify --cert also passes files signed by others that carry their chain: the
        // listing names who signed.
        let listing = sh(&["sbverify", "--list", &file.to_string_lossy()]);
        assert!(
            kldload::secure_boot::signed_only_by(
                &listing,
                manifest["module_signer"].as_str().unwrap()
            ),
            "{shown} is not signed once, by the build's MOK:\n{listing}"
        );
    }
    let signed = kldload::zbm::image::read(&zbm_signed).unwrap();
    assert_eq!(
        signed.cmdline, None,
        "the signed ZFSBootMenu embeds a command line"
    );
    assert!(signed.signed);
    let zbm_unsigned = dir.path().join("VMLINUZ.EFI");
    sh(&[
        "mcopy",
        "-i",
        &esp,
        "::/zfsbootmenu/VMLINUZ.EFI",
        &zbm_unsigned.to_string_lossy(),
    ]);
    let unsigned = kldload::zbm::image::read(&zbm_unsigned).unwrap();
    assert!(
        unsigned.cmdline.is_some() && !unsigned.signed,
        "the medium's ZFSBootMenu for installs without shim: {unsigned:?}"
    );
    let fallback = sh(&["mdir", "-i", &esp, "-b", "::/shim"]);
    assert!(
        fallback.contains("fbx64.efi"),
        "no shim/fbx64.efi on the medium (installs through shim need it): {fallback}"
    );
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
