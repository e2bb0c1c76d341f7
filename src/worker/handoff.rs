//! Messages handed from this node's API to this node's worker without a claim.
//!
//! A message the API commits is leased, in the same insert, to the worker
//! running beside it, which takes it from memory: no claim statement, no second
//! version of the row, and no wait for the next claim. Only while that worker
//! runs and has room (a bounded count, so that nothing waits in memory near its
//! lease's end); otherwise the message is queued for any worker's claim, as
//! all retries are. Nothing is lost if the node dies: the row is committed,
//! leased to a worker whose heartbeat stops, and freed for others' claims as a
//! claimed message is (`LeaseStore::free_silent`, or the lease's end).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::store::{ClaimedMessage, Lease, NewMessage};

/// The desk between the two; open while a worker takes from it.
#[derive(Default)]
pub struct Handoff {
    desk: Mutex<Option<Desk>>,
}

struct Desk {
    token: String,
    lease_ms: i64,
    /// Messages leased and not yet finished, at most its permits.
    room: Arc<Semaphore>,
    waiting: VecDeque<Handed>,
}

/// A message leased to the worker at the desk, with its place in the room
/// (given back when this is dropped: once the worker has finished it, or if
/// the message was never committed).
pub struct Handed {
    message: ClaimedMessage,
    token: String,
    room: OwnedSemaphorePermit,
}

impl Handed {
    /// The message, and its place in the room (to drop once it is finished).
    pub fn into_parts(self) -> (ClaimedMessage, OwnedSemaphorePermit) {
        (self.message, self.room)
    }
}

impl Handoff {
    /// Leases `m` to the worker at the desk, if one is there with room: the
    /// insert then writes the lease. Give what this returns to `hand` once
    /// `m` is committed; drop it if it was not.
    pub fn lease(&self, m: &mut NewMessage) -> Option<Handed> {
        let desk = self.desk.lock().expect("handoff lock");
        let desk = desk.as_ref()?;
        let room = desk.room.clone().try_acquire_owned().ok()?;
        m.lease = Some(Lease {
            token: desk.token.clone(),
            until: m.created_at.plus_ms(desk.lease_ms),
        });
        Some(Handed {
            message: ClaimedMessage::from(&*m),
            token: desk.token.clone(),
            room,
        })
    }

    /// `lease` for each of a group's messages, in order.
    pub fn lease_each<'a>(
        &self,
        messages: impl IntoIterator<Item = &'a mut NewMessage>,
    ) -> Vec<Option<Handed>> {
        messages.into_iter().map(|m| self.lease(m)).collect()
    }

    /// `hand` for each leased message whose insert `inserted` says went in,
    /// in the order `lease_each` returned them; the others are dropped.
    pub fn hand_inserted(
        &self,
        leased: Vec<Option<Handed>>,
        inserted: impl IntoIterator<Item = bool>,
    ) {
        for (handed, inserted) in leased.into_iter().zip(inserted) {
            if let (Some(handed), true) = (handed, inserted) {
                self.hand(handed);
            }
        }
    }

    /// Gives a committed message to its worker. If that worker has left the
    /// desk meanwhile, the message waits out its lease (or its holder's
    /// silence) and is claimed like any other.
    pub fn hand(&self, handed: Handed) {
        let mut desk = self.desk.lock().expect("handoff lock");
        if let Some(desk) = desk.as_mut().filter(|d| d.token == handed.token) {
            desk.waiting.push_back(handed);
        }
    }

    /// Opens the desk to the worker with `token`, for at most `room` messages
    /// at a time, unless another worker holds it; true if this one does.
    pub fn open(&self, token: &str, room: usize, lease_ms: i64) -> bool {
        let mut desk = self.desk.lock().expect("handoff lock");
        if desk.is_some() {
            return false;
        }
        *desk = Some(Desk {
            token: token.to_string(),
            lease_ms,
            room: Arc::new(Semaphore::new(room)),
            waiting: VecDeque::new(),
        });
        true
    }

    /// Closes the desk, if `token` holds it: what still waits is dropped (its
    /// leases are given back with the worker's others).
    pub fn close(&self, token: &str) {
        let mut desk = self.desk.lock().expect("handoff lock");
        if desk.as_ref().is_some_and(|d| d.token == token) {
            *desk = None;
        }
    }

    /// Up to `max` of the messages waiting for the worker with `token`, oldest first.
    pub fn take(&self, token: &str, max: usize) -> Vec<Handed> {
        let mut desk = self.desk.lock().expect("handoff lock");
        match desk.as_mut().filter(|d| d.token == token) {
            Some(desk) => {
                let n = max.min(desk.waiting.len());
                desk.waiting.drain(..n).collect()
            }
            None => Vec::new(),
        }
    }
}
