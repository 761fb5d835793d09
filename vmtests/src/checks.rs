//! What the main job checks on the installed system, each a named result in the report. Every
//! check reads the real state (ZFS, firmware variables, systemd, the network) and compares it
//! with what the answer file and the recipe say it must be.

use crate::machine::Machine;
use crate::run::Run;
use anyhow::{Context, Result, bail, ensure};
use kldload::config::Config;
use std::time::Duration;

/// A named check.
pub type CheckFn = fn(&mut Machine, &Run, &Config) -> Result<String>;

/// Every check of the main job, in report order.
pub fn all() -> Vec<(&'static str, CheckFn)> {
    vec![
        ("console login with the root password", console_login),
        ("datasets and mountpoints", datasets),
        ("pool properties", pool_properties),
        ("tmp: sync=disabled, exec=off", tmp_properties),
        ("ashift=12 on the vdev", ashift),
        ("bootfs", bootfs),
        ("/ is the boot environment", root_dataset),
        ("one hostid in five places", hostid),
        ("kldload doctor agrees, at boot and when run", doctor),
        (
            "the doctor takes the readings of ZFSBootMenu and the initramfs the install kept",
            doctor_cache,
        ),
        ("firmware entries", firmware_entries),
        (
            "ZFSBootMenu's copies (and shim's files) are the ones planned",
            zfsbootmenu_copies,
        ),
        (
            "ZFSBootMenu's ZFS reads every pool feature, compatibility= keeps it so",
            zfsbootmenu_reads_the_pool,
        ),
        ("fstab mounts only the ESP", fstab),
        ("zfs services enabled and active", zfs_services),
        (
            "the boot skipped the wait for udev: no pool but the root pool to import",
            udev_settle_skipped,
        ),
        (
            "the first boot rebuilt no library cache: /etc was up to date",
            first_boot_no_ldconfig,
        ),
        ("encryption roots as the answer file chose", encryption),
        ("zpool.cache names the pool", zpool_cache),
        ("factory snapshot of every dataset", factory_snapshots),
        ("compressratio above 1.3", compressratio),
        ("wireguard module loads", |m, _, _| {
            m.succeed("modprobe wireguard && lsmod | grep -w ^wireguard")
        }),
        ("no compiler, no DKMS", no_compiler),
        ("e2scrub off: no LVM, no ext4 to scrub", e2scrub_off),
        ("hostname from the answer file", hostname),
        ("network up by DHCP, from systemd-networkd alone", network),
        ("sshd with host keys made here", sshd),
        ("SSH login with the answer file's key", ssh_login),
        (
            "kldload --version names the medium's image; completions and manual installed",
            version_and_its_files,
        ),
    ]
}

/// `kldload --version` on the installed system names the image it was installed from, as the
/// build cache names the medium's entry (`medium-<id>`), and the sources' commit this tree's
/// build has; the bash completion loads and names kldload, and the manual page is there.
fn version_and_its_files(m: &mut Machine, _: &Run, _: &Config) -> Result<String> {
    let medium = crate::env::VmTestEnv::from_env()?.medium()?;
    let id = (medium.parent())
        .and_then(|dir| dir.file_name()?.to_str()?.strip_prefix("medium-"))
        .with_context(|| format!("{} is not in a medium-<id> cache entry", medium.display()))?
        .to_string();
    let version = m.succeed("kldload --version")?;
    let want = format!("(commit {}, image {id})", kldload::version::COMMIT);
    ensure!(
        version.trim_end().ends_with(&want),
        "`kldload --version` said {:?}, not ... {want}",
        version.trim()
    );
    let completion = m.succeed(
        "bash -c '. /usr/share/bash-completion/completions/kldload && complete -p kldload'",
    )?;
    ensure!(
        completion.trim_end().ends_with(" kldload"),
        "the bash completion did not register kldload: {completion:?}"
    );
    m.succeed("test -s /usr/local/share/man/man8/kldload.8")?;
    Ok(format!("{}; {}", version.trim(), completion.trim()))
}

/// Runs every check and records each result.
pub fn run_all(m: &mut Machine, run: &mut Run, config: &Config) {
    for (name, check) in all() {
        let start = std::time::Instant::now();
        let result = check(m, run, config);
        run.report.timed_check(name, start, result);
    }
}

/// Runs every check against the run's answer file and records each result; how many failed.
pub fn run_all_counting_failures(m: &mut Machine, run: &mut Run) -> anyhow::Result<usize> {
    let config = Config::load(&run.answers)?;
    let before = run.report.checks.len();
    run_all(m, run, &config);
    Ok(run.report.checks[before..]
        .iter()
        .filter(|c| !c.passed)
        .count())
}

