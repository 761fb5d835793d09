use super::*;

const MINIMAL: &str = r#"
hostname = "box"
[disks]
paths = ["/dev/vdb"]
[root]
ssh_authorized_keys = ["ssh-ed25519 AAAAC3Nza user@host"]
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "answers.toml")
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn defaults_follow_the_recipe() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.distro, Distro::Debian13);
    assert_eq!(c.pool.name.as_str(), "rpool");
    assert_eq!(c.pool.ashift.get(), 12);
    assert_eq!(c.pool.compression.as_str(), "lz4");
    assert_eq!(c.disks.esp_size.bytes(), 512 * MIB);
    assert_eq!(c.disks.layout, Layout::Single);
    assert!(c.network.dhcp);
    assert_eq!(c.timezone.as_str(), "UTC");
    assert!(!c.encryption.enabled);
}

/// An unattended install that fails keeps the live system up by default, whatever it does
/// after a success: the error on the console would go with the power.
#[test]
fn a_failed_install_leaves_the_shell_unless_told_otherwise() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.after_install, AfterInstall::Poweroff);
    assert_eq!(c.after_failure, AfterInstall::Shell);
    let told = parse(&format!("after_failure = \"poweroff\"\n{MINIMAL}")).unwrap();
    assert_eq!(told.after_failure, AfterInstall::Poweroff);
}

#[test]
fn the_recipe_datasets_and_their_properties() {
    let c = parse(MINIMAL).unwrap();
    let ds = c.datasets();
    let names: Vec<&str> = ds.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        names,
        ["ROOT", "ROOT/default", "home", "var", "tmp", "var/log"]
    );
    let tmp = ds.iter().find(|d| d.path.as_str() == "tmp").unwrap();
    let prop = |d: &Dataset, k: &str| {
        d.properties
            .get(&PropertyName::new(k).unwrap())
            .map(|v| v.as_str().to_string())
    };
    assert_eq!(prop(tmp, "sync").as_deref(), Some("disabled"));
    assert_eq!(prop(tmp, "exec").as_deref(), Some("off"));
    let root = ds
        .iter()
        .find(|d| d.path.as_str() == "ROOT/default")
        .unwrap();
    assert_eq!(root.mountpoint.as_str(), "/");
    assert_eq!(root.canmount, Some("noauto"));
    let log = ds.iter().find(|d| d.path.as_str() == "var/log").unwrap();
    assert_eq!(log.mountpoint.as_str(), "/var/log");
}

#[test]
fn user_datasets_are_added_and_merged() {
    let c = parse(&format!(
        "{MINIMAL}\n[[datasets]]\nname = \"home\"\nproperties = {{ quota = \"10G\" }}\n\
         [[datasets]]\nname = \"srv/www\"\nproperties = {{ recordsize = \"1M\" }}\n"
    ))
    .unwrap();
    let ds = c.datasets();
    let home = ds.iter().find(|d| d.path.as_str() == "home").unwrap();
    assert_eq!(home.properties.len(), 1);
    let www = ds.iter().find(|d| d.path.as_str() == "srv/www").unwrap();
    assert_eq!(www.mountpoint.as_str(), "/srv/www");
    // Children come after their parents.
    let pos = |n: &str| ds.iter().position(|d| d.path.as_str() == n).unwrap();
    assert!(pos("var") < pos("var/log"));
    assert!(pos("ROOT/default") < pos("home"));
}

#[test]
fn the_fixtures_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/answers");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(seen >= 2);
}

#[test]
fn a_malformed_file_names_the_line() {
    let e = error("hostname = \"box\"\n[disks\npaths = []\n");
    assert!(e.starts_with("answers.toml:2:"), "{e}");
}

#[test]
fn a_wrong_type_names_the_line_and_the_key() {
    let text = MINIMAL.replace("[root]", "[pool]\nashift = \"twelve\"\n[root]");
    let e = error(&text);
    assert!(e.contains("answers.toml:6:"), "{e}");
    assert!(e.contains("key `pool.ashift`"), "{e}");
    assert!(e.contains("expected u8"), "{e}");
}

#[test]
fn an_unknown_key_is_named_with_the_known_ones() {
    let e = error(&format!("hostnmae = \"x\"\n{MINIMAL}"));
    assert!(e.starts_with("answers.toml:1:1: "), "{e}");
    assert!(
        e.contains("unknown field `hostnmae`") && e.contains("`hostname`"),
        "{e}"
    );
    let e = error(&format!("{MINIMAL}\nquota = \"1G\"\n"));
    assert!(
        e.contains("key `root.quota`") && e.contains("`password_hash`"),
        "{e}"
    );
}

