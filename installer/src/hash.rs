//! sha256 of files, as hex: what pins a download (ZFSBootMenu's release, a given file), keys the
//! build cache and compares files on ESPs. One function, so every caller hashes the same way.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// The sha256 of the file at `path`, lowercase hex, read in 1 MiB pieces.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    /// The sha256 sha256sum gives for the same bytes.
    #[test]
    fn a_files_sha256_is_sha256sums() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "kldload\n").unwrap();
        let out = std::process::Command::new("sha256sum")
            .arg(&file)
            .output()
            .unwrap();
        let theirs = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            super::file_sha256(&file).unwrap(),
            theirs.split_whitespace().next().unwrap()
        );
    }
}
