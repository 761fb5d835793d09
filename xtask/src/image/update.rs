//! `cargo xtask build-update <distro>`: an update for machines installed from the image, made
//! where the image is made. It holds the newest kernel the archive offers (the image's suite,
//! or with `--from backports` its backports) for which there is a ZFS that builds, ZFS's
//! modules built for it by DKMS and signed with the build's MOK (the builder's, so a machine
//! that enrolled it loads them), and ZFS's userland, as packages in a small apt repository
//! signed with the build's update key ([`super::update_key`]). `kldload upgrade` installs it
//! into a new boot environment.
//!
//! Two overlays do the work, so the cached roots stay as they were: one on the builder root
//! (the kernel and its headers, DKMS), one on the payload root (what an installed system lacks
//! of the update: apt downloads exactly that).

use super::builder::{self, ZfsDoesNotBuild};
use super::cache::{Cache, Key};
use super::recipe::ImageDistro;
use super::{Options, cached_phase, payload, update_key};
use crate::progress::Phases;
use crate::run::{ChrootMounts, Log, Overlay, apt_update, chroot, chroot_output, output_in, run};
use anyhow::{Context, Result, bail};
use kldload::upgrade::{UPDATE_PACKAGE, UpdateInfo, update::compatibility_features};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// Bump when the update's build steps change in a way its inputs do not show.
const UPDATE_RECIPE_VERSION: &str = "1";

pub use vmtests::test_update::UpdateFrom;

/// The archive suite apt takes the update from: the image's own, or its backports.
pub fn archive_suite(from: UpdateFrom, distro: &ImageDistro) -> String {
    match from {
        UpdateFrom::Suite => distro.suite.to_string(),
        UpdateFrom::Backports => format!("{}-backports", distro.suite),
    }
}

/// What `build-update` is asked for.
pub struct UpdateOptions {
    pub image: Options,
    pub from: UpdateFrom,
    /// Copy the repository here (a directory on a USB stick, or one a web server serves).
    pub out: Option<PathBuf>,
}

/// What a build made, kept as update.json in its cache entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Built {
    pub distro: String,
    pub suite: String,
    pub kernel: String,
    pub kernel_package_version: String,
    /// ZFS's version and its Debian package's.
    pub zfs: String,
    pub zfs_package_version: String,
    pub module_signer: String,
    /// The update key's fingerprint.
    pub signed_by: String,
    /// The repository's packages: (file name, size).
    pub packages: Vec<(String, u64)>,
    /// A newer kernel the archive has that the update's ZFS does not support, if any.
    pub newer_kernel_left_out: Option<String>,
}

/// The update: its repository and what it holds.
pub struct Update {
    /// The update's cache entry.
    pub entry: PathBuf,
    pub repo: PathBuf,
    pub built: Built,
    pub phases: Phases,
}

/// File names in the update's cache entry.
const REPO: &str = "repo";
const INFO: &str = "update.json";

/// Builds the update for the image `opts.image` describes (built first, or reused).
pub fn build_update(opts: &UpdateOptions) -> Result<Update> {
    let mut image = super::build_image(&opts.image)?;
    let mut update = build_update_for(opts, &image)?;
    image.phases.timings.append(&mut update.phases.timings);
    update.phases = image.phases;
    Ok(update)
}