/// The login on the serial console: the shell's prompt it reached (Debian's names user and
/// host), and the login shell it started (root's `-bash` on ttyS0).
fn console_login(m: &mut Machine, _: &Run, c: &Config) -> Result<String> {
    let login = m
        .last_login
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no console login was made"))?;
    let login = crate::console::plain_text(&login);
    let prompt = login.lines().last().unwrap_or_default().trim().to_string();
    let want = format!("root@{}:", c.hostname.as_str());
    ensure!(
        prompt.contains(&want),
        "the login ended at {prompt:?}, not a prompt of {want}"
    );
    // The shell that login started on the console (no utmp on Debian 13 for `who`, no logind
    // session without libpam-systemd): root's login shell on ttyS0.
    // (Read from /proc: the payload has no procps. One `find` picks the processes, not a
    // readlink per process: 5 s under emulation.)
    let processes = m.succeed(
        "for f in $(find /proc/[0-9]*/fd/0 -maxdepth 0 -lname /dev/ttyS0 2>/dev/null); do \
         p=${f%/fd/0}; echo \"$(stat -c %U $p) $(tr '\\0' ' ' < $p/cmdline)\"; done; true",
    )?;
    let shell = processes
        .lines()
        .find(|l| l.split_whitespace().take(2).eq(["root", "-bash"]))
        .ok_or_else(|| anyhow::anyhow!("no login shell of root on ttyS0:\n{processes}"))?;
    Ok(format!("prompt {prompt:?}; on ttyS0: {}", shell.trim()))
}

/// `unit`'s systemd properties named in `keys`, each with its value ("" when systemctl did not
/// print it), in the order of `keys`. Read by name: `systemctl show` prints properties in its own
/// order, not the order they were asked for.
fn unit_properties(m: &mut Machine, unit: &str, keys: &[&str]) -> Result<Vec<String>> {
    let mut command = String::from("systemctl show");
    for key in keys {
        command.push_str(&format!(" -p {key}"));
    }
    let shown = m.execute(&format!("{command} {unit}"))?.stdout;
    Ok((keys.iter())
        .map(|key| {
            (shown.lines())
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or("")
                .to_string()
        })
        .collect())
}

/// The oneshot `unit` ran at this boot and exited 0.
fn ran_and_passed(m: &mut Machine, unit: &str) -> Result<()> {
    // `Result=success` alone is also what a unit that never started shows.
    let keys = [
        "Result",
        "ExecMainStartTimestampMonotonic",
        "ExecMainStatus",
    ];
    let fields = unit_properties(m, unit, &keys)?;
    ensure!(
        fields[0] == "success" && !["", "0"].contains(&fields[1].as_str()) && fields[2] == "0",
        "{unit} did not run and pass at boot ({}):\n{}",
        fields.join(" "),
        m.execute(&format!("systemctl status --no-pager {unit}"))?
            .stdout
    );
    Ok(())
}

/// ZFSBootMenu's EFI file as the installed system's kldload reads it, against the pool's
/// enabled and active features: any it cannot read would stop it importing the pool. And the
/// pool's `compatibility=` keeps it so: the older of ZFSBootMenu's set and the newest this
/// system's zfsutils has.
fn zfsbootmenu_reads_the_pool(m: &mut Machine, _: &Run, c: &Config) -> Result<String> {
    use kldload::zbm::image::{COMPATIBILITY_DIR, newest_openzfs_name, older_openzfs};
    let json = m.succeed("kldload inspect-zfsbootmenu --json")?;
    let image: kldload::zbm::image::ZbmImage = serde_json::from_str(&json)?;
    let set = image
        .zfs_features
        .ok_or_else(|| anyhow::anyhow!("no feature set read in ZFSBootMenu's EFI file: {json}"))?;
    let features = kldload::doctor::pool_features(&m.succeed(&format!(
        "zpool get -H -o property,value all {}",
        c.pool.name
    ))?);
    let unknown = set.unreadable(features.iter().map(|(f, _)| f.as_str()));
    ensure!(
        unknown.is_empty(),
        "pool {} has features {} cannot read: {unknown:?}",
        c.pool.name,
        set.name
    );
    let listing = m.succeed(&format!("ls /{COMPATIBILITY_DIR}"))?;
    let own = newest_openzfs_name(listing.lines())
        .ok_or_else(|| anyhow::anyhow!("no openzfs-X.Y set in /{COMPATIBILITY_DIR}"))?;
    let want = older_openzfs(&set.name, own);
    let compatibility = m.succeed(&format!(
        "zpool get -H -o value compatibility {}",
        c.pool.name
    ))?;
    ensure!(
        compatibility.trim() == want,
        "the pool's compatibility is {:?}, not {want} (ZFSBootMenu's {}, this system's {own})",
        compatibility.trim(),
        set.name
    );
    Ok(format!(
        "{} pool features, all in {} ({} features); compatibility={want}",
        features.len(),
        set.name,
        set.features.len()
    ))
}

