//! `GET /users/{login}`: a GitHub-REST-style look-alike with a request
//! budget ([`crate::budget`]), and `GET /_stats`, what it answered so far.
//!
//! Every request to `/users/` is charged, whatever it asks for (as GitHub
//! does): within the budget it answers 200 with the user, or 404 for a
//! login GitHub could not have; past it, 403 `API rate limit exceeded`
//! with `X-RateLimit-Remaining: 0` and no `Retry-After` (GitHub sends that
//! only on its secondary limits).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::budget::{Charge, Config, Window};
use crate::routes::json_response;

/// GitHub's documentation link on its error bodies, kept for shape.
const DOCS_URL: &str = "https://docs.github.com/rest";

/// Longest login GitHub allows.
const MAX_LOGIN: usize = 39;

/// What `/users/` has answered, by kind.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    /// 200: a user.
    ok: u64,
    /// 403: the budget was spent.
    rate_limited: u64,
    /// 404: not a possible login.
    not_found: u64,
}

/// The budget and the counters, under one lock so a charge and its count
/// can never disagree.
#[derive(Debug, Default)]
struct Ledger {
    window: Window,
    counts: Counts,
}

#[derive(Clone)]
struct UsersState {
    config: Config,
    ledger: Arc<Mutex<Ledger>>,
}

/// The routes of this module with a fresh budget.
pub(crate) fn routes(config: &Config) -> Router {
    let state = UsersState {
        config: config.clone(),
        ledger: Arc::default(),
    };
    Router::new()
        .route("/users/{login}", get(user))
        .route("/_stats", get(stats))
        .with_state(state)
}

impl UsersState {
    /// Charges one request and counts how it will be answered (`found`:
    /// whether the login is a possible one).
    fn charge(&self, found: bool) -> Charge {
        // A poisoned lock only means a request panicked mid-update; the
        // numbers are still usable for a demo server.
        let mut ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        let charge = ledger.window.charge(
            SystemTime::now(),
            self.config.budget,
            self.config.budget_window,
        );
        let counts = &mut ledger.counts;
        let count = match (charge.allowed, found) {
            (false, _) => &mut counts.rate_limited,
            (true, true) => &mut counts.ok,
            (true, false) => &mut counts.not_found,
        };
        *count = count.saturating_add(1);
        charge
    }
}

/// `GET /users/{login}`.
async fn user(State(state): State<UsersState>, Path(login): Path<String>) -> Response {
    let found = valid_login(&login);
    let charge = state.charge(found);
    let (status, body) = if !charge.allowed {
        (
            StatusCode::FORBIDDEN,
            json!({"message": "API rate limit exceeded", "documentation_url": DOCS_URL}),
        )
    } else if found {
        (StatusCode::OK, user_json(&login))
    } else {
        (
            StatusCode::NOT_FOUND,
            json!({"message": "Not Found", "documentation_url": DOCS_URL}),
        )
    };
    let headers = charge.headers(state.config.ratelimit_headers, state.config.budget_window);
    (headers, json_response(status, None, body, None, false)).into_response()
}

/// `GET /_stats`: the counters and the budget as it stands, without
/// charging anything.
async fn stats(State(state): State<UsersState>) -> Response {
    let ledger = state.ledger.lock().unwrap_or_else(PoisonError::into_inner);
    let Counts {
        ok,
        rate_limited,
        not_found,
    } = ledger.counts;
    let (used, remaining, reset) = ledger.window.peek(SystemTime::now(), state.config.budget);
    let window_ms = u64::try_from(state.config.budget_window.as_millis()).unwrap_or(u64::MAX);
    let body = json!({
        "users": {
            "requests": ok + rate_limited + not_found,
            "ok": ok,
            "rate_limited": rate_limited,
            "not_found": not_found,
        },
        "budget": {
            "limit": state.config.budget,
            "window_ms": window_ms,
            "used": used,
            "remaining": remaining,
            "reset": reset,
            "windows": ledger.window.windows,
        },
    });
    drop(ledger);
    json_response(StatusCode::OK, None, body, None, false)
}

/// Whether GitHub could have this login: 1 to 39 ASCII letters, digits and
/// single hyphens, not at either end.
fn valid_login(login: &str) -> bool {
    (1..=MAX_LOGIN).contains(&login.len())
        && login
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !login.starts_with('-')
        && !login.ends_with('-')
        && !login.contains("--")
}

/// The user answered for a valid login: a stable `id` and a `name` made
/// from the login (`grace-hopper` is `Grace Hopper`).
fn user_json(login: &str) -> Value {
    let name: Vec<String> = login
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    let id = stable_id(login);
    json!({
        "login": login,
        "id": id,
        "node_id": format!("U_demo{id}"),
        "type": "User",
        "name": name.join(" "),
        "public_repos": id % 97,
        "followers": id % 1009,
    })
}

/// FNV-1a of the lower-cased login, folded to 8 digits: the same login
/// always has the same id, in every run.
fn stable_id(login: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in login.bytes() {
        hash ^= u64::from(b.to_ascii_lowercase());
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    1 + hash % 99_999_999
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_like_githubs() {
        for ok in ["a", "octocat", "grace-hopper", "A1-b2", &"x".repeat(39)] {
            assert!(valid_login(ok), "{ok:?}");
        }
        for bad in ["", "-a", "a-", "a--b", "a b", "a_b", "é", &"x".repeat(40)] {
            assert!(!valid_login(bad), "{bad:?}");
        }
    }

    #[test]
    fn users_are_stable() {
        let user = user_json("grace-hopper");
        assert_eq!(user["name"], "Grace Hopper");
        assert_eq!(user["login"], "grace-hopper");
        assert_eq!(user["id"], user_json("Grace-Hopper")["id"]);
        assert_ne!(user["id"], user_json("octocat")["id"]);
    }
}
