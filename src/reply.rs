//! Acknowledgement to the customer and notification to the team, rendered from admin-edited
//! Handlebars templates into the exact RFC 5322 bytes the outbox will send.
//!
//! Templates only ever produce a text/plain body: subjects and headers are computed here, and
//! every value that reaches a header is stripped of control characters first, so neither an
//! admin's template nor a customer's name or subject can add a header.

mod checks;
mod draft;
mod escalation;
mod message;
mod relay;
mod team;
mod wording;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_sla;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use handlebars::Handlebars;
use serde::Serialize;

#[cfg(test)]
use checks::is_locale_name;
pub(crate) use checks::{describe_render_error, register_locales, strict_registry};
pub use draft::{
    AckDraft, AgentNoticeDraft, Draft, MIN_REQUEST_CHARS, NotificationDraft, RelayDraft, tips_in,
};
pub use escalation::{EscalationInput, Level};
pub use relay::{AgentNoticeInput, NoticeReason, RelayInput};
use team::{AccountContext, Detail, account_context, details, sample_account};
use wording::Lang;

/// Loop header put on everything we send; its value is our own address.
pub const LOOP_HEADER: &str = "X-Supportd-Loop";

/// First line of every acknowledgement; the quote stripper cuts a customer's reply there.
pub const REPLY_ABOVE_MARKER: &str =
    "-- Répondez au-dessus de cette ligne / Reply above this line --";

/// The templates every locale folder must provide, without the `.hbs` extension.
const TEMPLATE_NAMES: [&str; 4] = ["ack", "ack_short", "notification", "escalation"];

/// Far above any real mail template; keeps a mistaken paste (a log, a whole page) out of
/// every mail we send.
const MAX_TEMPLATE_BYTES: usize = 32 * 1024;

/// Handlebars parses and renders recursively; a few hundred nested blocks overflow a 2 MiB
/// thread stack, so an admin's edit must not get anywhere near that.
const MAX_NESTING: usize = 16;

/// Stands in for an empty subject in both languages, so it needs no locale.
const NO_SUBJECT: &str = "(no subject)";

/// The team notification shows at most this many lines of a request; the whole message is
/// attached. A pasted 10 MB log would otherwise be copied, quoted-printable encoded and sent
/// once more in the body.
const MAX_EXCERPT_LINES: usize = 400;

/// ... and at most this many characters.
const MAX_EXCERPT_CHARS: usize = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("cannot read {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("template {}: {reason}", path.display())]
    Template { path: PathBuf, reason: String },
    #[error("no locale folder with templates in {}", .0.display())]
    NoLocale(PathBuf),
    #[error("rendering {template}: {reason}")]
    Render { template: String, reason: String },
    #[error("building the {what}: {reason}")]
    Build { what: &'static str, reason: String },
}

/// The loaded template set. Cloning copies the parsed templates, which is cheap next to parsing.
#[derive(Clone)]
pub struct Templates {
    registry: Handlebars<'static>,
    /// Folder names, sorted, so the last-resort fallback is stable across reloads.
    locales: Vec<String>,
    dir: PathBuf,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("dir", &self.dir)
            .field("locales", &self.locales)
            .finish_non_exhaustive()
    }
}

/// Who we are when we write.
#[derive(Debug, Clone)]
pub struct Identity {
    pub address: String,
    pub name: String,
    pub timezone: chrono_tz::Tz,
}

