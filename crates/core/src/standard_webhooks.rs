//! Standard Webhooks signatures (<https://www.standardwebhooks.com>), which GitLab sends for hooks that
//! have a signing token: `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`,
//! where the key is the base64 after `whsec_`. Several space-separated signatures may appear while a key
//! is rotated; one match is enough.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Deliveries whose timestamp is further than this from our clock are refused as replays.
pub const TOLERANCE_SECS: i64 = 5 * 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signing secret is not whsec_<base64>")]
    BadSecret,
    #[error("webhook-id, webhook-timestamp or webhook-signature is missing")]
    Missing,
    #[error("webhook-timestamp is not a Unix time")]
    BadTimestamp,
    #[error("webhook-timestamp is more than five minutes away from now")]
    Stale,
    #[error("no webhook-signature matches")]
    Mismatch,
}

/// The key bytes of a `whsec_…` secret.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, SignatureError> {
    let b64 = secret
        .strip_prefix("whsec_")
        .ok_or(SignatureError::BadSecret)?;
    STANDARD.decode(b64).map_err(|_| SignatureError::BadSecret)
}

/// A fresh `whsec_` secret from 32 random bytes supplied by the caller (the core does no I/O).
pub fn format_secret(random: &[u8; 32]) -> String {
    format!("whsec_{}", STANDARD.encode(random))
}

fn mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` value for a delivery.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(key, id, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// Checks a delivery's signature headers (`None` when absent) against the key, in constant time.
pub fn verify(
    key: &[u8],
    id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), SignatureError> {
    let (Some(id), Some(timestamp), Some(signatures)) = (id, timestamp, signatures) else {
        return Err(SignatureError::Missing);
    };
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    if (now_secs - ts).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    let expected = mac(key, id, timestamp.trim(), body);
    let matches = signatures
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .any(|tag| expected.clone().verify_slice(&tag).is_ok());
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks specification's reference libraries.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn reference_example_signs_and_verifies() {
        let key = secret_key(SECRET).unwrap();
        assert_eq!(sign(&key, ID, TS, BODY), SIG);
        assert_eq!(
            verify(&key, Some(ID), Some(&TS.to_string()), Some(SIG), BODY, TS),
            Ok(())
        );
    }

    #[test]
    fn refusals() {
        let key = secret_key(SECRET).unwrap();
        let ts = TS.to_string();
        let v = |id, ts: Option<&str>, sig, body: &[u8], now| verify(&key, id, ts, sig, body, now);
        assert_eq!(
            v(Some(ID), Some(&ts), None, BODY, TS),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            v(Some(ID), Some("soon"), Some(SIG), BODY, TS),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            v(
                Some(ID),
                Some(&ts),
                Some(SIG),
                BODY,
                TS + TOLERANCE_SECS + 1
            ),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            v(Some(ID), Some(&ts), Some(SIG), br#"{"test": 1}"#, TS),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v(Some("msg_other"), Some(&ts), Some(SIG), BODY, TS),
            Err(SignatureError::Mismatch)
        );
        // One valid signature among several (key rotation) is enough.
        let rotated = format!("v1,AAAA {SIG} v2,zzz");
        assert_eq!(v(Some(ID), Some(&ts), Some(&rotated), BODY, TS), Ok(()));
        assert_eq!(secret_key("MfKQ9r8"), Err(SignatureError::BadSecret));
        let fresh = format_secret(&[7; 32]);
        assert_eq!(secret_key(&fresh).unwrap(), vec![7; 32]);
    }
}
