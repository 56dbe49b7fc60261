//! Class (11): loop markers naming us. X-Loop and its kin carrying one of our own addresses, or
//! our own mailbox delivered to twice, is our own mail coming back: never acknowledged.

use super::*;

#[test]
fn x_loop_and_its_kin_naming_one_of_our_addresses_are_our_own_mail() {
    for (header, reason) in [
        (
            "X-Loop: support@example.test",
            "x-loop: support@example.test",
        ),
        (
            "X-OTRS-Loop: help@example.test",
            "x-otrs-loop: help@example.test",
        ),
        (
            "X-Zammad-Loop: <Support+Billing@Example.TEST>",
            "x-zammad-loop: support+billing@example.test",
        ),
        (
            "X-RT-Loop-Prevention: \"Support\" <support@example.test>",
            "x-rt-loop-prevention: support@example.test",
        ),
        (
            "X-Mailer-Loop: support@example.test",
            "x-mailer-loop: support@example.test",
        ),
        (
            "X-MS-Exchange-Inbox-Rules-Loop: help@example.test",
            "x-ms-exchange-inbox-rules-loop: help@example.test",
        ),
        (
            "X-Loop: owner@lists.example.org, support@example.test",
            "x-loop: support@example.test",
        ),
    ] {
        assert_eq!(
            verdict(header, "Hello, my invoice is wrong."),
            Some((AutomatedKind::OwnMail, reason.into())),
            "{header}"
        );
    }
}

#[test]
fn our_own_mailbox_delivered_to_three_times_is_a_loop_and_a_resent_copy_is_not() {
    assert_eq!(
        verdict(
            "Delivered-To: support@example.test\r\nReceived: by mx\r\nDelivered-To: Support@example.test\r\nReceived: by mx\r\nDelivered-To: support@example.test",
            "hi"
        ),
        Some((
            AutomatedKind::OwnMail,
            "delivered-to three times: support@example.test".into()
        ))
    );
    // Once; twice (a stored copy sent to us again: its header plus our server's); or two
    // different mailboxes of ours (help@ expanded to support@): a person.
    assert_eq!(verdict("Delivered-To: support@example.test", "hi"), None);
    assert_eq!(
        verdict(
            "Delivered-To: support@example.test\r\nReceived: by mx\r\nDelivered-To: support@example.test",
            "hi"
        ),
        None
    );
    assert_eq!(
        verdict(
            "Delivered-To: help@example.test\r\nDelivered-To: support@example.test",
            "hi"
        ),
        None
    );
}

#[test]
fn loop_markers_naming_others_are_not_our_mail() {
    // A customer's procmail or list names its own address: the mail is still a person's.
    assert_eq!(verdict("X-Loop: claire@customers.example", "hi"), None);
    assert_eq!(
        verdict("X-Mailer-Loop: helpdesk@vendor.example", "Please call me."),
        None
    );
    // "X-Loop: yes" from ticket systems stays a robot, as before.
    assert_eq!(kind("X-OTRS-Loop: yes", "hi"), Some(AutomatedKind::Robot));
}