impl Identity {
    /// Our address, name and zone as `[support]` sets them.
    pub fn from_config(config: &crate::config::Config) -> Identity {
        Identity {
            address: config.support.address.clone(),
            name: config.support.name.clone(),
            timezone: config.support.timezone,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct AckInput<'a> {
    pub locale: &'a str,
    pub ticket_ref: &'a str,
    pub customer: &'a crate::parse::Mailbox,
    pub original_subject: &'a str,
    pub customer_message_id: &'a str,
    pub customer_references: &'a [String],
    /// The customer's `Thread-Index` and `Thread-Topic` (Outlook), as received, if any.
    pub customer_thread_index: Option<&'a str>,
    pub customer_thread_topic: Option<&'a str>,
    pub category_label: &'a str,
    /// Response promise in hours, `(min, max)`.
    pub promise: Option<(u32, u32)>,
    /// The promise counts working hours.
    pub business: bool,
    /// The promise is a confirmation: this acknowledgement keeps it.
    pub confirm_only: bool,
    pub due_at: Option<DateTime<Utc>>,
    /// The working hours (Monday first), when the request arrived outside them.
    pub out_of_hours: Option<&'a [Vec<crate::sla::calendar::Span>; 7]>,
    /// Ask for the account e-mail and project URL: accounts are known and none matched.
    pub ask_for_account: bool,
    pub tips: &'a [String],
    pub short: bool,
    pub message_id: &'a str,
}

#[derive(Debug, Clone, Copy)]
pub struct NotificationInput<'a> {
    pub locale: &'a str,
    pub ticket_ref: &'a str,
    pub customer: &'a crate::parse::Mailbox,
    pub original_subject: &'a str,
    pub category_label: &'a str,
    pub category_id: &'a str,
    pub matched_rules: &'a [String],
    pub tips: &'a [String],
    pub due_at: Option<DateTime<Utc>>,
    pub new_text: &'a str,
    pub action: &'a str,
    pub automated: Option<&'a str>,
    pub original_raw: &'a [u8],
    pub to: &'a str,
    pub message_id: &'a str,
    pub customer_message_id: &'a str,
    /// Where the team's reply goes: the ticket's plus-address (`support+CHT-12@…`), so that
    /// answering the notification answers the customer through supportd.
    pub reply_to: Option<&'a str>,
    /// The closed ticket this one continues, if any.
    pub previous: Option<&'a str>,
    /// Why the customer got no acknowledgement, when they got none.
    pub ack_withheld: Option<&'a str>,
    /// When From was unusable: who stands for the customer, or that nobody does.
    pub sender_note: Option<&'a str>,
    /// The customer's account, or what the message named when none matched.
    pub account: &'a crate::accounts::Lookup,
    /// The request came through the HTTP intake (the dashboard's API or the form page).
    pub from_form: bool,
    /// The account's details the dashboard sent with it, as (name, value), by name.
    pub form_account: &'a [(String, String)],
    /// What else came with it: project URL, page, browser, locale, as (name, value).
    pub context: &'a [(String, String)],
}

/// A mail ready for the outbox. Ids are without angle brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub to: String,
    pub subject: String,
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub raw: Vec<u8>,
    /// The Outlook conversation of the `Thread-Index` it carries (see
    /// [`crate::thread::ConversationIndex::key`]), if it carries one.
    pub conversation: Option<String>,
}

/// Variables of `ack.hbs` and `ack_short.hbs`; templates/README.md documents them.
#[derive(Serialize)]
struct AckContext<'a> {
    ticket_ref: String,
    customer_name: String,
    customer_email: &'a str,
    subject: String,
    category: &'a str,
    promise: String,
    confirm_only: bool,
    due: String,
    out_of_hours: bool,
    working_hours: String,
    ask_for_account: bool,
    has_tips: bool,
    tips: &'a [String],
    faster_answer: Vec<&'static str>,
    support_name: &'a str,
    support_address: &'a str,
}

/// Variables of `notification.hbs`; templates/README.md documents them.
#[derive(Serialize)]
struct NotificationContext<'a> {
    ticket_ref: String,
    customer_name: String,
    customer_email: &'a str,
    subject: String,
    category: &'a str,
    category_id: &'a str,
    matched_rules: &'a [String],
    has_tips: bool,
    tips: &'a [String],
    due: String,
    /// The request's new text, shortened to [`MAX_EXCERPT_LINES`] and [`MAX_EXCERPT_CHARS`].
    new_text: std::borrow::Cow<'a, str>,
    action: &'a str,
    action_label: &'static str,
    automated: &'a str,
    original_attached: bool,
    /// The closed ticket this one continues, or "".
    previous: &'a str,
    /// Why the customer got no acknowledgement, or "".
    ack_withheld: &'a str,
    /// When From was unusable: who stands for the customer, or that nobody does; or "".
    sender_note: &'a str,
    #[serde(flatten)]
    account: AccountContext<'a>,
    from_form: bool,
    has_form_account: bool,
    form_account: Vec<Detail>,
    context: Vec<Detail>,
    support_name: &'a str,
    support_address: &'a str,
}

