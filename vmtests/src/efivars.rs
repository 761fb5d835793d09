//! The firmware's boot variables of a running guest: read from its efivarfs over the harness's
//! shell, decoded by [`kldload::efivars`] (the installer's `kldload report` decodes them the
//! same way on the machine itself).

use crate::machine::Machine;
use anyhow::{Context, Result};
pub use kldload::efivars::{
    BootVariables, EFIVARFS, GLOBAL_GUID, LoadOption, parse_boot_current, parse_load_option,
};

/// Reads BootCurrent and every Boot#### from the guest's efivarfs.
pub fn read(m: &mut Machine) -> Result<BootVariables> {
    let dir = EFIVARFS;
    let names = m.succeed(&format!(
        "cd {dir} && ls -d Boot[0-9A-F][0-9A-F][0-9A-F][0-9A-F]-{GLOBAL_GUID}"
    ))?;
    let current =
        parse_boot_current(&m.succeed_bytes(&format!("cat {dir}/BootCurrent-{GLOBAL_GUID}"))?)?;
    let mut entries = Vec::new();
    for name in names.lines().filter_map(|l| l.split('-').next()) {
        let number = u16::from_str_radix(name.trim_start_matches("Boot"), 16)?;
        let option =
            parse_load_option(&m.succeed_bytes(&format!("cat {dir}/{name}-{GLOBAL_GUID}"))?)
                .with_context(|| name.to_string())?;
        entries.push((number, option));
    }
    Ok(BootVariables { current, entries })
}
