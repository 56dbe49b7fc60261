//! `POST /api/v1/requests`: a request from the dashboard's backend, for a customer it has
//! logged in.
//!
//! `Authorization: Bearer <[http] api token>` (compared in constant time), a JSON object of at
//! most 64 KiB:
//!
//! ```json
//! {"email": "julie@example.test", "name": "Julie Martin", "category": "billing",
//!  "subject": "optional", "message": "10 to 5,000 characters", "locale": "fr",
//!  "project_url": "...", "browser": "...", "page_url": "...",
//!  "account": {"plan": "Pro", "company": "Boulangerie Martin"}}
//! ```
//!
//! Answers: `201 {ticket, category, status, due_at, promise}`; `422 {"errors": [{field, code,
//! message}]}`; `400` for a body that is not a JSON object; `401`; `413`; `429` with
//! `Retry-After`; `503` with `Retry-After` when the database cannot take it (nothing stored).
//! An `Idempotency-Key` header (1 to 255 visible ASCII characters) makes a retry get the first
//! answer again (`Idempotent-Replayed: true`) and file nothing new.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::file::FileError;
use super::request::{Checks, Code, FieldError, Lang, Submitted, validate};
use crate::store::HttpDoor;

/// Longest Idempotency-Key taken.
const MAX_KEY: usize = 255;

/// `POST /api/v1/requests`.
pub(super) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !authorised(&state, &headers) {
        let mut response = problem(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                &format!("the body is over {} bytes", super::MAX_BODY),
            );
        }
        Err(rejection) => {
            return problem(rejection.status(), "unreadable", &rejection.body_text());
        }
    };
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body must be a JSON object",
        );
    };
    let lang = Lang::of(fields.get("locale").and_then(Value::as_str).unwrap_or("en"));
    let (submitted, mut errors) = read_fields(fields, lang);
    let key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(()) => {
            errors.push(FieldError::new("Idempotency-Key", Code::Invalid, lang));
            None
        }
    };
    let classifier = state.pipeline().classifier();
    let checked = validate(
        submitted,
        HttpDoor::Api,
        &Checks {
            classifier: &classifier,
            own_addresses: &state.own_addresses,
            support_address: state.support_address(),
            category_required: false,
            lang,
        },
    );
    let request = match checked {
        Ok(request) if errors.is_empty() => request,
        Ok(_) => return unprocessable(errors),
        Err(more) => {
            errors.extend(more);
            return unprocessable(errors);
        }
    };
    match state.filer.file(request, key).await {
        Ok((filed, replayed)) => {
            if !replayed {
                state.wake.notify_one();
            }
            let mut response = (StatusCode::CREATED, Json(filed.answer)).into_response();
            if replayed {
                response
                    .headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            response
        }
        Err(FileError::KeyReused) => {
            unprocessable(vec![FieldError::new("Idempotency-Key", Code::Reused, lang)])
        }
        Err(FileError::RateLimited { retry_after }) => {
            let mut response = problem(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                &format!("too many requests from this address; retry in {retry_after} s"),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            response
        }
        Err(FileError::Refused(why)) => unprocessable(vec![FieldError {
            message: format!(
                "{} ({why})",
                FieldError::new("email", Code::NotAllowed, lang).message
            ),
            ..FieldError::new("email", Code::NotAllowed, lang)
        }]),
        Err(FileError::Unavailable(e)) => {
            tracing::warn!("request not filed, the database is unavailable: {e}");
            let mut response = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the request could not be stored now; nothing was kept, retry later",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            response
        }
        Err(FileError::Failed(why)) => {
            tracing::error!("request not filed: {why}");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the request could not be filed; nothing was kept",
            )
        }
    }
}

/// Whether the request carries the API token, compared in constant time (as hashes, so the
/// token's length does not show either).
fn authorised(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(expected) = &state.api_token else {
        return false;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(given) = given else {
        return false;
    };
    let given = Sha256::digest(given.as_bytes());
    bool::from(given.as_slice().ct_eq(expected.as_slice()))
}

/// The Idempotency-Key, if any; `Err` when it is empty, too long or not visible ASCII.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ()> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().map_err(|_| ())?.trim();
    if key.is_empty() || key.len() > MAX_KEY || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(());
    }
    Ok(Some(key.to_string()))
}

/// The JSON object's fields as submitted, and the errors of type (a number where text goes,
/// an unknown field) found on the way.
fn read_fields(fields: serde_json::Map<String, Value>, lang: Lang) -> (Submitted, Vec<FieldError>) {
    let mut s = Submitted::default();
    let mut errors = Vec::new();
    for (name, value) in fields {
        let slot = match name.as_str() {
            "email" => &mut s.email,
            "name" => &mut s.name,
            "category" => &mut s.category,
            "subject" => &mut s.subject,
            "message" => &mut s.message,
            "locale" => &mut s.locale,
            "project_url" => &mut s.project_url,
            "page_url" => &mut s.page_url,
            "browser" => &mut s.browser,
            "account" => {
                match value {
                    Value::Object(details) => s.account = flatten(details),
                    Value::Null => {}
                    _ => errors.push(FieldError::new("account", Code::WrongType, lang)),
                }
                continue;
            }
            _ => {
                errors.push(FieldError::new(&name, Code::UnknownField, lang));
                continue;
            }
        };
        match value {
            Value::String(text) => *slot = Some(text),
            Value::Null => {}
            _ => errors.push(FieldError::new(&name, Code::WrongType, lang)),
        }
    }
    (s, errors)
}

/// The account object as (name, value) text pairs: text as is, numbers and booleans written
/// out, nested values as compact JSON, nulls left out.
fn flatten(details: serde_json::Map<String, Value>) -> Vec<(String, String)> {
    details
        .into_iter()
        .filter_map(|(k, v)| {
            let text = match v {
                Value::Null => return None,
                Value::String(s) => s,
                other => other.to_string(),
            };
            Some((k, text))
        })
        .collect()
}

fn unprocessable(errors: Vec<FieldError>) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "errors": errors })),
    )
        .into_response()
}

/// An answer about the whole request, in the same `errors` shape, without a field.
fn problem(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "errors": [{ "code": code, "message": message }] })),
    )
        .into_response()
}
