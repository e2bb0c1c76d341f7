//! An SMPP 3.4 transceiver on rusmpp's PDUs and codec: a supervisor that binds
//! and rebinds with exponential backoff, a window of outstanding submit_sm (a
//! semaphore), a rate ceiling, and deliver_sm receipts written durably before
//! they are acknowledged. While the carrier is not bound, `submit` fails as
//! transient and messages wait in the durable queue.
//! (Over 400 lines: the supervisor, window and pacing share one session's state.)

mod receipt;
mod session;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use rusmpp::pdus::{BindTransceiver, DeliverSm, DeliverSmResp, SubmitSm};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, InterfaceVersion, Npi, RegisteredDelivery, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use receipt::{Deliver, parse_deliver, status_name};
use session::{Session, SessionError};

use super::{Accepted, Carrier, CarrierError, CarrierState, CarrierStatus, Counters, normalize_id};
use crate::config::{CarrierConfig, IdBase};
use crate::domain::Mode;
use crate::domain::encoding::{Encoding, encode_parts};
use crate::domain::ids::new_id;
use crate::domain::message::MessageStatus;
use crate::infra::clock::Clock;
use crate::receipts::ReceiptSink;
use crate::store::{CarrierReceipt, ClaimedMessage, InboundMessage, Store};

/// How long submissions pause after the SMSC asks us to slow down.
const THROTTLE_PAUSE: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a message waits for a window slot and its turn under the rate
/// ceiling before it goes back to the queue (leases last at least a minute by default).
const MAX_TURN_WAIT: Duration = Duration::from_secs(20);
/// tokio's timers fire on millisecond ticks.
const TIMER_RESOLUTION: Duration = Duration::from_millis(1);

struct Settings {
    address: String,
    system_id: String,
    password: String,
    system_type: String,
    window: u32,
    interval: Duration,
    enquire_link: Option<Duration>,
    response_timeout: Duration,
    reconnect_max: Duration,
    submit_id_base: IdBase,
    receipt_id_base: IdBase,
}

pub struct SmppCarrier {
    name: String,
    cfg: Settings,
    store: Arc<dyn Store>,
    clock: Clock,
    sink: ReceiptSink,
    /// The bound session, if there is one.
    session: RwLock<Option<Session>>,
    state: AtomicU8,
    window: Semaphore,
    /// The earliest time the next part may go (the rate ceiling).
    next_slot: Mutex<Instant>,
    throttled_until: Mutex<Option<Instant>>,
    counters: Counters,
    stop: watch::Sender<bool>,
    /// Set on shutdown: submissions waiting for a turn give up.
    draining: AtomicBool,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn text<const N: usize>(s: &str) -> Result<COctetString<1, N>, BindError> {
    COctetString::from_str(s).map_err(|e| BindError::Connect(e.to_string()))
}

enum BindError {
    /// The SMSC answered the bind with an error status.
    Refused(String),
    Connect(String),
}

impl SmppCarrier {
    pub fn new(c: &CarrierConfig, store: Arc<dyn Store>, clock: Clock, sink: ReceiptSink) -> Self {
        SmppCarrier {
            name: c.name.clone(),
            cfg: Settings {
                address: format!(
                    "{}:{}",
                    c.host.as_deref().unwrap_or_default(),
                    c.port.unwrap_or_default()
                ),
                system_id: c.system_id.clone().unwrap_or_default(),
                password: c.password.expose().to_string(),
                system_type: c.system_type.clone(),
                window: c.window,
                interval: Duration::from_secs_f64(1.0 / f64::from(c.max_per_second)),
                enquire_link: (c.enquire_link_seconds > 0)
                    .then(|| Duration::from_secs(c.enquire_link_seconds)),
                response_timeout: Duration::from_secs(c.response_timeout_seconds),
                reconnect_max: Duration::from_secs(c.reconnect_max_seconds),
                submit_id_base: c.submit_id_base,
                receipt_id_base: c.receipt_id_base,
            },
            store,
            clock,
            sink,
            session: RwLock::new(None),
            state: AtomicU8::new(CarrierState::Connecting as u8),
            window: Semaphore::new(c.window as usize),
            next_slot: Mutex::new(Instant::now()),
            throttled_until: Mutex::new(None),
            counters: Counters::default(),
            stop: watch::channel(false).0,
            draining: AtomicBool::new(false),
            task: Mutex::new(None),
        }
    }

    /// Starts the supervisor that keeps a session bound.
    pub fn start(self: &Arc<Self>) {
        let me = self.clone();
        *self.task.lock().expect("task lock") = Some(tokio::spawn(me.supervise()));
    }

