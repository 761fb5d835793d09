//! QEMU, started with an argv (never a shell string): q35 with OVMF, KVM when it really works
//! and TCG otherwise, only the devices a scenario asks for, the serial console and QMP on unix
//! sockets, and a virtio-serial port for the harness's own root shell. The
//! process is killed when the [`Vm`] is dropped, so no VM outlives a failed test.

use crate::ovmf::Firmware;
use crate::wait::{Look, wait_until};
use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How guest code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn args(self) -> Vec<String> {
        match self {
            Accel::Kvm => vec!["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()],
            Accel::Tcg => vec!["-accel".into(), "tcg,thread=multi".into()],
        }
    }
}

/// The CPU a VM is given under TCG (under KVM it is always the host's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cpu {
    /// QEMU's default model (qemu64): what TCG boots fastest. Against `max`, the installed
    /// system reached its login prompt in 50.9/79.0/56.2 s against 53.5/85.9/66.6 s (pairs
    /// run one after the other on this project's 2-core machine, 2026-12-06).
    Default,
    /// Every instruction TCG emulates, AES-NI, PCLMULQDQ and AVX among them, as the machines
    /// that encrypt their pool have: ZFS then uses its AES-NI and AVX code for AES-GCM rather
    /// than its generic one. Writing 300 MiB to an encrypted dataset took 4.9/8.4/6.0 s with
    /// `max` and 30.3/42.7/37.0 s with the default, in the same pairs. (Westmere, AES-NI
    /// without AVX: 41-50 s; qemu64 with only `+aes,+pclmulqdq` added breaks OpenSSL.)
    Max,
}

/// Picks the accelerator: `$KLDLOAD_ACCEL` (kvm or tcg), else KVM if /dev/kvm exists and OVMF
/// actually runs under it (some paravirtual KVMs crash OVMF at its first x87 instruction), else
/// TCG. Returns the choice and why.
pub fn choose_accel(firmware: &Firmware, scratch: &Path) -> (Accel, String) {
    match std::env::var("KLDLOAD_ACCEL").as_deref() {
        Ok("kvm") => return (Accel::Kvm, "$KLDLOAD_ACCEL=kvm".into()),
        Ok("tcg") => return (Accel::Tcg, "$KLDLOAD_ACCEL=tcg".into()),
        _ => {}
    }
    if !Path::new("/dev/kvm").exists() {
        return (Accel::Tcg, "no /dev/kvm".into());
    }
    match probe_kvm(firmware, scratch) {
        Ok(()) => (Accel::Kvm, "/dev/kvm runs OVMF".into()),
        Err(e) => (
            Accel::Tcg,
            format!("/dev/kvm exists but OVMF does not run under it: {e}"),
        ),
    }
}

/// Boots OVMF alone under KVM, with the same accelerator and CPU arguments a test VM gets:
/// KVM works when the firmware reaches its boot manager (it prints `BdsDxe` on the serial port)
/// within 30 s. A KVM that only pauses the VM on an internal error, or dies setting an MSR,
/// never gets there; QEMU says so on its stderr at once, and the probe ends there rather than
/// waiting out the 30 s (every test's run makes this choice, so a slow "no" cost each test
/// half a minute).
fn probe_kvm(firmware: &Firmware, scratch: &Path) -> Result<()> {
    let vars = scratch.join("kvm-probe-vars.fd");
    firmware.new_nvram(&vars)?;
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-machine", "q35"])
        .args(Accel::Kvm.args())
        .args(["-smp", "2", "-m", "256", "-nodefaults", "-display", "none"])
        .args(["-serial", "stdio", "-monitor", "none"])
        .args(pflash_args(firmware, &vars))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let (tx, rx) = std::sync::mpsc::channel();
    watch_probe_output(
        child.stdout.take().expect("piped"),
        tx.clone(),
        |seen, _| seen.contains("BdsDxe").then_some(Ok(())),
    );
    watch_probe_output(child.stderr.take().expect("piped"), tx, kvm_failure);
    let verdict = wait_until(
        "OVMF's boot manager (BdsDxe) under KVM",
        Duration::from_secs(30),
        Duration::from_millis(100),
        |_| match rx.try_recv() {
            Ok(verdict) => Ok(Look::Ready(verdict)),
            Err(std::sync::mpsc::TryRecvError::Empty) => Ok(Look::NotYet(String::new())),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Ok(Look::Ready(Err(
                "the probe's output readers ended".to_string(),
            ))),
        },
        String::new,
    )
    .unwrap_or_else(|_| Err("no firmware output within 30 s".to_string()));
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(vars);
    verdict.map_err(|why| anyhow::anyhow!(why))
}

type ProbeVerdict = std::result::Result<(), String>;

