//! Phrases computed in code rather than in templates: they depend on numbers, dates and time
//! zones, which Handlebars has no helpers for. French has its own wording; every other locale
//! gets English, so a new locale folder works before anyone translates these.

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lang {
    Fr,
    En,
}

impl Lang {
    pub(super) fn of(locale: &str) -> Lang {
        let primary = locale.split(['-', '_']).next().unwrap_or(locale);
        if primary.eq_ignore_ascii_case("fr") {
            Lang::Fr
        } else {
            Lang::En
        }
    }
}

fn hours(lang: Lang, n: u32, business: bool) -> String {
    match (lang, n, business) {
        (Lang::Fr, 0 | 1, false) => format!("{n} heure"),
        (Lang::Fr, 0 | 1, true) => format!("{n} heure ouvrée"),
        (Lang::Fr, _, false) => format!("{n} heures"),
        (Lang::Fr, _, true) => format!("{n} heures ouvrées"),
        (Lang::En, 1, false) => "1 hour".to_owned(),
        (Lang::En, 1, true) => "1 business hour".to_owned(),
        (Lang::En, _, false) => format!("{n} hours"),
        (Lang::En, _, true) => format!("{n} business hours"),
    }
}

/// The response promise, worded to follow "we will answer …" / "notre équipe vous répondra …";
/// `business`: the hours are working hours ("heures ouvrées", "business hours").
pub(super) fn promise(lang: Lang, promise: Option<(u32, u32)>, business: bool) -> String {
    // The help page's general wording, used when the category has no promise of its own.
    let Some((a, b)) = promise else {
        return match lang {
            Lang::Fr => "généralement dans les 24 à 48 heures".to_owned(),
            Lang::En => "generally within 24 to 48 hours".to_owned(),
        };
    };
    // Rules are admin-edited, so a reversed range is tolerated rather than worded backwards.
    let (min, max) = (a.min(b), a.max(b));
    if min == max || min == 0 {
        return match lang {
            Lang::Fr => format!("sous {}", hours(lang, max, business)),
            Lang::En => format!("within {}", hours(lang, max, business)),
        };
    }
    match lang {
        Lang::Fr => format!("sous {min} à {}", hours(lang, max, business)),
        Lang::En => format!("within {min} to {}", hours(lang, max, business)),
    }
}

const FR_DAYS: [&str; 7] = [
    "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche",
];
const EN_DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const FR_MONTHS: [&str; 12] = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
];
const EN_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A due time in the support team's zone, to follow "d'ici le" / "by": "mardi 2 décembre à
/// 17:00 (heure de Paris)", "Tuesday, December 2, 5:00 pm Paris time". No year: a due time is
/// days away. chrono's `%A`/`%B` are English-only without its unstable-locales feature, hence
/// the tables.
pub(super) fn due(lang: Lang, at: DateTime<Utc>, tz: Tz) -> String {
    let local = at.with_timezone(&tz);
    let weekday = local.weekday().num_days_from_monday() as usize;
    let month = local.month0() as usize;
    let (day, hour, minute) = (local.day(), local.hour(), local.minute());
    match lang {
        Lang::Fr => {
            // French writes the first of the month as an ordinal ("1er décembre").
            let day = if day == 1 {
                "1er".to_owned()
            } else {
                day.to_string()
            };
            let zone = match tz {
                Tz::UTC | Tz::Etc__UTC => "UTC".to_owned(),
                _ => format!("heure de {}", city(tz)),
            };
            format!(
                "{} {day} {} à {hour:02}:{minute:02} ({zone})",
                FR_DAYS[weekday], FR_MONTHS[month]
            )
        }
        Lang::En => {
            let (h12, half) = match hour {
                0 => (12, "am"),
                1..=11 => (hour, "am"),
                12 => (12, "pm"),
                _ => (hour - 12, "pm"),
            };
            let zone = match tz {
                Tz::UTC | Tz::Etc__UTC => "UTC".to_owned(),
                _ => format!("{} time", city(tz)),
            };
            format!(
                "{}, {} {day}, {h12}:{minute:02} {half} {zone}",
                EN_DAYS[weekday], EN_MONTHS[month]
            )
        }
    }
}

