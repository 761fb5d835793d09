//! Step 4: the installed system's identity and access: hostname, network (written the distro's
//! way: systemd-networkd on Debian, NetworkManager on Rocky, rc.conf on FreeBSD), root's password
//! hash and SSH keys, SSH host keys made on this machine (never carried in an image), time zone,
//! locale, and an fstab that holds only the ESP (ZFS mounts its own datasets).

use super::Inputs;
use crate::config::{Config, Family, StaticInterface};
use crate::plan::{Action, Stdin, Step, StepId};

pub fn step(inputs: &Inputs) -> Step {
    let config = inputs.config;
    let family = config.distro.family();
    let host = config.hostname.as_str();
    let short = host.split('.').next().unwrap_or(host);
    let mut actions = vec![Action::write(
        inputs.target("etc/hosts"),
        hosts_file(host, short),
        0o644,
        "the host name resolves without DNS",
    )];
    match family {
        Family::Debian | Family::Rhel => {
            actions.push(Action::write(
                inputs.target("etc/hostname"),
                format!("{short}\n"),
                0o644,
                "the host name",
            ));
            actions.extend(linux_network(inputs));
            actions.extend(linux_root_login(inputs));
        }
        Family::FreeBsd => actions.extend(freebsd_configuration(inputs)),
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
    if family != Family::FreeBsd {
        actions.push(Action::Run {
            argv: inputs.chroot(["ssh-keygen", "-A"]),
            why: "this machine's own SSH host keys".into(),
            stdin: None,
        });
    }
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
    actions.extend(locale(inputs));
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

/// The network files and services of a Linux target.
fn linux_network(inputs: &Inputs) -> Vec<Action> {
    let config = inputs.config;
    let (dir, files, services) = match config.distro.family() {
        Family::Debian => (
            "etc/systemd/network",
            networkd_files(config),
            vec!["systemd-networkd.service", "systemd-resolved.service"],
        ),
        _ => (
            "etc/NetworkManager/system-connections",
            network_manager_files(config),
            vec!["NetworkManager.service"],
        ),
    };
    let mut actions = Vec::new();
    for (name, contents, mode) in files {
        let path = if name.ends_with(".conf") {
            inputs.target(&format!("etc/NetworkManager/conf.d/{name}"))
        } else {
            inputs.target(&format!("{dir}/{name}"))
        };
        actions.push(Action::write(path, contents, mode, "network configuration"));
    }
    let mut enable = vec!["systemctl", "enable"];
    enable.extend(services);
    actions.push(Action::Run {
        argv: inputs.chroot(enable),
        why: "bring the network up at boot".into(),
        stdin: None,
    });
    actions
}

/// systemd-networkd files: one per static interface, then DHCP for every other wired one.
pub fn networkd_files(config: &Config) -> Vec<(String, String, u32)> {
    let mut files = Vec::new();
    for (i, s) in config.network.static_interfaces.iter().enumerate() {
        files.push((
            format!("10-kldload-static-{i}.network"),
            networkd_static(s),
            0o644,
        ));
    }
    if config.network.dhcp {
        files.push((
            "90-kldload-dhcp.network".into(),
            "# Every wired interface not configured above: DHCP (IPv4 and IPv6).\n[Match]\nType=ether\n\n\
             [Network]\nDHCP=yes\n"
                .into(),
            0o644,
        ));
    }
    files
}

fn networkd_static(s: &StaticInterface) -> String {
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

/// NetworkManager keyfiles (mode 0600, or NetworkManager ignores them). Wired interfaces get
/// DHCP from NetworkManager's automatic connections; turned off when `dhcp = false`.
pub fn network_manager_files(config: &Config) -> Vec<(String, String, u32)> {
    let mut files = Vec::new();
    for (i, s) in config.network.static_interfaces.iter().enumerate() {
        let mut k = format!("[connection]\nid=kldload-static-{i}\ntype=ethernet\n");
        match &s.name {
            Some(name) if name.as_str().contains(['*', '?']) => {
                k.push_str(&format!("\n[match]\ninterface-name={name}\n"))
            }
            Some(name) => k.push_str(&format!("interface-name={name}\n")),
            None => {}
        }
        if let Some(mac) = &s.mac {
            k.push_str(&format!("\n[ethernet]\nmac-address={mac}\n"));
        }
        let (family, other) = if s.address.ip.is_ipv4() {
            ("ipv4", "ipv6")
        } else {
            ("ipv6", "ipv4")
        };
        let gateway = s.gateway.map(|g| format!(",{g}")).unwrap_or_default();
        k.push_str(&format!(
            "\n[{family}]\nmethod=manual\naddress1={}{gateway}\n",
            s.address
        ));
        if !s.dns.is_empty() {
            let dns: String = s.dns.iter().map(|d| format!("{d};")).collect();
            k.push_str(&format!("dns={dns}\n"));
        }
        k.push_str(&format!(
            "\n[{other}]\nmethod={}\n",
            if other == "ipv6" { "auto" } else { "disabled" }
        ));
        files.push((format!("kldload-static-{i}.nmconnection"), k, 0o600));
    }
    if !config.network.dhcp {
        files.push((
            "kldload.conf".into(),
            "[main]\nno-auto-default=*\n".into(),
            0o644,
        ));
    }
    files
}

/// Root's password (or a locked one) and sshd, on a Linux target.
fn linux_root_login(inputs: &Inputs) -> Vec<Action> {
    let mut actions = Vec::new();
    match &inputs.config.root.password_hash {
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
    let sshd = if inputs.config.distro.family() == Family::Debian {
        "ssh.service"
    } else {
        "sshd.service"
    };
    actions.push(Action::Run {
        argv: inputs.chroot(["systemctl", "enable", sshd]),
        why: "sshd at boot".into(),
        stdin: None,
    });
    actions
}

/// FreeBSD's rc.conf, and a first-boot script for what needs FreeBSD's own tools (its binaries
/// cannot run on the Linux live system): root's password hash goes in with `pw`.
fn freebsd_configuration(inputs: &Inputs) -> Vec<Action> {
    let config = inputs.config;
    let mut rc = format!(
        "hostname=\"{}\"\nzfs_enable=\"YES\"\nsshd_enable=\"YES\"\n",
        config.hostname
    );
    for s in &config.network.static_interfaces {
        // FreeBSD names interfaces by driver (vtnet0, em0): a static address needs its name.
        if let Some(name) = &s.name {
            let family = if s.address.ip.is_ipv4() {
                "inet"
            } else {
                "inet6"
            };
            rc.push_str(&format!("ifconfig_{name}=\"{family} {}\"\n", s.address));
            if let Some(gw) = s.gateway {
                let key = if gw.is_ipv4() {
                    "defaultrouter"
                } else {
                    "ipv6_defaultrouter"
                };
                rc.push_str(&format!("{key}=\"{gw}\"\n"));
            }
        }
    }
    if config.network.dhcp {
        rc.push_str("ifconfig_DEFAULT=\"SYNCDHCP\"\n");
    }
    let mut actions = vec![Action::write(
        inputs.target("etc/rc.conf"),
        rc,
        0o644,
        "FreeBSD's system configuration",
    )];
    let dns: Vec<String> = config
        .network
        .static_interfaces
        .iter()
        .flat_map(|s| &s.dns)
        .map(|d| format!("nameserver {d}\n"))
        .collect();
    if !dns.is_empty() {
        actions.push(Action::write(
            inputs.target("etc/resolv.conf"),
            dns.concat(),
            0o644,
            "DNS servers",
        ));
    }
    if let Some(hash) = &config.root.password_hash {
        let script = format!(
            "#!/bin/sh\n# PROVIDE: kldload_firstboot\n# REQUIRE: FILESYSTEMS\n# BEFORE: LOGIN\n# KEYWORD: firstboot\n\
             # Written by kldload: sets root's password hash with FreeBSD's own pw(8) on the first boot.\n\
             . /etc/rc.subr\nname=kldload_firstboot\nrcvar=kldload_firstboot_enable\n: ${{kldload_firstboot_enable:=YES}}\n\
             start_cmd=kldload_firstboot_start\nstop_cmd=:\n\
             kldload_firstboot_start() {{\n    echo '{hash}' | pw usermod root -H 0\n}}\n\
             load_rc_config $name\nrun_rc_command \"$1\"\n"
        );
        actions.push(Action::run(
            ["mkdir", "-p", &inputs.target("usr/local/etc/rc.d")],
            "local rc scripts",
        ));
        actions.push(Action::write(
            inputs.target("usr/local/etc/rc.d/kldload_firstboot"),
            script,
            0o555,
            "sets root's password hash on the first boot",
        ));
        actions.push(Action::write(
            inputs.target("firstboot"),
            "",
            0o644,
            "rc runs firstboot scripts once while this exists",
        ));
    }
    actions
}

fn locale(inputs: &Inputs) -> Vec<Action> {
    let locale = inputs.config.locale.as_str();
    match inputs.config.distro.family() {
        Family::Debian => {
            let mut actions = Vec::new();
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
            actions
        }
        Family::Rhel => vec![Action::write(
            inputs.target("etc/locale.conf"),
            format!("LANG={locale}\n"),
            0o644,
            "the system locale",
        )],
        Family::FreeBsd => vec![Action::write(
            inputs.target("etc/profile.d/kldload-locale.sh"),
            format!("export LANG={locale}\n"),
            0o644,
            "the login shells' locale",
        )],
    }
}

/// Only the ESP (and swap, when there is a swap zvol): ZFS mounts its datasets itself.
fn fstab(inputs: &Inputs) -> String {
    let mut f = String::from("# <file system> <mount point> <type> <options> <dump> <pass>\n");
    f.push_str("# ZFS datasets are mounted by ZFS itself, not from here.\n");
    if inputs.config.distro.family() == Family::FreeBsd {
        f.push_str("/dev/gpt/efiboot0 /boot/efi msdosfs rw,noatime 2 2\n");
        if inputs.config.pool.swap_size.is_some() {
            f.push_str(&format!(
                "/dev/zvol/{} none swap sw 0 0\n",
                inputs.dataset("swap")
            ));
        }
        return f;
    }
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
