#![no_main]
//! Raw webhook bodies and headers through the whole handler: no panic, and
//! no state change unless the signature verifies.

use std::time::{Duration, UNIX_EPOCH};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rolegraph::scalekit::{Handler, Verifier};
use rolegraph::{Engine, Policy};

const SECRET: &str = "whsec_dGVzdHNlY3JldA==";
/// The receiver's clock: 2025-06-01T00:00:00Z.
const NOW: i64 = 1_748_736_000;

#[derive(Debug, Arbitrary)]
struct Input {
    /// Sign the body properly (to reach parsing and mapping) or send the
    /// fuzzed timestamp and signature as they are.
    sign: bool,
    id: String,
    timestamp: String,
    signature: String,
    /// More headers, repeated or odd-cased ones included.
    extra: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let mut policy = Policy::new();
    policy.permission("a:read").permission("a:write");
    policy.role("viewer").grant("a:read");
    policy.role("editor").extends("viewer").grant("a:write");
    policy
        .organization("org_1")
        .map_group("dirgroup_1", ["editor"]);
    let engine = Engine::new(&policy).expect("the fixture compiles");
    let verifier = Verifier::new([SECRET]).expect("the secret is valid");
    let handler = Handler::new(engine.clone(), verifier.clone());
    let now = UNIX_EPOCH + Duration::from_secs(NOW as u64);
    let (timestamp, signature) = if input.sign {
        (NOW.to_string(), verifier.sign(&input.id, NOW, &input.body))
    } else {
        (input.timestamp, input.signature)
    };
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        ("webhook-id".into(), input.id.into_bytes()),
        ("webhook-timestamp".into(), timestamp.into_bytes()),
        ("webhook-signature".into(), signature.into_bytes()),
    ];
    headers.extend(input.extra);
    let pairs = || headers.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
    let verified = verifier.verify(pairs(), &input.body, now).is_ok();
    let before = engine.policy();

    let outcome = handler.handle_at(pairs(), &input.body, now);

    assert!(matches!(outcome.status(), 200 | 400 | 401 | 500 | 503));
    assert!(serde_json::from_str::<serde_json::Value>(&outcome.body()).is_ok());
    if !verified {
        assert_eq!(outcome.status(), 401, "{}", outcome.body());
        assert_eq!(engine.revision(), 0);
        assert_eq!(engine.policy(), before);
    }
    // Whatever was applied, the published policy is valid.
    assert!(engine.policy().compile().is_ok());
});
