//! One batch of raw messages in, one committed transaction out.
//!
//! Entry point: [`Pipeline::ingest_batch`]. Each message goes parse → guard → thread → classify →
//! store → reply (acknowledgement and team notification queued in the outbox), all inside one
//! SQLite transaction for the batch, so a crash leaves either everything or nothing. Should one
//! message fail, the batch is run again with a savepoint per message, so that it alone is rolled
//! back and quarantined (raw bytes and the error kept) while the rest of the batch goes on.
//!
//! Threads: this one is the only SQLite writer; workers (one per core) parse, guard and classify
//! ahead of it, then render the mail it decides on (see `jobs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock, mpsc};

use anyhow::Context;
use rusqlite::Connection;
use serde::Serialize;

use crate::classify::Classifier;
use crate::config::Config;
use crate::guard::{self, Automated, AutomatedKind, GuardPolicy};
use crate::parse::{self, ParsedMessage};
use crate::reply::{self, AckInput, Identity, NotificationInput, Templates};
use crate::store::{self, Store, StoreError};
use crate::thread::{self, IdOrigin, MessageIdSigner, ThreadHints};

mod jobs;
use jobs::{JobQueue, Results};

type Rendered = Result<reply::Outgoing, reply::ReplyError>;

/// Requests shorter than this (in characters of new text) get the "tell us more" acknowledgement.
const MIN_REQUEST_CHARS: usize = 10;

/// A raw message and where it came from.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub raw: Vec<u8>,
    /// File path, `stdin`, or `imap:<mailbox>:<uidvalidity>:<uid>`; kept for the operator.
    pub source: String,
    /// Only the headers were kept because the message was over the size limit.
    pub oversized: bool,
    /// When the mail server received it (IMAP INTERNALDATE, unix seconds), where known.
    pub delivered_at: Option<i64>,
}

impl Incoming {
    pub fn new(raw: Vec<u8>, source: impl Into<String>) -> Self {
        Self {
            raw,
            source: source.into(),
            oversized: false,
            delivered_at: None,
        }
    }
}

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Opened a ticket.
    New,
    /// Added to an existing ticket.
    Reply,
    /// Already stored: nothing changed.
    Duplicate,
    /// Machine-generated: stored, never acknowledged.
    Automated,
    /// Failed in the pipeline: stored raw with the error.
    Quarantined,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::New => "new",
            Action::Reply => "reply",
            Action::Duplicate => "duplicate",
            Action::Automated => "automated",
            Action::Quarantined => "quarantined",
        }
    }
}

/// Whether an acknowledgement went into the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "ack", content = "reason")]
pub enum AckDecision {
    Queued,
    Suppressed(String),
    NotApplicable,
}

/// The committed decision for one message.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub source: String,
    pub ticket: Option<String>,
    pub action: Action,
    pub category: Option<String>,
    /// As it appears in headers, with angle brackets.
    pub message_id: String,
    pub automated: Option<String>,
    #[serde(flatten)]
    pub ack: AckDecision,
    /// Quarantine reason.
    pub error: Option<String>,
}

