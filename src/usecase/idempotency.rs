//! `Idempotency-Key`: the same key and request within 24 h get the first
//! answer and cause nothing again; the same key with another request is 422.
//! Every operation that creates something runs through [`Idempotent`]:
//! `earlier` before anything is counted or charged, `record` written in the
//! transaction of the effect, `answer` after it.

use super::error::{ApiError, ProblemCode};
use super::limits::cap_reached;
use crate::domain::ids::TenantId;
use crate::store::{CreateOutcome, IdempotencyRecord, Store, StoredResponse};

/// A request's key and the digest of its path and canonical body, if it has a key.
#[derive(Debug, Clone, Default)]
pub struct Idempotent(Option<(String, String)>);

/// What to answer: a status and a JSON body, perhaps the replay of an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub replayed: bool,
}

impl Idempotent {
    pub fn new(key: Option<String>, request_hash: Option<String>) -> Self {
        Idempotent(key.zip(request_hash))
    }

    /// The answer to a repeat of an earlier request, if this is one.
    pub async fn earlier(
        &self,
        store: &dyn Store,
        tenant_id: &TenantId,
    ) -> Result<Option<Answer>, ApiError> {
        let Some((key, _)) = &self.0 else {
            return Ok(None);
        };
        match store.find_idempotency(tenant_id, key).await? {
            Some(stored) => self.replay(stored).map(Some),
            None => Ok(None),
        }
    }

    /// The record to write with the effect: the answer about to be given.
    pub fn record(&self, status: u16, body: &str) -> Option<IdempotencyRecord> {
        self.0
            .as_ref()
            .map(|(key, request_hash)| IdempotencyRecord {
                key: key.clone(),
                response: StoredResponse {
                    request_hash: request_hash.clone(),
                    status,
                    body: body.to_string(),
                },
            })
    }

    /// The answer once the effect was written, or found written by a request
    /// with this key that was faster.
    pub fn answer(
        &self,
        outcome: CreateOutcome,
        status: u16,
        body: String,
    ) -> Result<Answer, ApiError> {
        match outcome {
            CreateOutcome::Created => Ok(Answer {
                status,
                body,
                replayed: false,
            }),
            CreateOutcome::Existing(stored) => self.replay(stored),
            CreateOutcome::OverCap => Err(cap_reached()),
            CreateOutcome::NumberTaken => Err(super::numbers::unavailable()),
        }
    }

    fn replay(&self, stored: StoredResponse) -> Result<Answer, ApiError> {
        let same = self
            .0
            .as_ref()
            .is_some_and(|(_, hash)| *hash == stored.request_hash);
        if !same {
            return Err(ApiError::new(
                ProblemCode::IdempotencyKeyReused,
                "this Idempotency-Key was used with a different request",
            )
            .param("Idempotency-Key"));
        }
        Ok(Answer {
            status: stored.status,
            body: stored.body,
            replayed: true,
        })
    }
}
