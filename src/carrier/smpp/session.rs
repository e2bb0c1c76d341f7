//! One SMPP session over TCP, on rusmpp's codec: requests matched to their
//! responses by sequence number, writes batched (everything queued is written
//! before one flush), enquire_link keep-alive, and the peer's requests handed
//! to the caller. We use our own session instead of rusmppc's client: under
//! a burst of more than five queued requests its connection future returned
//! Pending without a wake-up, and submissions stalled until the next keep-alive.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Encoder, FramedRead};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    #[error("the SMPP session is closed")]
    Closed,
    #[error("no response from the SMSC in time")]
    Timeout,
}

type Waiters = Arc<Mutex<HashMap<u32, oneshot::Sender<Command>>>>;

#[derive(Clone)]
pub struct Session {
    out: mpsc::UnboundedSender<Command>,
    waiters: Waiters,
    sequence: Arc<AtomicU32>,
    closed: CancellationToken,
}

impl Session {
    /// Starts the session's reader, writer and keep-alive. The peer's requests
    /// (deliver_sm, unbind, ...) arrive on the returned channel, which ends
    /// when the session closes.
    pub fn start(
        stream: TcpStream,
        enquire_link: Option<Duration>,
        response_timeout: Duration,
    ) -> (Session, mpsc::UnboundedReceiver<Command>) {
        let (read_half, mut write_half) = stream.into_split();
        let mut source = FramedRead::new(read_half, CommandCodec::new());
        let (out, mut queue) = mpsc::unbounded_channel::<Command>();
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        let session = Session {
            out,
            waiters: Arc::default(),
            sequence: Arc::new(AtomicU32::new(1)),
            closed: CancellationToken::new(),
        };

        let closed = session.closed.clone();
        tokio::spawn(async move {
            let mut codec = CommandCodec::new();
            let mut buf = BytesMut::new();
            loop {
                let first = tokio::select! {
                    // Closing: what is already queued (an unbind_resp, say) still goes out.
                    _ = closed.cancelled() => match queue.try_recv() {
                        Ok(c) => c,
                        Err(_) => break,
                    },
                    next = queue.recv() => match next {
                        Some(c) => c,
                        None => break,
                    },
                };
                // Everything already queued goes out in one write.
                let mut encoded = codec.encode(&first, &mut buf);
                while encoded.is_ok() {
                    match queue.try_recv() {
                        Ok(more) => encoded = codec.encode(&more, &mut buf),
                        Err(_) => break,
                    }
                }
                if let Err(e) = encoded {
                    tracing::warn!(error = %e, "an SMPP PDU could not be encoded; closing the session");
                    break;
                }
                if write_half.write_all(&buf).await.is_err() {
                    break;
                }
                buf.clear();
            }
            closed.cancel();
        });

        let (me, closed) = (session.clone(), session.closed.clone());
        tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    _ = closed.cancelled() => break,
                    frame = source.next() => frame,
                };
                let command = match frame {
                    Some(Ok(c)) => c,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "unreadable SMPP PDU; closing the session");
                        break;
                    }
                    None => break,
                };
                if command.id().is_response() {
                    let waiter = me
                        .waiters
                        .lock()
                        .expect("waiters")
                        .remove(&command.sequence_number());
                    if let Some(w) = waiter {
                        let _ = w.send(command);
                    }
                } else if matches!(command.pdu(), Some(Pdu::EnquireLink)) {
                    me.respond(
                        command.sequence_number(),
                        CommandStatus::EsmeRok,
                        Pdu::EnquireLinkResp,
                    );
                } else if incoming_tx.send(command).is_err() {
                    break;
                }
            }
            closed.cancel();
            // Whoever still waits for a response learns the session is gone.
            me.waiters.lock().expect("waiters").clear();
        });

        if let Some(every) = enquire_link {
            let me = session.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = me.closed.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    if me
                        .request(Pdu::EnquireLink, response_timeout)
                        .await
                        .is_err()
                    {
                        tracing::warn!("the SMSC did not answer enquire_link; closing the session");
                        me.close();
                        break;
                    }
                }
            });
        }
        (session, incoming)
    }

    /// Sends a request and waits for its response (whatever its status).
    pub async fn request(
        &self,
        pdu: impl Into<Pdu>,
        timeout: Duration,
    ) -> Result<Command, SessionError> {
        if self.closed.is_cancelled() {
            return Err(SessionError::Closed);
        }
        let seq = self.next_sequence();
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().expect("waiters").insert(seq, tx);
        if self
            .out
            .send(Command::new(CommandStatus::EsmeRok, seq, pdu))
            .is_err()
        {
            self.waiters.lock().expect("waiters").remove(&seq);
            return Err(SessionError::Closed);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(SessionError::Closed),
            Err(_) => {
                self.waiters.lock().expect("waiters").remove(&seq);
                Err(SessionError::Timeout)
            }
        }
    }

    /// Answers one of the peer's requests.
    pub fn respond(&self, seq: u32, status: CommandStatus, pdu: impl Into<Pdu>) {
        let _ = self.out.send(Command::new(status, seq, pdu));
    }

    /// Closes the TCP connection (the reader and writer stop).
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Sequence numbers run 1..=0x7FFFFFFF, then wrap.
    fn next_sequence(&self) -> u32 {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        n.wrapping_sub(1) % 0x7FFF_FFFF + 1
    }
}
