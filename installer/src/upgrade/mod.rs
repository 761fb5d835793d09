//! `kldload upgrade`: kernel and ZFS updates as boot environments. An update is made where the
//! image is made (`cargo xtask build-update`): a small apt repository, signed with the build's
//! update key, holding a newer kernel, ZFS modules built and signed for it, and ZFS's
//! userland. The new boot environment is tried once and kept only if it boots (`trial.rs`).

pub mod apt;
pub mod list;
pub mod machine;
pub mod plan;
pub mod trial;
pub mod update;

pub use update::{UPDATE_KEY_FILE, UPDATE_PACKAGE, UpdateInfo};