/// Reads one of the probe's output streams on a thread of its own and sends the verdict
/// `judge` finds in its whole lines read so far (all of it once the stream ended, the second
/// argument), once, when it finds one.
fn watch_probe_output(
    mut stream: impl std::io::Read + Send + 'static,
    verdict: std::sync::mpsc::Sender<ProbeVerdict>,
    judge: fn(&str, bool) -> Option<ProbeVerdict>,
) {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).unwrap_or(0);
            seen.extend_from_slice(&buf[..n]);
            let ended = n == 0;
            let whole = match seen.iter().rposition(|&b| b == b'\n') {
                _ if ended => &seen[..],
                Some(end) => &seen[..=end],
                None => &[],
            };
            if let Some(v) = judge(&String::from_utf8_lossy(whole), ended) {
                let _ = verdict.send(v);
                return;
            }
            if n == 0 {
                return;
            }
        }
    });
}

/// What QEMU's stderr says of KVM: its error line as soon as there is one (a paravirtual
/// KVM's "KVM internal error", a refused MSR, no /dev/kvm access), or, when QEMU ended, its
/// first line; None while QEMU is silent and running.
fn kvm_failure(stderr: &str, ended: bool) -> Option<ProbeVerdict> {
    let error = stderr.lines().find(|l| l.contains("error"));
    match (error, ended) {
        (Some(line), _) => Some(Err(line.trim().to_string())),
        (None, true) => Some(Err(stderr
            .lines()
            .next()
            .unwrap_or("QEMU ended without a word")
            .to_string())),
        (None, false) => None,
    }
}

fn pflash_args(firmware: &Firmware, vars: &Path) -> Vec<String> {
    let mut a: Vec<String> = vec![];
    if firmware.secure_boot {
        // The Secure Boot build keeps its variables in SMM: only firmware code may write them.
        a.extend([
            "-global".into(),
            "driver=cfi.pflash01,property=secure,value=on".into(),
        ]);
    }
    a.extend([
        "-drive".into(),
        format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            firmware.code.display()
        ),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
    ]);
    a
}

/// A disk attached as virtio-blk; `serial` shows as /dev/disk/by-id/virtio-<serial>.
#[derive(Debug, Clone)]
pub struct Disk {
    pub path: PathBuf,
    pub format: &'static str,
    pub serial: String,
    pub read_only: bool,
    /// Firmware boot priority (lower first).
    pub boot_index: Option<u32>,
    /// Logical and physical sector size in bytes (QEMU's default: 512); 4096 for a 4Kn disk.
    pub sector_size: Option<u32>,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct VmSpec {
    pub name: String,
    pub accel: Accel,
    /// The CPU under TCG.
    pub cpu: Cpu,
    pub firmware: Firmware,
    /// This VM's NVRAM (a copy of the firmware's VARS), kept across its boots.
    pub nvram: PathBuf,
    pub memory_mib: u32,
    pub disks: Vec<Disk>,
    /// Files for the guest under /sys/firmware/qemu_fw_cfg/by_name/<name>/raw.
    pub fw_cfg: Vec<(String, PathBuf)>,
    /// Host port forwarded to the guest's port 22 on QEMU's restricted user network.
    pub ssh_port: Option<u16>,
    /// The network not restricted (`restrict=off`): the guest may connect to the host's
    /// loopback at 10.0.2.2 for a test that serves it a download ([`crate::serve`]), and to
    /// anything the host reaches. (guestfwd, which keeps restrict=on, connects once at QEMU's
    /// start and serves one connection, which curl's retries would outlive.)
    pub host_reachable: bool,
    /// Where QEMU's log goes (the run directory). Its sockets go elsewhere: see [`Sockets`].
    pub dir: PathBuf,
    /// The serial console on this process's terminal (for a person), not on a socket.
    pub serial_on_stdio: bool,
    /// A saved machine state to go on from instead of powering on ([`crate::machine::Machine::save_state`]):
    /// the same devices, with the disks and NVRAM as they were when it was saved.
    pub incoming: Option<PathBuf>,
}

/// A Unix socket's path must fit in `sun_path`: 108 bytes with its terminating NUL.
const SOCKET_PATH_MAX: usize = 107;

/// QEMU's sockets of one VM (serial console, QMP, the harness's shell) in a short private
/// directory of their own, removed with it. Not in the run directory: a clone a few folders
/// deep with a long scenario name makes that path longer than a Unix socket's path may be.
pub struct Sockets {
    dir: tempfile::TempDir,
}

impl Sockets {
    /// A new directory under `$TMPDIR` (or /tmp when that is too long a path).
    pub fn new() -> Result<Sockets> {
        // "kldload-XXXXXX/serial.sock": what the longest path adds to its parent.
        let longest = "/kldload-XXXXXX/serial.sock".len();
        let tmp = std::env::temp_dir();
        let parent = if tmp.as_os_str().len() + longest <= SOCKET_PATH_MAX {
            tmp
        } else {
            PathBuf::from("/tmp")
        };
        let dir = tempfile::Builder::new()
            .prefix("kldload-")
            .tempdir_in(&parent)
            .with_context(|| {
                format!(
                    "making a directory for QEMU's sockets in {}",
                    parent.display()
                )
            })?;
        let sockets = Sockets { dir };
        for path in [sockets.serial(), sockets.qmp(), sockets.shell()] {
            ensure!(
                path.as_os_str().len() <= SOCKET_PATH_MAX,
                "{} is longer than a Unix socket's path may be ({SOCKET_PATH_MAX} bytes): set \
                 $TMPDIR to a shorter directory",
                path.display()
            );
        }
        Ok(sockets)
    }

