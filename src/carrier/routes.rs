//! The configured carriers and which one takes a message.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Carrier, CarrierStatus, HttpCarrier, Sandbox, SmppCarrier};
use crate::config::{CarrierKind, Config};
use crate::domain::Mode;
use crate::infra::clock::Clock;
use crate::receipts::ReceiptSink;
use crate::store::Store;

/// The name test keys' messages are recorded under.
pub const SANDBOX: &str = "sandbox";

struct Route {
    primary: Arc<dyn Carrier>,
    fallback: Option<Arc<dyn Carrier>>,
}

impl Route {
    /// The primary, unless it is down or throttling and the fallback is not.
    fn pick(&self) -> &Arc<dyn Carrier> {
        match &self.fallback {
            Some(f) if !self.primary.available() && f.available() => f,
            _ => &self.primary,
        }
    }
}

pub struct Carriers {
    /// Test keys always go here.
    sandbox: Arc<dyn Carrier>,
    /// The configured carriers, in configuration order.
    configured: Vec<Arc<dyn Carrier>>,
    smpp: Vec<Arc<SmppCarrier>>,
    http: HashMap<String, Arc<HttpCarrier>>,
    default: Route,
    /// Longest prefix first.
    prefixes: Vec<(String, Route)>,
    started: AtomicBool,
}

impl Carriers {
    pub fn new(config: &Config, store: Arc<dyn Store>, clock: Clock, sink: ReceiptSink) -> Self {
        let delay = Duration::from_millis(config.sandbox.receipt_delay_ms);
        let sandbox = |name: &str| -> Arc<Sandbox> {
            Arc::new(Sandbox::new(name, store.clone(), clock.clone(), delay))
        };
        let mut by_name: HashMap<String, Arc<dyn Carrier>> = HashMap::new();
        let mut configured = Vec::new();
        let mut smpp = Vec::new();
        let mut http = HashMap::new();
        for c in &config.carriers {
            let carrier: Arc<dyn Carrier> = match c.kind {
                CarrierKind::Sandbox => sandbox(&c.name),
                CarrierKind::Smpp => {
                    let s = Arc::new(SmppCarrier::new(
                        c,
                        store.clone(),
                        clock.clone(),
                        sink.clone(),
                    ));
                    smpp.push(s.clone());
                    s
                }
                CarrierKind::Http => {
                    let h = Arc::new(HttpCarrier::new(c));
                    http.insert(c.name.clone(), h.clone());
                    h
                }
            };
            by_name.insert(c.name.clone(), carrier.clone());
            configured.push(carrier);
        }
        let test_sandbox = by_name
            .get(SANDBOX)
            .cloned()
            .unwrap_or_else(|| sandbox(SANDBOX));
        // Config::check has made sure every name resolves.
        let get = |name: &str| by_name[name].clone();
        let route = |carrier: &str, fallback: Option<&str>| Route {
            primary: get(carrier),
            fallback: fallback.map(get),
        };
        let routing = &config.routing;
        let mut prefixes: Vec<(String, Route)> = routing
            .prefixes
            .iter()
            .map(|(p, r)| (p.clone(), route(r.carrier(), r.fallback())))
            .collect();
        prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Carriers {
            sandbox: test_sandbox,
            default: route(&routing.default, routing.fallback.as_deref()),
            configured,
            smpp,
            http,
            prefixes,
            started: AtomicBool::new(false),
        }
    }

    /// Every message, test or live, to one carrier: for tests and tools.
    pub fn only(carrier: Arc<dyn Carrier>) -> Self {
        let route = || Route {
            primary: carrier.clone(),
            fallback: None,
        };
        Carriers {
            sandbox: carrier.clone(),
            default: route(),
            configured: vec![carrier.clone()],
            smpp: Vec::new(),
            http: HashMap::new(),
            prefixes: Vec::new(),
            started: AtomicBool::new(false),
        }
    }

    /// Connects the SMPP carriers (once; later calls do nothing).
    pub fn start(&self) {
        if !self.started.swap(true, Ordering::SeqCst) {
            for s in &self.smpp {
                s.start();
            }
        }
    }

    /// From now on nothing new enters an SMPP window (what is in it drains).
    pub fn drain(&self) {
        for s in &self.smpp {
            s.drain();
        }
    }

    /// Unbinds the SMPP carriers and waits for them to close.
    pub async fn stop(&self) {
        for s in &self.smpp {
            s.stop().await;
        }
    }

    /// The carrier for a message to `to` (E.164) sent with a key of `mode`.
    pub fn for_message(&self, mode: Mode, to: &str) -> &Arc<dyn Carrier> {
        if mode == Mode::Test {
            return &self.sandbox;
        }
        self.prefixes
            .iter()
            .find(|(prefix, _)| to.starts_with(prefix.as_str()))
            .map_or(&self.default, |(_, route)| route)
            .pick()
    }

    pub fn http(&self, name: &str) -> Option<&Arc<HttpCarrier>> {
        self.http.get(name)
    }

    /// Every configured carrier's state and counters.
    pub fn statuses(&self) -> Vec<CarrierStatus> {
        self.configured.iter().map(|c| c.status()).collect()
    }
}
