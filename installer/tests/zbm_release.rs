//! ZFSBootMenu's release chain without the internet: a signify key made with Debian's
//! signify-openbsd (the tool ZFSBootMenu signs its releases with), a checksum list written by
//! `sha256sum --tag` and signed as releng/sign-assets.sh does, and the files served over HTTP on
//! loopback, fetched with the real curl. A tampered file, a tampered list, another key's
//! signature, a series not listed and a server that is not there are each refused with their
//! own error, and nothing is left under the asset's name.

use kldload::zbm::release::{
    ReleaseError, Verified, asset_name, curl, download_verified, verify_local,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

const VERSION: &str = "3.1.0";

fn signify(args: &[&str], dir: &Path) {
    let out = Command::new("signify-openbsd")
        .args(args)
        .current_dir(dir)
        .output()
        .expect(
            "signify-openbsd runs (Debian package signify-openbsd; `cargo xtask ci` installs it)",
        );
    assert!(
        out.status.success(),
        "signify-openbsd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A release directory as ZFSBootMenu publishes one: three EFI assets, sha256.txt, sha256.sig.
/// Returns the directory and the public key's text.
fn release(root: &Path, key_name: &str) -> (PathBuf, String) {
    let dir = root.join(format!("v{VERSION}"));
    std::fs::create_dir_all(&dir).unwrap();
    for series in ["6.6", "6.12", "6.18"] {
        std::fs::write(
            dir.join(asset_name(VERSION, series)),
            format!("an EFI file built on linux {series}\n").repeat(1000),
        )
        .unwrap();
    }
    let sums = Command::new("sh")
        .args(["-c", "sha256sum --tag -- *.EFI > sha256.txt"])
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(sums.success());
    let keys = root.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (public, secret) = (
        keys.join(format!("{key_name}.pub")),
        keys.join(format!("{key_name}.sec")),
    );
    let (public, secret) = (public.to_str().unwrap(), secret.to_str().unwrap());
    signify(&["-G", "-n", "-p", public, "-s", secret], &dir);
    signify(
        &[
            "-S",
            "-e",
            "-s",
            secret,
            "-m",
            "sha256.txt",
            "-x",
            "sha256.sig",
        ],
        &dir,
    );
    // The list verifies with signify's own check, as ZFSBootMenu's docs tell users to run.
    signify(&["-C", "-p", public, "-x", "sha256.sig"], &dir);
    (dir, std::fs::read_to_string(public).unwrap())
}

/// Serves `root` on 127.0.0.1 until the test ends; returns the base URL and the paths asked for.
fn serve(root: &Path) -> (String, Arc<Mutex<Vec<String>>>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}", server.server_addr().to_ip().unwrap());
    let asked = Arc::new(Mutex::new(Vec::new()));
    let (root, log) = (root.to_owned(), asked.clone());
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let path = request.url().trim_start_matches('/').to_string();
            log.lock().unwrap().push(path.clone());
            let file = root.join(&path);
            let _ = match std::fs::read(&file) {
                Ok(bytes) if !path.contains("..") => {
                    request.respond(tiny_http::Response::from_data(bytes))
                }
                _ => request.respond(tiny_http::Response::empty(404)),
            };
        }
    });
    (url, asked)
}

fn fetch(url: &str, key: &str, series: Option<&str>, out: &Path) -> Result<Verified, ReleaseError> {
    download_verified(url, VERSION, series, key, out, curl)
}

#[test]
fn a_signed_release_is_verified_and_its_newest_long_term_asset_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, key) = release(tmp.path(), "zbm");
    let (url, asked) = serve(tmp.path());
    let out = tmp.path().join("out");

    let got = fetch(&url, &key, None, &out).unwrap();
    let name = asset_name(VERSION, "6.18");
    assert_eq!(got.name, name);
    assert_eq!(got.path, out.join(&name));
    assert_eq!(
        std::fs::read(&got.path).unwrap(),
        std::fs::read(dir.join(&name)).unwrap()
    );
    assert_eq!(
        *asked.lock().unwrap(),
        [
            format!("v{VERSION}/sha256.sig"),
            format!("v{VERSION}/{name}")
        ]
    );

    // Kept, it is checked again offline; changed on disk, it is not used.
    assert_eq!(verify_local(&out, VERSION, None, &key).unwrap(), got);
    let mut bytes = std::fs::read(&got.path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&got.path, bytes).unwrap();
    let e = verify_local(&out, VERSION, None, &key).unwrap_err();
    assert!(matches!(e, ReleaseError::HashMismatch { .. }), "{e}");

    let older = fetch(&url, &key, Some("6.6"), &out).unwrap();
    assert_eq!(older.name, asset_name(VERSION, "6.6"));

    let e = fetch(&url, &key, Some("5.4"), &out).unwrap_err();
    assert!(matches!(e, ReleaseError::NotListed { .. }), "{e}");
    assert!(e.to_string().contains("linux6.12.EFI"), "{e}");
}

