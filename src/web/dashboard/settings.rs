//! Settings (brand name, default sender, allowed countries, spend cap; owners
//! change them), the signed-in user's password, and the team: members, roles,
//! invitation links (shown once; no mail server needed), removal.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};

use super::Chrome;
use crate::domain::ids::{InviteId, UserId};
use crate::http::AppState;
use crate::store::{Invite, User};
use crate::usecase::account::{self, Account, AccountChange};
use crate::usecase::{ApiError, accounts};
use crate::web::form::Query;
use crate::web::session::{Signed, SignedForm};
use crate::web::{PageResult, base_url, refused, render, see_other};

#[derive(Template)]
#[template(path = "dashboard/settings.html")]
struct SettingsPage {
    c: Chrome,
    account: Account,
    error: Option<String>,
    password_error: Option<String>,
}

impl SettingsPage {
    fn cap_pounds(&self) -> String {
        match (
            self.account.spend_cap_is_default,
            self.account.spend_cap_pence,
        ) {
            (false, Some(p)) => format!("{}.{:02}", p / 100, p % 100),
            _ => String::new(),
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard/team.html")]
struct TeamPage {
    c: Chrome,
    me: UserId,
    users: Vec<User>,
    invites: Vec<Invite>,
    /// An invitation link just made: shown this once.
    link: Option<String>,
}

/// Pounds as typed ("25", "25.5", "25.50") in pence; empty is `None` (the default).
fn pence(input: &str) -> Result<Option<i64>, ApiError> {
    if input.is_empty() {
        return Ok(None);
    }
    let bad = || {
        ApiError::invalid(
            "spend_cap_pence",
            "write the cap in pounds, such as 25 or 25.50",
        )
    };
    let (whole, frac) = input
        .trim_start_matches('£')
        .split_once('.')
        .unwrap_or((input.trim_start_matches('£'), ""));
    if whole.is_empty()
        || frac.len() > 2
        || !(whole.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let frac: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<2}").parse().map_err(|_| bad())?
    };
    whole
        .checked_mul(100)
        .and_then(|p| p.checked_add(frac))
        .map(Some)
        .ok_or_else(bad)
}

async fn settings_page(app: &AppState, s: &Signed) -> Result<SettingsPage, ApiError> {
    Ok(SettingsPage {
        c: Chrome::new(s, "settings"),
        account: account::get(app, &s.session.tenant.id).await?,
        error: None,
        password_error: None,
    })
}

async fn settings(State(app): State<AppState>, s: Signed, Query(q): Query) -> PageResult {
    let mut page = settings_page(&app, &s).await?;
    page.c = page.c.done(q.get("done"));
    Ok(render(StatusCode::OK, &page))
}

/// The same use case as `PATCH /v1/account`.
async fn save(State(app): State<AppState>, form: SignedForm) -> PageResult {
    let (s, f) = (&form.signed, &form.fields);
    let result = async {
        accounts::require_owner(&s.session)?;
        let change = AccountChange {
            name: Some(f.get("name").to_string()),
            default_sender: Some(f.opt("default_sender").map(str::to_string)),
            allowed_countries: Some(
                f.get("allowed_countries")
                    .split([',', ' '])
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            spend_cap_pence: Some(pence(f.get("spend_cap"))?),
        };
        account::update(&app, &s.session.tenant.id, change).await
    }
    .await;
    match result {
        Ok(_) => {
            app.auth_cache.forget_tenant(&s.session.tenant.id);
            Ok(see_other("/dashboard/settings?done=saved"))
        }
        Err(e) => {
            let (status, detail) = refused(e)?;
            let mut page = settings_page(&app, s).await?;
            page.error = Some(detail);
            Ok(render(status, &page))
        }
    }
}

async fn password(State(app): State<AppState>, form: SignedForm) -> PageResult {
    let (s, f) = (&form.signed, &form.fields);
    match accounts::change_password(
        &app,
        &s.session,
        &s.token,
        f.raw("current_password"),
        f.raw("new_password"),
    )
    .await
    {
        Ok(()) => Ok(see_other("/dashboard/settings?done=password")),
        Err(e) => {
            let (status, detail) = refused(e)?;
            let mut page = settings_page(&app, s).await?;
            page.password_error = Some(detail);
            Ok(render(status, &page))
        }
    }
}

async fn team_page(app: &AppState, s: &Signed, link: Option<String>) -> Result<TeamPage, ApiError> {
    let (users, invites) = accounts::team(app, &s.session).await?;
    Ok(TeamPage {
        c: Chrome::new(s, "team"),
        me: s.session.user.id.clone(),
        users,
        invites,
        link,
    })
}

async fn team(State(app): State<AppState>, s: Signed, Query(q): Query) -> PageResult {
    let mut page = team_page(&app, &s, None).await?;
    page.c = page.c.done(q.get("done"));
    Ok(render(StatusCode::OK, &page))
}

async fn invite(State(app): State<AppState>, headers: HeaderMap, form: SignedForm) -> PageResult {
    let s = &form.signed;
    let token = accounts::invite(&app, &s.session, form.fields.get("role")).await?;
    let link = format!("{}/invite/{}", base_url(&headers), token.expose());
    Ok(render(
        StatusCode::CREATED,
        &team_page(&app, s, Some(link)).await?,
    ))
}

async fn revoke_invite(
    State(app): State<AppState>,
    Path(id): Path<InviteId>,
    form: SignedForm,
) -> PageResult {
    accounts::revoke_invite(&app, &form.signed.session, &id).await?;
    Ok(see_other("/dashboard/team?done=withdrawn"))
}

async fn remove(
    State(app): State<AppState>,
    Path(id): Path<UserId>,
    form: SignedForm,
) -> PageResult {
    accounts::remove_member(&app, &form.signed.session, &id).await?;
    Ok(see_other("/dashboard/team?done=removed"))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/settings", get(settings).post(save))
        .route("/dashboard/password", post(password))
        .route("/dashboard/team", get(team))
        .route("/dashboard/team/invite", post(invite))
        .route("/dashboard/team/{id}/remove", post(remove))
        .route("/dashboard/team/invites/{id}/revoke", post(revoke_invite))
}

#[cfg(test)]
mod tests {
    use super::pence;

    #[test]
    fn caps_are_typed_in_pounds() {
        assert_eq!(pence("").unwrap(), None);
        assert_eq!(pence("25").unwrap(), Some(2500));
        assert_eq!(pence("25.5").unwrap(), Some(2550));
        assert_eq!(pence("£0.07").unwrap(), Some(7));
        for bad in ["x", "1.234", "-1", ".5", "1,5"] {
            assert!(pence(bad).is_err(), "{bad}");
        }
    }
}
