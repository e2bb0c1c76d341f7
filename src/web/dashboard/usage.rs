//! Usage from the ledger: this month or a past one — messages, segments, SMS
//! cost, number fees, refunds, the total — a per-day bar chart, a CSV export,
//! and the spend cap with what is left of it.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::Chrome;
use crate::domain::Mode;
use crate::domain::message::Timestamp;
use crate::http::AppState;
use crate::usecase::usage::{self, Usage};
use crate::web::form::Query;
use crate::web::session::Signed;
use crate::web::{PageResult, render};

/// One bar of the chart, in SVG units.
struct Bar {
    x: u32,
    y: u32,
    height: u32,
    label: String,
}

const CHART_HEIGHT: u32 = 120;

#[derive(Template)]
#[template(path = "dashboard/usage.html")]
struct UsagePage {
    c: Chrome,
    usage: Usage,
    months: Vec<String>,
    bars: Vec<Bar>,
    chart_width: u32,
}

/// This month and the eleven before it, newest first.
fn recent_months(now: Timestamp) -> Vec<String> {
    let mut months = Vec::with_capacity(12);
    let (mut y, mut m) = {
        let this = now.month();
        let (y, m) = this.split_once('-').unwrap_or(("1970", "01"));
        (
            y.parse::<i32>().unwrap_or(1970),
            m.parse::<u32>().unwrap_or(1),
        )
    };
    for _ in 0..12 {
        months.push(format!("{y:04}-{m:02}"));
        (y, m) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
    }
    months
}

fn bars(u: &Usage) -> Vec<Bar> {
    let max = u
        .by_day
        .iter()
        .map(|d| d.figures.total_pence.max(0))
        .max()
        .unwrap_or(0)
        .max(1);
    u.by_day
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let total = d.figures.total_pence.max(0);
            let height = ((total * i64::from(CHART_HEIGHT)) / max) as u32;
            Bar {
                x: i as u32 * 24 + 4,
                y: CHART_HEIGHT - height,
                height,
                label: format!("{}: {}", d.date, crate::web::pounds(d.figures.total_pence)),
            }
        })
        .collect()
}

async fn page(State(app): State<AppState>, s: Signed, Query(q): Query) -> PageResult {
    let usage = usage::usage(&app, &s.auth(Mode::Live), q.opt("period")).await?;
    let bars = bars(&usage);
    let page = UsagePage {
        c: Chrome::new(&s, "usage"),
        months: recent_months(app.clock.now()),
        chart_width: (bars.len() as u32 * 24).max(24) + 8,
        bars,
        usage,
    };
    Ok(render(StatusCode::OK, &page))
}

/// The month by day as CSV, pence as integers.
async fn csv(State(app): State<AppState>, s: Signed, Query(q): Query) -> PageResult {
    let u = usage::usage(&app, &s.auth(Mode::Live), q.opt("period")).await?;
    let mut out = String::from(
        "date,messages,segments,sms_pence,number_fees_pence,refunds_pence,total_pence\n",
    );
    for d in &u.by_day {
        let f = &d.figures;
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            d.date,
            f.messages,
            f.segments,
            f.sms_pence,
            f.number_fees_pence,
            f.refunds_pence,
            f.total_pence
        ));
    }
    let disposition = format!("attachment; filename=\"line-usage-{}.csv\"", u.period);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        out,
    )
        .into_response())
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/usage", get(page))
        .route("/dashboard/usage.csv", get(csv))
}
