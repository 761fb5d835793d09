//! What the main job checks on the installed system, each a named result in the report. Every
//! check reads the real state (ZFS, firmware variables, systemd, the network) and compares it
//! with what the answer file and the recipe say it must be.

use crate::flow::Run;
use crate::machine::Machine;
use anyhow::{Result, bail, ensure};
use kldload::config::{Config, ZFSBOOTMENU_HOSTID};
use std::time::Duration;

/// A named check.
pub type CheckFn = fn(&mut Machine, &Run, &Config) -> Result<String>;

/// Every check of the main job, in report order.
pub fn all() -> Vec<(&'static str, CheckFn)> {
    vec![
        ("console login with the root password", |_, _, _| {
            Ok("logged in on ttyS0".into())
        }),
        ("datasets and mountpoints", datasets),
        ("pool properties", pool_properties),
        ("tmp: sync=disabled, exec=off", tmp_properties),
        ("ashift=12 on the vdev", ashift),
        ("bootfs", bootfs),
        ("/ is the boot environment", root_dataset),
        ("one hostid in five places", hostid),
        ("kldload doctor agrees, at boot and when run", doctor),
        ("firmware entries", firmware_entries),
        ("fallback loader is the primary", fallback_copy),
        ("fstab mounts only the ESP", fstab),
        ("zfs services enabled and active", zfs_services),
        ("zpool.cache present", |m, _, _| {
            m.succeed("test -s /etc/zfs/zpool.cache && echo present")
        }),
        ("factory snapshot of every dataset", factory_snapshots),
        ("compressratio above 1.3", compressratio),
        ("wireguard module loads", |m, _, _| {
            m.succeed("modprobe wireguard && lsmod | grep -w ^wireguard")
        }),
        ("no compiler, no DKMS", no_compiler),
        ("hostname from the answer file", hostname),
        ("network up by DHCP", network),
        ("sshd with host keys made here", sshd),
        ("SSH login with the answer file's key", ssh_login),
    ]
}

/// Runs every check and records each result.
pub fn run_all(m: &mut Machine, run: &mut Run, config: &Config) {
    for (name, check) in all() {
        let result = check(m, run, config);
        run.report.check(name, result);
    }
}

/// The installed `kldload doctor` reads the same five places: its unit ran at boot and passed,
/// and run now it reports one hostid in every place (all readable, exit status 0).
fn doctor(m: &mut Machine, _: &Run, c: &Config) -> Result<String> {
    // `Result=success` alone is also what a unit that never started shows.
    let state = m
        .execute(
            "systemctl show -P Result,ExecMainStartTimestampMonotonic,ExecMainStatus \
             kldload-doctor.service",
        )?
        .stdout;
    let fields: Vec<&str> = state.split_whitespace().collect();
    ensure!(
        fields.len() == 3 && fields[0] == "success" && fields[1] != "0" && fields[2] == "0",
        "kldload-doctor.service did not run and pass at boot ({}):\n{}",
        fields.join(" "),
        m.execute("systemctl status --no-pager kldload-doctor.service")?
            .stdout
    );
    let report = m.succeed(&format!("kldload doctor --pool {}", c.pool.name))?;
    ensure!(
        report.contains("agrees in every place\n"),
        "kldload doctor said:\n{report}"
    );
    Ok(report.lines().next().unwrap_or_default().to_string())
}

fn datasets(m: &mut Machine, _: &Run, c: &Config) -> Result<String> {
    let pool = c.pool.name.as_str();
    let listed = m.succeed(&format!(
        "zfs list -H -o name,mountpoint -t filesystem -r {pool}"
    ))?;
    let mut missing = Vec::new();
    for ds in c.datasets() {
        let line = format!("{pool}/{}\t{}", ds.path, ds.mountpoint);
        if !listed.lines().any(|l| l == line) {
            missing.push(line);
        }
    }
    ensure!(
        missing.is_empty(),
        "missing or different: {missing:?}\nlisted:\n{listed}"
    );
    Ok(format!("{} datasets as planned", c.datasets().len()))
}

fn get(m: &mut Machine, props: &str, target: &str) -> Result<Vec<String>> {
    Ok(m.succeed(&format!("zfs get -H -o value {props} {target}"))?
        .lines()
        .map(str::to_string)
        .collect())
}

