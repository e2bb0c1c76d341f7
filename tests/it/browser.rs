//! A new user's first minutes in a real browser: Debian's Chromium, driven by
//! tests/browser/journey.mjs (playwright-core), against a `line serve` process
//! on the zero-configuration embedded database. Chromium is installed with
//! apt when it is missing (as root), playwright-core with `npm ci`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";

fn folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

async fn run(cmd: &mut Command, what: &str) {
    let status = cmd.status().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed");
}

/// Debian's `chromium`, installed when missing (the test suite runs as root in CI).
async fn chromium() {
    if Path::new(CHROMIUM).exists() {
        return;
    }
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    assert!(
        root,
        "the browser test needs Debian's chromium: sudo apt-get install chromium"
    );
    run(
        Command::new("apt-get").args(["update", "-qq"]),
        "apt-get update",
    )
    .await;
    run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install chromium",
    )
    .await;
}

async fn playwright() {
    if folder()
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(folder()),
        "npm ci in tests/browser (Node 20 and npm must be installed)",
    )
    .await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_signs_up_sends_an_otp_rents_a_number_and_tries_the_demo() {
    chromium().await;
    playwright().await;
    let dir = tempfile::tempdir().unwrap();
    let line = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_line"));
        cmd.args(args)
            .current_dir(dir.path())
            .env_remove("LINE_CONFIG")
            .env("RUST_LOG", "warn");
        cmd
    };
    // The operator's inventory, as `line numbers import` takes it.
    std::fs::write(
        dir.path().join("numbers.csv"),
        "number,monthly_price_pence\n+447400100500,150\n",
    )
    .unwrap();
    run(
        line(&["numbers", "import", "numbers.csv"]).stdout(Stdio::null()),
        "line numbers import",
    )
    .await;

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = line(&["serve"])
        .env("LINE_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "line serve did not start");

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    let _ = std::fs::remove_dir_all(&shots);
    let out = Command::new("node")
        .arg(folder().join("journey.mjs"))
        .env("BASE_URL", &base)
        .env("OUT_DIR", &shots)
        .env("CHROMIUM", CHROMIUM)
        .output()
        .await
        .expect("node must be installed");
    server.kill().await.unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{log}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log.ends_with("journey ok\n"), "{log}");
    let pngs = std::fs::read_dir(&shots)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "png")
        })
        .count();
    assert!(pngs >= 12, "{pngs} screenshots in {}", shots.display());
    println!("screenshots in {}", shots.display());
}
