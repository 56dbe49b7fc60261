//! The promise and the account as the customer and the team read them.

use super::tests::{
    ORIGINAL, ack, ack_input, body_text, identity, julie, notification_input, shipped,
};
use super::*;
use crate::accounts::Lookup;
use crate::store::{Account, AccountMatch};

fn office() -> [Vec<crate::sla::calendar::Span>; 7] {
    std::array::from_fn(|d| if d < 5 { vec![(540, 1080)] } else { Vec::new() })
}

#[test]
fn an_out_of_hours_request_is_told_the_working_hours_and_the_business_promise() {
    let customer = julie();
    let week = office();
    let input = AckInput {
        business: true,
        out_of_hours: Some(&week),
        ..ack_input(&customer, "fr")
    };
    let body = fold(&body_text(&ack(&input).raw));
    assert!(
        body.contains("vous répondra sous 24 heures ouvrées, d'ici le mercredi 25 novembre à 14:30 (heure de Paris)."),
        "{body}"
    );
    assert!(
        body.contains("en dehors de nos heures d'ouverture (du lundi au vendredi, 09:00-18:00)"),
        "{body}"
    );
    let input = AckInput {
        business: true,
        out_of_hours: Some(&week),
        ..ack_input(&customer, "en")
    };
    let body = fold(&body_text(&ack(&input).raw));
    assert!(
        body.contains(
            "get back to you within 24 business hours, by Wednesday, November 25, 2:30 pm Paris time."
        ),
        "{body}"
    );
    assert!(
        body.contains("outside our working hours (Monday to Friday, 09:00-18:00)"),
        "{body}"
    );
    // In hours, nothing is said about them.
    let body = body_text(&ack(&ack_input(&customer, "en")).raw);
    assert!(!body.contains("working hours"), "{body}");
}

#[test]
fn a_confirmation_promise_is_kept_by_the_acknowledgement_itself() {
    let customer = julie();
    let input = AckInput {
        confirm_only: true,
        due_at: None,
        ..ack_input(&customer, "en")
    };
    let body = fold(&body_text(&ack(&input).raw));
    assert!(
        body.contains("This e-mail confirms that your request has reached our team"),
        "{body}"
    );
    assert!(!body.contains("get back to you"), "{body}");
}

#[test]
fn the_acknowledgement_asks_for_the_account_when_none_matched() {
    let customer = julie();
    for (locale, expected) in [
        (
            "fr",
            "l'adresse e-mail de votre compte et l'URL de votre projet",
        ),
        ("en", "your account's e-mail address and your project's URL"),
    ] {
        let input = AckInput {
            ask_for_account: true,
            ..ack_input(&customer, locale)
        };
        let body = fold(&body_text(&ack(&input).raw));
        assert!(body.contains(expected), "{body}");
        let body = fold(&body_text(&ack(&ack_input(&customer, locale)).raw));
        assert!(!body.contains(expected), "{body}");
    }
}

#[test]
fn the_notification_shows_the_account_or_says_clearly_that_none_matched() {
    let customer = julie();
    let out = shipped()
        .render_notification(&identity(), &notification_input(&customer, ORIGINAL))
        .expect("renders");
    let body = body_text(&out.raw);
    assert!(body.contains("NO ACCOUNT MATCHED"), "{body}");
    assert!(
        body.contains("E-mail addresses in the message: julie.pro@example.test"),
        "{body}"
    );
    assert!(
        body.contains("URLs in the message: https://boulangerie.example.test"),
        "{body}"
    );
    let found = Lookup::Found {
        account: Account {
            email: "julie@example.test".into(),
            name: "Julie Martin".into(),
            plan: "pro".into(),
            project_url: "https://boulangerie.example.test".into(),
            company: "Boulangerie Martin".into(),
            created_at: "2024-03-01".into(),
            extra: vec![("seats".into(), "3".into())],
        },
        by: AccountMatch::ProjectUrl,
    };
    let input = NotificationInput {
        locale: "fr",
        account: &found,
        ..notification_input(&customer, ORIGINAL)
    };
    let out = shipped()
        .render_notification(&identity(), &input)
        .expect("renders");
    let body = body_text(&out.raw);
    for expected in [
        "(trouvé par une URL de projet citée dans le message)",
        "  Offre: pro",
        "  Société: Boulangerie Martin",
        "  seats: 3",
    ] {
        assert!(body.contains(expected), "{expected:?} missing from {body}");
    }
    assert!(!body.contains("AUCUN COMPTE"), "{body}");
}