    pub fn serial(&self) -> PathBuf {
        self.dir.path().join("serial.sock")
    }

    pub fn qmp(&self) -> PathBuf {
        self.dir.path().join("qmp.sock")
    }

    pub fn shell(&self) -> PathBuf {
        self.dir.path().join("shell.sock")
    }
}

/// A running VM. Its sockets go when it does (after QEMU is killed).
pub struct Vm {
    pub spec: VmSpec,
    child: Child,
    pub sockets: Sockets,
    pub started: Instant,
}

impl VmSpec {
    /// QEMU's argv for this VM, its sockets in `sockets`.
    pub fn argv(&self, sockets: &Sockets) -> Vec<String> {
        let s = |v: &str| v.to_string();
        let sock = |path: PathBuf| path.display().to_string();
        let mut a = vec![
            s("qemu-system-x86_64"),
            s("-name"),
            self.name.clone(),
            s("-machine"),
            s(if self.firmware.secure_boot {
                "q35,smm=on"
            } else {
                "q35"
            }),
        ];
        a.extend(self.accel.args());
        if self.accel == Accel::Tcg && self.cpu == Cpu::Max {
            a.extend([s("-cpu"), s("max")]);
        }
        a.extend([
            s("-smp"),
            s("2"),
            s("-m"),
            self.memory_mib.to_string(),
            s("-nodefaults"),
            s("-display"),
            s("none"),
        ]);
        a.extend(pflash_args(&self.firmware, &self.nvram));
        if self.serial_on_stdio {
            // A person at this terminal: the serial console and QEMU's monitor (Ctrl-A c).
            a.extend([s("-serial"), s("mon:stdio")]);
        } else {
            // The serial console: QEMU waits for the harness to connect, so no byte is lost.
            a.extend([
                s("-chardev"),
                format!(
                    "socket,id=serial0,path={},server=on,wait=on",
                    sock(sockets.serial())
                ),
                s("-serial"),
                s("chardev:serial0"),
            ]);
        }
        a.extend([
            s("-qmp"),
            format!("unix:{},server=on,wait=off", sock(sockets.qmp())),
        ]);
        // A VM generation ID (a new one each time QEMU starts): a guest resumed from a saved
        // state sees it change and reseeds its random number generator, so two machines resumed
        // from one state make different keys and pool GUIDs (Linux's vmgenid driver).
        a.extend([s("-device"), s("vmgenid")]);
        a.extend([
            s("-device"),
            s("virtio-serial-pci"),
            s("-chardev"),
            format!(
                "socket,id=shell0,path={},server=on,wait=off",
                sock(sockets.shell())
            ),
            s("-device"),
            format!(
                "virtserialport,chardev=shell0,name={}",
                crate::shell::PORT_NAME
            ),
        ]);
        for (i, d) in self.disks.iter().enumerate() {
            let ro = if d.read_only { ",readonly=on" } else { "" };
            a.extend([
                s("-drive"),
                format!(
                    "file={},format={},if=none,id=disk{i},cache=unsafe{ro}",
                    d.path.display(),
                    d.format
                ),
            ]);
            let boot = d
                .boot_index
                .map(|b| format!(",bootindex={b}"))
                .unwrap_or_default();
            let sectors = d
                .sector_size
                .map(|n| format!(",logical_block_size={n},physical_block_size={n}"))
                .unwrap_or_default();
            a.extend([
                s("-device"),
                format!(
                    "virtio-blk-pci,drive=disk{i},id=vdisk{i},serial={}{boot}{sectors}",
                    d.serial
                ),
            ]);
        }
        for (name, file) in &self.fw_cfg {
            a.extend([s("-fw_cfg"), format!("name={name},file={}", file.display())]);
        }
        if let Some(state) = &self.incoming {
            a.extend([s("-incoming"), format!("file:{}", state.display())]);
        }
        match self.ssh_port {
            // restrict=on: nothing leaves the VM but the forwarded port on 127.0.0.1. A VM that
            // downloads from the harness (host_reachable) has the user network unrestricted.
            Some(port) => a.extend([
                s("-nic"),
                format!(
                    "user,model=virtio-net-pci,restrict={},hostfwd=tcp:127.0.0.1:{port}-:22",
                    if self.host_reachable { "off" } else { "on" }
                ),
            ]),
            None => a.extend([s("-nic"), s("none")]),
        }
        a
    }
}

impl Vm {
    pub fn start(spec: VmSpec, log: &Path) -> Result<Vm> {
        std::fs::create_dir_all(&spec.dir)?;
        let sockets = Sockets::new()?;
        let argv = spec.argv(&sockets);
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(err.try_clone()?)
            .stderr(err)
            .spawn()
            .context("starting qemu-system-x86_64 (install qemu-system-x86)")?;
        Ok(Vm {
            spec,
            child,
            sockets,
            started: Instant::now(),
        })
    }