/// Builds the update for the image build `image` (made with `opts.image`).
pub fn build_update_for(opts: &UpdateOptions, image: &super::Output) -> Result<Update> {
    crate::host::ensure_host_packages(&UPDATE_HOST_TOOLS)?;
    let mut phases = Phases::default();
    let distro = opts.image.distro;
    let cache = Cache::new(opts.image.cache.clone());
    let work = cache.root.join(distro.name).join("update-work");
    let log = Log::new(cache.root.join(distro.name).join("update.log"))?;
    let mirror = super::choose_mirror(opts.image.mirror.as_deref(), &distro, &log)?;
    let builder_built = builder::load(&image.builder_dir)?;
    let suite = archive_suite(opts.from, &distro);

    // Leftovers of an interrupted run: unmount and remove them.
    let builder_overlay = work.join("builder");
    let payload_overlay = work.join("payload");
    for dir in [&builder_overlay, &payload_overlay] {
        let _ = std::process::Command::new("umount")
            .args(["--recursive", "--lazy"])
            .arg(dir.join("root"))
            .status();
        super::cache::remove_tree(dir)?;
    }

    let overlay = Overlay::new(
        &log,
        &image.builder_dir.join(builder::ROOT),
        &builder_overlay,
    )?;
    let root = overlay.merged.clone();
    let choice = {
        let _mounts = ChrootMounts::new(&log, &root)?;
        phases.run("update: versions", Some(log.path.clone()), || {
            choose(&log, &root, &distro, &mirror, opts.from, &builder_built).map(|c| (c, false))
        })?
    };
    if choice.kernel == builder_built.kernel && choice.zfs_package_version_is_the_images {
        bail!(
            "nothing newer in {suite}: the image already has its newest kernel ({}) and ZFS \
             ({}).{}",
            builder_built.kernel,
            builder_built.zfs,
            match opts.from {
                UpdateFrom::Suite => " A newer kernel series: --from backports",
                UpdateFrom::Backports => "",
            }
        );
    }
    let mut key = Key::new("update");
    key.add(UPDATE_RECIPE_VERSION)
        .add(&image.build_id)
        .add(&suite)
        .add(&choice.kernel)
        .add(&choice.kernel_package_version)
        .add(&choice.zfs_package_version);
    let entry = cache.entry(distro.name, "update", &key);
    let name = format!("update (kernel {}, DKMS)", choice.kernel);
    cached_phase(
        &mut phases,
        &name,
        &entry,
        opts.image.rebuild,
        |log, tmp| {
            let inputs = Inputs {
                distro: &distro,
                mirror: &mirror,
                suite: &suite,
                choice: &choice,
                builder_dir: &image.builder_dir,
                builder: &builder_built,
                payload_dir: &image.payload_dir,
                payload_overlay: &payload_overlay,
            };
            build(log, &root, &inputs, tmp)
        },
    )?;
    overlay.remove()?;
    let built: Built = serde_json::from_str(
        &fs::read_to_string(entry.join(INFO)).context("reading the update's update.json")?,
    )?;
    let mut repo = entry.join(REPO);
    if let Some(out) = &opts.out {
        copy_repo(&log, &repo, out)?;
        repo = out.clone();
    }
    Ok(Update {
        entry,
        repo,
        built,
        phases,
    })
}

/// Host tools the update's build runs beyond the image's.
const UPDATE_HOST_TOOLS: [(&str, &str); 1] = [("apt-ftparchive", "apt-utils")];

/// The versions an update is made of.
#[derive(Debug, Clone)]
struct Choice {
    kernel: String,
    kernel_package_version: String,
    zfs_package_version: String,
    /// The ZFS package is the one the image has.
    zfs_package_version_is_the_images: bool,
    newer_kernel_left_out: Option<String>,
}

/// Reads the archive (the builder overlay's apt, `suite` added): the candidate zfs-dkms, the
/// newest kernel series it supports (its META's Linux-Maximum), and that series' newest kernel.
fn choose(
    log: &Log,
    root: &Path,
    distro: &ImageDistro,
    mirror: &str,
    from: UpdateFrom,
    image: &builder::Built,
) -> Result<Choice> {
    if from == UpdateFrom::Backports {
        add_suite(root, mirror, &archive_suite(from, distro))?;
    }
    apt_update(log, root)?;
    let target = target_release(distro, from);
    let mut policy = vec!["apt-cache"];
    policy.extend(target.iter().map(String::as_str));
    policy.extend(["policy", "zfs-dkms"]);
    let policy = chroot_output(log, root, &policy)?;
    let (installed, candidate) = policy_versions(&policy)
        .with_context(|| format!("no zfs-dkms candidate in apt's policy:\n{policy}"))?;
    let meta = if installed.as_deref() == Some(candidate.as_str()) {
        fs::read_to_string(root.join(format!("usr/src/zfs-{}/META", image.zfs)))?
    } else {
        zfs_dkms_meta(log, root, &target, &candidate)?
    };
    let max = linux_maximum(&meta).context("zfs-dkms's META has no Linux-Maximum")?;
    let names = chroot_output(log, root, &["apt-cache", "pkgnames", "linux-image-"])?;
    let (kernel, newer_kernel_left_out) = choose_kernel(names.lines(), max)
        .with_context(|| format!("no kernel of series {}.{} or older", max.0, max.1))?;
    let show = chroot_output(
        log,
        root,
        &[
            "apt-cache",
            "show",
            "--no-all-versions",
            &format!("linux-image-{kernel}"),
        ],
    )?;
    let kernel_package_version = kldload::upgrade::update::stanza_fields(&show)
        .remove("version")
        .context("apt-cache show printed no Version")?;
    Ok(Choice {
        kernel,
        kernel_package_version,
        zfs_package_version_is_the_images: installed.as_deref() == Some(candidate.as_str()),
        zfs_package_version: candidate,
        newer_kernel_left_out,
    })
}

