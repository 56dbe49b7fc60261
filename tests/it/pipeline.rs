//! The pipeline's batch machinery on a real SQLite file: the writer, the worker pool that
//! analyses ahead of it and renders behind it, and the fallback that reruns a failed batch
//! message by message. Failures are provoked with a SQLite trigger ([`db::fail_subject`]), the
//! only way to make a well-formed message fail inside the database.

use supportd::config::Config;
use supportd::pipeline::{AckDecision, Action, Incoming, Pipeline};
use supportd::store::{self, OutboxKind, Store};

use crate::helpers::config::TestConfig;
use crate::helpers::{db, init_logs};

/// A fresh database in a temporary folder (kept while the first value lives), and a
/// pipeline on it.
fn setup() -> (tempfile::TempDir, Config, Store, Pipeline) {
    init_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = TestConfig::new(dir.path()).team("team@example.test").load();
    let mut store = Store::open(&config.storage.database).expect("open");
    let pipeline = Pipeline::new(&config, &mut store).expect("pipeline");
    (dir, config, store, pipeline)
}

fn mail(n: usize, subject: &str) -> Incoming {
    Incoming::new(
        format!(
            "From: Customer {n} <customer{n}@example.org>\r\nTo: support@example.test\r\n\
             Subject: {subject}\r\nMessage-ID: <m{n}@example.org>\r\n\
             Date: Tue, 24 Nov 2026 10:00:00 +0100\r\n\r\n\
             Bonjour, je n'arrive plus à me connecter à mon compte depuis hier (demande {n}).\r\n"
        )
        .into_bytes(),
        format!("test:{n}"),
    )
}

#[test]
fn a_message_that_fails_in_the_database_is_quarantined_and_the_rest_of_the_batch_goes_on() {
    let (_dir, _, mut store, pipeline) = setup();
    db::fail_subject(store.conn(), "boom");
    let batch: Vec<Incoming> = (0..60)
        .map(|n| {
            mail(
                n,
                if n == 30 {
                    "boom"
                } else {
                    "Connexion impossible"
                },
            )
        })
        .collect();
    let outcomes = pipeline
        .ingest_batch(&mut store, batch, |_| Ok(()))
        .expect("batch");

    assert_eq!(outcomes.len(), 60);
    for (n, o) in outcomes.iter().enumerate() {
        assert_eq!(o.source, format!("test:{n}"), "outcomes in input order");
        if n == 30 {
            assert_eq!(o.action, Action::Quarantined, "{o:?}");
            assert!(
                o.error
                    .as_deref()
                    .unwrap_or("")
                    .contains("provoked failure"),
                "{o:?}"
            );
        } else {
            assert_eq!(o.action, Action::New, "{o:?}");
            assert_eq!(o.ack, AckDecision::Queued, "{o:?}");
        }
    }
    // The first attempt's renderings were thrown away with its transaction: each of the 59
    // customers has exactly one acknowledgement, and the team one notification per ticket.
    let outbox = store::list_outbox(store.conn(), None).expect("outbox");
    let acks: Vec<_> = outbox
        .iter()
        .filter(|o| o.kind == OutboxKind::Ack)
        .collect();
    assert_eq!(acks.len(), 59);
    let mut customers: Vec<&str> = acks.iter().map(|o| o.to.as_str()).collect();
    customers.sort_unstable();
    customers.dedup();
    assert_eq!(customers.len(), 59);
    assert_eq!(
        outbox
            .iter()
            .filter(|o| o.kind == OutboxKind::Notification)
            .count(),
        59
    );
    let stats = store::stats(store.conn()).expect("stats");
    assert_eq!(stats.tickets, 59);
    assert_eq!(store::quarantined(store.conn(), 10).expect("q").len(), 1);
}

