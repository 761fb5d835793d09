//! `cargo xtask <task>`: the project's tasks as a Rust program (the xtask pattern), so they run
//! the same on a laptop and in CI with nothing but cargo.
//!
//! - `build-image <distro>`: the live medium and the target payload (`image/`);
//! - `image-cache list|prune`: the build cache;
//! - `ci`: the whole test suite, as CI runs it (the README's test command);
//! - `modules`: each crate's modules and what they use, failing on an import cycle.

mod host;
mod image;
mod matrix;
mod modules;
mod progress;
mod round_trip;
mod run;
mod timings;
mod vmtest;
mod workflows;

use clap::{Parser, Subcommand};
use image::recipe::ImageDistro;
use std::path::{Path, PathBuf};
use xshell::{Shell, cmd};

#[derive(Parser)]
#[command(about = "kldload's tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(clap::Args)]
struct CacheDir {
    /// Where builds are cached (default $KLDLOAD_CACHE, else /var/cache/kldload).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

impl CacheDir {
    fn path(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .or_else(|| std::env::var_os("KLDLOAD_CACHE").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(image::cache::DEFAULT_CACHE))
    }
}

/// Where a build's inputs come from: ZFSBootMenu, the mirror, the cache.
#[derive(clap::Args)]
struct ImageSources {
    /// A finished ZFSBootMenu EFI file to put on the medium (default: ZFSBootMenu built here
    /// from its pinned source, on the image's kernel and ZFS).
    #[arg(long, env = "KLDLOAD_ZFSBOOTMENU")]
    zfsbootmenu: Option<PathBuf>,
    /// Put ZFSBootMenu's official release on the medium (downloaded, verified by its
    /// signature) instead of building it.
    #[arg(long)]
    zfsbootmenu_release: bool,
    /// ZFSBootMenu's source tarball, the v3.1.0 tag archive (default: downloaded; checked
    /// against its pinned sha256 either way).
    #[arg(long, env = "KLDLOAD_ZFSBOOTMENU_SOURCE")]
    zfsbootmenu_source: Option<PathBuf>,
    /// Debian mirror (default: this host's apt sources).
    #[arg(long, env = "KLDLOAD_MIRROR")]
    mirror: Option<String>,
    /// Build from a mirror whose Release file has expired (its Valid-Until passed: a stale
    /// mirror or a snapshot of testing): the build's `apt-get update` does not check it;
    /// nothing of it is written into what is shipped. Without it such a mirror is refused,
    /// saying so. $KLDLOAD_ALLOW_EXPIRED_ARCHIVE: 1/true/yes/on or 0/false/no/off.
    #[arg(
        long,
        env = "KLDLOAD_ALLOW_EXPIRED_ARCHIVE",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    allow_expired_archive: bool,
    #[command(flatten)]
    cache: CacheDir,
}

impl ImageSources {
    fn options(self, distro: ImageDistro, rebuild: bool) -> image::Options {
        image::Options {
            distro,
            rebuild,
            zfsbootmenu: self.zfsbootmenu,
            zfsbootmenu_release: self.zfsbootmenu_release,
            zfsbootmenu_source: self.zfsbootmenu_source,
            mirror: self.mirror,
            allow_expired_archive: self.allow_expired_archive,
            cache: self.cache.path(),
            test_zfsbootmenus: vec![],
        }
    }
}

#[derive(Subcommand)]
enum Task {
    /// Build the live medium (a GPT disk image) with the target payload, ZFS built at image time.
    BuildImage {
        /// debian (= debian-13), debian-12 or debian-14 (testing).
        #[arg(value_parser = parse_distro)]
        distro: ImageDistro,
        /// Rebuild every phase instead of reusing the cache.
        #[arg(long)]
        rebuild: bool,
        #[command(flatten)]
        sources: ImageSources,
    },
    /// Build an update for machines installed from the image: the newest kernel the archive
    /// offers with ZFS built for it and signed with the build's MOK, and ZFS's userland, as a
    /// small apt repository signed with the build's update key. Put it on a USB stick or a web
    /// server; `kldload upgrade PATH|URL` installs it into a new boot environment.
    BuildUpdate {
        /// debian (= debian-13), debian-12 or debian-14 (testing).
        #[arg(value_parser = parse_distro)]
        distro: ImageDistro,
        /// Where the kernel and ZFS come from: the image's suite, or its backports (a newer
        /// kernel series, with the newest ZFS that builds for it).
        #[arg(long, default_value = "suite")]
        from: image::update::UpdateFrom,
        /// Copy the repository into this directory (default: it stays in the build cache,
        /// whose path is printed).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        sources: ImageSources,
    },
    /// Build (or reuse) the medium, install it into a blank VM disk, boot it through ZFSBootMenu
    /// and check what was built. Results in target/vmtest/<distro>/.
    VmTest {
        /// debian (= debian-13), debian-12 or debian-14 (testing).
        #[arg(value_parser = parse_distro)]
        distro: ImageDistro,
        /// Keep the VM's disks and NVRAM for `cargo xtask vm-shell`.
        #[arg(long)]
        keep: bool,
        #[command(flatten)]
        sources: ImageSources,
        /// Also run the scenarios not marked `ci` (fixtures/scenarios/*.toml).
        #[arg(long)]
        all_scenarios: bool,
        /// Run only the VM tests whose names contain one of these (e.g. `rollback`, `layouts`,
        /// `encryption`); scenarios are then taken whether or not they are marked `ci`.
        filters: Vec<String>,
    },
    /// Reproduce one boot bug: run the scenario fixtures/scenarios/<SCENARIO>.toml in a VM and
    /// report each of its checks, with the transcript (see fixtures/scenarios/README.md).
    VmRepro {
        /// The scenario's file name without .toml (e.g. fresh-nvram); several only with
        /// --round-trip.
        #[arg(required_unless_present_any = ["from_report", "round_trip"])]
        scenarios: Vec<String>,
        /// Instead: a JSON file written by `kldload report` on a user's machine; the scenario
        /// that rebuilds that machine is written to target/vmtest/from-report/ and run.
        #[arg(long, conflicts_with = "scenarios")]
        from_report: Option<PathBuf>,
        /// With --from-report: how the machine's bug shows (login, initramfs-shell,
        /// no-boot-environments, import-fails, passphrase-again, silent); the rebuild must end
        /// so, and nothing runs when the report's facts lead elsewhere.
        #[arg(long, requires = "from_report", value_parser = parse_symptom)]
        symptom: Option<vmtests::scenario::Symptom>,
        /// The round trip of SCENARIO: it runs up to its bug (its `symptom` step) with `kldload
        /// report` taken there (from the live medium when the machine does not boot; before
        /// its last poweroff when it marks no bug), then `--from-report` of that report runs,
        /// which must end in the same symptom, and the rebuilt VM's own report must say the
        /// same of what it reproduces. Several SCENARIOs (none: every scenario that has one)
        /// run in turn, and their outcomes and times make a table
        /// (target/vmtest/round-trip/<distro>.md).
        #[arg(long, conflicts_with = "from_report")]
        round_trip: bool,
        /// debian (= debian-13), debian-12 or debian-14 (testing).
        #[arg(long, default_value = "debian", value_parser = parse_distro)]
        distro: ImageDistro,
        /// Keep the VM's disks and NVRAM for `cargo xtask vm-shell`.
        #[arg(long)]
        keep: bool,
        #[command(flatten)]
        sources: ImageSources,
    },
    /// The install matrix: on each DISTRO in turn (default: every one build-image knows), the
    /// main job and the ZFSBootMenu tests; then target/vmtest/matrix.md and matrix.json
    /// (distros as columns, checks and tests as rows, versions and phase times) and a JUnit
    /// file per distro.
    Matrix {
        /// debian (= debian-13), debian-12, debian-14 (testing); rocky-9 and freebsd-14 are
        /// plan only: their columns say so.
        #[arg(value_parser = matrix::MatrixDistro::find)]
        distros: Vec<matrix::MatrixDistro>,
        #[command(flatten)]
        sources: ImageSources,
    },
    /// Print which top-level modules each crate's modules use, and fail on an import cycle.
    Modules,
    /// Boot the last `vm-test --keep` run's installed disk again, its serial console on this
    /// terminal, for reproducing a bug by hand.
    VmShell {
        /// debian (= debian-13), debian-12 or debian-14 (testing).
        #[arg(value_parser = parse_distro)]
        distro: ImageDistro,
    },
    /// List or prune the build cache.
    ImageCache {
        #[command(subcommand)]
        action: CacheAction,
        #[command(flatten)]
        cache: CacheDir,
    },
    /// What CI runs: actionlint over .github/workflows, then every test with nextest's `ci`
    /// profile, the VM tests of `debian` included (JUnit report in target/nextest/ci/junit.xml),
    /// then one round trip of a reported bug (`vm-repro --round-trip hostid-mismatch`).
    Ci {
        /// Leave out the VM tests, the round trip and the image build (they need root and QEMU).
        #[arg(long)]
        skip_vm: bool,
        #[command(flatten)]
        sources: ImageSources,
    },
}

#[derive(Subcommand)]
enum CacheAction {
    /// Every entry with its size; `*` marks those the latest build of its distro uses.
    List,
    /// Remove entries the latest build of each distro does not use, and interrupted builds.
    Prune,
}

/// A symptom by its name in scenario files.
fn parse_symptom(name: &str) -> Result<vmtests::scenario::Symptom, String> {
    (vmtests::scenario::Symptom::ALL.into_iter())
        .find(|s| s.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = vmtests::scenario::Symptom::ALL.map(|s| s.name()).to_vec();
            format!("no symptom {name:?}; one of {}", names.join(", "))
        })
}

