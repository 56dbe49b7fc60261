//! One batch of raw messages in, one committed transaction out.
//!
//! Entry point: [`Pipeline::ingest_batch`]. Each message goes parse → guard → thread → classify →
//! store → reply, all inside one SQLite transaction for the batch, so a crash leaves either
//! everything or nothing. The stages decide; this module only runs them in order and records
//! what they decided: [`thread::Threading::resolve`] picks the ticket,
//! [`guard::may_acknowledge`] says whether the customer may be answered, [`reply::Draft`]
//! describes the mail to send. Should one message fail, the batch is run again with a savepoint
//! per message, so that it alone is rolled back and quarantined (raw bytes and the error kept)
//! while the rest of the batch goes on.
//!
//! Threads: this one is the only SQLite writer; workers (one per core, `pool`) parse, guard and
//! classify ahead of it, then render the mail it decides on (`jobs`).

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock, RwLock, mpsc};

use anyhow::Context;
use rusqlite::Connection;

use crate::classify::Classifier;
use crate::config::Config;
use crate::guard::{self, AckHistory, AckPolicy, AutomatedKind, GuardPolicy};
use crate::parse::ParsedMessage;
use crate::reply::{self, AckDraft, Draft, Identity, NotificationDraft, Templates};
use crate::store::{self, Store, StoreError};
use crate::thread::{self, MessageIdSigner, Threading};

mod jobs;
mod outcome;
mod pool;
mod record;

use jobs::{JobQueue, Results};
pub use outcome::{AckDecision, Action, Incoming, Outcome};
pub use pool::Prepared;
use pool::{Analysed, Analyser, map_parallel};

type Rendered = Result<reply::Outgoing, reply::ReplyError>;

/// A draft and the index of the outcome it belongs to (an acknowledgement that fails to render
/// corrects that outcome).
struct Planned<'a> {
    outcome: usize,
    draft: Draft<'a>,
}

/// Everything the pipeline needs that does not change per message.
pub struct Pipeline {
    threading: Threading,
    acks: AckPolicy,
    support_address: String,
    team_address: Option<String>,
    own_addresses: Vec<String>,
    default_locale: String,
    identity: Identity,
    analyser: Arc<Analyser>,
    signer: MessageIdSigner,
    rules_dir: std::path::PathBuf,
    templates_dir: std::path::PathBuf,
    classifier: RwLock<Arc<Classifier>>,
    templates: RwLock<Arc<Templates>>,
    /// Parse, guard, classify and render, one thread per core, beside the SQLite writer.
    workers: rayon::ThreadPool,
    batch_in_progress: std::sync::Mutex<()>,
}

impl Pipeline {
    /// Builds the pipeline: loads rules and templates, and the Message-ID key from `store`.
    ///
    /// # Errors
    /// Invalid rules or templates (with file and line), or a database error.
    pub fn new(config: &Config, store: &mut Store) -> anyhow::Result<Pipeline> {
        let classifier = Classifier::load_dir(&config.rules.dir)
            .with_context(|| format!("loading rules from {}", config.rules.dir.display()))?;
        let templates = Templates::load(&config.templates.dir).with_context(|| {
            format!("loading templates from {}", config.templates.dir.display())
        })?;
        let key = store.hmac_key().context("reading the Message-ID key")?;
        let own_addresses = config.own_addresses();
        let guard = GuardPolicy::new(
            own_addresses.clone(),
            config.support_domain(),
            &config.guard.robot_local_parts,
        )
        .context("guard.robot_local_parts")?;
        // One worker per core, not one fewer: the writer spends much of a batch waiting (for an
        // analysis, for fsync), and on two cores one worker left a core idle meanwhile.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = rayon::ThreadPoolBuilder::new()
            .num_threads(cores.clamp(1, 4))
            .thread_name(|i| format!("supportd-worker-{i}"))
            .build()
            .context("starting the worker threads")?;
        let timezone = config
            .support
            .timezone
            .parse()
            .map_err(|e| anyhow::anyhow!("support.timezone: {e}"))?;
        let support_address = config.support.address.to_ascii_lowercase();
        Ok(Pipeline {
            threading: Threading {
                prefix: config.support.ticket_prefix.clone(),
                support_address: support_address.clone(),
                agents: config
                    .support
                    .agents
                    .iter()
                    .map(|a| a.to_ascii_lowercase())
                    .collect(),
            },
            acks: AckPolicy {
                own_addresses: own_addresses.clone(),
                max_per_hour: config.guard.max_acks_per_hour,
                max_per_day: config.guard.max_acks_per_day,
                max_age: config.guard.max_ack_age,
            },
            team_address: config.support.team_address.clone(),
            own_addresses,
            default_locale: config.support.default_locale.clone(),
            identity: Identity {
                address: config.support.address.clone(),
                name: config.support.name.clone(),
                timezone,
            },
            analyser: Arc::new(Analyser {
                guard,
                support_address: support_address.clone(),
            }),
            support_address,
            signer: MessageIdSigner::new(&key, config.support_domain()),
            rules_dir: config.rules.dir.clone(),
            templates_dir: config.templates.dir.clone(),
            classifier: RwLock::new(Arc::new(classifier)),
            templates: RwLock::new(Arc::new(templates)),
            workers,
            batch_in_progress: std::sync::Mutex::new(()),
        })
    }

