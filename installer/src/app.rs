//! The commands behind the `kldload` binary, as functions: load and check an answer file against
//! a machine, make the plan, print it, or run it. `main.rs` only parses arguments and exits.

use crate::config::{Config, ConfigError, DEFAULT_PAYLOAD, Family, MirrorUrl};
use crate::disk::SystemView;
use crate::disk::safety::{Refusals, check_disks};
use crate::disk::select::{SelectError, select_disks};
use crate::exec::{ExecError, ProgressMode, Secrets, run_plan};
use crate::plan::Plan;
use crate::recipe::{BaseSource, Inputs, LIVE_KLDLOAD, PlanError, build_plan};
use crate::zbm_image::ZbmImage;
use crate::zfsbootmenu::{ZbmSource, choose_source};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Exit status for bad input and refusals: nothing was written.
pub const EXIT_REFUSED: i32 = 2;
/// Exit status for an install that started and failed.
pub const EXIT_FAILED: i32 = 1;

/// Everything that can stop a command, each with its exit status.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Select(#[from] SelectError),
    #[error("{0}\nnothing was written to any disk")]
    Refused(#[from] Refusals),
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("{0}")]
    BadOption(String),
    #[error("{0}\nnothing was written to any disk")]
    Passphrase(String),
    #[error("not confirmed: {0}\nnothing was written to any disk")]
    NotConfirmed(String),
    #[error("install failed at {0}")]
    Install(#[from] ExecError),
    #[error(
        "fetching ZFSBootMenu: {0}\nfix: check the network, zfsbootmenu.url and its sha256 \
         (`sha256sum` of the file you mean), or give a local file as zfsbootmenu.source\n\
         nothing was written to any disk"
    )]
    Fetch(ExecError),
}

impl AppError {
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Install(_) | AppError::Fetch(_) => EXIT_FAILED,
            _ => EXIT_REFUSED,
        }
    }
}

/// Options that override or complete the answer file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Install from this mirror, and point the target's package sources at it.
    pub mirror: Option<String>,
    /// Use this ZFSBootMenu EFI file.
    pub zfsbootmenu: Option<PathBuf>,
}

/// Resolves the answer file's choices against the machine: disks, install source, mirror and
/// ZFSBootMenu, then makes the plan. Writes nothing. `host_root` is the live system's root
/// (`/`), where its apt sources and the medium's files are looked up.
pub fn make_plan(
    config: &Config,
    overrides: &Overrides,
    system: &dyn SystemView,
    host_root: &Path,
) -> Result<Plan, AppError> {
    let (plan, _) = plan_for(
        config,
        overrides,
        system,
        host_root,
        ZbmFile::MayBeMissing,
        None,
    )?;
    Ok(plan)
}

/// Whether a local ZFSBootMenu file that is not there is refused: `install` needs it, `plan`
/// only names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ZbmFile {
    MustExist,
    MayBeMissing,
}

fn plan_for(
    config: &Config,
    overrides: &Overrides,
    system: &dyn SystemView,
    host_root: &Path,
    zbm_file: ZbmFile,
    fetched: Option<ZbmSource>,
) -> Result<(Plan, ZbmSource), AppError> {
    let disks = select_disks(&config.disks, system)?;
    let override_mirror = overrides
        .mirror
        .as_deref()
        .map(MirrorUrl::new)
        .transpose()
        .map_err(AppError::BadOption)?;
    let requested_mirror = override_mirror.or_else(|| config.source.mirror.clone());
    let source = match (&requested_mirror, &config.source.image) {
        (Some(m), _) => BaseSource::Mirror(m.clone()),
        (None, Some(image)) => BaseSource::Image(image.clone()),
        (None, None) if config.distro.family() == Family::Debian => {
            BaseSource::Image(DEFAULT_PAYLOAD.into())
        }
        (None, None) => {
            return Err(AppError::BadOption(format!(
                "{} has no prebuilt payload: give source.mirror in the answer file or --mirror \
                 (for rocky-9 a Rocky Linux mirror, for freebsd-14 the release's dist directory)",
                config.distro
            )));
        }
    };
    // The live system runs Debian: its apt sources only say something about Debian targets.
    let mirror = match config.distro.family() {
        Family::Debian => requested_mirror.or_else(|| crate::mirror::host_debian_mirror(host_root)),
        _ => requested_mirror,
    };
    let on_host = |p: &Path| host_root.join(p.strip_prefix("/").unwrap_or(p)).exists();
    let zfsbootmenu = fetched.unwrap_or_else(|| {
        choose_source(
            config,
            overrides.zfsbootmenu.as_deref(),
            on_host,
            cached_release(config, host_root),
        )
    });
    let inputs = Inputs {
        config,
        disks,
        source,
        mirror,
        // FreeBSD boots with its own loader: a ZFSBootMenu file is neither read nor needed.
        zbm_image: match config.distro.family() {
            Family::FreeBsd => None,
            _ => read_zbm_image(&zfsbootmenu, host_root, zbm_file)?,
        },
        live_zfs_features: live_zfs_features(host_root),
        zfsbootmenu,
        installer: on_host(Path::new(LIVE_KLDLOAD)).then(|| LIVE_KLDLOAD.into()),
    };
    Ok((build_plan(&inputs)?, inputs.zfsbootmenu.clone()))
}

