//! The answer file: TOML, parsed with serde into a typed, validated [`Config`].
//!
//! Field-level rules live in the value types ([`names`], [`size`]), so a bad value is reported by
//! the parser with its line and key. Rules that span several keys live in [`Config::validate`].
//! `fixtures/answers/*.toml` are complete examples; every key is documented below.

pub mod names;
pub mod size;

pub mod datasets;
pub mod reference;
pub use datasets::Dataset;
use names::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use size::{Ashift, ByteSize, EspSize, GIB, MIB, SwapSize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The hostid written to the target and the live system. ZFSBootMenu imports pools with this
/// value and hands it to the kernel it boots (`spl.spl_hostid`), so using it everywhere keeps
/// /etc/hostid, the initramfs, the SPL and the pool label in agreement (see ARCHITECTURE.md).
pub const ZFSBOOTMENU_HOSTID: u32 = 0x00ba_b10c;

/// A validated answer file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The installed system's host name.
    pub hostname: Hostname,
    /// Which system to install.
    #[serde(default)]
    pub distro: Distro,
    /// Which disks to use and how.
    pub disks: DiskConfig,
    /// The pool and its pool-wide properties.
    #[serde(default)]
    pub pool: PoolConfig,
    /// Native encryption.
    #[serde(default)]
    pub encryption: EncryptionConfig,
    /// Datasets to add, or properties to add to the recipe's datasets (same name).
    #[serde(default)]
    pub datasets: Vec<DatasetConfig>,
    /// How root logs in.
    #[serde(default)]
    pub root: RootAccess,
    /// Where the base system comes from.
    #[serde(default)]
    pub source: InstallSource,
    /// The boot menu.
    #[serde(default)]
    pub zfsbootmenu: ZfsBootMenuConfig,
    /// Whether the machine boots through shim, so that it boots with Secure Boot on.
    #[serde(default)]
    pub secure_boot: SecureBootConfig,
    /// The installed system's network.
    #[serde(default)]
    pub network: NetworkConfig,
    /// The installed system's time zone.
    #[serde(default = "default_timezone")]
    pub timezone: Timezone,
    /// The installed system's locale (LANG).
    #[serde(default = "default_locale")]
    pub locale: Locale,
    /// What an unattended install on the live medium does when it succeeds.
    #[serde(default)]
    pub after_install: AfterInstall,
    /// What an unattended install on the live medium does when it fails. The live system runs
    /// from memory, so powering it off would take the error on the console with it; the shell
    /// keeps it (an answer file that cannot be read always leaves the shell).
    #[serde(default = "default_after_failure")]
    pub after_failure: AfterInstall,
}

fn default_after_failure() -> AfterInstall {
    AfterInstall::Shell
}

fn default_timezone() -> Timezone {
    Timezone::new("UTC").expect("valid")
}
fn default_locale() -> Locale {
    Locale::new("C.UTF-8").expect("valid")
}

/// A system kldload knows how to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum Distro {
    /// Debian 13 "trixie".
    #[default]
    #[serde(rename = "debian-13", alias = "debian", alias = "trixie")]
    Debian13,
    /// Debian 12 "bookworm".
    #[serde(rename = "debian-12", alias = "bookworm")]
    Debian12,
    /// Debian 14 "forky", Debian testing until its release: the newest kernel and OpenZFS,
    /// where a kernel that outruns ZFS shows first.
    #[serde(rename = "debian-14", alias = "forky")]
    Debian14,
    /// Rocky Linux 9 (RHEL family: dnf, dracut). Planned, never booted by a VM test:
    /// `kldload install` takes it only with `--experimental`.
    #[serde(rename = "rocky-9")]
    Rocky9,
    /// FreeBSD 14 (base.txz and kernel.txz, its own loader). Planned, never booted by a VM
    /// test: `kldload install` takes it only with `--experimental`.
    #[serde(rename = "freebsd-14")]
    FreeBsd14,
}

