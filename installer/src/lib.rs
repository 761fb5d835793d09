//! kldload: turns blank disks into a ZFS-on-root system, following a short, readable recipe.
//!
//! Data flows one way: answer file -> [`config::Config`] -> [`recipe::build_plan`] ->
//! [`plan::Plan`] -> [`exec::run_plan`] (or [`plan::sh::render`] for `kldload plan`).
//! See ARCHITECTURE.md for where each recipe step lives.

pub mod app;
pub mod config;
pub mod disk;
pub mod doctor;
pub mod efivars;
pub mod exec;
pub mod hash;
pub mod initrd;
pub mod medium;
pub mod medium_log;
pub mod mirror;
pub mod passphrase;
pub mod plan;
pub mod recipe;
pub mod report;
pub mod secure_boot;
pub mod unattended;
pub mod upgrade;
pub mod version;
pub mod zbm;
pub mod zpool_cache;