/// Everything the pipeline needs that does not change per message.
pub struct Pipeline {
    prefix: String,
    support_address: String,
    team_address: Option<String>,
    agents: Vec<String>,
    own_addresses: Vec<String>,
    default_locale: String,
    identity: Identity,
    analyser: Arc<Analyser>,
    signer: MessageIdSigner,
    max_acks_per_hour: u32,
    max_acks_per_day: u32,
    max_ack_age: std::time::Duration,
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
            config.guard.robot_local_parts.regex().clone(),
        );
        // One worker per core, not one fewer: the writer spends much of a batch waiting (for an
        // analysis, for fsync), and on two cores one worker left a core idle meanwhile.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = rayon::ThreadPoolBuilder::new()
            .num_threads(cores.clamp(1, 4))
            .thread_name(|i| format!("supportd-worker-{i}"))
            .build()
            .context("starting the worker threads")?;
        Ok(Pipeline {
            prefix: config.support.ticket_prefix.clone(),
            support_address: config.support.address.to_ascii_lowercase(),
            team_address: config.support.team_address.clone(),
            agents: config
                .support
                .agents
                .iter()
                .map(|a| a.to_ascii_lowercase())
                .collect(),
            own_addresses,
            default_locale: config.support.default_locale.clone(),
            identity: Identity {
                address: config.support.address.clone(),
                name: config.support.name.clone(),
                timezone: config.support.timezone,
            },
            analyser: Arc::new(Analyser {
                guard,
                support_address: config.support.address.to_ascii_lowercase(),
            }),
            signer: MessageIdSigner::new(&key, config.support_domain()),
            max_acks_per_hour: config.guard.max_acks_per_hour,
            max_acks_per_day: config.guard.max_acks_per_day,
            max_ack_age: config.guard.max_ack_age,
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
        let renders: JobQueue<Arc<Draft<'_>>> = JobQueue::default();
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
                    while let Some((seq, draft)) = renders.pop() {
                        let result = self.render_guarded(&draft, templates);
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

    /// Renders one draft; a panic in a template helper or in lettre becomes an error for that
    /// mail rather than a lost worker the writer would wait for.
    fn render_guarded(
        &self,
        draft: &Draft<'_>,
        templates: &Templates,
    ) -> Result<reply::Outgoing, reply::ReplyError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            render(draft, templates, &self.identity, &self.default_locale)
        }))
        .unwrap_or_else(|_| {
            Err(reply::ReplyError::Build {
                what: "mail",
                reason: "rendering panicked".into(),
            })
        })
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
        renderers: Results<'_, Arc<Draft<'a>>, Rendered>,
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
        let mut drafts: Vec<Arc<Draft<'a>>> = Vec::new();
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
                        outcomes.push(quarantine(&tx, incoming, msg, &format!("{e:#}"))?);
                    }
                }
            }
            tx
        } else {
            tx
        };
        let rendered = if failed {
            map_parallel(&drafts, |d| self.render_guarded(d, templates))
        } else {
            renderers.collect(
                drafts.len(),
                |d| self.render_guarded(d, templates),
                || {
                    Err(reply::ReplyError::Build {
                        what: "mail",
                        reason: "a render worker ended without rendering it".into(),
                    })
                },
            )
        };
        for (draft, result) in drafts.iter().zip(rendered) {
            self.queue_draft(&tx, draft, result, &mut outcomes)?;
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
        drafts: &mut Vec<Arc<Draft<'a>>>,
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
        let link = self.find_ticket(conn, msg, automated.as_ref())?;

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
            let ticket = link.as_ref().map(|(t, _)| t);
            let row = self.insert_inbound(
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
                self.record_bounce(conn, msg, ticket, row, now)?;
            }
            return Ok(outcome);
        }

        if let Some((ticket, how)) = link {
            outcome.action = Action::Reply;
            outcome.ticket = Some(ticket.ticket_ref.clone());
            outcome.category = Some(ticket.category.clone());
            self.insert_inbound(
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
                store::record_event(conn, "reopened", Some(ticket.id), None, Some(from), &how)?;
            }
            self.add_cc_participants(conn, ticket.id, msg)?;
            if incoming.oversized {
                store::flag_ticket(conn, ticket.id, "oversized")?;
            }
            self.draft_notification(
                classifier,
                drafts,
                ticket,
                msg,
                incoming,
                Vec::new(),
                Vec::new(),
                "reply",
            );
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
                prefix: &self.prefix,
                customer: from,
                customer_name: msg.from.as_ref().and_then(|m| m.name.as_deref()),
                subject: &msg.subject,
                category: &category.id,
                created_at: now,
                due_at,
                language: &locale,
            },
        )?;
        self.insert_inbound(
            conn,
            incoming,
            msg,
            Some(ticket_id),
            "new",
            Some(&category.id),
            None,
            now,
        )?;
        self.add_cc_participants(conn, ticket_id, msg)?;
        if incoming.oversized {
            store::flag_ticket(conn, ticket_id, "oversized")?;
        }
        outcome.ticket = Some(ticket_ref.clone());
        outcome.category = Some(category.id.clone());
        let ticket =
            store::ticket(conn, ticket_id)?.context("the ticket just created is not there")?;
        let tips: Vec<String> = classification
            .tips
            .iter()
            .filter_map(|t| {
                t.text
                    .get(&locale)
                    .or_else(|| t.text.get("en"))
                    .or_else(|| t.text.values().next())
                    .cloned()
            })
            .collect();
        let due = due_at.and_then(|t| chrono::DateTime::from_timestamp(t, 0));

        let refusal = self.ack_refusal(conn, from, incoming.delivered_at, drafts)?;
        outcome.ack = match msg.from.as_ref() {
            None => {
                let reason = refusal.unwrap_or_else(|| "no sender address".into());
                store::record_event(conn, "ack_suppressed", Some(ticket_id), None, None, &reason)?;
                AckDecision::Suppressed(reason)
            }
            Some(customer) => {
                let decision = match &refusal {
                    None => AckDecision::Queued,
                    Some(reason) => {
                        store::record_event(
                            conn,
                            "ack_suppressed",
                            Some(ticket_id),
                            None,
                            Some(from),
                            reason,
                        )?;
                        AckDecision::Suppressed(reason.clone())
                    }
                };
                drafts.push(Arc::new(Draft::Ack {
                    outcome: at,
                    ticket_id,
                    ticket_ref: ticket_ref.clone(),
                    // Kept with its reason when suppressed, so an admin sees what was held back.
                    suppressed: refusal,
                    locale: locale.clone(),
                    customer: customer.clone(),
                    msg,
                    label: category.label_for(&locale).to_string(),
                    promise,
                    due,
                    tips: tips.clone(),
                    short: msg.new_text.trim().chars().count() < MIN_REQUEST_CHARS,
                    message_id: self.signer.generate("ack"),
                }));
                decision
            }
        };
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
        self.draft_notification(
            classifier, drafts, ticket, msg, incoming, matched, tips, action,
        );
        Ok(outcome)
    }

    /// The ticket this message continues, and how it was found; None for a new request.
    fn find_ticket(
        &self,
        conn: &Connection,
        msg: &ParsedMessage,
        automated: Option<&Automated>,
    ) -> anyhow::Result<Option<(store::Ticket, String)>> {
        let hints = ThreadHints::from_message(msg, &self.prefix, &self.support_address);
        let from = msg.from_address();
        let is_bounce = automated.is_some_and(|a| a.kind == AutomatedKind::Bounce);
        let mut ids: Vec<String> = Vec::new();
        for id in hints
            .parent_ids
            .iter()
            .chain(msg.bounced_message_ids.iter())
        {
            match self.signer.origin(id) {
                IdOrigin::Forged => {
                    store::record_event(
                        conn,
                        "forged_reference",
                        None,
                        None,
                        Some(from),
                        &format!("<{id}>"),
                    )?;
                }
                _ => ids.push(id.clone()),
            }
        }
        let mut candidates: Vec<(i64, String)> = Vec::new();
        if let Some((t, id)) = store::ticket_by_message_ids(conn, &ids)? {
            candidates.push((t, format!("references <{id}>")));
        } else if let Some((t, id)) = store::ticket_by_shared_ref(conn, &ids)? {
            // The parent is a message we never received, but another message on a ticket
            // answered it too: the same conversation.
            candidates.push((t, format!("shares the reference <{id}>")));
        }
        if let Some(n) = hints.subject_ticket {
            candidates.push((n, format!("subject token [{}-{n}]", self.prefix)));
        }
        if let Some(n) = hints.plus_ticket {
            candidates.push((
                n,
                format!("plus address {}+{}-{n}", self.support_address, self.prefix),
            ));
        }
        for (ticket_id, how) in candidates {
            let Some(ticket) = store::ticket(conn, ticket_id)? else {
                continue;
            };
            // A bounce of one of our own (signed) messages comes from a mailer, not a participant.
            let ours = how.starts_with("references <sd.");
            let allowed = (is_bounce && ours)
                || thread::may_join(from, &store::participants(conn, ticket_id)?, &self.agents);
            if allowed {
                return Ok(Some((ticket, how)));
            }
            store::record_event(
                conn,
                "link_refused",
                Some(ticket_id),
                None,
                Some(from),
                &format!(
                    "{} is not a participant of {} ({how})",
                    display_or_none(from),
                    ticket.ticket_ref
                ),
            )?;
        }
        Ok(None)
    }

    fn record_bounce(
        &self,
        conn: &Connection,
        msg: &ParsedMessage,
        ticket: Option<&store::Ticket>,
        row: i64,
        now: i64,
    ) -> anyhow::Result<()> {
        let Some(ticket) = ticket else {
            return Ok(());
        };
        let mut bounced: Vec<&str> = msg.failed_recipients.iter().map(String::as_str).collect();
        if bounced.is_empty() {
            bounced.push(&ticket.customer);
        }
        for address in bounced {
            store::mark_bouncing(conn, address, now)?;
            store::record_event(
                conn,
                "bounce",
                Some(ticket.id),
                Some(row),
                Some(address),
                &msg.subject,
            )?;
        }
        store::flag_ticket(conn, ticket.id, "bouncing")?;
        Ok(())
    }

    /// Why no acknowledgement may go to `to`, if it may not.
    fn ack_refusal(
        &self,
        conn: &Connection,
        to: &str,
        delivered_at: Option<i64>,
        drafts: &[Arc<Draft<'_>>],
    ) -> anyhow::Result<Option<String>> {
        if to.is_empty() {
            return Ok(Some("no sender address".into()));
        }
        let max_age = i64::try_from(self.max_ack_age.as_secs()).unwrap_or(i64::MAX);
        if let Some(at) = delivered_at
            && max_age > 0
            && store::now().saturating_sub(at) > max_age
        {
            return Ok(Some(format!(
                "received {} ago, over guard.max_ack_age",
                wording_age(store::now().saturating_sub(at))
            )));
        }
        if self.own_addresses.iter().any(|a| a == to) {
            return Ok(Some("sender is our own address".into()));
        }
        if store::is_bouncing(conn, to)? {
            return Ok(Some("address is bouncing".into()));
        }
        let now = store::now();
        // Acknowledgements decided earlier in this batch are not in the outbox yet.
        let in_batch = drafts
            .iter()
            .filter(|d| matches!(&***d, Draft::Ack { customer, suppressed: None, .. } if customer.address == to))
            .count() as u32;
        if store::acks_since(conn, to, now - 3600)? + in_batch >= self.max_acks_per_hour {
            return Ok(Some(format!(
                "rate limit: {} per hour",
                self.max_acks_per_hour
            )));
        }
        if store::acks_since(conn, to, now - 86400)? + in_batch >= self.max_acks_per_day {
            return Ok(Some(format!(
                "rate limit: {} per day",
                self.max_acks_per_day
            )));
        }
        Ok(None)
    }

    fn locale_for(&self, msg: &ParsedMessage, templates: &Templates) -> String {
        msg.language
            .as_deref()
            .filter(|l| templates.has_locale(l))
            .unwrap_or(&self.default_locale)
            .to_string()
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_inbound(
        &self,
        conn: &Connection,
        incoming: &Incoming,
        msg: &ParsedMessage,
        ticket_id: Option<i64>,
        action: &str,
        category: Option<&str>,
        automated: Option<&str>,
        now: i64,
    ) -> anyhow::Result<i64> {
        let row = store::insert_message(
            conn,
            &store::NewMessage {
                ticket_id,
                direction: "in",
                message_id: &msg.message_id,
                raw_sha256: &msg.raw_sha256,
                in_reply_to: &msg.in_reply_to.join(" "),
                refs: &msg.references.join(" "),
                from_addr: msg.from_address(),
                from_name: msg.from.as_ref().and_then(|m| m.name.as_deref()),
                to_addrs: &msg.recipients().join(" "),
                subject: &msg.subject,
                date: msg.date,
                received_at: now,
                action,
                category,
                language: msg.language.as_deref(),
                automated,
                new_text: &msg.new_text,
                full_text: &msg.text,
                attachments: &serde_json::to_string(&msg.attachments)
                    .unwrap_or_else(|_| "[]".into()),
                size: msg.size as i64,
                raw: &incoming.raw,
                source: &incoming.source,
                warnings: &msg.warnings.join("\n"),
                error: None,
            },
        )?;
        if let Some(t) = ticket_id {
            let cited: Vec<String> = msg
                .in_reply_to
                .iter()
                .chain(msg.references.iter())
                .filter(|id| **id != msg.message_id)
                .cloned()
                .collect();
            store::record_refs(conn, t, &cited)?;
        }
        Ok(row)
    }

    /// Everyone the customer wrote to, except us, may take part in the conversation.
    fn add_cc_participants(
        &self,
        conn: &Connection,
        ticket_id: i64,
        msg: &ParsedMessage,
    ) -> anyhow::Result<()> {
        for m in msg.to.iter().chain(msg.cc.iter()) {
            let a = m.address.as_str();
            if self.own_addresses.iter().any(|o| o == a)
                || thread::plus_tag(a, &self.support_address).is_some()
            {
                continue;
            }
            store::add_participant(conn, ticket_id, a, "cc")?;
        }
        Ok(())
    }

    /// Writes `out` to the outbox, where a reply that cites its Message-ID finds the ticket.
    fn queue(
        &self,
        conn: &Connection,
        kind: &str,
        ticket_id: i64,
        out: &reply::Outgoing,
        suppressed: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        store::enqueue(
            conn,
            &store::NewOutgoing {
                kind,
                ticket_id: Some(ticket_id),
                to_addr: &out.to,
                subject: &out.subject,
                message_id: &out.message_id,
                in_reply_to: out.in_reply_to.as_deref(),
                raw: &out.raw,
                status: if suppressed.is_some() {
                    "suppressed"
                } else {
                    "queued"
                },
                last_error: suppressed,
                at: now,
            },
        )?;
        Ok(())
    }

    /// Adds the team notification for `ticket`, when a team address is configured.
    #[allow(clippy::too_many_arguments)]
    fn draft_notification<'a>(
        &self,
        classifier: &Classifier,
        drafts: &mut Vec<Arc<Draft<'a>>>,
        ticket: store::Ticket,
        msg: &'a ParsedMessage,
        incoming: &'a Incoming,
        matched: Vec<String>,
        tips: Vec<String>,
        action: &'static str,
    ) {
        let Some(team) = &self.team_address else {
            return;
        };
        let label = classifier
            .category(&ticket.category)
            .map(|c| c.label_for(&self.default_locale).to_string())
            .unwrap_or_else(|| ticket.category.clone());
        drafts.push(Arc::new(Draft::Notification {
            ticket,
            msg,
            incoming,
            matched,
            tips,
            action,
            label,
            to: team.clone(),
            message_id: self.signer.generate("note"),
        }));
    }

    /// Queues one rendered draft; a template error is recorded instead.
    fn queue_draft(
        &self,
        conn: &Connection,
        draft: &Draft<'_>,
        rendered: Result<reply::Outgoing, reply::ReplyError>,
        outcomes: &mut [Outcome],
    ) -> Result<(), StoreError> {
        let now = store::now();
        match (draft, rendered) {
            (
                Draft::Ack {
                    ticket_id,
                    suppressed,
                    ..
                },
                Ok(out),
            ) => self.queue(conn, "ack", *ticket_id, &out, suppressed.as_deref(), now),
            (Draft::Notification { ticket, .. }, Ok(out)) => {
                self.queue(conn, "notification", ticket.id, &out, None, now)
            }
            (
                Draft::Ack {
                    outcome,
                    ticket_id,
                    ticket_ref,
                    customer,
                    ..
                },
                Err(e),
            ) => {
                let reason = format!("template error: {e}");
                tracing::error!(ticket = %ticket_ref, "acknowledgement not rendered: {e}");
                store::record_event(
                    conn,
                    "ack_failed",
                    Some(*ticket_id),
                    None,
                    Some(&customer.address),
                    &reason,
                )?;
                if let Some(o) = outcomes.get_mut(*outcome) {
                    o.ack = AckDecision::Suppressed(reason);
                }
                Ok(())
            }
            (Draft::Notification { ticket, .. }, Err(e)) => {
                tracing::error!(ticket = %ticket.ticket_ref, "team notification not rendered: {e}");
                store::record_event(
                    conn,
                    "notification_failed",
                    Some(ticket.id),
                    None,
                    None,
                    &e.to_string(),
                )
            }
        }
    }
}