impl Distro {
    pub const ALL: [Distro; 5] = [
        Distro::Debian13,
        Distro::Debian12,
        Distro::Debian14,
        Distro::Rocky9,
        Distro::FreeBsd14,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Distro::Debian13 => "debian-13",
            Distro::Debian12 => "debian-12",
            Distro::Debian14 => "debian-14",
            Distro::Rocky9 => "rocky-9",
            Distro::FreeBsd14 => "freebsd-14",
        }
    }
    /// Whether VM tests boot its installs: `cargo xtask build-image` makes a medium for it and
    /// `cargo xtask vm-test` installs from it and boots the result through ZFSBootMenu (xtask
    /// holds its list to this). The others are planned from a mirror the user names, proven
    /// by the golden tests only, and installed only with `--experimental`.
    pub fn booted_in_vm(self) -> bool {
        match self {
            Distro::Debian13 | Distro::Debian12 | Distro::Debian14 => true,
            Distro::Rocky9 | Distro::FreeBsd14 => false,
        }
    }
    pub fn family(self) -> Family {
        match self {
            Distro::Debian13 | Distro::Debian12 | Distro::Debian14 => Family::Debian,
            Distro::Rocky9 => Family::Rhel,
            Distro::FreeBsd14 => Family::FreeBsd,
        }
    }
}

/// Distros that install the same way: the recipe's steps differ by family, not by release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// debootstrap/apt, initramfs-tools, systemd-networkd; booted by ZFSBootMenu.
    Debian,
    /// dnf --installroot, dracut, NetworkManager; booted by ZFSBootMenu.
    Rhel,
    /// base.txz + kernel.txz, rc.conf; booted by FreeBSD's own loader.efi (ZFSBootMenu boots Linux only).
    FreeBsd,
}

/// A distro by its name (`debian-13`, ...), as [`Distro::name`] writes it.
impl std::str::FromStr for Distro {
    type Err = String;
    fn from_str(name: &str) -> Result<Distro, String> {
        Distro::ALL
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Distro::ALL.iter().map(|d| d.name()).collect();
                format!("no distro {name:?}: kldload knows {}", known.join(", "))
            })
    }
}

impl fmt::Display for Distro {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the pool's disks are arranged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One disk: all of it usable, nothing survives its loss.
    #[default]
    Single,
    /// Every disk holds a copy: the size of one disk, survives all but one.
    Mirror,
    /// Single parity: the size of all but one disk, survives one.
    Raidz1,
    /// Double parity: the size of all but two disks, survives any two.
    Raidz2,
    /// Disks side by side: the size of all of them, and the pool is lost with any one.
    Stripe,
}

impl Layout {
    /// Its name in an answer file (`layout = "mirror"`).
    pub fn name(self) -> &'static str {
        match self {
            Layout::Single => "single",
            Layout::Mirror => "mirror",
            Layout::Raidz1 => "raidz1",
            Layout::Raidz2 => "raidz2",
            Layout::Stripe => "stripe",
        }
    }
    /// The fewest disks the layout makes sense with.
    pub fn min_disks(self) -> usize {
        match self {
            Layout::Single => 1,
            Layout::Mirror | Layout::Stripe => 2,
            Layout::Raidz1 => 3,
            Layout::Raidz2 => 4,
        }
    }
    /// The vdev type word for `zpool create`: none for one disk or disks side by side.
    pub fn vdev_word(self) -> Option<&'static str> {
        match self {
            Layout::Single | Layout::Stripe => None,
            Layout::Mirror => Some("mirror"),
            Layout::Raidz1 => Some("raidz1"),
            Layout::Raidz2 => Some("raidz2"),
        }
    }
    /// Roughly what the pool holds on disks of `sizes` bytes (before ZFS's own overhead): the
    /// redundant layouts use each disk up to the smallest one's size; a stripe all of each.
    pub fn usable_bytes(self, sizes: &[u64]) -> u64 {
        let smallest = sizes.iter().copied().min().unwrap_or(0);
        let n = sizes.len() as u64;
        match self {
            Layout::Single | Layout::Mirror => smallest,
            Layout::Raidz1 => smallest * n.saturating_sub(1),
            Layout::Raidz2 => smallest * n.saturating_sub(2),
            Layout::Stripe => sizes.iter().sum(),
        }
    }

    /// Whether the layout uses each disk only up to the smallest one's size.
    pub fn bounded_by_smallest(self) -> bool {
        matches!(self, Layout::Mirror | Layout::Raidz1 | Layout::Raidz2)
    }
}

