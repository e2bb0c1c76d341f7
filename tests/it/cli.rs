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

    // A first dashboard user for it: a one-time invitation link.
    let out = line(dir.path(), &["tenant", "invite", &tenant]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("invitation link: /invite/"),
        "{out:?}"
    );
    let out = line(dir.path(), &["tenant", "invite", "ten_nobody"]);
    assert!(!out.status.success(), "an unknown tenant is an error");

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `line serve`, waits until it answers, returns the child and its address.
fn serve(dir: &std::path::Path, extra_env: &[(&str, &str)]) -> (std::process::Child, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_line"));
    cmd.current_dir(dir)
        .env_remove("LINE_CONFIG")
        .env("LINE_LISTEN", &addr)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            return (child, addr);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("line serve did not start");
}

fn sigterm(child: &std::process::Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn serve_prints_a_first_key_once_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // No configuration at all: ./line.db and the sandbox.
    let (child, _) = serve(dir.path(), &[("LINE_LOG_FORMAT", "json")]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let key = text
        .split_whitespace()
        .find(|w| w.starts_with("line_test_"))
        .expect("a test key")
        .to_string();
    assert!(dir.path().join("line.db").exists());
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        log.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "{log}"
    );
    assert!(!log.contains(&key), "the key is in the log");

    // The second start finds its tenant and prints no key; the key still works,
    // and a message accepted just before SIGTERM is kept.
    let (child, addr2) = serve(dir.path(), &[]);
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://{addr2}/v1/sms"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"to": "+447700900001", "body": "before shutdown"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 202);
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        !stdout(&out).contains("line_test_"),
        "the key is printed only once"
    );

    let (child, addr3) = serve(dir.path(), &[]);
    let list = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("http://{addr3}/v1/sms"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    });
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    sigterm(&child);
    assert!(child.wait_with_output().unwrap().status.success());
}

#[test]
fn numbers_are_imported_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "+447400123456\n+442079460000\n+447400123457,abc\n").unwrap();
    let out = line(dir.path(), &["numbers", "import", bad.to_str().unwrap()]);
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2: +442079460000 is not a UK mobile number"),
        "{err}"
    );
    assert!(err.contains("line 3: the price \"abc\""), "{err}");
    assert!(err.contains("nothing imported"), "{err}");

    let good = dir.path().join("good.csv");
    std::fs::write(
        &good,
        "number,monthly_price_pence\n+447400123456\n+447400123457,250\n",
    )
    .unwrap();
    let out = line(dir.path(), &["numbers", "import", good.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("imported 2 numbers"), "{out:?}");

    // The failed import left nothing: the store holds exactly the good file's two.
    let out = line(dir.path(), &["tenant", "create", "--name", "Acme"]);
    let text = stdout(&out);
    let tenant = text
        .split_whitespace()
        .find(|w| w.starts_with("ten_"))
        .unwrap();
    let out = line(
        dir.path(),
        &[
            "tenant",
            "set",
            tenant,
            "--countries",
            "GB,IE",
            "--spend-cap",
            "500",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let account: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        account["allowed_countries"],
        serde_json::json!(["GB", "IE"])
    );
    assert_eq!(account["spend_cap_pence"], 500);
    let out = line(
        dir.path(),
        &["tenant", "set", tenant, "--spend-cap", "lots"],
    );
    assert!(!out.status.success());
}
