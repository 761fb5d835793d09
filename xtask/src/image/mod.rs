//! `cargo xtask build-image <distro>`: the live medium and the target payload, with ZFS built,
//! signed and packaged at image time. Cached phases, each keyed by a hash of its inputs:
//!
//! 1. [`builder`]: kernel + headers + DKMS-built, MOK-signed ZFS -> a modules package;
//! 2. [`payload`]: the target root without build tools -> payload.tar.zst + manifest.json;
//! 3. [`live`]: the payload plus the installer's tools -> a cpio archive the kernel runs from RAM;
//! 4. [`zbm_build`]: ZFSBootMenu from its pinned source (or [`zbm`]: a given file, the release);
//! 5. [`shim`]: Debian's Microsoft-signed shim and MokManager, Secure Boot's first stage;
//! 6. [`medium`]: the `kldload` binary, the EFI file of kernel + initrd + command line (signed
//!    with the MOK key, started by shim), and everything on one ESP in a GPT disk image.

pub mod builder;
pub mod cache;
pub mod live;
pub mod medium;
pub mod payload;
pub mod recipe;
pub mod shim;
pub mod update;
pub mod update_key;
pub mod zbm;
pub mod zbm_build;

use crate::progress::Phases;
use crate::run::{Log, output, run};
use anyhow::{Context, Result, bail};
use cache::{Cache, Key, build_entry, phase_log};
use kldload::config::ZFSBOOTMENU_HOSTID;
use recipe::ImageDistro;
use std::fs;
use std::path::{Path, PathBuf};
use vmtests::test_zbm::TestZfsBootMenu;

/// Host tools the build runs, and the Debian packages they come from.
pub const HOST_TOOLS: [(&str, &str); 15] = [
    ("debootstrap", "debootstrap"),
    ("mkfs.vfat", "dosfstools"),
    ("mcopy", "mtools"),
    ("sgdisk", "gdisk"),
    ("cpio", "cpio"),
    ("zstd", "zstd"),
    ("openssl", "openssl"),
    ("objcopy", "binutils"),
    ("sbsign", "sbsigntool"),
    ("dpkg-deb", "dpkg"),
    ("curl", "curl"),
    ("modinfo", "kmod"),
    ("chroot", "coreutils"),
    // The update signing key ([`update_key`]).
    ("gpg", "gnupg"),
    ("gpgconf", "gpgconf"),
];

/// Free space a cold build needs in the cache (roots of three systems, archives, the image).
const COLD_SPACE: u64 = 8 << 30;

#[derive(Debug, Clone)]
pub struct Options {
    pub distro: ImageDistro,
    pub rebuild: bool,
    /// A finished ZFSBootMenu EFI file for the medium, instead of building one.
    pub zfsbootmenu: Option<PathBuf>,
    /// Put the official release (downloaded, verified by its signature) on the medium instead
    /// of building ZFSBootMenu.
    pub zfsbootmenu_release: bool,
    /// ZFSBootMenu's source tarball (default: the pinned tag archive, downloaded).
    pub zfsbootmenu_source: Option<PathBuf>,
    pub mirror: Option<String>,
    /// Build from a mirror whose Release file has expired ([`crate::run::apt_update`]).
    pub allow_expired_archive: bool,
    pub cache: PathBuf,
    /// Also build these ZFSBootMenus, which VM tests install as files given by the user: one
    /// carrying another hostid ([`OTHER_HOSTID`]), as any ZFSBootMenu built on another machine
    /// does; one with an older ZFS (on [`recipe::ZFS_2_1_BUILDER`]).
    pub test_zfsbootmenus: Vec<TestZfsBootMenu>,
}

/// The hostid inside the ZFSBootMenu built for the VM test of a ZFSBootMenu built elsewhere.
pub const OTHER_HOSTID: u32 = 0x5eed_f00d;

/// What a build produced.
#[derive(Debug)]
pub struct Output {
    pub medium: PathBuf,
    pub builder_dir: PathBuf,
    /// The builder entry's key: the build's id, in the MOK's and the update key's names.
    pub build_id: String,
    pub payload_dir: PathBuf,
    pub size: u64,
    pub manifest: payload::Manifest,
    pub phases: Phases,
    /// The EFI files of [`Options::test_zfsbootmenus`].
    pub test_zfsbootmenus: Vec<(TestZfsBootMenu, PathBuf)>,
}

