//! The run's answer files: the default one with the run's SSH key and distro, and a scenario's
//! `[answers]` merged in; each checked as the installer checks an answer file before a VM
//! gets it.

use anyhow::{Context, Result};
use std::path::Path;

/// The root password of fixtures/answers/default.toml's hash (`openssl passwd -6 kldload`).
pub const ROOT_PASSWORD: &str = "kldload";
pub const DEFAULT_ANSWERS: &str = "fixtures/answers/default.toml";

/// Merges `changes` into the answer file at `path` (tables key by key, other values replaced)
/// and checks that the installer would accept the result.
pub fn merge_answers(path: &Path, changes: &toml::Table) -> Result<()> {
    let text = merged_answers(
        &std::fs::read_to_string(path)?,
        changes,
        &path.display().to_string(),
    )?;
    std::fs::write(path, text)?;
    Ok(())
}

/// The answer file `base` (named `shown`) with `changes` merged in, tables key by key, checked
/// as the installer checks an answer file.
pub fn merged_answers(base: &str, changes: &toml::Table, shown: &str) -> Result<String> {
    fn merge(into: &mut toml::Table, from: &toml::Table) {
        for (key, value) in from {
            match (into.get_mut(key), value) {
                (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
                _ => {
                    into.insert(key.clone(), value.clone());
                }
            }
        }
    }
    let mut doc: toml::Table = toml::from_str(base)?;
    merge(&mut doc, changes);
    let text = toml::to_string(&doc)?;
    kldload::config::Config::parse(&text, shown)
        .context("the scenario's [answers] make an answer file the installer refuses")?;
    Ok(text)
}

/// The run's answer file: `template` for the distro under test (its medium's payload), with the
/// run's SSH key as root's.
pub(crate) fn write_answers(
    template: &Path,
    distro: kldload::config::Distro,
    public_key: &Path,
    dest: &Path,
) -> Result<()> {
    let mut doc: toml::Table = toml::from_str(&std::fs::read_to_string(template)?)?;
    doc.insert("distro".into(), distro.name().into());
    let key = std::fs::read_to_string(public_key)?.trim().to_string();
    let root = doc
        .entry("root")
        .or_insert_with(|| toml::Value::Table(Default::default()));
    root.as_table_mut().context("[root] is a table")?.insert(
        "ssh_authorized_keys".into(),
        toml::Value::Array(vec![toml::Value::String(key)]),
    );
    let text = toml::to_string(&doc)?;
    // What the installer will read must be valid.
    kldload::config::Config::parse(&text, &dest.display().to_string())?;
    std::fs::write(dest, text)?;
    Ok(())
}
