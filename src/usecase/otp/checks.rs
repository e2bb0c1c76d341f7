//! Code checks, decided in groups: a verification is usually taken from this
//! process's cache, not read, and a group's changes are written in one
//! statement, each row only if it is still as it was taken.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::domain::ids::{TenantId, VerificationId};
use crate::domain::message::Timestamp;
use crate::domain::otp::HashKey;
use crate::domain::verification::{StoredVerification, Verdict};
use crate::infra::batch::Batcher;
use crate::store::{CheckedPair, SharedError, Store, StoreError};

/// One code check as asked (the code as typed: never logged, so no Debug).
pub struct CodeCheck {
    pub tenant_id: TenantId,
    pub id: VerificationId,
    pub code: String,
    pub now: Timestamp,
}

/// Code checks, decided and committed in groups.
pub type CheckWriter = Batcher<CodeCheck, Verdict, SharedError>;

/// Checks codes against their verifications under `key`.
pub fn check_writer(
    store: Arc<dyn Store>,
    key: HashKey,
    cache: Arc<VerificationCache>,
) -> CheckWriter {
    let key = Arc::new(key);
    Batcher::start(store.group_limit(), move |batch: Vec<CodeCheck>| {
        let (store, key, cache) = (store.clone(), key.clone(), cache.clone());
        async move {
            let judge = |v: &mut StoredVerification, c: &CodeCheck| {
                v.check(&c.code, c.now, |id, code, hash| {
                    key.code_matches(id, code, hash)
                })
            };
            decide(&*store, &batch, judge, &cache)
                .await
                .map_err(Arc::new)
        }
    })
}

/// How many times a group of checks is decided again when its verifications change meanwhile.
const CHECK_ROUNDS: usize = 8;

/// Takes the checked verifications from `cache` or reads them, lets `judge`
/// decide each check in arrival order (a second check of one verification
/// sees the first one's effect), then writes what changed. Checks whose
/// verification changed meanwhile (another process, a resend) are decided
/// again on a fresh read.
async fn decide(
    store: &dyn Store,
    checks: &[CodeCheck],
    judge: impl Fn(&mut StoredVerification, &CodeCheck) -> Verdict,
    cache: &VerificationCache,
) -> crate::store::Result<Vec<Verdict>> {
    let mut verdicts: Vec<Option<Verdict>> = vec![None; checks.len()];
    let mut todo: Vec<usize> = (0..checks.len()).collect();
    for _ in 0..CHECK_ROUNDS {
        if todo.is_empty() {
            break;
        }
        // Each verification as taken, and as the checks leave it.
        let mut found: HashMap<VerificationId, (StoredVerification, StoredVerification)> =
            HashMap::new();
        let mut missing: Vec<&VerificationId> = Vec::new();
        for &i in &todo {
            let id = &checks[i].id;
            if found.contains_key(id) || missing.contains(&id) {
                continue;
            }
            match cache.get(id) {
                Some(v) => {
                    found.insert(id.clone(), (v.clone(), v));
                }
                None => missing.push(id),
            }
        }
        if !missing.is_empty() {
            for v in store.get_verifications(&missing).await? {
                found.insert(v.id.clone(), (v.clone(), v));
            }
        }
        for &i in &todo {
            let c = &checks[i];
            verdicts[i] = Some(match found.get_mut(&c.id) {
                Some((_, v)) if v.tenant_id == c.tenant_id => judge(v, c),
                _ => Verdict::NotFound,
            });
        }
        // A check changes a verification's status or attempts, nothing else.
        let moved = |was: &StoredVerification, v: &StoredVerification| {
            (was.status, was.attempts) != (v.status, v.attempts)
        };
        let changed: Vec<CheckedPair> = found
            .values()
            .filter(|(was, v)| moved(was, v))
            .map(|(was, now)| CheckedPair { was, now })
            .collect();
        let written = store.write_checks(&changed).await?;
        let mut stale = HashSet::new();
        for (id, (was, v)) in found {
            if !moved(&was, &v) || written.contains(&id) {
                cache.put(v);
            } else {
                cache.forget(&id);
                stale.insert(id);
            }
        }
        todo.retain(|&i| stale.contains(&checks[i].id));
    }
    if !todo.is_empty() {
        return Err(StoreError::Contention(
            "verifications kept changing under their checks",
        ));
    }
    Ok(verdicts
        .into_iter()
        .map(|v| v.expect("every check was decided"))
        .collect())
}

/// Verifications as this process last read or wrote them, so that a check
/// usually costs no read. Safe when stale: a check's write applies only if the
/// row is still as the cache had it (else it is read again and decided again),
/// and what a check decides without writing (closed, malformed) rests on what
/// never changes once set (a final status, the code length).
#[derive(Default)]
pub struct VerificationCache(Mutex<HashMap<VerificationId, StoredVerification>>);

/// Entries the cache holds before it starts again empty.
const VERIFICATION_CACHE_MAX: usize = 100_000;

impl VerificationCache {
    pub fn get(&self, id: &VerificationId) -> Option<StoredVerification> {
        self.0
            .lock()
            .expect("verification cache lock")
            .get(id)
            .cloned()
    }

    pub fn put(&self, v: StoredVerification) {
        let mut map = self.0.lock().expect("verification cache lock");
        if map.len() >= VERIFICATION_CACHE_MAX && !map.contains_key(&v.id) {
            map.clear();
        }
        map.insert(v.id.clone(), v);
    }

    pub fn forget(&self, id: &VerificationId) {
        self.0.lock().expect("verification cache lock").remove(id);
    }
}