/// Bytes free at `path`.
fn free_space(path: &Path) -> Option<u64> {
    let out = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

/// The mirror: given, or the host's own apt sources; checked to answer before anything starts.
pub(crate) fn choose_mirror(
    given: Option<&str>,
    distro: &ImageDistro,
    log: &Log,
) -> Result<String> {
    // An empty --mirror / $KLDLOAD_MIRROR (an unset CI secret) means none was given.
    let mirror = match given.filter(|m| !m.trim().is_empty()) {
        Some(m) => kldload::config::MirrorUrl::new(m).map_err(anyhow::Error::msg)?,
        None => kldload::mirror::host_debian_mirror(Path::new("/"))
            .context("no Debian mirror: this host's apt sources name none; pass --mirror URL")?,
    };
    let release = format!("{}/dists/{}/InRelease", mirror.as_str(), distro.suite);
    if run(
        log,
        &[
            "curl",
            "--fail",
            "--silent",
            "--show-error",
            "--head",
            "--max-time",
            "30",
            &release,
        ],
    )
    .is_err()
    {
        bail!(
            "the mirror {} does not answer (tried {release}):\n{}",
            mirror.as_str(),
            log.tail()
        );
    }
    Ok(mirror.as_str().to_string())
}

/// Builds the release `kldload` for the live system (cargo rebuilds it only when its sources
/// changed) and returns its path, and whether it was already built: the binary was there and
/// cargo left it as it was (same modification time).
fn build_kldload(log: &Log) -> Result<(PathBuf, bool)> {
    let root = crate::project_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let binary = target.join("release/kldload");
    let modified = || fs::metadata(&binary).and_then(|m| m.modified()).ok();
    let before = modified();
    run(
        log,
        &[
            "cargo",
            "build",
            "--release",
            "--quiet",
            "--package",
            "kldload",
            "--manifest-path",
            &root.join("Cargo.toml").to_string_lossy(),
        ],
    )?;
    let already_built = before.is_some() && before == modified();
    Ok((binary, already_built))
}

pub fn build_image(opts: &Options) -> Result<Output> {
    let distro = opts.distro;
    if !crate::host::is_root() {
        bail!(
            "build-image needs root: it runs debootstrap, chroot and mounts. Run it as root, e.g.\n  sudo -E cargo xtask build-image {}",
            distro.name
        );
    }
    crate::host::ensure_host_packages(&HOST_TOOLS)?;
    let cache = Cache::new(opts.cache.clone());
    let dir = cache.root.join(distro.name);
    fs::create_dir_all(&dir).with_context(|| format!("creating the cache {}", dir.display()))?;
    let host_log = Log::new(dir.join("host.log"))?;
    let mirror = choose_mirror(opts.mirror.as_deref(), &distro, &host_log)?;
    crate::run::allow_expired_archive(opts.allow_expired_archive);
    let mut phases = Phases::default();

    let builder = builder_phase(
        &mut phases,
        opts,
        &cache,
        &distro,
        &mirror,
        "builder (DKMS)",
    )?;
    let (builder_dir, build_id, built) = (&builder.dir, &builder.id, &builder.built);
    let update_key = update_key::ensure(&host_log, builder_dir, build_id)?;
    let debs = cache.debs(distro.name);

    let mut key = Key::new("payload");
    key.add(build_id.as_bytes())
        .add(recipe::PAYLOAD_PACKAGES.join(" "))
        .add(recipe::PAYLOAD_PACKAGES_PURGED.join(" "))
        .add(recipe::PAYLOAD_UNITS_DISABLED.join(" "));
    key.add(ZFSBOOTMENU_HOSTID.to_string());
    let payload_dir = cache.entry(distro.name, "payload", &key);
    cached_phase(
        &mut phases,
        "payload",
        &payload_dir,
        opts.rebuild,
        |log, tmp| {
            payload::build(log, &distro, &mirror, &debs, built, builder_dir, tmp).map(|_| ())
        },
    )?;
    let text = fs::read_to_string(payload_dir.join(payload::MANIFEST))?;
    let manifest: payload::Manifest = serde_json::from_str(&text)?;

    key.add("live")
        .add(recipe::LIVE_PACKAGES.join(" "))
        .add(recipe::LIVE_MODULES_DROPPED.join(" "))
        .add(recipe::LIVE_PATHS_DROPPED.join(" "))
        .add(recipe::LIVE_UNITS_MASKED.join(" "))
        .add(recipe::LIVE_UNITS_ENABLED.join(" "));
    for (p, m, c) in recipe::LIVE_FILES {
        key.add(p).add(m.to_string()).add(c);
    }
    let live_dir = cache.entry(distro.name, "live", &key);
    cached_phase(
        &mut phases,
        "live system",
        &live_dir,
        opts.rebuild,
        |log, tmp| live::build(log, &payload_dir.join(payload::ROOT), built, tmp),
    )?;

    // ZFSBootMenu: a given file, the verified release, or (the default) built here.
    let zbm = ZbmInputs {
        opts,
        cache: &cache,
        builder: &builder,
        host_log: &host_log,
    };
    let mut zbm_built = None;
    let zbm_file = if opts.zfsbootmenu.is_some() || opts.zfsbootmenu_release {
        zbm::resolve(&host_log, opts.zfsbootmenu.as_deref(), &cache.root)?
    } else {
        let dir = built_zfsbootmenu(&mut phases, &zbm, ZFSBOOTMENU_HOSTID)?;
        zbm_built = Some(dir.clone());
        dir.join(zbm_build::EFI)
    };
    let (mut test_zfsbootmenus, mut test_builders) = (Vec::new(), Vec::new());
    for &wanted in &opts.test_zfsbootmenus {
        let dir = match wanted {
            TestZfsBootMenu::OtherHostid => built_zfsbootmenu(&mut phases, &zbm, OTHER_HOSTID)?,
            TestZfsBootMenu::Zfs21 => {
                let older = builder_phase(
                    &mut phases,
                    opts,
                    &cache,
                    &recipe::ZFS_2_1_BUILDER,
                    &mirror,
                    "builder (DKMS, ZFS 2.1, for a VM test)",
                )?;
                let z = ZbmInputs {
                    builder: &older,
                    ..zbm
                };
                test_builders.push(older.dir.clone());
                built_zfsbootmenu(&mut phases, &z, ZFSBOOTMENU_HOSTID)?
            }
        };
        test_zfsbootmenus.push((wanted, dir));
    }
    // On the medium: the EFI file and, when built here, what it was built from (its version,
    // kernel, ZFS, command line and hostid).
    let mut zbm_files: medium::Files = vec![(
        kldload::medium::ESP_ZFSBOOTMENU.to_string(),
        zbm_file.clone(),
    )];
    if let Some(dir) = &zbm_built {
        zbm_files.push((
            kldload::medium::ESP_ZFSBOOTMENU_BUILD.into(),
            dir.join(zbm_build::INFO),
        ));
    }
    // Secure Boot's first stage: Debian's shim, signed by Microsoft, and its MokManager.
    let mut shim_key = Key::new("shim");
    shim_key
        .add(build_id.as_bytes())
        .add(shim::PACKAGES.join(" "));
    for (name, path) in shim::FILES {
        shim_key.add(name).add(path);
    }
    let shim_dir = cache.entry(distro.name, "shim", &shim_key);
    cached_phase(&mut phases, "shim", &shim_dir, opts.rebuild, |log, tmp| {
        shim::fetch(log, builder_dir, tmp)
    })?;
    let kldload_bin = phases.run("kldload", Some(host_log.path.clone()), || {
        build_kldload(&host_log)
    })?;
    key.add("medium")
        .add(recipe::LIVE_CMDLINE)
        .add(recipe::MEDIUM_LABEL);
    key.add(kldload::hash::file_sha256(&kldload_bin)?)
        .add(kldload::hash::file_sha256(&zbm_file)?)
        .add(kldload::hash::file_sha256(&update_key)?);
    for name in shim::FILES
        .map(|(name, _)| name)
        .iter()
        .chain(&[shim::INFO])
    {
        key.add(kldload::hash::file_sha256(&shim_dir.join(name))?);
    }
    let medium_dir = cache.entry(distro.name, "medium", &key);
    let image_id = key.hex();
    cached_phase(
        &mut phases,
        "medium",
        &medium_dir,
        opts.rebuild,
        |log, tmp| {
            build_medium(
                log,
                tmp,
                MediumInputs {
                    image_id: &image_id,
                    builder_dir,
                    payload_dir: &payload_dir,
                    live_dir: &live_dir,
                    shim_dir: &shim_dir,
                    signer: &built.signer,
                    kldload_bin: &kldload_bin,
                    update_key: &update_key,
                    zbm_files,
                },
            )
        },
    )?;
    let medium = medium_dir.join(medium::IMAGE);
    let size = fs::metadata(&medium)?.len();
    // What this build uses, for `cargo xtask image-cache prune`.
    let mut current: Vec<String> = [builder_dir, &payload_dir, &live_dir, &shim_dir, &medium_dir]
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    for dir in zbm_built
        .iter()
        .chain(test_zfsbootmenus.iter().map(|(_, d)| d))
    {
        current.push(dir.display().to_string());
    }
    current.extend(test_builders.iter().map(|d| d.display().to_string()));
    fs::write(
        dir.join("current.json"),
        serde_json::to_string_pretty(&current)?,
    )?;
    Ok(Output {
        medium,
        builder_dir: builder.dir.clone(),
        build_id: builder.id.clone(),
        payload_dir,
        size,
        manifest,
        phases,
        test_zfsbootmenus: test_zfsbootmenus
            .into_iter()
            .map(|(t, d)| (t, d.join(zbm_build::EFI)))
            .collect(),
    })
}

/// The builder phase's cache entry, its key's hash (the build id) and what it built.
struct Builder {
    distro: ImageDistro,
    dir: PathBuf,
    id: String,
    built: builder::Built,
}

/// The builder root of `distro` (kernel, headers, DKMS-built signed ZFS) as the cached phase
/// shown as `name`; refused before it starts when the cache's disk has not the room for a
/// cold build.
fn builder_phase(
    phases: &mut Phases,
    opts: &Options,
    cache: &Cache,
    distro: &ImageDistro,
    mirror: &str,
    name: &str,
) -> Result<Builder> {
    let mut key = Key::new("builder");
    key.add(recipe::RECIPE_VERSION).add(distro.name).add(mirror);
    key.add(recipe::BUILDER_PACKAGES.join(" "))
        .add(recipe::BUILDER_ZFS_PACKAGES.join(" "));
    let dir = cache.entry(distro.name, "builder", &key);
    if (!dir.is_dir() || opts.rebuild)
        && let Some(free) = free_space(&cache.root)
        && free < COLD_SPACE
    {
        bail!(
            "not enough free disk for a build: {} free in {}, {} needed",
            kldload::disk::human_size(free),
            cache.root.display(),
            kldload::disk::human_size(COLD_SPACE)
        );
    }
    let id = key.hex();
    let debs = cache.debs(distro.name);
    cached_phase(phases, name, &dir, opts.rebuild, |log, tmp| {
        builder::build(log, distro, mirror, &debs, tmp, &id).map(|_| ())
    })?;
    let built = builder::load(&dir)?;
    Ok(Builder {
        distro: *distro,
        dir,
        id,
        built,
    })
}

/// What building ZFSBootMenu takes from the rest of the image build.
#[derive(Clone, Copy)]
struct ZbmInputs<'a> {
    opts: &'a Options,
    cache: &'a Cache,
    builder: &'a Builder,
    host_log: &'a Log,
}

