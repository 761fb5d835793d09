//! Phase 4, the medium: one raw GPT disk image a user writes to a USB stick. Its only partition
//! is an ESP (GPT name KLDLOAD) holding:
//! - EFI/BOOT/BOOTX64.EFI: Debian's shim (signed by Microsoft), mmx64.efi its MokManager, and
//!   grubx64.efi, the one shim starts: the live kernel, initrd and command line in one EFI file
//!   (systemd's EFI stub, assembled with objcopy, so a Debian 12 host needs no ukify), signed
//!   with the build's MOK key, so the medium boots with Secure Boot on once that is enrolled;
//!   shim.json says which shim packages they came from;
//! - payload.tar.zst and manifest.json: the target system;
//! - zfsbootmenu/VMLINUZ.EFI: so installs need no network;
//! - mok.der: the certificate the ZFS modules are signed with, for `mokutil --import`.
//!
//! Built without loop mounts (mkfs.vfat on a file, mtools, sgdisk on a file, dd), so it also
//! works in containers.

use crate::run::{Log, output, run};
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};

/// The stub in the builder root (package systemd-boot-efi).
pub const STUB: &str = "usr/lib/systemd/boot/efi/linuxx64.efi.stub";
pub const IMAGE: &str = "kldload.img";

/// Rounds up to a multiple of `align`.
pub fn align_up(value: u64, align: u64) -> u64 {
    value.div_ceil(align) * align
}

/// The end of the stub's last section (VMA + size), from `objdump -h` lines of the form
/// `Idx Name Size VMA LMA File-off Algn`.
pub fn sections_end(objdump_h: &str) -> Option<u64> {
    objdump_h
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() == 7 && f[0].parse::<u32>().is_ok() {
                let size = u64::from_str_radix(f[2], 16).ok()?;
                let vma = u64::from_str_radix(f[3], 16).ok()?;
                Some(size + vma)
            } else {
                None
            }
        })
        .max()
}

/// `SectionAlignment` from `objdump -p`.
pub fn section_alignment(objdump_p: &str) -> Option<u64> {
    objdump_p
        .lines()
        .find_map(|l| l.strip_prefix("SectionAlignment"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Wraps kernel, initrd and command line into one EFI executable: each is added as a section
/// after the stub's own, aligned as the stub requires (.linux last).
pub fn unified_kernel_image(
    log: &Log,
    stub: &Path,
    os_release: &Path,
    cmdline: &Path,
    kernel: &Path,
    initrd: &Path,
    out: &Path,
) -> Result<()> {
    let stub_s = stub.to_string_lossy();
    let align = section_alignment(&output(log, &["objdump", "-p", &stub_s])?)
        .context("the stub's SectionAlignment")?;
    let mut offset =
        sections_end(&output(log, &["objdump", "-h", &stub_s])?).context("the stub's sections")?;
    let mut argv: Vec<String> = vec!["objcopy".into()];
    for (name, file) in [
        (".osrel", os_release),
        (".cmdline", cmdline),
        (".initrd", initrd),
        (".linux", kernel),
    ] {
        offset = align_up(offset, align);
        argv.push("--add-section".into());
        argv.push(format!("{name}={}", file.display()));
        argv.push("--change-section-vma".into());
        argv.push(format!("{name}={offset:#x}"));
        offset += fs::metadata(file)?.len();
    }
    argv.push(stub_s.into_owned());
    argv.push(out.to_string_lossy().into_owned());
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    run(log, &refs)
}

/// The medium's files: (path on the ESP, file on the host).
pub type Files = Vec<(String, PathBuf)>;

/// A FAT32 filesystem holding `files`, inside a GPT disk image at `out`.
pub fn disk_image(log: &Log, label: &str, files: &Files, work: &Path, out: &Path) -> Result<u64> {
    const MIB: u64 = 1024 * 1024;
    let content: u64 = files
        .iter()
        .map(|(_, f)| fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    // Room for FAT tables, directories and what a user adds later: an answers.toml, a
    // ZFSBootMenu EFI file of their own (about 50 MiB) named in it.
    let fat_mib = align_up(content + content / 20 + 128 * MIB, MIB) / MIB;
    let fat = work.join("esp.fat");
    let _ = fs::remove_file(&fat);
    let fat_s = fat.to_string_lossy().into_owned();
    run(
        log,
        &[
            "mkfs.vfat",
            "-F",
            "32",
            "-n",
            label,
            "-C",
            &fat_s,
            &(fat_mib * 1024).to_string(),
        ],
    )?;
    let mut dirs: Vec<String> = files
        .iter()
        .filter_map(|(p, _)| {
            Path::new(p)
                .parent()
                .map(|d| d.to_string_lossy().into_owned())
        })
        .filter(|d| !d.is_empty())
        .collect();
    // Every ancestor, parents first.
    let mut all = Vec::new();
    for d in &dirs {
        let mut acc = String::new();
        for part in d.split('/') {
            acc = if acc.is_empty() {
                part.to_string()
            } else {
                format!("{acc}/{part}")
            };
            all.push(acc.clone());
        }
    }
    all.sort();
    all.dedup();
    dirs = all;
    for d in &dirs {
        run(log, &["mmd", "-i", &fat_s, &format!("::/{d}")])?;
    }
    for (dest, src) in files {
        run(
            log,
            &[
                "mcopy",
                "-i",
                &fat_s,
                &src.to_string_lossy(),
                &format!("::/{dest}"),
            ],
        )?;
    }
    // 1 MiB before the partition, 1 MiB after it for the backup GPT.
    let total = (fat_mib + 2) * MIB;
    let out_s = out.to_string_lossy().into_owned();
    let _ = fs::remove_file(out);
    run(log, &["truncate", "--size", &total.to_string(), &out_s])?;
    run(
        log,
        &[
            "sgdisk",
            &format!("--new=1:1M:+{fat_mib}M"),
            "--typecode=1:EF00",
            &format!("--change-name=1:{label}"),
            &out_s,
        ],
    )?;
    run(
        log,
        &[
            "dd",
            &format!("if={fat_s}"),
            &format!("of={out_s}"),
            "bs=1M",
            "seek=1",
            "conv=notrunc,fsync",
            "status=none",
        ],
    )?;
    fs::remove_file(&fat)?;
    let esp = format!("{out_s}@@{}M", kldload::medium::ESP_OFFSET_MIB);
    let listing = output(log, &["mdir", "-i", &esp, "-/", "::/"])?;
    // mdir shows short names in upper case, long ones as written.
    for name in ["bootx64", "mmx64", "grubx64"] {
        if !listing.to_lowercase().contains(name) {
            bail!("the medium's ESP lists no EFI/BOOT/{name}.*:\n{listing}");
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_layout_from_objdump() {
        let h = "\nlinuxx64.efi.stub:     file format pei-x86-64\n\nSections:\nIdx Name          Size      VMA               LMA               File off  Algn\n  0 .text         0000d1a6  0000000000001000  0000000000001000  00000400  2**4\n                  CONTENTS, ALLOC, LOAD, READONLY, CODE\n  1 .reloc        0000000c  0000000000015000  0000000000015000  0000d600  2**2\n";
        assert_eq!(sections_end(h), Some(0x15000 + 0xc));
        assert_eq!(
            section_alignment("SizeOfImage\t\t00017000\nSectionAlignment\t00001000\n"),
            Some(0x1000)
        );
        assert_eq!(align_up(0x1500c, 0x1000), 0x16000);
        assert_eq!(align_up(0x16000, 0x1000), 0x16000);
    }
}