/// A distro named on the command line, parsed once (`debian` means debian-13).
fn parse_distro(name: &str) -> anyhow::Result<ImageDistro> {
    ImageDistro::find(name)
}

/// The workspace root (xtask lives one level below it).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// Lints the workflows, builds the medium unless `vm` is None, and runs every test, the VM
/// tests included, in one nextest run, so its summary line and JUnit report cover them all.
fn ci(sh: &Shell, vm: Option<image::Options>) -> anyhow::Result<()> {
    if cmd!(sh, "cargo nextest --version")
        .quiet()
        .ignore_stdout()
        .run()
        .is_err()
    {
        anyhow::bail!(
            "cargo-nextest is not installed: run `cargo install --locked cargo-nextest` (.ci/run does this)"
        );
    }
    workflows::lint(&project_root())?;
    host::ensure_host_packages(&host::TEST_TOOLS)?;
    let Some(opts) = vm else {
        cmd!(sh, "cargo nextest run --workspace --profile ci").run()?;
        return Ok(());
    };
    // The same run as `vm-test`'s, of the whole workspace under nextest's `ci` profile.
    let run = vmtest::run_tests(
        &opts,
        &vmtest::Selection::default(),
        vmtest::Suite::Workspace,
    )?;
    anyhow::ensure!(run.passed, "tests failed (see above)");
    // A user's report rebuilt as the same failure: the cheapest round trip whose bug is in
    // the report's facts (its scenario starts from the base install's saved login). Its first
    // half is the whole scenario, the report taken at the bug, so the `ci` profile leaves out
    // the scenario's own run.
    round_trip::several(&opts, &[ROUND_TRIP_IN_CI.to_string()], false)
}

