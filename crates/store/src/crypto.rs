//! Secrets at rest: AES-256-GCM with a fresh random nonce per record and associated data that binds
//! each ciphertext to its table, column and row, so ciphertexts cannot be swapped between rows.
//!
//! Record format: `[version = 1][12-byte nonce][ciphertext + 16-byte tag]`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;

use crate::StoreError;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

#[derive(Clone)]
pub struct Cipher(Aes256Gcm);

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(<redacted>)")
    }
}

impl Cipher {
    pub fn from_key(key: &[u8; 32]) -> Self {
        Self(Aes256Gcm::new(key.into()))
    }

    /// A key given as base64 of 32 bytes (`GFJ_ENCRYPTION_KEY`).
    pub fn from_base64(text: &str) -> Result<Self, StoreError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| StoreError::Config("GFJ_ENCRYPTION_KEY is not valid base64".into()))?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| {
            StoreError::Config("GFJ_ENCRYPTION_KEY must decode to exactly 32 bytes".into())
        })?;
        Ok(Self::from_key(&key))
    }

    /// Reads the key file next to a SQLite database, creating it (mode 0600) with a random key if missing.
    pub fn from_key_file(path: &std::path::Path) -> Result<Self, StoreError> {
        let io = |e: std::io::Error| {
            StoreError::Config(format!("encryption key file {}: {e}", path.display()))
        };
        if !path.exists() {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| StoreError::Crypto(e.to_string()))?;
            let text = base64::engine::general_purpose::STANDARD.encode(key);
            write_private(path, text.as_bytes()).map_err(io)?;
        }
        Self::from_base64(&std::fs::read_to_string(path).map_err(io)?)
    }

    pub fn encrypt(&self, plaintext: &[u8], context: &str) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| StoreError::Crypto(e.to_string()))?;
        let ct = self
            .0
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Crypto("encryption failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn decrypt(&self, record: &[u8], context: &str) -> Result<Vec<u8>, StoreError> {
        let bad = || {
            StoreError::Crypto(format!(
                "cannot decrypt {context}: wrong key or damaged record"
            ))
        };
        if record.len() < 1 + NONCE_LEN + 16 || record[0] != VERSION {
            return Err(bad());
        }
        let nonce: [u8; NONCE_LEN] = record[1..1 + NONCE_LEN].try_into().map_err(|_| bad())?;
        self.0
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &record[1 + NONCE_LEN..],
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| bad())
    }
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_fresh_nonce_and_tamper_detection() {
        let c = Cipher::from_key(&[7u8; 32]);
        let a = c
            .encrypt(b"s3cret", "installations.shared_secret:k1")
            .unwrap();
        let b = c
            .encrypt(b"s3cret", "installations.shared_secret:k1")
            .unwrap();
        assert_ne!(a, b, "each record gets its own nonce");
        assert!(!a.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(
            c.decrypt(&a, "installations.shared_secret:k1").unwrap(),
            b"s3cret"
        );
        assert!(
            c.decrypt(&a, "installations.shared_secret:k2").is_err(),
            "bound to its row"
        );
        let mut t = a.clone();
        *t.last_mut().unwrap() ^= 1;
        assert!(c.decrypt(&t, "installations.shared_secret:k1").is_err());
        assert!(
            Cipher::from_key(&[8u8; 32])
                .decrypt(&a, "installations.shared_secret:k1")
                .is_err()
        );
        assert!(c.decrypt(&a[..10], "x").is_err());
    }

    #[test]
    fn key_parsing_and_key_file() {
        assert!(Cipher::from_base64("not base64!").is_err());
        assert!(Cipher::from_base64("AAAA").is_err());
        let dir = std::env::temp_dir().join(format!("gfj-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.key");
        let _ = std::fs::remove_file(&path);
        let a = Cipher::from_key_file(&path).unwrap();
        let record = a.encrypt(b"x", "c").unwrap();
        let b = Cipher::from_key_file(&path).unwrap();
        assert_eq!(
            b.decrypt(&record, "c").unwrap(),
            b"x",
            "second open reads the same key"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