fn pool_properties(m: &mut Machine, _: &Run, c: &Config) -> Result<String> {
    let v = get(m, "compression,acltype,xattr", c.pool.name.as_str())?;
    ensure!(v.len() == 3, "unexpected output {v:?}");
    ensure!(v[0] == c.pool.compression, "compression={}", v[0]);
    // ZFS 2.3 shows posixacl as "posix".
    ensure!(v[1] == "posixacl" || v[1] == "posix", "acltype={}", v[1]);
    let version = m.succeed("zfs version | head -n1")?;
    ensure!(
        xattr_is_sa(&v[2], version.trim()),
        "xattr={} with {}",
        v[2],
        version.trim()
    );
    Ok(format!(
        "compression={} acltype={} xattr={} ({})",
        v[0],
        v[1],
        v[2],
        version.trim()
    ))
}

/// Whether `zfs get xattr` says system-attribute xattrs. From OpenZFS 2.3 (seen with 2.3.9) a
/// dataset created with xattr=sa reads back as "on", and one created with xattr=dir as "dir";
/// before, "on" meant directory xattrs.
fn xattr_is_sa(value: &str, zfs_version: &str) -> bool {
    let at_least_2_3 = zfs_version
        .strip_prefix("zfs-")
        .and_then(|v| {
            let mut parts = v.split(['.', '-']).map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .is_some_and(|version| version >= (2, 3));
    value == "sa" || (value == "on" && at_least_2_3)
}

fn tmp_properties(m: &mut Machine, _: &Run, c: &Config) -> Result<String> {
    let v = get(m, "sync,exec", &format!("{}/tmp", c.pool.name))?;
    ensure!(v == ["disabled", "off"], "sync,exec = {v:?}");
    Ok("sync=disabled exec=off".into())
}

fn ashift(m: &mut Machine, _: &Run, c: &Config) -> Result<String> {
    let out = m.succeed(&format!("zdb -C {} | grep -w ashift", c.pool.name))?;
    let values: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(str::trim)
        .collect();
    ensure!(
        !values.is_empty() && values.iter().all(|v| *v == c.pool.ashift.to_string()),
        "zdb says {out}"
    );
    Ok(format!("ashift {}", values.join(",")))
}

fn bootfs(m: &mut Machine, _: &Run, c: &Config) -> Result<String> {
    let v = m.succeed(&format!("zpool get -H -o value bootfs {}", c.pool.name))?;
    let want = format!("{}/ROOT/default", c.pool.name);
    ensure!(v.trim() == want, "bootfs={}", v.trim());
    Ok(want)
}

fn root_dataset(m: &mut Machine, _: &Run, c: &Config) -> Result<String> {
    let v = m.succeed("findmnt -n -o SOURCE,FSTYPE /")?;
    let want = format!("{}/ROOT/default zfs", c.pool.name);
    ensure!(
        v.split_whitespace().collect::<Vec<_>>().join(" ") == want,
        "/ is {v}"
    );
    Ok(want)
}

/// How one place's text becomes a hostid.
type ParseHostid = fn(&str) -> Option<u32>;

/// `hostid` and `od -tx4` print bare hex.
fn parse_hex(text: &str) -> Option<u32> {
    u32::from_str_radix(text.trim(), 16).ok()
}

fn hostid(m: &mut Machine, _: &Run, c: &Config) -> Result<String> {
    let want = ZFSBOOTMENU_HOSTID;
    let etc = m.succeed("hostid")?;
    let initramfs = m.succeed(
        "d=$(mktemp -d); unmkinitramfs /boot/initrd.img-$(uname -r) $d >/dev/null; \
         f=$(find $d -path '*/etc/hostid' | head -n1); od -An -tx4 $f | tr -d ' \\n'",
    )?;
    let cmdline = m.succeed("cat /proc/cmdline")?;
    let zbm = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("spl.spl_hostid="))
        .unwrap_or("(none)")
        .to_string();
    let spl = m.succeed("cat /sys/module/spl/parameters/spl_hostid")?;
    let label = m.succeed(&format!(
        "zdb -l $(zpool list -vHPL {} | awk '$1 ~ /^\\/dev\\// {{print $1; exit}}') | awk '$1 == \"hostid:\" {{print $2; exit}}'",
        c.pool.name
    ))?;
    // Read here independently of `kldload doctor` (which the next check runs), as the kernel
    // reads numbers where it is the kernel's value.
    let kernel = kldload::doctor::parse_kernel_number;
    let places: [(&str, String, ParseHostid); 5] = [
        ("/etc/hostid", etc, parse_hex),
        ("initramfs", initramfs, parse_hex),
        ("ZFSBootMenu spl.spl_hostid", zbm, kernel),
        ("SPL", spl, kernel),
        ("pool label", label, kernel),
    ];
    let mut seen = Vec::new();
    for (place, value, parse) in &places {
        let parsed = parse(value);
        seen.push(format!("{place}={}", value.trim()));
        if parsed != Some(want) {
            bail!(
                "{place} has hostid {:?}, not 0x{want:08x}; all: {}",
                value.trim(),
                seen.join(", ")
            );
        }
    }
    Ok(format!(
        "0x{want:08x} in {}",
        places.map(|(p, _, _)| p).join(", ")
    ))
}

fn firmware_entries(m: &mut Machine, _: &Run, _: &Config) -> Result<String> {
    let v = m.succeed("efibootmgr -v")?;
    let esp =
        m.succeed("findmnt -n -o SOURCE /boot/efi || blkid -t PARTLABEL=ESP -o device | head -n1")?;
    let partuuid = m
        .succeed(&format!("blkid -s PARTUUID -o value {}", esp.trim()))?
        .trim()
        .to_lowercase();
    for (label, file) in [
        ("ZFSBootMenu", "\\EFI\\ZBM\\VMLINUZ.EFI"),
        ("ZFSBootMenu (Backup)", "\\EFI\\ZBM\\VMLINUZ-BACKUP.EFI"),
    ] {
        let line = v
            .lines()
            .find(|l| {
                l.contains(&format!(" {label}\t"))
                    || l.contains(&format!(" {label} ")) && l.contains(file)
            })
            .ok_or_else(|| anyhow::anyhow!("no entry {label:?} in:\n{v}"))?;
        ensure!(
            line.to_lowercase().contains(&partuuid),
            "{label} does not point at the ESP {partuuid}: {line}"
        );
        ensure!(line.contains(file), "{label} does not load {file}: {line}");
    }
    Ok(format!("both entries on ESP {partuuid}"))
}

fn fallback_copy(m: &mut Machine, _: &Run, _: &Config) -> Result<String> {
    let out =
        m.succeed("sha256sum /boot/efi/EFI/BOOT/BOOTX64.EFI /boot/efi/EFI/ZBM/VMLINUZ.EFI")?;
    let sums: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    ensure!(sums.len() == 2 && sums[0] == sums[1], "{out}");
    Ok(format!("sha256 {}", sums[0]))
}

fn fstab(m: &mut Machine, _: &Run, _: &Config) -> Result<String> {
    let out = m.succeed("grep -v '^[[:space:]]*#' /etc/fstab | grep -v '^[[:space:]]*$'")?;
    let lines: Vec<&str> = out.lines().collect();
    ensure!(
        lines.len() == 1 && lines[0].contains(" /boot/efi vfat "),
        "fstab holds: {out}"
    );
    Ok(lines[0].to_string())
}

fn zfs_services(m: &mut Machine, _: &Run, _: &Config) -> Result<String> {
    let units = "zfs-import-cache.service zfs-mount.service zfs.target";
    let enabled = m.succeed(&format!("systemctl is-enabled {units}"))?;
    let active = m.succeed(&format!("systemctl is-active {units}"))?;
    ensure!(
        enabled.lines().all(|l| l == "enabled") && active.lines().all(|l| l == "active"),
        "enabled: {enabled} active: {active}"
    );
    Ok(format!("{units}: enabled, active"))
}

fn factory_snapshots(m: &mut Machine, _: &Run, c: &Config) -> Result<String> {
    let snaps = m.succeed("zfs list -H -t snapshot -o name")?;
    let pool = c.pool.name.as_str();
    let mut names: Vec<String> = vec![pool.to_string()];
    names.extend(c.datasets().iter().map(|d| format!("{pool}/{}", d.path)));
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !snaps.lines().any(|s| s == format!("{n}@factory")))
        .collect();
    ensure!(missing.is_empty(), "no @factory for {missing:?}");
    Ok(format!("{} snapshots", names.len()))
}

