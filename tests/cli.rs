//! The `line` binary as an operator uses it.

use std::process::Command;

fn line(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_line"))
        .args(args)
        .current_dir(dir)
        .env_remove("LINE_CONFIG")
        .env(
            "LINE_DATABASE_URL",
            format!("sqlite://{}", dir.join("ops.db").display()),
        )
        .output()
        .unwrap()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn operators_create_tenants_and_keys_and_revoke_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = line(dir.path(), &["migrate"]);
    assert!(out.status.success(), "{out:?}");

    let out = line(dir.path(), &["tenant", "create", "--name", "Acme"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let tenant = text
        .split_whitespace()
        .find(|w| w.starts_with("ten_"))
        .unwrap()
        .to_string();
    assert!(
        text.contains("line_test_") && text.contains("line_live_"),
        "{text}"
    );

    let out = line(
        dir.path(),
        &["key", "create", "--tenant", &tenant, "--mode", "live"],
    );
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let key_id = text
        .split_whitespace()
        .find(|w| w.starts_with("key_"))
        .unwrap()
        .to_string();
    assert!(text.contains("line_live_"));

    let out = line(dir.path(), &["key", "revoke", &key_id]);
    assert!(out.status.success(), "{out:?}");
    let out = line(dir.path(), &["key", "revoke", &key_id]);
    assert!(!out.status.success(), "revoking twice is an error");

    let out = line(
        dir.path(),
        &["key", "create", "--tenant", "ten_nope", "--mode", "test"],
    );
    assert!(!out.status.success());
}

#[test]
fn a_bad_configuration_stops_start_up_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_line"))
        .arg("migrate")
        .current_dir(dir.path())
        .env("LINE_WORKER__BATCH_SIZE", "many")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("worker.batch_size"), "{err}");

    let file = dir.path().join("line.toml");
    std::fs::write(&file, "listen = \"not an address\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_line"))
        .args(["--config", file.to_str().unwrap(), "migrate"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen"));
}