/// The target disks: named by path, or chosen by a filter on udev properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// How the pool's disks are arranged.
    #[serde(default)]
    pub layout: Layout,
    /// Disks by path; a /dev/disk/by-id link survives reboots and re-cabling, /dev/sda may not.
    #[serde(default)]
    pub paths: Vec<DevicePath>,
    /// Or: pick the disks whose udev properties match.
    pub filter: Option<DiskFilter>,
    /// How many disks the filter must match (default: the layout's minimum).
    pub count: Option<usize>,
    /// The EFI system partition's size on each disk.
    #[serde(default = "default_esp_size")]
    pub esp_size: EspSize,
}

fn default_esp_size() -> EspSize {
    EspSize::new(ByteSize(512 * MIB)).expect("valid")
}

/// A filter on udev properties. Every given field must match; text fields take shell-style
/// globs (`*`, `?`), matched against the whole value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskFilter {
    /// ID_SERIAL_SHORT or ID_SERIAL.
    pub serial: Option<GlobPattern>,
    /// ID_MODEL.
    pub model: Option<GlobPattern>,
    /// A /dev/disk/by-id name (the file name, without the directory).
    pub by_id: Option<GlobPattern>,
    /// The smallest disk to take.
    pub min_size: Option<ByteSize>,
    /// The largest disk to take.
    pub max_size: Option<ByteSize>,
}

/// The pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// The pool's name.
    #[serde(default = "default_pool_name")]
    pub name: PoolName,
    /// log2 of the sector size ZFS writes: 12 (4 KiB) suits every current disk.
    #[serde(default = "default_ashift")]
    pub ashift: Ashift,
    /// The compression every dataset inherits.
    #[serde(default = "default_compression")]
    pub compression: Compression,
    /// A swap zvol of this size (none by default).
    pub swap_size: Option<SwapSize>,
    /// The pool's features, exactly: it is created with these enabled (ZFS enables the features
    /// they depend on with them) and no other (`zpool create -d`), for a reader that knows no
    /// others (an older system that imports it too, a user's pool reproduced from its report).
    /// Left out: every feature that both ZFSBootMenu's ZFS and the installed system's read
    /// (`compatibility=`).
    pub features: Option<Vec<FeatureName>>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            name: default_pool_name(),
            ashift: default_ashift(),
            compression: default_compression(),
            swap_size: None,
            features: None,
        }
    }
}

impl PoolConfig {
    /// Whether the pool is created with feature `name` enabled: every feature the readers
    /// share when `features` is left out.
    pub fn has_feature(&self, name: &str) -> bool {
        self.features
            .as_ref()
            .is_none_or(|list| list.iter().any(|f| f.as_str() == name))
    }
}

fn default_pool_name() -> PoolName {
    PoolName::new("rpool").expect("valid")
}
fn default_ashift() -> Ashift {
    Ashift::new(12).expect("valid")
}
fn default_compression() -> Compression {
    Compression::new("lz4").expect("valid")
}

/// `[encryption]`: OpenZFS native encryption, unlocked with a passphrase typed at ZFSBootMenu's
/// prompt (once: the booted system's initramfs carries a key file). The passphrase itself is
/// never in the answer file, which gets printed, copied and committed: it comes from
/// `passphrase_file`, `$KLDLOAD_POOL_PASSPHRASE`, or on the live medium from QEMU's fw_cfg or
/// the medium (`crate::passphrase`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Encrypt (default: no).
    #[serde(default)]
    pub enabled: bool,
    /// Which datasets are encrypted.
    #[serde(default)]
    pub datasets: EncryptedDatasets,
    /// The cipher.
    #[serde(default)]
    pub cipher: Cipher,
    /// How the key is given.
    #[serde(default)]
    pub keyformat: KeyFormat,
    /// A file on the installing system holding the passphrase (one line).
    pub passphrase_file: Option<FilePath>,
}

/// Which datasets an encrypted install encrypts. Either way one passphrase, typed once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EncryptedDatasets {
    /// The pool's root dataset is the encryption root: every dataset, one key.
    #[default]
    All,
    /// `ROOT` (every boot environment) and `home` are two encryption roots with the same
    /// passphrase; `var`, `var/log`, `tmp` and the pool's root dataset stay unencrypted, so
    /// datasets made there later (VM images, received backups) need no key, and home's key can
    /// later be changed apart from the system's.
    RootAndHome,
}

impl EncryptedDatasets {
    /// The encryption roots, as paths under the pool ("" is the pool's root dataset).
    pub fn encryption_roots(self) -> &'static [&'static str] {
        match self {
            EncryptedDatasets::All => &[""],
            EncryptedDatasets::RootAndHome => &["ROOT", "home"],
        }
    }
}