#[test]
fn a_bad_name_is_refused_with_the_reason() {
    let e = error(&MINIMAL.replace("\"box\"", "\"bad_host\""));
    assert!(
        e.contains("key `hostname`") && e.contains("'_' is not allowed"),
        "{e}"
    );
    let e = error(&format!("{MINIMAL}\n[pool]\nname = \"mirror1\"\n"));
    assert!(
        e.contains("key `pool.name`") && e.contains("reserved"),
        "{e}"
    );
    let e = error(&format!("{MINIMAL}\n[[datasets]]\nname = \"srv/-o\"\n"));
    assert!(
        e.contains("key `datasets[0].name`") && e.contains("may not start with '-'"),
        "{e}"
    );
    let e = error(&format!(
        "{MINIMAL}\n[[datasets]]\nname = \"srv\"\nproperties = {{ quota = \"1G\\n\" }}\n"
    ));
    assert!(e.contains("control character"), "{e}");
}

#[test]
fn an_unknown_distro_lists_the_known_ones() {
    let e = error(&format!("distro = \"arch\"\n{MINIMAL}"));
    assert!(
        e.contains("key `distro`") && e.contains("debian-13") && e.contains("rocky-9"),
        "{e}"
    );
}

#[test]
fn single_values_are_refused_by_their_types_with_the_line() {
    let cases: [(String, &str, &str); 9] = [
        (
            MINIMAL.replace("\"/dev/vdb\"", "\"vdb\""),
            "disks.paths[0]",
            "not a device path",
        ),
        (
            MINIMAL.replace("[disks]", "[disks]\nesp_size = \"1M\""),
            "disks.esp_size",
            "at least 64MiB",
        ),
        (
            format!("{MINIMAL}\n[pool]\nashift = 20\n"),
            "pool.ashift",
            "9 to 16",
        ),
        (
            format!("{MINIMAL}\n[pool]\ncompression = \"fast\"\n"),
            "pool.compression",
            "not a ZFS compression",
        ),
        (
            format!("{MINIMAL}\n[zfsbootmenu]\nserial_console = \"ttyS0 115200\"\n"),
            "zfsbootmenu.serial_console",
            "ttyS0,115200",
        ),
        (
            format!("{MINIMAL}\n[disks.filter]\nserial = \"[a\"\n")
                .replace("paths = [\"/dev/vdb\"]", ""),
            "disks.filter.serial",
            "bad pattern",
        ),
        (
            format!(
                "{MINIMAL}\n[zfsbootmenu]\nurl = \"ftp://x\"\nsha256 = \"{}\"\n",
                "a".repeat(64)
            ),
            "zfsbootmenu.url",
            "not an http(s) URL",
        ),
        (
            format!("{MINIMAL}\n[zfsbootmenu]\nsource = \"zfsbootmenu.EFI\"\n"),
            "zfsbootmenu.source",
            "give \"built\"",
        ),
        (
            format!("{MINIMAL}\n[zfsbootmenu]\ncommandline = \"quiet \\\"x\\\"\"\n"),
            "zfsbootmenu.commandline",
            "without quotes",
        ),
    ];
    for (text, key, message) in cases {
        let e = error(&text);
        assert!(e.contains(&format!(": key `{key}`: ")), "{key}: {e}");
        assert!(
            e.starts_with("answers.toml:") && e.contains(message),
            "{key}: {e}"
        );
    }
}

#[test]
fn cross_key_rules() {
    let cases = [
        (
            MINIMAL.replace("paths = [\"/dev/vdb\"]", ""),
            "disks",
            "name the target disks",
        ),
        (
            MINIMAL.replace("[disks]", "[disks]\nlayout = \"mirror\""),
            "disks.paths",
            "at least 2",
        ),
        (
            MINIMAL.replace("[disks]", "[disks]\nlayout = \"stripe\""),
            "disks.paths",
            "at least 2",
        ),
        (
            MINIMAL
                .replace("\"/dev/vdb\"", "\"/dev/vdb\", \"/dev/vdb\"")
                .replace("[disks]", "[disks]\nlayout = \"mirror\""),
            "disks.paths",
            "listed twice",
        ),
        (
            format!(
                "{}\n[encryption]\nenabled = true\n",
                MINIMAL.replace("[disks]", "distro = \"freebsd-14\"\n[disks]")
            ),
            "encryption.enabled",
            "FreeBSD's loader",
        ),
        (
            MINIMAL.replace(
                "ssh_authorized_keys = [\"ssh-ed25519 AAAAC3Nza user@host\"]",
                "",
            ),
            "root",
            "nobody can log in",
        ),
        (
            format!("{MINIMAL}\n[zfsbootmenu]\nurl = \"https://example.org/zbm.efi\"\n"),
            "zfsbootmenu.sha256",
            "sha256",
        ),
        (
            format!("{MINIMAL}\n[zfsbootmenu]\nsource = \"/z.EFI\"\nkernel_series = \"6.12\"\n"),
            "zfsbootmenu.kernel_series",
            "official release",
        ),
        (
            format!("{MINIMAL}\n[zfsbootmenu]\nsource = \"built\"\nkernel_series = \"6.12\"\n"),
            "zfsbootmenu.kernel_series",
            "official release",
        ),
        (
            format!(
                "{MINIMAL}\n[zfsbootmenu]\nsource = \"release\"\nurl = \"https://example.org/z\"\nsha256 = \"{}\"\n",
                "a".repeat(64)
            ),
            "zfsbootmenu",
            "either `source` or `url`",
        ),
        (
            format!("{MINIMAL}\n[[network.static]]\naddress = \"192.0.2.1/24\"\n"),
            "network.static[0]",
            "`name` or `mac`",
        ),
        (
            format!(
                "{MINIMAL}\n[[datasets]]\nname = \"srv\"\nproperties = {{ mountpoint = \"/x\" }}\n"
            ),
            "datasets.properties",
            "own `mountpoint`",
        ),
    ];
    for (text, key, message) in cases {
        let e = error(&text);
        assert!(e.contains(&format!("answers.toml: {key}: ")), "{key}: {e}");
        assert!(e.contains(message), "{key}: {e}");
    }
}