impl Templates {
    /// Loads `<dir>/<locale>/ack.hbs`, `ack_short.hbs`, `notification.hbs` for every locale folder
    /// present. Strict mode is on and nothing is HTML-escaped. Every template is rendered with
    /// sample data before the set is accepted, so a broken edit is refused here and a reload
    /// keeps serving the last good set.
    pub fn load(dir: &Path) -> Result<Templates, ReplyError> {
        let mut registry = strict_registry();
        registry.register_escape_fn(handlebars::no_escape);
        let locales = register_locales(&mut registry, dir, &TEMPLATE_NAMES)?;

        let templates = Templates {
            registry,
            locales,
            dir: dir.to_path_buf(),
        };
        templates.validate()?;
        Ok(templates)
    }

    pub fn locales(&self) -> Vec<String> {
        self.locales.clone()
    }

    pub fn has_locale(&self, locale: &str) -> bool {
        self.locales.iter().any(|l| l.eq_ignore_ascii_case(locale))
    }

    /// The loaded locale to use for `wanted`: exact, then its primary subtag ("fr-CA" -> "fr"),
    /// then "en", then the first loaded one.
    fn resolve(&self, wanted: &str) -> &str {
        let find = |w: &str| self.locales.iter().find(|l| l.eq_ignore_ascii_case(w));
        let primary = wanted.split(['-', '_']).next().unwrap_or(wanted);
        find(wanted)
            .or_else(|| find(primary))
            .or_else(|| find("en"))
            .or_else(|| self.locales.first())
            .map_or("en", String::as_str)
    }

    fn render<T: Serialize>(
        &self,
        locale: &str,
        name: &str,
        ctx: &T,
    ) -> Result<String, ReplyError> {
        self.registry
            .render(&format!("{locale}/{name}"), ctx)
            .map_err(|e| ReplyError::Render {
                template: format!("{locale}/{name}.hbs"),
                reason: describe_render_error(&e),
            })
    }

