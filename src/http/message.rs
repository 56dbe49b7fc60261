//! The RFC 5322 message a request becomes, so that the pipeline, the raw record, threading,
//! the guard, the acknowledgement, the notification and every CLI command treat it as mail.
//!
//! From the customer (as the link or the dashboard vouched), To the support address, our own
//! signed Message-ID, a Date, the Subject, and the text as a `text/plain; charset=utf-8` body
//! (lettre picks 7bit, quoted-printable or base64). Two headers say where it came from, for
//! the operator and for `supportd classify --explain`: `X-Supportd-Request: api|form` and
//! `X-Supportd-Form-Category: <id>`. The pipeline never reads them: what the form decided
//! reaches it through `Incoming::form`, which no e-mail can set.

use std::time::SystemTime;

use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, SinglePart};

use super::request::Request;

/// Which door filed the request: `api` or `form`.
pub const REQUEST_HEADER: &str = "X-Supportd-Request";
/// The category the customer chose.
pub const CATEGORY_HEADER: &str = "X-Supportd-Form-Category";

/// Why no message could be built (an address lettre refuses after our own checks passed it).
#[derive(Debug, thiserror::Error)]
#[error("building the request's message: {0}")]
pub struct SynthesisError(String);

/// The message for `request`, sent to `support_address` with Message-ID `message_id` (ours,
/// signed, without brackets) at `date`.
///
/// # Errors
/// An address lettre cannot put in a header.
pub fn synthesise(
    request: &Request,
    support_address: &str,
    message_id: &str,
    date: SystemTime,
) -> Result<Vec<u8>, SynthesisError> {
    let error = |e: &dyn std::fmt::Display| SynthesisError(e.to_string());
    // The checks refuse control characters; lettre would panic on a line break in a name.
    let one_line = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    let from = Mailbox::new(
        request.name.as_deref().map(one_line),
        request.email.parse().map_err(|e| error(&e))?,
    );
    let to = Mailbox::new(None, support_address.parse().map_err(|e| error(&e))?);
    let raw = |name: &'static str, value: &str| {
        HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_string())
    };
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(one_line(&request.subject))
        .date(date)
        .message_id(Some(format!("<{message_id}>")))
        .raw_header(raw(REQUEST_HEADER, request.door.as_str()));
    if let Some(category) = &request.category {
        builder = builder.raw_header(raw(CATEGORY_HEADER, category));
    }
    if let Some(locale) = &request.locale {
        builder = builder.raw_header(raw("Content-Language", &locale.replace('_', "-")));
    }
    // CRLF line ends: lettre would otherwise add each missing CR one at a time.
    let body = format!("{}\r\n", request.message.replace('\n', "\r\n"));
    let message = builder
        .singlepart(SinglePart::plain(body))
        .map_err(|e| error(&e))?;
    Ok(message.formatted())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::HttpDoor;

    fn request() -> Request {
        Request {
            door: HttpDoor::Form,
            email: "julie@boulangerie-martin.fr".into(),
            name: Some("Julie Martin-Lefèvre".into()),
            category: Some("billing".into()),
            subject: "Prélèvement après résiliation".into(),
            message: "Bonjour,\nj'ai été prélevée après ma résiliation.\n\nJulie".into(),
            locale: Some("fr".into()),
            project_url: None,
            page_url: None,
            browser: None,
            account: Vec::new(),
        }
    }

    #[test]
    fn the_message_parses_back_as_the_customer_wrote_it() {
        let raw = synthesise(
            &request(),
            "support@example.test",
            "sd.form.1.sig@example.test",
            SystemTime::now(),
        )
        .unwrap();
        let msg = crate::parse::parse(&raw);
        assert_eq!(msg.from_address(), "julie@boulangerie-martin.fr");
        assert_eq!(
            msg.from.as_ref().and_then(|m| m.name.as_deref()),
            Some("Julie Martin-Lefèvre")
        );
        assert_eq!(msg.recipients(), ["support@example.test"]);
        assert_eq!(msg.subject, "Prélèvement après résiliation");
        assert_eq!(msg.message_id, "sd.form.1.sig@example.test");
        assert!(!msg.message_id_synthesized);
        assert!(msg.date.is_some());
        assert_eq!(
            msg.text.trim_end().replace("\r\n", "\n"),
            "Bonjour,\nj'ai été prélevée après ma résiliation.\n\nJulie"
        );
        assert_eq!(msg.header("x-supportd-request"), Some("form"));
        assert_eq!(msg.header("x-supportd-form-category"), Some("billing"));
    }

    #[test]
    fn nothing_the_customer_wrote_becomes_a_header() {
        let mut r = request();
        r.subject = "Facture\r\nBcc: victim@evil.test".into();
        r.name = Some("Julie\r\nX-Evil: 1".into());
        r.message = "Bcc: victim@evil.test\r\n\r\nhello there".into();
        let raw = synthesise(
            &r,
            "support@example.test",
            "sd.form.2.sig@example.test",
            SystemTime::now(),
        )
        .unwrap();
        let msg = crate::parse::parse(&raw);
        assert!(msg.header("bcc").is_none());
        assert!(msg.header("x-evil").is_none());
        assert!(msg.text.contains("Bcc: victim@evil.test"));
    }
}
