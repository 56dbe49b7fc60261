//! Class (a): "no auto-reply, please" is not "I am a machine". X-Auto-Response-Suppress and our
//! own group or list in front of the support address withhold the acknowledgement of a person's
//! mail; our group's DMARC rewrite names the person in X-Original-From or Reply-To.

use super::*;

fn verdict_of(raw: &[u8]) -> Verdict {
    inspect(&parse(raw), &policy())
}

fn case(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/cases/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn case_01_outlook_request_with_xars_is_human_mail_whose_acknowledgement_is_withheld() {
    let v = verdict_of(&case("01-xars-outlook-request.eml"));
    assert_eq!(v.automated, None);
    assert_eq!(
        v.withhold.as_deref(),
        Some(
            "the sender asked for no automatic reply (x-auto-response-suppress: DR, OOF, AutoReply)"
        )
    );
    assert_eq!(v.person, None);
}

#[test]
fn case_01b_outlook_reply_with_xars_is_human_mail_that_joins_its_thread() {
    // Step 1 has no XARS: a plain request, acknowledged.
    assert_eq!(
        verdict_of(&case("01b-xars-outlook-reply.1.eml")),
        Verdict::default()
    );
    // Step 2 answers our acknowledgement: human, so it joins the ticket and the team hears of it.
    let v = verdict_of(&case("01b-xars-outlook-reply.2.eml"));
    assert_eq!(v.automated, None);
    assert!(
        v.withhold
            .is_some_and(|w| w.contains("x-auto-response-suppress"))
    );
}

#[test]
fn xars_on_another_client_and_in_another_header_order_withholds_only() {
    let raw = "X-Auto-Response-Suppress: All\r\nFrom: =?utf-8?q?Jos=C3=A9_Pereira?= <jose@clinic.example>\r\nTo: Support <support@example.test>\r\nSubject: RE: [CHT-4] Export CSV\r\nIn-Reply-To: <sd.ack.1@example.test>\r\nMessage-ID: <x1@clinic.example>\r\nX-Mailer: Microsoft Outlook 16.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>The export still fails, see attached.</p>\r\n";
    let v = verdict_of(raw.as_bytes());
    assert_eq!(v.automated, None);
    assert_eq!(
        v.withhold.as_deref(),
        Some("the sender asked for no automatic reply (x-auto-response-suppress: All)")
    );
}

#[test]
fn case_15_google_group_in_front_of_support_is_the_customers_mail_with_no_acknowledgement() {
    let raw = case("15-google-group-front-address.eml");
    let msg = parse(&raw);
    assert_eq!(msg.from_address(), "denis.vasseur@customers.example");
    let v = inspect(&msg, &policy());
    assert_eq!(v.automated, None);
    let reason = v.withhold.unwrap();
    assert!(reason.starts_with("relayed by our own list"), "{reason}");
    assert!(reason.contains("help@example.test"), "{reason}");
    assert_eq!(v.person, None);
}

#[test]
fn a_mailman_or_ezmlm_list_in_front_of_support_withholds_and_a_foreign_list_stays_a_list() {
    let mailman = "From: Ana Ruiz <ana@shop.example>\r\nTo: help@example.test\r\nList-Id: \"Help desk\" <help.example.test>\r\nX-BeenThere: help@example.test\r\nPrecedence: list\r\nList-Post: <mailto:help@example.test>\r\nList-Unsubscribe: <https://lists.example.test/mailman/options/help>, <mailto:help-request@example.test?subject=unsubscribe>\r\nSender: \"Help\" <help-bounces@example.test>";
    let v = inspect(&mail(mailman, "Bonjour, ma facture est fausse."), &policy());
    assert_eq!(v.automated, None);
    assert!(
        v.withhold
            .is_some_and(|w| w.contains("<help.example.test> names help@example.test"))
    );
    // ezmlm says Precedence: bulk and names the list in Mailing-List only.
    let ezmlm = "Mailing-List: contact help-help@example.test; run by ezmlm\r\nPrecedence: bulk\r\nList-Post: <mailto:help@example.test>\r\nDelivered-To: mailing list help@example.test";
    let v = inspect(&mail(ezmlm, "Where is my invoice?"), &policy());
    assert_eq!(v.automated, None);
    assert!(v.withhold.is_some_and(|w| w.contains("help@example.test")));
    // A list of someone else's, even one that also carries our address, is list traffic.
    assert_eq!(
        kind(
            "List-Id: <users.lists.vendor.example>\r\nX-BeenThere: help@example.test\r\nPrecedence: list",
            "hi"
        ),
        Some(AutomatedKind::MailingList)
    );
    // Another list on our own domain is not ours unless it is one of our addresses.
    assert_eq!(
        kind("List-Id: <sales.example.test>", "hi"),
        Some(AutomatedKind::MailingList)
    );
    // A bounce our group relays is still a bounce.
    let bounce = "From: Mail Delivery Subsystem <mailer-daemon@groups.example>\r\nList-Id: <help.example.test>\r\nPrecedence: list";
    assert_eq!(kind(bounce, "Delivery failed"), Some(AutomatedKind::Bounce));
}

#[test]
fn our_groups_dmarc_rewrite_is_the_persons_mail_named_in_x_original_from_or_reply_to() {
    // Google Groups: 'Name' via Group <group@...>, X-Original-From and Reply-To.
    let google = "From: 'Denis Vasseur' via Help <help@example.test>\r\nX-Original-From: Denis Vasseur <denis.vasseur@customers.example>\r\nReply-To: Denis Vasseur <denis.vasseur@customers.example>\r\nList-ID: <help.example.test>\r\nPrecedence: list\r\nX-BeenThere: help@example.test";
    let v = inspect(&mail(google, "Facture introuvable."), &policy());
    assert_eq!(v.automated, None);
    assert_eq!(
        v.person,
        Some(Mailbox {
            name: Some("Denis Vasseur".into()),
            address: "denis.vasseur@customers.example".into()
        })
    );
    assert!(v.withhold.is_some());
    // Mailman's from_is_list: the author only in Reply-To, the "via" name says it is a rewrite.
    let mailman =
        "From: Ana Ruiz via Help <help@example.test>\r\nReply-To: Ana Ruiz <ana@shop.example>";
    let v = inspect(&mail(mailman, "Hello"), &policy());
    assert_eq!(v.automated, None);
    assert_eq!(v.person.map(|p| p.address), Some("ana@shop.example".into()));
    // The person's own machine marks still count: a robot through our group is a robot.
    let robot =
        "From: 'noreply' via Help <help@example.test>\r\nX-Original-From: noreply@shop.example";
    assert_eq!(kind(robot, "Your order"), Some(AutomatedKind::Robot));
    // From our own address with a Reply-To but no sign of a relay: our own mail.
    assert_eq!(
        verdict(
            "From: support@example.test\r\nReply-To: ann@example.net",
            "hi"
        ),
        Some((AutomatedKind::OwnMail, "own address".into()))
    );
    // X-Original-From naming ourselves changes nothing either.
    assert_eq!(
        kind(
            "From: Help <help@example.test>\r\nX-Original-From: support@example.test",
            "hi"
        ),
        Some(AutomatedKind::OwnMail)
    );
}