    /// Renders each template with data that opens the conditional branches and with data that
    /// closes them, so strict mode sees the variables a template mentions. A branch keyed on
    /// something else (`{{#if (eq category_id "billing")}}`) is only checked when first used.
    fn validate(&self) -> Result<(), ReplyError> {
        let identity = Identity {
            address: "support@example.test".to_owned(),
            name: "Support".to_owned(),
            timezone: chrono_tz::Tz::Europe__Paris,
        };
        let customer = crate::parse::Mailbox {
            name: Some("Julie Martin".to_owned()),
            address: "julie@example.test".to_owned(),
        };
        let tips = ["Vérifiez le code d'installation.".to_owned()];
        let rules = ["technical/widget (subject: \"widget\")".to_owned()];
        let account = [
            ("plan".to_owned(), "Pro".to_owned()),
            ("company".to_owned(), "Boulangerie Martin".to_owned()),
        ];
        let context = [(
            "project_url".to_owned(),
            "https://app.example.test/p/1".to_owned(),
        )];
        let due = Utc::now();
        let found = sample_account();
        let not_found = crate::accounts::Lookup::NotFound {
            emails: vec!["julie@example.test".to_owned()],
            urls: Vec::new(),
            accounts_known: true,
        };
        let office: [Vec<crate::sla::calendar::Span>; 7] =
            std::array::from_fn(|d| if d < 5 { vec![(540, 1080)] } else { Vec::new() });
        for locale in &self.locales {
            let lang = Lang::of(locale);
            for (full, action) in [(true, "reply"), (false, "new"), (true, "oversized")] {
                let ack = AckInput {
                    locale,
                    ticket_ref: "CHT-1",
                    customer: &customer,
                    original_subject: "Le widget ne s'affiche pas",
                    customer_message_id: "sample@example.test",
                    customer_references: &[],
                    customer_thread_index: None,
                    customer_thread_topic: None,
                    category_label: "Technique",
                    promise: full.then_some((24, 48)),
                    business: full,
                    confirm_only: !full,
                    due_at: full.then_some(due),
                    out_of_hours: full.then_some(&office),
                    ask_for_account: full,
                    tips: if full { &tips[..] } else { &[] },
                    short: false,
                    message_id: "sample-ack@example.test",
                };
                let notification = NotificationInput {
                    locale,
                    ticket_ref: "CHT-1",
                    customer: &customer,
                    original_subject: "Le widget ne s'affiche pas",
                    category_label: "Technique",
                    category_id: "technical",
                    matched_rules: if full { &rules[..] } else { &[] },
                    tips: if full { &tips[..] } else { &[] },
                    due_at: full.then_some(due),
                    new_text: "Le widget ne s'affiche plus depuis hier.",
                    action,
                    automated: full.then_some("auto-submitted: auto-replied"),
                    original_raw: if full {
                        b"Subject: x\r\n\r\nx\r\n"
                    } else {
                        &[]
                    },
                    to: "team@example.test",
                    message_id: "sample-notification@example.test",
                    customer_message_id: "sample@example.test",
                    reply_to: full.then_some("support+CHT-1@example.test"),
                    previous: full.then_some("CHT-0"),
                    ack_withheld: full.then_some("rate limit: 3 per hour"),
                    sender_note: full.then_some("From unusable: Reply-To stands for the customer"),
                    account: if full { &found } else { &not_found },
                    from_form: full,
                    form_account: if full { &account[..] } else { &[] },
                    context: if full { &context[..] } else { &[] },
                };
                let ack = ack_context(&identity, &ack, lang);
                let notification = notification_context(&identity, &notification, lang);
                let checks = [
                    ("ack", self.registry.render(&format!("{locale}/ack"), &ack)),
                    (
                        "ack_short",
                        self.registry.render(&format!("{locale}/ack_short"), &ack),
                    ),
                    (
                        "notification",
                        self.registry
                            .render(&format!("{locale}/notification"), &notification),
                    ),
                ];
                for (name, result) in checks {
                    result.map_err(|e| ReplyError::Template {
                        path: self.dir.join(locale).join(format!("{name}.hbs")),
                        reason: describe_render_error(&e),
                    })?;
                }
            }
            self.validate_escalation(locale)?;
        }
        Ok(())
    }

    pub fn render_ack(
        &self,
        identity: &Identity,
        input: &AckInput<'_>,
    ) -> Result<Outgoing, ReplyError> {
        let locale = self.resolve(input.locale);
        let lang = Lang::of(locale);
        let name = if input.short { "ack_short" } else { "ack" };
        let text = self.render(locale, name, &ack_context(identity, input, lang))?;
        let body = format!("{REPLY_ABOVE_MARKER}\r\n\r\n{}", tidy_body(&text));
        message::build_ack(identity, input, locale, body)
    }

    pub fn render_notification(
        &self,
        identity: &Identity,
        input: &NotificationInput<'_>,
    ) -> Result<Outgoing, ReplyError> {
        let locale = self.resolve(input.locale);
        let lang = Lang::of(locale);
        let text = self.render(
            locale,
            "notification",
            &notification_context(identity, input, lang),
        )?;
        let subject = notification_subject(lang, input);
        // Like the acknowledgement, the marker first: an agent's answer is cut there, so the
        // quoted notification never reaches the customer.
        let body = format!(
            "{REPLY_ABOVE_MARKER}\r\n{}\r\n\r\n{}",
            wording::agent_guidance(lang).replace('\n', "\r\n"),
            tidy_body(&text)
        );
        message::build_notification(identity, input, locale, subject, body)
    }
}

fn ack_context<'a>(identity: &'a Identity, input: &AckInput<'a>, lang: Lang) -> AckContext<'a> {
    AckContext {
        ticket_ref: header_text(input.ticket_ref),
        customer_name: display_name(input.customer),
        customer_email: &input.customer.address,
        subject: subject_or_placeholder(input.original_subject),
        category: input.category_label,
        promise: wording::promise(lang, input.promise, input.business),
        confirm_only: input.confirm_only,
        due: input
            .due_at
            .map(|at| wording::due(lang, at, identity.timezone))
            .unwrap_or_default(),
        out_of_hours: input.out_of_hours.is_some(),
        working_hours: input
            .out_of_hours
            .map(|week| wording::working_hours(lang, week))
            .unwrap_or_default(),
        ask_for_account: input.ask_for_account,
        has_tips: !input.tips.is_empty(),
        tips: input.tips,
        faster_answer: wording::faster_answer(lang),
        support_name: &identity.name,
        support_address: &identity.address,
    }
}

