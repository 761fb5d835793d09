//! What `kldload --version` says: the version, the commit the sources come from (installer/
//! build.rs) and the image this copy came with: the live medium's build id, which the medium
//! carries and the install copies onto the target, so a bug report names the exact build.

/// The last commit that changed kldload's sources (12 hex digits, `-modified` when built from
/// changed ones), or "unknown".
pub const COMMIT: &str = env!("KLDLOAD_COMMIT");

/// Where the live medium and the system installed from it keep the id of the image: the build
/// cache's key of the medium (`cargo xtask build-image` names its entry `medium-<id>`).
pub const IMAGE_ID_FILE: &str = "/usr/local/share/kldload/image-id";

/// The version line: `0.1.0 (commit 0123456789ab, image 0123456789abcdef)`; the image is
/// "none" where the file is absent (kldload built and run outside an image).
pub fn line() -> String {
    let image = std::fs::read_to_string(IMAGE_ID_FILE)
        .ok()
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| "none".to_string());
    format!(
        "{} (commit {COMMIT}, image {image})",
        env!("CARGO_PKG_VERSION")
    )
}
