//! One-time-password verifications: start, verify, resend, cancel, read.
//! Codes exist in plaintext only in the SMS on its way out; we keep an HMAC.

use std::sync::Arc;
use std::time::Duration;

mod checks;
mod request;

use super::error::{ApiError, ProblemCode};
use super::idempotency::{Answer, Idempotent};
use super::limits::{cap_reached, counter, take};
use super::sms::{compose, destination, sender_for};
use super::{Core, detached};
use crate::domain::encoding::SmsBody;
use crate::domain::ids::{MessageId, TenantId, VerificationId};
use crate::domain::otp::{OtpCode, OtpText};
use crate::domain::phone::Masked;
use crate::domain::sender::Sender;
use crate::domain::verification::{StoredVerification, Verdict, Verification, VerificationStatus};
use crate::infra::batch::{Batcher, in_rounds};
use crate::infra::clock::Clock;
use crate::store::{
    AuthContext, CreateOutcome, Limit, NewMessage, PendingStart, Resend, Resent, SharedError,
    Started, Store,
};
use crate::worker::handoff::Handoff;

pub use checks::{CheckWriter, CodeCheck, VerificationCache, check_writer};
use request::Start;
pub use request::{CheckCode, CheckCodeFor, CheckResult, StartVerification};

/// 409 for a verification that no longer takes codes.
fn closed(status: VerificationStatus) -> ApiError {
    ApiError::new(
        ProblemCode::VerificationClosed,
        format!(
            "this verification is {} and takes no more codes",
            status.as_str()
        ),
    )
    .with("verification_status", status.as_str())
}

/// The SMS that carries `code` for this verification.
fn code_message(
    app: &Core,
    auth: &AuthContext,
    v: &StoredVerification,
    code: &OtpCode,
    from: &Sender,
) -> Result<NewMessage, ApiError> {
    let text = OtpText {
        template: v.template.as_deref(),
        brand: &v.brand,
        minutes: u64::from(v.ttl_seconds).div_ceil(60),
        app_domain: v.app_domain.as_deref(),
    };
    let body = SmsBody::parse(text.render(code.digits())).map_err(ApiError::internal)?;
    Ok(compose(app, auth, &v.to, &body, from, None))
}

/// Reads a verification, marking it expired if its time is up.
async fn load(
    app: &Core,
    tenant_id: &TenantId,
    id: &VerificationId,
) -> Result<StoredVerification, ApiError> {
    let v = app
        .store
        .get_verification(tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("verification"))?;
    settle(app, v).await
}

/// Reads a verification that must still be pending (else 409).
async fn load_pending(
    app: &Core,
    tenant_id: &TenantId,
    id: &VerificationId,
) -> Result<StoredVerification, ApiError> {
    let v = load(app, tenant_id, id).await?;
    if v.status == VerificationStatus::Pending {
        Ok(v)
    } else {
        Err(closed(v.status))
    }
}

async fn settle(app: &Core, mut v: StoredVerification) -> Result<StoredVerification, ApiError> {
    let now = app.clock.now();
    if v.status == VerificationStatus::Pending && now >= v.expires_at {
        if app
            .store
            .close_verification(&v.tenant_id, &v.id, VerificationStatus::Expired, now)
            .await?
        {
            v.status = VerificationStatus::Expired;
            v.updated_at = now;
        } else {
            return Box::pin(load(app, &v.tenant_id, &v.id)).await;
        }
    }
    Ok(v)
}

const TOO_MANY_SENDS: &str = "too many codes were sent to this number";
const TOO_MANY_STARTS: &str = "too many verifications were started";

/// The counter of codes sent to one number.
fn sends_to(app: &Core, tenant_id: &TenantId, to: &str) -> Result<Limit, ApiError> {
    let l = &app.config.limits;
    counter(
        format!("otp-to:{tenant_id}:{to}"),
        l.otp_sends_per_number,
        Duration::from_secs(l.otp_sends_per_number_window_seconds),
        TOO_MANY_SENDS,
    )
}

/// The SMS a verification would send, built by the same rules as `start`.
pub struct Preview {
    pub to: String,
    pub from: String,
    pub text: String,
    pub encoding: &'static str,
    pub segments: u32,
}

/// What `start` would send for `req` (with a fresh random code), sending
/// nothing and storing nothing: the public demo page. `brand` defaults to the
/// service's name; any valid UK mobile is accepted, as for test keys.
pub fn preview(app: &Core, req: StartVerification) -> Result<Preview, ApiError> {
    let demo = AuthContext {
        tenant: crate::store::Tenant {
            id: TenantId::from(String::new()),
            name: "Line".into(),
            allowed_regions: vec!["GB".into()],
            default_sender: None,
            spend_cap: None,
        },
        mode: crate::domain::Mode::Test,
    };
    let start = req.parse(&demo)?;
    let code = OtpCode::generate(start.length);
    let text = OtpText {
        template: start.template.as_deref(),
        brand: &start.brand,
        minutes: u64::from(start.ttl_seconds).div_ceil(60),
        app_domain: start.app_domain.as_deref(),
    }
    .render(code.digits());
    let body = SmsBody::parse(text).map_err(ApiError::internal)?;
    Ok(Preview {
        to: start.to.masked().to_string(),
        from: app.config.default_sender.as_str().to_string(),
        encoding: body.encoding().as_str(),
        segments: body.segments(),
        text: body.text().to_string(),
    })
}