/// apt-get's `-t SUITE` for the series (none for the image's own suite).
fn target_release(distro: &ImageDistro, from: UpdateFrom) -> Vec<String> {
    match from {
        UpdateFrom::Suite => distro
            .zfs_target_release()
            .into_iter()
            .map(str::to_string)
            .collect(),
        UpdateFrom::Backports => vec!["-t".into(), archive_suite(from, distro)],
    }
}

/// Adds `suite` to a root's apt sources.
fn add_suite(root: &Path, mirror: &str, suite: &str) -> Result<()> {
    fs::write(
        root.join("etc/apt/sources.list.d/kldload-update.sources"),
        format!(
            "Types: deb\nURIs: {mirror}\nSuites: {suite}\nComponents: main contrib\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ),
    )?;
    Ok(())
}

/// The META file of the zfs-dkms `version` (downloaded, not installed).
fn zfs_dkms_meta(log: &Log, root: &Path, target: &[String], version: &str) -> Result<String> {
    let package = format!("zfs-dkms={version}");
    let mut argv = vec!["apt-get", "install", "--download-only", "--yes"];
    argv.extend(target.iter().map(String::as_str));
    argv.push(&package);
    chroot(log, root, &argv)?;
    let archives = root.join("var/cache/apt/archives");
    let deb = fs::read_dir(&archives)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("zfs-dkms_"))
        })
        .with_context(|| format!("apt downloaded no zfs-dkms into {}", archives.display()))?;
    let unpacked = root.join("tmp/zfs-dkms");
    builder::extract_deb(log, &deb, &unpacked)?;
    let src = unpacked.join("usr/src");
    let meta = fs::read_dir(&src)?
        .filter_map(|e| e.ok().map(|e| e.path().join("META")))
        .find(|m| m.is_file())
        .with_context(|| format!("no META under {}", src.display()))?;
    let text = fs::read_to_string(meta)?;
    fs::remove_dir_all(&unpacked)?;
    Ok(text)
}