fn compressratio(m: &mut Machine, _: &Run, c: &Config) -> Result<String> {
    let v = m.succeed(&format!(
        "zfs get -H -o value compressratio {}",
        c.pool.name
    ))?;
    let ratio: f64 = v.trim().trim_end_matches('x').parse()?;
    ensure!(ratio > 1.3, "compressratio {}", v.trim());
    Ok(v.trim().to_string())
}

fn no_compiler(m: &mut Machine, _: &Run, _: &Config) -> Result<String> {
    let out =
        m.execute("command -v gcc cc cpp clang dkms; ls -d /usr/src/linux-headers-* 2>/dev/null")?;
    ensure!(out.stdout.trim().is_empty(), "found: {}", out.stdout.trim());
    Ok("no gcc, cc, cpp, clang, dkms or kernel headers".into())
}

fn hostname(m: &mut Machine, _: &Run, c: &Config) -> Result<String> {
    let v = m.succeed("hostname")?;
    ensure!(v.trim() == c.hostname.as_str(), "hostname is {}", v.trim());
    Ok(v.trim().to_string())
}

fn network(m: &mut Machine, _: &Run, _: &Config) -> Result<String> {
    let addr = m.wait_until_succeeds(
        "ip -4 -o addr show scope global | grep -m1 inet",
        Duration::from_secs(90),
    )?;
    let ip = addr
        .split_whitespace()
        .nth(3)
        .unwrap_or_default()
        .to_string();
    let dynamic = addr.contains("dynamic");
    ensure!(dynamic, "address {ip} is not from DHCP: {addr}");
    Ok(format!("{ip} by DHCP"))
}