/// The place an IANA zone is named after: "Paris", "New York", "Buenos Aires".
fn city(tz: Tz) -> String {
    tz.name()
        .rsplit('/')
        .next()
        .unwrap_or(tz.name())
        .replace('_', " ")
}

/// Working hours in words, days with the same hours grouped: "du lundi au vendredi,
/// 09:00-18:00", "Monday to Friday, 09:00-18:00; Saturday, 10:00-12:00".
pub(super) fn working_hours(lang: Lang, week: &[Vec<crate::sla::calendar::Span>; 7]) -> String {
    let days = match lang {
        Lang::Fr => &FR_DAYS,
        Lang::En => &EN_DAYS,
    };
    let ranges = |spans: &[crate::sla::calendar::Span]| {
        let text: Vec<String> = spans
            .iter()
            .map(|&(a, b)| format!("{:02}:{:02}-{:02}:{:02}", a / 60, a % 60, b / 60, b % 60))
            .collect();
        text.join(match lang {
            Lang::Fr => " et ",
            Lang::En => " and ",
        })
    };
    let mut groups: Vec<String> = Vec::new();
    let mut d = 0;
    while d < 7 {
        if week[d].is_empty() {
            d += 1;
            continue;
        }
        let mut last = d;
        while last + 1 < 7 && week[last + 1] == week[d] {
            last += 1;
        }
        let span = match (lang, last == d) {
            (Lang::Fr, true) => format!("le {}", days[d]),
            (Lang::Fr, false) => format!("du {} au {}", days[d], days[last]),
            (Lang::En, true) => days[d].to_string(),
            (Lang::En, false) => format!("{} to {}", days[d], days[last]),
        };
        groups.push(format!("{span}, {}", ranges(&week[d])));
        d = last + 1;
    }
    groups.join("; ")
}

/// "Tips for a faster answer" from the help page, as things to include.
pub(super) fn faster_answer(lang: Lang) -> Vec<&'static str> {
    match lang {
        Lang::Fr => vec![
            "le nom ou l'URL de votre projet",
            "les étapes pour reproduire le problème",
            "le navigateur et l'appareil que vous utilisez",
            "les messages d'erreur que vous voyez",
            "des captures d'écran, sous forme de liens dans votre message",
        ],
        Lang::En => vec![
            "your project name or URL",
            "the steps to reproduce the problem",
            "the browser and device you are using",
            "any error messages you see",
            "screenshots, as links in your message",
        ],
    }
}

/// What happened, for the team's subject line and the notification body.
pub(super) fn action_label(lang: Lang, action: &str) -> &'static str {
    match (lang, action) {
        (Lang::Fr, "reply") => "Réponse",
        (Lang::Fr, "note") => "Note interne",
        (Lang::En, "note") => "Internal note",
        (Lang::Fr, "oversized") => "Message trop volumineux",
        (Lang::Fr, _) => "Nouvelle demande",
        (Lang::En, "reply") => "Reply",
        (Lang::En, "oversized") => "Oversized message",
        (Lang::En, _) => "New request",
    }
}

/// The word joining the action label and the customer address in the team's subject.
pub(super) fn from_word(lang: Lang) -> &'static str {
    match lang {
        Lang::Fr => "de",
        Lang::En => "from",
    }
}

/// The line that ends a shortened request in the team's notification: how much was left out,
/// and where the rest is.
pub(super) fn excerpt_note(lang: Lang, omitted_lines: usize, attached: bool) -> String {
    match (lang, attached) {
        (Lang::Fr, true) => format!(
            "[… {omitted_lines} ligne(s) de plus non affichée(s) : le message complet est joint (original.eml)]"
        ),
        (Lang::Fr, false) => format!("[… {omitted_lines} ligne(s) de plus non affichée(s)]"),
        (Lang::En, true) => format!(
            "[… {omitted_lines} more line(s) not shown: the whole message is attached (original.eml)]"
        ),
        (Lang::En, false) => format!("[… {omitted_lines} more line(s) not shown]"),
    }
}

/// The line under the marker of a team notification: what replying does.
pub(super) fn agent_guidance(lang: Lang) -> &'static str {
    match lang {
        Lang::Fr => {
            "Répondre à ce message répond au client depuis l'adresse du support. Commencez par \
             #note pour une note interne ; autres commandes en tête de réponse : #close #pending \
             #open #category ID #assign QUI."
        }
        Lang::En => {
            "Replying to this mail answers the customer from the support address. Start with \
             #note for an internal note; other commands at the top of a reply: #close #pending \
             #open #category ID #assign WHO."
        }
    }
}