fn notification_context<'a>(
    identity: &'a Identity,
    input: &NotificationInput<'a>,
    lang: Lang,
) -> NotificationContext<'a> {
    NotificationContext {
        ticket_ref: header_text(input.ticket_ref),
        customer_name: display_name(input.customer),
        customer_email: &input.customer.address,
        subject: subject_or_placeholder(input.original_subject),
        category: input.category_label,
        category_id: input.category_id,
        matched_rules: input.matched_rules,
        has_tips: !input.tips.is_empty(),
        tips: input.tips,
        due: input
            .due_at
            .map(|at| wording::due(lang, at, identity.timezone))
            .unwrap_or_default(),
        new_text: excerpt(lang, input.new_text, !input.original_raw.is_empty()),
        action: input.action,
        action_label: wording::action_label(lang, input.action),
        automated: input.automated.unwrap_or_default(),
        original_attached: !input.original_raw.is_empty(),
        previous: input.previous.unwrap_or_default(),
        ack_withheld: input.ack_withheld.unwrap_or_default(),
        sender_note: input.sender_note.unwrap_or_default(),
        account: account_context(lang, input.account),
        from_form: input.from_form,
        has_form_account: !input.form_account.is_empty(),
        form_account: details(input.form_account),
        context: details(input.context),
        support_name: &identity.name,
        support_address: &identity.address,
    }
}

/// The response promise as the acknowledgement words it in `locale` ("sous 24 heures",
/// "within 24 to 48 hours"): French for `fr`, English otherwise. `promise` is `(min, max)`
/// hours, counted in working hours when `business`; `None` gives the help page's general
/// wording.
pub fn promise_words(locale: &str, promise: Option<(u32, u32)>, business: bool) -> String {
    wording::promise(Lang::of(locale), promise, business)
}

/// A due time as the acknowledgement words it in `locale`, in the zone `tz`
/// ("mercredi 25 novembre 2026 à 14:30 (heure de Paris)").
pub fn due_words(locale: &str, at: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    wording::due(Lang::of(locale), at, tz)
}

/// `[CHT-12] <original subject>`: reply prefixes and any copy of the token are dropped, so the
/// token appears once however many times the customer has replied.
pub fn ack_subject(ticket_ref: &str, original_subject: &str) -> String {
    let token = format!("[{}]", header_text(ticket_ref));
    format!("{token} {}", bare_subject(&token, original_subject))
}

/// `[CHT-12] [Billing] New request from julie@example.test: <subject>`, worded in `lang`.
fn notification_subject(lang: Lang, input: &NotificationInput<'_>) -> String {
    let token = format!("[{}]", header_text(input.ticket_ref));
    let category = truncate_chars(&header_text(input.category_label), 60);
    let category = if category.is_empty() {
        String::new()
    } else {
        format!(" [{category}]")
    };
    format!(
        "{token}{category} {} {} {}: {}",
        wording::action_label(lang, input.action),
        wording::from_word(lang),
        truncate_chars(&header_text(&input.customer.address), 100),
        bare_subject(&token, input.original_subject)
    )
}

/// The customer's subject without reply/forward prefixes or our token, fit for a header.
fn bare_subject(token: &str, original: &str) -> String {
    let mut subject = remove_ignore_ascii_case(&header_text(original), token);
    loop {
        let trimmed = strip_reply_prefix(subject.trim_start());
        if trimmed.len() == subject.len() {
            break;
        }
        subject = remove_ignore_ascii_case(trimmed, token);
    }
    let subject = header_text(&subject);
    if subject.is_empty() {
        NO_SUBJECT.to_owned()
    } else {
        // Long enough for any real subject, short enough that a pathological one cannot push a
        // folded header line past the 998-octet limit.
        truncate_chars(&subject, 200)
    }
}