/// ZFSBootMenu built from its pinned source with `hostid` inside, as a cached phase of its
/// own: its cache entry (the EFI file and BUILD.json, what it was built from).
fn built_zfsbootmenu(phases: &mut Phases, z: &ZbmInputs, hostid: u32) -> Result<PathBuf> {
    let source = zbm_build::resolve_source(
        z.host_log,
        z.opts.zfsbootmenu_source.as_deref(),
        &z.cache.root,
    )?;
    let b = z.builder;
    let mut key = Key::new("zfsbootmenu");
    key.add(b.id.as_bytes())
        .add(zbm_build::SOURCE_SHA256)
        .add(recipe::ZBM_BUILD_PACKAGES.join(" "))
        .add(zbm_build::generate_zbm_config(&b.built.kernel))
        .add(hostid.to_string());
    for (path, script) in kldload::upgrade::trial::hooks() {
        key.add(path).add(script);
    }
    let dir = z.cache.entry(b.distro.name, "zfsbootmenu", &key);
    let name = if hostid != ZFSBOOTMENU_HOSTID {
        format!("ZFSBootMenu (built with hostid 0x{hostid:08x}, for a VM test)")
    } else if b.distro.name != z.opts.distro.name {
        format!("ZFSBootMenu (built on {}, for a VM test)", b.distro.name)
    } else {
        "ZFSBootMenu (built)".to_string()
    };
    cached_phase(phases, &name, &dir, z.opts.rebuild, |log, tmp| {
        zbm_build::build(log, &b.distro, &b.dir, &b.built, &source, hostid, tmp)
    })?;
    Ok(dir)
}

