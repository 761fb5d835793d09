//! What kldload knows of Secure Boot's chain: shim's GUID, whether the running machine booted
//! with Secure Boot on, which certificates its firmware (db) and shim (MokListRT) trust, and how
//! to tell who signed an EFI file from `sbverify --list`. Used by the installer (which lays down
//! shim's chain and refuses a ZFSBootMenu the machine would not start), the image build (which
//! signs), its tests and the VM harness (which enrolls the key).

use std::path::Path;

/// The owner GUID of shim's variables (MokList, MokListRT: SHIM_LOCK_GUID).
pub const SHIM_LOCK_GUID: &str = "605dab50-e046-4300-abb6-3dd810dd8b23";
/// The owner GUID of the firmware's own variables (SecureBoot, BootOrder: EFI_GLOBAL_VARIABLE).
pub const EFI_GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// The owner GUID of db and dbx (EFI_IMAGE_SECURITY_DATABASE_GUID).
pub const IMAGE_SECURITY_GUID: &str = "d719b2cb-3d3a-4596-a3bc-dad00e67656f";
/// EFI_CERT_X509_GUID as it is stored (the first three fields little-endian): the type of a
/// signature list of X.509 certificates.
const CERT_X509: [u8; 16] = [
    0xa1, 0x59, 0xc0, 0xa5, 0xe4, 0x94, 0xa7, 0x4a, 0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72,
];

/// Where efivarfs shows a variable under `root` (`/` on the machine).
fn efivar(root: &Path, name: &str, guid: &str) -> std::path::PathBuf {
    root.join(format!("sys/firmware/efi/efivars/{name}-{guid}"))
}

/// Whether the machine whose root is `root` booted with Secure Boot enforced: the firmware's
/// `SecureBoot` variable is 1 (efivarfs puts the 4 attribute bytes first). False without UEFI.
pub fn enforced(root: &Path) -> bool {
    std::fs::read(efivar(root, "SecureBoot", EFI_GLOBAL_GUID))
        .is_ok_and(|bytes| bytes.len() == 5 && bytes[4] == 1)
}

/// The X.509 certificates (DER) whose signatures the machine's boot chain accepts: the
/// firmware's db and what shim trusts (MokListRT: shim's built-in distribution certificate and
/// every enrolled MOK), as the running kernel shows them. shim gives MokListRT through a
/// configuration table when it is large (/sys/firmware/efi/mok-variables) and as a volatile
/// variable otherwise; both are read.
pub fn trusted_certificates(root: &Path) -> Vec<Vec<u8>> {
    let efivar_data = |path: std::path::PathBuf| {
        std::fs::read(path)
            .ok()
            .map(|bytes| bytes.get(4..).unwrap_or_default().to_vec())
    };
    [
        efivar_data(efivar(root, "db", IMAGE_SECURITY_GUID)),
        efivar_data(efivar(root, "MokListRT", SHIM_LOCK_GUID)),
        std::fs::read(root.join("sys/firmware/efi/mok-variables/MokListRT")).ok(),
    ]
    .into_iter()
    .flatten()
    .flat_map(|lists| x509_certificates(&lists))
    .collect()
}

/// The X.509 certificates in a sequence of EFI_SIGNATURE_LISTs (how db and MokList are
/// stored): each list a type GUID, its total size, its header's size and each entry's size, then
/// entries of an owner GUID and the data. Lists of other types (hashes) are skipped; reading stops
/// at the first list that does not fit.
pub fn x509_certificates(lists: &[u8]) -> Vec<Vec<u8>> {
    let u32_at = |bytes: &[u8], at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let mut certificates = Vec::new();
    let mut rest = lists;
    while rest.len() >= 28 {
        let (Some(list_size), Some(header_size), Some(entry_size)) =
            (u32_at(rest, 16), u32_at(rest, 20), u32_at(rest, 24))
        else {
            break;
        };
        if list_size < 28 + header_size || list_size > rest.len() || entry_size <= 16 {
            break;
        }
        if rest[..16] == CERT_X509 {
            let entries = &rest[28 + header_size..list_size];
            certificates.extend(entries.chunks_exact(entry_size).map(|e| e[16..].to_vec()));
        }
        rest = &rest[list_size..];
    }
    certificates
}

/// Which of `certificates` a signature (an EFI file's certificate table, see
/// [`crate::zbm::image::signature`]) carries: a PKCS#7 signature holds its signer's certificate
/// whole. That names the key it claims to be signed with; whether the signature verifies is
/// shim's check at boot.
pub fn carried_certificates<'a>(signature: &[u8], certificates: &'a [Vec<u8>]) -> Vec<&'a [u8]> {
    certificates
        .iter()
        .filter(|c| !c.is_empty() && signature.windows(c.len()).any(|w| w == c.as_slice()))
        .map(Vec::as_slice)
        .collect()
}

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

    /// One EFI_SIGNATURE_LIST of `kind` with `entries` (owner GUID + data, all one size).
    fn signature_list(kind: [u8; 16], entries: &[&[u8]]) -> Vec<u8> {
        let entry_size = 16 + entries[0].len();
        let mut list = kind.to_vec();
        for n in [28 + entry_size * entries.len(), 0, entry_size] {
            list.extend((n as u32).to_le_bytes());
        }
        for data in entries {
            list.extend([0x11; 16]);
            list.extend(*data);
        }
        list
    }

    #[test]
    fn certificates_are_read_from_signature_lists_and_found_in_a_signature() {
        let sha256 = [
            0x26, 0x16, 0xc4, 0xc1, 0x4c, 0x50, 0x92, 0x40, 0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93,
            0x43, 0x28,
        ];
        let mut lists = signature_list(CERT_X509, &[b"debian-ca-der"]);
        lists.extend(signature_list(sha256, &[&[7; 32], &[8; 32]]));
        lists.extend(signature_list(CERT_X509, &[b"mok-one", b"mok-two"]));
        let certs = x509_certificates(&lists);
        assert_eq!(
            certs,
            [
                b"debian-ca-der".to_vec(),
                b"mok-one".to_vec(),
                b"mok-two".to_vec()
            ]
        );
        // A list that claims more than is there ends the reading, with what came before it.
        let mut truncated = lists.clone();
        truncated.truncate(lists.len() - 3);
        assert_eq!(x509_certificates(&truncated).len(), 1);
        assert!(x509_certificates(b"short").is_empty());

        let signature = b"\x30\x82 pkcs7 ... mok-two ... signer info";
        assert_eq!(
            carried_certificates(signature, &certs),
            [b"mok-two".as_slice()]
        );
        assert!(carried_certificates(b"signed by someone else", &certs).is_empty());
    }

    #[test]
    fn secure_boot_is_enforced_when_the_variable_says_1() {
        let root = tempfile::tempdir().unwrap();
        assert!(!enforced(root.path()));
        let var = efivar(root.path(), "SecureBoot", EFI_GLOBAL_GUID);
        std::fs::create_dir_all(var.parent().unwrap()).unwrap();
        std::fs::write(&var, [6, 0, 0, 0, 0]).unwrap();
        assert!(!enforced(root.path()));
        std::fs::write(&var, [6, 0, 0, 0, 1]).unwrap();
        assert!(enforced(root.path()));
        let mok = efivar(root.path(), "MokListRT", SHIM_LOCK_GUID);
        let mut data = vec![6, 0, 0, 0];
        data.extend(signature_list(CERT_X509, &[b"mok"]));
        std::fs::write(mok, data).unwrap();
        assert_eq!(trusted_certificates(root.path()), [b"mok".to_vec()]);
    }

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