#[test]
fn a_tampered_file_is_refused_and_not_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, key) = release(tmp.path(), "zbm");
    let name = asset_name(VERSION, "6.18");
    let mut bytes = std::fs::read(dir.join(&name)).unwrap();
    bytes[10] ^= 1;
    std::fs::write(dir.join(&name), bytes).unwrap();
    let (url, _) = serve(tmp.path());
    let out = tmp.path().join("out");
    let e = fetch(&url, &key, None, &out).unwrap_err();
    assert!(matches!(e, ReleaseError::HashMismatch { .. }), "{e}");
    assert!(e.to_string().contains(&name), "{e}");
    assert!(!out.join(&name).exists());
    assert!(!out.join(format!("{name}.partial")).exists());
}

#[test]
fn a_tampered_list_or_another_keys_signature_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, key) = release(tmp.path(), "zbm");
    let (url, asked) = serve(tmp.path());
    let out = tmp.path().join("out");
    let signed = std::fs::read_to_string(dir.join("sha256.sig")).unwrap();

    // One hex digit of the embedded list changed: the signature no longer matches.
    let at = signed.rfind(" = ").unwrap() + 3;
    let digit = if &signed[at..at + 1] == "0" { "1" } else { "0" };
    let tampered = format!("{}{digit}{}", &signed[..at], &signed[at + 1..]);
    std::fs::write(dir.join("sha256.sig"), tampered).unwrap();
    let e = fetch(&url, &key, None, &out).unwrap_err();
    assert!(matches!(e, ReleaseError::BadSignature { .. }), "{e}");

    // A list signed by a key that is not the pinned one.
    let other = tempfile::tempdir().unwrap();
    let (other_dir, _) = release(other.path(), "other");
    std::fs::copy(other_dir.join("sha256.sig"), dir.join("sha256.sig")).unwrap();
    let e = fetch(&url, &key, None, &out).unwrap_err();
    assert!(matches!(e, ReleaseError::BadSignature { .. }), "{e}");

    // Neither time was an asset downloaded.
    assert!(
        asked
            .lock()
            .unwrap()
            .iter()
            .all(|p| p.ends_with("sha256.sig"))
    );
}

#[test]
fn no_server_is_a_download_error_naming_the_url_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, key) = release(tmp.path(), "zbm");
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let e = fetch(&url, &key, None, &tmp.path().join("out")).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ReleaseError::Download { .. }), "{text}");
    assert!(
        text.contains(&format!("{url}/v{VERSION}/sha256.sig")),
        "{text}"
    );
    assert!(text.contains("--zfsbootmenu"), "{text}");
}

/// The plan's script does by hand what kldload does in Rust: run against the same server, it
/// installs the verified file, and stops with an error (nothing installed) on a tampered one.
#[test]
fn the_plans_script_for_a_release_verifies_it_the_same_way() {
    use kldload::plan::{Action, Plan, Step, StepId};
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = release(tmp.path(), "zbm");
    let (url, _) = serve(tmp.path());
    // The script checks with the pinned key, so sign the test list with it... which is not
    // possible: instead the test's key replaces the pinned one in the script's text.
    let test_key = std::fs::read_to_string(tmp.path().join("keys/zbm.pub")).unwrap();
    let script = |dest: &Path| {
        let plan = Plan {
            distro: "debian-13".into(),
            target_root: "/mnt".into(),
            disks: vec![],
            steps: vec![Step {
                id: StepId::BootMenu,
                title: "ZFSBootMenu".into(),
                why: "test".into(),
                actions: vec![Action::DownloadRelease {
                    releases_url: url.clone(),
                    version: VERSION.into(),
                    kernel_series: None,
                    work: tmp.path().join("work"),
                    dest: dest.to_owned(),
                    why: "the release".into(),
                }],
            }],
        };
        let text = kldload::plan::sh::render(&plan);
        let pinned = kldload::zbm::release::SIGNING_KEY.lines().nth(1).unwrap();
        let ours = test_key.lines().nth(1).unwrap();
        assert!(text.contains(pinned), "{text}");
        let text = text.replace(pinned, ours);
        let path = tmp.path().join("plan.sh");
        std::fs::write(&path, text).unwrap();
        Command::new("bash").arg(&path).output().unwrap()
    };

    let dest = tmp.path().join("VMLINUZ.EFI");
    let out = script(&dest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(dir.join(asset_name(VERSION, "6.18"))).unwrap()
    );

    let name = asset_name(VERSION, "6.18");
    let mut bytes = std::fs::read(dir.join(&name)).unwrap();
    bytes[0] ^= 1;
    std::fs::write(dir.join(&name), bytes).unwrap();
    let dest = tmp.path().join("TAMPERED.EFI");
    let out = script(&dest);
    assert!(!out.status.success());
    assert!(!dest.exists());
}