/// The subject prefix of an answer to an agent whose mail was not relayed.
pub(super) fn notice_prefix(lang: Lang) -> &'static str {
    match lang {
        Lang::Fr => "Non envoyé : ",
        Lang::En => "Not sent: ",
    }
}

/// The opening of an answer to an agent: why nothing reached the customer.
pub(super) fn notice_opening(lang: Lang, ticket: Option<&str>, no_ticket: bool) -> String {
    match (lang, ticket, no_ticket) {
        (Lang::Fr, _, true) => "Votre message ne répond à aucun ticket : rien n'a été envoyé. Pour répondre à un client, répondez à la notification du ticket (son adresse de réponse est support+REF@…), ou gardez le jeton [REF] dans le sujet.".into(),
        (Lang::En, _, true) => "Your mail answers no ticket, so nothing was sent. To answer a customer, reply to the ticket's notification (its reply address is support+REF@…), or keep the [REF] token in the subject.".into(),
        (Lang::Fr, Some(t), false) => format!("Votre réponse au ticket {t} n'a pas été envoyée au client, et aucune commande n'a été appliquée :"),
        (Lang::Fr, None, false) => "Votre réponse n'a pas été envoyée au client, et aucune commande n'a été appliquée :".into(),
        (Lang::En, Some(t), false) => format!("Your answer on ticket {t} was not sent to the customer, and no command was applied:"),
        (Lang::En, None, false) => "Your answer was not sent to the customer, and no command was applied:".into(),
    }
}

/// The heading of the command list in an answer to an agent.
pub(super) fn notice_commands(lang: Lang) -> &'static str {
    match lang {
        Lang::Fr => "Commandes possibles, en tête de réponse :",
        Lang::En => "Commands, at the top of a reply:",
    }
}

/// The account's details, one `label: value` line each (empty values left out, extra columns
/// as they are named in the file), for the team.
pub(super) fn account_lines(lang: Lang, account: &crate::store::Account) -> Vec<String> {
    let labels = match lang {
        Lang::Fr => [
            "E-mail",
            "Nom",
            "Offre",
            "Projet",
            "Société",
            "Client depuis",
        ],
        Lang::En => [
            "E-mail",
            "Name",
            "Plan",
            "Project",
            "Company",
            "Customer since",
        ],
    };
    let values = [
        &account.email,
        &account.name,
        &account.plan,
        &account.project_url,
        &account.company,
        &account.created_at,
    ];
    labels
        .iter()
        .zip(values)
        .map(|(label, value)| (label.to_string(), value.as_str()))
        .chain(account.extra.iter().map(|(k, v)| (k.clone(), v.as_str())))
        .filter(|(_, value)| !value.is_empty())
        .map(|(label, value)| format!("{label}: {value}"))
        .collect()
}

/// How the account was matched, to follow "matched" / "trouvé".
pub(super) fn matched_by(lang: Lang, by: crate::store::AccountMatch) -> &'static str {
    use crate::store::AccountMatch::{EmailInMessage, ProjectUrl, Sender};
    match (lang, by) {
        (Lang::Fr, Sender) => "par l'adresse de l'expéditeur",
        (Lang::Fr, EmailInMessage) => "par une adresse e-mail citée dans le message",
        (Lang::Fr, ProjectUrl) => "par une URL de projet citée dans le message",
        (Lang::En, Sender) => "by the sender's address",
        (Lang::En, EmailInMessage) => "by an e-mail address written in the message",
        (Lang::En, ProjectUrl) => "by a project URL written in the message",
    }
}

/// An escalation's level, for the team's subject line and the template.
pub(super) fn level_label(lang: Lang, level: super::escalation::Level) -> &'static str {
    use super::escalation::Level::{AtRisk, Breached};
    match (lang, level) {
        (Lang::Fr, AtRisk) => "Délai bientôt dépassé",
        (Lang::Fr, Breached) => "Délai dépassé",
        (Lang::En, AtRisk) => "Response time at risk",
        (Lang::En, Breached) => "Response time breached",
    }
}