    /// Unbinds gracefully and waits for the supervisor to end.
    /// Lets what is in the window finish; nothing new goes in.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let task = self.task.lock().expect("task lock").take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    fn set_state(&self, s: CarrierState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    async fn supervise(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        let mut backoff = Duration::from_secs(1);
        while !*stop.borrow() {
            self.set_state(CarrierState::Connecting);
            match self.bind().await {
                Ok((session, events)) => {
                    backoff = Duration::from_secs(1);
                    *self.session.write().expect("session lock") = Some(session.clone());
                    self.set_state(CarrierState::Bound);
                    tracing::info!(carrier = %self.name, "SMPP session bound");
                    let stopping = self.serve(&session, events, &mut stop).await;
                    *self.session.write().expect("session lock") = None;
                    if stopping {
                        self.unbind(&session).await;
                        break;
                    }
                    self.set_state(CarrierState::Connecting);
                    tracing::warn!(carrier = %self.name, "SMPP session lost; messages wait in the queue while we rebind");
                }
                Err(BindError::Refused(status)) => {
                    self.set_state(CarrierState::Down);
                    self.counters.error(&format!("bind {status}"));
                    tracing::error!(
                        carrier = %self.name, %status,
                        "the SMSC refused our bind: check system_id and password; messages wait in the queue"
                    );
                }
                Err(BindError::Connect(error)) => {
                    self.set_state(CarrierState::Down);
                    self.counters.error("connect");
                    tracing::warn!(carrier = %self.name, %error, "cannot reach the SMSC; messages wait in the queue");
                }
            }
            let wait = backoff.mul_f64(rand::rng().random_range(0.8..1.2));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
            backoff = (backoff * 2).min(self.cfg.reconnect_max);
        }
        self.set_state(CarrierState::Down);
    }