impl EncryptionConfig {
    /// The encryption root of the dataset at `path` under `pool` ("" is the pool's root
    /// dataset), or None when it is not encrypted.
    pub fn encryption_root(&self, pool: &str, path: &str) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let root = self.datasets.encryption_roots().iter().find(|root| {
            root.is_empty()
                || path == **root
                || path
                    .strip_prefix(**root)
                    .is_some_and(|r| r.starts_with('/'))
        })?;
        Some(dataset_name(pool, root))
    }
}

/// The name of the dataset at `path` under `pool`: "" is the pool's root dataset itself.
pub fn dataset_name(pool: &str, path: &str) -> String {
    if path.is_empty() {
        pool.to_string()
    } else {
        format!("{pool}/{path}")
    }
}

/// The cipher: AES-256-GCM, OpenZFS's default and what ZFSBootMenu's guides use (fast on any
/// CPU with AES-NI).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Cipher {
    #[default]
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
}

/// How the key is given: a passphrase, the only format a person can type at ZFSBootMenu's
/// prompt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyFormat {
    #[default]
    Passphrase,
}

/// A value that must never be printed: a plan shows where it goes, not what it is.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<secret>")
    }
}

/// A dataset to add, or extra properties for one of the recipe's datasets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Relative to the pool, e.g. "srv" or "home".
    pub name: DatasetPath,
    /// Where it is mounted (default: inherited from its parent, as ZFS does).
    pub mountpoint: Option<Mountpoint>,
    /// ZFS properties set on it, by name (`zfs create -o name=value`).
    #[serde(default)]
    pub properties: BTreeMap<PropertyName, PropertyValue>,
}

/// Root's credentials. At least one is needed, or nobody can log in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RootAccess {
    /// A crypt(3) hash (`openssl passwd -6`), never the password.
    pub password_hash: Option<PasswordHash>,
    /// Public keys that may log in as root over SSH.
    #[serde(default)]
    pub ssh_authorized_keys: Vec<SshPublicKey>,
}

/// Where the base system comes from: the medium's prebuilt image (default), or a mirror.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallSource {
    /// A payload tarball (zstd) made by `cargo xtask build-image`, by its absolute path.
    pub image: Option<FilePath>,
    /// Install from this package mirror instead (debootstrap, dnf, or FreeBSD's dist files).
    pub mirror: Option<MirrorUrl>,
    /// rocky-9: the OpenZFS repository for EL9 (its kmod packages), e.g. ".../epel/9/kmod/x86_64/".
    pub zfs_repo: Option<MirrorUrl>,
}

/// A mirror URL (http, https, or file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MirrorUrl(String);

impl JsonSchema for MirrorUrl {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MirrorUrl".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        reference::string_schema(&[" A package mirror's URL: http://, https:// or file:/."])
    }
}