/// What a local ZFSBootMenu file carries (its hostid above all), read before anything is
/// written; a file that is there but no ZFSBootMenu EFI file is refused, and so is one not
/// there when it [`ZbmFile::MustExist`] (else it is left unread: `plan` prints what it would do).
fn read_zbm_image(
    source: &ZbmSource,
    host_root: &Path,
    zbm_file: ZbmFile,
) -> Result<Option<ZbmImage>, AppError> {
    let ZbmSource::File { path, origin } = source else {
        return Ok(None);
    };
    let on_host = host_root.join(path.strip_prefix("/").unwrap_or(path));
    if !on_host.is_file() {
        if zbm_file == ZbmFile::MayBeMissing {
            return Ok(None);
        }
        return Err(AppError::BadOption(format!(
            "ZFSBootMenu's EFI file {} (from {origin}) does not exist\nfix: give an existing \
             file (--zfsbootmenu or zfsbootmenu.source), or source = \"built\" on kldload's \
             live medium, or source = \"release\" for the signed release\nnothing was written \
             to any disk",
            path.display()
        )));
    }
    crate::zbm_image::read(&on_host).map(Some).map_err(|e| {
        AppError::BadOption(format!(
            "ZFSBootMenu's EFI file from {origin}: {e}\nfix: give ZFSBootMenu's EFI file \
             (a release's zfsbootmenu-release-x86_64-*.EFI or the one `cargo xtask build-image` \
             builds); `kldload inspect-zfsbootmenu FILE` shows what kldload reads in it\n\
             nothing was written to any disk"
        ))
    })
}

/// The newest `openzfs-X.Y` feature set of the ZFS under `host_root` (its zfsutils'
/// compatibility.d), which creates the pool.
fn live_zfs_features(host_root: &Path) -> Option<String> {
    let dir = host_root.join(crate::zbm_image::COMPATIBILITY_DIR);
    let names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    crate::zbm_image::newest_openzfs_name(names.iter().map(String::as_str)).map(String::from)
}

/// The release in the build cache under `host_root`, if one is there and verifies offline
/// (signature and sha256): its path as the installer will read it.
fn cached_release(config: &Config, host_root: &Path) -> Option<PathBuf> {
    use crate::zbm_release::{SIGNING_KEY, VERSION, verify_local};
    use crate::zfsbootmenu::{BUILD_CACHE, release_cache};
    let dir = release_cache(Path::new(BUILD_CACHE));
    let on_host = host_root.join(dir.strip_prefix("/").unwrap_or(&dir));
    let series = config
        .zfsbootmenu
        .kernel_series
        .as_ref()
        .map(|s| s.as_str());
    let verified = verify_local(&on_host, VERSION, series, SIGNING_KEY).ok()?;
    Some(dir.join(verified.name))
}

/// `kldload validate`: the answer file parses, its disks are found and pass the safety checks.
/// Returns a report for the user.
pub fn validate(config: &Config, system: &dyn SystemView, force: bool) -> Result<String, AppError> {
    let passphrase = find_passphrase(config)?;
    let disks = select_disks(&config.disks, system)?;
    check_disks(&disks, config.disks.layout, system, force)?;
    let mut report = format!(
        "answer file is valid: {} on pool {} ({:?})\n",
        config.distro, config.pool.name, config.disks.layout
    );
    if let Some((_, from)) = passphrase {
        report.push_str(&format!("  the pool's passphrase: from {from}\n"));
    }
    for d in &disks {
        report.push_str(&format!("  would wipe {}\n", d.display()));
    }
    Ok(report)
}

