//! The main job: install onto a blank disk from the medium, boot it through ZFSBootMenu and
//! check what was built. Run by `cargo xtask vm-test <distro>`, which builds the medium and
//! says so in the tests' environment (`vmtests::env`).

use std::time::Duration;
use vmtests::checks;
use vmtests::run::test_on_blank_disk;
use vmtests::test_zbm::{GivenZfsBootMenu, TestZfsBootMenu};

/// Boots the installed disk, runs the main job's checks against `config`, powers off.
fn boot_and_check(
    run: &mut vmtests::run::Run,
    config: &kldload::config::Config,
) -> anyhow::Result<()> {
    let mut m = run.boot_installed("installed")?;
    run.timed("checks", |run| {
        checks::run_all(&mut m, run, config);
        Ok(())
    })?;
    m.shutdown(Duration::from_secs(120))?;
    Ok(())
}

/// Its install is also the shared base the ZFSBootMenu tests and scenarios boot copies of,
/// when the medium has none yet: one install per run. (That two installs make different SSH
/// host keys is checked by the interrupted-install scenario, which installs anyway.)
#[test]
#[ignore = "boots VMs: run with `cargo xtask vm-test debian`"]
fn install_and_boot() {
    test_on_blank_disk("install", |run| {
        let config = kldload::config::Config::load(&run.answers)?;
        let pending = run.install_and_share_as_base()?;
        boot_and_check(run, &config)?;
        // Shared only when every check passed; else `pending`'s drop marks the base failed.
        if let Some(base) = pending.filter(|_| run.report.passed()) {
            base.share()?;
            println!("this install is the shared base the other VM tests start from");
        }
        Ok(())
    });
}

/// How the user hands over a ZFSBootMenu EFI file of their own.
#[derive(Clone, Copy)]
enum Given {
    /// Copied onto the medium's ESP and named in `zfsbootmenu.source`.
    OnTheMedium,
    /// Downloaded from `zfsbootmenu.url` (served by the harness), checked by its `sha256`.
    ByUrl,
}

/// The main job with a ZFSBootMenu EFI file the user gives: it is what lands on every ESP, the
/// hostid inside it (or, with none, kldload's) is the one in every place, and every check
/// passes, the doctor's included.
fn install_with_given_zfsbootmenu(name: &str, zfsbootmenu: GivenZfsBootMenu, given: Given) {
    test_on_blank_disk(name, |run| {
        let env = vmtests::env::VmTestEnv::from_env()?;
        let file = env.given_zfsbootmenu_file(zfsbootmenu)?;
        match given {
            Given::OnTheMedium => run.install_zfsbootmenu_file(&file)?,
            Given::ByUrl => run.download_zfsbootmenu_file(&file)?,
        }
        let config = kldload::config::Config::load(&run.answers)?;
        println!(
            "installing ZFSBootMenu {} (hostid 0x{:08x})",
            file.display(),
            run.expected_hostid()?
        );
        run.install_and_inspect()?;
        let asked = (run.zfsbootmenu_download.as_ref())
            .map(|server| server.requests.lock().unwrap().clone());
        if let Some(asked) = asked {
            let transcript = std::fs::read(&run.transcript)?;
            run.check(
                "the live system downloaded ZFSBootMenu before writing (plan step 0)",
                || {
                    vmtests::serve::fetched_before_the_first_write(
                        &asked,
                        "zfsbootmenu.EFI",
                        &transcript,
                    )
                },
            );
        }
        boot_and_check(run, &config)
    });
}

/// The path users take with the official release: a finished EFI file given by path (here
/// ../shared's release-style build through $KLDLOAD_VMTEST_GIVEN_ZFSBOOTMENU; with the
/// internet, the release itself, verified by its signature), copied onto the medium. It
/// carries no hostid, so kldload's is used.
#[test]
#[ignore = "boots VMs: run with `cargo xtask vm-test debian`"]
fn install_with_a_given_zfsbootmenu_file() {
    install_with_given_zfsbootmenu(
        "given-zfsbootmenu",
        GivenZfsBootMenu::UsersOwn,
        Given::OnTheMedium,
    );
}

/// A ZFSBootMenu built on another machine carries that machine's hostid, imports the pool with
/// it and passes it on. Downloaded by URL, it is fetched and checked before any disk is touched,
/// read like a local file, and its hostid written in every place (the initramfs remade), so the
/// system boots and the doctor finds one hostid. Not in CI (it builds a second ZFSBootMenu);
/// `cargo xtask vm-test` runs it.
#[test]
#[ignore = "boots VMs: run with `cargo xtask vm-test debian`"]
fn install_with_a_zfsbootmenu_built_with_another_hostid() {
    install_with_given_zfsbootmenu(
        "zfsbootmenu-other-hostid",
        GivenZfsBootMenu::Test(TestZfsBootMenu::OtherHostid),
        Given::ByUrl,
    );
}