impl MirrorUrl {
    pub fn new(url: impl Into<String>) -> Result<Self, String> {
        let url = url.into();
        let scheme_ok = ["http://", "https://", "file:/"]
            .iter()
            .any(|s| url.starts_with(s));
        if !scheme_ok || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "mirror URL {url:?} is not valid: give an http://, https:// or file:/ URL without spaces"
            ));
        }
        Ok(MirrorUrl(url.trim_end_matches('/').to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for MirrorUrl {
    type Error = String;
    fn try_from(v: String) -> Result<Self, String> {
        MirrorUrl::new(v)
    }
}
impl From<MirrorUrl> for String {
    fn from(v: MirrorUrl) -> String {
        v.0
    }
}
impl fmt::Display for MirrorUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// ZFSBootMenu: where its EFI file comes from and the command lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ZfsBootMenuConfig {
    /// Which EFI file to install: `"built"`, `"release"` or an absolute path. Left out: the
    /// built one where there is one (kldload's live medium), else the release.
    pub source: Option<ZbmChoice>,
    /// Or a URL to download it from; `sha256` is then required.
    pub url: Option<HttpUrl>,
    /// The downloaded file's sha256, checked before it is used.
    pub sha256: Option<Sha256Hex>,
    /// With the release: the EFI file built on this kernel series (default: the newest
    /// long-term one the signed list has).
    pub kernel_series: Option<KernelSeries>,
    /// ZFSBootMenu's own command line: the firmware entries' load options (which replace the
    /// embedded one), and embedded in the installed file too, for the fallback path.
    #[serde(default = "default_zbm_commandline")]
    pub commandline: KernelCommandLine,
    /// Seconds the menu counts down before booting the default environment (zbm.timeout; left
    /// out when `commandline` has `zbm.skip`, `zbm.show` or a `zbm.timeout` of its own).
    #[serde(default = "default_zbm_timeout")]
    pub timeout: i32,
    /// A serial console such as "ttyS0,115200", for the menu and the installed system.
    pub serial_console: Option<SerialConsole>,
    /// The installed kernel's command line (`org.zfsbootmenu:commandline` on <pool>/ROOT).
    #[serde(default = "default_kernel_commandline")]
    pub kernel_commandline: KernelCommandLine,
}

impl Default for ZfsBootMenuConfig {
    fn default() -> Self {
        ZfsBootMenuConfig {
            source: None,
            url: None,
            sha256: None,
            kernel_series: None,
            commandline: default_zbm_commandline(),
            timeout: default_zbm_timeout(),
            serial_console: None,
            kernel_commandline: default_kernel_commandline(),
        }
    }
}

/// Which ZFSBootMenu EFI file the installer puts on the ESP (`zfsbootmenu.source`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ZbmChoice {
    /// `"built"`: the one `cargo xtask build-image` built from ZFSBootMenu's pinned source on
    /// the image's own kernel and ZFS, as the live medium carries it.
    Built,
    /// `"release"`: the official release, verified by ZFSBootMenu's signing key (the build
    /// cache's verified copy, else downloaded).
    Release,
    /// An absolute path: that EFI file (copied, with the load options embedded unless signed).
    File(PathBuf),
}

impl JsonSchema for ZbmChoice {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ZbmChoice".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        reference::string_schema(&[
            " `\"built\"` (the medium's, built from ZFSBootMenu's pinned source on the image's",
            " kernel and ZFS), `\"release\"` (the official release, verified by its signing key)",
            " or the absolute path of a ZFSBootMenu EFI file.",
        ])
    }
}

impl TryFrom<String> for ZbmChoice {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "built" => Ok(ZbmChoice::Built),
            "release" => Ok(ZbmChoice::Release),
            path if path.starts_with('/') && !path.chars().any(char::is_control) => {
                Ok(ZbmChoice::File(path.into()))
            }
            other => Err(format!(
                "{other:?} is no ZFSBootMenu source: give \"built\" (the medium's, built from \
                 source at image time), \"release\" (the official release, verified) or the \
                 absolute path of a ZFSBootMenu EFI file"
            )),
        }
    }
}
impl From<ZbmChoice> for String {
    fn from(v: ZbmChoice) -> String {
        match v {
            ZbmChoice::Built => "built".into(),
            ZbmChoice::Release => "release".into(),
            ZbmChoice::File(path) => path.to_string_lossy().into_owned(),
        }
    }
}

/// What the release build embeds: with load options set, nothing of it remains unless repeated.
fn default_zbm_commandline() -> KernelCommandLine {
    KernelCommandLine::new("quiet loglevel=0 nomodeset").expect("valid")
}
fn default_zbm_timeout() -> i32 {
    10
}
fn default_kernel_commandline() -> KernelCommandLine {
    KernelCommandLine::new("quiet").expect("valid")
}

/// The network: DHCP on every wired interface, unless an interface is given a static address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// DHCP on every wired interface not configured below.
    #[serde(default = "default_true")]
    pub dhcp: bool,
    /// Interfaces with a static address.
    #[serde(default, rename = "static")]
    pub static_interfaces: Vec<StaticInterface>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            dhcp: true,
            static_interfaces: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

/// A static address for one interface, chosen by name (or glob) or by MAC address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticInterface {
    /// The interface by name (or glob); this or `mac`.
    pub name: Option<InterfaceName>,
    /// The interface by MAC address; this or `name`.
    pub mac: Option<MacAddress>,
    /// Address with prefix length, e.g. "192.0.2.10/24".
    pub address: IpWithPrefix,
    /// The default route's gateway.
    pub gateway: Option<IpAddr>,
    /// DNS servers.
    #[serde(default)]
    pub dns: Vec<IpAddr>,
}

/// An IP address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpWithPrefix {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl JsonSchema for IpWithPrefix {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "IpWithPrefix".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        reference::string_schema(&[" An IP address with its prefix length, e.g. `192.0.2.10/24`."])
    }
}