/// "3 days", "5 hours": for a reason an admin reads.
fn wording_age(secs: i64) -> String {
    match secs {
        s if s >= 2 * 86400 => format!("{} days", s / 86400),
        s if s >= 2 * 3600 => format!("{} hours", s / 3600),
        s => format!("{} minutes", s / 60),
    }
}

fn display_or_none(from: &str) -> &str {
    if from.is_empty() { "(no sender)" } else { from }
}

/// Mail decided while the transaction runs, rendered once the batch's decisions are made.
enum Draft<'a> {
    Ack {
        /// Index of the message's outcome, corrected if rendering fails.
        outcome: usize,
        ticket_id: i64,
        ticket_ref: String,
        suppressed: Option<String>,
        locale: String,
        customer: parse::Mailbox,
        msg: &'a ParsedMessage,
        label: String,
        promise: Option<(u32, u32)>,
        due: Option<chrono::DateTime<chrono::Utc>>,
        tips: Vec<String>,
        short: bool,
        message_id: String,
    },
    Notification {
        ticket: store::Ticket,
        msg: &'a ParsedMessage,
        incoming: &'a Incoming,
        matched: Vec<String>,
        tips: Vec<String>,
        action: &'static str,
        label: String,
        to: String,
        message_id: String,
    },
}

