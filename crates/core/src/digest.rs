//! Digests of secrets: the form in which tokens, tickets and cookies are stored and compared, so that a
//! database read never yields a usable secret and comparisons are of fixed-length values.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Lower-case hex SHA-256 of `secret`.
pub fn sha256_hex(secret: &[u8]) -> String {
    crate::qsh::hex(&Sha256::digest(secret))
}

/// Whether `given` is the secret whose SHA-256 is `expected_digest` (hex), compared in constant time.
pub fn matches_digest(given: &[u8], expected_digest: &str) -> bool {
    bool::from(
        sha256_hex(given)
            .as_bytes()
            .ct_eq(expected_digest.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_only_their_secret() {
        let d = sha256_hex(b"secret");
        assert_eq!(
            d,
            "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        );
        assert!(matches_digest(b"secret", &d));
        assert!(!matches_digest(b"secreT", &d));
        assert!(!matches_digest(b"", &d));
        assert!(!matches_digest(b"secret", ""));
    }
}