/// The round trip `cargo xtask ci` runs after the tests.
const ROUND_TRIP_IN_CI: &str = "hostid-mismatch";

/// Entries in use: those named by each distro's current.json.
fn entries_in_use(root: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|d| std::fs::read_to_string(d.path().join("current.json")).ok())
        .filter_map(|t| serde_json::from_str::<Vec<PathBuf>>(&t).ok())
        .flatten()
        .collect()
}

fn image_cache(action: CacheAction, root: &Path) -> anyhow::Result<()> {
    let cache = image::cache::Cache::new(root.to_owned());
    let used = entries_in_use(root);
    let entries = cache.list()?;
    match action {
        CacheAction::List => {
            for (path, size) in &entries {
                let mark = if used.contains(path) { "*" } else { " " };
                println!(
                    "{mark} {:>10}  {}",
                    kldload::disk::human_size(*size),
                    path.display()
                );
            }
            println!("{} entries under {}", entries.len(), root.display());
        }
        CacheAction::Prune => {
            let mut freed = 0;
            for (path, size) in entries.into_iter().filter(|(p, _)| !used.contains(p)) {
                image::cache::remove_tree(&path)?;
                println!(
                    "removed {} ({})",
                    path.display(),
                    kldload::disk::human_size(size)
                );
                freed += size;
            }
            println!("freed {}", kldload::disk::human_size(freed));
        }
    }
    Ok(())
}

