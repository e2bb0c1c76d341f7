//! Line: SMS one-time passwords as a service. `main` is thin; everything lives here.

pub mod carrier;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod infra;
pub mod receipts;
pub mod store;
pub mod usecase;
pub mod web;
pub mod webhook;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::carrier::Carriers;
use crate::config::Config;
use crate::domain::Mode;
use crate::domain::api_key::ApiKey;
use crate::domain::ids::{KeyId, TenantId};
use crate::domain::otp::HashKey;
use crate::http::AppState;
use crate::http::extract::AuthCache;
use crate::infra::clock::Clock;
use crate::infra::shutdown::Shutdown;
use crate::receipts::ReceiptSink;
use crate::store::{Store, Tenant};
use crate::usecase::Core;
use crate::webhook::Dispatcher;
use crate::worker::Worker;
use crate::worker::heartbeat::Heartbeat;

/// One running service: configuration, storage and time, shared by the API and the workers.
#[derive(Clone)]
pub struct Line {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: Clock,
    /// What the use cases run on (the API's and, later, the dashboard's).
    core: Core,
    /// Wakes this process's receipt applier when receipts are kept waiting.
    receipts_wake: Arc<Notify>,
    /// Rung when webhook deliveries may have been queued: the dispatcher claims at once.
    webhooks_wake: Arc<Notify>,
    pub carriers: Arc<Carriers>,
    receipts: ReceiptSink,
}

/// A new tenant and its first keys, shown once.
pub struct NewTenant {
    pub tenant: Tenant,
    pub test_key: ApiKey,
    pub live_key: ApiKey,
}

impl Line {
    /// Connects to the configured database and brings its schema up to date.
    pub async fn open(config: Config, clock: Clock) -> anyhow::Result<Line> {
        let store = store::connect(
            config.database_url.expose(),
            config.database_max_connections,
        )
        .await
        .context("opening the database (database_url)")?;
        let hash_key = match config.otp_secret.expose() {
            "" => {
                tracing::warn!(
                    "otp_secret is not configured: using one generated and kept in the database; \
                     set otp_secret (LINE_OTP_SECRET) so that a database dump alone cannot test codes"
                );
                let fresh = base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    rand::random::<[u8; 32]>(),
                );
                HashKey::new(&store.setting_or_init("otp_secret", &fresh).await?)
            }
            configured => HashKey::new(configured),
        };
        let config = Arc::new(config);
        let core = Core::new(config.clone(), store.clone(), clock.clone(), hash_key);
        let receipts_wake = Arc::new(Notify::new());
        let webhooks_wake = Arc::new(Notify::new());
        let receipts =
            ReceiptSink::start(store.clone(), receipts_wake.clone(), webhooks_wake.clone());
        let carriers = Arc::new(Carriers::new(
            &config,
            store.clone(),
            clock.clone(),
            receipts.clone(),
        ));
        Ok(Line {
            config,
            core,
            store,
            clock,
            receipts_wake,
            webhooks_wake,
            carriers,
            receipts,
        })
    }

    /// What the use cases run on.
    pub fn core(&self) -> &Core {
        &self.core
    }

    pub fn state(&self) -> AppState {
        AppState {
            core: self.core.clone(),
            auth_cache: Arc::new(AuthCache::default()),
            carriers: self.carriers.clone(),
            receipts: self.receipts.clone(),
        }
    }

    pub fn router(&self) -> axum::Router {
        http::router(self.state())
    }

    /// A worker wired to the configured carriers (connecting them if need be).
    pub fn worker(&self) -> Worker {
        self.carriers.start();
        Worker::new(
            self.store.clone(),
            self.clock.clone(),
            self.carriers.clone(),
            self.config.worker.clone(),
            Duration::from_secs(self.config.limits.message_validity_seconds),
            self.core.wake.clone(),
            self.receipts_wake.clone(),
            self.webhooks_wake.clone(),
            self.core.handoff.clone(),
        )
    }

    pub async fn create_tenant(&self, name: &str) -> anyhow::Result<NewTenant> {
        let name = name.trim();
        anyhow::ensure!(
            !name.is_empty() && name.len() <= 100,
            "a tenant name is 1–100 characters"
        );
        let tenant = self
            .store
            .create_tenant(&TenantId::generate(), name, self.clock.now())
            .await?;
        let test_key = self.create_key(&tenant.id, Mode::Test).await?.1;
        let live_key = self.create_key(&tenant.id, Mode::Live).await?.1;
        Ok(NewTenant {
            tenant,
            test_key,
            live_key,
        })
    }

    /// Returns the key's id and the key itself (shown once; only its hash is kept).
    pub async fn create_key(
        &self,
        tenant_id: &TenantId,
        mode: Mode,
    ) -> anyhow::Result<(KeyId, ApiKey)> {
        usecase::keys::create(&self.core, tenant_id, mode, "")
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.detail))
    }

    /// A webhook dispatcher for the configured schedule.
    pub fn dispatcher(&self) -> Dispatcher {
        Dispatcher::new(
            self.store.clone(),
            self.clock.clone(),
            self.config.webhooks.clone(),
            self.webhooks_wake.clone(),
        )
    }

    /// On an empty database: a first tenant, so a new user can send at once.
    pub async fn bootstrap(&self) -> anyhow::Result<Option<NewTenant>> {
        if self.store.count_tenants().await? > 0 {
            return Ok(None);
        }
        Ok(Some(self.create_tenant("My first tenant").await?))
    }

    /// Serves the API and runs the workers (as `role` says) until `shutdown`;
    /// in-flight requests finish and leases are released before it returns.
    pub async fn serve(&self, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
        let role = self.config.role;
        let idle = Duration::from_millis(self.config.worker.poll_interval_ms);
        let worker = if role.runs_worker() {
            let (worker, dispatcher) = (self.worker(), self.dispatcher());
            let heartbeat = Heartbeat::new(
                self.store.clone(),
                self.clock.clone(),
                &self.config.worker,
                vec![worker.lease_token().into(), dispatcher.lease_token().into()],
            );
            // One SQLite file has one node: whatever held leases before this
            // start is dead, and its claims are taken back at once.
            if self.config.database_url.expose().starts_with("sqlite:") {
                heartbeat
                    .free_silent_since(self.clock.now().plus_ms(1))
                    .await?;
            }
            let beating = heartbeat.start();
            let dispatcher = tokio::spawn(dispatcher.run(shutdown.clone(), idle));
            let sender = tokio::spawn(worker.run(shutdown.clone()));
            Some((sender, dispatcher, beating))
        } else {
            None
        };
        // On shutdown nothing new enters an SMPP window; what is in it drains.
        let draining = {
            let (carriers, mut stop) = (self.carriers.clone(), shutdown.clone());
            tokio::spawn(async move {
                stop.wait().await;
                carriers.drain();
            })
        };
        if role.runs_api() {
            let mut stop = shutdown.clone();
            axum::serve(
                listener,
                self.router()
                    .into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stop.wait().await })
            .await?;
        }
        if let Some((sender, dispatcher, beating)) = worker {
            sender.await?;
            dispatcher.await?;
            // Beating until here: no one frees claims that are still being finished.
            beating.stop().await;
        }
        // After the worker: nothing is submitted while we unbind.
        let _ = draining.await;
        self.carriers.stop().await;
        Ok(())
    }
}
