//! `GET /support` and `POST /support`: the help page's form, server-rendered.
//!
//! The customer arrives from the dashboard with `?account=TOKEN` (see `link.rs`); without a
//! valid one the page says to log in to the dashboard or write to the support address. The
//! page's language is `?lang=`, else the browser's, else the default. A submission is checked
//! like an API request (a category is required here), its CSRF token's nonce is its
//! idempotency key, and it ends on the confirmation screen, or back on the form with each error
//! next to its field and the text kept.

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use super::file::{FileError, Filed};
use super::link::{self, Account, TokenError};
use super::pages::{ConfirmationPage, FormPage, NoAccountPage, PageErrors};
use super::request::{Checks, Code, FieldError, Lang, MAX_CHARS, MIN_CHARS, Submitted, validate};
use super::{AppState, html};
use crate::store::{self, HttpDoor};

/// `GET /support`'s query.
#[derive(Debug, Default, Deserialize)]
pub(super) struct PageQuery {
    account: Option<String>,
    lang: Option<String>,
}

/// The form's fields as posted.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Posted {
    account: Option<String>,
    csrf: Option<String>,
    lang: Option<String>,
    category: Option<String>,
    message: Option<String>,
}

/// `GET /support`.
pub(super) async fn show(
    State(state): State<AppState>,
    query: Result<Query<PageQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let query = query.map(|q| q.0).unwrap_or_default();
    let lang = page_lang(&state, query.lang.as_deref(), &headers);
    let account = match check_account(&state, query.account.as_deref()) {
        Ok(account) => account,
        Err(reason) => return no_account(&state, &lang, reason),
    };
    let page = form_page(&state, &lang, &account, query.account.unwrap_or_default());
    render(&state, &lang, "support", StatusCode::OK, &page)
}

/// `POST /support`.
pub(super) async fn submit(
    State(state): State<AppState>,
    query: Result<Query<PageQuery>, QueryRejection>,
    headers: HeaderMap,
    posted: Result<Form<Posted>, FormRejection>,
) -> Response {
    let query = query.map(|q| q.0).unwrap_or_default();
    let posted = match posted {
        Ok(Form(posted)) => posted,
        Err(rejection) => {
            let lang = page_lang(&state, query.lang.as_deref(), &headers);
            let text = match Lang::of(&lang) {
                Lang::Fr => "Le formulaire n'a pas pu être lu (trop long ?).",
                Lang::En => "The form could not be read (too long?).",
            };
            return html(
                rejection.status(),
                format!("<!DOCTYPE html><p>{text}</p>\n"),
            );
        }
    };
    let lang = page_lang(
        &state,
        posted.lang.as_deref().or(query.lang.as_deref()),
        &headers,
    );
    let token = posted.account.clone().unwrap_or_default();
    let account = match check_account(&state, Some(&token)) {
        Ok(account) => account,
        Err(reason) => return no_account(&state, &lang, reason),
    };
    let mut page = form_page(&state, &lang, &account, token);
    page.category = posted.category.clone().unwrap_or_default();
    page.message = posted.message.clone().unwrap_or_default();
    let language = Lang::of(&lang);

    let secret = state.link_secret.as_ref().map(|s| s.expose().as_bytes());
    let nonce = match secret.map(|secret| {
        link::verify_csrf(
            secret,
            &account.email,
            posted.csrf.as_deref().unwrap_or(""),
            store::now(),
        )
    }) {
        Some(Ok(nonce)) => nonce,
        _ => {
            page.errors.general = expired_form(language).into();
            return render(&state, &lang, "support", StatusCode::FORBIDDEN, &page);
        }
    };

    let classifier = state.pipeline().classifier();
    let checked = validate(
        Submitted {
            email: Some(account.email.clone()),
            name: Some(account.name.clone()),
            category: posted.category,
            message: posted.message,
            locale: Some(lang.clone()),
            ..Submitted::default()
        },
        HttpDoor::Form,
        &Checks {
            classifier: &classifier,
            own_addresses: &state.own_addresses,
            support_address: state.support_address(),
            category_required: true,
            lang: language,
        },
    );
    let request = match checked {
        Ok(request) => request,
        Err(errors) => {
            place_errors(&mut page.errors, errors);
            return render(
                &state,
                &lang,
                "support",
                StatusCode::UNPROCESSABLE_ENTITY,
                &page,
            );
        }
    };

    let (status, general) = match state.filer.file(request, Some(nonce)).await {
        Ok((filed, replayed)) => {
            if !replayed {
                state.wake.notify_one();
            }
            return confirmation(&state, &lang, &account, &filed);
        }
        Err(FileError::KeyReused) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            already_sent(language).into(),
        ),
        Err(FileError::RateLimited { retry_after }) => (
            StatusCode::TOO_MANY_REQUESTS,
            rate_limited(language, retry_after),
        ),
        Err(FileError::Refused(why)) => {
            tracing::warn!(email = %account.email, "form request refused: {why}");
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                FieldError::new("email", Code::NotAllowed, language).message,
            )
        }
        Err(e @ (FileError::Unavailable(_) | FileError::Failed(_))) => {
            tracing::error!(email = %account.email, "form request not filed: {e}");
            let status = if matches!(e, FileError::Unavailable(_)) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            (status, unavailable(language).into())
        }
    };
    page.errors.general = general;
    render(&state, &lang, "support", status, &page)
}