fn render(
    draft: &Draft<'_>,
    templates: &Templates,
    identity: &Identity,
    default_locale: &str,
) -> Result<reply::Outgoing, reply::ReplyError> {
    match draft {
        Draft::Ack {
            ticket_ref,
            locale,
            customer,
            msg,
            label,
            promise,
            due,
            tips,
            short,
            message_id,
            ..
        } => templates.render_ack(
            identity,
            &AckInput {
                locale,
                ticket_ref,
                customer,
                original_subject: &msg.subject,
                customer_message_id: customer_id(msg),
                customer_references: &msg.references,
                category_label: label,
                promise: *promise,
                due_at: *due,
                tips,
                short: *short,
                message_id,
            },
        ),
        Draft::Notification {
            ticket,
            msg,
            incoming,
            matched,
            tips,
            action,
            label,
            to,
            message_id,
        } => {
            let customer = msg.from.clone().unwrap_or(parse::Mailbox {
                name: None,
                address: ticket.customer.clone(),
            });
            templates.render_notification(
                identity,
                &NotificationInput {
                    locale: default_locale,
                    ticket_ref: &ticket.ticket_ref,
                    customer: &customer,
                    original_subject: &msg.subject,
                    category_label: label,
                    category_id: &ticket.category,
                    matched_rules: matched,
                    tips,
                    due_at: ticket
                        .due_at
                        .and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
                    new_text: &msg.new_text,
                    action,
                    automated: None,
                    original_raw: &incoming.raw,
                    to,
                    message_id,
                    customer_message_id: customer_id(msg),
                },
            )
        }
    }
}