impl TryFrom<String> for IpWithPrefix {
    type Error = String;
    fn try_from(v: String) -> Result<Self, String> {
        let bad =
            || format!("address {v:?} is not valid: write it as IP/prefix, e.g. \"192.0.2.10/24\"");
        let (ip, prefix) = v.split_once('/').ok_or_else(bad)?;
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(IpWithPrefix { ip, prefix })
    }
}
impl From<IpWithPrefix> for String {
    fn from(v: IpWithPrefix) -> String {
        v.to_string()
    }
}
impl fmt::Display for IpWithPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

/// Secure Boot (`[secure_boot]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecureBootConfig {
    /// Whether the installed ESP boots through shim (see [`SecureBootMode`]).
    #[serde(default)]
    pub mode: SecureBootMode,
    /// Enroll the medium's MOK certificate (mok.der) at the next boot, for a machine that does
    /// not trust it yet: the install runs `mokutil --import` with this one-time password's hash
    /// (`mokutil --generate-hash`, `openssl passwd -6`), and at the next boot shim starts
    /// MokManager, which shows the key and asks for the password. Needs `mode = "on"`.
    pub enroll_mok_password_hash: Option<MokPasswordHash>,
}

/// How the ESP starts ZFSBootMenu (`secure_boot.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SecureBootMode {
    /// `"auto"`: through shim when the live system booted with Secure Boot on, else directly.
    #[default]
    Auto,
    /// `"on"`: through shim (Debian's, signed by Microsoft) and a ZFSBootMenu signed with the
    /// build's MOK key: the machine boots with Secure Boot on (once the MOK is enrolled) or off.
    On,
    /// `"off"`: the firmware starts ZFSBootMenu directly; Secure Boot must be off.
    Off,
}

/// What the live medium does after an unattended install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AfterInstall {
    /// Power the machine off (take the medium out, then power it on).
    #[default]
    Poweroff,
    /// Reboot: the firmware then starts the installed disk's ZFSBootMenu, unless it boots the
    /// medium first.
    Reboot,
    /// Stay in the live system, at its root shell on the consoles.
    Shell,
}

/// Smallest disk kldload installs to: the ESP plus room for the base system and its snapshots.
pub const MIN_DISK_SIZE: u64 = 4 * GIB;

/// An answer file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read answer file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The TOML is malformed or a value is refused: names the line and the key.
    #[error("{file}:{line}:{column}: {key}{message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        /// "key `pool.ashift`: ", or empty when the error is not about one key.
        key: String,
        message: String,
    },
    /// The values parse but do not fit together.
    #[error("{file}: {key}: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}