/// The installed and candidate versions in `apt-cache policy`'s output for one package.
fn policy_versions(policy: &str) -> Option<(Option<String>, String)> {
    let field = |name: &str| {
        policy
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let installed = field("Installed:").filter(|v| v != "(none)");
    let candidate = field("Candidate:").filter(|v| v != "(none)")?;
    Some((installed, candidate))
}

/// The newest kernel series an OpenZFS release builds for (its META's `Linux-Maximum`).
fn linux_maximum(meta: &str) -> Option<(u32, u32)> {
    let value = meta
        .lines()
        .find_map(|l| l.strip_prefix("Linux-Maximum:"))?
        .trim();
    let (major, minor) = value.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The newest generic amd64 kernel (`linux-image-X.Y.Z+debN-amd64`, no cloud, rt or unsigned
/// flavour) among package names whose series is at most `max`, and the newest one left out
/// for being newer than `max`, if any.
fn choose_kernel<'a>(
    names: impl Iterator<Item = &'a str>,
    max: (u32, u32),
) -> Option<(String, Option<String>)> {
    let mut kernels: Vec<((u32, u32, u32), String)> = names
        .filter_map(|name| {
            let release = name.strip_prefix("linux-image-")?;
            let (version, flavour) = release.split_once('+')?;
            let abi = flavour.strip_suffix("-amd64")?;
            if !abi.starts_with("deb") || abi.contains('-') {
                return None;
            }
            let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
            let v = (parts.next()??, parts.next()??, parts.next()??);
            Some((v, release.to_string()))
        })
        .collect();
    kernels.sort();
    let newest_overall = kernels.last().cloned();
    let chosen = kernels
        .into_iter()
        .rfind(|((major, minor, _), _)| (*major, *minor) <= max)?;
    let left_out = newest_overall
        .filter(|(v, _)| *v > chosen.0)
        .map(|(_, k)| k);
    Some((chosen.1, left_out))
}

/// Everything the update's build reads.
struct Inputs<'a> {
    distro: &'a ImageDistro,
    mirror: &'a str,
    suite: &'a str,
    choice: &'a Choice,
    builder_dir: &'a Path,
    builder: &'a builder::Built,
    payload_dir: &'a Path,
    payload_overlay: &'a Path,
}

/// Builds the update into `entry`: modules in the builder overlay at `root`, then the
/// packages an installed system needs, the update's own package, the signed repository.
fn build(log: &Log, root: &Path, i: &Inputs, entry: &Path) -> Result<()> {
    let c = i.choice;
    let from_target = target_release_for(i);
    let (zfs, modules_deb) = {
        let _mounts = ChrootMounts::new(log, root)?;
        if c.kernel != i.builder.kernel {
            // DKMS builds for every kernel with headers: only the update's is wanted.
            chroot(
                log,
                root,
                &[
                    "apt-get",
                    "purge",
                    "--yes",
                    "linux-headers-amd64",
                    &format!("linux-headers-{}", i.builder.kernel),
                ],
            )?;
        }
        let kernel_pkg = format!("linux-image-{}={}", c.kernel, c.kernel_package_version);
        let headers_pkg = format!("linux-headers-{}={}", c.kernel, c.kernel_package_version);
        let zfs_pkg = format!("zfs-dkms={}", c.zfs_package_version);
        let mut install = vec!["apt-get", "install", "--yes", "--no-install-recommends"];
        install.extend(from_target.iter().map(String::as_str));
        install.extend([kernel_pkg.as_str(), headers_pkg.as_str(), zfs_pkg.as_str()]);
        let installed = chroot(log, root, &install);
        let has_zfs_ko = fs::read_dir(root.join(format!("lib/modules/{}/updates/dkms", c.kernel)))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with("zfs.ko"));
        if !has_zfs_ko {
            if let Some(make_log) = builder::dkms_make_log(root) {
                let text = fs::read_to_string(&make_log).unwrap_or_default();
                return Err(ZfsDoesNotBuild {
                    kernel: c.kernel.clone(),
                    zfs: c.zfs_package_version.clone(),
                    errors: builder::dkms_error_lines(&text),
                    make_log,
                }
                .into());
            }
            installed?;
            bail!("DKMS built no zfs.ko for {}", c.kernel);
        }
        installed?;
        builder::package_signed_modules(log, root, &c.kernel, &i.builder.signer, entry)?
    };
    let repo = entry.join(REPO);
    fs::create_dir_all(&repo)?;
    fs::rename(entry.join(&modules_deb), repo.join(&modules_deb))?;
    download_for_installed_systems(log, i, &repo, &modules_deb)?;
    let features = zfs_features(log, &repo, &i.payload_dir.join(payload::ROOT), &zfs)?;
    let info = UpdateInfo {
        distro: i.distro.name.to_string(),
        suite: i.suite.to_string(),
        kernel: c.kernel.clone(),
        zfs: zfs.clone(),
        module_signer: i.builder.signer.clone(),
        features,
    };
    let modules_name = modules_deb
        .split('_')
        .next()
        .context("the modules package's file name")?;
    update_package(log, entry, &repo, &info, c, modules_name)?;
    sign_repository(log, i.builder_dir, &repo)?;
    let mut packages: Vec<(String, u64)> = fs::read_dir(&repo)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".deb"))
        .map(|e| {
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            (e.file_name().to_string_lossy().into_owned(), size)
        })
        .collect();
    packages.sort();
    let built = Built {
        distro: info.distro,
        suite: info.suite,
        kernel: info.kernel,
        kernel_package_version: c.kernel_package_version.clone(),
        zfs,
        zfs_package_version: c.zfs_package_version.clone(),
        module_signer: info.module_signer,
        signed_by: update_key::fingerprint(log, i.builder_dir)?,
        packages,
        newer_kernel_left_out: c.newer_kernel_left_out.clone(),
    };
    fs::write(entry.join(INFO), serde_json::to_string_pretty(&built)?)?;
    fs::copy(entry.join(INFO), repo.join(INFO))?;
    Ok(())
}