/// Starts a verification: a fresh code goes out by SMS. Answers 201.
#[tracing::instrument(skip_all, fields(tenant = %auth.tenant.id))]
pub async fn start(
    app: &Core,
    auth: &AuthContext,
    req: StartVerification,
    idem: &Idempotent,
) -> Result<Answer, ApiError> {
    let Start {
        to,
        length,
        ttl_seconds,
        max_attempts,
        brand,
        template,
        app_domain,
    } = req.parse(auth)?;
    // A repeated request is answered as the first was, before any limit counts it again.
    if let Some(earlier) = idem.earlier(&*app.store, &auth.tenant.id).await? {
        return Ok(earlier);
    }
    // Counted in the transaction that starts it, both or neither.
    let limits = vec![
        counter(
            format!("otp-start:{}", auth.tenant.id),
            app.config.limits.otp_starts_per_minute,
            Duration::from_secs(60),
            TOO_MANY_STARTS,
        )?,
        sends_to(app, &auth.tenant.id, to.e164())?,
    ];
    let what = [TOO_MANY_STARTS, TOO_MANY_SENDS];
    let from = sender_for(app, auth, None).await?;

    let now = app.clock.now();
    let id = VerificationId::generate();
    let code = OtpCode::generate(length);
    let mut v = StoredVerification {
        code_hash: app.hash_key.code_hash(id.as_str(), &code),
        id,
        tenant_id: auth.tenant.id.clone(),
        mode: auth.mode,
        to: to.e164().to_string(),
        status: VerificationStatus::Pending,
        code_length: length,
        max_attempts,
        attempts: 0,
        sends: 1,
        ttl_seconds,
        brand,
        template,
        app_domain,
        message_id: MessageId::from(String::new()),
        last_sent_at: now,
        expires_at: now.plus_ms(i64::from(ttl_seconds) * 1000),
        created_at: now,
        updated_at: now,
    };
    let msg = code_message(app, auth, &v, &code, &from)?;
    drop(code);
    v.message_id = msg.id.clone();
    const CREATED: u16 = 201;
    let response = serde_json::to_string(&Verification::from(&v)).map_err(ApiError::internal)?;
    let (id, to) = (v.id.clone(), v.to.clone());
    let created = v.clone();
    let started = app
        .starts
        .submit(PendingStart {
            verification: v,
            message: msg,
            idem: idem.record(CREATED, &response),
            limits,
        })
        .await?;
    let outcome = match started {
        Started::Outcome(outcome) => outcome,
        Started::Limited { limit, wait_ms } => {
            return Err(ApiError::too_many(what[limit], wait_ms));
        }
    };
    if matches!(outcome, CreateOutcome::Created) {
        app.verifications.put(created);
        app.wake.notify_one();
        tracing::debug!(verification_id = %id, to = %Masked(&to), "verification started");
    }
    idem.answer(outcome, CREATED, response)
}

/// New verifications, started in groups.
pub type StartWriter = Batcher<PendingStart, Started, SharedError>;

/// Counts each group's limits at the time it is written: groups are written
/// one after another, so their times never go back (an item's own time could,
/// against the group before).
/// Each code's message is leased to this node's sender as it is inserted,
/// if it has room, and handed to it once committed.
pub fn start_writer(store: Arc<dyn Store>, clock: Clock, handoff: Arc<Handoff>) -> StartWriter {
    Batcher::start_each(store.group_limit(), move |mut batch: Vec<PendingStart>| {
        let (store, now, handoff) = (store.clone(), clock.now(), handoff.clone());
        async move {
            let leased = handoff.lease_each(batch.iter_mut().map(|p| &mut p.message));
            // `create_verifications` wants no two items with one (tenant, key) or (tenant, number).
            let keys = |p: &PendingStart| {
                let tenant = &p.verification.tenant_id;
                let mut keys = vec![(tenant.clone(), true, p.verification.to.clone())];
                if let Some(i) = &p.idem {
                    keys.push((tenant.clone(), false, i.key.clone()));
                }
                keys
            };
            let store = &*store;
            let outcomes = in_rounds(batch, keys, |items| async move {
                store
                    .create_verifications(now, &items)
                    .await
                    .map_err(Arc::new)
            })
            .await;
            let inserted = outcomes
                .iter()
                .map(|o| matches!(o, Ok(Started::Outcome(CreateOutcome::Created))));
            handoff.hand_inserted(leased, inserted);
            outcomes
        }
    })
}

