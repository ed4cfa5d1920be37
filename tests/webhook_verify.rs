//! Standard Webhooks signature verification: the SCALEKIT.md test vector and
//! every failure mode, each with its own error variant.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, UNIX_EPOCH};

use rolegraph::scalekit::{Verifier, WebhookError};

const SECRET: &str = "whsec_dGVzdHNlY3JldA==";
const ID: &str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
const TS: i64 = 1_674_087_231;
const SIG: &str = "v1,aL32QRBylJVrcx2sIjIIjwSzYmTSfIh0S1ReUfMQqqw=";
const BODY: &[u8] = br#"{"spec_version":"1","id":"evt_1","type":"organization.directory.user_updated","data":{"roles":[{"role_name":"billing_admin"}]}}"#;

fn at(secs: i64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

fn verify(headers: &[(&str, &str)], body: &[u8]) -> Result<String, WebhookError> {
    Verifier::new([SECRET])
        .unwrap()
        .verify(headers.iter().copied(), body, at(TS))
        .map(|v| v.id().to_owned())
}

fn good() -> Vec<(&'static str, &'static str)> {
    vec![
        ("webhook-id", ID),
        ("webhook-timestamp", "1674087231"),
        ("webhook-signature", SIG),
    ]
}

#[test]
fn the_scalekit_test_vector_verifies() {
    assert_eq!(verify(&good(), BODY).unwrap(), ID);
    let v = Verifier::new([SECRET]).unwrap();
    assert_eq!(v.sign(ID, TS, BODY), SIG);
    let verified = v.verify(good(), BODY, at(TS)).unwrap();
    assert_eq!(verified.timestamp(), TS);
}

#[test]
fn header_names_are_case_insensitive_and_order_free() {
    let headers = [
        ("Content-Type", "application/json"),
        ("WEBHOOK-SIGNATURE", SIG),
        ("Webhook-Timestamp", "1674087231"),
        ("wEbHoOk-Id", ID),
    ];
    assert_eq!(verify(&headers, BODY).unwrap(), ID);
}

#[test]
fn owned_and_byte_headers_work_too() {
    let v = Verifier::new([SECRET]).unwrap();
    let owned: Vec<(String, Vec<u8>)> = good()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
        .collect();
    assert!(v.verify(owned, BODY, at(TS)).is_ok());
}

#[test]
fn each_missing_header_has_its_own_error() {
    for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let headers: Vec<_> = good().into_iter().filter(|(k, _)| *k != missing).collect();
        match verify(&headers, BODY) {
            Err(WebhookError::MissingHeader { name }) => assert_eq!(name, missing),
            other => panic!("{missing}: {other:?}"),
        }
    }
}

#[test]
fn malformed_headers_are_named() {
    let cases = [
        ("webhook-timestamp", "soon", "webhook-timestamp"),
        ("webhook-timestamp", "-5", "webhook-timestamp"),
        ("webhook-timestamp", "1e9", "webhook-timestamp"),
        ("webhook-timestamp", "", "webhook-timestamp"),
        ("webhook-id", "", "webhook-id"),
        ("webhook-id", "two words", "webhook-id"),
        ("webhook-signature", "garbage", "webhook-signature"),
        ("webhook-signature", "   ", "webhook-signature"),
    ];
    for (header, value, named) in cases {
        let headers: Vec<_> = good()
            .into_iter()
            .map(|(k, v)| if k == header { (k, value) } else { (k, v) })
            .collect();
        match verify(&headers, BODY) {
            Err(e @ WebhookError::MalformedHeader { name, .. }) => {
                assert_eq!(name, named, "{header}={value:?}");
                let msg = e.to_string();
                assert!(
                    msg.starts_with(&format!("malformed header `{named}`")),
                    "{msg}"
                );
                assert!(!msg.contains('\n'), "{msg}");
            }
            other => panic!("{header}={value:?}: {other:?}"),
        }
    }
}

#[test]
fn a_repeated_id_or_timestamp_is_ambiguous() {
    let mut headers = good();
    headers.push(("webhook-id", "msg_other"));
    assert!(matches!(
        verify(&headers, BODY),
        Err(WebhookError::MalformedHeader {
            name: "webhook-id",
            ..
        })
    ));
    let mut headers = good();
    headers.push(("webhook-timestamp", "1674087231"));
    assert!(matches!(
        verify(&headers, BODY),
        Err(WebhookError::MalformedHeader {
            name: "webhook-timestamp",
            ..
        })
    ));
}