    /// Waits for QEMU to exit (the guest powered off), up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let name = self.spec.name.clone();
        wait_until(
            &format!("QEMU ({name}) to exit"),
            timeout,
            Duration::from_millis(250),
            |_| {
                Ok(match self.child.try_wait()? {
                    Some(status) => Look::Ready(status),
                    None => Look::NotYet("still running".into()),
                })
            },
            String::new,
        )
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Boots a kept VM's disks and NVRAM with the serial console on this terminal, for a person
/// reproducing a bug by hand; returns when QEMU exits.
pub fn run_interactive(spec: &VmSpec) -> Result<std::process::ExitStatus> {
    let sockets = Sockets::new()?;
    let argv = spec.argv(&sockets);
    eprintln!("{}\n(Ctrl-A X quits QEMU)", argv.join(" "));
    Command::new(&argv[0])
        .args(&argv[1..])
        .status()
        .context("starting qemu-system-x86_64")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs `qemu-img` with `args`.
pub fn qemu_img(args: &[&str]) -> Result<()> {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .context("qemu-img (install qemu-utils)")?;
    if !out.status.success() {
        bail!(
            "qemu-img {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A qcow2 disk at `path`: blank of `size` (e.g. "16G"), or, with `backing`, a copy-on-write
/// overlay of that qcow2 of the backing file's size (writes stay in the overlay; the backing
/// file is never written).
pub fn create_disk(path: &Path, size: &str, backing: Option<&Path>) -> Result<()> {
    let path = path.to_string_lossy();
    match backing {
        None => qemu_img(&["create", "-q", "-f", "qcow2", &path, size]),
        Some(base) => qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            &base.to_string_lossy(),
            &path,
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_tcg_machine_asked_for_max_gets_it() {
        let spec = |accel, cpu| VmSpec {
            name: "m".into(),
            accel,
            cpu,
            firmware: Firmware {
                code: "/code.fd".into(),
                vars_template: "/vars.fd".into(),
                origin: String::new(),
                secure_boot: false,
            },
            nvram: "/nvram.fd".into(),
            memory_mib: 256,
            disks: vec![],
            fw_cfg: vec![],
            ssh_port: None,
            host_reachable: false,
            dir: "/run".into(),
            serial_on_stdio: false,
            incoming: None,
        };
        let sockets = Sockets::new().unwrap();
        let cpu_args = |accel, cpu| {
            let argv = spec(accel, cpu).argv(&sockets);
            let at: Vec<usize> = (0..argv.len()).filter(|&i| argv[i] == "-cpu").collect();
            at.iter().map(|&i| argv[i + 1].clone()).collect::<Vec<_>>()
        };
        assert_eq!(cpu_args(Accel::Tcg, Cpu::Max), ["max"]);
        assert_eq!(cpu_args(Accel::Tcg, Cpu::Default), Vec::<String>::new());
        assert_eq!(cpu_args(Accel::Kvm, Cpu::Max), ["host"]);
        assert_eq!(cpu_args(Accel::Kvm, Cpu::Default), ["host"]);
    }

    #[test]
    fn a_kvm_error_ends_the_probe_at_once_and_a_silent_qemu_does_not() {
        // What QEMU printed here, 0.1 s after it started, before pausing the VM for good.
        let paused = "KVM internal error. Suberror: 1\nextra data[0]: 0x0000000000000001\n";
        assert_eq!(
            kvm_failure(paused, false),
            Some(Err("KVM internal error. Suberror: 1".into()))
        );
        let msr = "qemu-system-x86_64: error: failed to set MSR 0x48b to 0x3ff00000000\n";
        assert!(matches!(kvm_failure(msr, false), Some(Err(l)) if l.contains("failed to set MSR")));
        assert_eq!(kvm_failure("", false), None);
        assert_eq!(
            kvm_failure("qemu-system-x86_64: warning: host lacks a feature\n", false),
            None
        );
        assert_eq!(
            kvm_failure("Could not access KVM kernel module\n", true),
            Some(Err("Could not access KVM kernel module".into()))
        );
    }
}
