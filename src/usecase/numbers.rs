//! Numbers: search the inventory, rent (first month charged at once), list,
//! release (the number rests before anyone else may rent it), and the
//! operator's import. Test keys rent from a sandbox inventory in Ofcom's drama
//! range, free, each tenant its own.

use std::collections::HashSet;

use serde::Deserialize;
use utoipa::ToSchema;

use super::Core;
use super::error::{ApiError, ProblemCode};
use super::idempotency::{Answer, Idempotent};
use super::limits::spend_cap;
use crate::domain::Mode;
use crate::domain::ids::NumberId;
use crate::domain::message::Pence;
use crate::domain::number::{AvailableNumber, Number, NumberStatus};
use crate::domain::phone::PhoneNumber;
use crate::store::{AuthContext, NewRental, Page};

/// The sandbox inventory: +44 7700 900000 – 900999.
const SANDBOX_FIRST: u32 = 900_000;
const SANDBOX_LAST: u32 = 900_999;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RentNumber {
    /// E.164 or UK national format, as `GET /v1/numbers/available` lists it.
    #[schema(min_length = 1, max_length = 32, example = "+447700900123")]
    pub number: String,
}

/// `contains`: digits the number must contain (spaces and a leading + ignored).
pub async fn available(
    app: &Core,
    auth: &AuthContext,
    contains: Option<&str>,
    limit: u32,
) -> Result<Vec<AvailableNumber>, ApiError> {
    let digits: String = contains
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '+')
        .collect();
    if digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid(
            "contains",
            "`contains` must be up to 15 digits",
        ));
    }
    match auth.mode {
        Mode::Live => Ok(app
            .store
            .available_numbers(&digits, limit, app.clock.now())
            .await?),
        Mode::Test => {
            let page = Page {
                starting_after: None,
                limit: 1000,
            };
            let rented: HashSet<String> = app
                .store
                .list_numbers(&auth.tenant.id, Mode::Test, &page)
                .await?
                .into_iter()
                .filter(|n| n.status == NumberStatus::Rented)
                .map(|n| n.number)
                .collect();
            Ok((SANDBOX_FIRST..=SANDBOX_LAST)
                .map(|n| format!("+447700{n}"))
                .filter(|n| n.contains(&digits) && !rented.contains(n))
                .take(limit as usize)
                .map(|number| AvailableNumber {
                    number,
                    monthly_price_pence: Pence(0),
                })
                .collect())
        }
    }
}

/// Rents a number; answers 201 with it.
pub async fn rent(
    app: &Core,
    auth: &AuthContext,
    req: RentNumber,
    idem: &Idempotent,
) -> Result<Answer, ApiError> {
    let number = PhoneNumber::parse(&req.number, auth.mode).map_err(|e| {
        ApiError::new(ProblemCode::InvalidPhoneNumber, format!("`number` {e}")).param("number")
    })?;
    if !number.is_uk_mobile() || (auth.mode == Mode::Test && number.drama_suffix().is_none()) {
        return Err(ApiError::invalid(
            "number",
            match auth.mode {
                Mode::Live => "`number` must be a UK mobile number from GET /v1/numbers/available",
                Mode::Test => "test keys rent sandbox numbers: +44 7700 900000 – 900999",
            },
        ));
    }
    if let Some(earlier) = idem.earlier(&*app.store, &auth.tenant.id).await? {
        return Ok(earlier);
    }
    let now = app.clock.now();
    let price = match auth.mode {
        Mode::Test => Pence(0),
        Mode::Live => {
            let stocked = app
                .store
                .available_numbers(number.e164(), 1, now)
                .await?
                .into_iter()
                .find(|a| a.number == number.e164());
            match stocked {
                Some(a) => a.monthly_price_pence,
                // Taken, perhaps by this very request's first try, committed meanwhile.
                None => {
                    return match idem.earlier(&*app.store, &auth.tenant.id).await? {
                        Some(earlier) => Ok(earlier),
                        None => Err(unavailable()),
                    };
                }
            }
        }
    };
    let rental = NewRental {
        tenant_id: auth.tenant.id.clone(),
        number: Number {
            id: NumberId::generate(),
            number: number.e164().to_string(),
            mode: auth.mode,
            monthly_price_pence: price,
            status: NumberStatus::Rented,
            rented_at: now,
            renews_at: Some(now.plus_months(1)),
            released_at: None,
        },
        cap: match auth.mode {
            Mode::Test => None,
            Mode::Live => spend_cap(app, &auth.tenant),
        },
    };
    const CREATED: u16 = 201;
    let body = serde_json::to_string(&rental.number).map_err(ApiError::internal)?;
    let record = idem.record(CREATED, &body);
    let store = app.store.clone();
    let (id, saved) = (rental.number.id.clone(), rental.clone());
    let outcome =
        super::detached(async move { store.rent_number(&saved, record.as_ref()).await }).await?;
    if matches!(outcome, crate::store::CreateOutcome::Created) {
        tracing::info!(number_id = %id, "number rented");
    }
    idem.answer(outcome, CREATED, body)
}