    /// Re-reads rules and templates. When either is invalid the running ones stay and the
    /// error says why (file, line, reason).
    ///
    /// # Errors
    /// The new rules or templates are invalid; nothing was replaced.
    pub fn reload(&self) -> anyhow::Result<()> {
        let classifier = Classifier::load_dir(&self.rules_dir)
            .with_context(|| format!("reloading rules from {}", self.rules_dir.display()))?;
        let templates = Templates::load(&self.templates_dir).with_context(|| {
            format!("reloading templates from {}", self.templates_dir.display())
        })?;
        *self.classifier.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(classifier);
        *self.templates.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(templates);
        Ok(())
    }

    /// The rules in force.
    pub fn classifier(&self) -> Arc<Classifier> {
        self.classifier
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn templates(&self) -> Arc<Templates> {
        self.templates
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The signer of our Message-IDs.
    pub fn signer(&self) -> &MessageIdSigner {
        &self.signer
    }

    /// Ingests `batch` in one transaction. `before_commit` runs inside it last, so a caller can
    /// record its own progress (an IMAP UID watermark) atomically with the messages.
    ///
    /// # Errors
    /// Only database errors that stop the whole batch; per-message failures are quarantined.
    pub fn ingest_batch<F>(
        &self,
        store: &mut Store,
        batch: Vec<Incoming>,
        before_commit: F,
    ) -> Result<Vec<Outcome>, StoreError>
    where
        F: FnOnce(&Connection) -> Result<(), StoreError>,
    {
        self.ingest_prepared(store, self.prepare(batch), before_commit)
    }

    /// Starts parsing, guarding and classifying `batch` on the worker pool and returns at once.
    /// A caller with the next batch in hand while the current one commits (the IMAP intake,
    /// a bulk import) prepares it then, so the analyses overlap the commit's fsync.
    pub fn prepare(&self, batch: Vec<Incoming>) -> Prepared {
        let prepared = Prepared {
            slots: batch.iter().map(|_| OnceLock::new()).collect(),
            batch: Arc::new(batch),
            next: Arc::new(AtomicUsize::new(0)),
            classifier: self.classifier(),
        };
        for _ in 0..self.workers.current_num_threads() {
            let job = prepared.clone();
            let analyser = Arc::clone(&self.analyser);
            self.workers.spawn(move || job.analyse_all(&analyser));
        }
        prepared
    }

    /// [`Self::ingest_batch`] for a batch whose analysis [`Self::prepare`] started.
    ///
    /// # Errors
    /// Only database errors that stop the whole batch; per-message failures are quarantined.
    pub fn ingest_prepared<F>(
        &self,
        store: &mut Store,
        prepared: Prepared,
        before_commit: F,
    ) -> Result<Vec<Outcome>, StoreError>
    where
        F: FnOnce(&Connection) -> Result<(), StoreError>,
    {
        self.ingest_prepared_after(store, prepared, &|_| Ok(()), before_commit)
    }

    /// Runs quarantined messages (their `messages` row ids) through the pipeline again, once
    /// the cause is fixed (a rule, a template, a parser upgrade). In one transaction each
    /// quarantined row is removed and its raw bytes are ingested anew under their original
    /// source; one that fails again is quarantined again. Ids that are not quarantined are
    /// skipped.
    ///
    /// # Errors
    /// Database errors, or another process retried the same messages meanwhile.
    pub fn retry_quarantined(
        &self,
        store: &mut Store,
        ids: &[i64],
    ) -> Result<Vec<Outcome>, StoreError> {
        let rows = store::quarantined_raw(store.conn(), ids)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let row_ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let batch = rows
            .into_iter()
            .map(|r| Incoming::new(r.raw, r.source))
            .collect();
        let release = |conn: &Connection| store::release_quarantined(conn, &row_ids);
        self.ingest_prepared_after(store, self.prepare(batch), &release, |_| Ok(()))
    }

    /// [`Self::ingest_prepared`], with `on_begin` run first in the batch's transaction (and
    /// again in the rerun's, should a message fail).
    fn ingest_prepared_after<F>(
        &self,
        store: &mut Store,
        prepared: Prepared,
        on_begin: &dyn Fn(&Connection) -> Result<(), StoreError>,
        before_commit: F,
    ) -> Result<Vec<Outcome>, StoreError>
    where
        F: FnOnce(&Connection) -> Result<(), StoreError>,
    {
        let templates = self.templates();
        // Once the analyses are done the pool's threads render the mail the writer decides
        // on, while it goes on with the next message's SQL.
        let renders: JobQueue<Arc<Planned<'_>>> = JobQueue::default();
        let (rendered_tx, rendered) = mpsc::channel();
        // A batch's workers hold every pool thread until its writer finishes. Were two batches
        // let in at once, one writer could hold SQLite's write lock while waiting for analyses
        // that sit queued behind the other batch's workers, until the busy timeout. (Prepared
        // analyses never wait, so they need no turn.)
        let _one_batch = self
            .batch_in_progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The writer stays on this thread; the workers are the pool's long-lived threads, whose
        // regex caches stay warm from one batch to the next.
        self.workers.in_place_scope(|scope| {
            for _ in 0..self.workers.current_num_threads() {
                let (prepared, analyser, templates) = (&prepared, &*self.analyser, &templates);
                let (renders, rendered_tx) = (&renders, rendered_tx.clone());
                scope.spawn(move |_| {
                    // Analyses the prepare-time jobs have not reached yet come first: the
                    // writer needs them in order.
                    prepared.analyse_all(analyser);
                    while let Some((seq, planned)) = renders.pop() {
                        let result = self.render(&planned, templates);
                        if rendered_tx.send((seq, result)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(rendered_tx);
            // Whatever way the writer leaves (an error, a panic), the workers must be let go or
            // the scope would wait for them forever.
            let _release = renders.closer();
            self.commit_batch(
                store,
                &prepared.batch,
                &prepared.slots,
                &prepared.classifier,
                &templates,
                Results {
                    queue: &renders,
                    results: rendered,
                },
                on_begin,
                before_commit,
            )
        })
    }

    /// Renders one planned mail with the identity and team locale of this pipeline.
    fn render(&self, planned: &Planned<'_>, templates: &Templates) -> Rendered {
        planned
            .draft
            .render(templates, &self.identity, &self.default_locale)
    }

    /// The writer's half of [`Self::ingest_batch`]: one transaction for the whole batch.
    #[allow(clippy::too_many_arguments)]
    fn commit_batch<'a, F>(
        &self,
        store: &mut Store,
        batch: &'a [Incoming],
        slots: &'a [OnceLock<Analysed>],
        classifier: &Classifier,
        templates: &Templates,
        renderers: Results<'_, Arc<Planned<'a>>, Rendered>,
        on_begin: &dyn Fn(&Connection) -> Result<(), StoreError>,
        before_commit: F,
    ) -> Result<Vec<Outcome>, StoreError>
    where
        F: FnOnce(&Connection) -> Result<(), StoreError>,
    {
        let parsed = || slots.iter().map(OnceLock::wait);
        let tx = store.begin()?;
        on_begin(&tx)?;
        // Fast path: the whole batch without savepoints (they cost a journal copy of every page
        // a message touches). Should any message fail, the batch is rolled back and run again
        // with one savepoint per message, so that only the failing one is quarantined.
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut drafts: Vec<Arc<Planned<'a>>> = Vec::new();
        let mut failed = false;
        // One message through the pipeline; `at` is the index its outcome will have.
        let process = |tx: &Connection, incoming, analysed, at, drafts: &mut Vec<_>| {
            self.process(tx, classifier, templates, incoming, analysed, at, drafts)
        };
        for (incoming, analysed) in batch.iter().zip(parsed()) {
            match process(&tx, incoming, analysed, outcomes.len(), &mut drafts) {
                Ok(outcome) => outcomes.push(outcome),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
            for draft in drafts.iter().skip(renderers.queue.pushed()) {
                renderers.queue.push(Arc::clone(draft));
            }
        }
        renderers.queue.close();
        let tx = if failed {
            tx.rollback()?;
            outcomes.clear();
            drafts.clear();
            let tx = store.begin()?;
            on_begin(&tx)?;
            for (incoming, analysed) in batch.iter().zip(parsed()) {
                let msg = &analysed.msg;
                tx.prepare_cached("SAVEPOINT message")?.execute([])?;
                let drafted = drafts.len();
                match process(&tx, incoming, analysed, outcomes.len(), &mut drafts) {
                    Ok(outcome) => {
                        tx.prepare_cached("RELEASE message")?.execute([])?;
                        outcomes.push(outcome);
                    }
                    Err(e) => {
                        tx.execute_batch("ROLLBACK TO message; RELEASE message")?;
                        drafts.truncate(drafted);
                        // A busy database is no fault of the message: the whole batch is retried.
                        let e = match e.downcast::<StoreError>() {
                            Ok(StoreError::Busy(b)) => return Err(StoreError::Busy(b)),
                            Ok(other) => anyhow::Error::from(other),
                            Err(e) => e,
                        };
                        tracing::error!(
                            source = %incoming.source,
                            message_id = %msg.message_id,
                            error.cause_chain = ?e,
                            "message quarantined: {e:#}"
                        );
                        outcomes.push(record::quarantine(&tx, incoming, msg, &format!("{e:#}"))?);
                    }
                }
            }
            tx
        } else {
            tx
        };
        let rendered = if failed {
            map_parallel(&drafts, |d| self.render(d, templates))
        } else {
            renderers.collect(
                drafts.len(),
                |d| self.render(d, templates),
                || {
                    Err(reply::ReplyError::Build {
                        what: "mail",
                        reason: "a render worker ended without rendering it".into(),
                    })
                },
            )
        };
        for (planned, result) in drafts.iter().zip(rendered) {
            record::queue_planned(&tx, planned, result, &mut outcomes)?;
        }
        before_commit(&tx)?;
        tx.commit()?;
        store.committed();
        for o in &outcomes {
            tracing::info!(
                ticket = o.ticket.as_deref().unwrap_or("-"),
                message_id = %o.message_id,
                action = o.action.as_str(),
                category = o.category.as_deref().unwrap_or("-"),
                source = %o.source,
                "ingested"
            );
        }
        Ok(outcomes)
    }

    /// Decides and stores one message; the mail it calls for is added to `drafts`, to be
    /// rendered and queued before the commit. `at` is the index its outcome will have.
    #[allow(clippy::too_many_arguments)]
    fn process<'a>(
        &self,
        conn: &Connection,
        classifier: &Classifier,
        templates: &Templates,
        incoming: &'a Incoming,
        analysed: &'a Analysed,
        at: usize,
        drafts: &mut Vec<Arc<Planned<'a>>>,
    ) -> anyhow::Result<Outcome> {
        let msg = &analysed.msg;
        if let Some(failure) = &analysed.failure {
            anyhow::bail!("{failure}");
        }
        let now = store::now();
        let bracketed = format!("<{}>", msg.message_id);
        if let Some(existing) = store::find_duplicate(conn, &msg.message_id, &msg.raw_sha256)? {
            store::record_event(
                conn,
                "duplicate",
                None,
                Some(existing.id),
                None,
                &format!("{} ({})", bracketed, incoming.source),
            )?;
            return Ok(Outcome {
                source: incoming.source.clone(),
                ticket: existing.ticket_ref,
                action: Action::Duplicate,
                category: existing.category,
                message_id: bracketed,
                automated: None,
                ack: AckDecision::NotApplicable,
                error: None,
            });
        }

        let automated = &analysed.automated;
        let from = msg.from_address();
        let is_bounce = automated
            .as_ref()
            .is_some_and(|a| a.kind == AutomatedKind::Bounce);
        let link = self.threading.resolve(conn, &self.signer, msg, is_bounce)?;

        let mut outcome = Outcome {
            source: incoming.source.clone(),
            ticket: None,
            action: Action::New,
            category: None,
            message_id: bracketed,
            automated: automated.as_ref().map(|a| a.reason.clone()),
            ack: AckDecision::NotApplicable,
            error: None,
        };

        if let Some(auto) = &automated {
            outcome.action = Action::Automated;
            let ticket = link.as_ref().map(|l| &l.ticket);
            let row = record::insert_inbound(
                conn,
                incoming,
                msg,
                ticket.map(|t| t.id),
                "automated",
                None,
                Some(&auto.reason),
                now,
            )?;
            if let Some(t) = ticket {
                outcome.ticket = Some(t.ticket_ref.clone());
                outcome.category = Some(t.category.clone());
                store::touch_ticket(conn, t.id, now)?;
            }
            if auto.kind == AutomatedKind::Bounce {
                record::record_bounce(conn, msg, ticket, row, now)?;
            }
            return Ok(outcome);
        }

        if let Some(thread::Link { ticket, reason }) = link {
            outcome.action = Action::Reply;
            outcome.ticket = Some(ticket.ticket_ref.clone());
            outcome.category = Some(ticket.category.clone());
            record::insert_inbound(
                conn,
                incoming,
                msg,
                Some(ticket.id),
                "reply",
                Some(&ticket.category),
                None,
                now,
            )?;
            if store::touch_ticket(conn, ticket.id, now)? {
                let how = reason.to_string();
                store::record_event(conn, "reopened", Some(ticket.id), None, Some(from), &how)?;
            }
            self.record_participants(conn, ticket.id, msg, incoming)?;
            let notification = self.draft_notification(
                classifier,
                ticket,
                msg,
                incoming,
                (Vec::new(), Vec::new()),
                "reply",
            );
            if let Some(draft) = notification {
                drafts.push(Arc::new(Planned { outcome: at, draft }));
            }
            return Ok(outcome);
        }

        // A new request.
        let classification = &analysed.classification;
        let category = classifier
            .category(&classification.category)
            .unwrap_or_else(|| classifier.fallback());
        let promise = category.response.map(|r| (r.min_hours, r.max_hours));
        let due_at = promise.map(|(_, max)| now + i64::from(max) * 3600);
        let locale = self.locale_for(msg, templates);
        let (ticket_id, ticket_ref) = store::create_ticket(
            conn,
            &store::NewTicket {
                prefix: &self.threading.prefix,
                customer: from,
                customer_name: msg.from.as_ref().and_then(|m| m.name.as_deref()),
                subject: &msg.subject,
                category: &category.id,
                created_at: now,
                due_at,
                language: &locale,
            },
        )?;
        record::insert_inbound(
            conn,
            incoming,
            msg,
            Some(ticket_id),
            "new",
            Some(&category.id),
            None,
            now,
        )?;
        self.record_participants(conn, ticket_id, msg, incoming)?;
        outcome.ticket = Some(ticket_ref.clone());
        outcome.category = Some(category.id.clone());
        let ticket =
            store::ticket(conn, ticket_id)?.context("the ticket just created is not there")?;
        let tips = reply::tips_in(&classification.tips, &locale);

        let history = BatchHistory {
            conn,
            drafts: drafts.as_slice(),
        };
        let decision =
            guard::may_acknowledge(&self.acks, &history, from, incoming.delivered_at, now)?;
        let refusal = decision.err().map(|r| r.to_string());
        if let Some(reason) = &refusal {
            let address = msg.from.as_ref().map(|_| from);
            store::record_event(
                conn,
                "ack_suppressed",
                Some(ticket_id),
                None,
                address,
                reason,
            )?;
        }
        outcome.ack = match &refusal {
            None => AckDecision::Queued,
            Some(reason) => AckDecision::Suppressed(reason.clone()),
        };
        if let Some(customer) = &msg.from {
            let draft = Draft::Ack(AckDraft {
                ticket_id,
                ticket_ref: ticket_ref.clone(),
                suppressed: refusal,
                locale: locale.clone(),
                customer: customer.clone(),
                msg,
                category_label: category.label_for(&locale).to_string(),
                promise,
                due_at: due_at.and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
                tips: tips.clone(),
                message_id: self.signer.generate("ack"),
            });
            drafts.push(Arc::new(Planned { outcome: at, draft }));
        }
        let matched: Vec<String> = classification
            .matches
            .iter()
            .map(|m| {
                format!(
                    "{}/{} ({}: {:?}, +{})",
                    m.category, m.rule, m.field, m.matched, m.weight
                )
            })
            .collect();
        let action = if incoming.oversized {
            "oversized"
        } else {
            "new"
        };
        if let Some(draft) =
            self.draft_notification(classifier, ticket, msg, incoming, (matched, tips), action)
        {
            drafts.push(Arc::new(Planned { outcome: at, draft }));
        }
        Ok(outcome)
    }

    /// The people the customer copied join the ticket; an oversized message flags it.
    fn record_participants(
        &self,
        conn: &Connection,
        ticket_id: i64,
        msg: &ParsedMessage,
        incoming: &Incoming,
    ) -> Result<(), StoreError> {
        record::add_cc_participants(
            conn,
            ticket_id,
            msg,
            &self.own_addresses,
            &self.support_address,
        )?;
        if incoming.oversized {
            store::flag_ticket(conn, ticket_id, "oversized")?;
        }
        Ok(())
    }

    fn locale_for(&self, msg: &ParsedMessage, templates: &Templates) -> String {
        msg.language
            .as_deref()
            .filter(|l| templates.has_locale(l))
            .unwrap_or(&self.default_locale)
            .to_string()
    }

    /// The team notification for `ticket`, when a team address is configured: `(matched rules,
    /// tips)` for a new request, `action` is the template's wording (`new`, `reply`,
    /// `oversized`).
    fn draft_notification<'a>(
        &self,
        classifier: &Classifier,
        ticket: store::Ticket,
        msg: &'a ParsedMessage,
        incoming: &'a Incoming,
        (matched, tips): (Vec<String>, Vec<String>),
        action: &'static str,
    ) -> Option<Draft<'a>> {
        let team = self.team_address.as_ref()?;
        let category_label = classifier
            .category(&ticket.category)
            .map(|c| c.label_for(&self.default_locale).to_string())
            .unwrap_or_else(|| ticket.category.clone());
        Some(Draft::Notification(NotificationDraft {
            ticket,
            msg,
            original_raw: &incoming.raw,
            matched,
            tips,
            action,
            category_label,
            to: team.clone(),
            message_id: self.signer.generate("note"),
        }))
    }
}

/// Earlier acknowledgements to an address: those in the outbox, and those this batch decided
/// but has not queued yet.
struct BatchHistory<'c, 'd, 'a> {
    conn: &'c Connection,
    drafts: &'d [Arc<Planned<'a>>],
}

impl AckHistory for BatchHistory<'_, '_, '_> {
    fn is_bouncing(&self, address: &str) -> Result<bool, StoreError> {
        store::is_bouncing(self.conn, address)
    }

    fn acks_since(&self, address: &str, since: i64) -> Result<u32, StoreError> {
        let in_batch = self
            .drafts
            .iter()
            .filter(|p| {
                matches!(&p.draft, Draft::Ack(a) if a.suppressed.is_none() && a.customer.address == address)
            })
            .count() as u32;
        Ok(store::acks_since(self.conn, address, since)? + in_batch)
    }
}