fn target_release_for(i: &Inputs) -> Vec<String> {
    if i.suite == i.distro.suite {
        target_release(i.distro, UpdateFrom::Suite)
    } else {
        vec!["-t".into(), i.suite.to_string()]
    }
}

/// The packages a system installed from the image lacks of the update, downloaded by apt in an
/// overlay of the payload root (the installed system as the image made it) into `repo`.
fn download_for_installed_systems(
    log: &Log,
    i: &Inputs,
    repo: &Path,
    modules_deb: &str,
) -> Result<()> {
    let c = i.choice;
    let overlay = Overlay::new(log, &i.payload_dir.join(payload::ROOT), i.payload_overlay)?;
    let root = overlay.merged.clone();
    {
        let _mounts = ChrootMounts::new(log, &root)?;
        if i.suite != i.distro.suite {
            add_suite(&root, i.mirror, i.suite)?;
        }
        // The payload's root has no resolver of its own (it is the target's to make).
        let _ = fs::remove_file(root.join("etc/resolv.conf"));
        fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf"))?;
        apt_update(log, &root)?;
        fs::copy(repo.join(modules_deb), root.join("tmp").join(modules_deb))?;
        let local = format!("/tmp/{modules_deb}");
        let kernel_pkg = format!("linux-image-{}={}", c.kernel, c.kernel_package_version);
        let userland: Vec<String> = ZFS_USERLAND
            .iter()
            .map(|p| format!("{p}={}", c.zfs_package_version))
            .collect();
        let mut argv = vec![
            "apt-get",
            "install",
            "--download-only",
            "--yes",
            "--no-install-recommends",
        ];
        let target = target_release_for(i);
        argv.extend(target.iter().map(String::as_str));
        argv.extend([local.as_str(), kernel_pkg.as_str()]);
        argv.extend(userland.iter().map(String::as_str));
        chroot(log, &root, &argv)?;
        let archives = root.join("var/cache/apt/archives");
        for e in fs::read_dir(&archives)?.filter_map(|e| e.ok()) {
            if e.file_name().to_string_lossy().ends_with(".deb") {
                fs::copy(e.path(), repo.join(e.file_name()))?;
            }
        }
    }
    overlay.remove()
}

/// ZFS's userland packages, kept at the version of the modules.
const ZFS_USERLAND: [&str; 3] = ["zfsutils-linux", "zfs-initramfs", "zfs-zed"];

/// The pool features the update's ZFS imports: its zfsutils-linux's compatibility file for its
/// release (from the repository's package, else the payload's, when the update keeps the
/// image's ZFS).
fn zfs_features(log: &Log, repo: &Path, payload_root: &Path, zfs: &str) -> Result<Vec<String>> {
    let series: Vec<&str> = zfs.split('.').take(2).collect();
    let file = format!(
        "usr/share/zfs/compatibility.d/openzfs-{}-linux",
        series.join(".")
    );
    let deb = fs::read_dir(repo)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("zfsutils-linux_"))
        });
    let text = match deb {
        Some(deb) => {
            let unpacked = repo.with_file_name("zfsutils");
            builder::extract_deb(log, &deb, &unpacked)?;
            let text = fs::read_to_string(unpacked.join(&file));
            fs::remove_dir_all(&unpacked)?;
            text
        }
        None => fs::read_to_string(payload_root.join(&file)),
    }
    .with_context(|| format!("ZFS {zfs} has no compatibility file {file}"))?;
    Ok(compatibility_features(&text))
}