/// `kldload install`: checks, confirmation, then the plan run.
pub fn install(
    config: &Config,
    overrides: &Overrides,
    system: &dyn SystemView,
    yes: bool,
    force: bool,
) -> Result<(), AppError> {
    let secrets = install_secrets(config)?;
    let root = Path::new("/");
    let (mut plan, zfsbootmenu) =
        plan_for(config, overrides, system, root, ZbmFile::MustExist, None)?;
    check_disks(&plan.disks, config.disks.layout, system, force)?;
    if !yes {
        confirm(&plan.disks, system)?;
    }
    if let Some(fetched) = fetch_zfsbootmenu(&plan, &zfsbootmenu, ProgressMode::detect())? {
        // The file is here and verified: the plan made again from it, as for a local file
        // (its hostid written everywhere, its ZFS's features in the pool's compatibility).
        let (again, _) = plan_for(
            config,
            overrides,
            system,
            root,
            ZbmFile::MustExist,
            Some(fetched),
        )?;
        if again.disks != plan.disks {
            return Err(AppError::BadOption(format!(
                "the target disks changed while ZFSBootMenu was fetched ({:?}, now {:?})\nfix: \
                 run the install again\nnothing was written to any disk",
                plan.disks, again.disks
            )));
        }
        plan = again;
    }
    run_plan(&plan, ProgressMode::detect(), &secrets)?;
    Ok(())
}

/// Runs the plan's first step when it fetches ZFSBootMenu (`source` a download: `url` or the
/// release), before anything is written; returns the fetched file as the source to make the
/// plan from.
fn fetch_zfsbootmenu(
    plan: &Plan,
    source: &ZbmSource,
    mode: ProgressMode,
) -> Result<Option<ZbmSource>, AppError> {
    use crate::plan::StepId;
    use crate::recipe::boot_menu::FETCHED;
    let from = match source {
        ZbmSource::File { .. } => return Ok(None),
        ZbmSource::Download { url, .. } => format!("{url}, its sha256 checked"),
        ZbmSource::Release { version, .. } => {
            format!("the ZFSBootMenu {version} release, verified by its signature")
        }
    };
    let Some(step) = plan.steps.first().filter(|s| s.id == StepId::FetchBootMenu) else {
        return Ok(None);
    };
    let fetch = Plan {
        steps: vec![step.clone()],
        ..plan.clone()
    };
    run_plan(&fetch, mode, &Secrets::default()).map_err(AppError::Fetch)?;
    Ok(Some(ZbmSource::File {
        path: FETCHED.into(),
        origin: format!("{from}, downloaded before anything was written"),
    }))
}

/// The secrets the plan's files are written from: the pool's passphrase when encrypted (found
/// before anything is written; where it came from is said, never what it is).
fn install_secrets(config: &Config) -> Result<Secrets, AppError> {
    let Some((passphrase, from)) = find_passphrase(config)? else {
        return Ok(Secrets::default());
    };
    eprintln!("kldload: the pool's passphrase from {from}");
    Ok(Secrets::default().with(crate::passphrase::VARIABLE, passphrase.secret().clone()))
}

/// An encrypted install's passphrase and where it was found; none when not encrypted.
fn find_passphrase(
    config: &Config,
) -> Result<Option<(crate::passphrase::Passphrase, String)>, AppError> {
    if !config.encryption.enabled {
        return Ok(None);
    }
    let from_env = std::env::var(crate::passphrase::VARIABLE).ok();
    crate::passphrase::find(config, from_env.as_deref(), Path::new("/"))
        .map(Some)
        .map_err(AppError::Passphrase)
}

