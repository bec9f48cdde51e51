//! Connect JWTs and `qsh`: any token (the input's first line) against a fixed secret, and any method (second
//! line) and URL (the rest). Nothing may panic, no token the fuzzer makes up may verify, and a token we
//! sign for a request must verify for exactly that request.
#![no_main]

use gfj_core::connect_jwt::{self, BoundRequest, QshRule};
use gfj_core::qsh;
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz-shared-secret-that-no-seed-token-is-signed-with";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(3, '\n');
    let token = lines.next().unwrap_or("");
    let method = lines.next().unwrap_or("");
    let url = lines.next().unwrap_or("");

    let _ = connect_jwt::peek(token);
    let (path, query) = qsh::split_url(url);
    let request = BoundRequest {
        method,
        path,
        query,
        base_path: "/base",
    };
    for check_exp in [false, true] {
        assert!(connect_jwt::verify_hs256(token, SECRET, &QshRule::Context, check_exp).is_err());
        let bound = QshRule::Request(BoundRequest { ..request });
        assert!(connect_jwt::verify_hs256(token, SECRET, &bound, check_exp).is_err());
    }
    assert_eq!(
        qsh::canonical_request_for_url(method, url, "/base"),
        qsh::canonical_request(method, path, "/base", query)
    );

    let signed = connect_jwt::sign_hs256("app", SECRET, &request, 0, 60);
    let claims = connect_jwt::verify_hs256(&signed, SECRET, &QshRule::Request(request), false)
        .expect("a token signed for this request verifies for it");
    assert_eq!(claims.iss, "app");
    assert!(
        connect_jwt::verify_hs256(&signed, b"another secret", &QshRule::Context, false).is_err()
    );
});