/// The update's own package ([`UPDATE_PACKAGE`]): depends on exactly its kernel, modules and
/// userland, and carries [`UpdateInfo`] in its control fields.
fn update_package(
    log: &Log,
    entry: &Path,
    repo: &Path,
    info: &UpdateInfo,
    c: &Choice,
    modules_name: &str,
) -> Result<()> {
    let version = build_stamp()?;
    let pkg = entry.join("update-pkg");
    fs::create_dir_all(pkg.join("DEBIAN"))?;
    let mut depends = vec![
        format!("linux-image-{} (= {})", c.kernel, c.kernel_package_version),
        format!("{modules_name} (= {})", info.zfs),
    ];
    depends.extend(
        ZFS_USERLAND
            .iter()
            .map(|p| format!("{p} (= {})", c.zfs_package_version)),
    );
    fs::write(
        pkg.join("DEBIAN/control"),
        format!(
            "Package: {UPDATE_PACKAGE}\nVersion: {version}\nArchitecture: all\n\
             Maintainer: kldload <kldload@localhost>\nDepends: {}\n{}Section: admin\n\
             Priority: optional\nDescription: kldload update: Linux {} and OpenZFS {}\n \
             Made by cargo xtask build-update for {}; installed by kldload upgrade into a new\n \
             boot environment.\n",
            depends.join(", "),
            info.control_fields(),
            info.kernel,
            info.zfs,
            info.distro,
        ),
    )?;
    let file = repo.join(format!("{UPDATE_PACKAGE}_{version}_all.deb"));
    builder::build_deb(log, &pkg, &file)
}

/// The update package's version: the build's time, UTC, as YYYYMMDDHHMMSS (a later update
/// is a newer version to apt).
fn build_stamp() -> Result<String> {
    let out = std::process::Command::new("date")
        .args(["--utc", "+%Y%m%d%H%M%S"])
        .output()?;
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// A flat apt repository in `repo`: Packages, Release, and InRelease signed with the builder
/// entry's update key.
fn sign_repository(log: &Log, builder_dir: &Path, repo: &Path) -> Result<()> {
    let packages = output_in(log, repo, &["apt-ftparchive", "packages", "."])?;
    fs::write(repo.join("Packages"), packages)?;
    let release = output_in(
        log,
        repo,
        &[
            "apt-ftparchive",
            "-o",
            "APT::FTPArchive::Release::Origin=kldload",
            "-o",
            "APT::FTPArchive::Release::Label=kldload update",
            "release",
            ".",
        ],
    )?;
    fs::write(repo.join("Release"), release)?;
    update_key::clearsign(
        log,
        builder_dir,
        &repo.join("Release"),
        &repo.join("InRelease"),
    )
}

/// Copies the repository to `out` (made if missing; files of an earlier update there replaced).
fn copy_repo(log: &Log, repo: &Path, out: &Path) -> Result<()> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let src = format!("{}/.", repo.display());
    run(
        log,
        &[
            "cp",
            "--recursive",
            "--no-preserve=ownership",
            &src,
            &out.to_string_lossy(),
        ],
    )
}

/// The update as a USB stick holds it, for VM tests: a FAT disk image with the repository in
/// its `update` directory ([`vmtests::test_update`]), made once in the update's cache entry.
pub fn stick_image(update: &Update) -> Result<PathBuf> {
    let image = update.entry.join("stick.img");
    if image.is_file() {
        return Ok(image);
    }
    let log = Log::new(update.entry.join("stick.log"))?;
    let repo = update.entry.join(REPO);
    // FAT's clusters and tables, and room to spare.
    let kib = super::cache::du(&repo) / 1024 * 11 / 10 + 64 * 1024;
    let partial = image.with_extension("partial");
    let _ = fs::remove_file(&partial);
    let img = partial.to_string_lossy().into_owned();
    run(
        &log,
        &[
            "mkfs.vfat",
            "-F",
            "32",
            "-n",
            "KLDUPDATE",
            "-C",
            &img,
            &kib.to_string(),
        ],
    )?;
    let dest = format!("::/{}", vmtests::test_update::STICK_DIR);
    run(&log, &["mmd", "-i", &img, &dest])?;
    let files: Vec<PathBuf> = fs::read_dir(&repo)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let mut argv = vec!["mcopy", "-i", &img];
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    argv.extend(names.iter().map(String::as_str));
    argv.push(&dest);
    run(&log, &argv)?;
    fs::rename(&partial, &image)?;
    Ok(image)
}

