//! A request as both doors take it in: what was submitted ([`Submitted`]), checked field by
//! field into a [`Request`] or a list of [`FieldError`]s, each worded in the customer's
//! language. The limits are the help page's: a message of 10 to 5,000 characters, counted in
//! Unicode characters after trimming (a browser's CRLF line ends count as one).

use serde::Serialize;

use crate::classify::Classifier;
use crate::pipeline::FormRequest;
use crate::store::HttpDoor;

/// Fewest characters a message may have.
pub const MIN_CHARS: usize = 10;
/// Most characters a message may have.
pub const MAX_CHARS: usize = 5_000;
/// Longest subject, in characters; one made from the message is shorter.
const MAX_SUBJECT: usize = 200;
const MAX_NAME: usize = 100;
const MAX_EMAIL: usize = 254;
const MAX_URL: usize = 2_000;
const MAX_BROWSER: usize = 500;
const MAX_LOCALE: usize = 35;
/// At most this many account details, each name and value within these lengths.
const MAX_ACCOUNT_ENTRIES: usize = 50;
const MAX_ACCOUNT_NAME: usize = 100;
const MAX_ACCOUNT_VALUE: usize = 1_000;
/// A subject made from the message takes at most this many of its first words...
const SUBJECT_WORDS: usize = 8;
/// ... and this many characters.
const SUBJECT_CHARS: usize = 78;

/// The two languages the doors answer in: French for `fr`, English for anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Fr,
    En,
}

impl Lang {
    /// The language of a locale such as `fr`, `fr-CA`, `en_GB`.
    pub fn of(locale: &str) -> Lang {
        let primary = locale.split(['-', '_']).next().unwrap_or(locale);
        if primary.eq_ignore_ascii_case("fr") {
            Lang::Fr
        } else {
            Lang::En
        }
    }
}

/// What is wrong with a field, as the API's `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    Required,
    Invalid,
    /// A JSON value of the wrong type (a number where text goes).
    WrongType,
    TooShort,
    TooLong,
    UnknownCategory,
    UnknownField,
    /// An address that may not open a request (ours).
    NotAllowed,
    /// More account details than allowed.
    TooMany,
    /// An Idempotency-Key already used for another request.
    Reused,
}

/// One field's problem, as the API's `{"field", "code", "message"}` and the form's text next
/// to the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub code: Code,
    /// For the customer, in their language.
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, code: Code, lang: Lang) -> FieldError {
        FieldError {
            field: field.to_string(),
            code,
            message: wording(field, code, lang, 0),
        }
    }

    /// With the count the message reports (characters, entries).
    fn counted(field: &str, code: Code, lang: Lang, n: usize) -> FieldError {
        FieldError {
            field: field.to_string(),
            code,
            message: wording(field, code, lang, n),
        }
    }
}

/// The fields as a door received them, before any check.
#[derive(Debug, Clone, Default)]
pub struct Submitted {
    pub email: Option<String>,
    pub name: Option<String>,
    pub category: Option<String>,
    pub subject: Option<String>,
    pub message: Option<String>,
    pub locale: Option<String>,
    pub project_url: Option<String>,
    pub page_url: Option<String>,
    pub browser: Option<String>,
    /// The account's details, as (name, value), by name.
    pub account: Vec<(String, String)>,
}

/// What the checks compare with.
pub struct Checks<'a> {
    pub classifier: &'a Classifier,
    /// Our own addresses, lower-case: they may not open a request.
    pub own_addresses: &'a [String],
    /// The support address, whose plus-addresses are ours too.
    pub support_address: &'a str,
    /// The form asks for a category; the API lets the rules decide without one.
    pub category_required: bool,
    /// The language of the error texts.
    pub lang: Lang,
}

