//! The answer file's reference stays what its types say: docs/answers.schema.json and
//! docs/answers.md are made from the doc comments of installer/src/config/ (and, for the
//! examples, fixtures/answers/), and these tests fail when either file is not what they make.
//! After changing a key or its doc comment:
//! `KLDLOAD_UPDATE_DOCS=1 cargo test -p kldload --test answers_reference`, then commit both.

use kldload::config::{Config, reference};
use std::path::{Path, PathBuf};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// Every answer file in fixtures/answers/, parsed as TOML: everything.toml first, then the
/// others by name (the reference takes each key's example from the first that has it).
fn examples() -> Vec<(String, toml::Value)> {
    let dir = repository().join("fixtures/answers");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort_by_key(|n| (n != "everything.toml", n.clone()));
    names
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(dir.join(&n)).unwrap();
            let doc = toml::from_str(&text).unwrap_or_else(|e| panic!("{n}: {e}"));
            (n, doc)
        })
        .collect()
}

/// Compares `path` (from the repository's root) with `made`, or writes it with
/// $KLDLOAD_UPDATE_DOCS set.
fn up_to_date(path: &str, made: &str) {
    let file = repository().join(path);
    if std::env::var_os("KLDLOAD_UPDATE_DOCS").is_some() {
        std::fs::write(&file, made).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        on_disk == made,
        "{path} is not what the answer file's types make (a key or a doc comment changed): run \
         `KLDLOAD_UPDATE_DOCS=1 cargo test -p kldload --test answers_reference` and commit it"
    );
}

#[test]
fn the_json_schema_file_is_what_the_types_make() {
    let schema = serde_json::to_string_pretty(&reference::schema()).unwrap();
    up_to_date("docs/answers.schema.json", &format!("{schema}\n"));
}

#[test]
fn the_reference_is_what_the_types_and_the_fixtures_make() {
    up_to_date(
        "docs/answers.md",
        &reference::markdown(&reference::schema(), &examples()),
    );
}

#[test]
fn every_key_has_an_example_in_the_fixtures() {
    let missing = reference::keys_without_example(&reference::schema(), &examples());
    assert!(
        missing.is_empty(),
        "no answer file in fixtures/answers/ has these keys, so the reference has no example \
         of them: {missing:?}"
    );
}

/// everything.toml has every key but those a rule across keys keeps out of a file that has
/// the others, and it is a valid answer file.
#[test]
fn everything_toml_has_every_key_a_valid_file_can_hold_with_the_others() {
    const LEFT_OUT: [(&str, &str); 13] = [
        (
            "disks.count",
            "a count is for a filter, and the disks are given by path",
        ),
        ("disks.filter.serial", "the disks are given by path"),
        ("disks.filter.model", "the disks are given by path"),
        ("disks.filter.by_id", "the disks are given by path"),
        ("disks.filter.min_size", "the disks are given by path"),
        ("disks.filter.max_size", "the disks are given by path"),
        (
            "pool.features",
            "shown in pool-features.toml, whose list must name the encryption feature",
        ),
        ("source.image", "the mirror is given"),
        ("source.zfs_repo", "for rocky-9 only"),
        ("zfsbootmenu.url", "the file is given by path"),
        ("zfsbootmenu.sha256", "the file is given by path"),
        ("zfsbootmenu.kernel_series", "for the release only"),
        (
            "network.static[].name",
            "the interface is chosen by MAC address",
        ),
    ];
    let all = examples();
    let (name, doc) = &all[0];
    assert_eq!(name, "everything.toml");
    let mut absent = reference::keys_absent(&reference::schema(), doc);
    absent.sort();
    let mut expected: Vec<&str> = LEFT_OUT.iter().map(|(key, _)| *key).collect();
    expected.sort();
    assert_eq!(
        absent, expected,
        "everything.toml lacks other keys than these"
    );
    let text = std::fs::read_to_string(repository().join("fixtures/answers/everything.toml"));
    Config::parse(&text.unwrap(), "everything.toml").expect("everything.toml is valid");
}