/// The payload's path is absolute and one line: a relative one would be read against wherever
/// kldload was started, and a newline would break the plan's script.
#[test]
fn the_payload_image_is_an_absolute_path() {
    let ok = parse(&format!(
        "{MINIMAL}\n[source]\nimage = \"/srv/payload.tar.zst\"\n"
    ))
    .unwrap();
    assert_eq!(ok.source.image.unwrap().as_str(), "/srv/payload.tar.zst");
    for bad in ["payload.tar.zst", "/srv/pay\\nload.tar.zst", "/srv/"] {
        let e = error(&format!("{MINIMAL}\n[source]\nimage = \"{bad}\"\n"));
        assert!(e.contains("key `source.image`"), "{bad}: {e}");
        assert!(e.contains("absolute path"), "{bad}: {e}");
    }
}

#[test]
fn zfsbootmenu_source_is_built_release_or_a_path() {
    for (value, choice) in [
        ("built", ZbmChoice::Built),
        ("release", ZbmChoice::Release),
        ("/root/z.EFI", ZbmChoice::File("/root/z.EFI".into())),
    ] {
        let c = parse(&format!("{MINIMAL}\n[zfsbootmenu]\nsource = \"{value}\"\n")).unwrap();
        assert_eq!(c.zfsbootmenu.source, Some(choice.clone()));
        assert_eq!(String::from(choice), value);
    }
    assert_eq!(parse(MINIMAL).unwrap().zfsbootmenu.source, None);
}

#[test]
fn encryption_is_a_table_without_the_passphrase() {
    let c = parse(&format!("{MINIMAL}\n[encryption]\nenabled = true\n")).unwrap();
    assert!(c.encryption.enabled);
    assert_eq!(c.encryption.datasets, EncryptedDatasets::All);
    assert_eq!(c.encryption.cipher, Cipher::Aes256Gcm);
    assert_eq!(c.encryption.keyformat, KeyFormat::Passphrase);
    assert_eq!(c.encryption.passphrase_file, None);
    let c = parse(&format!(
        "{MINIMAL}\n[encryption]\nenabled = true\npassphrase_file = \"/run/p\"\n"
    ))
    .unwrap();
    assert_eq!(c.encryption.passphrase_file.unwrap().as_str(), "/run/p");
    for (line, key, message) in [
        (
            "passphrase = \"in the file\"",
            "encryption",
            "unknown field `passphrase`",
        ),
        (
            "cipher = \"aes-128-ccm\"",
            "encryption.cipher",
            "aes-256-gcm",
        ),
        ("keyformat = \"hex\"", "encryption.keyformat", "passphrase"),
        (
            "passphrase_file = \"relative\"",
            "encryption.passphrase_file",
            "absolute path",
        ),
        ("datasets = \"some\"", "encryption.datasets", "all"),
    ] {
        let e = error(&format!(
            "{MINIMAL}\n[encryption]\nenabled = true\n{line}\n"
        ));
        assert!(
            e.contains(&format!("key `{key}`")) || e.contains(key),
            "{line}: {e}"
        );
        assert!(e.contains(message), "{line}: {e}");
    }
    // The old place of the setting is refused, not ignored.
    let e = error(&format!("{MINIMAL}\n[pool]\nencryption = \"off\"\n"));
    assert!(e.contains("encryption"), "{e}");
}