fn sshd(m: &mut Machine, _: &Run, _: &Config) -> Result<String> {
    m.wait_for_unit("ssh.service", Duration::from_secs(60))?;
    let enabled = m.succeed("systemctl is-enabled ssh.service")?;
    ensure!(
        enabled.trim() == "enabled",
        "ssh.service is {}",
        enabled.trim()
    );
    // The payload ships no host keys (the image build removes them and checks it), so these
    // were made on this machine; their comment names the system that made them.
    let keys = m.succeed("for k in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -l -f $k; done")?;
    ensure!(keys.lines().count() >= 2, "host keys: {keys}");
    Ok(keys
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" "))
}

fn ssh_login(m: &mut Machine, run: &Run, c: &Config) -> Result<String> {
    let guest_key = m.succeed("cat /etc/ssh/ssh_host_ed25519_key.pub")?;
    let guest_key = guest_key
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let known = run.dir.join("known_hosts");
    std::fs::write(
        &known,
        format!("[127.0.0.1]:{} {guest_key}\n", run.ssh_port),
    )?;
    let out = std::process::Command::new("ssh")
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=30",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .arg("-i")
        .arg(&run.ssh_key)
        .args([
            "-p",
            &run.ssh_port.to_string(),
            "root@127.0.0.1",
            "hostname",
        ])
        .output()?;
    ensure!(
        out.status.success(),
        "ssh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    ensure!(name == c.hostname.as_str(), "ssh reached {name}");
    Ok(format!(
        "logged in as root over port {}, host key verified",
        run.ssh_port
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattr_sa_reads_as_on_from_openzfs_2_3() {
        assert!(xattr_is_sa("sa", "zfs-2.1.11-1"));
        assert!(xattr_is_sa("on", "zfs-2.3.9-0+deb13u1"));
        assert!(xattr_is_sa("on", "zfs-2.4.0-1"));
        assert!(!xattr_is_sa("on", "zfs-2.1.11-1"));
        assert!(!xattr_is_sa("dir", "zfs-2.3.9-0+deb13u1"));
        assert!(!xattr_is_sa("on", "garbage"));
    }

    #[test]
    fn hostid_forms() {
        assert_eq!(parse_hex("00bab10c\n"), Some(0x00bab10c));
        assert_eq!(parse_hex("(none)"), None);
        assert_eq!(
            kldload::doctor::parse_kernel_number("12235020"),
            Some(0x00bab10c)
        );
    }
}
