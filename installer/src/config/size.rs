//! Sizes in the answer file: `"512MiB"`, `"8G"`, `"1.5 GiB"` or a plain number of bytes.

use serde::{Deserialize, Serialize};
use std::fmt;

pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * MIB;

/// A size in bytes. Suffixes are binary (`G` and `GiB` both mean 2^30), as sgdisk and zfs use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "SizeInput", into = "u64")]
pub struct ByteSize(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeInput {
    Bytes(u64),
    Text(String),
}

impl ByteSize {
    pub fn parse(text: &str) -> Result<Self, String> {
        parse_size::Config::new()
            .with_binary()
            .parse_size(text.trim())
            .map(ByteSize)
            .map_err(|e| {
                format!("size {text:?} is not valid ({e}); write e.g. \"512MiB\", \"8G\" or a number of bytes")
            })
    }
    pub fn bytes(self) -> u64 {
        self.0
    }
    pub fn mib(self) -> u64 {
        self.0 / MIB
    }
}

impl TryFrom<SizeInput> for ByteSize {
    type Error = String;
    fn try_from(input: SizeInput) -> Result<Self, String> {
        match input {
            SizeInput::Bytes(b) => Ok(ByteSize(b)),
            SizeInput::Text(t) => ByteSize::parse(&t),
        }
    }
}

impl From<ByteSize> for u64 {
    fn from(s: ByteSize) -> u64 {
        s.0
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size exactly, in the form sgdisk and zfs accept.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [(1 << 40, "T"), (GIB, "G"), (MIB, "M"), (1024, "K")];
        for (unit, suffix) in UNITS {
            if self.0 >= unit && self.0.is_multiple_of(unit) {
                return write!(f, "{}{suffix}", self.0 / unit);
            }
        }
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_suffixes() {
        assert_eq!(ByteSize::parse("512MiB").unwrap().bytes(), 512 * MIB);
        assert_eq!(ByteSize::parse("512M").unwrap().bytes(), 512 * MIB);
        assert_eq!(ByteSize::parse("8G").unwrap().bytes(), 8 * GIB);
        assert_eq!(ByteSize::parse("1.5 GiB").unwrap().bytes(), 3 * GIB / 2);
        assert!(ByteSize::parse("lots").is_err());
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        assert_eq!(ByteSize(512 * MIB).to_string(), "512M");
        assert_eq!(ByteSize(8 * GIB).to_string(), "8G");
        assert_eq!(ByteSize(3 * GIB / 2).to_string(), "1536M");
        assert_eq!(ByteSize(1000).to_string(), "1000");
    }
}