/// The account of a link, or why there is none (`missing`, `expired`, `invalid`).
fn check_account(state: &AppState, token: Option<&str>) -> Result<Account, &'static str> {
    let token = token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or("missing")?;
    let secret = state.link_secret.as_ref().ok_or("invalid")?;
    let account = link::verify_account(secret.expose().as_bytes(), token, store::now()).map_err(
        |e| match e {
            TokenError::Expired => "expired",
            TokenError::Malformed | TokenError::BadSignature => "invalid",
        },
    )?;
    // The dashboard's word on the address, but still an address.
    if account.email.parse::<lettre::Address>().is_err() {
        return Err("invalid");
    }
    Ok(account)
}

fn page_lang(state: &AppState, wanted: Option<&str>, headers: &HeaderMap) -> String {
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    state.pages().locale(wanted, accept, &state.default_locale)
}

fn form_page(state: &AppState, lang: &str, account: &Account, token: String) -> FormPage {
    let csrf = state
        .link_secret
        .as_ref()
        .map(|s| link::csrf_token(s.expose().as_bytes(), &account.email, store::now()))
        .unwrap_or_default();
    FormPage {
        lang: lang.to_string(),
        email: account.email.to_ascii_lowercase(),
        name: account.name.clone(),
        account_token: token,
        csrf,
        category: String::new(),
        message: String::new(),
        errors: PageErrors::default(),
        min_chars: MIN_CHARS,
        max_chars: MAX_CHARS,
        support_address: state.support_address().to_string(),
        support_name: state.support_name.clone(),
    }
}

/// Each error next to its field; the others (the address, taken from the link) above the
/// form.
fn place_errors(errors: &mut PageErrors, found: Vec<FieldError>) {
    for e in found {
        let slot = match e.field.as_str() {
            "category" => &mut errors.category,
            "message" => &mut errors.message,
            _ => &mut errors.general,
        };
        if slot.is_empty() {
            *slot = e.message;
        }
    }
}

fn confirmation(state: &AppState, lang: &str, account: &Account, filed: &Filed) -> Response {
    let classifier = state.pipeline().classifier();
    let category = classifier.category(&filed.answer.category).map_or_else(
        || filed.answer.category.clone(),
        |c| c.label_for(lang).to_string(),
    );
    let due = filed
        .answer
        .due_at
        .as_deref()
        .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
        .map(|d| crate::reply::due_words(lang, d.to_utc(), state.timezone))
        .unwrap_or_default();
    let page = ConfirmationPage {
        lang: lang.to_string(),
        ticket: filed.answer.ticket.clone(),
        category,
        promise: filed.answer.promise.clone(),
        due,
        email: account.email.to_ascii_lowercase(),
        // Held back (a rate limit, a bouncing address) or none for a reply: no promise of mail.
        acknowledged: matches!(
            filed.acknowledgement.as_deref(),
            Some("queued" | "sending" | "sent")
        ),
        support_address: state.support_address().to_string(),
        support_name: state.support_name.clone(),
    };
    render(state, lang, "confirmation", StatusCode::OK, &page)
}

fn no_account(state: &AppState, lang: &str, reason: &'static str) -> Response {
    let page = NoAccountPage {
        lang: lang.to_string(),
        reason,
        support_address: state.support_address().to_string(),
        support_name: state.support_name.clone(),
    };
    let status = if reason == "missing" {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    };
    render(state, lang, "no_account", status, &page)
}

fn render<T: serde::Serialize>(
    state: &AppState,
    lang: &str,
    name: &str,
    status: StatusCode,
    ctx: &T,
) -> Response {
    match state.pages().render(lang, name, ctx) {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!("form page: {e}");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!DOCTYPE html><p>Internal error.</p>\n".into(),
            )
        }
    }
}

fn expired_form(lang: Lang) -> &'static str {
    match lang {
        Lang::Fr => "Cette page a expiré : vérifiez votre message et envoyez-le à nouveau.",
        Lang::En => "This page has expired: check your message and send it again.",
    }
}

/// The page's token already filed another request: the customer went back and changed it.
fn already_sent(lang: Lang) -> &'static str {
    match lang {
        Lang::Fr => {
            "Ce formulaire a déjà été envoyé : rechargez la page pour envoyer une autre demande."
        }
        Lang::En => "This form was already sent: reload the page to send another request.",
    }
}

fn rate_limited(lang: Lang, retry_after: u64) -> String {
    let minutes = retry_after.div_ceil(60);
    match lang {
        Lang::Fr => format!(
            "Vous avez envoyé beaucoup de demandes récemment : réessayez dans {minutes} min, ou écrivez-nous par e-mail."
        ),
        Lang::En => format!(
            "You have sent many requests recently: try again in {minutes} min, or write to us by e-mail."
        ),
    }
}

fn unavailable(lang: Lang) -> &'static str {
    match lang {
        Lang::Fr => {
            "Votre demande n'a pas pu être enregistrée pour le moment : réessayez dans un instant, ou écrivez-nous par e-mail."
        }
        Lang::En => {
            "Your request could not be stored right now: try again in a moment, or write to us by e-mail."
        }
    }
}