/// The customer's Message-ID for In-Reply-To, or "" (none) when we made it up: their mail
/// client never saw a synthesised id, so citing it would thread nothing.
fn customer_id(msg: &ParsedMessage) -> &str {
    if msg.message_id_synthesized {
        ""
    } else {
        &msg.message_id
    }
}

/// `f` over `items`, in order, on as many threads as there are cores (up to four) once there
/// are enough items to pay for the threads.
fn map_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    const PARALLEL_FROM: usize = 32;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    if items.len() < PARALLEL_FROM || threads < 2 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// What analysing a message needs, shared with the worker pool's jobs.
struct Analyser {
    guard: GuardPolicy,
    support_address: String,
}

impl Analyser {
    /// Parse, guard and classify one message. A panic in any of them (a parser bug on some
    /// unforeseen input) is caught so the message is quarantined instead of the daemon dying.
    fn analyse(&self, incoming: &Incoming, classifier: &Classifier) -> Analysed {
        let work = || {
            let msg = parse_one(incoming);
            Analysed {
                automated: guard::inspect(&msg, &self.guard),
                classification: classifier.classify_message(&msg, &self.support_address),
                msg,
                failure: None,
            }
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|_| {
            let sha = parse::sha256_hex(&incoming.raw);
            let msg = ParsedMessage {
                message_id: format!("{}@panic.supportd.invalid", &sha[..32]),
                message_id_synthesized: true,
                raw_sha256: sha,
                size: incoming.raw.len(),
                ..Default::default()
            };
            Analysed {
                automated: None,
                classification: classifier.classify_message(&msg, &self.support_address),
                msg,
                failure: Some("the parser panicked on this message".into()),
            }
        })
    }
}