#[test]
fn each_dataset_has_the_encryption_root_the_answer_file_chose() {
    let with = |datasets: &str| {
        parse(&format!(
            "{MINIMAL}\n[encryption]\nenabled = true\ndatasets = \"{datasets}\"\n"
        ))
        .unwrap()
        .encryption
    };
    let all = with("all");
    for path in ["", "ROOT", "ROOT/default", "home", "var/log", "tmp"] {
        assert_eq!(all.encryption_root("rpool", path).as_deref(), Some("rpool"));
    }
    let two = with("root-and-home");
    for (path, root) in [
        ("", None),
        ("ROOT", Some("rpool/ROOT")),
        ("ROOT/default", Some("rpool/ROOT")),
        ("home", Some("rpool/home")),
        ("home/alice", Some("rpool/home")),
        ("homes", None),
        ("ROOTS", None),
        ("var", None),
        ("var/log", None),
        ("tmp", None),
    ] {
        assert_eq!(
            two.encryption_root("rpool", path).as_deref(),
            root,
            "{path}"
        );
    }
    let off = parse(MINIMAL).unwrap().encryption;
    assert_eq!(off.encryption_root("rpool", "ROOT/default"), None);
    // Swap outside both encryption roots would hold their data in clear.
    let e = error(&format!(
        "{MINIMAL}\n[pool]\nswap_size = \"1G\"\n[encryption]\nenabled = true\ndatasets = \"root-and-home\"\n"
    ));
    assert!(
        e.contains("pool.swap_size") && e.contains("unencrypted"),
        "{e}"
    );
}

#[test]
fn filters_and_static_addresses() {
    let c = parse(&MINIMAL.replace(
        "paths = [\"/dev/vdb\"]",
        "filter = { serial = \"QM0*\", min_size = \"8G\" }",
    ))
    .unwrap();
    assert_eq!(c.disks.filter.unwrap().min_size.unwrap().bytes(), 8 * GIB);
    let c = parse(&format!(
        "{MINIMAL}\n[[network.static]]\nname = \"enp1s0\"\naddress = \"192.0.2.10/24\"\ngateway = \"192.0.2.1\"\n"
    ))
    .unwrap();
    assert_eq!(
        c.network.static_interfaces[0].address.to_string(),
        "192.0.2.10/24"
    );
    let e = error(&format!(
        "{MINIMAL}\n[[network.static]]\nname = \"e\"\naddress = \"192.0.2.10/40\"\n"
    ));
    assert!(e.contains("IP/prefix"), "{e}");
    let e = error(&MINIMAL.replace("paths = [\"/dev/vdb\"]", "filter = {}"));
    assert!(e.contains("empty filter"), "{e}");
}

#[test]
fn a_stripe_of_two_disks_lists_both_partitions_with_no_vdev_word() {
    let text = MINIMAL
        .replace("\"/dev/vdb\"", "\"/dev/vdb\", \"/dev/vdc\"")
        .replace("[disks]", "[disks]\nlayout = \"stripe\"");
    let c = Config::parse(&text, "stripe.toml").unwrap();
    assert_eq!(c.disks.layout, Layout::Stripe);
    assert_eq!(c.disks.layout.vdev_word(), None);
    assert_eq!(c.disks.paths.len(), 2);
}

#[test]
fn pool_features_are_short_names_once_each_and_include_encryption_when_encrypted() {
    let with = |features: &str, extra: &str| {
        format!("{MINIMAL}\n[pool]\nfeatures = [{features}]\n{extra}")
    };
    let c = parse(&with("\"lz4_compress\", \"large_dnode\"", "")).unwrap();
    assert!(c.pool.has_feature("large_dnode") && !c.pool.has_feature("encryption"));
    assert!(parse(MINIMAL).unwrap().pool.has_feature("encryption"));
    let e = error(&with("\"feature@async_destroy\"", ""));
    assert!(e.contains("is not a pool feature"), "{e}");
    let e = error(&with("\"lz4_compress\", \"lz4_compress\"", ""));
    assert!(e.contains("lz4_compress is listed twice"), "{e}");
    let e = error(&with(
        "\"lz4_compress\"",
        "[encryption]\nenabled = true\npassphrase_file = \"/root/p\"\n",
    ));
    assert!(
        e.contains("pool.features") && e.contains("needs the feature encryption"),
        "{e}"
    );
    // The default compression is lz4: it needs lz4_compress; zstd levels need zstd_compress.
    let e = error(&with("\"async_destroy\"", ""));
    assert!(
        e.contains("compression = \"lz4\" needs the feature lz4_compress"),
        "{e}"
    );
    let e = error(&with("\"lz4_compress\"", "compression = \"zstd-3\"\n"));
    assert!(e.contains("needs the feature zstd_compress"), "{e}");
    let gzip = with("\"async_destroy\"", "compression = \"gzip\"\n");
    assert!(parse(&gzip).is_ok());
}
