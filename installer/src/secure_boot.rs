//! What kldload knows of Secure Boot's chain: shim's GUID, and how to tell who signed
//! an EFI file from `sbverify --list`. Used by the image build (which signs), its tests and the
//! VM harness (which enrolls the key).

/// The owner GUID of shim's variables (MokList, MokListRT: SHIM_LOCK_GUID).
pub const SHIM_LOCK_GUID: &str = "605dab50-e046-4300-abb6-3dd810dd8b23";

/// Whether `sbverify --list` shows one signature, its certificate's subject `CN=signer`.
pub fn signed_only_by(listing: &str, signer: &str) -> bool {
    let signatures = listing
        .lines()
        .filter(|l| l.starts_with("signature "))
        .count();
    let subjects: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- subject: "))
        .collect();
    signatures == 1 && subjects == [format!("/CN={signer}")]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `sbverify --list` printed for the medium's live EFI file and for Microsoft's shim.
    #[test]
    fn only_a_file_signed_once_by_the_build_key_passes() {
        let ours = "signature 1\nimage signature issuers:\n - /CN=kldload build 0f38 module signing key\n\
                    image signature certificates:\n - subject: /CN=kldload build 0f38 module signing key\n   \
                    issuer:  /CN=kldload build 0f38 module signing key\n";
        assert!(signed_only_by(
            ours,
            "kldload build 0f38 module signing key"
        ));
        assert!(!signed_only_by(
            ours,
            "kldload build 1234 module signing key"
        ));
        let shim = "signature 1\nimage signature issuers:\n - /C=US/O=Microsoft Corporation/CN=Microsoft \
                    Corporation UEFI CA 2011\nimage signature certificates:\n - subject: /C=US/O=Microsoft \
                    Corporation/CN=Microsoft Windows UEFI Driver Publisher\n   issuer:  /C=US/CN=x\n\
                    signature 2\nimage signature issuers:\n";
        assert!(!signed_only_by(
            shim,
            "kldload build 0f38 module signing key"
        ));
        let twice = format!("{ours}signature 2\n - subject: /CN=other\n");
        assert!(!signed_only_by(
            &twice,
            "kldload build 0f38 module signing key"
        ));
        assert!(!signed_only_by("No signature table present\n", "x"));
    }
}