/// The installed `kldload doctor` reads the same five places: its unit ran at boot and passed,
/// and run now it reports one hostid in every place, every place readable (ZFSBootMenu's EFI
/// file too), exit status 0.
fn doctor(m: &mut Machine, _: &Run, c: &Config) -> Result<String> {
    ran_and_passed(m, kldload::recipe::finalize::DOCTOR_UNIT)?;
    let report = m.succeed(&format!("kldload doctor --pool {}", c.pool.name))?;
    ensure!(
        report.contains("agrees in every place\n"),
        "kldload doctor said:\n{report}"
    );
    Ok(report.lines().next().unwrap_or_default().to_string())
}

/// The install read ZFSBootMenu's file on the ESP and the initramfs images and kept their
/// readings where the doctor looks first (`kldload inspect-zfsbootmenu --remember`,
/// `kldload inspect-initramfs --remember`), so the doctor's unit at the first boot decompressed
/// neither ZFSBootMenu's initramfs nor the system's: each cache is as old as the install, not
/// rewritten since (the doctor writes one when it reads the file itself, as it did at every
/// first boot before). The install log's last line is the install's end.
fn doctor_cache(m: &mut Machine, _: &Run, _: &Config) -> Result<String> {
    let caches = [
        kldload::doctor::ZBM_READ_CACHE,
        kldload::initrd::readings::CACHE,
    ];
    let log = format!("/{}", kldload::recipe::base_os::INSTALL_LOG);
    let out = m.succeed(&format!("stat -c '%Y %n' {} {log}", caches.join(" ")))?;
    let times: Vec<i64> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    let [zbm, initramfs, installed] = times[..] else {
        bail!(
            "stat said:
{out}"
        );
    };
    for (cache, written) in caches.iter().zip([zbm, initramfs]) {
        ensure!(
            written <= installed,
            "{cache} was written {}s after the install ended ({log}): the doctor read the \
             files itself",
            written - installed
        );
    }
    Ok(format!(
        "{} and {} written {}s and {}s before the install's last log line, unchanged since",
        caches[0],
        caches[1],
        installed - zbm,
        installed - initramfs
    ))
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

/// The pool's root dataset has the recipe's properties, each set there (source `local`): a
/// value that is only the default proves nothing (OpenZFS 2.3's default xattr reads `on`, as
/// does xattr=sa).
fn pool_properties(m: &mut Machine, _: &Run, c: &Config) -> Result<String> {
    let pool = c.pool.name.as_str();
    // dnodesize=auto needs the feature large_dnode, which a pool of `pool.features` may lack.
    let dnodes = c.pool.has_feature("large_dnode");
    let properties = if dnodes {
        "compression,acltype,xattr,dnodesize"
    } else {
        "compression,acltype,xattr"
    };
    let out = m.succeed(&format!(
        "zfs get -H -o property,value,source {properties} {pool}"
    ))?;
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
    ensure!(
        rows.len() == properties.split(',').count() && rows.iter().all(|r| r.len() == 3),
        "unexpected output {out:?}"
    );
    let not_local: Vec<String> = rows
        .iter()
        .filter(|r| r[2] != "local")
        .map(|r| format!("{}={} ({})", r[0], r[1], r[2]))
        .collect();
    ensure!(
        not_local.is_empty(),
        "not set on {pool} itself: {}",
        not_local.join(", ")
    );
    let (compression, acltype, xattr) = (rows[0][1], rows[1][1], rows[2][1]);
    if dnodes {
        ensure!(rows[3][1] == "auto", "dnodesize={}", rows[3][1]);
    }
    // Set only when the pool is made, so its source reads "-", not "local".
    let normalization = m.succeed(&format!("zfs get -H -o value normalization {pool}"))?;
    ensure!(
        normalization.trim() == "formD",
        "normalization={}",
        normalization.trim()
    );
    ensure!(
        compression == c.pool.compression.as_str(),
        "compression={compression}"
    );
    // ZFS 2.3 shows posixacl as "posix".
    ensure!(
        acltype == "posixacl" || acltype == "posix",
        "acltype={acltype}"
    );
    let version = m.succeed("zfs version | head -n1")?;
    ensure!(
        xattr_is_sa(xattr, version.trim()),
        "xattr={xattr} with {}",
        version.trim()
    );
    let dnodesize = if dnodes {
        " dnodesize=auto"
    } else {
        " (no large_dnode: no dnodesize)"
    };
    Ok(format!(
        "compression={compression} acltype={acltype} xattr={xattr}{dnodesize}, all local; \
         normalization=formD ({})",
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

/// One hostid, read in every place it lives, each with the parser `kldload doctor` uses (the
/// kernel's reading of numbers, the last `spl.spl_hostid=` winning). Three places hold what the
/// install wrote: /etc/hostid, the initramfs and the pool's label as the live system left it
/// (read there before the first boot: every import rewrites it). One is ZFSBootMenu's own
/// value, `spl.spl_hostid` on the kernel command line. Two echo that back and prove only that
/// it was taken: the SPL's parameter and the label after this boot's import.
fn hostid(m: &mut Machine, run: &Run, c: &Config) -> Result<String> {
    use kldload::doctor::{Place, boot_menu_hostid, label_hostid};
    use kldload::zbm::hostid::{parse_hostid_file, parse_kernel_number};
    let want = run.expected_hostid()?;
    let label_before = run.label_before_first_boot.as_deref().ok_or_else(|| {
        anyhow::anyhow!("the label was not read on the live system after the install")
    })?;
    let etc = parse_hostid_file(&m.succeed_bytes("cat /etc/hostid")?);
    // Unpacked in RAM: into /tmp (a ZFS dataset) the same unmkinitramfs took 33 s against
    // 7 s in /dev/shm under emulation (this machine, one VM).
    let initramfs = parse_hostid_file(&m.succeed_bytes(
        "d=$(mktemp -d -p /dev/shm); unmkinitramfs /boot/initrd.img-$(uname -r) $d >/dev/null; \
         cat $(find $d -path '*/etc/hostid' | head -n1); rm -rf $d",
    )?);
    let boot_menu = match boot_menu_hostid(&m.succeed("cat /proc/cmdline")?) {
        Place::Value(v) => Some(v),
        _ => None,
    };
    let spl = parse_kernel_number(&m.succeed("cat /sys/module/spl/parameters/spl_hostid")?);
    let label_now = label_hostid(&m.succeed(&format!(
        "zdb -l $(zpool list -vHPL {} | awk '$1 ~ /^\\/dev\\// {{print $1; exit}}')",
        c.pool.name
    ))?);
    let places = [
        ("/etc/hostid", etc),
        ("initramfs", initramfs),
        (
            "pool label before the first boot",
            label_hostid(label_before),
        ),
        ("ZFSBootMenu's spl.spl_hostid", boot_menu),
        ("SPL (echo)", spl),
        ("pool label after this boot (echo)", label_now),
    ];
    let show = |v: Option<u32>| v.map_or("none".to_string(), |v| format!("0x{v:08x}"));
    let all: Vec<String> = places
        .iter()
        .map(|(place, v)| format!("{place}={}", show(*v)))
        .collect();
    for (place, value) in &places {
        ensure!(
            *value == Some(want),
            "{place} has hostid {}, not 0x{want:08x}; all: {}",
            show(*value),
            all.join(", ")
        );
    }
    Ok(format!(
        "0x{want:08x} written to /etc/hostid, the initramfs and the label; ZFSBootMenu's \
         spl.spl_hostid; echoed by the SPL and the label after boot"
    ))
}

/// A firmware entry the plan makes, read back from its efibootmgr argv.
#[derive(Debug)]
struct PlannedEntry {
    label: String,
    /// The disk whose ESP (partition 1) holds the loader, as the answer file names it.
    disk: String,
    loader: String,
    options: Option<String>,
}

/// The plan the installer makes of `c` (its disks named as the answer file names them): the
/// plan is data, made here as the installer made it.
fn plan_of(c: &Config) -> Result<kldload::plan::Plan> {
    Ok(kldload::app::make_plan(
        c,
        &kldload::app::Overrides::default(),
        &kldload::disk::FakeSystem::default(),
        &crate::env::project_root().join("fixtures/host-root"),
    )?)
}

/// The firmware entries the plan makes, in the order it makes them, from the run's answer file.
fn planned_entries(c: &Config) -> Result<Vec<PlannedEntry>> {
    let plan = plan_of(c)?;
    let mut entries = Vec::new();
    for action in plan.steps.iter().flat_map(|s| &s.actions) {
        let kldload::plan::Action::Run { argv, .. } = action else {
            continue;
        };
        if argv.first().map(String::as_str) != Some("efibootmgr")
            || !argv.iter().any(|a| a == "--create")
        {
            continue;
        }
        let after = |flag: &str| {
            argv.iter()
                .position(|a| a == flag)
                .and_then(|i| argv.get(i + 1))
                .cloned()
        };
        entries.push(PlannedEntry {
            label: after("--label").unwrap_or_default(),
            disk: after("--disk").unwrap_or_default(),
            loader: after("--loader").unwrap_or_default(),
            options: after("--unicode"),
        });
    }
    ensure!(!entries.is_empty(), "the plan makes no firmware entry");
    Ok(entries)
}

/// A disk's ESP, as the installer partitions it.
fn esp_of(disk: &str) -> String {
    kldload::disk::naming::partition_path(
        std::path::Path::new(disk),
        kldload::recipe::partition::ESP_PARTITION,
    )
    .to_string_lossy()
    .into_owned()
}

/// A shell script that prints a `sha256sum` line for each of `files` (a file and the sha256 of
/// its planned content). The first file of each planned content is hashed; each later one is
/// compared with that first one by `cmp` and, when it is the same byte for byte, gets the first
/// one's sha256 (what the machine printed for it), else is hashed itself: cheaper under
/// emulation than hashing every 55 MB copy. A missing file prints nothing.
fn same_or_sha256_script(files: &[(String, &str)]) -> String {
    // Per planned content: its first file, and the shell variable holding that file's sha256.
    let mut first: Vec<(&str, &str, String)> = Vec::new();
    let mut lines = Vec::new();
    for (i, (file, want)) in files.iter().enumerate() {
        match first.iter().find(|(w, _, _)| w == want) {
            Some((_, earlier, sum)) => lines.push(format!(
                "if cmp -s {earlier} {file}; then echo \"{sum}  {file}\"; else sha256sum {file}; fi"
            )),
            None => {
                lines.push(format!(
                    "s{i}=$(sha256sum {file} | cut -d' ' -f1) && [ -n \"$s{i}\" ] && echo \"$s{i}  {file}\""
                ));
                first.push((want, file, format!("$s{i}")));
            }
        }
    }
    lines.join("; ")
}

/// The ESP of each of the answer file's disks, as the installed machine names it (the answer
/// file's paths, so they must be stable ones: by-id, or the target's /dev/vda).
fn esp_partitions(c: &Config) -> Vec<String> {
    c.disks.paths.iter().map(|d| esp_of(d.as_str())).collect()
}

/// Each firmware entry the plan makes is in the NVRAM as planned (on its disk's ESP partition,
/// its loader, exactly the plan's load options), read from efivarfs and decoded here; and the
/// firmware booted this time through the entry the plan made last, which efibootmgr put first
/// in BootOrder (the first disk's primary).
fn firmware_entries(m: &mut Machine, _: &Run, c: &Config) -> Result<String> {
    let crate::efivars::BootVariables { current, entries } = crate::efivars::read(m)?;
    let planned = planned_entries(c)?;
    let mut first = None;
    let mut disks = std::collections::BTreeSet::new();
    for entry in &planned {
        let partuuid = m
            .succeed(&format!(
                "blkid -s PARTUUID -o value {}",
                esp_of(&entry.disk)
            ))?
            .trim()
            .to_lowercase();
        let label = &entry.label;
        let (number, found) = entries
            .iter()
            .find(|(_, e)| e.description == *label)
            .ok_or_else(|| anyhow::anyhow!("no firmware entry {label:?}; there are {entries:?}"))?;
        ensure!(
            found.partition_guid.as_deref() == Some(partuuid.as_str()),
            "Boot{number:04X} {label:?} is on partition {:?}, not {}'s ESP {partuuid}",
            found.partition_guid,
            entry.disk
        );
        ensure!(
            found.file.as_deref() == Some(entry.loader.as_str()),
            "Boot{number:04X} {label:?} loads {:?}, not {}",
            found.file,
            entry.loader
        );
        ensure!(
            found.options == entry.options,
            "Boot{number:04X} {label:?} has load options {:?}, the plan {:?}",
            found.options,
            entry.options
        );
        first = Some((*number, label.clone()));
        disks.insert(entry.disk.clone());
    }
    let (first, label) = first.expect("at least one planned entry");
    ensure!(
        current == first,
        "the firmware booted Boot{current:04X}, not kldload's first {label:?} Boot{first:04X}"
    );
    Ok(format!(
        "BootCurrent Boot{first:04X} {label:?}; {} planned entries on the ESPs of {} disk(s), \
         with the plan's load options",
        planned.len(),
        disks.len()
    ))
}

/// The command line the plan embeds in ZFSBootMenu's EFI file (`Action::EmbedCmdline`).
fn planned_embedded_cmdline(c: &Config) -> Result<String> {
    plan_of(c)?
        .steps
        .iter()
        .flat_map(|s| &s.actions)
        .find_map(|action| match action {
            kldload::plan::Action::EmbedCmdline { line, .. } => Some(line.clone()),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("the plan embeds no command line in ZFSBootMenu's file"))
}

/// The boot files on every disk's ESP are the ones the plan puts there (the other disks' ESPs
/// mounted read-only for the look). Started directly: ZFSBootMenu's primary, its backup and the
/// fallback loader are each the file the answer file chose on the medium, with the plan's load
/// options embedded as its command line. Through shim (Secure Boot): ZFSBootMenu's two copies
/// are the medium's signed one as it is, shim and MokManager are the medium's next to it and at
/// the fallback path, with shim's fallback, and EFI/ZBM/BOOTX64.CSV reads (as UCS-2) as planned.
fn zfsbootmenu_copies(m: &mut Machine, run: &Run, c: &Config) -> Result<String> {
    use kldload::recipe::boot_menu::{
        FALLBACK, FALLBACK_MOK_MANAGER, MOK_MANAGER, SHIM, SHIM_CSV, SHIM_FALLBACK, ZBM_BACKUP,
        ZBM_PRIMARY,
    };
    // Through shim when the plan's firmware entries start shim.
    let shim_loader = kldload::recipe::boot_menu::firmware_path(SHIM);
    let through_shim = planned_entries(c)?.iter().any(|e| e.loader == shim_loader);
    let (expected, what): (Vec<(&str, String)>, String) = if through_shim {
        use kldload::medium::{
            ESP_MOK_MANAGER, ESP_SHIM, ESP_SHIM_FALLBACK, ESP_ZFSBOOTMENU_SIGNED,
        };
        let zbm = run.medium_file_sha256(ESP_ZFSBOOTMENU_SIGNED)?;
        let shim = run.medium_file_sha256(ESP_SHIM)?;
        let mok_manager = run.medium_file_sha256(ESP_MOK_MANAGER)?;
        let fallback = run.medium_file_sha256(ESP_SHIM_FALLBACK)?;
        (
            vec![
                (ZBM_PRIMARY, zbm.clone()),
                (ZBM_BACKUP, zbm.clone()),
                (SHIM, shim.clone()),
                (FALLBACK, shim.clone()),
                (MOK_MANAGER, mok_manager.clone()),
                (FALLBACK_MOK_MANAGER, mok_manager),
                (SHIM_FALLBACK, fallback),
            ],
            format!("the medium's signed ZFSBootMenu {zbm}, shim {shim}, MokManager, fbx64"),
        )
    } else {
        let embedded = planned_embedded_cmdline(c)?;
        let source = run.installed_zfsbootmenu_sha256(&embedded)?;
        (
            vec![
                (ZBM_PRIMARY, source.clone()),
                (ZBM_BACKUP, source.clone()),
                (FALLBACK, source.clone()),
            ],
            format!("sha256 {source}, embedded command line {embedded:?}"),
        )
    };
    let csv = through_shim.then(|| planned_shim_csv(c)).transpose()?;
    let mut esps = vec![("/boot/efi".to_string(), None)];
    for (i, part) in esp_partitions(c).into_iter().enumerate().skip(1) {
        let dir = format!("/run/kldload-check-esp-{i}");
        m.succeed(&format!("mkdir -p {dir} && mount -o ro {part} {dir}"))?;
        esps.push((dir, Some(part)));
    }
    let mut checked = 0;
    let mut result = Ok(());
    // Every ESP's files in one script, so each planned content is hashed once in all.
    let esp_files = |dir: &str| -> Vec<(String, &str)> {
        expected
            .iter()
            .map(|(f, want)| (format!("{dir}/{f}"), want.as_str()))
            .collect()
    };
    let all: Vec<(String, &str)> = esps.iter().flat_map(|(dir, _)| esp_files(dir)).collect();
    let out = m.execute(&same_or_sha256_script(&all))?;
    let printed: Vec<(&str, &str)> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_once("  "))
        .collect();
    for (dir, part) in &esps {
        let on = part.as_deref().unwrap_or("the mounted ESP");
        let files = esp_files(dir);
        let sums: Vec<(&String, &str, &str)> = files
            .iter()
            .filter_map(|(file, want)| {
                let (sum, _) = printed.iter().find(|(_, f)| f == file)?;
                Some((file, *want, *sum))
            })
            .collect();
        if sums.len() != files.len() && result.is_ok() {
            result = Err(anyhow::anyhow!("{on}: {}{}", out.stdout, out.stderr));
        }
        for (file, want, sum) in &sums {
            if sum != want && result.is_ok() {
                result = Err(anyhow::anyhow!(
                    "{file} ({on}) has sha256 {sum}, the planned file {want}"
                ));
            }
        }
        checked += sums.len();
        if let Some(csv) = &csv {
            let found = m.succeed(&format!("iconv -f UTF-16LE -t UTF-8 {dir}/{SHIM_CSV}"))?;
            if found != *csv && result.is_ok() {
                result = Err(anyhow::anyhow!(
                    "{dir}/{SHIM_CSV} ({on}) reads {found:?}, the plan {csv:?}"
                ));
            }
        }
    }
    for (dir, part) in &esps {
        if part.is_some() {
            m.succeed(&format!("umount {dir} && rmdir {dir}"))?;
        }
    }
    result?;
    Ok(format!(
        "all {checked} files on {} ESP(s) as planned: {what}{}",
        esps.len(),
        if csv.is_some() {
            "; BOOTX64.CSV as planned"
        } else {
            ""
        }
    ))
}

/// The list the plan writes for shim's fallback (the text fed to iconv).
fn planned_shim_csv(c: &Config) -> Result<String> {
    plan_of(c)?
        .steps
        .iter()
        .flat_map(|s| &s.actions)
        .find_map(|action| match action {
            kldload::plan::Action::Run {
                argv,
                stdin: Some(kldload::plan::Stdin::Text { text }),
                ..
            } if argv[0] == "iconv" => Some(text.clone()),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("the plan writes no BOOTX64.CSV for shim's fallback"))
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

/// The boot did not wait for udev to settle: zpool.cache names only the root pool, which the
/// initramfs imported, so kldload's drop-in had `kldload pools-to-import` skip the wait, as
/// systemd recorded it. The scenario second-pool-imported-at-boot is the control: with another
/// pool in zpool.cache the same reading says the wait ran, and that pool is imported.
fn udev_settle_skipped(m: &mut Machine, _: &Run, _: &Config) -> Result<String> {
    let unit = "systemd-udev-settle.service";
    let state = unit_properties(m, unit, &["Result", "ActiveState"])?;
    ensure!(
        state == ["exec-condition", "inactive"],
        "{unit} was not skipped by its ExecCondition (Result={}, ActiveState={}):\n{}",
        state[0],
        state[1],
        m.execute(&format!("journalctl -b -o cat -u {unit}"))?
            .stdout
    );
    Ok(format!("{unit}: skipped (exec-condition)"))
}

/// The install stamped /etc as up to date with /usr (systemd-update-done), so ldconfig.service,
/// which runs when /usr is newer (`ConditionNeedsUpdate=/etc`), was skipped by its condition.
/// On the main job's first boot this tells; after any first boot it holds anyway.
fn first_boot_no_ldconfig(m: &mut Machine, _: &Run, _: &Config) -> Result<String> {
    let unit = "ldconfig.service";
    let state = unit_properties(m, unit, &["ConditionResult", "ActiveState"])?;
    let stamp = m.succeed("cat /etc/.updated")?;
    ensure!(
        state == ["no", "inactive"],
        "{unit} ran (ConditionResult={}, ActiveState={}): the first boot found /etc older than \
         /usr\n{stamp}",
        state[0],
        state[1]
    );
    let nsec = (stamp.lines()).find_map(|l| l.strip_prefix("TIMESTAMP_NSEC="));
    Ok(format!(
        "{unit}: skipped by its condition; /etc/.updated TIMESTAMP_NSEC={}",
        nsec.unwrap_or("")
    ))
}

/// Each dataset's encryption root is the one the answer file chose ("-": unencrypted), its key
/// loaded and the filesystem mounted; an encrypted install's key-loading unit ran and passed
/// (it loads what the initramfs did not: root-and-home's home).
fn encryption(m: &mut Machine, _: &Run, c: &Config) -> Result<String> {
    let pool = c.pool.name.as_str();
    let listed = m.succeed(&format!(
        "zfs list -H -o name,encryptionroot,keystatus,mounted -t filesystem -r {pool}"
    ))?;
    let mut wrong = Vec::new();
    let mut roots = std::collections::BTreeMap::<String, Vec<String>>::new();
    let datasets = c.datasets();
    let paths = std::iter::once(("", false)).chain(datasets.iter().map(|d| {
        let mounts = d.canmount != Some("off") && d.mountpoint.as_str() != "none";
        (d.path.as_str(), mounts)
    }));
    for (path, mounts) in paths {
        let name = kldload::config::dataset_name(pool, path);
        let root = c.encryption.encryption_root(pool, path);
        let want = format!(
            "{name}\t{}\t{}\t{}",
            root.as_deref().unwrap_or("-"),
            if root.is_some() { "available" } else { "-" },
            if mounts { "yes" } else { "no" }
        );
        if !listed.lines().any(|l| l == want) {
            wrong.push(want);
        }
        let label = if path.is_empty() { pool } else { path };
        roots
            .entry(root.unwrap_or_else(|| "unencrypted".into()))
            .or_default()
            .push(label.to_string());
    }
    ensure!(
        wrong.is_empty(),
        "expected (name, encryptionroot, keystatus, mounted): {wrong:?}\nlisted:\n{listed}"
    );
    let mut said: Vec<String> = roots
        .iter()
        .map(|(root, paths)| format!("{root}: {}", paths.join(", ")))
        .collect();
    if c.encryption.enabled {
        let unit = kldload::recipe::finalize::LOAD_KEYS_UNIT;
        ran_and_passed(m, unit)?;
        said.push(format!("keys loaded, {unit} ran and passed"));
    }
    Ok(said.join("; "))
}

/// /etc/zfs/zpool.cache, read with zdb, describes the pool by its guid (a stale or foreign cache
/// file would import something else, or nothing).
fn zpool_cache(m: &mut Machine, _: &Run, c: &Config) -> Result<String> {
    let pool = c.pool.name.as_str();
    let guid = m.succeed(&format!("zpool get -H -o value guid {pool}"))?;
    let cached = m.succeed("zdb -U /etc/zfs/zpool.cache -C")?;
    let names_pool = cached
        .lines()
        .any(|l| l.trim() == format!("name: '{pool}'"));
    let cached_guid = cached
        .lines()
        .find_map(|l| l.trim().strip_prefix("pool_guid: "))
        .unwrap_or("none");
    ensure!(
        names_pool && cached_guid == guid.trim(),
        "the cache file describes pool_guid {cached_guid} (names {pool}: {names_pool}); {pool} \
         is {}:\n{cached}",
        guid.trim()
    );
    Ok(format!("{pool}, pool_guid {cached_guid}"))
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

/// e2fsprogs' ext4 scrub units are disabled (they act on LVM snapshots of ext4, and a kldload
/// machine has neither); ssh.service, asked in the same query, is the control that it sees an
/// enabled unit.
fn e2scrub_off(m: &mut Machine, _: &Run, _: &Config) -> Result<String> {
    let units = ["e2scrub_reap.service", "e2scrub_all.timer", "ssh.service"];
    let out = m.execute(&format!("systemctl is-enabled {}", units.join(" ")))?;
    let states: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    let all = units
        .iter()
        .zip(&states)
        .map(|(u, s)| format!("{u} {s}"))
        .collect::<Vec<_>>()
        .join(", ");
    ensure!(
        states == ["disabled", "disabled", "enabled"],
        "want e2scrub_reap.service and e2scrub_all.timer disabled, ssh.service enabled: {all}"
    );
    Ok(all)
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
    // A link is "configured" once networkd has finished with it, which may come a moment after
    // its address.
    m.wait_until_succeeds(
        "networkctl list --no-legend --no-pager | grep -w configured",
        Duration::from_secs(60),
    )
    .context("systemd-networkd configured no link")?;
    // One network manager: ifupdown (in Debian's default set) would start networking.service
    // at every boot beside networkd, for nothing. The same query on systemd, which is
    // installed, is the control that it sees an installed package.
    let packages = m.succeed(
        "for p in systemd ifupdown; do \
           dpkg-query -W -f '${Package} ${db:Status-Status}\\n' $p 2>/dev/null || echo \"$p none\"; \
         done",
    )?;
    ensure!(
        packages.contains("systemd installed"),
        "dpkg-query does not see systemd installed: {packages}"
    );
    ensure!(
        !packages.contains("ifupdown installed"),
        "ifupdown is installed beside systemd-networkd: {packages}"
    );
    Ok(format!(
        "{ip} by DHCP, from systemd-networkd alone ({})",
        packages.trim().replace('\n', ", ")
    ))
}

/// sshd runs with host keys this machine's install made: the ones the live system read on the
/// target right after the install (the payload ships none; the image test checks that).
fn sshd(m: &mut Machine, run: &Run, _: &Config) -> Result<String> {
    m.wait_for_unit("ssh.service", Duration::from_secs(60))?;
    let enabled = m.succeed("systemctl is-enabled ssh.service")?;
    ensure!(
        enabled.trim() == "enabled",
        "ssh.service is {}",
        enabled.trim()
    );
    let keys = crate::guest::fingerprints(&m.succeed(&crate::guest::host_keys_command(""))?);
    ensure!(keys.len() >= 2, "host keys: {keys:?}");
    ensure!(
        keys == run.host_keys_as_installed,
        "the host keys are {keys:?}, the install made {:?}",
        run.host_keys_as_installed
    );
    Ok(format!("{}, as the install made them", keys.join(" ")))
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

    /// The copies script, run in sh over files in a temporary directory: every line names its
    /// file with the sha256 sha256sum gives that file, a later copy is compared by cmp with the
    /// first file of its content, a copy that differs is hashed on its own, and a missing file
    /// prints no line.
    #[test]
    fn each_line_is_the_files_own_sha256_and_a_different_copy_is_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
        std::fs::write(path("a"), b"zfsbootmenu").unwrap();
        std::fs::write(path("b"), b"zfsbootmenu").unwrap();
        std::fs::write(path("c"), b"tampered").unwrap();
        let sum = |n: &str| kldload::hash::file_sha256(std::path::Path::new(&path(n))).unwrap();
        let want = sum("a");
        let files: Vec<(String, &str)> = ["a", "b", "c", "missing"]
            .iter()
            .map(|n| (path(n), want.as_str()))
            .collect();
        let script = same_or_sha256_script(&files);
        assert!(
            script.contains(&format!("if cmp -s {} {};", path("a"), path("b"))),
            "{script}"
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                format!("{want}  {}", path("a")),
                format!("{want}  {}", path("b")),
                format!("{}  {}", sum("c"), path("c")),
            ],
            "{script}"
        );
    }

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
    fn the_default_answers_plan_two_entries_with_zfsbootmenus_command_line() {
        let root = crate::env::project_root();
        let c = Config::load(&root.join(crate::answers::DEFAULT_ANSWERS)).unwrap();
        let entries = planned_entries(&c).unwrap();
        let labels: Vec<&str> = entries.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(labels, ["ZFSBootMenu (Backup)", "ZFSBootMenu"]);
        for PlannedEntry {
            loader,
            options,
            disk,
            ..
        } in &entries
        {
            assert_eq!(disk, "/dev/vda");
            assert!(loader.starts_with("\\EFI\\ZBM\\"), "{loader}");
            let options = options.as_deref().unwrap();
            assert!(
                options.contains("zbm.timeout=2") && options.contains("console=ttyS0,115200"),
                "{options}"
            );
        }
    }
}