/// One cached phase of the build, shown as `name`: the cache entry `dir`, built by
/// `build(log, partial)` into its `.partial` directory (with its own build.log, whose last line
/// the progress shows) unless it is already there, or `rebuild` asks for it again.
fn cached_phase(
    phases: &mut Phases,
    name: &str,
    dir: &Path,
    rebuild: bool,
    build: impl FnOnce(&Log, &Path) -> Result<()>,
) -> Result<()> {
    phases.run(
        name,
        Some(dir.with_extension("partial").join("build.log")),
        || {
            let cached = build_entry(dir, rebuild, |tmp| build(&phase_log(tmp)?, tmp))?;
            Ok(((), cached))
        },
    )
}

/// The ZFSBootMenu EFI file among the medium's ZFSBootMenu files.
fn files_zbm(zbm_files: &medium::Files) -> Result<(PathBuf, String)> {
    let want = kldload::medium::ESP_ZFSBOOTMENU.to_string();
    zbm_files
        .iter()
        .find(|(dest, _)| *dest == want)
        .map(|(dest, src)| (src.clone(), dest.clone()))
        .context("no ZFSBootMenu EFI file among the medium's files")
}

/// The cache entries and files the medium is made of.
struct MediumInputs<'a> {
    /// The medium's cache key (its entry is `medium-<id>`): the image's id, which
    /// `kldload --version` shows on the medium and on systems installed from it.
    image_id: &'a str,
    builder_dir: &'a Path,
    payload_dir: &'a Path,
    live_dir: &'a Path,
    shim_dir: &'a Path,
    /// The MOK certificate's subject CN (the builder's [`builder::Built::signer`]).
    signer: &'a str,
    kldload_bin: &'a Path,
    /// The public key updates of this build are signed with ([`update_key`]).
    update_key: &'a Path,
    zbm_files: medium::Files,
}

