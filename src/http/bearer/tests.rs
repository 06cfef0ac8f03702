//! `Authorization: Bearer` and `Sec-WebSocket-Protocol: bearer.<token>` extraction.

use super::{bearer_from_subprotocols, extract_bearer};

#[test]
fn extract_bearer_cases() {
    let cases: &[(&str, Option<&str>)] = &[
        ("Bearer rvk_abc", Some("rvk_abc")),
        ("bearer rvk_abc", Some("rvk_abc")),
        ("BEARER rvk_abc", Some("rvk_abc")),
        ("  Bearer   rvk_abc  ", Some("rvk_abc")),
        ("Bearer\trvk_abc", Some("rvk_abc")),
        ("Bearer", None),
        ("Bearer ", None),
        ("Bearer    ", None),
        ("", None),
        ("rvk_abc", None),
        ("Bearerrvk_abc", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Token rvk_abc", None),
        ("Bearer rvk_abc extra", None),
    ];
    for (header, expected) in cases {
        assert_eq!(extract_bearer(header), *expected, "{header:?}");
    }
}

#[test]
fn bearer_from_subprotocols_cases() {
    let cases: &[(&str, Option<&str>)] = &[
        ("bearer.rvk_abc", Some("rvk_abc")),
        ("Bearer.rvk_abc", Some("rvk_abc")),
        ("revka.v1, bearer.rvk_abc", Some("rvk_abc")),
        ("bearer.rvk_abc , revka.v1", Some("rvk_abc")),
        ("revka.v1,bearer.rvk_abc,bearer.rvk_def", Some("rvk_abc")),
        ("bearer., bearer.rvk_def", Some("rvk_def")),
        ("bearer.", None),
        ("bearer", None),
        ("revka.v1", None),
        ("", None),
        ("xbearer.rvk_abc", None),
        ("bearer rvk_abc", None),
        ("b", None),
        ("é", None),
    ];
    for (header, expected) in cases {
        assert_eq!(bearer_from_subprotocols(header), *expected, "{header:?}");
    }
}
