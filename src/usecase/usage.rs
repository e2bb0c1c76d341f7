//! What a month cost, read from the ledger (to the penny), by UTC day.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Core;
use super::error::ApiError;
use super::limits::spend_cap;
use crate::store::{AuthContext, UsageRow};

/// One day (or the whole month) of usage. Counts are net of refunds.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageFigures {
    /// Messages charged and not refunded.
    pub messages: i64,
    pub segments: i64,
    /// SMS charges before refunds, in pence.
    pub sms_pence: i64,
    pub number_fees_pence: i64,
    /// Given back for messages no carrier accepted (failed or expired in the queue).
    pub refunds_pence: i64,
    /// sms + number fees − refunds.
    pub total_pence: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageDay {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    #[serde(flatten)]
    pub figures: UsageFigures,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// `YYYY-MM` (UTC).
    pub period: String,
    #[serde(flatten)]
    pub figures: UsageFigures,
    /// The account's monthly cap for live keys, in pence; `null`: none.
    pub spend_cap_pence: Option<i64>,
    /// What is left of it this period (never below 0).
    pub spend_cap_remaining_pence: Option<i64>,
    /// Days with any entry, oldest first.
    pub by_day: Vec<UsageDay>,
}

impl UsageFigures {
    fn add(&mut self, row: &UsageRow) {
        match row.kind.as_str() {
            "sms" => {
                self.messages += row.entries;
                self.segments += row.segments;
                self.sms_pence += row.pence.0;
            }
            "refund" => {
                self.messages -= row.entries;
                self.segments += row.segments;
                self.refunds_pence -= row.pence.0;
            }
            _ => self.number_fees_pence += row.pence.0,
        }
        self.total_pence += row.pence.0;
    }
}

/// `period` is `YYYY-MM`; none: the current month (UTC).
pub async fn usage(
    app: &Core,
    auth: &AuthContext,
    period: Option<&str>,
) -> Result<Usage, ApiError> {
    let period = match period {
        None => app.clock.now().month(),
        Some(p) => parse_period(p).ok_or_else(|| {
            ApiError::invalid(
                "period",
                "`period` must be a month as YYYY-MM, e.g. 2026-12",
            )
        })?,
    };
    let rows = app.store.usage(&auth.tenant.id, &period).await?;
    let mut figures = UsageFigures::default();
    let mut by_day: Vec<UsageDay> = Vec::new();
    for row in &rows {
        figures.add(row);
        let date = chrono::DateTime::from_timestamp(row.day * 86_400, 0)
            .unwrap_or_default()
            .format("%Y-%m-%d")
            .to_string();
        match by_day.last_mut() {
            Some(d) if d.date == date => d.figures.add(row),
            _ => {
                let mut day = UsageFigures::default();
                day.add(row);
                by_day.push(UsageDay { date, figures: day });
            }
        }
    }
    let cap = spend_cap(app, &auth.tenant).map(|p| p.0);
    Ok(Usage {
        period,
        spend_cap_remaining_pence: cap.map(|c| (c - figures.total_pence).max(0)),
        spend_cap_pence: cap,
        figures,
        by_day,
    })
}

fn parse_period(p: &str) -> Option<String> {
    let (y, m) = p.split_once('-')?;
    let ok = y.len() == 4
        && m.len() == 2
        && y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit())
        && (1..=12).contains(&m.parse::<u32>().ok()?);
    ok.then(|| p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::message::Pence;

    fn row(day: i64, kind: &str, entries: i64, segments: i64, pence: i64) -> UsageRow {
        UsageRow {
            day,
            kind: kind.into(),
            entries,
            segments,
            pence: Pence(pence),
        }
    }

    #[test]
    fn refunds_net_out_and_fees_add_up() {
        let mut f = UsageFigures::default();
        for r in [
            row(1, "sms", 3, 4, 4),
            row(1, "refund", 1, -2, -2),
            row(2, "number_fee", 1, 0, 170),
        ] {
            f.add(&r);
        }
        assert_eq!(
            f,
            UsageFigures {
                messages: 2,
                segments: 2,
                sms_pence: 4,
                number_fees_pence: 170,
                refunds_pence: 2,
                total_pence: 172,
            }
        );
    }

    #[test]
    fn periods_are_months() {
        assert_eq!(parse_period("2026-12").as_deref(), Some("2026-12"));
        assert_eq!(parse_period("2026-13"), None);
        assert_eq!(parse_period("2026-1"), None);
        assert_eq!(parse_period("26-12"), None);
    }
}
