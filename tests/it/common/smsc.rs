//! The SMSC simulator (tests/smsc, on the npm package `smpp`) as a child
//! process: installed with `npm ci` on first use, started on a free port.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;

static INSTALLED: OnceCell<()> = OnceCell::const_new();

fn folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/smsc")
}

/// `npm ci` in tests/smsc, once, unless it has been done.
async fn install() {
    INSTALLED
        .get_or_init(|| async {
            if folder().join("node_modules/smpp/package.json").exists() {
                return;
            }
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(folder())
                .status()
                .await
                .expect("npm must be installed (Node 20): the SMPP tests run a node-smpp SMSC");
            assert!(status.success(), "npm ci in tests/smsc failed");
        })
        .await;
}

pub struct Smsc {
    child: Child,
    pub port: u16,
    /// One JSON line per accepted submit_sm part.
    pub log: PathBuf,
    /// Its latest `stats …` line.
    stats: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Smsc {
    /// A simulator on a free port with a fresh log; `env` as in tests/smsc/README.md.
    pub async fn start(dir: &Path, env: &[(&str, &str)]) -> Smsc {
        Self::start_on(0, &dir.join("smsc.log"), env).await
    }

    /// A simulator on `port` (0 = any), appending to `log`.
    pub async fn start_on(port: u16, log: &Path, env: &[(&str, &str)]) -> Smsc {
        install().await;
        let mut cmd = Command::new("node");
        cmd.arg(folder().join("smsc.js"))
            .env("SMSC_PORT", port.to_string())
            .env("SMSC_LOG", log)
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("node must be installed");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines
            .next_line()
            .await
            .unwrap()
            .expect("the SMSC printed nothing");
        let port = first
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected SMSC output: {first}"));
        // Keep reading, or its stats lines would fill the pipe and stall it.
        let stats = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let last = stats.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("stats ") {
                    *last.lock().unwrap() = line;
                }
            }
        });
        Smsc {
            child,
            port,
            log: log.to_path_buf(),
            stats,
        }
    }

    /// Waits for the process to end (e.g. after SMSC_DIE_AFTER).
    pub async fn exited(&mut self) {
        let _ = self.child.wait().await;
    }

    /// A counter of its latest stats line (`accepted`, `receipts`, `unbinds`…).
    pub fn stat(&self, name: &str) -> u64 {
        let line = self.stats.lock().unwrap().clone();
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// What the SMSC accepted, one entry per part.
    pub fn accepted(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}
