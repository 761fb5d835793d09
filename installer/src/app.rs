//! The commands behind the `kldload` binary, as functions: load and check an answer file against
//! a machine, make the plan, print it, or run it. `main.rs` only parses arguments and exits.

use crate::config::{Config, ConfigError, Distro, Family, MirrorUrl, SecureBootMode};
use crate::disk::SystemView;
use crate::disk::safety::{Refusals, check_disks};
use crate::disk::select::{SelectError, select_disks};
use crate::exec::{ExecError, ProgressMode, Secrets, run_plan};
use crate::medium::LIVE_PAYLOAD;
use crate::plan::Plan;
use crate::recipe::{BaseSource, Inputs, LIVE_KLDLOAD, PlanError, build_plan};
use crate::zbm::image::ZbmImage;
use crate::zbm::source::{ZbmSource, choose_source};
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
    #[error(
        "{0} is not proven: kldload plans its install, but no VM test has ever booted one\n\
         fix: install {proven}, or pass --experimental to install {0} anyway (and say what \
         happened in an issue)\nnothing was written to any disk",
        proven = booted_in_vm_names()
    )]
    Untested(Distro),
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

/// The distributions VM tests boot, for messages: `debian-13, debian-12 or debian-14`.
fn booted_in_vm_names() -> String {
    let names: Vec<&str> = (Distro::ALL.iter())
        .filter(|d| d.booted_in_vm())
        .map(|d| d.name())
        .collect();
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// What the person running `kldload install` agreed to, beyond the answer file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Consent {
    /// Wipe the disks without asking (`--yes`; the medium's unattended install).
    pub yes: bool,
    /// Wipe disks that hold data (`--force`).
    pub force: bool,
    /// Install a distribution no VM test has booted (`--experimental`).
    pub experimental: bool,
}