/// A request that passed every check. Serialised (without the door) into its fingerprint.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Request {
    #[serde(skip)]
    pub door: HttpDoor,
    /// Lower-case.
    pub email: String,
    pub name: Option<String>,
    /// A category id of the rules.
    pub category: Option<String>,
    /// As given, or made from the message's first words.
    pub subject: String,
    /// Trimmed, with LF line ends.
    pub message: String,
    pub locale: Option<String>,
    pub project_url: Option<String>,
    pub page_url: Option<String>,
    pub browser: Option<String>,
    pub account: Vec<(String, String)>,
}

impl Request {
    /// What the pipeline is told beside the message: the choice, the language, the details.
    pub fn form_request(&self) -> FormRequest {
        let locale = self
            .locale
            .as_deref()
            .map(|l| l.split(['-', '_']).next().unwrap_or(l).to_ascii_lowercase());
        FormRequest {
            category: self.category.clone(),
            locale,
            account: self.account.clone(),
            context: self.context(),
        }
    }

    /// locale, project_url, page_url, browser, for those given.
    pub fn context(&self) -> Vec<(String, String)> {
        [
            ("locale", &self.locale),
            ("project_url", &self.project_url),
            ("page_url", &self.page_url),
            ("browser", &self.browser),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.clone())))
        .collect()
    }

    /// Hex SHA-256 of the request, so a retry can be told from another request.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        crate::parse::sha256_hex(json.as_bytes())
    }
}

