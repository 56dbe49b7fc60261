//! Signed account links and the form's CSRF tokens, both HMAC-SHA256 under the link secret
//! that supportd shares with the dashboard (`[http] link_secret_file`).
//!
//! # The account link
//! The dashboard, where the customer is logged in, sends them to
//! `/support?account=TOKEN`, with
//!
//! ```text
//! TOKEN   = b64(email) "." b64(name) "." expires "." b64(signature)
//! signature = HMAC-SHA256(secret, "supportd-link-v1\n" email "\n" name "\n" expires)
//! ```
//!
//! `b64` is base64url without padding (RFC 4648 §5), `name` may be empty, `expires` is unix
//! seconds in decimal. Nothing else is trusted about who the customer is: the form takes the
//! address and name from the link, never from a field the browser sends.
//!
//! # The CSRF token
//! `issued "." nonce "." b64(HMAC-SHA256(secret, "supportd-csrf-v1\n" email "\n" issued "\n"
//! nonce))`: bound to the account of the page that carried it, valid for [`CSRF_TTL`]. Its
//! nonce is also the submission's idempotency key, so a form sent twice (a double click, a
//! reload of the answer) files one request.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const LINK_CONTEXT: &str = "supportd-link-v1";
const CSRF_CONTEXT: &str = "supportd-csrf-v1";

/// How long a form page may stay open before it must be reloaded to be sent, in seconds.
pub const CSRF_TTL: i64 = 4 * 3600;

/// A clock this far ahead of ours (the dashboard's, another of our processes) is tolerated.
const CLOCK_SKEW: i64 = 300;

/// Who the customer is, as the dashboard vouched for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// As signed (compared and stored lower-case).
    pub email: String,
    /// Empty when the dashboard gave none.
    pub name: String,
    /// Unix seconds.
    pub expires: i64,
}

/// Why a link or CSRF token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a token of the expected shape")]
    Malformed,
    #[error("the signature does not match")]
    BadSignature,
    #[error("expired")]
    Expired,
}

fn mac(secret: &[u8], context: &str, parts: &[&str]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(context.as_bytes());
    for part in parts {
        mac.update(b"\n");
        mac.update(part.as_bytes());
    }
    mac
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64_text(text: &str) -> Result<String, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| TokenError::Malformed)?;
    String::from_utf8(bytes).map_err(|_| TokenError::Malformed)
}

/// The account link token for `email` and `name` (may be empty), valid until `expires` (unix
/// seconds).
pub fn sign_account(secret: &[u8], email: &str, name: &str, expires: i64) -> String {
    let expires = expires.to_string();
    let sig = mac(secret, LINK_CONTEXT, &[email, name, &expires])
        .finalize()
        .into_bytes();
    format!(
        "{}.{}.{expires}.{}",
        b64(email.as_bytes()),
        b64(name.as_bytes()),
        b64(&sig)
    )
}

/// Checks an account link token at `now` (unix seconds).
///
/// # Errors
/// Not four parts of the documented shape, a signature that does not match (compared in
/// constant time), or past its expiry.
pub fn verify_account(secret: &[u8], token: &str, now: i64) -> Result<Account, TokenError> {
    let mut parts = token.trim().split('.');
    let (Some(email), Some(name), Some(expires), Some(sig), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(TokenError::Malformed);
    };
    let email = unb64_text(email)?;
    let name = unb64_text(name)?;
    // The signed text separates its parts with newlines: none may hold one.
    if email.contains('\n') || name.contains('\n') {
        return Err(TokenError::Malformed);
    }
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| TokenError::Malformed)?;
    // Checked as text: the signature covers the decimal as written.
    if expires.is_empty() || !expires.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TokenError::Malformed);
    }
    mac(secret, LINK_CONTEXT, &[&email, &name, expires])
        .verify_slice(&sig)
        .map_err(|_| TokenError::BadSignature)?;
    let expires: i64 = expires.parse().map_err(|_| TokenError::Malformed)?;
    if expires < now {
        return Err(TokenError::Expired);
    }
    Ok(Account {
        email,
        name,
        expires,
    })
}

/// A fresh CSRF token for a form shown to `email` at `now`.
pub fn csrf_token(secret: &[u8], email: &str, now: i64) -> String {
    let nonce = format!("{:032x}", rand::random::<u128>());
    csrf_with(secret, email, now, &nonce)
}

fn csrf_with(secret: &[u8], email: &str, issued: i64, nonce: &str) -> String {
    let issued = issued.to_string();
    let sig = mac(
        secret,
        CSRF_CONTEXT,
        &[&email.to_ascii_lowercase(), &issued, nonce],
    )
    .finalize()
    .into_bytes();
    format!("{issued}.{nonce}.{}", b64(&sig))
}

