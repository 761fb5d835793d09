//! `kldload report` on a machine kldload installed: every field it writes is compared with what
//! the machine says itself (zpool, uname, sha256sum, efivarfs), and the redacted report must
//! hold none of the machine's serial, host name, MAC or IP address. Run by `cargo xtask
//! vm-test <distro>`.

use anyhow::{Context, ensure};
use std::collections::BTreeMap;
use vmtests::machine::Machine;
use vmtests::run::scenario_on_installed_base;

const BOOTFS: &str = "rpool/ROOT/default";
const OTHER_BE: &str = "rpool/ROOT/other";

/// The pool's features and their states (`enabled`, `active`, `disabled`), as zpool lists them.
fn features(m: &mut Machine) -> anyhow::Result<BTreeMap<String, String>> {
    let listed = m.succeed("zpool get -H -o property,value all rpool | grep '^feature@'")?;
    Ok((listed.lines())
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?, words.next()?))
        })
        .map(|(p, v)| (p.trim_start_matches("feature@").to_string(), v.to_string()))
        .collect())
}

#[test]
#[ignore = "boots VMs: run with `cargo xtask vm-test debian`"]
fn report_describes_the_installed_machine_and_redacts_it() {
    scenario_on_installed_base("report", |run| {
        let mut m = run.resume_logged_in("report")?;
        // A second boot environment and the ESP unmounted: the report mounts both read-only
        // for a moment.
        m.succeed(&format!(
            "zfs snapshot {BOOTFS}@report && zfs clone -o canmount=noauto -o mountpoint=/ \
             {BOOTFS}@report {OTHER_BE} && umount /boot/efi"
        ))?;
        // A feature may turn active while the report runs: the resumed machine's clock jumps,
        // which starts the daily dpkg-db-backup, whose cp clones blocks, and block_cloning
        // turns active when that transaction group syncs. So each feature is compared with
        // zpool's states before and after the report.
        let features_before = features(&mut m)?;
        let taken = run.timed("kldload report", |_| m.kldload_report(""))?;
        let (summary, json, r) = (taken.summary, taken.json, taken.report);
        let features_after = features(&mut m)?;
        std::fs::write(run.dir.join("kldload-report.json"), &json)?;
        let mounts = m.succeed("findmnt -rn -o TARGET | grep -c kldload-report || true")?;
        let left = m.succeed("ls -d /tmp/kldload-report-* 2>/dev/null | wc -l")?;
        m.succeed("mount /boot/efi")?;
        run.check(
            "another boot environment and the ESP read, and let go",
            || {
                let other = (r.boot_environments.iter())
                    .find(|b| b.dataset == OTHER_BE)
                    .context("the second boot environment is not in the report")?;
                ensure!(!other.running && !other.kernels.is_empty(), "{other:?}");
                let esp = r.esps.first().context("no ESP")?;
                ensure!(esp.mounted_at.is_none() && !esp.files.is_empty(), "{esp:?}");
                ensure!(mounts.trim() == "0", "{mounts} temporary mounts left");
                ensure!(left.trim() == "0", "{left} temporary directories left");
                Ok(format!(
                    "{OTHER_BE}: {} kernel(s); the ESP's {} files; nothing left mounted",
                    other.kernels.len(),
                    esp.files.len()
                ))
            },
        );

        let compatibility = m.succeed("zpool get -H -o value compatibility rpool")?;
        // The pool's leaf devices as the kernel names them, by zpool's paths, each resolved.
        let devices = m.succeed(
            "zpool list -vHP rpool | awk '$1 ~ /^\\/dev\\// {print $1}' | xargs -n1 readlink -f \
             | xargs -n1 basename",
        )?;
        run.check(
            "the pool: bootfs, compatibility, active features, its devices",
            || {
                let pool = r
                    .pools
                    .iter()
                    .find(|p| p.name == "rpool")
                    .context("no rpool")?;
                ensure!(
                    pool.bootfs.as_deref() == Some(BOOTFS),
                    "bootfs {:?}",
                    pool.bootfs
                );
                ensure!(
                    pool.compatibility.as_deref() == Some(compatibility.trim()),
                    "compatibility {:?}, the pool says {compatibility:?}",
                    pool.compatibility
                );
                ensure!(
                    pool.features.len() == features_after.len(),
                    "{} features, zpool lists {}",
                    pool.features.len(),
                    features_after.len()
                );
                for (name, after) in &features_after {
                    let before = features_before.get(name);
                    let mine = pool.features.get(name);
                    ensure!(
                        mine == Some(after) || mine == before,
                        "feature {name}: the report says {mine:?}, zpool {before:?} before it \
                         and {after:?} after"
                    );
                }
                let n = pool.features.values().filter(|s| *s == "active").count();
                let moved: Vec<String> = (features_after.iter())
                    .filter(|(name, after)| features_before.get(*name) != Some(after))
                    .map(|(name, after)| format!("{name} turned {after} while it ran"))
                    .collect();
                let expected: Vec<&str> = devices.lines().collect();
                ensure!(
                    !expected.is_empty() && pool.devices == expected,
                    "devices {:?}, zpool list's resolve to {expected:?}",
                    pool.devices
                );
                ensure!(
                    pool.labels
                        .iter()
                        .any(|l| l.facts.hostid.as_deref() == Some("0x00bab10c")),
                    "labels: {:?}",
                    pool.labels
                );
                Ok(format!(
                    "{} vdev(s) on {}, {n} active features{}, {} label(s)",
                    pool.topology.len(),
                    pool.devices.join(" "),
                    (moved.iter()).fold(String::new(), |s, m| s + " (" + m + ")"),
                    pool.labels.len()
                ))
            },
        );

        // /etc/hostid as coreutils' hostid reads it, not kldload.
        let hostid = format!("0x{}", m.succeed("hostid")?.trim());
        run.check(
            "taken on the installed system; each boot environment's own /etc/hostid",
            || {
                ensure!(
                    r.taken_on == Some(kldload::report::TakenOn::Installed),
                    "taken_on {:?}",
                    r.taken_on
                );
                for be in &r.boot_environments {
                    ensure!(
                        be.etc_hostid.as_deref() == Some(hostid.as_str()),
                        "{}: etc_hostid {:?}, hostid says {hostid}",
                        be.dataset,
                        be.etc_hostid
                    );
                }
                Ok(format!(
                    "installed; {} boot environment(s) with {hostid}",
                    r.boot_environments.len()
                ))
            },
        );

        let running = m.succeed("uname -r")?;
        run.check(
            "the boot environment's kernels, zfs.ko and hostid in the initramfs",
            || {
                let be = (r.boot_environments.iter())
                    .find(|b| b.dataset == BOOTFS)
                    .context("no boot environment rpool/ROOT/default")?;
                ensure!(be.running, "not marked running");
                let want = format!("vmlinuz-{}", running.trim());
                ensure!(
                    be.default_kernel.as_deref() == Some(&want),
                    "default {:?}",
                    be.default_kernel
                );
                let k = be
                    .kernels
                    .iter()
                    .find(|k| k.kernel == want)
                    .context("not listed")?;
                ensure!(k.initramfs_has_zfs == Some(true), "{k:?}");
                ensure!(k.initramfs_hostid.as_deref() == Some("0x00bab10c"), "{k:?}");
                ensure!(
                    be.commandline.contains("console=ttyS0"),
                    "{:?}",
                    be.commandline
                );
                Ok(format!(
                    "{want}, {}: zfs.ko, hostid 0x00bab10c; {:?}",
                    k.initramfs, be.commandline
                ))
            },
        );

        run.check(
            "org.zfsbootmenu:commandline, where it is set and inherited",
            || {
                let source = |name: &str| {
                    let d = r.datasets.iter().find(|d| d.name == name)?;
                    Some(
                        d.zfsbootmenu
                            .get("org.zfsbootmenu:commandline")?
                            .source
                            .clone(),
                    )
                };
                ensure!(
                    source("rpool/ROOT").as_deref() == Some("local"),
                    "{:?}",
                    source("rpool/ROOT")
                );
                ensure!(
                    source(BOOTFS).as_deref() == Some("inherited from rpool/ROOT"),
                    "{:?}",
                    source(BOOTFS)
                );
                Ok("local on rpool/ROOT, inherited by rpool/ROOT/default".into())
            },
        );

        let vars = vmtests::efivars::read(&mut m)?;
        run.check("the firmware entries, as efivarfs has them", || {
            ensure!(
                r.firmware.boot_current == Some(vars.current),
                "{:?}",
                r.firmware
            );
            ensure!(
                r.firmware.entries.len() == vars.entries.len(),
                "{:?}",
                r.firmware.entries
            );
            for (n, e) in &vars.entries {
                let mine = r
                    .firmware
                    .entries
                    .iter()
                    .find(|x| x.number == *n)
                    .context("missing")?;
                ensure!(
                    mine.options == e.options && mine.file == e.file,
                    "{mine:?} vs {e:?}"
                );
            }
            ensure!(!r.firmware.boot_order.is_empty(), "no BootOrder");
            Ok(format!(
                "{} entries, BootCurrent {:04X}",
                vars.entries.len(),
                vars.current
            ))
        });

        let sha = m.succeed("sha256sum /boot/efi/EFI/ZBM/VMLINUZ.EFI | cut -d' ' -f1")?;
        run.check(
            "the ESP's files with their sha256; ZFSBootMenu's version",
            || {
                let esp = r.esps.first().context("no ESP")?;
                let file = esp
                    .files
                    .get("EFI/ZBM/VMLINUZ.EFI")
                    .context("no EFI/ZBM/VMLINUZ.EFI")?;
                ensure!(file.sha256 == sha.trim(), "{} vs {sha}", file.sha256);
                let zbm = esp
                    .zfsbootmenu
                    .get("EFI/ZBM/VMLINUZ.EFI")
                    .context("not read as ZBM")?;
                let version = zbm.release.as_ref().and_then(|r| r.version.clone());
                ensure!(version.as_deref() == Some("3.1.0"), "version {version:?}");
                ensure!(zbm.kernel.is_some(), "no kernel version");
                Ok(format!(
                    "{} files; ZFSBootMenu {version:?}",
                    esp.files.len()
                ))
            },
        );

        run.check("the disk, its sectors and partitions", || {
            let d = r.disks.iter().find(|d| d.name == "vda").context("no vda")?;
            ensure!(d.size_bytes == 16 << 30, "{} bytes", d.size_bytes);
            ensure!(d.logical_sector_bytes == Some(512), "{d:?}");
            ensure!(d.partitions.len() == 2, "{:?}", d.partitions);
            let esp = &d.partitions[0];
            ensure!(
                esp.size_bytes == 512 << 20 && esp.start_sector == Some(2048),
                "{esp:?}"
            );
            ensure!(
                esp.type_guid.as_deref() == Some(kldload::report::ESP_TYPE),
                "{esp:?}"
            );
            Ok(format!("vda: 16 GiB, {} partitions", d.partitions.len()))
        });

        let secrets = m.succeed(
            "hostname; cat /sys/class/net/*/address | grep -v '^00:00:00:00:00:00$'; \
             hostname -I | tr ' ' '\\n'",
        )?;
        run.check("redacted: no serial, host name, MAC or IP address", || {
            let mut gone: Vec<String> = secrets.split_whitespace().map(String::from).collect();
            // The firmware's network boot entries name the MAC without colons.
            let bare: Vec<String> = (gone.iter())
                .filter(|s| s.len() == 17 && s.matches(':').count() == 5)
                .map(|mac| mac.replace(':', ""))
                .collect();
            gone.extend(bare);
            gone.push("kldload-target".into());
            let text = json.to_lowercase();
            for s in &gone {
                ensure!(!text.contains(&s.to_lowercase()), "{s:?} is in the report");
            }
            ensure!(
                r.disks[0].serial.as_deref() == Some("<serial-1>"),
                "{:?}",
                r.disks[0]
            );
            Ok(format!("none of {gone:?}"))
        });
        let raw = m.kldload_report("--no-redact")?.json;
        run.check("--no-redact keeps the serial", || {
            ensure!(raw.contains("kldload-target"), "the serial is not there");
            Ok(summary.lines().next().unwrap_or_default().to_string())
        });
        Ok(())
    });
}
