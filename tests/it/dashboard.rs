//! The dashboard through HTTP, as a browser drives it: sign-up, login,
//! sessions, CSRF, throttles, tenant scoping, invitations and roles, keys.

use std::time::Duration;

use serde_json::json;

use crate::common::TestApp;
use crate::numbers::import;

const PASSWORD: &str = "correct horse battery";

/// A browser: a cookie jar, this site's Origin on every POST, no redirects
/// followed (so each answer is seen as sent).
struct Browser {
    base: String,
    client: reqwest::Client,
    cookies: Vec<(String, String)>,
}

struct Page {
    status: u16,
    location: Option<String>,
    headers: reqwest::header::HeaderMap,
    html: String,
}

impl Page {
    fn csrf(&self) -> String {
        let at = self
            .html
            .find("name=\"csrf\" value=\"")
            .expect("a csrf field")
            + 19;
        self.html[at..].split('"').next().unwrap().to_string()
    }

    /// The text of the element with this id.
    fn text_of(&self, id: &str) -> String {
        let marker = format!("id=\"{id}\"");
        let at = self
            .html
            .find(&marker)
            .unwrap_or_else(|| panic!("no #{id} in {}", self.html));
        let start = at + self.html[at..].find('>').unwrap() + 1;
        let end = start + self.html[start..].find('<').unwrap();
        self.html[start..end].to_string()
    }
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser {
            base: app.base.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
        }
    }

    /// The session cookie, as `name=value`.
    fn session(&self) -> Option<String> {
        self.cookies
            .iter()
            .find(|(n, _)| n.ends_with("line_session"))
            .map(|(n, v)| format!("{n}={v}"))
    }

    fn set_session(&mut self, pair: Option<String>) {
        self.cookies.retain(|(n, _)| !n.ends_with("line_session"));
        if let Some((n, v)) = pair.as_deref().and_then(|p| p.split_once('=')) {
            self.cookies.push((n.to_string(), v.to_string()));
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = if self.cookies.is_empty() {
            req
        } else {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            req.header("cookie", jar.join("; "))
        };
        let resp = req.send().await.unwrap();
        for set in resp.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() {
                self.cookies.push((name.to_string(), value.to_string()));
            }
        }
        Page {
            status: resp.status().as_u16(),
            location: resp
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_string()),
            headers: resp.headers().clone(),
            html: resp.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let req = self.client.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    /// A form POST as a page of this site sends it.
    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("origin", &self.base)
            .header("sec-fetch-site", "same-origin")
            .form(fields);
        self.send(req).await
    }

    /// A public form as a person fills it: the page first (its token), then the POST.
    async fn fill(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.get(path).await.csrf();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(path, &all).await
    }

    /// A public form POST to `path` with a valid form token taken from the
    /// login page (for forms the site would not show, to see them refused).
    async fn force(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.get("/login").await.csrf();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(path, &all).await
    }

    /// A form POST from a signed-in page, with the session's CSRF token.
    async fn submit(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.get("/dashboard").await.csrf();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(path, &all).await
    }

    /// Signs up; returns the first test key the page shows once.
    async fn sign_up(&mut self, company: &str, email: &str) -> String {
        let page = self
            .fill(
                "/signup",
                &[
                    ("company", company),
                    ("email", email),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(page.status, 201, "{}", page.html);
        assert!(self.session().is_some());
        page.text_of("test-key")
    }

    async fn log_in(&mut self, email: &str, password: &str) -> Page {
        self.fill("/login", &[("email", email), ("password", password)])
            .await
    }
}

async fn sign_up_gives_a_session_and_a_test_key_shown_once(app: TestApp) {
    let mut b = Browser::new(&app);
    let landing = b.get("/").await;
    assert_eq!(landing.status, 200);
    assert!(landing.html.contains("href=\"/signup\""));
    let key = b.sign_up("Widgets Ltd", "Ada@Example.com").await;
    assert!(key.starts_with("line_test_"), "{key}");
    // The key works on the API, for the new tenant.
    let (status, v) = app
        .post("/v1/otp", &key, &json!({"to": "+447700900123"}))
        .await;
    assert_eq!(status, 201, "{v}");
    let (_, account) = app.get("/v1/account", &key).await;
    assert_eq!(account["name"], "Widgets Ltd");
    // Shown once: neither the dashboard nor the keys page holds it again.
    let start = b.get("/dashboard").await;
    assert_eq!(start.status, 200);
    assert!(start.html.contains("ada@example.com"));
    assert!(!start.html.contains(&key));
    let keys = b.get("/dashboard/keys").await;
    assert!(!keys.html.contains(&key));
    assert!(keys.html.contains(&key[..14]), "the hint is listed");
    // Only hashes are stored: of the password and of the session.
    let stored = app.dump().await;
    assert!(!stored.contains(PASSWORD));
    let token = b.session().unwrap();
    assert!(!stored.contains(token.split_once('=').unwrap().1));
    assert!(stored.contains("$argon2id$"));
    // The same address cannot sign up twice.
    let again = Browser::new(&app)
        .fill(
            "/signup",
            &[
                ("company", "X"),
                ("email", "ada@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(again.status, 422);
    app.stop().await;
}

async fn bad_sign_ups_say_what_is_wrong(app: TestApp) {
    let mut b = Browser::new(&app);
    for (fields, says) in [
        (
            vec![("company", "A"), ("email", "nope"), ("password", PASSWORD)],
            "e-mail address",
        ),
        (
            vec![("company", "A"), ("email", "a@b.co"), ("password", "short")],
            "at least 10",
        ),
        (
            vec![("company", ""), ("email", "a@b.co"), ("password", PASSWORD)],
            "name",
        ),
    ] {
        let page = b.fill("/signup", &fields).await;
        assert_eq!(page.status, 422, "{}", page.html);
        assert!(page.html.contains(says), "{says}: {}", page.html);
        assert!(b.session().is_none());
    }
    app.stop().await;
}

async fn login_logout_and_wrong_passwords(app: TestApp) {
    Browser::new(&app)
        .sign_up("Acme 2", "grace@example.com")
        .await;
    let mut b = Browser::new(&app);
    let wrong = b.log_in("grace@example.com", "not the password").await;
    let unknown = b.log_in("nobody@example.com", PASSWORD).await;
    assert_eq!((wrong.status, unknown.status), (401, 401));
    // One message whatever was wrong: no user enumeration.
    let says = "that e-mail address and password do not match an account";
    assert!(wrong.html.contains(says) && unknown.html.contains(says));
    assert!(b.session().is_none());

    let ok = b.log_in("Grace@Example.com", PASSWORD).await;
    assert_eq!(
        (ok.status, ok.location.as_deref()),
        (303, Some("/dashboard"))
    );
    let set = ok.headers["set-cookie"].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain http: {set}");
    assert_eq!(b.get("/dashboard").await.status, 200);

    let session = b.session();
    let out = b.submit("/logout", &[]).await;
    assert_eq!(out.status, 303);
    assert!(
        out.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    // The old cookie no longer opens anything.
    b.set_session(session);
    let after = b.get("/dashboard").await;
    assert_eq!(
        (after.status, after.location.as_deref()),
        (303, Some("/login"))
    );
    app.stop().await;
}

async fn sessions_expire(app: TestApp) {
    let mut b = Browser::new(&app);
    b.sign_up("Expiring", "e@example.com").await;
    app.clock.advance(Duration::from_secs(11 * 3600));
    assert_eq!(b.get("/dashboard/keys").await.status, 200);
    app.clock.advance(Duration::from_secs(2 * 3600));
    let page = b.get("/dashboard/keys").await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some("/login"))
    );
    app.stop().await;
}

async fn forms_without_the_token_or_from_elsewhere_are_refused(app: TestApp) {
    let mut b = Browser::new(&app);
    b.sign_up("Csrf", "c@example.com").await;
    let keys_before = b.get("/dashboard/keys").await.html.matches("<tr").count();
    // No token.
    let page = b
        .post("/dashboard/keys", &[("mode", "live"), ("name", "x")])
        .await;
    assert_eq!(page.status, 403, "{}", page.html);
    // A wrong token.
    let page = b
        .post("/dashboard/keys", &[("csrf", "forged"), ("mode", "live")])
        .await;
    assert_eq!(page.status, 403);
    // The right token, from another site.
    let csrf = b.get("/dashboard").await.csrf();
    let cookie = b.session().unwrap();
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let resp = b
            .client
            .post(format!("{}/dashboard/keys", b.base))
            .header("cookie", &cookie)
            .header(name, value)
            .form(&[("csrf", csrf.as_str()), ("mode", "live")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{name}");
    }
    // A login form posted from another site is refused too.
    let resp = b
        .client
        .post(format!("{}/login", b.base))
        .header("origin", "https://evil.example")
        .form(&[("email", "c@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // From this site but without the form's token (or with a made-up one), too.
    let mut stranger = Browser::new(&app);
    let page = stranger
        .post(
            "/login",
            &[("email", "c@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, 403, "{}", page.html);
    stranger.get("/login").await;
    let page = stranger
        .post(
            "/login",
            &[
                ("csrf", "guessed"),
                ("email", "c@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 403);
    let keys_after = b.get("/dashboard/keys").await.html.matches("<tr").count();
    assert_eq!(keys_before, keys_after, "no key was made");
    app.stop().await;
}

const TIGHT: &str = "[dashboard]\nlogins_per_account_per_hour = 3\nsignups_per_ip_per_hour = 2\ndemo_previews_per_ip_per_minute = 2\n[limits]\notp_starts_per_minute = 1\n";

async fn logins_sign_ups_and_previews_are_throttled(app: TestApp) {
    let mut b = Browser::new(&app);
    b.sign_up("T1", "t1@example.com").await;
    // A dashboard form the API's limits refuse is a 429 page with Retry-After.
    assert_eq!(b.submit("/dashboard/test-otp", &[]).await.status, 201);
    let page = b.submit("/dashboard/test-otp", &[]).await;
    assert_eq!(page.status, 429, "{}", page.html);
    assert!(
        page.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    let mut other = Browser::new(&app);
    for _ in 0..3 {
        assert_eq!(
            other
                .log_in("t1@example.com", "wrong password")
                .await
                .status,
            401
        );
    }
    // The fourth try, even with the right password, waits.
    let page = other.log_in("t1@example.com", PASSWORD).await;
    assert_eq!(page.status, 429, "{}", page.html);
    assert!(
        page.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    // Another account from the same address is not locked by it.
    Browser::new(&app).sign_up("T2", "t2@example.com").await;
    assert_eq!(
        Browser::new(&app)
            .log_in("t2@example.com", PASSWORD)
            .await
            .status,
        303
    );
    // Two sign-ups an hour from one address: the third waits.
    let third = Browser::new(&app)
        .fill(
            "/signup",
            &[
                ("company", "T3"),
                ("email", "t3@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(third.status, 429);
    for expected in [200, 200, 429] {
        let page = b.fill("/demo", &[("to", "07700 900123")]).await;
        assert_eq!(page.status, expected, "{}", page.html);
    }
    app.stop().await;
}

async fn the_demo_shows_the_exact_sms_and_keeps_nothing(app: TestApp) {
    let mut b = Browser::new(&app);
    let form = b.get("/demo").await;
    assert!(form.html.contains("Demo only · No real SMS sent"));
    let csp = form.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(form.headers["x-content-type-options"], "nosniff");
    assert_eq!(form.headers["referrer-policy"], "same-origin");
    let before = app.dump().await;
    let page = b
        .fill(
            "/demo",
            &[
                ("to", "07400 123456"),
                ("brand", "Acme"),
                ("app_domain", "acme.example"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.html);
    let sms = page.text_of("demo-sms").replace("&#39;", "'");
    let code = sms
        .split_whitespace()
        .find(|w| w.len() == 7 && w.ends_with('.'))
        .unwrap()
        .trim_end_matches('.')
        .to_string();
    assert_eq!(
        sms,
        format!(
            "Your Acme code is {code}. It expires in 10 minutes. Don't share it.\n\n@acme.example #{code}"
        )
    );
    assert!(page.html.contains("gsm7 · 1 segment"));
    assert!(
        page.html.contains("to +44740012****"),
        "the number is masked"
    );
    let after = app.dump().await;
    assert!(!after.contains("7400123456") && !after.contains("7400 123456"));
    assert_eq!(
        app.sql_text("SELECT CAST(COUNT(*) AS TEXT) FROM messages")
            .await
            .as_deref(),
        Some("0")
    );
    assert!(before.len() <= after.len());
    let bad = b.fill("/demo", &[("to", "12345")]).await;
    assert_eq!(bad.status, 422);
    app.stop().await;
}

async fn keys_are_shown_once_and_revoked_keys_stop(app: TestApp) {
    let mut b = Browser::new(&app);
    b.sign_up("Keys", "k@example.com").await;
    let made = b
        .submit("/dashboard/keys", &[("mode", "live"), ("name", "backend")])
        .await;
    assert_eq!(made.status, 201, "{}", made.html);
    let live = made.text_of("new-key");
    assert!(live.starts_with("line_live_"));
    let list = b.get("/dashboard/keys").await;
    let row = |html: &str| {
        html.split("<tr")
            .find(|r| r.contains("<td>backend</td>"))
            .unwrap()
            .to_string()
    };
    assert!(
        row(&list.html).contains("never"),
        "not used yet: {}",
        row(&list.html)
    );
    let (status, account) = app.get("/v1/account", &live).await;
    assert_eq!(status, 200, "{account}");
    let list = b.get("/dashboard/keys").await;
    assert!(!list.html.contains(&live));
    assert!(
        !row(&list.html).contains("never"),
        "used: {}",
        row(&list.html)
    );
    let id = list
        .html
        .split("/dashboard/keys/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let revoked = b.submit(&format!("/dashboard/keys/{id}/revoke"), &[]).await;
    assert_eq!(revoked.status, 303);
    let (status, _) = app.get("/v1/account", &live).await;
    assert_eq!(status, 401);
    let bad = b.submit("/dashboard/keys", &[("mode", "gold")]).await;
    assert_eq!(bad.status, 422);
    app.stop().await;
}

/// Every page and action on another tenant's object is a 404.
async fn another_tenants_objects_are_not_found(app: TestApp) {
    import(&app, &[("+447400100200", 150)]).await;
    let mut a = Browser::new(&app);
    let a_key = a.sign_up("Tenant A", "a@example.com").await;
    // A's objects: a message and verification, a key, a number, an endpoint, a member.
    let otp = a
        .submit("/dashboard/test-otp", &[("to", "+447700900111")])
        .await;
    assert_eq!(otp.status, 201, "{}", otp.html);
    let (_, v) = app
        .post("/v1/otp", &a_key, &json!({"to": "+447700900222"}))
        .await;
    let (verification, message) = (v["id"].as_str().unwrap(), v["message_id"].as_str().unwrap());
    let keys = a.get("/dashboard/keys").await;
    let key_id = keys
        .html
        .split("/dashboard/keys/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let rented = a
        .submit(
            "/dashboard/numbers",
            &[("mode", "live"), ("number", "+447400100200")],
        )
        .await;
    assert_eq!(rented.status, 303, "{}", rented.html);
    let numbers = a.get("/dashboard/numbers?mode=live").await;
    let number_id = numbers
        .html
        .split("/dashboard/numbers/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let (status, endpoint) = app
        .post(
            "/v1/webhooks",
            &a_key,
            &json!({"url": "http://127.0.0.1:9/hook"}),
        )
        .await;
    assert_eq!(status, 201, "{endpoint}");
    let endpoint = endpoint["id"].as_str().unwrap();
    let user_id = app
        .sql_text("SELECT id FROM users WHERE email = 'a@example.com'")
        .await
        .unwrap();

    let mut b = Browser::new(&app);
    b.sign_up("Tenant B", "b@example.com").await;
    for path in [
        format!("/dashboard/messages/{message}"),
        format!("/dashboard/test-otp/{verification}"),
        format!("/dashboard/webhooks/{endpoint}"),
        format!("/dashboard/numbers/{number_id}/release?mode=live"),
    ] {
        let page = b.get(&path).await;
        assert_eq!(page.status, 404, "{path}: {}", page.html);
    }
    for path in [
        format!("/dashboard/keys/{key_id}/revoke"),
        format!("/dashboard/numbers/{number_id}/release"),
        format!("/dashboard/webhooks/{endpoint}"),
        format!("/dashboard/webhooks/{endpoint}/rotate"),
        format!("/dashboard/webhooks/{endpoint}/delete"),
        format!("/dashboard/webhooks/{endpoint}/deliveries/whd_x/replay"),
    ] {
        let page = b
            .submit(&path, &[("mode", "live"), ("url", "http://127.0.0.1:9/x")])
            .await;
        assert_eq!(page.status, 404, "{path}: {}", page.html);
    }
    let page = b
        .submit(&format!("/dashboard/team/{user_id}/remove"), &[])
        .await;
    assert_eq!(page.status, 404);
    assert_eq!(
        a.get("/dashboard").await.status,
        200,
        "A is still signed in"
    );
    // B's lists show none of A's.
    for path in [
        "/dashboard/messages",
        "/dashboard/verifications",
        "/dashboard/webhooks",
        "/dashboard/numbers?mode=live",
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, 200);
        assert!(
            !page.html.contains(message)
                && !page.html.contains(endpoint)
                && !page.html.contains(&number_id),
            "{path}"
        );
    }
    // And A's things are intact.
    let (status, _) = app.get("/v1/account", &a_key).await;
    assert_eq!(status, 200);
    let (status, e) = app.get(&format!("/v1/webhooks/{endpoint}"), &a_key).await;
    assert_eq!(
        (status, e["url"].as_str()),
        (200, Some("http://127.0.0.1:9/hook"))
    );
    app.stop().await;
}

async fn invitations_add_members_with_roles(app: TestApp) {
    import(&app, &[("+447400100300", 150)]).await;
    let mut owner = Browser::new(&app);
    owner.sign_up("Team Co", "owner@example.com").await;
    let made = owner
        .submit("/dashboard/team/invite", &[("role", "developer")])
        .await;
    assert_eq!(made.status, 201, "{}", made.html);
    let link = made.text_of("invite-link");
    let path = link.strip_prefix(&app.base).unwrap().to_string();
    let stored = app.dump().await;
    assert!(
        !stored.contains(path.trim_start_matches("/invite/")),
        "only the link's hash is kept"
    );

    let mut dev = Browser::new(&app);
    let join = dev.get(&path).await;
    assert_eq!(join.status, 200);
    assert!(join.html.contains("developer"));
    let joined = dev
        .fill(
            &path,
            &[("email", "dev@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(joined.status, 303, "{}", joined.html);
    let team = dev.get("/dashboard/team").await;
    assert!(team.html.contains("owner@example.com") && team.html.contains("dev@example.com"));
    // A link works once.
    let again = Browser::new(&app)
        .force(
            &path,
            &[("email", "dev2@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(again.status, 404);
    // Developers work with keys but not with money or people.
    assert_eq!(
        dev.submit("/dashboard/keys", &[("mode", "test")])
            .await
            .status,
        201
    );
    for (path, fields) in [
        (
            "/dashboard/numbers",
            vec![("mode", "live"), ("number", "+447400100300")],
        ),
        ("/dashboard/settings", vec![("name", "Hijacked")]),
        ("/dashboard/team/invite", vec![("role", "owner")]),
    ] {
        let page = dev.submit(path, &fields).await;
        assert_eq!(page.status, 403, "{path}: {}", page.html);
    }
    // The owner removes the developer, whose session ends.
    let team = owner.get("/dashboard/team").await;
    let dev_id = team
        .html
        .split("/dashboard/team/")
        .filter_map(|s| s.split('/').next())
        .find(|s| s.starts_with("usr_"))
        .unwrap()
        .to_string();
    // An invitation the owner withdraws stops working.
    let spare = owner
        .submit("/dashboard/team/invite", &[("role", "owner")])
        .await;
    let spare = spare
        .text_of("invite-link")
        .strip_prefix(&app.base)
        .unwrap()
        .to_string();
    let listed = owner.get("/dashboard/team").await;
    let invite_id = listed
        .html
        .split("/dashboard/team/invites/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        owner
            .submit(&format!("/dashboard/team/invites/{invite_id}/revoke"), &[])
            .await
            .status,
        303
    );
    assert_eq!(Browser::new(&app).get(&spare).await.status, 404);
    assert_eq!(
        owner
            .submit(&format!("/dashboard/team/{dev_id}/remove"), &[])
            .await
            .status,
        303
    );
    assert_eq!(dev.get("/dashboard").await.status, 303);
    assert_eq!(
        Browser::new(&app)
            .log_in("dev@example.com", PASSWORD)
            .await
            .status,
        401
    );
    // Links a removed member made die with their membership.
    let second = owner
        .submit("/dashboard/team/invite", &[("role", "owner")])
        .await;
    let second = second
        .text_of("invite-link")
        .strip_prefix(&app.base)
        .unwrap()
        .to_string();
    let mut co = Browser::new(&app);
    let joined = co
        .fill(
            &second,
            &[("email", "co@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(joined.status, 303, "{}", joined.html);
    let theirs = co
        .submit("/dashboard/team/invite", &[("role", "owner")])
        .await;
    let theirs = theirs
        .text_of("invite-link")
        .strip_prefix(&app.base)
        .unwrap()
        .to_string();
    let co_id = app
        .sql_text("SELECT id FROM users WHERE email = 'co@example.com'")
        .await
        .unwrap();
    assert_eq!(
        owner
            .submit(&format!("/dashboard/team/{co_id}/remove"), &[])
            .await
            .status,
        303
    );
    assert_eq!(Browser::new(&app).get(&theirs).await.status, 404);
    app.stop().await;
}

async fn password_changes_sign_out_other_browsers(app: TestApp) {
    let mut first = Browser::new(&app);
    first.sign_up("Pw", "pw@example.com").await;
    let mut second = Browser::new(&app);
    assert_eq!(second.log_in("pw@example.com", PASSWORD).await.status, 303);
    let wrong = first
        .submit(
            "/dashboard/password",
            &[
                ("current_password", "nope nope nope"),
                ("new_password", "a new long password"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 422);
    let ok = first
        .submit(
            "/dashboard/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", "a new long password"),
            ],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.html);
    assert_eq!(first.get("/dashboard").await.status, 200);
    assert_eq!(second.get("/dashboard").await.status, 303);
    assert_eq!(
        Browser::new(&app)
            .log_in("pw@example.com", "a new long password")
            .await
            .status,
        303
    );
    app.stop().await;
}

async fn pages_show_messages_numbers_usage_and_settings(app: TestApp) {
    import(&app, &[("+447400100400", 175)]).await;
    let mut b = Browser::new(&app);
    b.sign_up("Pages", "p@example.com").await;
    let otp = b.submit("/dashboard/test-otp", &[]).await;
    assert_eq!(otp.status, 201, "{}", otp.html);
    assert!(otp.text_of("otp-request").contains("+447700900123"));
    let status_path = otp
        .html
        .split("data-poll=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    app.drain().await;
    app.advance_and_drain(Duration::from_millis(1100)).await;
    let live = b.get(&status_path).await;
    assert_eq!(
        live.text_of("otp-message-status"),
        "delivered",
        "{}",
        live.html
    );
    assert!(live.text_of("otp-sms").contains("Your Pages code is"));
    let messages = b.get("/dashboard/messages?status=delivered").await;
    assert!(messages.html.contains("+447700900123"), "{}", messages.html);
    assert!(
        b.get("/dashboard/messages?status=failed")
            .await
            .html
            .contains("No messages match")
    );
    assert_eq!(
        b.get("/dashboard/messages?from=yesterday").await.status,
        422
    );
    assert!(
        b.get("/dashboard/verifications")
            .await
            .html
            .contains("pending")
    );

    let rented = b
        .submit(
            "/dashboard/numbers",
            &[("mode", "live"), ("number", "+447400100400")],
        )
        .await;
    assert_eq!(rented.status, 303, "{}", rented.html);
    let usage = b.get("/dashboard/usage").await;
    assert_eq!(usage.text_of("number-fees"), "£1.75");
    assert!(usage.html.contains("<rect"), "the chart has a bar");
    let numbers = b.get("/dashboard/numbers?mode=live").await;
    let release = numbers
        .html
        .split("href=\"")
        .find(|h| h.contains("/release"))
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let confirm = b.get(&release).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.html.contains("Release +447400100400?"));
    let path = release.split('?').next().unwrap().to_string();
    let released = b.submit(&path, &[("mode", "live")]).await;
    assert_eq!(
        released.location.as_deref(),
        Some("/dashboard/numbers?mode=live&done=released")
    );
    let numbers = b.get("/dashboard/numbers?mode=live&done=released").await;
    assert!(numbers.html.contains("released") && !numbers.html.contains("Release…"));
    let csv = b.get("/dashboard/usage.csv").await;
    assert!(
        csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        csv.html
            .lines()
            .nth(1)
            .unwrap()
            .ends_with(",0,0,0,175,0,175"),
        "{}",
        csv.html
    );

    let saved = b
        .submit(
            "/dashboard/settings",
            &[
                ("name", "Pages Two"),
                ("default_sender", "PAGES"),
                ("allowed_countries", "GB, IE"),
                ("spend_cap", "12.50"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.html);
    let settings = b.get("/dashboard/settings").await;
    assert!(settings.html.contains("value=\"12.50\"") && settings.html.contains("GB, IE"));
    let bad = b
        .submit(
            "/dashboard/settings",
            &[("name", "x"), ("spend_cap", "lots")],
        )
        .await;
    assert_eq!(bad.status, 422);
    app.stop().await;
}

async fn webhooks_are_managed_with_their_delivery_log(app: TestApp) {
    use crate::webhooks::{Receiver, dispatch, python_verifies};
    let (url, receiver) = Receiver::start().await;
    let mut b = Browser::new(&app);
    let key = b.sign_up("Hooks", "h@example.com").await;
    let made = b
        .submit(
            "/dashboard/webhooks",
            &[
                ("url", &url),
                ("events", "message.sent"),
                ("events", "message.delivered"),
            ],
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.html);
    let secret = made.text_of("webhook-secret");
    assert!(secret.starts_with("whsec_"), "{secret}");
    let id = made
        .html
        .split("action=\"/dashboard/webhooks/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let path = format!("/dashboard/webhooks/{id}");
    assert!(
        !b.get(&path).await.html.contains(&secret),
        "the secret is shown once"
    );

    let (status, _) = app
        .post(
            "/v1/sms",
            &key,
            &json!({"to": "+447700900123", "body": "hi"}),
        )
        .await;
    assert_eq!(status, 202);
    app.drain().await;
    app.advance_and_drain(Duration::from_millis(1100)).await;
    assert!(dispatch(&app).await >= 2);
    {
        let got = receiver.got.lock().unwrap();
        assert_eq!(got.len(), 2);
        assert!(python_verifies(&secret, &got[0].0, &got[0].1));
    }
    let log = b.get(&path).await;
    assert!(log.html.contains("message.delivered") && log.html.contains("message.sent"));
    assert!(
        log.html.contains("HTTP 200") && log.html.contains(" ms"),
        "{}",
        log.html
    );
    assert!(
        log.html.contains("<pre class=\"excerpt\">ok</pre>"),
        "the response excerpt"
    );

    let delivery = log
        .html
        .split("/deliveries/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let replayed = b
        .submit(&format!("{path}/deliveries/{delivery}/replay"), &[])
        .await;
    assert_eq!(replayed.status, 303);
    assert_eq!(dispatch(&app).await, 1);
    assert_eq!(receiver.got.lock().unwrap().len(), 3);
    let log = b.get(&path).await;
    let row = log
        .html
        .split("<tr>")
        .find(|r| r.contains(&delivery))
        .unwrap()
        .to_string();
    assert_eq!(row.matches("HTTP 200").count(), 2, "both attempts: {row}");

    // Edit: only delivered events, and pause it.
    let saved = b
        .submit(
            &path,
            &[
                ("url", &url),
                ("events", "message.delivered"),
                ("description", "prod"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.html);
    let (_, e) = app.get(&format!("/v1/webhooks/{id}"), &key).await;
    assert_eq!(e["events"], json!(["message.delivered"]));
    assert_eq!(
        (e["enabled"].as_bool(), e["description"].as_str()),
        (Some(false), Some("prod"))
    );
    let bad = b.submit(&path, &[("url", "ftp://nope")]).await;
    assert_eq!(bad.status, 422);

    let rotated = b.submit(&format!("{path}/rotate"), &[]).await;
    assert_eq!(rotated.status, 200);
    let new_secret = rotated.text_of("webhook-secret");
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);

    assert_eq!(b.submit(&format!("{path}/delete"), &[]).await.status, 303);
    let (status, _) = app.get(&format!("/v1/webhooks/{id}"), &key).await;
    assert_eq!(status, 404);
    app.stop().await;
}

const PROXY: &str = "[dashboard]\nbehind_proxy = true\n";

async fn behind_a_tls_proxy_cookies_are_secure_and_host_bound(app: TestApp) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let https = |req: reqwest::RequestBuilder| {
        req.header("x-forwarded-proto", "https")
            // The client may claim any address; our proxy appends the real one.
            .header("x-forwarded-for", "198.51.100.7, 203.0.113.9")
    };
    let form = https(client.get(app.url("/signup"))).send().await.unwrap();
    let form_cookie = form.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        form_cookie.starts_with("__Host-line_form=") && form_cookie.contains("; Secure"),
        "{form_cookie}"
    );
    let form_cookie = form_cookie.split(';').next().unwrap().to_string();
    let html = form.text().await.unwrap();
    let at = html.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = html[at..].split('"').next().unwrap().to_string();
    let resp = https(client.post(app.url("/signup")))
        .header("cookie", &form_cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("company", "Tls"),
            ("email", "tls@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.starts_with("__Host-line_session="), "{set}");
    assert!(
        set.contains("; Secure") && set.contains("Path=/") && !set.contains("Domain"),
        "{set}"
    );
    let secure = set.split(';').next().unwrap().to_string();
    let page = https(client.get(app.url("/dashboard")))
        .header("cookie", &secure)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    // Over HTTPS a plain-named cookie (one another host could plant) opens nothing.
    let planted = secure.replacen("__Host-line_session", "line_session", 1);
    let page = https(client.get(app.url("/dashboard")))
        .header("cookie", &planted)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);
    // The throttle counted the address our proxy saw, not the one the client claimed.
    let keys = app
        .sql_text("SELECT key FROM rate_limits WHERE key LIKE 'signup-ip:%'")
        .await;
    assert_eq!(keys.as_deref(), Some("signup-ip:203.0.113.9"));
    app.stop().await;
}

const INVITE_ONLY: &str = "[dashboard]\nsignup = \"invite\"\n";

async fn sign_up_can_be_invitation_only(app: TestApp) {
    let mut b = Browser::new(&app);
    assert!(b.get("/signup").await.html.contains("by invitation"));
    let page = b
        .force(
            "/signup",
            &[
                ("company", "X"),
                ("email", "x@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 403);
    assert!(b.session().is_none());
    // The operator's link brings the first owner of a tenant made on the command line.
    let token = line::usecase::accounts::operator_invite(app.line.core(), &app.tenant_id, "owner")
        .await
        .unwrap();
    let path = format!("/invite/{}", token.expose());
    let joined = b
        .fill(
            &path,
            &[("email", "first@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(joined.status, 303, "{}", joined.html);
    let settings = b.get("/dashboard/settings").await;
    assert!(
        settings.html.contains("value=\"Acme\""),
        "the CLI's tenant: {}",
        settings.html
    );
    app.stop().await;
}

const CLOSED: &str = "[dashboard]\nsignup = \"closed\"\n";

async fn closed_sign_up_makes_no_accounts(app: TestApp) {
    let mut b = Browser::new(&app);
    assert!(b.get("/signup").await.html.contains("made by the operator"));
    let page = b
        .force(
            "/signup",
            &[
                ("company", "X"),
                ("email", "x@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 403);
    let refused =
        line::usecase::accounts::operator_invite(app.line.core(), &app.tenant_id, "owner").await;
    assert_eq!(
        refused.err().map(|e| e.code.as_str()),
        Some("signup_closed")
    );
    app.stop().await;
}

backends!(app:
    sign_up_gives_a_session_and_a_test_key_shown_once,
    bad_sign_ups_say_what_is_wrong,
    login_logout_and_wrong_passwords,
    sessions_expire,
    forms_without_the_token_or_from_elsewhere_are_refused,
    the_demo_shows_the_exact_sms_and_keeps_nothing,
    keys_are_shown_once_and_revoked_keys_stop,
    invitations_add_members_with_roles,
    password_changes_sign_out_other_browsers,
    pages_show_messages_numbers_usage_and_settings,
);
const PRIVATE_OK: &str = crate::webhooks::PRIVATE_OK;
backends!(app with PRIVATE_OK in scoped:
    another_tenants_objects_are_not_found,
    webhooks_are_managed_with_their_delivery_log,
);
backends!(app with PROXY in proxied: behind_a_tls_proxy_cookies_are_secure_and_host_bound);
backends!(app with TIGHT in throttled: logins_sign_ups_and_previews_are_throttled);
backends!(app with INVITE_ONLY in invite_only: sign_up_can_be_invitation_only);
backends!(app with CLOSED in closed: closed_sign_up_makes_no_accounts);
