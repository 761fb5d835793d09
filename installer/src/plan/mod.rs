//! The plan: what an install does, as data. Built by [`crate::recipe`] from a [`Config`], run by
//! [`crate::exec`], printed by [`sh`] (a script people can read and fork) or as JSON.
//!
//! [`Config`]: crate::config::Config

pub mod sh;

use serde::Serialize;
use std::path::PathBuf;

/// Every step of an install, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The distro being installed.
    pub distro: String,
    /// Where the new system is mounted while it is built.
    pub target_root: PathBuf,
    /// The target disks, as the plan names them.
    pub disks: Vec<PathBuf>,
    pub steps: Vec<Step>,
}

/// The recipe's steps; a step's id names its shell function in `kldload plan --format sh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepId {
    FetchBootMenu,
    Partition,
    PoolAndDatasets,
    BaseOs,
    SystemConfiguration,
    Initramfs,
    BootMenu,
    Finalize,
    /// `kldload upgrade`'s steps ([`crate::upgrade::plan`]).
    UpgradeBootEnvironment,
    UpgradeInstall,
    UpgradeInitramfs,
    UpgradeNextBoot,
}

impl StepId {
    pub fn name(self) -> &'static str {
        match self {
            StepId::FetchBootMenu => "fetch_boot_menu",
            StepId::Partition => "partition",
            StepId::PoolAndDatasets => "pool_and_datasets",
            StepId::BaseOs => "base_os",
            StepId::SystemConfiguration => "system_configuration",
            StepId::Initramfs => "initramfs",
            StepId::BootMenu => "boot_menu",
            StepId::Finalize => "finalize",
            StepId::UpgradeBootEnvironment => "upgrade_boot_environment",
            StepId::UpgradeInstall => "upgrade_install",
            StepId::UpgradeInitramfs => "upgrade_initramfs",
            StepId::UpgradeNextBoot => "upgrade_next_boot",
        }
    }
}

/// One step of the recipe: a title, why it exists, and its actions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub id: StepId,
    pub title: String,
    pub why: String,
    pub actions: Vec<Action>,
}

/// One thing the installer does. Commands are argv vectors, never shell strings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Run a program.
    Run {
        argv: Vec<String>,
        why: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        stdin: Option<Stdin>,
    },
    /// Write a file (parents must exist).
    WriteFile {
        path: PathBuf,
        contents: Contents,
        /// Octal permission bits.
        mode: u32,
        why: String,
    },
    /// Check a file's sha256 before using it.
    VerifySha256 {
        path: PathBuf,
        sha256: String,
        why: String,
    },
    /// Download ZFSBootMenu's official release into `work`, verify its signed checksum list
    /// with the pinned signing key, pick the asset (`kernel_series`, else the newest long-term
    /// one listed), check its sha256 against the list, and install it at `dest` (0644).
    DownloadRelease {
        releases_url: String,
        version: String,
        kernel_series: Option<String>,
        work: PathBuf,
        dest: PathBuf,
        why: String,
    },
    /// Replace the command line embedded in a ZFSBootMenu EFI file (its `.cmdline` section, in
    /// place; a signed file, or one without room, is left as it is and that is logged), as
    /// `kldload set-zfsbootmenu-cmdline FILE LINE` does. Done in-process, so the plan needs no
    /// `kldload` on PATH.
    EmbedCmdline {
        file: PathBuf,
        line: String,
        why: String,
    },
    /// Add `files` of `root` (paths inside it, such as `etc/zfs/keys/rpool.key`) to every
    /// initramfs image in `root`/boot (`initrd.img-*`) without rebuilding it, as
    /// `kldload add-to-initramfs ROOT FILE...` does ([`crate::initrd::add`]). Done in-process.
    AddToInitramfs {
        root: PathBuf,
        files: Vec<String>,
        why: String,
    },
    /// Check that the initramfs `image` has zfs.ko and the hostid in `hostid_file` (the
    /// system's /etc/hostid), as `kldload check-initramfs IMAGE HOSTID_FILE` does. Done
    /// in-process ([`crate::initrd::readings`]).
    CheckInitramfs {
        image: PathBuf,
        hostid_file: PathBuf,
        why: String,
    },
    /// Write the firmware variable `name` (its efivarfs file name, `Name-GUID`) with `text`:
    /// non-volatile, boot-service and runtime access, in one write as efivarfs requires (an
    /// existing one is removed first: efivarfs keeps variables it does not know immutable).
    SetEfiVariable {
        name: String,
        text: String,
        why: String,
    },
    /// Remove the firmware variable `name` (its efivarfs file name) if it exists.
    RemoveEfiVariable { name: String, why: String },
    /// From here on, append the install log to this file (on the target); `None` stops it.
    LogTo { path: Option<PathBuf>, why: String },
}

/// What a command reads on its standard input.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Stdin {
    /// Text given in the plan.
    Text { text: String },
    /// A file streamed in, with progress counted in bytes (the payload).
    File { path: PathBuf },
}

/// A file's contents: text in the plan, or a secret only the installer holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Contents {
    Text {
        text: String,
    },
    /// A secret the installer is given when it runs (the pool's passphrase), named by the
    /// environment variable the printed script reads it from. The plan never holds its value.
    Secret {
        variable: String,
    },
}

impl Action {
    /// A command with its reason.
    pub fn run<S: AsRef<str>>(argv: impl IntoIterator<Item = S>, why: impl Into<String>) -> Action {
        Action::Run {
            argv: argv.into_iter().map(|s| s.as_ref().to_string()).collect(),
            why: why.into(),
            stdin: None,
        }
    }

    /// A command fed `stdin`.
    pub fn run_with_stdin<S: AsRef<str>>(
        argv: impl IntoIterator<Item = S>,
        stdin: Stdin,
        why: impl Into<String>,
    ) -> Action {
        match Action::run(argv, why) {
            Action::Run { argv, why, .. } => Action::Run {
                argv,
                why,
                stdin: Some(stdin),
            },
            _ => unreachable!(),
        }
    }

    /// A text file.
    pub fn write(
        path: impl Into<PathBuf>,
        text: impl Into<String>,
        mode: u32,
        why: impl Into<String>,
    ) -> Action {
        Action::WriteFile {
            path: path.into(),
            contents: Contents::Text { text: text.into() },
            mode,
            why: why.into(),
        }
    }

    pub fn why(&self) -> &str {
        match self {
            Action::Run { why, .. }
            | Action::WriteFile { why, .. }
            | Action::VerifySha256 { why, .. }
            | Action::DownloadRelease { why, .. }
            | Action::EmbedCmdline { why, .. }
            | Action::AddToInitramfs { why, .. }
            | Action::CheckInitramfs { why, .. }
            | Action::SetEfiVariable { why, .. }
            | Action::RemoveEfiVariable { why, .. }
            | Action::LogTo { why, .. } => why,
        }
    }

    /// The argv of a command action.
    pub fn argv(&self) -> Option<&[String]> {
        match self {
            Action::Run { argv, .. } => Some(argv),
            _ => None,
        }
    }
}

impl Plan {
    /// Every argv in the plan, in order (for tests and reviews).
    pub fn commands(&self) -> impl Iterator<Item = &[String]> {
        self.steps
            .iter()
            .flat_map(|s| s.actions.iter().filter_map(Action::argv))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan always serializes")
    }
}
