//! `kldload upgrade`: kernel and ZFS updates as boot environments. An update is made where the
//! image is made (`cargo xtask build-update`): a small apt repository, signed with the build's
//! update key, holding a newer kernel, ZFS modules built and signed for it, and ZFS's
//! userland. See ARCHITECTURE.md, "Updates".

pub mod update;

pub use update::{UPDATE_KEY_FILE, UPDATE_PACKAGE, UpdateInfo};