#[test]
fn bad_secrets_are_refused_without_echoing_them() {
    for (secret, index) in [
        ("dGVzdHNlY3JldA==", 1),     // no prefix
        ("whsec_not base64!", 1),    // not base64
        ("whsec_", 1),               // empty key
        ("whsec_dGVzdHNlY3JldA", 1), // missing padding
    ] {
        match Verifier::new([secret]) {
            Err(e @ WebhookError::BadSecret { .. }) => {
                let WebhookError::BadSecret { index: i, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(*i, index);
                let tail = secret.trim_start_matches("whsec_");
                assert!(tail.is_empty() || !e.to_string().contains(tail), "{e}");
            }
            other => panic!("{secret}: {other:?}"),
        }
    }
    assert!(matches!(
        Verifier::new([SECRET, "nope"]),
        Err(WebhookError::BadSecret { index: 2, .. })
    ));
    assert!(matches!(
        Verifier::new(Vec::<String>::new()),
        Err(WebhookError::BadSecret { index: 0, .. })
    ));
}

#[test]
fn the_timestamp_tolerance_is_300_seconds_both_ways() {
    let v = Verifier::new([SECRET]).unwrap();
    assert!(v.verify(good(), BODY, at(TS + 300)).is_ok());
    assert!(v.verify(good(), BODY, at(TS - 300)).is_ok());
    match v.verify(good(), BODY, at(TS + 301)) {
        Err(WebhookError::TooOld {
            timestamp,
            now,
            tolerance_s,
        }) => {
            assert_eq!((timestamp, now, tolerance_s), (TS, TS + 301, 300));
        }
        other => panic!("{other:?}"),
    }
    match v.verify(good(), BODY, at(TS - 301)) {
        Err(e @ WebhookError::TooNew { .. }) => {
            assert!(e.to_string().contains("301 s ahead"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    let lenient = v.with_tolerance(Duration::from_secs(3600));
    assert!(lenient.verify(good(), BODY, at(TS + 3000)).is_ok());
}

#[test]
fn a_changed_body_id_or_timestamp_does_not_verify() {
    let mut body = BODY.to_vec();
    body.push(b' ');
    assert!(matches!(
        verify(&good(), &body),
        Err(WebhookError::NoMatchingSignature {
            entries: 1,
            secrets: 1
        })
    ));
    let mut headers = good();
    headers[0].1 = "msg_other";
    assert!(matches!(
        verify(&headers, BODY),
        Err(WebhookError::NoMatchingSignature { .. })
    ));
    let mut headers = good();
    headers[1].1 = "1674087232";
    assert!(matches!(
        verify(&headers, BODY),
        Err(WebhookError::NoMatchingSignature { .. })
    ));
}

#[test]
fn a_wrong_secret_does_not_verify() {
    let other = Verifier::new(["whsec_b3RoZXJzZWNyZXQ="]).unwrap();
    assert!(matches!(
        other.verify(good(), BODY, at(TS)),
        Err(WebhookError::NoMatchingSignature { .. })
    ));
}

#[test]
fn any_v1_entry_may_match_and_other_versions_are_skipped() {
    let sig = format!("v2,{} v1,AAAA v1,{} v1a,xyz", &SIG[3..], &SIG[3..]);
    let mut headers = good();
    headers[2].1 = &sig;
    assert_eq!(verify(&headers, BODY).unwrap(), ID);
    // The right tag under another version is not a match.
    let v2_only = format!("v2,{}", &SIG[3..]);
    let mut headers = good();
    headers[2].1 = &v2_only;
    assert!(matches!(
        verify(&headers, BODY),
        Err(WebhookError::NoMatchingSignature { entries: 0, .. })
    ));
}

#[test]
fn a_repeated_signature_header_adds_entries() {
    let mut headers = good();
    headers[2].1 = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    headers.push(("webhook-signature", SIG));
    assert_eq!(verify(&headers, BODY).unwrap(), ID);
}

#[test]
fn several_secrets_verify_during_rotation() {
    let old = Verifier::new(["whsec_b2xkc2VjcmV0"]).unwrap();
    let both = Verifier::new(["whsec_b2xkc2VjcmV0", SECRET]).unwrap();
    // Signed with the new secret only.
    assert!(both.verify(good(), BODY, at(TS)).is_ok());
    // Signed with the old secret only.
    let old_sig = old.sign(ID, TS, BODY);
    let headers = [
        ("webhook-id", ID),
        ("webhook-timestamp", "1674087231"),
        ("webhook-signature", old_sig.as_str()),
    ];
    assert!(both.verify(headers, BODY, at(TS)).is_ok());
    // The sender signing with both during rotation.
    let two = format!("{old_sig} {SIG}");
    let headers = [
        ("webhook-id", ID),
        ("webhook-timestamp", "1674087231"),
        ("webhook-signature", two.as_str()),
    ];
    assert!(Verifier::new([SECRET])
        .unwrap()
        .verify(headers, BODY, at(TS))
        .is_ok());
}

#[test]
fn signature_errors_are_one_line_and_flagged() {
    let errors = [
        verify(&good()[..2], BODY).unwrap_err(),
        verify(&good(), b"{}").unwrap_err(),
    ];
    for e in errors {
        assert!(e.is_signature_error());
        let msg = e.to_string();
        assert!(
            !msg.contains('\n') && msg.chars().next().unwrap().is_lowercase(),
            "{msg}"
        );
    }
}
