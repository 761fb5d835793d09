//! The `kldload` command: argument parsing only; the work is in the library (`app.rs`).

use clap::{Parser, Subcommand, ValueEnum};
use kldload::app::{self, AppError, Overrides};
use kldload::config::Config;
use kldload::disk::{LinuxSystem, SystemView};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Installs a ZFS-on-root system from a TOML answer file.
#[derive(Parser)]
#[command(
    name = "kldload",
    version = kldload::version::line(),
    about,
    long_about = None,
    after_help = "KLDLOAD_LOG=debug shows on stderr each command kldload runs and how it ended."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// Reads the answer file at `path`, or from standard input when `path` is `-`.
fn load_answers(path: &Path) -> Result<Config, AppError> {
    if path != Path::new("-") {
        return Ok(Config::load(path)?);
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
        .map_err(|e| AppError::BadOption(format!("cannot read the answer file from stdin: {e}")))?;
    Ok(Config::parse(&text, "<stdin>")?)
}

#[derive(clap::Args)]
struct Resolve {
    /// The answer file (`-`: read it from standard input).
    #[arg(long, short)]
    config: PathBuf,
    /// Install from this package mirror (default: the answer file's, else the live system's apt sources).
    #[arg(long)]
    mirror: Option<String>,
    /// ZFSBootMenu EFI file to install (default: the answer file's, the medium's, the build cache's, the signed release).
    #[arg(long, env = "KLDLOAD_ZFSBOOTMENU")]
    zfsbootmenu: Option<PathBuf>,
}

impl Resolve {
    fn load(&self) -> Result<(Config, Overrides), AppError> {
        let config = load_answers(&self.config)?;
        let overrides = Overrides {
            mirror: self.mirror.clone(),
            zfsbootmenu: self.zfsbootmenu.clone(),
        };
        Ok((config, overrides))
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// An annotated bash script, one function per step.
    Sh,
    /// The plan as JSON.
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print every command the install would run, without running anything.
    Plan {
        #[command(flatten)]
        resolve: Resolve,
        /// How to print it.
        #[arg(long, value_enum, default_value = "sh")]
        format: Format,
    },
    /// Install: wipe the answer file's disks and build the system on them.
    Install {
        #[command(flatten)]
        resolve: Resolve,
        /// Do not ask before wiping the disks.
        #[arg(long)]
        yes: bool,
        /// Wipe disks that hold a partition table, a ZFS label or a filesystem.
        #[arg(long)]
        force: bool,
        /// Install a distribution that no VM test has booted (rocky-9, freebsd-14): planned,
        /// never proven.
        #[arg(long)]
        experimental: bool,
    },
    /// Check an answer file against this machine (parse, disks, safety checks); writes nothing.
    Validate {
        /// The answer file (`-`: read it from standard input).
        #[arg(long, short)]
        config: PathBuf,
        /// Accept disks that hold old data, as `install --force` would.
        #[arg(long)]
        force: bool,
        /// Check the answer file alone (its keys and the rules across them), anywhere: not its
        /// disks, the passphrase's source or ZFSBootMenu's file, which only the machine it
        /// installs has.
        #[arg(long, conflicts_with = "force")]
        offline: bool,
    },
    /// Print the answer file's JSON Schema (docs/answers.md is the same as a reference).
    Schema,
    /// What the live medium runs at boot: install from an answer file given on the kernel
    /// command line (kldload.answers=PATH), through QEMU's fw_cfg, or on the medium. Not for
    /// people (`kldload install` is), so not listed in --help.
    #[command(hide = true)]
    Unattended {
        /// Install from this answer file instead of looking for one: what the medium does at
        /// boot, run again from its shell (the VM tests' saved live system does this).
        #[arg(long)]
        answers: Option<PathBuf>,
    },
    /// On an installed system: check what the next boot depends on, and say how to fix it.
    ///
    /// That the hostid is one value in /etc/hostid, the initramfs, ZFSBootMenu's
    /// spl.spl_hostid, the SPL, the pool's label and ZFSBootMenu's EFI file; that ZFSBootMenu's
    /// ZFS reads every feature the pool has enabled; that the kernel ZFSBootMenu boots this boot
    /// environment with by default has zfs.ko in its initramfs (and, encrypted, its key file);
    /// that the boot environment's own org.zfsbootmenu:commandline does not hide its parent's
    /// console; that every ESP has the fallback copy. Exit status: 0 all well, 1 a problem (each
    /// named with its fix), 3 when / is not ZFS (not a running kldload system: nothing checked).
    Doctor {
        /// The root pool.
        #[arg(long, default_value = "rpool")]
        pool: String,
        /// Print nothing when all is well (as the boot-time unit runs it).
        #[arg(long)]
        quiet: bool,
    },
    /// Show what a ZFSBootMenu EFI file carries: command line, hostid, the features it reads.
    ///
    /// What an install must agree with: its embedded command line, the hostid it imports
    /// with, the pool features its ZFS reads.
    InspectZfsbootmenu {
        /// The EFI file (default: the one on this system's ESP).
        #[arg(default_value = kldload::doctor::INSTALLED_ZFSBOOTMENU)]
        file: PathBuf,
        /// As JSON.
        #[arg(long)]
        json: bool,
        /// Also keep what was read where `kldload doctor` looks first
        /// (/var/cache/kldload/zfsbootmenu-image.json), so it need not read the file again until
        /// the file changes. Only for the file on this system's ESP (the default).
        #[arg(long)]
        remember: bool,
    },
    /// Show what initramfs images carry: zfs.ko, and the hostid in their etc/hostid.
    ///
    /// What a boot from them depends on: without zfs.ko the root pool cannot be imported, and
    /// a hostid other than the pool's makes the import refuse a pool it takes as another
    /// host's.
    InspectInitramfs {
        /// The images (default: every /boot/initrd.img-*).
        files: Vec<PathBuf>,
        /// Also keep what was read where `kldload doctor` looks first
        /// (/var/cache/kldload/initramfs.json), so it need not read the images again until they
        /// change. Only for the default images (leave FILES out).
        #[arg(long)]
        remember: bool,
    },
    /// Replace the command line embedded in a ZFSBootMenu EFI file.
    ///
    /// What it runs with when the firmware passes no load options (the fallback path
    /// EFI/BOOT/BOOTX64.EFI). A signed file, or one whose section has no room for the line, is
    /// left as it is, and that is said.
    SetZfsbootmenuCmdline {
        /// The EFI file, changed in place.
        file: PathBuf,
        /// The new command line.
        line: String,
    },
    /// Add files to every initramfs image in ROOT/boot (initrd.img-*) without rebuilding it.
    ///
    /// A small uncompressed archive before the compressed one, which the kernel unpacks and
    /// lsinitramfs lists. What an encrypted install does with the pool's key file.
    AddToInitramfs {
        /// The system the files and images are in (`/` on a running system).
        root: PathBuf,
        /// The files, as paths inside ROOT (etc/zfs/keys/rpool.key).
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Install a kernel and ZFS update into a new boot environment; the running one is unchanged.
    ///
    /// SOURCE is what `cargo xtask build-update` made: its directory (on a USB stick, say) or
    /// its http(s) URL. apt checks its signature against this machine's update key and each
    /// package against the signed lists; the update must be for this distro, its zfs.ko signed
    /// with this machine's MOK and its ZFS able to import the pool. Only then is the running
    /// boot environment snapshotted and cloned, the update installed into the clone, and its
    /// initramfs checked for zfs.ko and the hostid. The clone boots next, on trial: kept (and
    /// made the pool's bootfs) once it has booted to the end; if it does not, the following
    /// boot is the previous boot environment again, by itself (with a ZFSBootMenu that lacks
    /// kldload's hook, the clone is made the bootfs and going back is picking the previous one
    /// in the menu). Exit status: 0 done, 2 refused (nothing changed), 1 failed (its new boot
    /// environment removed again).
    Upgrade {
        /// The update: a directory or an http(s) URL.
        #[arg(required_unless_present = "list")]
        source: Option<String>,
        /// Only show the boot environments: kernel, ZFS, when made, state.
        #[arg(long, conflicts_with = "source")]
        list: bool,
        /// Check the update, then print the plan as a script instead of running it.
        #[arg(long)]
        dry_run: bool,
    },
    /// After a boot: keep a boot environment on trial that got here, mark one whose try ran
    /// out failed (kldload-boot-trial.service runs it).
    #[command(hide = true)]
    BootTrial,
    /// Check that an initramfs image has zfs.ko and the hostid in HOSTID_FILE, as an upgrade does.
    #[command(hide = true)]
    CheckInitramfs {
        /// The initramfs image.
        image: PathBuf,
        /// The /etc/hostid whose value it must carry.
        hostid_file: PathBuf,
    },
    /// Describe this machine's boot in one JSON file, for a bug report or a VM that rebuilds it.
    ///
    /// For `cargo xtask vm-repro --from-report`: ZFSBootMenu, disks, pools, datasets, each boot
    /// environment's kernels and initramfs, hostids, firmware entries, the ESPs' files. Only
    /// reads (another boot environment or ESP is mounted read-only for a moment), never user
    /// data or keys; serials, WWNs, host and user names, IP and MAC addresses are redacted.
    Report {
        /// Where to write the JSON.
        #[arg(long, short, default_value = "kldload-report.json")]
        output: PathBuf,
        /// Keep serial numbers, WWNs, names and addresses (for a report you keep yourself).
        #[arg(long)]
        no_redact: bool,
    },
    /// The pools this boot imports after the initramfs: those /etc/zfs/zpool.cache names that
    /// are not imported yet. Exit status 1 only when there are none: the boot then need not wait
    /// for udev to settle before importing (the installed system's systemd-udev-settle.service
    /// asks this); 0 when there are, or when it cannot tell. A boot-time helper, not listed in
    /// --help.
    #[command(hide = true)]
    PoolsToImport,
    /// List this machine's disks: by-id names, sizes, models, serials and what is on them.
    Disks {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the shell completion script for SHELL (the medium and the installed system have
    /// bash's, zsh's and fish's installed).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page, roff (`kldload man | man -l -`; installed as kldload(8)).
    Man,
}

/// The command-line interface people use, for completions and the manual: without the hidden
/// boot-time entry points (clap_complete would offer them), and with a version line that does
/// not depend on where it is printed (the manual is made on the build host).
fn command_for_people() -> clap::Command {
    let all = <Cli as clap::CommandFactory>::command();
    let version = format!(
        "{} (commit {})",
        env!("CARGO_PKG_VERSION"),
        kldload::version::COMMIT
    );
    let mut visible = clap::Command::new("kldload").version(version);
    if let Some(about) = all.get_about() {
        visible = visible.about(about.clone());
    }
    if let Some(after) = all.get_after_help() {
        visible = visible.after_help(after.clone());
    }
    visible.subcommands(all.get_subcommands().filter(|c| !c.is_hide_set()).cloned())
}

/// kldload(8): one page, each command a section of it with its synopsis and options (not a
/// page per command, which clap_mangen's own list would point to).
fn manual(w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let people = command_for_people();
    let page = clap_mangen::Man::new(people.clone()).section("8");
    page.render_title(w)?;
    page.render_name_section(w)?;
    page.render_synopsis_section(w)?;
    page.render_description_section(w)?;
    page.render_options_section(w)?;
    for command in people.get_subcommands() {
        let name = format!("kldload {}", command.get_name());
        writeln!(w, ".SH \"{}\"", name.to_uppercase())?;
        let section = clap_mangen::Man::new(command.clone().bin_name(&name));
        let mut text = Vec::new();
        section.render_description_section(&mut text)?;
        section.render_synopsis_section(&mut text)?;
        section.render_options_section(&mut text)?;
        let text = String::from_utf8_lossy(&text)
            .replace(".SH DESCRIPTION\n", "")
            .replace(".SH ", ".SS ");
        w.write_all(text.as_bytes())?;
    }
    page.render_extra_section(w)?;
    page.render_version_section(w)
}

fn run(cli: Cli) -> Result<(), AppError> {
    let system = LinuxSystem;
    match cli.command {
        Cmd::Plan { resolve, format } => {
            let (config, overrides) = resolve.load()?;
            let plan = app::make_plan(&config, &overrides, &system, std::path::Path::new("/"))?;
            match format {
                Format::Sh => print!("{}", kldload::plan::sh::render(&plan)),
                Format::Json => println!("{}", plan.to_json()),
            }
        }
        Cmd::Install {
            resolve,
            yes,
            force,
            experimental,
        } => {
            let (config, overrides) = resolve.load()?;
            let consent = app::Consent {
                yes,
                force,
                experimental,
            };
            app::install(&config, &overrides, &system, consent)?;
        }
        Cmd::Validate {
            config,
            force,
            offline,
        } => {
            let config = load_answers(&config)?;
            if offline {
                print!("{}", app::validate_offline(&config));
            } else {
                print!("{}", app::validate(&config, &system, force)?);
            }
        }
        Cmd::Schema => {
            let schema = kldload::config::reference::schema();
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).expect("serializable")
            );
        }
        Cmd::Unattended { answers } => std::process::exit(kldload::unattended::run(answers)),
        Cmd::Doctor { pool, quiet } => {
            use kldload::doctor::{
                diagnose, read_boot_environment, read_fallback, read_hostids, read_zbm,
            };
            let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
            if let Some((source, fstype)) = kldload::doctor::root_not_zfs(&mounts) {
                eprint!(
                    "{}",
                    kldload::doctor::root_not_zfs_message(&source, &fstype)
                );
                std::process::exit(kldload::doctor::EXIT_ROOT_NOT_ZFS);
            }
            let mut diagnosis = diagnose(&read_hostids(&pool), &pool);
            diagnosis.add_zfsbootmenu(&read_zbm(&pool), &pool);
            diagnosis.add_fallback(read_fallback());
            diagnosis.add_boot_environment(read_boot_environment().as_ref());
            diagnosis
                .add_boot_environments(kldload::doctor::read_boot_environments(&pool).as_ref());
            if !(quiet && diagnosis.healthy()) {
                print!("{}", diagnosis.report());
            }
            if !diagnosis.healthy() {
                std::process::exit(1);
            }
        }
        Cmd::InspectZfsbootmenu {
            file,
            json,
            remember,
        } => {
            let installed = Path::new(kldload::doctor::INSTALLED_ZFSBOOTMENU);
            let image = if remember {
                if file != installed {
                    return Err(AppError::BadOption(format!(
                        "--remember keeps the readings of {} only (the file `kldload doctor` \
                         checks), not of {}: leave FILE out",
                        installed.display(),
                        file.display()
                    )));
                }
                kldload::doctor::remember_zbm_image(
                    &file,
                    Path::new(kldload::doctor::ZBM_READ_CACHE),
                )
                .map_err(AppError::BadOption)?
            } else {
                kldload::zbm::image::read(&file).map_err(|e| AppError::BadOption(e.to_string()))?
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&image).expect("serializable")
                );
            } else {
                print!("{}", image.summary());
            }
        }
        Cmd::InspectInitramfs { files, remember } => {
            use kldload::initrd::readings;
            if remember && !files.is_empty() {
                return Err(AppError::BadOption(
                    "--remember keeps the readings of the images in /boot that `kldload doctor` \
                     checks: leave FILES out"
                        .into(),
                ));
            }
            let files = if files.is_empty() {
                readings::boot_images(Path::new("/boot"))
            } else {
                files
            };
            if files.is_empty() {
                return Err(AppError::BadOption(
                    "no /boot/initrd.img-* here: name the initramfs images to read".into(),
                ));
            }
            let mut cache = readings::Cache::load(Path::new(readings::CACHE));
            for file in &files {
                let read = if remember {
                    cache.remember(file)
                } else {
                    readings::read(file).map_err(|e| e.to_string())
                };
                let r = read.map_err(AppError::BadOption)?;
                println!("{}: {}", file.display(), r.summary());
            }
            if remember {
                cache.save().map_err(|e| {
                    AppError::BadOption(format!("writing {}: {e}", readings::CACHE))
                })?;
            }
        }
        Cmd::SetZfsbootmenuCmdline { file, line } => {
            let shown = file.display();
            match kldload::zbm::image::set_cmdline(&file, &line) {
                Ok(Ok(())) => println!("{shown}: embedded command line {line:?}"),
                Ok(Err(kept)) => eprintln!(
                    "kldload: {shown}: embedded command line left as it is: {kept}; firmware \
                     entries still pass the line as load options"
                ),
                Err(e) => return Err(AppError::BadOption(e.to_string())),
            }
        }
        Cmd::AddToInitramfs { root, files } => {
            let images = kldload::initrd::add::add_to_every_image(&root, &files)
                .map_err(|e| AppError::BadOption(e.to_string()))?;
            for image in images {
                println!("{}: {} added", image.display(), files.join(" "));
            }
        }
        Cmd::Report { output, no_redact } => {
            let report = kldload::report::collect(kldload::report::Options { redact: !no_redact });
            let json = serde_json::to_string_pretty(&report).expect("serializable");
            std::fs::write(&output, json + "\n").map_err(|e| {
                AppError::BadOption(format!("cannot write {}: {e}", output.display()))
            })?;
            print!("{}", report.summary());
            println!(
                "kldload report: written to {}{}",
                output.display(),
                if report.redacted {
                    " (serials, WWNs, host and user names, addresses redacted)"
                } else {
                    " (not redacted: it holds serials, names and addresses)"
                }
            );
        }
        Cmd::Upgrade {
            source,
            list,
            dry_run,
        } => {
            use kldload::upgrade::machine;
            let done = match (list, source) {
                (true, _) => machine::list().map(|table| {
                    print!("{table}");
                    None
                }),
                (false, Some(source)) => machine::upgrade(&source, dry_run),
                (false, None) => unreachable!("clap requires SOURCE without --list"),
            };
            match done {
                Ok(Some(up)) => match up.next_boot {
                    kldload::upgrade::plan::NextBoot::Trial => println!(
                        "{} has kernel {} and ZFS {}; it boots next, on trial: it is kept (and \
                         becomes the pool's bootfs) once it has booted to the end, and if it \
                         does not, the boot after it is {} again, by itself.",
                        up.new, up.info.kernel, up.info.zfs, up.running
                    ),
                    kldload::upgrade::plan::NextBoot::Bootfs => println!(
                        "{} has kernel {} and ZFS {}; it boots next (the pool's bootfs). {} is \
                         as it was. This ZFSBootMenu has no trial hook, so going back is by \
                         hand: if the new one does not boot, pick {} in ZFSBootMenu's menu \
                         (press Escape during its countdown).",
                        up.new, up.info.kernel, up.info.zfs, up.running, up.running
                    ),
                },
                Ok(None) => {}
                Err(e) => {
                    eprintln!("kldload: {e}");
                    std::process::exit(e.exit_code());
                }
            }
        }
        Cmd::BootTrial => match kldload::upgrade::machine::boot_trial() {
            Ok(Some(said)) => println!("kldload: {said}"),
            Ok(None) => {}
            Err(e) => {
                eprintln!("kldload: settling the boot trial: {e}");
                std::process::exit(1);
            }
        },
        Cmd::CheckInitramfs { image, hostid_file } => {
            match kldload::initrd::readings::check(&image, &hostid_file) {
                Ok(line) => println!("{line}"),
                Err(e) => {
                    eprintln!("kldload: {e}");
                    std::process::exit(1);
                }
            }
        }
        Cmd::PoolsToImport => {
            let pools = kldload::zpool_cache::read_pools_to_import();
            println!("kldload pools-to-import: {}", pools.describe());
            if !pools.must_wait() {
                std::process::exit(1);
            }
        }
        Cmd::Completions { shell } => {
            let mut command = command_for_people();
            clap_complete::generate(shell, &mut command, "kldload", &mut std::io::stdout());
        }
        Cmd::Man => {
            let written = manual(&mut std::io::stdout());
            // A reader that stops early (`| head`) is not an error.
            match written {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(AppError::BadOption(format!("writing the manual page: {e}")));
                }
                _ => {}
            }
        }
        Cmd::Disks { json } => {
            let disks = system
                .disks()
                .map_err(|e| AppError::BadOption(format!("cannot list disks: {e}")))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&disks).expect("serializable")
                );
            } else {
                print!("{}", kldload::disk::disks_table(&disks));
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("KLDLOAD_LOG"))
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kldload: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command people see has a one-line summary, and every option of it a help line.
    #[test]
    fn every_command_and_option_says_what_it_does() {
        let mut missing = Vec::new();
        for command in command_for_people().get_subcommands() {
            let about = command
                .get_about()
                .map(|a| a.to_string())
                .unwrap_or_default();
            if about.is_empty() || about.contains('\n') {
                missing.push(format!("{}: summary {about:?}", command.get_name()));
            }
            for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
                if arg.get_help().is_none() {
                    missing.push(format!("{} {}", command.get_name(), arg.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "no help: {missing:#?}");
    }
}
