//! ZFSBootMenu's own rules, as kldload reads and follows them: which kernel it boots a boot
//! environment with (`kernels`), the command line it gives it (`commandline`), the hostid it
//! imports with and passes on (`hostid`), what a ZFSBootMenu EFI file carries (`image`), the
//! official release and how it is verified (`release`), and where the file an install puts on
//! the ESPs comes from (`source`). The doctor, the report, the recipe and the harness all ask
//! here; nothing here touches the machine but `image`'s and `release`'s file reads.

pub mod commandline;
pub mod hostid;
pub mod image;
pub mod kernels;
pub mod release;
pub mod source;