/// Names the disks to be wiped and asks; refuses when there is nobody to ask.
fn confirm(disks: &[PathBuf], system: &dyn SystemView) -> Result<(), AppError> {
    if crate::exec::in_ci() || !std::io::stdin().is_terminal() {
        return Err(AppError::NotConfirmed(
            "there is no terminal to ask on; pass --yes to wipe the disks without asking".into(),
        ));
    }
    let mut err = std::io::stderr();
    let _ = writeln!(err, "kldload will ERASE EVERYTHING on:");
    for d in disks {
        let summary = match system.lookup(d) {
            crate::disk::DeviceLookup::Disk(b) => format!(
                "{}, {}, {}",
                crate::disk::human_size(b.size),
                b.model.as_deref().unwrap_or("unknown model"),
                b.contents_summary()
            ),
            _ => String::new(),
        };
        let _ = writeln!(err, "  {}  {summary}", d.display());
    }
    let _ = write!(err, "Type 'yes' to continue: ");
    let _ = err.flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(AppError::NotConfirmed(format!(
            "the answer was {:?}, not \"yes\"",
            answer.trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_built_without_a_medium_is_refused_with_the_fix_before_anything_is_written() {
        let root = tempfile::tempdir().unwrap();
        let config = crate::config::test_config("source = \"built\"");
        let source = choose_source(&config, None, |_| false, None);
        let e = read_zbm_image(&source, root.path(), ZbmFile::MustExist)
            .unwrap_err()
            .to_string();
        for words in [
            crate::config::MEDIUM_ZFSBOOTMENU,
            "does not exist",
            "source = \"built\"",
            "source = \"release\"",
            "nothing was written to any disk",
        ] {
            assert!(e.contains(words), "{words:?} not in {e}");
        }
        assert_eq!(
            read_zbm_image(&source, root.path(), ZbmFile::MayBeMissing).unwrap(),
            None
        );
    }

    #[test]
    fn a_downloaded_zfsbootmenu_is_fetched_first_and_the_plan_made_again_from_the_file() {
        use crate::disk::FakeSystem;
        use crate::initrd::testing::Entry;
        use crate::plan::StepId;
        use crate::recipe::boot_menu::FETCHED;
        let config = crate::config::test_config(&format!(
            "url = \"https://example.org/zbm.EFI\"\nsha256 = \"{}\"",
            "a".repeat(64)
        ));
        let root = tempfile::tempdir().unwrap();
        let system = FakeSystem::default();
        let plan = |fetched| {
            plan_for(
                &config,
                &Overrides::default(),
                &system,
                root.path(),
                ZbmFile::MustExist,
                fetched,
            )
            .unwrap()
            .0
        };
        let first = plan(None);
        let ids: Vec<StepId> = first.steps.iter().map(|s| s.id).collect();
        assert_eq!(ids[..2], [StepId::FetchBootMenu, StepId::Partition]);
        assert!(
            first.steps[0]
                .actions
                .iter()
                .any(|a| matches!(a, crate::plan::Action::VerifySha256 { path, .. } if path.as_path() == Path::new(FETCHED))),
            "{:?}",
            first.steps[0]
        );
        // The download carries a hostid of its own: once it is there, the plan is made from it.
        let Some(efi) = crate::zbm_image::tests::zbm_efi(
            "quiet",
            &[Entry::file("etc/hostid", &0x5eed_f00d_u32.to_le_bytes())],
        ) else {
            eprintln!("zstd is not installed here: not tested");
            return;
        };
        let fetched = root.path().join(FETCHED.trim_start_matches('/'));
        std::fs::create_dir_all(fetched.parent().unwrap()).unwrap();
        std::fs::copy(efi.path(), &fetched).unwrap();
        let source = ZbmSource::File {
            path: FETCHED.into(),
            origin: "https://example.org/zbm.EFI, downloaded".into(),
        };
        let again = plan(Some(source));
        assert_eq!(again.steps[0].id, StepId::Partition);
        let commands: Vec<String> = again.commands().map(|argv| argv.join(" ")).collect();
        assert!(
            commands.contains(&"zgenhostid -f 0x5eedf00d".to_string()),
            "{commands:#?}"
        );
        assert!(
            commands
                .iter()
                .any(|c| c.starts_with(&format!("install -m 0644 {FETCHED} "))),
            "{commands:#?}"
        );
        let local = ZbmSource::File {
            path: FETCHED.into(),
            origin: "test".into(),
        };
        assert_eq!(
            fetch_zfsbootmenu(&again, &local, ProgressMode::Lines).unwrap(),
            None
        );
    }
}