/// What the update holds and how to use it, for the person who built it.
pub fn print_summary(update: &Update) {
    let b = &update.built;
    let total: u64 = b.packages.iter().map(|(_, size)| size).sum();
    println!(
        "update: {} ({} packages, {})",
        update.repo.display(),
        b.packages.len(),
        kldload::disk::human_size(total)
    );
    println!(
        "  for {} from {}: kernel {} ({}), ZFS {} ({}), modules signed by {:?}",
        b.distro,
        b.suite,
        b.kernel,
        b.kernel_package_version,
        b.zfs,
        b.zfs_package_version,
        b.module_signer
    );
    if let Some(newer) = &b.newer_kernel_left_out {
        println!(
            "  left out: kernel {newer}, newer than ZFS {} builds for",
            b.zfs
        );
    }
    println!("  signed with the update key {}", b.signed_by);
    for (name, size) in &b.packages {
        println!("  {:>10}  {name}", kldload::disk::human_size(*size));
    }
    println!(
        "Copy the directory onto a USB stick or serve it over http(s); then, on the machine:\n  \
         kldload upgrade /path/to/it   (or: kldload upgrade https://host/path/)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_generic_kernel_of_a_series_zfs_supports_is_chosen() {
        let names = [
            "linux-image-6.12.117+deb13-amd64",
            "linux-image-7.2.12+deb13-amd64",
            "linux-image-7.2.9+deb13-amd64",
            "linux-image-7.2.13+deb13-cloud-amd64",
            "linux-image-7.2.14+deb13-rt-amd64",
            "linux-image-7.2.15+deb13-amd64-unsigned",
            "linux-image-7.3.4+deb13-amd64",
            "linux-image-amd64",
            "linux-image-7.2.16+deb13-amd64-dbg",
        ];
        assert_eq!(
            choose_kernel(names.into_iter(), (7, 2)),
            Some((
                "7.2.12+deb13-amd64".into(),
                Some("7.3.4+deb13-amd64".into())
            ))
        );
        assert_eq!(
            choose_kernel(names.into_iter(), (7, 3)),
            Some(("7.3.4+deb13-amd64".into(), None))
        );
        assert_eq!(choose_kernel(names.into_iter(), (6, 1)), None);
    }

    #[test]
    fn zfs_dkms_says_the_newest_kernel_series_it_builds_for() {
        // The head of zfs-dkms 2.4.4's META, as trixie-backports ships it.
        let meta = "Meta:          1\nName:          zfs\nVersion:       2.4.4\n\
                    Linux-Maximum: 7.2\nLinux-Minimum: 4.18\n";
        assert_eq!(linux_maximum(meta), Some((7, 2)));
        assert_eq!(linux_maximum("Name: zfs\n"), None);
    }

    #[test]
    fn apts_policy_gives_installed_and_candidate() {
        let policy = "zfs-dkms:\n  Installed: 2.3.9-0+deb13u1\n  Candidate: 2.4.4-1~bpo13+1\n  \
                      Version table:\n     2.4.4-1~bpo13+1 990\n";
        assert_eq!(
            policy_versions(policy),
            Some((Some("2.3.9-0+deb13u1".into()), "2.4.4-1~bpo13+1".into()))
        );
        assert_eq!(
            policy_versions("zfs-dkms:\n  Installed: (none)\n  Candidate: 2.3.9-0+deb13u1\n"),
            Some((None, "2.3.9-0+deb13u1".into()))
        );
        assert_eq!(
            policy_versions("zfs-dkms:\n  Installed: (none)\n  Candidate: (none)\n"),
            None
        );
    }
}