/// Checks every field of `s` for `door`; all problems at once.
///
/// # Errors
/// One [`FieldError`] per field that is missing, malformed, too short or too long.
pub fn validate(
    s: Submitted,
    door: HttpDoor,
    checks: &Checks<'_>,
) -> Result<Request, Vec<FieldError>> {
    let lang = checks.lang;
    let mut errors = Vec::new();

    let email = match s.email.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
        None => {
            errors.push(FieldError::new("email", Code::Required, lang));
            String::new()
        }
        Some(e) => {
            let e = e.to_ascii_lowercase();
            if e.chars().count() > MAX_EMAIL || e.parse::<lettre::Address>().is_err() {
                errors.push(FieldError::new("email", Code::Invalid, lang));
            } else if checks.own_addresses.contains(&e)
                || crate::thread::plus_tag(&e, checks.support_address).is_some()
            {
                errors.push(FieldError::new("email", Code::NotAllowed, lang));
            }
            e
        }
    };

    let text = |field: &str, value: Option<String>, max: usize, errors: &mut Vec<_>| {
        let value = value
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())?;
        if value.chars().count() > max {
            errors.push(FieldError::counted(field, Code::TooLong, lang, max));
        } else if value.chars().any(char::is_control) {
            errors.push(FieldError::new(field, Code::Invalid, lang));
        }
        Some(value)
    };
    let name = text("name", s.name, MAX_NAME, &mut errors);
    let subject = text("subject", s.subject, MAX_SUBJECT, &mut errors);
    let project_url = text("project_url", s.project_url, MAX_URL, &mut errors);
    let page_url = text("page_url", s.page_url, MAX_URL, &mut errors);
    let browser = text("browser", s.browser, MAX_BROWSER, &mut errors);
    let locale = text("locale", s.locale, MAX_LOCALE, &mut errors);
    if let Some(l) = &locale
        && !is_language_tag(l)
    {
        errors.push(FieldError::new("locale", Code::Invalid, lang));
    }

    let category = match s.category.map(|c| c.trim().to_ascii_lowercase()) {
        Some(c) if !c.is_empty() => {
            if checks.classifier.category(&c).is_none() {
                errors.push(FieldError {
                    field: "category".into(),
                    code: Code::UnknownCategory,
                    message: unknown_category(lang, checks.classifier),
                });
            }
            Some(c)
        }
        _ => {
            if checks.category_required {
                errors.push(FieldError::new("category", Code::Required, lang));
            }
            None
        }
    };

    let message = s
        .message
        .map(|m| {
            m.replace("\r\n", "\n")
                .replace('\r', "\n")
                .trim()
                .to_string()
        })
        .unwrap_or_default();
    let chars = message.chars().count();
    if chars == 0 {
        errors.push(FieldError::new("message", Code::Required, lang));
    } else if chars < MIN_CHARS {
        errors.push(FieldError::counted("message", Code::TooShort, lang, chars));
    } else if chars > MAX_CHARS {
        errors.push(FieldError::counted("message", Code::TooLong, lang, chars));
    }

    if s.account.len() > MAX_ACCOUNT_ENTRIES {
        errors.push(FieldError::counted(
            "account",
            Code::TooMany,
            lang,
            MAX_ACCOUNT_ENTRIES,
        ));
    }
    for (key, value) in &s.account {
        if key.trim().is_empty() || key.chars().count() > MAX_ACCOUNT_NAME {
            errors.push(FieldError::new(
                &format!("account.{key}"),
                Code::Invalid,
                lang,
            ));
        } else if value.chars().count() > MAX_ACCOUNT_VALUE {
            errors.push(FieldError::counted(
                &format!("account.{key}"),
                Code::TooLong,
                lang,
                MAX_ACCOUNT_VALUE,
            ));
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    let subject = subject.unwrap_or_else(|| subject_from(&message));
    Ok(Request {
        door,
        email,
        name,
        category,
        subject,
        message,
        locale,
        project_url,
        page_url,
        browser,
        account: s.account,
    })
}

/// A subject made of the message's first words: its first line, at most [`SUBJECT_WORDS`]
/// words and [`SUBJECT_CHARS`] characters, "…" when cut.
pub fn subject_from(message: &str) -> String {
    let first_line = message.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let words: Vec<&str> = first_line.split_whitespace().collect();
    let mut subject = String::new();
    let mut cut = words.len() > SUBJECT_WORDS || message.trim().lines().nth(1).is_some();
    for word in words.iter().take(SUBJECT_WORDS) {
        let len = subject.chars().count() + word.chars().count() + 1;
        if len > SUBJECT_CHARS {
            cut = true;
            break;
        }
        if !subject.is_empty() {
            subject.push(' ');
        }
        subject.push_str(word);
    }
    if subject.is_empty() {
        // One word longer than the whole allowance.
        subject = first_line.trim().chars().take(SUBJECT_CHARS - 1).collect();
        cut = true;
    }
    let subject: String = subject.chars().filter(|c| !c.is_control()).collect();
    if cut {
        format!("{}…", subject.trim_end_matches(['.', ',', ';', ':']))
    } else {
        subject
    }
}

/// `fr`, `en-GB`, `pt_BR`, `zh-Hant-TW`: letters, then subtags of letters and digits.
fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split(['-', '_']);
    let primary = parts.next().unwrap_or("");
    (2..=8).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn unknown_category(lang: Lang, classifier: &Classifier) -> String {
    let ids: Vec<&str> = classifier
        .categories()
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    match lang {
        Lang::Fr => format!("Catégorie inconnue : choisissez parmi {}.", ids.join(", ")),
        Lang::En => format!("Unknown category: choose one of {}.", ids.join(", ")),
    }
}

/// A thousands separator the way each language writes it ("5 000", "5,000").
fn number(lang: Lang, n: usize) -> String {
    let digits = n.to_string();
    let sep = match lang {
        Lang::Fr => "\u{202f}",
        Lang::En => ",",
    };
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push_str(sep);
        }
        out.push(d);
    }
    out
}