/// A batch whose analysis runs on the worker pool; see [`Pipeline::prepare`].
#[derive(Clone)]
pub struct Prepared {
    batch: Arc<Vec<Incoming>>,
    slots: Arc<[OnceLock<Analysed>]>,
    /// The next message to analyse: every job claims in order until none is left, so the
    /// writer never waits for one that no running job will take.
    next: Arc<AtomicUsize>,
    /// The rules as they were when the batch was prepared; the writer uses the same.
    classifier: Arc<Classifier>,
}

impl Prepared {
    fn analyse_all(&self, analyser: &Analyser) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(incoming) = self.batch.get(i) else {
                return;
            };
            let _ = self.slots[i].set(analyser.analyse(incoming, &self.classifier));
        }
    }

    /// How many messages the batch holds.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}

/// What can be known of a message without the database.
struct Analysed {
    msg: ParsedMessage,
    automated: Option<Automated>,
    /// Used only if the message turns out to open a ticket; cheap enough to compute for all,
    /// off the single database writer.
    classification: crate::classify::Classification,
    /// Why the message could not be analysed; it is quarantined.
    failure: Option<String>,
}

fn parse_one(incoming: &Incoming) -> ParsedMessage {
    let mut msg = parse::parse(&incoming.raw);
    if incoming.oversized {
        msg.warnings
            .push("over max_message_size: only the headers were kept".into());
    }
    msg
}