/// Drops one leading "Re:", "Fwd:", "TR:", "AW:", … (also "Re[2]:" and "RE :"), if any.
fn strip_reply_prefix(s: &str) -> &str {
    const PREFIXES: [&str; 11] = [
        "re", "fw", "fwd", "tr", "aw", "wg", "sv", "vs", "antw", "rif", "réf",
    ];
    let word_end = s.find(|c: char| !c.is_alphabetic()).unwrap_or(s.len());
    let (word, rest) = s.split_at(word_end);
    if !PREFIXES.iter().any(|p| word.to_lowercase() == *p) {
        return s;
    }
    // Some clients number replies: "Re[2]:", "Re(2):".
    let rest = match rest.strip_prefix(['[', '(']) {
        Some(inner) => match inner.find([']', ')']) {
            Some(close) if inner[..close].chars().all(|c| c.is_ascii_digit()) => {
                &inner[close + 1..]
            }
            _ => return s,
        },
        None => rest,
    };
    match rest.trim_start_matches(' ').strip_prefix(':') {
        Some(after) => after.trim_start(),
        None => s,
    }
}

fn remove_ignore_ascii_case(haystack: &str, needle: &str) -> String {
    if needle.is_empty() {
        return haystack.to_owned();
    }
    let lower = haystack.to_ascii_lowercase();
    let needle = needle.to_ascii_lowercase();
    let mut out = String::with_capacity(haystack.len());
    let mut pos = 0;
    // ASCII lower-casing keeps byte offsets, so positions in `lower` are valid in `haystack`.
    while let Some(found) = lower[pos..].find(&needle) {
        out.push_str(&haystack[pos..pos + found]);
        out.push(' ');
        pos += found + needle.len();
    }
    out.push_str(&haystack[pos..]);
    out
}

/// One line of text for a header: control characters and Unicode line separators become
/// spaces and runs of spaces collapse, so no value can start a new header line.
fn header_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            ' '
        } else {
            c
        };
        // Only plain spaces collapse: a French subject's no-break spaces are the customer's.
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    out.truncate(out.trim_end_matches(' ').len());
    out
}

fn subject_or_placeholder(subject: &str) -> String {
    let subject = header_text(subject);
    if subject.is_empty() {
        NO_SUBJECT.to_owned()
    } else {
        subject
    }
}

/// The customer's display name for a greeting, or the address when there is none.
fn display_name(customer: &crate::parse::Mailbox) -> String {
    let name = customer
        .name
        .as_deref()
        .map(header_text)
        .unwrap_or_default();
    if name.is_empty() {
        customer.address.clone()
    } else {
        truncate_chars(&name, 100)
    }
}

fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", s[..cut].trim_end()),
        None => s.to_owned(),
    }
}

/// The first lines of `text`, within [`MAX_EXCERPT_LINES`] and [`MAX_EXCERPT_CHARS`], with a
/// note saying how many lines were left out (and that the original is attached, when it is).
fn excerpt(lang: Lang, text: &str, attached: bool) -> std::borrow::Cow<'_, str> {
    let mut end = 0;
    let mut chars = 0;
    for line in text.split_inclusive('\n').take(MAX_EXCERPT_LINES) {
        let n = line.chars().count();
        if chars + n > MAX_EXCERPT_CHARS {
            break;
        }
        end += line.len();
        chars += n;
    }
    if end == text.len() {
        return std::borrow::Cow::Borrowed(text);
    }
    if end == 0 {
        // One line longer than the whole allowance: cut it at a character boundary.
        end = text
            .char_indices()
            .nth(MAX_EXCERPT_CHARS)
            .map_or(text.len(), |(i, _)| i);
    }
    let omitted = text[end..].lines().count();
    let note = wording::excerpt_note(lang, omitted, attached);
    std::borrow::Cow::Owned(format!("{}\n\n{note}\n", text[..end].trim_end()))
}

/// CRLF line ends (lettre would insert each missing CR one at a time, quadratic in a large
/// body), no bare CR, no pile of blank lines left behind
/// by conditional sections, one final newline.
fn tidy_body(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(text.len() + text.len() / 16 + 2);
    let mut blank_run = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 || out.is_empty() {
                continue;
            }
        } else {
            blank_run = 0;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.truncate(out.trim_end().len());
    out.push_str("\r\n");
    out
}