    async fn bind(&self) -> Result<(Session, mpsc::UnboundedReceiver<Command>), BindError> {
        let connect = tokio::net::TcpStream::connect(&self.cfg.address);
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(BindError::Connect(e.to_string())),
            Err(_) => return Err(BindError::Connect("connection timed out".into())),
        };
        // Without it, Nagle and delayed ACKs cap request/response at tens per second.
        stream
            .set_nodelay(true)
            .map_err(|e| BindError::Connect(e.to_string()))?;
        let (session, incoming) =
            Session::start(stream, self.cfg.enquire_link, self.cfg.response_timeout);
        let bind = BindTransceiver::builder()
            .system_id(text(&self.cfg.system_id)?)
            .password(text(&self.cfg.password)?)
            .system_type(text(&self.cfg.system_type)?)
            .interface_version(InterfaceVersion::Smpp3_4)
            .addr_ton(Ton::Unknown)
            .addr_npi(Npi::Unknown)
            .address_range(COctetString::empty())
            .build();
        let answer = session.request(bind, self.cfg.response_timeout).await;
        match answer {
            Ok(resp) if resp.status() == CommandStatus::EsmeRok => Ok((session, incoming)),
            Ok(resp) => {
                session.close();
                Err(BindError::Refused(status_name(resp.status())))
            }
            Err(e) => {
                session.close();
                Err(BindError::Connect(e.to_string()))
            }
        }
    }

    /// Serves one bound session; true when it ended because we are stopping.
    async fn serve(
        self: &Arc<Self>,
        session: &Session,
        mut incoming: mpsc::UnboundedReceiver<Command>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        loop {
            tokio::select! {
                // The only change there is: we are stopping.
                _ = stop.changed() => return true,
                command = incoming.recv() => {
                    let Some(command) = command else { return false };
                    let seq = command.sequence_number();
                    match command.pdu() {
                        Some(Pdu::DeliverSm(d)) => {
                            let me = self.clone();
                            let (session, d) = (session.clone(), d.clone());
                            tokio::spawn(async move { me.deliver(&session, seq, &d).await });
                        }
                        Some(Pdu::Unbind) => {
                            // Answer, then close: the supervisor binds again.
                            session.respond(seq, CommandStatus::EsmeRok, Pdu::UnbindResp);
                            session.close();
                            tracing::warn!(carrier = %self.name, "the SMSC unbound us");
                        }
                        // It takes no response.
                        Some(Pdu::AlertNotification(_)) => {}
                        _ => session.respond(seq, CommandStatus::EsmeRinvcmdid, Pdu::GenericNack),
                    }
                }
            }
        }
    }

    async fn unbind(&self, session: &Session) {
        match session.request(Pdu::Unbind, Duration::from_secs(5)).await {
            Ok(_) => tracing::info!(carrier = %self.name, "SMPP session unbound"),
            Err(_) => tracing::warn!(carrier = %self.name, "the SMSC did not answer our unbind"),
        }
        session.close();
    }

    /// Records a receipt or an inbound message, then acknowledges it: the SMSC
    /// redelivers anything we answer with an error or never answer.
    async fn deliver(&self, session: &Session, seq: u32, d: &DeliverSm) {
        let recorded = match parse_deliver(d) {
            Deliver::Receipt(r) => {
                self.counters.received();
                match r.status() {
                    Some(status) => {
                        let receipt = CarrierReceipt {
                            carrier: self.name.clone(),
                            carrier_message_id: normalize_id(
                                &r.id,
                                if r.from_tlv {
                                    self.cfg.submit_id_base
                                } else {
                                    self.cfg.receipt_id_base
                                },
                            ),
                            status,
                            error: (status != MessageStatus::Delivered).then(|| r.error()),
                            received_at: self.clock.now(),
                        };
                        self.sink.record(receipt).await
                    }
                    None => Ok(()), // ACCEPTD, ENROUTE: not final, nothing changes
                }
            }
            Deliver::Acknowledgement => Ok(()),
            Deliver::Unreadable => {
                self.counters.error("unreadable receipt");
                tracing::warn!(carrier = %self.name, "a delivery receipt without an id was ignored");
                Ok(())
            }
            Deliver::Mobile { from, to, body } => {
                let msg = InboundMessage {
                    id: new_id("mo"),
                    carrier: self.name.clone(),
                    from,
                    to,
                    body: Some(body),
                    received_at: self.clock.now(),
                    mode: Mode::Live,
                    tenant: None,
                };
                self.store
                    .record_inbound(&msg)
                    .await
                    .map(drop)
                    .map_err(Into::into)
            }
        };
        let status = match recorded {
            Ok(()) => CommandStatus::EsmeRok,
            Err(e) => {
                tracing::error!(carrier = %self.name, error = %e, "recording a deliver_sm failed; the SMSC will resend it");
                CommandStatus::EsmeRxTAppn
            }
        };
        session.respond(seq, status, DeliverSmResp::default());
    }

    /// Waits for this part's turn under the rate ceiling. A turn less than the
    /// timer's resolution away goes at once: sleeping for it would wait for the
    /// next millisecond tick, and a burst of parts freed by one read of
    /// responses would each lose up to a millisecond of the window. The
    /// ceiling still holds over any span longer than that millisecond.
    async fn pace(&self) {
        let now = Instant::now();
        let slot = {
            let mut next = self.next_slot.lock().expect("pace lock");
            let slot = (*next).max(now);
            *next = slot + self.cfg.interval;
            slot
        };
        if slot > now + TIMER_RESOLUTION {
            tokio::time::sleep_until(slot).await;
        }
    }

    fn throttled_for(&self) -> Option<Duration> {
        let until = (*self.throttled_until.lock().expect("throttle lock"))?;
        until.checked_duration_since(Instant::now())
    }

    /// What an error status on submit_sm_resp means for the message.
    fn classify(&self, status: CommandStatus) -> CarrierError {
        let name = status_name(status);
        self.counters.error(&name);
        match u32::from(status) {
            // ESME_RMSGQFUL, ESME_RTHROTTLED: slow down.
            0x14 | 0x58 => {
                *self.throttled_until.lock().expect("throttle lock") =
                    Some(Instant::now() + THROTTLE_PAUSE);
                CarrierError::Throttled {
                    retry_after: Some(THROTTLE_PAUSE),
                }
            }
            // Bind state, system errors, temporary application errors.
            0x04 | 0x05 | 0x08 | 0x0D | 0x0E | 0x0F | 0x45 | 0x64 | 0xFF => {
                CarrierError::Transient(format!("the SMSC answered {name}"))
            }
            _ => CarrierError::Permanent {
                code: name.clone(),
                message: format!("the SMSC refused the message: {name}"),
            },
        }
    }
}

