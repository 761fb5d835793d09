//! Which pool features a ZFS knows, and which a read-only import minds: what decides the pool a
//! rebuild can create for a ZFSBootMenu, and whether that ZFSBootMenu can import it.

use kldload::report::{Pool, Report};
use std::collections::BTreeSet;

/// The pool features ZFS 2.1 and 2.3 know (zfsutils' compatibility.d files): which a rebuilt
/// pool can be created with depends on the ZFSBootMenu it boots.
pub const ZFS_2_1: &str = include_str!("../../fixtures/zfs-compatibility/openzfs-2.1-linux");
pub const ZFS_2_3: &str = include_str!("../../fixtures/zfs-compatibility/openzfs-2.3-linux");
/// The features whose activity a read-only import, as ZFSBootMenu's, does not mind.
pub const READONLY_COMPAT: &str = include_str!("../../fixtures/zfs-compatibility/readonly-compat");

/// The features active as soon as they are enabled (ZFEATURE_FLAG_ACTIVATE_ON_ENABLE in
/// OpenZFS's zfeature_common.c, the commit readonly-compat names): a rebuild that enables one
/// after the install has it active; any other stays enabled until something uses it.
pub const ACTIVE_ONCE_ENABLED: [&str; 5] = [
    "lz4_compress",
    "hole_birth",
    "spacemap_v2",
    "embedded_data",
    "head_errlog",
];

/// The feature set of the report's ZFSBootMenu's ZFS (the first ESP's copy that names one).
pub fn zfsbootmenu_zfs(report: &Report) -> Option<String> {
    (report.esps.iter())
        .flat_map(|e| e.zfsbootmenu.values())
        .find_map(|i| i.zfs_features.as_ref().map(|f| f.name.clone()))
}

/// Whether a ZFSBootMenu whose ZFS reads `set` is older than 2.2: then the rebuild boots the
/// ZFSBootMenu built with ZFS 2.1.
pub fn reads_only_zfs_2_1(set: Option<&str>) -> bool {
    set.is_some_and(|n| {
        kldload::zbm::image::older_openzfs(n, "openzfs-2.2-linux") == n && n != "openzfs-2.2-linux"
    })
}

/// The active features of `pool` that stop the report's ZFSBootMenu importing it, as it does,
/// read-only: unknown to its ZFS (ZFS 2.1's features when its ZFSBootMenu reads no more; a
/// newer one reads every feature a report here names) and not read-only compatible
/// (fixtures/zfs-compatibility/readonly-compat).
pub fn zbm_import_blockers(report: &Report, pool: &Pool) -> BTreeSet<String> {
    if !reads_only_zfs_2_1(zfsbootmenu_zfs(report).as_deref()) {
        return BTreeSet::new();
    }
    let known = kldload::zbm::image::parse_features(ZFS_2_1);
    let harmless = kldload::zbm::image::parse_features(READONLY_COMPAT);
    (pool.features.iter())
        .filter(|(f, state)| *state == "active" && !known.contains(*f) && !harmless.contains(*f))
        .map(|(f, _)| f.clone())
        .collect()
}