/// Checks a CSRF token for `email` at `now`; returns its nonce (the submission's idempotency
/// key).
///
/// # Errors
/// Malformed, signed for another account (or not by us), older than [`CSRF_TTL`] or issued in
/// the future.
pub fn verify_csrf(
    secret: &[u8],
    email: &str,
    token: &str,
    now: i64,
) -> Result<String, TokenError> {
    let mut parts = token.trim().split('.');
    let (Some(issued), Some(nonce), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if issued.is_empty()
        || !issued.bytes().all(|b| b.is_ascii_digit())
        || nonce.len() != 32
        || !nonce.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(TokenError::Malformed);
    }
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| TokenError::Malformed)?;
    mac(
        secret,
        CSRF_CONTEXT,
        &[&email.to_ascii_lowercase(), issued, nonce],
    )
    .verify_slice(&sig)
    .map_err(|_| TokenError::BadSignature)?;
    let issued: i64 = issued.parse().map_err(|_| TokenError::Malformed)?;
    if now - issued > CSRF_TTL || issued - now > CLOCK_SKEW {
        return Err(TokenError::Expired);
    }
    Ok(nonce.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"shared with the dashboard";

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let token = sign_account(SECRET, "julie@example.test", "Julie Martin", 2_000);
        let account = verify_account(SECRET, &token, 1_000).unwrap();
        assert_eq!(account.email, "julie@example.test");
        assert_eq!(account.name, "Julie Martin");
        assert_eq!(account.expires, 2_000);
        assert_eq!(
            verify_account(SECRET, &token, 2_001),
            Err(TokenError::Expired)
        );
        let no_name = sign_account(SECRET, "marc@example.test", "", 2_000);
        assert_eq!(verify_account(SECRET, &no_name, 0).unwrap().name, "");
    }

    #[test]
    fn a_link_changed_or_signed_with_another_secret_is_refused() {
        let token = sign_account(SECRET, "julie@example.test", "Julie", 2_000);
        assert_eq!(
            verify_account(b"another secret", &token, 0),
            Err(TokenError::BadSignature)
        );
        // Someone else's address with Julie's signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let other = b64(b"mallory@example.test");
        parts[0] = &other;
        assert_eq!(
            verify_account(SECRET, &parts.join("."), 0),
            Err(TokenError::BadSignature)
        );
        // A later expiry with the old signature.
        let later = token.replace(".2000.", ".9000.");
        assert_eq!(
            verify_account(SECRET, &later, 0),
            Err(TokenError::BadSignature)
        );
        for junk in [
            "",
            "a.b.c",
            "a.b.c.d.e",
            "!!.x.1.y",
            "YQ.YQ.-1.YQ",
            "YQ.YQ.1e3.YQ",
        ] {
            assert_eq!(
                verify_account(SECRET, junk, 0),
                Err(TokenError::Malformed),
                "{junk}"
            );
        }
    }

    #[test]
    fn the_documented_signature_is_what_a_dashboard_computes() {
        // What README.md tells a dashboard to compute, spelt out with the hmac crate.
        let mut m = HmacSha256::new_from_slice(SECRET).unwrap();
        m.update(b"supportd-link-v1\njulie@example.test\nJulie\n2000");
        let expected = format!(
            "{}.{}.2000.{}",
            b64(b"julie@example.test"),
            b64(b"Julie"),
            b64(&m.finalize().into_bytes())
        );
        assert_eq!(
            sign_account(SECRET, "julie@example.test", "Julie", 2000),
            expected
        );
    }

    #[test]
    fn a_csrf_token_is_bound_to_its_account_and_its_age() {
        let token = csrf_token(SECRET, "Julie@Example.test", 1_000);
        let nonce = verify_csrf(SECRET, "julie@example.test", &token, 1_010).unwrap();
        assert_eq!(nonce.len(), 32);
        assert_eq!(
            verify_csrf(SECRET, "marc@example.test", &token, 1_010),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify_csrf(SECRET, "julie@example.test", &token, 1_000 + CSRF_TTL + 1),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify_csrf(SECRET, "julie@example.test", &token, 1_000 - CLOCK_SKEW - 1),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify_csrf(SECRET, "julie@example.test", "1000.zz.x", 1_000),
            Err(TokenError::Malformed)
        );
        // Two pages, two nonces: two submissions are two requests.
        let again = csrf_token(SECRET, "julie@example.test", 1_000);
        assert_ne!(
            verify_csrf(SECRET, "julie@example.test", &again, 1_000).unwrap(),
            nonce
        );
    }
}