/// Runs of white space folded to one space, so a phrase matches across a line end.
fn fold(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn an_escalation_names_the_level_the_share_used_the_due_time_and_the_account() {
    let found = super::sample_account();
    let input = EscalationInput {
        locale: "en",
        level: Level::AtRisk,
        ticket_ref: "CHT-12",
        customer: "julie@example.test",
        original_subject: "Re: Invoice",
        category_id: "billing",
        status: "open",
        promise: (24, 24),
        business: true,
        share: 0.834,
        due_at: Some(super::tests::due()),
        arrived_at: None,
        assignee: Some("alice@example.test"),
        account: &found,
        to: "team@example.test",
        message_id: "sd.esc.1@example.test",
        customer_message_id: "abc@mail.example.test",
    };
    let out = shipped()
        .render_escalation(&identity(), &input)
        .expect("renders");
    assert_eq!(out.subject, "[CHT-12] Response time at risk: Invoice");
    assert_eq!(out.in_reply_to.as_deref(), Some("abc@mail.example.test"));
    let body = body_text(&out.raw);
    for expected in [
        "83 % of the promised response time is used",
        "Due:      Wednesday, November 25, 2:30 pm Paris time",
        "Assignee: alice@example.test",
        "Promise:  within 24 business hours",
        "(matched by the sender's address)",
        "  Plan: pro",
    ] {
        assert!(body.contains(expected), "{expected:?} missing from {body}");
    }
    let input = EscalationInput {
        locale: "fr",
        level: Level::Breached,
        assignee: None,
        account: &NO_ACCOUNT_SEEN,
        ..input
    };
    let out = shipped()
        .render_escalation(&identity(), &input)
        .expect("renders");
    assert_eq!(
        out.subject,
        "[CHT-12] Délai dépassé : Invoice".replace(" :", ":")
    );
    let body = body_text(&out.raw);
    assert!(
        body.contains("Le délai de réponse promis est dépassé"),
        "{body}"
    );
    assert!(body.contains("Responsable : personne"), "{body}");
    assert!(body.contains("AUCUN COMPTE NE CORRESPOND"), "{body}");
}

static NO_ACCOUNT_SEEN: std::sync::LazyLock<Lookup> =
    std::sync::LazyLock::new(|| Lookup::NotFound {
        emails: Vec::new(),
        urls: Vec::new(),
        accounts_known: true,
    });

#[test]
fn working_hours_are_worded_by_groups_of_days() {
    use wording::{Lang, working_hours};
    let mut week: [Vec<crate::sla::calendar::Span>; 7] =
        std::array::from_fn(|d| if d < 5 { vec![(540, 1080)] } else { Vec::new() });
    assert_eq!(
        working_hours(Lang::Fr, &week),
        "du lundi au vendredi, 09:00-18:00"
    );
    week[5] = vec![(600, 720), (780, 810)];
    assert_eq!(
        working_hours(Lang::En, &week),
        "Monday to Friday, 09:00-18:00; Saturday, 10:00-12:00 and 13:00-13:30"
    );
}

#[test]
fn due_times_read_as_the_issue_writes_them() {
    use chrono::TimeZone;
    use wording::{Lang, due};
    // Tuesday 2 December 2025, 17:00 in Paris.
    let evening = Utc
        .with_ymd_and_hms(2025, 12, 2, 16, 0, 0)
        .single()
        .expect("date");
    assert_eq!(
        due(Lang::En, evening, chrono_tz::Tz::Europe__Paris),
        "Tuesday, December 2, 5:00 pm Paris time"
    );
    assert_eq!(
        due(Lang::Fr, evening, chrono_tz::Tz::Europe__Paris),
        "mardi 2 décembre à 17:00 (heure de Paris)"
    );
    assert_eq!(
        due(Lang::En, evening, chrono_tz::Tz::America__New_York),
        "Tuesday, December 2, 11:00 am New York time"
    );
}
