//! Sizes in the answer file: `"512MiB"`, `"8G"`, `"1.5 GiB"` or a plain number of bytes.

use serde::{Deserialize, Serialize};
use std::fmt;

pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * MIB;

/// A size in bytes. Suffixes are binary (`G` and `GiB` both mean 2^30), as sgdisk and zfs use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "SizeInput", into = "u64")]
pub struct ByteSize(pub u64);

/// What a size may be written as. A negative or fractional number is read too, to be refused
/// by name (an untagged enum that matches nothing says only that).
#[derive(Deserialize)]
#[serde(untagged)]
enum SizeInput {
    Bytes(u64),
    Text(String),
    Negative(i64),
    Fractional(f64),
}

/// Why a number that is not a whole number of bytes is no size.
fn not_a_size(number: impl fmt::Display) -> String {
    format!(
        "{number} is not a size: give a whole number of bytes (0 or more) or text with a unit, \
         e.g. \"8G\" or \"1.5 GiB\""
    )
}

/// A size: text with a binary unit or a number of bytes.
impl schemars::JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["string", "integer"],
            "minimum": 0,
            "description": "A size: \"512MiB\", \"8G\", \"1.5 GiB\" (units are binary: G and GiB \
                            both mean 2^30) or a number of bytes."
        })
    }
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
            SizeInput::Negative(n) => Err(not_a_size(n)),
            SizeInput::Fractional(x) => Err(not_a_size(x)),
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

/// A partition or zvol size: whole MiB and at least `MIN_MIB` (a size that parses is one the
/// recipe can use). [`EspSize`] and [`SwapSize`] are the two the answer file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "ByteSize", into = "ByteSize")]
pub struct WholeMib<const MIN_MIB: u64>(ByteSize);

/// The EFI system partition: at least 64 MiB (512 MiB recommended).
pub type EspSize = WholeMib<64>;
/// A swap zvol: at least 16 MiB.
pub type SwapSize = WholeMib<16>;

/// A size, at least `MIN_MIB` and in whole MiB.
impl<const MIN_MIB: u64> schemars::JsonSchema for WholeMib<MIN_MIB> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("SizeOfAtLeast{MIN_MIB}MiB").into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let description = format!(
            "A size of at least {MIN_MIB} MiB, in whole MiB: \"512MiB\", \"8G\" (units are \
             binary) or a number of bytes."
        );
        schemars::json_schema!({
            "type": ["string", "integer"],
            "minimum": 0,
            "description": description
        })
    }
}

impl<const MIN_MIB: u64> WholeMib<MIN_MIB> {
    pub fn new(size: ByteSize) -> Result<Self, String> {
        if size.bytes() < MIN_MIB * MIB || !size.bytes().is_multiple_of(MIB) {
            return Err(format!(
                "{size} is not usable: give at least {MIN_MIB}MiB, in whole MiB"
            ));
        }
        Ok(WholeMib(size))
    }
    pub fn bytes(self) -> u64 {
        self.0.bytes()
    }
    pub fn mib(self) -> u64 {
        self.0.mib()
    }
}

impl<const MIN_MIB: u64> TryFrom<ByteSize> for WholeMib<MIN_MIB> {
    type Error = String;
    fn try_from(size: ByteSize) -> Result<Self, String> {
        Self::new(size)
    }
}

impl<const MIN_MIB: u64> From<WholeMib<MIN_MIB>> for ByteSize {
    fn from(s: WholeMib<MIN_MIB>) -> ByteSize {
        s.0
    }
}

impl<const MIN_MIB: u64> fmt::Display for WholeMib<MIN_MIB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// `ashift`: log2 of the sector size ZFS writes, 9 to 16 as ZFS takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Ashift(u8);

impl schemars::JsonSchema for Ashift {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Ashift".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "integer",
            "minimum": 9,
            "maximum": 16,
            "description": "log2 of the sector size ZFS writes, 9 to 16."
        })
    }
}

impl Ashift {
    pub fn new(value: u8) -> Result<Self, String> {
        if !(9..=16).contains(&value) {
            return Err(format!(
                "{value} is out of range: ZFS takes 9 to 16 (12 suits 4 KiB sectors)"
            ));
        }
        Ok(Ashift(value))
    }
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Ashift {
    type Error = String;
    fn try_from(value: u8) -> Result<Self, String> {
        Self::new(value)
    }
}

impl From<Ashift> for u8 {
    fn from(a: Ashift) -> u8 {
        a.0
    }
}

impl fmt::Display for Ashift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A negative or fractional number of bytes is refused by name, not as "no variant of
    /// an untagged enum".
    #[test]
    fn a_number_that_is_no_size_is_named() {
        #[derive(Debug, Deserialize)]
        struct File {
            size: ByteSize,
        }
        for (text, named) in [
            ("size = -1", "-1 is not a size"),
            ("size = 2.5", "2.5 is not a size"),
        ] {
            let e = toml::from_str::<File>(text).unwrap_err().to_string();
            assert!(e.contains(named) && e.contains("\"8G\""), "{text}: {e}");
        }
        let ok: File = toml::from_str("size = 512").unwrap();
        assert_eq!(ok.size, ByteSize(512));
    }

    #[test]
    fn parses_binary_suffixes() {
        assert_eq!(ByteSize::parse("512MiB").unwrap().bytes(), 512 * MIB);
        assert_eq!(ByteSize::parse("512M").unwrap().bytes(), 512 * MIB);
        assert_eq!(ByteSize::parse("8G").unwrap().bytes(), 8 * GIB);
        assert_eq!(ByteSize::parse("1.5 GiB").unwrap().bytes(), 3 * GIB / 2);
        assert!(ByteSize::parse("lots").is_err());
    }

    #[test]
    fn partition_sizes_are_whole_mib_above_a_minimum() {
        assert_eq!(EspSize::new(ByteSize(512 * MIB)).unwrap().mib(), 512);
        assert!(
            EspSize::new(ByteSize(MIB))
                .unwrap_err()
                .contains("at least 64MiB")
        );
        assert!(SwapSize::new(ByteSize(16 * MIB + 1)).is_err());
        assert!(Ashift::new(12).is_ok() && Ashift::new(20).is_err());
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        assert_eq!(ByteSize(512 * MIB).to_string(), "512M");
        assert_eq!(ByteSize(8 * GIB).to_string(), "8G");
        assert_eq!(ByteSize(3 * GIB / 2).to_string(), "1536M");
        assert_eq!(ByteSize(1000).to_string(), "1000");
    }
}
