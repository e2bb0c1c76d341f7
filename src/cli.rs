//! The `line` command: serve, migrate and operator tasks.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::Line;
use crate::config::{Config, LogFormat, Role};
use crate::domain::Mode;
use crate::domain::ids::{KeyId, TenantId};
use crate::infra::clock::Clock;
use crate::usecase::account::AccountChange;

#[derive(Parser)]
#[command(
    name = "line",
    version,
    about = "Line: SMS one-time passwords as a service"
)]
struct Cli {
    /// A TOML file layered over the built-in defaults.
    #[arg(long, global = true, env = "LINE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and run the workers (the default).
    Serve {
        /// Run only part of the service (default: `role` in the configuration, else all).
        #[arg(long, value_enum)]
        role: Option<Role>,
    },
    /// Bring the database schema up to date, then exit.
    Migrate,
    /// Tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// The inventory of numbers tenants may rent.
    Numbers {
        #[command(subcommand)]
        command: NumbersCommand,
    },
}

#[derive(Subcommand)]
enum NumbersCommand {
    /// Add numbers from a CSV file (E.164 number, optional monthly price in
    /// pence), or set their price; every bad line is reported and nothing is imported.
    Import { file: PathBuf },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant; prints its id, a test key and a live key (shown once).
    Create {
        #[arg(long)]
        name: String,
    },
    /// Print a one-time link that lets a person join a tenant's dashboard team
    /// (how a tenant made here gets its first owner); works for `[dashboard]
    /// invite_days` unless sign-up is `closed`.
    Invite {
        tenant: TenantId,
        #[arg(long, default_value = "owner")]
        role: String,
    },
    /// Change a tenant's settings, as PATCH /v1/account does.
    Set {
        tenant: TenantId,
        #[arg(long)]
        name: Option<String>,
        /// An alphanumeric sender ID or a number it rents; `default` for the service's.
        #[arg(long)]
        default_sender: Option<String>,
        /// ISO country codes, comma-separated (e.g. GB,IE).
        #[arg(long, value_delimiter = ',')]
        countries: Option<Vec<String>>,
        /// Pence a month; `default` for the service's.
        #[arg(long)]
        spend_cap: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an API key for a tenant (shown once).
    Create {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long, value_enum)]
        mode: Mode,
    },
    /// Revoke an API key by its id (key_…).
    Revoke { key_id: KeyId },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Serve { role: Some(role) }) = &cli.command {
        config.role = *role;
    }
    init_logging(config.log_format);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only on a terminal: not as escape codes in a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(command: Option<Command>, config: Config) -> anyhow::Result<()> {
    let line = Line::open(config, Clock::default()).await?;
    match command.unwrap_or(Command::Serve { role: None }) {
        Command::Serve { .. } => serve(line).await,
        Command::Migrate => {
            println!("database is up to date");
            Ok(())
        }
        Command::Tenant {
            command: TenantCommand::Create { name },
        } => {
            let t = line.create_tenant(&name).await?;
            println!("tenant:   {}", t.tenant.id);
            println!("test key: {}", t.test_key.expose());
            println!("live key: {}", t.live_key.expose());
            println!("(keys are shown once; only their hashes are stored)");
            Ok(())
        }
        Command::Tenant {
            command: TenantCommand::Invite { tenant, role },
        } => {
            let token = crate::usecase::accounts::operator_invite(line.core(), &tenant, &role)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
            println!("invitation link: /invite/{}", token.expose());
            println!(
                "(put the dashboard's address in front; it works once, and is shown only now)"
            );
            Ok(())
        }
        Command::Tenant {
            command:
                TenantCommand::Set {
                    tenant,
                    name,
                    default_sender,
                    countries,
                    spend_cap,
                },
        } => {
            let spend_cap_pence = match spend_cap.as_deref() {
                None => None,
                Some("default") => Some(None),
                Some(p) => Some(Some(p.parse().map_err(|_| {
                    anyhow::anyhow!("--spend-cap must be pence or `default`")
                })?)),
            };
            let change = AccountChange {
                name,
                default_sender: default_sender.map(|s| (s != "default").then_some(s)),
                allowed_countries: countries,
                spend_cap_pence,
            };
            let account = crate::usecase::account::update(line.core(), &tenant, change)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
            println!("{}", serde_json::to_string_pretty(&account)?);
            Ok(())
        }
        Command::Numbers {
            command: NumbersCommand::Import { file },
        } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let price = line.config.prices.number_monthly_pence;
            match crate::usecase::numbers::parse_inventory(&text, price) {
                Ok(numbers) => {
                    let n = line
                        .store
                        .import_numbers(&numbers, line.clock.now())
                        .await?;
                    println!("imported {n} numbers");
                    Ok(())
                }
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{e}");
                    }
                    anyhow::bail!(
                        "{} bad lines in {}; nothing imported",
                        errors.len(),
                        file.display()
                    )
                }
            }
        }
        Command::Key {
            command: KeyCommand::Create { tenant, mode },
        } => {
            let (id, key) = line.create_key(&tenant, mode).await?;
            println!("key id: {id}");
            println!("key:    {}", key.expose());
            println!("(shown once; only its hash is stored)");
            Ok(())
        }
        Command::Key {
            command: KeyCommand::Revoke { key_id },
        } => {
            anyhow::ensure!(
                line.store
                    .revoke_api_key(None, &key_id, line.clock.now())
                    .await?,
                "no active key {key_id}"
            );
            println!("revoked {key_id} (cached copies expire within 10 s)");
            Ok(())
        }
    }
}

async fn serve(line: Line) -> anyhow::Result<()> {
    if let Some(first) = line.bootstrap().await? {
        // Printed once, on a fresh database, so a new user can send a first SMS at once.
        println!(
            "Created a first tenant {} with test key:\n\n    {}\n",
            first.tenant.id,
            first.test_key.expose()
        );
        println!("Keep it: it is shown only this once. Try:\n");
        println!(
            "    curl -s http://{}/v1/sms -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' \\\n      -d '{{\"to\": \"+447700900123\", \"body\": \"Hello from Line\"}}'\n",
            line.config.listen,
            first.test_key.expose()
        );
    }
    // Registered before the port opens: a SIGTERM that comes as soon as the
    // port answers must find the handler there, not end the process.
    let signal = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(line.config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (`listen`): {e}", line.config.listen))?;
    tracing::info!(listen = %line.config.listen, role = ?line.config.role, "line is serving");
    let (trigger, shutdown) = crate::infra::shutdown::channel();
    let bound = Duration::from_secs(line.config.limits.shutdown_timeout_seconds);
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutting down: finishing in-flight work");
        trigger.trigger();
        // Whatever is stuck, the process ends: leases left behind are freed
        // by the other nodes' heartbeats, or by this node's next start.
        tokio::time::sleep(bound).await;
        tracing::error!(seconds = bound.as_secs(), "shutdown took too long; exiting");
        std::process::exit(1);
    });
    line.serve(listener, shutdown).await
}

/// Completes on SIGTERM or Ctrl-C; the SIGTERM handler is in place on return.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    Ok(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
    })
}