/// Refuses a distribution no VM test has booted, unless the user said `--experimental`.
fn check_distro_proven(distro: Distro, consent: Consent) -> Result<(), AppError> {
    if distro.booted_in_vm() || consent.experimental {
        Ok(())
    } else {
        Err(AppError::Untested(distro))
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
        (None, Some(image)) => BaseSource::Image(image.as_str().into()),
        (None, None) if config.distro.family() == Family::Debian => {
            BaseSource::Image(LIVE_PAYLOAD.into())
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
    let secure_boot = through_shim(config, host_root, zbm_file)?;
    let zfsbootmenu = fetched.unwrap_or_else(|| {
        choose_source(
            config,
            overrides.zfsbootmenu.as_deref(),
            on_host,
            cached_release(config, host_root),
        )
    });
    let zfsbootmenu = if secure_boot {
        signed_for_secure_boot(zfsbootmenu)?
    } else {
        zfsbootmenu
    };
    if secure_boot && zbm_file == ZbmFile::MustExist {
        shim_files_present(config, &zfsbootmenu, &on_host)?;
    }
    let inputs = Inputs {
        config,
        disks,
        source,
        mirror,
        // FreeBSD boots with its own loader: a ZFSBootMenu file is neither read nor needed.
        zbm_image: match config.distro.family() {
            Family::FreeBsd => None,
            _ => {
                let image = read_zbm_image(&zfsbootmenu, host_root, zbm_file)?;
                if let (true, Some(image), ZbmSource::File { path, origin }) =
                    (secure_boot, &image, &zfsbootmenu)
                {
                    check_signed(image, path, origin, host_root)?;
                }
                image
            }
        },
        live_zfs_features: live_zfs_features(host_root),
        secure_boot,
        enroll_mok: config.secure_boot.enroll_mok_password_hash.is_some()
            && !mok_trusted_already(host_root),
        zfsbootmenu,
        installer: on_host(Path::new(LIVE_KLDLOAD)).then(|| LIVE_KLDLOAD.into()),
    };
    check_pool_features(&inputs, host_root)?;
    Ok((build_plan(&inputs)?, inputs.zfsbootmenu.clone()))
}

/// The answer file's `pool.features` must all be in the pool's compatibility set (the features
/// both ZFSBootMenu's ZFS and the installed system's read; its file is in the live system's
/// compatibility.d, which holds every older version's): `zpool create -d` only warns about one
/// outside it and makes a pool ZFSBootMenu may be unable to import. Unchecked when the set is
/// not known.
fn check_pool_features(inputs: &Inputs, host_root: &Path) -> Result<(), AppError> {
    let (Some(features), Some(set)) = (&inputs.config.pool.features, inputs.pool_compatibility())
    else {
        return Ok(());
    };
    let file = host_root
        .join(crate::zbm::image::COMPATIBILITY_DIR)
        .join(&set);
    let Ok(text) = std::fs::read_to_string(&file) else {
        return Ok(());
    };
    let known = crate::zbm::image::parse_features(&text);
    let unknown: Vec<&str> = (features.iter())
        .map(|f| f.as_str())
        .filter(|f| !known.contains(*f))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(AppError::BadOption(format!(
        "pool.features names {}, not in {set}: the pool is created with compatibility={set}, \
         what ZFSBootMenu's ZFS and the installed system's both read\nfix: leave {} out of \
         pool.features, or use a ZFSBootMenu and a live system whose ZFS knows {}\nnothing \
         was written to any disk",
        unknown.join(", "),
        if unknown.len() == 1 { "it" } else { "them" },
        if unknown.len() == 1 { "it" } else { "them" }
    )))
}

/// Whether the ESP boots through shim: `secure_boot.mode`, with "auto" following the live
/// system's firmware. An install (`ZbmFile::MustExist`) the machine would not start is refused:
/// Secure Boot on with mode "off", or with a distribution kldload's chain does not serve (a
/// plan only printed here is for whatever machine it is read on).
fn through_shim(config: &Config, host_root: &Path, zbm_file: ZbmFile) -> Result<bool, AppError> {
    let enforced = crate::secure_boot::enforced(host_root);
    let refuse = enforced && zbm_file == ZbmFile::MustExist;
    match config.secure_boot.mode {
        SecureBootMode::On => Ok(true),
        SecureBootMode::Off if refuse => Err(AppError::BadOption(
            "secure_boot.mode = \"off\" installs a ZFSBootMenu the firmware starts directly, and \
             this machine runs with Secure Boot on: it would not boot\nfix: turn Secure Boot off \
             in the firmware's setup first, or leave secure_boot.mode at \"auto\" (or \"on\")\n\
             nothing was written to any disk"
                .into(),
        )),
        SecureBootMode::Off => Ok(false),
        SecureBootMode::Auto if refuse && config.distro.family() != Family::Debian => {
            Err(AppError::BadOption(format!(
                "this machine runs with Secure Boot on, and kldload's Secure Boot chain (shim, \
                 ZFSBootMenu signed with the build's MOK, Debian's signed kernel) is made for \
                 Debian, not {}\nfix: turn Secure Boot off in the firmware's setup, then \
                 install again\nnothing was written to any disk",
                config.distro
            )))
        }
        SecureBootMode::Auto => Ok(enforced && config.distro.family() == Family::Debian),
    }
}

/// Through shim, the install copies shim, MokManager and shim's fallback from the live medium
/// (and its mok.der when enrolling, and its signed ZFSBootMenu when that is the choice): each is
/// checked before anything is written, so running elsewhere than on kldload's medium is refused
/// rather than failing after the disks are wiped.
fn shim_files_present(
    config: &Config,
    zfsbootmenu: &ZbmSource,
    on_host: &impl Fn(&Path) -> bool,
) -> Result<(), AppError> {
    use crate::medium::{
        LIVE_MOK, LIVE_MOK_MANAGER, LIVE_SHIM, LIVE_SHIM_FALLBACK, LIVE_ZFSBOOTMENU_SIGNED,
    };
    let mut wanted = vec![LIVE_SHIM, LIVE_MOK_MANAGER, LIVE_SHIM_FALLBACK];
    if config.secure_boot.enroll_mok_password_hash.is_some() {
        wanted.push(LIVE_MOK);
    }
    if matches!(zfsbootmenu, ZbmSource::File { path, .. } if path == Path::new(LIVE_ZFSBOOTMENU_SIGNED))
    {
        wanted.push(LIVE_ZFSBOOTMENU_SIGNED);
    }
    let missing: Vec<&str> = wanted
        .into_iter()
        .filter(|f| !on_host(Path::new(f)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(AppError::BadOption(format!(
        "booting through shim (secure_boot.mode) needs these files of kldload's live medium, and \
         they are not there: {}\nfix: install from a medium `cargo xtask build-image` made with \
         this kldload, or set secure_boot.mode = \"off\" and turn Secure Boot off in the \
         firmware\nnothing was written to any disk",
        missing.join(", ")
    )))
}

/// Whether this machine's db or MokListRT holds the medium's MOK certificate already (then
/// there is nothing to enroll).
fn mok_trusted_already(host_root: &Path) -> bool {
    let mok = host_root.join(crate::medium::LIVE_MOK.trim_start_matches('/'));
    std::fs::read(mok)
        .is_ok_and(|der| crate::secure_boot::trusted_certificates(host_root).contains(&der))
}

/// Under Secure Boot, the medium's ZFSBootMenu is replaced by its signed copy; the release is
/// refused (it is not signed for Secure Boot). A file of the user's own is checked once read.
fn signed_for_secure_boot(source: ZbmSource) -> Result<ZbmSource, AppError> {
    use crate::medium::{LIVE_ZFSBOOTMENU, LIVE_ZFSBOOTMENU_SIGNED};
    match source {
        ZbmSource::File { path, origin } if path == Path::new(LIVE_ZFSBOOTMENU) => {
            Ok(ZbmSource::File {
                path: LIVE_ZFSBOOTMENU_SIGNED.into(),
                origin: format!(
                    "{origin}, signed with the build's MOK key for Secure Boot (secure_boot.mode)"
                ),
            })
        }
        ZbmSource::Release { .. } => Err(AppError::BadOption(format!(
            "ZFSBootMenu's release ({}) is not signed for Secure Boot, which this install boots \
             with (secure_boot.mode)\nfix: use the medium's signed copy (leave \
             zfsbootmenu.source out, or \"built\"), or a file you signed with your enrolled MOK \
             key (sbsign), or secure_boot.mode = \"off\" and Secure Boot off in the firmware\n\
             nothing was written to any disk",
            source.origin()
        ))),
        other => Ok(other),
    }
}

/// Under Secure Boot, a ZFSBootMenu file must be signed, and on a machine running with Secure
/// Boot on, by a key its firmware or shim trusts (the signature carries the certificate of one
/// of them): otherwise shim refuses it at the next boot and the machine does not start.
fn check_signed(
    image: &ZbmImage,
    path: &Path,
    origin: &str,
    host_root: &Path,
) -> Result<(), AppError> {
    let fix = "fix: use the medium's signed copy (leave zfsbootmenu.source out, or \"built\"), \
               or sign the file with your enrolled MOK key (sbsign), or set secure_boot.mode = \
               \"off\" and turn Secure Boot off in the firmware\nnothing was written to any disk";
    let shown = path.display();
    if !image.signed {
        return Err(AppError::BadOption(format!(
            "ZFSBootMenu's EFI file {shown} (from {origin}) is not signed, and this install boots \
             through shim with Secure Boot (secure_boot.mode): shim would refuse it\n{fix}"
        )));
    }
    if !crate::secure_boot::enforced(host_root) {
        return Ok(());
    }
    let on_host = host_root.join(path.strip_prefix("/").unwrap_or(path));
    let signature = crate::zbm::image::signature(&on_host)
        .map_err(|e| AppError::BadOption(format!("{e}\nnothing was written to any disk")))?
        .unwrap_or_default();
    let trusted = crate::secure_boot::trusted_certificates(host_root);
    if crate::secure_boot::carried_certificates(&signature, &trusted).is_empty() {
        return Err(AppError::BadOption(format!(
            "ZFSBootMenu's EFI file {shown} (from {origin}) is signed by a key this machine does \
             not trust: its signature carries none of the {} certificates in the firmware's db \
             and shim's MokListRT, so shim would refuse it (Security Violation) at the next \
             boot\n{fix}",
            trusted.len()
        )));
    }
    Ok(())
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
    let image = crate::zbm::image::read(&on_host).map_err(|e| {
        AppError::BadOption(format!(
            "ZFSBootMenu's EFI file from {origin}: {e}\nfix: give ZFSBootMenu's EFI file \
             (a release's zfsbootmenu-release-x86_64-*.EFI or the one `cargo xtask build-image` \
             builds); `kldload inspect-zfsbootmenu FILE` shows what kldload reads in it\n\
             nothing was written to any disk"
        ))
    })?;
    if image.zfs_module.is_none() {
        return Err(AppError::BadOption(format!(
            "ZFSBootMenu's EFI file {} (from {origin}) has no zfs.ko in its initramfs: it would \
             stop in its emergency shell (\"unable to load ZFS kernel modules\") and never \
             import the pool\nfix: give a ZFSBootMenu built with ZFS (a dracut build needs \
             --no-hostonly: host-only mode, dracut-ng's default, leaves zfs.ko out when the \
             building machine has no ZFS loaded); `kldload inspect-zfsbootmenu FILE` shows \
             what kldload reads in it\nnothing was written to any disk",
            path.display()
        )));
    }
    Ok(Some(image))
}

/// The newest `openzfs-X.Y` feature set of the ZFS under `host_root` (its zfsutils'
/// compatibility.d), which creates the pool.
fn live_zfs_features(host_root: &Path) -> Option<String> {
    let dir = host_root.join(crate::zbm::image::COMPATIBILITY_DIR);
    let names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    crate::zbm::image::newest_openzfs_name(names.iter().map(String::as_str)).map(String::from)
}

/// The release in the build cache under `host_root`, if one is there and verifies offline
/// (signature and sha256): its path as the installer will read it.
fn cached_release(config: &Config, host_root: &Path) -> Option<PathBuf> {
    use crate::zbm::release::{SIGNING_KEY, VERSION, verify_local};
    use crate::zbm::source::{BUILD_CACHE, release_cache};
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

/// `kldload validate --offline`: the answer file alone. Parsing it checked every key and the
/// rules across keys; what only the machine it installs can say is named as not checked.
pub fn validate_offline(config: &Config) -> String {
    format!(
        "answer file is valid: {} on pool {} ({})\n\
         not checked here (offline): its disks, the passphrase's source and ZFSBootMenu's file; \
         `kldload validate --config FILE` on the machine it installs checks them\n",
        config.distro,
        config.pool.name,
        config.disks.layout.name()
    )
}

/// `kldload install`: checks, confirmation, then the plan run.
pub fn install(
    config: &Config,
    overrides: &Overrides,
    system: &dyn SystemView,
    consent: Consent,
) -> Result<(), AppError> {
    check_distro_proven(config.distro, consent)?;
    let secrets = install_secrets(config)?;
    let root = Path::new("/");
    let (mut plan, zfsbootmenu) =
        plan_for(config, overrides, system, root, ZbmFile::MustExist, None)?;
    check_disks(&plan.disks, config.disks.layout, system, consent.force)?;
    if !consent.yes {
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
    // A copy of the log on the medium, when it is one and writable: the live system runs from
    // memory, and a failure's evidence must outlive it.
    let (medium_log, copy) = crate::medium_log::MediumLog::open().unzip();
    let (outcome, copy) =
        crate::exec::run_plan_logging_to(&plan, ProgressMode::detect(), &secrets, copy);
    let on_medium = medium_log.is_some();
    if let Some(medium_log) = medium_log {
        medium_log.close(copy);
    }
    if outcome.is_err() {
        let target_log =
            Path::new(crate::recipe::TARGET_ROOT).join(crate::recipe::base_os::INSTALL_LOG);
        for place in crate::medium_log::where_the_log_is(on_medium, &target_log) {
            eprintln!("kldload: {place}");
        }
    }
    Ok(outcome?)
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

    /// rocky-9 and freebsd-14 (planned, never booted in a VM) need --experimental; the
    /// message names the distribution, the ones that are proven and the flag.
    #[test]
    fn a_distribution_no_vm_test_booted_needs_experimental() {
        let consent = Consent::default();
        for name in ["debian-13", "debian-12", "debian-14"] {
            let distro: Distro = name.parse().unwrap();
            assert!(check_distro_proven(distro, consent).is_ok(), "{name}");
        }
        for name in ["rocky-9", "freebsd-14"] {
            let distro: Distro = name.parse().unwrap();
            let e = check_distro_proven(distro, consent).unwrap_err();
            assert_eq!(e.exit_code(), EXIT_REFUSED);
            let e = e.to_string();
            for words in [
                &format!("{name} is not proven"),
                "no VM test has ever booted",
                "install debian-13, debian-12 or debian-14",
                &format!("pass --experimental to install {name} anyway"),
                "nothing was written to any disk",
            ] {
                assert!(e.contains(words), "{words:?} not in {e}");
            }
            let experimental = Consent {
                experimental: true,
                ..consent
            };
            assert!(check_distro_proven(distro, experimental).is_ok(), "{name}");
        }
    }

    #[test]
    fn source_built_without_a_medium_is_refused_with_the_fix_before_anything_is_written() {
        let root = tempfile::tempdir().unwrap();
        let config = crate::config::test_config("source = \"built\"");
        let source = choose_source(&config, None, |_| false, None);
        let e = read_zbm_image(&source, root.path(), ZbmFile::MustExist)
            .unwrap_err()
            .to_string();
        for words in [
            crate::medium::LIVE_ZFSBOOTMENU,
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

    /// `pool.features` outside the compatibility set are refused before anything is written,
    /// each named; inside it, or with the set's file not there to read, they pass.
    #[test]
    fn pool_features_the_readers_do_not_know_are_refused_before_anything_is_written() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(crate::zbm::image::COMPATIBILITY_DIR);
        let mut config = crate::config::test_config("");
        let named = |list: &[&str]| {
            Some(
                (list.iter())
                    .map(|f| crate::config::names::FeatureName::new(*f).unwrap())
                    .collect(),
            )
        };
        config.pool.features = named(&["async_destroy", "raidz_expansion", "fast_dedup"]);
        let check = |config: &crate::config::Config| {
            check_pool_features(
                &crate::recipe::testing::inputs(config, None, None),
                root.path(),
            )
        };
        // No compatibility file to read: not checked here (zpool create is).
        check(&config).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("openzfs-2.3-linux"),
            "# features\nasync_destroy\nempty_bpobj, large_dnode\n",
        )
        .unwrap();
        let e = check(&config).unwrap_err().to_string();
        for words in [
            "pool.features names raidz_expansion, fast_dedup",
            "compatibility=openzfs-2.3-linux",
            "nothing was written to any disk",
        ] {
            assert!(e.contains(words), "{words:?} not in {e}");
        }
        config.pool.features = named(&["async_destroy", "large_dnode"]);
        check(&config).unwrap();
    }

    /// The build of forky's dracut 112 in host-only mode: a ZFSBootMenu whose initramfs has
    /// the kernel's modules but not zfs.ko is refused before anything is written.
    #[test]
    fn a_zfsbootmenu_without_zfs_ko_is_refused_before_anything_is_written() {
        use crate::initrd::testing::Entry;
        let kernel_module = Entry::file(
            "usr/lib/modules/7.2.12+deb14-amd64/kernel/fs/fat/vfat.ko.xz",
            b"vfat",
        );
        let source = ZbmSource::File {
            path: "/zbm.EFI".into(),
            origin: "--zfsbootmenu".into(),
        };
        let root = tempfile::tempdir().unwrap();
        let read = |entries: &[Entry]| {
            let efi = crate::zbm::image::tests::zbm_efi("quiet", entries)?;
            std::fs::copy(efi.path(), root.path().join("zbm.EFI")).unwrap();
            Some(read_zbm_image(&source, root.path(), ZbmFile::MustExist))
        };
        let Some(without) = read(std::slice::from_ref(&kernel_module)) else {
            eprintln!("zstd is not installed here: not tested");
            return;
        };
        let e = without.unwrap_err().to_string();
        for words in [
            "/zbm.EFI (from --zfsbootmenu) has no zfs.ko in its initramfs",
            "--no-hostonly",
            "nothing was written to any disk",
        ] {
            assert!(e.contains(words), "{words:?} not in {e}");
        }
        let with = read(&[
            kernel_module,
            Entry::file(crate::zbm::image::tests::ZFS_KO, b"zfs"),
        ])
        .unwrap()
        .unwrap()
        .unwrap();
        assert_eq!(
            with.zfs_module.as_deref(),
            Some(crate::zbm::image::tests::ZFS_KO)
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
        let Some(efi) = crate::zbm::image::tests::zbm_efi(
            "quiet",
            &[
                Entry::file("etc/hostid", &0x5eed_f00d_u32.to_le_bytes()),
                Entry::file(crate::zbm::image::tests::ZFS_KO, b"zfs"),
            ],
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

    /// Under Secure Boot (here "auto" on a machine that booted with it on), the ZFSBootMenu
    /// file is refused when unsigned or signed by a key neither db nor MokListRT holds, before
    /// anything is written; signed by an enrolled MOK it is planned through shim.
    #[test]
    fn under_secure_boot_zfsbootmenu_must_be_signed_by_a_trusted_key() {
        use crate::disk::FakeSystem;
        use crate::initrd::testing::{Entry, compress, cpio_entries};
        let Some(initrd) = compress(
            "zstd",
            &cpio_entries(&[
                Entry::file("etc/hostid", &[1, 0, 0, 0]),
                Entry::file(crate::zbm::image::tests::ZFS_KO, b"zfs"),
            ]),
        ) else {
            eprintln!("zstd is not installed here: not tested");
            return;
        };
        let root = tempfile::tempdir().unwrap();
        let efivars = root.path().join("sys/firmware/efi/efivars");
        std::fs::create_dir_all(&efivars).unwrap();
        let var = |name: &str, guid: &str, data: &[u8]| {
            let mut bytes = vec![6, 0, 0, 0];
            bytes.extend(data);
            std::fs::write(efivars.join(format!("{name}-{guid}")), bytes).unwrap();
        };
        var("SecureBoot", crate::secure_boot::EFI_GLOBAL_GUID, &[1]);
        // MokListRT: one EFI_SIGNATURE_LIST of X.509 type holding the enrolled certificate.
        let cert = b"enrolled MOK certificate (DER)";
        let mut list = vec![
            0xa1, 0x59, 0xc0, 0xa5, 0xe4, 0x94, 0xa7, 0x4a, 0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b,
            0xf0, 0x72,
        ];
        for n in [28 + 16 + cert.len(), 0, 16 + cert.len()] {
            list.extend((n as u32).to_le_bytes());
        }
        list.extend([0; 16]);
        list.extend(cert);
        var("MokListRT", crate::secure_boot::SHIM_LOCK_GUID, &list);
        // The shim files the install copies from the medium.
        use crate::medium::{LIVE_MOK_MANAGER, LIVE_SHIM, LIVE_SHIM_FALLBACK};
        for file in [LIVE_SHIM, LIVE_MOK_MANAGER, LIVE_SHIM_FALLBACK] {
            let on_root = root.path().join(file.trim_start_matches('/'));
            std::fs::create_dir_all(on_root.parent().unwrap()).unwrap();
            std::fs::write(on_root, b"an EFI file").unwrap();
        }
        let config = crate::config::test_config("source = \"/zbm.EFI\"");
        let plan = |signature: Option<&[u8]>| {
            let bytes = crate::zbm::image::tests::efi_maybe_signed(
                &[(".initrd", &initrd), (".linux", b"a kernel")],
                signature,
            );
            std::fs::write(root.path().join("zbm.EFI"), bytes).unwrap();
            plan_for(
                &config,
                &Overrides::default(),
                &FakeSystem::default(),
                root.path(),
                ZbmFile::MustExist,
                None,
            )
            .map(|(plan, _)| plan)
        };
        let unsigned = plan(None).unwrap_err().to_string();
        assert!(unsigned.contains("is not signed"), "{unsigned}");
        assert!(unsigned.contains("nothing was written"), "{unsigned}");
        let other = plan(Some(b"pkcs7 carrying another certificate"))
            .unwrap_err()
            .to_string();
        assert!(
            other.contains("signed by a key this machine does not trust"),
            "{other}"
        );
        let mut signature = b"pkcs7 carrying ".to_vec();
        signature.extend(cert);
        let planned = plan(Some(&signature)).unwrap();
        let commands: Vec<String> = planned.commands().map(|argv| argv.join(" ")).collect();
        assert!(
            commands
                .iter()
                .any(|c| c.contains("--loader \\EFI\\ZBM\\shimx64.efi")),
            "{commands:#?}"
        );
        // Without shim's fallback on the medium: refused before anything is written.
        std::fs::remove_file(root.path().join(LIVE_SHIM_FALLBACK.trim_start_matches('/'))).unwrap();
        let missing = plan(Some(&signature)).unwrap_err().to_string();
        assert!(missing.contains(LIVE_SHIM_FALLBACK), "{missing}");
        assert!(missing.contains("nothing was written"), "{missing}");
        // Secure Boot on, and asked to boot without shim: refused.
        let off =
            crate::config::test_config("source = \"/zbm.EFI\"\n[secure_boot]\nmode = \"off\"");
        let refused = plan_for(
            &off,
            &Overrides::default(),
            &FakeSystem::default(),
            root.path(),
            ZbmFile::MustExist,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(refused.contains("it would not boot"), "{refused}");
    }
}
