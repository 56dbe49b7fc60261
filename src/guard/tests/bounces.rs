//! Class (12): bounces that mark nothing. Gateways, antivirus relays, Exchange and GroupWise
//! send delivery reports with no DSN, no null sender and no robot local part; their wording
//! (anywhere in the subject, at the top of the body, in English and French) and their oddly
//! written system senders give them away. A person who writes that their own mail bounced is
//! still a person.

use super::*;

/// A report from a relay that marks nothing: ordinary sender, no Return-Path <>, no DSN.
fn gateway(subject: &str, body: &str) -> Option<AutomatedKind> {
    kind(
        &format!("From: Passerelle <relay@gw.customers.example>\r\nSubject: {subject}"),
        body,
    )
}

#[test]
fn report_sentences_at_the_top_of_the_body_are_bounces_in_english_and_french() {
    for (subject, body) in [
        (
            "Notification",
            "Votre message n'a pas pu être remis à compta@customers.example.\r\n\r\nRaison : boîte aux lettres pleine.\r\n",
        ),
        (
            "Votre demande",
            "**************************************\r\n** Message du filtre de messagerie **\r\n**************************************\r\n\r\nLe message suivant n'a pas pu être distribué aux destinataires suivants :\r\ncompta@customers.example\r\n",
        ),
        (
            "Message status",
            "The message that you sent was undeliverable to the following:\r\n\tclaire@customers.example (user not found)\r\n\r\nPossibly truncated original message follows:\r\n",
        ),
        (
            "Your request",
            "<< Symantec Messaging Gateway >>\r\n\r\nYour message to claire@customers.example couldn't be delivered.\r\nclaire wasn't found at customers.example.\r\n",
        ),
        (
            "Re: Facture",
            "Ce message a été créé automatiquement par le logiciel de distribution du courrier.\r\n\r\nUn message que vous avez envoyé n'a pas pu être remis.\r\n",
        ),
        (
            "Delivery report",
            "Hi!\r\n\r\nThis is the MAILER-DAEMON, please DO NOT REPLY to this e-mail.\r\nAn error has occurred while attempting to deliver a message.\r\n",
        ),
    ] {
        assert_eq!(
            gateway(subject, body),
            Some(AutomatedKind::Bounce),
            "{body}"
        );
    }
}

#[test]
fn failure_wording_after_a_reply_prefix_or_a_product_name_counts_with_a_report_in_the_body() {
    for subject in [
        "RE: Undeliverable: Facture de novembre",
        "[Sophos] Delivery failed: Votre demande",
        "Kerio Connect: message non remis",
        "TR : Non remis : Facture",
        "Mailinblack - échec de la remise du message",
        "Exchange: delivery has failed",
    ] {
        let forward = bounce::is_forward(subject);
        let got = gateway(
            subject,
            "Remote server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'\r\n",
        );
        // A forward is a person passing a report on, whatever it says.
        let want = (!forward).then_some(AutomatedKind::Bounce);
        assert_eq!(got, want, "{subject}");
    }
    // Where MTAs put it, the subject alone is enough, also after a reporting host's name.
    assert_eq!(
        gateway(
            "mx2.customers.example Mail delivery failed : returning message to sender",
            ""
        ),
        Some(AutomatedKind::Bounce)
    );
    assert_eq!(
        gateway("Non remis : Facture", ""),
        Some(AutomatedKind::Bounce)
    );
}