/// The customer's text for a problem; `n` is the count the message reports, if any.
fn wording(field: &str, code: Code, lang: Lang, n: usize) -> String {
    let (min, max) = (number(lang, MIN_CHARS), number(lang, MAX_CHARS));
    let n_text = number(lang, n);
    match (lang, code, field) {
        (Lang::Fr, Code::Required, "message") => "Écrivez votre message.".into(),
        (Lang::En, Code::Required, "message") => "Please write your message.".into(),
        (Lang::Fr, Code::Required, "category") => "Choisissez une catégorie.".into(),
        (Lang::En, Code::Required, "category") => "Please choose a category.".into(),
        (Lang::Fr, Code::Required, _) => "Ce champ est obligatoire.".into(),
        (Lang::En, Code::Required, _) => "This field is required.".into(),
        (Lang::Fr, Code::TooShort, _) => {
            format!("Votre message doit contenir au moins {min} caractères (il en a {n_text}).")
        }
        (Lang::En, Code::TooShort, _) => {
            format!("Your message must be at least {min} characters long (it has {n_text}).")
        }
        (Lang::Fr, Code::TooLong, "message") => {
            format!("Votre message doit contenir au plus {max} caractères (il en a {n_text}).")
        }
        (Lang::En, Code::TooLong, "message") => {
            format!("Your message must be at most {max} characters long (it has {n_text}).")
        }
        (Lang::Fr, Code::TooLong, _) => format!("Trop long : {n_text} caractères au plus."),
        (Lang::En, Code::TooLong, _) => format!("Too long: at most {n_text} characters."),
        (Lang::Fr, Code::Invalid, "email") => "Cette adresse e-mail n'est pas valide.".into(),
        (Lang::En, Code::Invalid, "email") => "This is not a valid e-mail address.".into(),
        (Lang::Fr, Code::Invalid, _) => "Valeur non valide.".into(),
        (Lang::En, Code::Invalid, _) => "Invalid value.".into(),
        (Lang::Fr, Code::WrongType, "account") => "Doit être un objet JSON.".into(),
        (Lang::En, Code::WrongType, "account") => "Must be a JSON object.".into(),
        (Lang::Fr, Code::WrongType, _) => "Doit être une chaîne de caractères.".into(),
        (Lang::En, Code::WrongType, _) => "Must be a string.".into(),
        (Lang::Fr, Code::UnknownCategory, _) => "Catégorie inconnue.".into(),
        (Lang::En, Code::UnknownCategory, _) => "Unknown category.".into(),
        (Lang::Fr, Code::UnknownField, _) => "Champ inconnu.".into(),
        (Lang::En, Code::UnknownField, _) => "Unknown field.".into(),
        (Lang::Fr, Code::NotAllowed, _) => "Cette adresse ne peut pas ouvrir de demande.".into(),
        (Lang::En, Code::NotAllowed, _) => "This address cannot open a request.".into(),
        (Lang::Fr, Code::TooMany, _) => format!("Trop d'éléments : {n_text} au plus."),
        (Lang::En, Code::TooMany, _) => format!("Too many entries: at most {n_text}."),
        (Lang::Fr, Code::Reused, _) => "Cette clé a déjà servi pour une autre demande.".into(),
        (Lang::En, Code::Reused, _) => "This key was already used for another request.".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn rules() -> Classifier {
        Classifier::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")).unwrap()
    }

    fn check(s: Submitted, lang: Lang) -> Result<Request, Vec<FieldError>> {
        let classifier = rules();
        let own = ["support@example.test".to_string()];
        validate(
            s,
            HttpDoor::Api,
            &Checks {
                classifier: &classifier,
                own_addresses: &own,
                support_address: "support@example.test",
                category_required: false,
                lang,
            },
        )
    }

    fn julie(message: &str) -> Submitted {
        Submitted {
            email: Some(" Julie@Example.test ".into()),
            message: Some(message.into()),
            ..Submitted::default()
        }
    }

    fn codes(r: Result<Request, Vec<FieldError>>) -> Vec<(String, Code)> {
        r.unwrap_err()
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect()
    }

    #[test]
    fn the_message_is_counted_in_characters_after_trimming_with_crlf_as_one() {
        // 9 characters of accents and an emoji, padded with spaces: too short.
        let nine = "  éàü 😀 çôx  ";
        assert_eq!(nine.trim().chars().count(), 9);
        assert_eq!(
            codes(check(julie(nine), Lang::En)),
            [("message".into(), Code::TooShort)]
        );
        assert!(check(julie("  éàü 😀 çôxy "), Lang::En).is_ok());
        let max = format!(
            "{}\r\n{}",
            "é".repeat(MAX_CHARS / 2),
            "a".repeat(MAX_CHARS / 2 - 1)
        );
        let ok = check(julie(&max), Lang::En).unwrap();
        assert_eq!(ok.message.chars().count(), MAX_CHARS);
        assert_eq!(ok.email, "julie@example.test");
        let over = "a".repeat(MAX_CHARS + 1);
        let errors = check(julie(&over), Lang::Fr).unwrap_err();
        assert_eq!(errors[0].code, Code::TooLong);
        assert!(
            errors[0].message.contains("5\u{202f}001"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_in_the_customers_language() {
        let s = Submitted {
            email: Some("not an address".into()),
            category: Some("refunds".into()),
            message: Some("court".into()),
            locale: Some("fr/FR".into()),
            ..Submitted::default()
        };
        let errors = check(s, Lang::Fr).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["email", "locale", "category", "message"]);
        assert!(
            errors[2].message.contains("billing"),
            "{}",
            errors[2].message
        );
        assert!(
            errors[3].message.contains("au moins 10"),
            "{}",
            errors[3].message
        );
        assert_eq!(
            codes(check(Submitted::default(), Lang::En)),
            [
                ("email".into(), Code::Required),
                ("message".into(), Code::Required)
            ]
        );
    }

    #[test]
    fn our_own_addresses_cannot_file_a_request() {
        for email in ["support@example.test", "support+billing@example.test"] {
            let s = Submitted {
                email: Some(email.into()),
                ..julie("Le widget ne s'affiche plus.")
            };
            assert_eq!(
                codes(check(s, Lang::En)),
                [("email".into(), Code::NotAllowed)]
            );
        }
    }

    #[test]
    fn a_missing_subject_is_made_of_the_first_words() {
        assert_eq!(
            subject_from("Le widget ne s'affiche plus"),
            "Le widget ne s'affiche plus"
        );
        assert_eq!(
            subject_from("\n\nBonjour, le widget ne s'affiche plus depuis hier sur notre site."),
            "Bonjour, le widget ne s'affiche plus depuis hier…"
        );
        assert_eq!(subject_from("Facture.\nMerci"), "Facture…");
        assert_eq!(
            subject_from(&"x".repeat(100)).chars().count(),
            SUBJECT_CHARS
        );
        let r = check(julie("J'ai été facturé deux fois ce mois-ci."), Lang::En).unwrap();
        assert_eq!(r.subject, "J'ai été facturé deux fois ce mois-ci.");
    }

    #[test]
    fn the_fingerprint_tells_a_retry_from_another_request() {
        let a = check(julie("Le widget ne s'affiche plus."), Lang::En).unwrap();
        let b = check(julie("Le widget ne s'affiche plus."), Lang::En).unwrap();
        let c = check(julie("Le widget ne s'affiche plus !"), Lang::En).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn the_pipeline_gets_the_primary_language_and_the_context() {
        let s = Submitted {
            locale: Some("fr-CA".into()),
            browser: Some("Firefox 140".into()),
            category: Some("Billing".into()),
            account: vec![("plan".into(), "Pro".into())],
            ..julie("J'ai été facturé deux fois.")
        };
        let form = check(s, Lang::Fr).unwrap().form_request();
        assert_eq!(form.locale.as_deref(), Some("fr"));
        assert_eq!(form.category.as_deref(), Some("billing"));
        assert_eq!(
            form.context,
            [
                ("locale".to_string(), "fr-CA".to_string()),
                ("browser".to_string(), "Firefox 140".to_string())
            ]
        );
        assert_eq!(form.account, [("plan".to_string(), "Pro".to_string())]);
    }
}