#[test]
fn mail_rendered_by_the_workers_is_queued_in_the_order_the_writer_decided_it() {
    let (_dir, _, mut store, pipeline) = setup();
    for round in 0..3 {
        let batch: Vec<Incoming> = (0..200)
            .map(|n| mail(round * 1000 + n, "Connexion impossible"))
            .collect();
        let outcomes = pipeline
            .ingest_batch(&mut store, batch, |_| Ok(()))
            .expect("batch");
        assert!(outcomes.iter().all(|o| o.action == Action::New));
    }
    // Outbox ids grow with the tickets: ack then notification for CHT-1, then CHT-2...
    let mut outbox = store::list_outbox(store.conn(), None).expect("outbox");
    outbox.sort_by_key(|o| o.id);
    assert_eq!(outbox.len(), 1200);
    for (i, pair) in outbox.chunks(2).enumerate() {
        let ticket = format!("CHT-{}", i + 1);
        assert_eq!(pair[0].kind, OutboxKind::Ack);
        assert_eq!(pair[1].kind, OutboxKind::Notification);
        assert_eq!(pair[0].ticket.as_deref(), Some(ticket.as_str()));
        assert_eq!(pair[1].ticket.as_deref(), Some(ticket.as_str()));
        assert!(
            pair[0].subject.starts_with(&format!("[{ticket}]")),
            "{:?}",
            pair[0]
        );
    }
}

#[test]
fn one_pipeline_fed_from_two_threads_with_two_connections_finishes_both_without_stalling() {
    let (_dir, config, first, pipeline) = setup();
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        let feeders: Vec<_> = [first, Store::open(&config.storage.database).expect("open")]
            .into_iter()
            .enumerate()
            .map(|(t, mut store)| {
                let pipeline = &pipeline;
                s.spawn(move || {
                    for round in 0..5 {
                        let batch = (0..100)
                            .map(|n| mail(t * 100_000 + round * 1000 + n, "Connexion"))
                            .collect();
                        pipeline
                            .ingest_batch(&mut store, batch, |_| Ok(()))
                            .expect("batch");
                    }
                })
            })
            .collect();
        for f in feeders {
            f.join().expect("feeder");
        }
    });
    // The busy timeout is 30 s: a writer holding the lock while its analyses wait behind the
    // other batch's workers would show here.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let check = Store::open(&config.storage.database).expect("open");
    let stats = store::stats(check.conn()).expect("stats");
    assert_eq!(stats.tickets, 1000);
    assert_eq!(stats.acks_queued, 1000);
}

#[test]
fn a_batch_prepared_during_a_commit_is_ingested_next_and_an_unused_one_changes_nothing() {
    let (_dir, _, mut store, pipeline) = setup();
    let batch = |from: usize| (from..from + 50).map(|n| mail(n, "Connexion")).collect();
    let mut second = None;
    let first = pipeline
        .ingest_prepared(&mut store, pipeline.prepare(batch(0)), |_| {
            second = Some(pipeline.prepare(batch(100)));
            Ok(())
        })
        .expect("first");
    // Analysed, never ingested: nothing of it may reach the database.
    drop(pipeline.prepare(batch(200)));
    let second = pipeline
        .ingest_prepared(&mut store, second.expect("prepared"), |_| Ok(()))
        .expect("second");
    assert!(first.iter().chain(&second).all(|o| o.action == Action::New));
    assert_eq!(second[0].source, "test:100");
    let stats = store::stats(store.conn()).expect("stats");
    assert_eq!((stats.tickets, stats.messages), (100, 100));
}

#[test]
fn mail_received_longer_ago_than_max_ack_age_gets_a_ticket_and_a_notification_but_no_ack() {
    let (_dir, _, mut store, pipeline) = setup();
    let now = chrono::Utc::now().timestamp();
    let batch = [None, Some(now - 86_400), Some(now - 8 * 86_400)]
        .into_iter()
        .enumerate()
        .map(|(n, delivered_at)| Incoming {
            delivered_at,
            ..mail(n, "Connexion impossible")
        })
        .collect();
    let outcomes = pipeline
        .ingest_batch(&mut store, batch, |_| Ok(()))
        .expect("batch");
    assert_eq!(outcomes[0].ack, AckDecision::Queued);
    assert_eq!(outcomes[1].ack, AckDecision::Queued);
    assert_eq!(
        outcomes[2].ack,
        AckDecision::Suppressed("received 8 days ago, over guard.max_ack_age".into())
    );
    assert!(outcomes.iter().all(|o| o.action == Action::New));
    let stats = store::stats(store.conn()).expect("stats");
    assert_eq!((stats.tickets, stats.acks_queued), (3, 2));
    assert_eq!(stats.notifications_queued, 3);
}