pub(super) fn unavailable() -> ApiError {
    ApiError::new(
        ProblemCode::NumberUnavailable,
        "this number is not available to rent; see GET /v1/numbers/available",
    )
    .param("number")
}

pub async fn list(app: &Core, auth: &AuthContext, page: &Page) -> Result<Vec<Number>, ApiError> {
    Ok(app
        .store
        .list_numbers(&auth.tenant.id, auth.mode, page)
        .await?)
}

pub async fn get(app: &Core, auth: &AuthContext, id: &NumberId) -> Result<Number, ApiError> {
    app.store
        .get_number(&auth.tenant.id, auth.mode, id)
        .await?
        .ok_or_else(|| ApiError::not_found("number"))
}

/// Ends a rental (no further fees); releasing a released number changes nothing.
pub async fn release(app: &Core, auth: &AuthContext, id: &NumberId) -> Result<Number, ApiError> {
    get(app, auth, id).await?;
    let now = app.clock.now();
    let rests_until = now.plus_ms(i64::from(app.config.numbers.quarantine_days) * 86_400_000);
    if app
        .store
        .release_number(&auth.tenant.id, id, now, rests_until)
        .await?
    {
        tracing::info!(number_id = %id, "number released");
    }
    get(app, auth, id).await
}

/// Reads the operator's inventory file: one number a line, E.164, with an
/// optional monthly price in pence after a comma (else `default_price`). Blank
/// lines, `#` comments and a `number,…` header are skipped. Every bad line is
/// reported, and then nothing is imported.
pub fn parse_inventory(
    text: &str,
    default_price: Pence,
) -> Result<Vec<(String, Pence)>, Vec<String>> {
    let mut numbers = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (i == 0 && line.starts_with("number")) {
            continue;
        }
        let mut fields = line.split(',').map(str::trim);
        let raw = fields.next().unwrap_or("");
        let price = match fields.next() {
            None | Some("") => Ok(default_price),
            Some(p) => p
                .parse::<i64>()
                .ok()
                .filter(|p| *p >= 0)
                .map(Pence)
                .ok_or(format!(
                    "line {}: the price {p:?} is not a whole number of pence",
                    i + 1
                )),
        };
        let number = if !raw.starts_with('+') {
            Err(format!("line {}: {raw:?} is not in E.164 (+44…)", i + 1))
        } else {
            match PhoneNumber::parse(raw, Mode::Live) {
                Ok(n) if n.is_uk_mobile() => Ok(n.e164().to_string()),
                Ok(_) => Err(format!("line {}: {raw} is not a UK mobile number", i + 1)),
                Err(e) => Err(format!("line {}: {raw} {e}", i + 1)),
            }
        };
        match (number, price, fields.next()) {
            (_, _, Some(extra)) => {
                errors.push(format!("line {}: unexpected field {extra:?}", i + 1))
            }
            (Ok(n), Ok(p), None) => {
                if seen.insert(n.clone()) {
                    numbers.push((n, p));
                } else {
                    errors.push(format!("line {}: {n} is listed twice", i + 1));
                }
            }
            (n, p, None) => errors.extend(n.err().into_iter().chain(p.err())),
        }
    }
    if errors.is_empty() {
        Ok(numbers)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_files_are_read_all_or_nothing() {
        let good = "number,monthly_price_pence\n+447400123456\n# a comment\n\n+447400123457, 200\n";
        assert_eq!(
            parse_inventory(good, Pence(170)).unwrap(),
            [
                ("+447400123456".to_string(), Pence(170)),
                ("+447400123457".to_string(), Pence(200))
            ]
        );
        let bad = "+447400123456\n07400123458\n+442079460000\n+447400123456\n+447400123459,-1\n+447700900001\n+447400123460,1,x\n";
        let errors = parse_inventory(bad, Pence(170)).unwrap_err();
        assert_eq!(errors.len(), 6, "{errors:?}");
        assert!(errors[0].starts_with("line 2: "), "{errors:?}");
        assert!(errors[1].contains("not a UK mobile"), "{errors:?}");
        assert!(errors[2].contains("listed twice"), "{errors:?}");
        assert!(errors[3].contains("pence"), "{errors:?}");
        assert!(errors[4].contains("sandbox"), "{errors:?}");
        assert!(errors[5].contains("unexpected field"), "{errors:?}");
    }
}
