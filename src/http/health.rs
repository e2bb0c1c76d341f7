use std::fmt::Write;

use axum::Json;
use axum::Router;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use super::AppState;
use crate::carrier::{CarrierState, CarrierStatus};
use crate::domain::api_key::constant_eq;
use crate::http::error::{ApiError, ProblemCode};

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Whether the request may see the operator's detail (`/metrics`, the
/// carriers in `/readyz`): with `operator.token` set, only a request bearing
/// it; otherwise only a client on this machine, not through a proxy (and
/// none at all with `dashboard.behind_proxy`).
pub struct Operator(bool);

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = state.config.operator.token.expose();
        if !token.is_empty() {
            let given = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            return Ok(Operator(constant_eq(
                given.trim().as_bytes(),
                token.as_bytes(),
            )));
        }
        let local = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .is_some_and(|c| c.0.ip().to_canonical().is_loopback());
        let proxied = ["x-forwarded-for", "forwarded", "x-real-ip"]
            .iter()
            .any(|h| parts.headers.contains_key(*h));
        // Behind a proxy every client looks local.
        let behind_proxy = state.config.dashboard.behind_proxy;
        Ok(Operator(local && !proxied && !behind_proxy))
    }
}

/// Readiness: the database answers. The operator also sees each carrier and
/// its state; a carrier that is down does not make the service unready
/// (messages wait for it).
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "ready"),
    (status = 503, description = "the database is unreachable", body = crate::http::error::Problem),
))]
pub async fn readyz(
    State(app): State<AppState>,
    Operator(operator): Operator,
) -> Result<Json<Value>, ApiError> {
    match app.store.ping().await {
        Ok(()) if operator => Ok(Json(
            json!({"status": "ready", "carriers": app.carriers.statuses()}),
        )),
        Ok(()) => Ok(Json(json!({"status": "ready"}))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::new(
                ProblemCode::NotReady,
                "the database is unreachable",
            ))
        }
    }
}

/// Prometheus metrics: each carrier's state, window and counters. For the
/// operator only (`operator.token`, or a client on this machine).
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "Prometheus text format", content_type = "text/plain"),
    (status = 401, description = "not the operator", body = crate::http::error::Problem, content_type = "application/problem+json"),
))]
pub async fn metrics(
    State(app): State<AppState>,
    Operator(operator): Operator,
) -> Result<impl IntoResponse, ApiError> {
    if !operator {
        return Err(ApiError::new(
            ProblemCode::Unauthorized,
            "metrics are for the operator: Authorization: Bearer <operator.token>",
        ));
    }
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    let carriers = app.carriers.statuses();
    let label = |c: &CarrierStatus| format!("carrier=\"{}\",kind=\"{}\"", c.name, c.kind);
    family(
        "line_carrier_up",
        "gauge",
        "1 when the carrier is bound (or, for HTTP, answering).",
        carriers
            .iter()
            .map(|c| {
                (
                    label(c),
                    u8::from(c.state == CarrierState::Bound).to_string(),
                )
            })
            .collect(),
    );
    family(
        "line_carrier_state",
        "gauge",
        "1 for the carrier's current state.",
        carriers
            .iter()
            .flat_map(|c| {
                [
                    CarrierState::Bound,
                    CarrierState::Connecting,
                    CarrierState::Down,
                ]
                .into_iter()
                .map(move |s| {
                    let name = serde_json::to_value(s).unwrap_or_default();
                    let name = name.as_str().unwrap_or_default().to_string();
                    (
                        format!("{},state=\"{name}\"", label(c)),
                        u8::from(c.state == s).to_string(),
                    )
                })
            })
            .collect(),
    );
    family(
        "line_carrier_window_in_use",
        "gauge",
        "Outstanding submissions (SMPP window in use).",
        carriers
            .iter()
            .map(|c| (label(c), c.window_in_use.to_string()))
            .collect(),
    );
    family(
        "line_carrier_submits_total",
        "counter",
        "Submissions (message parts) sent to the carrier.",
        carriers
            .iter()
            .map(|c| (label(c), c.submits.to_string()))
            .collect(),
    );
    family(
        "line_carrier_receipts_total",
        "counter",
        "Delivery receipts received from the carrier.",
        carriers
            .iter()
            .map(|c| (label(c), c.receipts.to_string()))
            .collect(),
    );
    family(
        "line_carrier_errors_total",
        "counter",
        "Failed submissions and connections, by the carrier's status.",
        carriers
            .iter()
            .flat_map(|c| {
                c.errors.iter().map(move |(e, n)| {
                    (
                        format!("{},error=\"{}\"", label(c), e.replace('"', "'")),
                        n.to_string(),
                    )
                })
            })
            .collect(),
    );
    let waits = app.store.write_waits();
    let name = "line_store_write_wait_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} How long writes waited: step=start until their first statement could \
         run (a connection; SQLite: the one writer's turn), step=held from then until their \
         commit, step=commit until on disk.\n\
         # TYPE {name} histogram"
    );
    waits.start.render(&mut out, name, "step=\"start\"");
    waits.held.render(&mut out, name, "step=\"held\"");
    waits.commit.render(&mut out, name, "step=\"commit\"");
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}