/// Checks a code; the right one approves the verification, once.
pub async fn check(
    app: &Core,
    tenant_id: &TenantId,
    id: &VerificationId,
    code: String,
) -> Result<CheckResult, ApiError> {
    let verdict = app
        .checks
        .submit(CodeCheck {
            tenant_id: tenant_id.clone(),
            id: id.clone(),
            code,
            now: app.clock.now(),
        })
        .await?;
    match verdict {
        Verdict::NotFound => Err(ApiError::not_found("verification")),
        Verdict::Closed(status) => Err(closed(status)),
        Verdict::Malformed { length } => Err(ApiError::invalid(
            "code",
            format!("`code` must be {length} digits"),
        )),
        Verdict::Checked {
            valid,
            status,
            attempts_remaining,
        } => {
            // Approvals and lock-outs are audit events; ordinary wrong codes are debug.
            if status == VerificationStatus::Pending {
                tracing::debug!(verification_id = %id, "wrong code");
            } else {
                tracing::info!(verification_id = %id, status = status.as_str(), valid, "code checked");
            }
            Ok(CheckResult {
                id: id.clone(),
                status,
                valid,
                attempts_remaining,
            })
        }
    }
}

/// Checks a code for the newest pending verification of a number.
pub async fn check_number(
    app: &Core,
    auth: &AuthContext,
    to: &str,
    code: String,
) -> Result<CheckResult, ApiError> {
    let to = destination(auth, to)?;
    let v = app
        .store
        .latest_verification(&auth.tenant.id, to.e164())
        .await?
        .ok_or_else(|| ApiError::not_found("verification for this number"))?;
    check(app, &auth.tenant.id, &v.id, code).await
}

/// Sends a fresh code; the previous one stops working.
pub async fn resend(
    app: &Core,
    auth: &AuthContext,
    id: &VerificationId,
) -> Result<Verification, ApiError> {
    let v = load_pending(app, &auth.tenant.id, id).await?;
    let limits = &app.config.limits;
    let now = app.clock.now();
    if v.sends >= limits.otp_max_sends {
        return Err(ApiError::too_many(
            "this verification has had all its sends; start a new one when it expires",
            v.expires_at.millis() - now.millis(),
        ));
    }
    let wait =
        v.last_sent_at.millis() + limits.otp_resend_cooldown_seconds as i64 * 1000 - now.millis();
    if wait > 0 {
        return Err(ApiError::too_many("a code was sent moments ago", wait));
    }
    take(app, &sends_to(app, &auth.tenant.id, &v.to)?, TOO_MANY_SENDS).await?;
    let from = sender_for(app, auth, None).await?;
    let code = OtpCode::generate(v.code_length);
    let mut msg = code_message(app, auth, &v, &code, &from)?;
    let code_hash = app.hash_key.code_hash(v.id.as_str(), &code);
    drop(code);
    let resent = Resend {
        tenant_id: auth.tenant.id.clone(),
        id: v.id.clone(),
        sends: v.sends,
        code_hash,
        expires_at: now.plus_ms(i64::from(v.ttl_seconds) * 1000),
        now,
    };
    let (store, handoff) = (app.store.clone(), app.handoff.clone());
    let resending = async move {
        let handed = handoff.lease(&mut msg);
        let outcome = store.resend_verification(&resent, &msg).await;
        if let (Ok(Resent::Sent), Some(handed)) = (&outcome, handed) {
            handoff.hand(handed);
        }
        outcome
    };
    match detached(resending).await? {
        Resent::Sent => {}
        Resent::OverCap => return Err(cap_reached()),
        Resent::Stale => {
            let v = load(app, &auth.tenant.id, id).await?;
            return Err(if v.status == VerificationStatus::Pending {
                ApiError::too_many("a code was sent moments ago", 1000)
            } else {
                closed(v.status)
            });
        }
    }
    app.wake.notify_one();
    tracing::info!(verification_id = %id, "code resent");
    Ok(Verification::from(&load(app, &auth.tenant.id, id).await?))
}

/// Cancels a pending verification.
pub async fn cancel(
    app: &Core,
    tenant_id: &TenantId,
    id: &VerificationId,
) -> Result<Verification, ApiError> {
    load_pending(app, tenant_id, id).await?;
    if !app
        .store
        .close_verification(tenant_id, id, VerificationStatus::Canceled, app.clock.now())
        .await?
    {
        return Err(closed(load(app, tenant_id, id).await?.status));
    }
    get(app, tenant_id, id).await
}

/// A verification (expired if its time is up).
pub async fn get(
    app: &Core,
    tenant_id: &TenantId,
    id: &VerificationId,
) -> Result<Verification, ApiError> {
    Ok(Verification::from(&load(app, tenant_id, id).await?))
}