/// Beside the binary in the live root `extra`, what the install also copies onto the target
/// (kldload::recipe::live_kldload_files): the image's id, the public key its updates are
/// signed with, the shell completions and the manual page, the last two made by the binary
/// itself.
fn kldload_files(
    log: &Log,
    kldload_bin: &Path,
    image_id: &str,
    update_key: &Path,
    extra: &Path,
) -> Result<()> {
    let at = |path: &str| extra.join(path.trim_start_matches('/'));
    let write = |path: &str, bytes: &[u8]| -> Result<()> {
        let file = at(path);
        fs::create_dir_all(file.parent().expect("an absolute path"))?;
        fs::write(&file, bytes).with_context(|| format!("writing {}", file.display()))
    };
    write(
        kldload::version::IMAGE_ID_FILE,
        format!("{image_id}\n").as_bytes(),
    )?;
    write(kldload::upgrade::UPDATE_KEY_FILE, &fs::read(update_key)?)?;
    let bin = kldload_bin.to_string_lossy();
    for (shell, path) in kldload::recipe::COMPLETIONS {
        write(path, output(log, &[&bin, "completions", shell])?.as_bytes())?;
    }
    write(
        kldload::recipe::MANUAL,
        output(log, &[&bin, "man"])?.as_bytes(),
    )
}

