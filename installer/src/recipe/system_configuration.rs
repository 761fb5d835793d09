//! Step 4: the installed system's identity and access: hostname, network (systemd-networkd),
//! root's password hash and SSH keys, SSH host keys made here (never carried in an image), time
//! zone, locale, and an fstab that holds only the ESP (ZFS mounts its own datasets).

use super::Inputs;
use crate::config::{Config, StaticInterface};
use crate::plan::{Action, Stdin, Step, StepId};

pub fn step(inputs: &Inputs) -> Step {
    let config = inputs.config;
    let host = config.hostname.as_str();
    let short = host.split('.').next().unwrap_or(host);
    let mut actions = vec![
        Action::write(
            inputs.target("etc/hostname"),
            format!("{short}\n"),
            0o644,
            "the host name",
        ),
        Action::write(
            inputs.target("etc/hosts"),
            hosts_file(host, short),
            0o644,
            "the host name resolves without DNS",
        ),
    ];
    for (name, contents) in network_files(config) {
        actions.push(Action::write(
            inputs.target(&format!("etc/systemd/network/{name}")),
            contents,
            0o644,
            "systemd-networkd configuration",
        ));
    }
    actions.push(Action::Run {
        argv: inputs.chroot([
            "systemctl",
            "enable",
            "systemd-networkd.service",
            "systemd-resolved.service",
        ]),
        why: "bring the network up at boot, with systemd-resolved for DNS".into(),
        stdin: None,
    });
    match &config.root.password_hash {
        Some(hash) => actions.push(Action::run_with_stdin(
            inputs.chroot(["chpasswd", "--encrypted"]),
            Stdin::Text {
                text: format!("root:{hash}\n"),
            },
            "root's password, from the hash in the answer file",
        )),
        None => actions.push(Action::Run {
            argv: inputs.chroot(["passwd", "--lock", "root"]),
            why: "no password given: root logs in with its SSH keys only".into(),
            stdin: None,
        }),
    }
    if !config.root.ssh_authorized_keys.is_empty() {
        let ssh_dir = inputs.target("root/.ssh");
        actions.push(Action::run(
            ["install", "-d", "-m", "0700", &ssh_dir],
            "root's SSH directory",
        ));
        let keys: String = config
            .root
            .ssh_authorized_keys
            .iter()
            .map(|k| format!("{k}\n"))
            .collect();
        actions.push(Action::write(
            format!("{ssh_dir}/authorized_keys"),
            keys,
            0o600,
            "the keys that may log in as root",
        ));
    }
    actions.push(Action::run(
        [
            "find",
            &inputs.target("etc/ssh"),
            "-maxdepth",
            "1",
            "-name",
            "ssh_host_*",
            "-delete",
        ],
        "drop any SSH host keys that came with the base system: every machine makes its own",
    ));
    actions.push(Action::Run {
        argv: inputs.chroot(["ssh-keygen", "-A"]),
        why: "this machine's own SSH host keys".into(),
        stdin: None,
    });
    actions.push(Action::Run {
        argv: inputs.chroot(["systemctl", "enable", "ssh.service"]),
        why: "sshd at boot".into(),
        stdin: None,
    });
    let tz = config.timezone.as_str();
    actions.push(Action::run(
        [
            "ln",
            "-sfn",
            &format!("/usr/share/zoneinfo/{tz}"),
            &inputs.target("etc/localtime"),
        ],
        format!("time zone {tz}"),
    ));
    actions.push(Action::write(
        inputs.target("etc/timezone"),
        format!("{tz}\n"),
        0o644,
        "time zone, by name",
    ));
    let locale = config.locale.as_str();
    if !matches!(locale, "C" | "C.UTF-8" | "POSIX") {
        let charset = locale.split_once('.').map_or("ISO-8859-1", |(_, c)| c);
        actions.push(Action::write(
            inputs.target("etc/locale.gen"),
            format!("{locale} {charset}\n"),
            0o644,
            "the locale to generate",
        ));
        actions.push(Action::Run {
            argv: inputs.chroot(["locale-gen"]),
            why: format!("generate {locale}"),
            stdin: None,
        });
    }
    actions.push(Action::write(
        inputs.target("etc/default/locale"),
        format!("LANG={locale}\n"),
        0o644,
        "the system locale",
    ));
    actions.push(Action::write(
        inputs.target("etc/fstab"),
        fstab(inputs),
        0o644,
        "fstab holds only the ESP",
    ));
    Step {
        id: StepId::SystemConfiguration,
        title:
            "System configuration: hostname, network, root login, sshd, time zone, locale, fstab"
                .into(),
        why: "what makes the copied base system this machine".into(),
        actions,
    }
}

fn hosts_file(host: &str, short: &str) -> String {
    let names = if host == short {
        host.to_string()
    } else {
        format!("{host} {short}")
    };
    format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{names}\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
    )
}

/// systemd-networkd files: one per static interface, then DHCP for every other wired one.
pub fn network_files(config: &Config) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for (i, s) in config.network.static_interfaces.iter().enumerate() {
        files.push((format!("10-kldload-static-{i}.network"), static_network(s)));
    }
    if config.network.dhcp {
        files.push((
            "90-kldload-dhcp.network".into(),
            "# Every wired interface not configured above: DHCP (IPv4 and IPv6).\n[Match]\nType=ether\n\n\
             [Network]\nDHCP=yes\n"
                .into(),
        ));
    }
    files
}

fn static_network(s: &StaticInterface) -> String {
    let mut m = String::from("[Match]\n");
    if let Some(name) = &s.name {
        m.push_str(&format!("Name={name}\n"));
    }
    if let Some(mac) = &s.mac {
        m.push_str(&format!("MACAddress={mac}\n"));
    }
    m.push_str(&format!("\n[Network]\nAddress={}\n", s.address));
    if let Some(gw) = s.gateway {
        m.push_str(&format!("Gateway={gw}\n"));
    }
    for dns in &s.dns {
        m.push_str(&format!("DNS={dns}\n"));
    }
    m
}

/// Only the ESP (and swap, when there is a swap zvol): ZFS mounts its datasets itself.
fn fstab(inputs: &Inputs) -> String {
    let mut f = String::from("# <file system> <mount point> <type> <options> <dump> <pass>\n");
    f.push_str("# ZFS datasets are mounted by zfs-mount.service, not from here.\n");
    f.push_str(&format!(
        "UUID={} /boot/efi vfat umask=0077,nofail 0 1\n",
        inputs.esp_uuid(0)
    ));
    if inputs.config.pool.swap_size.is_some() {
        f.push_str(&format!(
            "/dev/zvol/{} none swap discard 0 0\n",
            inputs.dataset("swap")
        ));
    }
    f
}