/// Exit status 2 for bad input (a report `--from-report` cannot rebuild), 1 for any other
/// failure.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e)
            if e.downcast_ref::<vmtests::from_report::BadReport>()
                .is_some() =>
        {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("Error: {e:?}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    match cli.task {
        Task::Ci { skip_vm, sources } => ci(
            &sh,
            (!skip_vm).then(|| sources.options(ImageDistro::DEFAULT, false)),
        ),
        Task::BuildImage {
            distro,
            rebuild,
            sources,
        } => {
            let out = image::build_image(&sources.options(distro, rebuild))?;
            let m = &out.manifest;
            println!(
                "medium: {} ({})",
                out.medium.display(),
                kldload::disk::human_size(out.size)
            );
            println!(
                "payload: {} {} (kernel {}, ZFS {}, modules signed by {:?}), {} packages, {}, sha256 {}",
                m.distro,
                m.suite,
                m.kernel,
                m.zfs,
                m.module_signer,
                m.packages.len(),
                kldload::disk::human_size(m.size),
                m.sha256
            );
            print!("{}", out.phases.table());
            Ok(())
        }
        Task::BuildUpdate {
            distro,
            from,
            out,
            sources,
        } => {
            let update = image::update::build_update(&image::update::UpdateOptions {
                image: sources.options(distro, false),
                from,
                out,
            })?;
            print!("{}", update.phases.table());
            image::update::print_summary(&update);
            Ok(())
        }
        Task::ImageCache { action, cache } => image_cache(action, &cache.path()),
        Task::Modules => modules::print_and_check(&project_root()),
        Task::Matrix { distros, sources } => {
            let distros = if distros.is_empty() {
                (image::recipe::DISTROS.iter())
                    .map(|d| matrix::MatrixDistro::Image(*d))
                    .collect()
            } else {
                distros
            };
            let first = distros.iter().find_map(|d| match d {
                matrix::MatrixDistro::Image(d) => Some(*d),
                matrix::MatrixDistro::PlanOnly(_) => None,
            });
            // Only plan-only distros named: no image options are needed, the first is a stand-in.
            let opts = sources.options(first.unwrap_or(image::recipe::DISTROS[0]), false);
            matrix::matrix(&distros, |distro| image::Options {
                distro,
                ..opts.clone()
            })
        }
        Task::VmShell { distro } => {
            let out = vmtest::results_dir();
            let installs = distro.installs()?;
            let dir = vmtests::run::latest_kept_run(&out, installs).ok_or_else(|| {
                anyhow::anyhow!(
                    "no kept run under {}: run `cargo xtask vm-test {} --keep` first",
                    out.join(distro.name).display(),
                    distro.name
                )
            })?;
            vmtests::run::vm_shell(installs, &dir)
        }
        Task::VmTest {
            distro,
            keep,
            sources,
            all_scenarios,
            filters,
        } => vmtest::vm_test(
            &sources.options(distro, false),
            &vmtest::Selection {
                keep,
                all_scenarios: all_scenarios || !filters.is_empty(),
                filters,
                scenario: None,
                generated: None,
                expression: None,
            },
        ),
        Task::VmRepro {
            scenarios,
            from_report,
            symptom,
            round_trip,
            distro,
            keep,
            sources,
        } => {
            let opts = sources.options(distro, false);
            match (scenarios.as_slice(), from_report) {
                (_, Some(report)) => {
                    vmtest::vm_repro_from_report(&opts, &report, keep, symptom)?.passed_or_error()
                }
                (scenarios, None) if round_trip => round_trip::several(&opts, scenarios, keep),
                ([scenario], None) => vmtest::vm_repro(&opts, scenario, keep),
                ([], None) => unreachable!("clap requires one"),
                (_, None) => anyhow::bail!(
                    "vm-repro runs one scenario (several only with --round-trip); for several, \
                     `cargo xtask vm-test {} NAME...` runs the tests whose names contain them",
                    opts.distro.name
                ),
            }
        }
    }
}
