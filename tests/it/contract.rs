//! The API against its own OpenAPI document: schemathesis (from PyPI, put in
//! target/ on first use) runs every check it has over generated requests to a
//! running `line serve`, statefully where the document's links allow
//! (`.ci/schemathesis/run.sh`, whose hooks name the few answers no schema can
//! express, e.g. a well-formed number that is not a real one).

use std::process::Command;

#[test]
fn the_api_keeps_its_openapi_contract() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/.ci/schemathesis/run.sh"))
        .env("LINE_BIN", env!("CARGO_BIN_EXE_line"))
        .env("PORT", port.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{text}");
    assert!(
        out.status.success(),
        "schemathesis found failures (above); stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "  2508 generated, 2508 passed, 44 skipped": at least 1,000 cases in all.
    let generated: u64 = text
        .lines()
        .filter_map(|l| l.trim().split_once(" generated, "))
        .filter_map(|(n, _)| n.parse::<u64>().ok())
        .sum();
    assert!(generated >= 1000, "only {generated} cases generated");
    assert!(!text.contains("failures"), "a failure was reported");
}
