//! The README's first command: the example app's tour, run in-process (the
//! same function `cargo run --example app -- --tour` runs), over real HTTP
//! on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "../examples/app.rs"]
mod app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tour_answers_every_step_as_expected() {
    let mut out = Vec::new();
    let passed = app::tour(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(passed, "{text}");
    assert!(!text.contains("FAIL"), "{text}");
    // The transcript shows what a reader needs to see.
    for shown in [
        "error=\"insufficient_scope\", scope=\"projects:create\"",
        "error=\"invalid_token\"",
        "Bearer realm=\"projects\"",
        "\"status\":\"applied\"",
        "\"actor\":\"usr_alice\"",
        "project_manager → team_member",
        "all 15 steps answered as expected",
    ] {
        assert!(text.contains(shown), "missing {shown:?} in\n{text}");
    }
}