#[async_trait]
impl Carrier for SmppCarrier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn submit(&self, msg: &ClaimedMessage) -> Result<Accepted, CarrierError> {
        if let Some(wait) = self.throttled_for() {
            return Err(CarrierError::Throttled {
                retry_after: Some(wait),
            });
        }
        let session = self.session.read().expect("session lock").clone();
        let Some(session) = session else {
            return Err(CarrierError::Transient(format!(
                "carrier {} is not bound",
                self.name
            )));
        };
        let parts = submits(msg).map_err(|e| CarrierError::Permanent {
            code: "unsendable".into(),
            message: e,
        })?;
        let total = parts.len();
        let mut ids = Vec::with_capacity(total);
        for sm in parts {
            let turn = async {
                let permit = self
                    .window
                    .acquire()
                    .await
                    .expect("the window never closes");
                self.pace().await;
                permit
            };
            // Nothing sent yet: give up waiting long before the worker's lease
            // ends, or another worker could take the message and send it too.
            let permit = match ids.is_empty() {
                true => match tokio::time::timeout(MAX_TURN_WAIT, turn).await {
                    Ok(p) => p,
                    Err(_) => {
                        return Err(CarrierError::Transient(
                            "no room in the SMPP window in time".into(),
                        ));
                    }
                },
                false => turn.await,
            };
            // Shutting down, and nothing of this message sent: it stays
            // queued for the next node, instead of holding up the stop.
            if ids.is_empty() && self.draining.load(Ordering::SeqCst) {
                return Err(CarrierError::Stopping);
            }
            self.counters.submitted();
            let answer = session.request(sm, self.cfg.response_timeout).await;
            drop(permit);
            let failure = match answer {
                Err(e) => {
                    self.counters.error(match e {
                        SessionError::Closed => "connection",
                        SessionError::Timeout => "timeout",
                    });
                    CarrierError::Transient(format!("SMPP: {e}"))
                }
                Ok(resp) => match (resp.status(), resp.pdu()) {
                    (CommandStatus::EsmeRok, Some(Pdu::SubmitSmResp(r))) => {
                        ids.push(normalize_id(
                            r.message_id().as_str(),
                            self.cfg.submit_id_base,
                        ));
                        continue;
                    }
                    (CommandStatus::EsmeRok, _) => {
                        self.counters.error("unexpected response");
                        CarrierError::Transient("SMPP: not a submit_sm_resp".into())
                    }
                    (status, _) => self.classify(status),
                },
            };
            if ids.is_empty() {
                return Err(failure);
            }
            // Some parts are on their way: sending again would repeat them on the handset.
            return Err(CarrierError::Permanent {
                code: crate::domain::message::PARTLY_SENT.into(),
                message: format!(
                    "{} of {total} parts were accepted, then: {failure}",
                    ids.len()
                ),
            });
        }
        Ok(Accepted {
            carrier_message_ids: ids,
        })
    }

    /// Asked for every message of a route with a fallback: no snapshot of the counters.
    fn available(&self) -> bool {
        CarrierState::from_u8(self.state.load(Ordering::Relaxed)) == CarrierState::Bound
            && self.throttled_for().is_none()
    }

    fn status(&self) -> CarrierStatus {
        let (submits, receipts, errors) = self.counters.snapshot();
        CarrierStatus {
            name: self.name.clone(),
            kind: "smpp",
            state: CarrierState::from_u8(self.state.load(Ordering::Relaxed)),
            throttled: self.throttled_for().is_some(),
            window: self.cfg.window,
            window_in_use: self.cfg.window - self.window.available_permits() as u32,
            submits,
            receipts,
            errors,
        }
    }
}

/// The submit_sm PDUs for a message: one per part, concatenated parts with a
/// UDH (8-bit reference, total, sequence), requesting a final receipt.
fn submits(msg: &ClaimedMessage) -> Result<Vec<SubmitSm>, String> {
    let (source_ton, source_npi, source) = match msg.from.strip_prefix('+') {
        Some(digits) => (Ton::International, Npi::Isdn, digits),
        None => (Ton::Alphanumeric, Npi::Unknown, msg.from.as_str()),
    };
    let destination = msg.to.strip_prefix('+').unwrap_or(&msg.to);
    let data_coding = match msg.encoding {
        Encoding::Gsm7 => DataCoding::McSpecific,
        Encoding::Ucs2 => DataCoding::Ucs2,
    };
    let payloads = encode_parts(&msg.body, msg.encoding);
    let total = payloads.len();
    let total_u8 = u8::try_from(total).map_err(|_| "too many parts".to_string())?;
    let reference: u8 = rand::random();
    let address = |s: &str| COctetString::from_str(s).map_err(|e| format!("address: {e}"));
    let (source, destination) = (address(source)?, address(destination)?);
    payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| {
            let (esm_class, short_message) = if total == 1 {
                (EsmClass::default(), payload)
            } else {
                let udh = [0x05, 0x00, 0x03, reference, total_u8, i as u8 + 1];
                (
                    EsmClass::default().with_udhi_indicator(),
                    [&udh[..], &payload].concat(),
                )
            };
            Ok(SubmitSm::builder()
                .source_addr_ton(source_ton)
                .source_addr_npi(source_npi)
                .source_addr(source.clone())
                .dest_addr_ton(Ton::International)
                .dest_addr_npi(Npi::Isdn)
                .destination_addr(destination.clone())
                .esm_class(esm_class)
                // Final receipt on success or failure.
                .registered_delivery(RegisteredDelivery::from(0x01))
                .data_coding(data_coding)
                .short_message(
                    OctetString::from_vec(short_message).map_err(|e| format!("body: {e}"))?,
                )
                .build())
        })
        .collect()
}