/// Stores a message that failed in the pipeline, raw bytes and error, and reports it.
fn quarantine(
    conn: &Connection,
    incoming: &Incoming,
    msg: &ParsedMessage,
    error: &str,
) -> Result<Outcome, StoreError> {
    // A fresh id: the original may be what made the insert fail (and the sha still dedupes a
    // second delivery of the same bytes).
    let qid = format!(
        "q.{}.{}@quarantine.invalid",
        &msg.raw_sha256[..16],
        store::now()
    );
    let id = store::insert_message(
        conn,
        &store::NewMessage {
            ticket_id: None,
            direction: "in",
            message_id: &qid,
            raw_sha256: &msg.raw_sha256,
            in_reply_to: "",
            refs: "",
            from_addr: msg.from_address(),
            from_name: None,
            to_addrs: "",
            subject: &msg.subject,
            date: msg.date,
            received_at: store::now(),
            action: "quarantined",
            category: None,
            language: None,
            automated: None,
            new_text: "",
            full_text: "",
            attachments: "[]",
            size: incoming.raw.len() as i64,
            raw: &incoming.raw,
            source: &incoming.source,
            warnings: &format!("original Message-ID: <{}>", msg.message_id),
            error: Some(error),
        },
    )?;
    store::record_event(conn, "quarantined", None, Some(id), None, error)?;
    Ok(Outcome {
        source: incoming.source.clone(),
        ticket: None,
        action: Action::Quarantined,
        category: None,
        message_id: format!("<{}>", msg.message_id),
        automated: None,
        ack: AckDecision::NotApplicable,
        error: Some(error.to_string()),
    })
}