#[test]
fn system_senders_written_oddly_are_still_mta_senders() {
    for from in [
        "From: \"MAILER-DAEMON\"@mx.customers.example",
        "From: Mail Delivery System <\"mailer\\-daemon\"@mx.customers.example>",
        "From: Mailer_Daemon@mx.customers.example",
        "From: \"postmaster@customers.example\" <>",
        "From: MAILER-DAEMON (Mail Delivery System)",
        "From: Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@customers.example>",
        "From: relay!MAILER-DAEMON",
    ] {
        assert_eq!(
            kind(&format!("{from}\r\nSubject: Re: votre message"), "Bonjour"),
            Some(AutomatedKind::Bounce),
            "{from}"
        );
    }
    // A system's display name with failure wording in the subject.
    assert_eq!(
        kind(
            "From: \"Mail Delivery Subsystem\" <notices@gw.customers.example>\r\nSubject: Votre demande - non distribuable",
            "See the attached details."
        ),
        Some(AutomatedKind::Bounce)
    );
    // Local parts that only look similar are people.
    for person in [
        "From: mailer@customers.example",
        "From: post.mistress@customers.example",
    ] {
        assert_eq!(kind(person, "Hello"), None, "{person}");
    }
}

#[test]
fn delay_warnings_that_mark_nothing_are_reports() {
    assert_eq!(
        gateway(
            "Notification",
            "Delivery to the following recipient has been delayed:\r\n\r\n     claire@customers.example\r\n\r\nMessage will be retried for 2 more day(s)\r\n"
        ),
        Some(AutomatedKind::Report)
    );
    assert_eq!(
        gateway("Information", "La remise de ce message est retardée.\r\n"),
        Some(AutomatedKind::Report)
    );
}

#[test]
fn a_person_writing_that_their_own_mail_bounced_is_still_a_person() {
    for (subject, body) in [
        (
            "Mail delivery failed when I write to billing",
            "Hello,\r\nI keep getting \"Mail delivery failed: returning message to sender\" when I write to billing@example.test. 550 5.1.1 user unknown. Can you check?\r\n",
        ),
        (
            "Re: Undeliverable: Invoice 2211",
            "Hi, I got this back:\r\n\r\nYour message to billing@example.test couldn't be delivered.\r\n\r\nWhat should I do?\r\n",
        ),
        (
            "Message non remis à la comptabilité",
            "Bonjour,\r\nmon message à compta@example.test n'a pas pu être remis, j'ai reçu une erreur 550 5.1.1.\r\nMerci de vérifier.\r\nClaire\r\n",
        ),
        (
            "Undelivered messages in the chat widget",
            "Messages from my visitors are undelivered since yesterday.\r\n",
        ),
        (
            "Emails to your accountant bounce",
            "Emails to accountant@example.test bounce with 550 5.1.1 since Monday.\r\nThanks, Marc\r\n",
        ),
        (
            "Delivery failed for order 1234",
            "The parcel never arrived.\r\n",
        ),
        (
            "Voici l'erreur",
            "Voici l'erreur reçue :\r\nThis is the mail system at host mx.example.test.\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n",
        ),
    ] {
        assert_eq!(
            kind(&format!("Subject: {subject}"), body),
            None,
            "{subject}"
        );
    }
    // A forward of a report, with the report below the separator.
    for (subject, separator) in [
        (
            "Fwd: Undeliverable: Facture",
            "---------- Forwarded message ---------",
        ),
        (
            "TR: Non remis : Facture",
            "-------- Message transféré --------",
        ),
        ("Mail returned", "Begin forwarded message:"),
    ] {
        let body = format!(
            "Can you look at this?\r\n\r\n{separator}\r\nFrom: Mail Delivery System <MAILER-DAEMON@mx.example.test>\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\nThis is the mail system at host mx.example.test.\r\n"
        );
        assert_eq!(
            kind(&format!("Subject: {subject}"), &body),
            None,
            "{subject}"
        );
    }
}

#[test]
fn a_persons_terse_sentences_about_a_failed_delivery_are_not_reports() {
    for body in [
        "Le message n'a pas pu être remis à la compta, pouvez-vous vérifier ?\r\n",
        "Your message to billing@example.test couldn't be delivered, can you fix it\r\n",
        "The original message was received at our office on Monday, then nothing.\r\n",
        "The message was created automatically by the CRM and never arrived.\r\n",
        "Unable to deliver to billing@example.test since Monday.\r\n",
    ] {
        assert_eq!(kind("Subject: Question", body), None, "{body}");
    }
}