impl Config {
    /// Reads, parses and validates an answer file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates answer-file text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let config: Config = parse_toml(text, file)?;
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                file: file.to_string(),
                key,
                message,
            })?;
        Ok(config)
    }

    /// Cross-key rules. Returns the key at fault and what to do about it.
    fn validate(&self) -> Result<(), (String, String)> {
        let err = |key: &str, msg: String| Err((key.to_string(), msg));
        let d = &self.disks;
        match (d.paths.is_empty(), &d.filter) {
            (true, None) => {
                return err(
                    "disks",
                    "name the target disks: `paths = [\"/dev/disk/by-id/...\"]` or a `[disks.filter]` \
                     (run `kldload disks` to see this machine's disks)"
                        .into(),
                );
            }
            (false, Some(_)) => {
                return err("disks", "give either `paths` or `filter`, not both".into());
            }
            _ => {}
        }
        let wanted = d.layout.min_disks();
        if !d.paths.is_empty() {
            if d.paths.len() < wanted || (d.layout == Layout::Single && d.paths.len() != 1) {
                return err(
                    "disks.paths",
                    format!(
                        "layout {:?} needs {}{} disk(s), {} given",
                        d.layout,
                        if d.layout == Layout::Single {
                            "exactly "
                        } else {
                            "at least "
                        },
                        wanted,
                        d.paths.len()
                    ),
                );
            }
            let mut seen = std::collections::BTreeSet::new();
            if let Some(dup) = d.paths.iter().find(|p| !seen.insert(*p)) {
                return err("disks.paths", format!("{dup} is listed twice"));
            }
        }
        if let Some(count) = d.count {
            if d.filter.is_none() {
                return err("disks.count", "`count` only applies to `filter`".into());
            }
            if count < wanted || (d.layout == Layout::Single && count != 1) {
                return err(
                    "disks.count",
                    format!("layout {:?} cannot use {count} disk(s)", d.layout),
                );
            }
        }
        if d.filter.as_ref() == Some(&DiskFilter::default()) {
            return err(
                "disks.filter",
                "an empty filter would match every disk: give serial, model, by_id or a size range"
                    .into(),
            );
        }
        let p = &self.pool;
        if self.distro == Distro::FreeBsd14 && self.encryption.enabled {
            return err(
                "encryption.enabled",
                "FreeBSD's loader cannot boot from a natively encrypted pool: leave encryption off for freebsd-14".into(),
            );
        }
        if self.encryption.enabled
            && self.encryption.datasets == EncryptedDatasets::RootAndHome
            && p.swap_size.is_some()
        {
            return err(
                "pool.swap_size",
                "with encryption.datasets = \"root-and-home\" the swap zvol would be unencrypted \
                 and hold pages of encrypted data: use datasets = \"all\" or no swap"
                    .into(),
            );
        }
        if self.encryption.enabled && !p.has_feature("encryption") {
            return err(
                "pool.features",
                "an encrypted pool needs the feature encryption: add \"encryption\" to \
                 pool.features, or leave encryption off"
                    .into(),
            );
        }
        if let Some(needed) = p.compression.feature()
            && !p.has_feature(needed)
        {
            return err(
                "pool.features",
                format!(
                    "compression = \"{}\" needs the feature {needed}: add \"{needed}\" to \
                     pool.features, or choose a compression without one (gzip, zle, lzjb, off)",
                    p.compression
                ),
            );
        }
        if let Some(features) = &p.features {
            let mut seen = std::collections::BTreeSet::new();
            if let Some(dup) = features.iter().find(|f| !seen.insert(*f)) {
                return err("pool.features", format!("{dup} is listed twice"));
            }
            if self.distro.family() == Family::FreeBsd {
                return err(
                    "pool.features",
                    "freebsd-14's pool is created with compatibility=openzfs-2.2-freebsd, the \
                     features its loader reads: leave pool.features out"
                        .into(),
                );
            }
        }
        if self.secure_boot.mode == SecureBootMode::On && self.distro.family() != Family::Debian {
            return err(
                "secure_boot.mode",
                format!(
                    "kldload's Secure Boot chain (Debian's shim, ZFSBootMenu signed with the \
                     build's MOK, Debian's signed kernel) is made for Debian: {} boots with \
                     Secure Boot off (mode = \"off\" or \"auto\")",
                    self.distro
                ),
            );
        }
        if self.secure_boot.enroll_mok_password_hash.is_some()
            && self.secure_boot.mode != SecureBootMode::On
        {
            return err(
                "secure_boot.enroll_mok_password_hash",
                "MokManager enrolls the key when shim starts, and only mode = \"on\" makes sure \
                 the installed ESP boots through shim: set secure_boot.mode = \"on\""
                    .into(),
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for ds in &self.datasets {
            if !names.insert(ds.name.as_str()) {
                return err(
                    "datasets",
                    format!(
                        "dataset {:?} is listed twice: merge its entries",
                        ds.name.as_str()
                    ),
                );
            }
            if ds.name.as_str() == "swap" && p.swap_size.is_some() {
                return err(
                    "datasets",
                    "\"swap\" is the swap zvol's name: pick another".into(),
                );
            }
            for reserved in ["mountpoint", "canmount"] {
                if ds.properties.keys().any(|k| k.as_str() == reserved) {
                    return err(
                        "datasets.properties",
                        format!(
                            "set {reserved} of {:?} with the dataset's own `mountpoint` key",
                            ds.name.as_str()
                        ),
                    );
                }
            }
        }
        if self.distro == Distro::Rocky9
            && self.source.image.is_none()
            && self.source.zfs_repo.is_none()
        {
            return err(
                "source.zfs_repo",
                "rocky-9 installs ZFS from the OpenZFS EL9 repository: give its URL (and source.mirror)".into(),
            );
        }
        if self.distro.family() != Family::Rhel && self.source.zfs_repo.is_some() {
            return err(
                "source.zfs_repo",
                "only rocky-9 uses a separate ZFS repository".into(),
            );
        }
        if self.root.password_hash.is_none() && self.root.ssh_authorized_keys.is_empty() {
            return err(
                "root",
                "give root.password_hash or root.ssh_authorized_keys, or nobody can log in to the installed system".into(),
            );
        }
        let z = &self.zfsbootmenu;
        if z.source.is_some() && z.url.is_some() {
            return err(
                "zfsbootmenu",
                "give either `source` or `url`, not both".into(),
            );
        }
        let not_the_release = matches!(z.source, Some(ZbmChoice::Built | ZbmChoice::File(_)));
        if z.kernel_series.is_some() && (not_the_release || z.url.is_some()) {
            return err(
                "zfsbootmenu.kernel_series",
                "kernel_series picks a file of the official release; with source \"built\", a \
                 path or `url` the file is another: leave one of them out"
                    .into(),
            );
        }
        if z.url.is_some() && z.sha256.is_none() {
            return err(
                "zfsbootmenu.sha256",
                "a download needs the file's sha256 (64 hex digits) to check it against".into(),
            );
        }
        for (i, s) in self.network.static_interfaces.iter().enumerate() {
            if s.name.is_none() && s.mac.is_none() {
                return err(
                    &format!("network.static[{i}]"),
                    "choose the interface by `name` or `mac`".into(),
                );
            }
            if let Some(gw) = s.gateway
                && gw.is_ipv4() != s.address.ip.is_ipv4()
            {
                return err(
                    &format!("network.static[{i}].gateway"),
                    "the gateway and the address must both be IPv4 or both IPv6".into(),
                );
            }
        }
        Ok(())
    }

    /// The recipe's datasets with the answer file's additions merged in, parents first.
    pub fn datasets(&self) -> Vec<Dataset> {
        let mut list = datasets::recipe_datasets();
        for extra in &self.datasets {
            match list.iter_mut().find(|d| d.path == extra.name) {
                Some(d) => {
                    if let Some(mp) = &extra.mountpoint {
                        d.mountpoint = mp.clone();
                    }
                    for (k, v) in &extra.properties {
                        d.properties.insert(k.clone(), v.clone());
                    }
                }
                None => list.push(Dataset {
                    path: extra.name.clone(),
                    mountpoint: extra.mountpoint.clone().unwrap_or_else(|| {
                        Mountpoint::new(format!("/{}", extra.name))
                            .expect("a dataset path is a valid mountpoint")
                    }),
                    canmount: None,
                    properties: extra.properties.clone(),
                    why: "added by the answer file".into(),
                }),
            }
        }
        // Boot environments first (the new root must be mounted before anything under it),
        // then parents before children; the recipe's order otherwise.
        list.sort_by_key(|d| {
            let p = d.path.as_str();
            let in_root = p == "ROOT" || p.starts_with("ROOT/");
            (!in_root, p.matches('/').count())
        });
        list
    }
}

/// Parses TOML into `T`, turning serde's errors into one line that names the line and the key.
fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, file: &str) -> Result<T, ConfigError> {
    let position = |offset: Option<usize>| match offset {
        Some(o) => {
            let before = &text[..o.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            (line, column)
        }
        None => (0, 0),
    };
    let deserializer = toml::Deserializer::parse(text).map_err(|e| {
        let (line, column) = position(e.span().map(|s| s.start));
        ConfigError::Parse {
            file: file.to_string(),
            line,
            column,
            key: String::new(),
            message: e.message().trim().to_string(),
        }
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let (line, column) = position(inner.span().map(|s| s.start));
        ConfigError::Parse {
            file: file.to_string(),
            line,
            column,
            key: if path == "." {
                String::new()
            } else {
                format!("key `{path}`: ")
            },
            message: inner.message().trim().to_string(),
        }
    })
}

#[cfg(test)]
mod tests;

/// The smallest answer file the installer accepts, with `zfsbootmenu` as the lines of its
/// `[zfsbootmenu]` table: for unit tests of what the recipe makes of those settings.
#[cfg(test)]
pub(crate) fn test_config(zfsbootmenu: &str) -> Config {
    let text = format!(
        "hostname = \"t\"\ndistro = \"debian-13\"\n[disks]\npaths = [\"/dev/vda\"]\n\
         [root]\npassword_hash = \"$6$x$y\"\n[zfsbootmenu]\n{zfsbootmenu}\n"
    );
    Config::parse(&text, "test.toml").unwrap()
}