fn build_medium(log: &Log, work: &Path, inputs: MediumInputs) -> Result<()> {
    let MediumInputs {
        image_id,
        builder_dir,
        payload_dir,
        live_dir,
        shim_dir,
        signer,
        kldload_bin,
        update_key,
        zbm_files,
    } = inputs;
    let extra = work.join("kldload-root");
    fs::create_dir_all(extra.join("usr/local/bin"))?;
    fs::copy(kldload_bin, extra.join("usr/local/bin/kldload"))?;
    kldload_files(log, kldload_bin, image_id, update_key, &extra)?;
    let extra_cpio = work.join("kldload.cpio.zst");
    live::pack_cpio(&extra, &extra_cpio, 19)?;
    fs::remove_dir_all(&extra)?;
    // The kernel unpacks concatenated archives in order: the live root, then kldload.
    let initrd = work.join("initrd.zst");
    let mut bytes = fs::read(live_dir.join(live::INITRD))?;
    bytes.extend(fs::read(&extra_cpio)?);
    fs::write(&initrd, bytes)?;
    let cmdline = work.join("cmdline");
    fs::write(&cmdline, recipe::LIVE_CMDLINE)?;
    let efi = work.join("BOOTX64.EFI");
    medium::unified_kernel_image(
        log,
        &builder_dir.join(builder::ROOT).join(medium::STUB),
        &live_dir.join(live::OS_RELEASE),
        &cmdline,
        &live_dir.join(live::KERNEL),
        &initrd,
        &efi,
    )?;
    // The firmware starts shim (EFI/BOOT/BOOTX64.EFI), shim the live system's EFI file signed
    // with the build's MOK key: with Secure Boot on once the MOK is enrolled, and as well with
    // it off.
    let signed = work.join(shim::NEXT_STAGE);
    shim::sign(
        log,
        &builder_dir.join(builder::MOK_DIR),
        signer,
        &efi,
        &signed,
        work,
    )?;
    let mut files: medium::Files = vec![
        (
            kldload::medium::ESP_SHIM.to_string(),
            shim_dir.join(shim::SHIM),
        ),
        (
            kldload::medium::ESP_MOK_MANAGER.to_string(),
            shim_dir.join(shim::MOK_MANAGER),
        ),
        (
            kldload::medium::ESP_SHIM_INFO.into(),
            shim_dir.join(shim::INFO),
        ),
        (format!("EFI/BOOT/{}", shim::NEXT_STAGE), signed.clone()),
        (
            kldload::medium::ESP_PAYLOAD.into(),
            payload_dir.join(payload::TARBALL),
        ),
        (
            kldload::medium::ESP_MANIFEST.into(),
            payload_dir.join(payload::MANIFEST),
        ),
        (
            kldload::medium::ESP_MOK.to_string(),
            builder_dir.join(builder::MOK_DIR).join("mok.der"),
        ),
    ];
    // ZFSBootMenu for installs that boot through shim: signed with the MOK key, without its
    // embedded command line (systemd's stub ignores the entry's load options under Secure Boot
    // when the file has one of its own).
    let (zbm, _) = files_zbm(&zbm_files)?;
    let uncommanded = work.join("zfsbootmenu-no-cmdline.EFI");
    run(
        log,
        &[
            "objcopy",
            "--remove-section=.cmdline",
            &zbm.to_string_lossy(),
            &uncommanded.to_string_lossy(),
        ],
    )?;
    let zbm_signed = work.join("VMLINUZ-SIGNED.EFI");
    shim::sign(
        log,
        &builder_dir.join(builder::MOK_DIR),
        signer,
        &uncommanded,
        &zbm_signed,
        work,
    )?;
    files.extend(zbm_files);
    files.push((
        kldload::medium::ESP_ZFSBOOTMENU_SIGNED.to_string(),
        zbm_signed.clone(),
    ));
    files.push((
        kldload::medium::ESP_SHIM_FALLBACK.to_string(),
        shim_dir.join(shim::FALLBACK),
    ));
    medium::disk_image(
        log,
        recipe::MEDIUM_LABEL,
        &files,
        work,
        &work.join(medium::IMAGE),
    )?;
    for f in [
        &initrd,
        &extra_cpio,
        &efi,
        &signed,
        &cmdline,
        &uncommanded,
        &zbm_signed,
    ] {
        fs::remove_file(f)?;
    }
    let _ = output(
        log,
        &[
            "sgdisk",
            "--print",
            &work.join(medium::IMAGE).to_string_lossy(),
        ],
    )?;
    Ok(())
}
