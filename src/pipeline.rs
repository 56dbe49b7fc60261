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

use std::sync::{Arc, OnceLock, RwLock};

use anyhow::Context;
use rusqlite::Connection;

use crate::classify::Classifier;
use crate::config::Config;
use crate::guard::{AckPolicy, AutomatedKind, GuardPolicy};
use crate::reply::{self, Draft, Identity, Templates};
use crate::store::{self, Store, StoreError};
use crate::thread::{MessageIdSigner, Threading};

mod handle;
mod jobs;
mod outcome;
mod pool;
mod record;

use handle::Turn;
use jobs::Results;
pub use outcome::{AckDecision, Action, Incoming, Outcome};
pub use pool::Prepared;
use pool::{Analysed, Analyser, Workers, map_parallel};

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
    signer: MessageIdSigner,
    rules_dir: std::path::PathBuf,
    templates_dir: std::path::PathBuf,
    classifier: RwLock<Arc<Classifier>>,
    templates: RwLock<Arc<Templates>>,
    /// Parse, guard, classify and render, one thread per core, beside the SQLite writer.
    workers: Workers,
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
        let support_address = config.support.address.to_ascii_lowercase();
        Ok(Pipeline {
            threading: Threading::from_config(config),
            acks: AckPolicy::from_config(config),
            team_address: config.support.team_address.clone(),
            own_addresses,
            default_locale: config.support.default_locale.clone(),
            identity: Identity::from_config(config)?,
            support_address: support_address.clone(),
            signer: MessageIdSigner::new(&key, config.support_domain()),
            rules_dir: config.rules.dir.clone(),
            templates_dir: config.templates.dir.clone(),
            classifier: RwLock::new(Arc::new(classifier)),
            templates: RwLock::new(Arc::new(templates)),
            workers: Workers::start(Analyser {
                guard,
                support_address,
            })
            .context("starting the worker threads")?,
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
        self.workers.prepare(batch, self.classifier())
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
        self.workers.run_batch(
            &prepared,
            |planned: &Arc<Planned<'_>>| self.render(planned, &templates),
            |renderers| {
                self.commit_batch(
                    store,
                    &prepared,
                    &templates,
                    renderers,
                    on_begin,
                    before_commit,
                )
            },
        )
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
        prepared: &'a Prepared,
        templates: &Templates,
        renderers: Results<'_, Arc<Planned<'a>>, Rendered>,
        on_begin: &dyn Fn(&Connection) -> Result<(), StoreError>,
        before_commit: F,
    ) -> Result<Vec<Outcome>, StoreError>
    where
        F: FnOnce(&Connection) -> Result<(), StoreError>,
    {
        let (batch, classifier) = (&prepared.batch[..], &*prepared.classifier);
        let parsed = || prepared.slots.iter().map(OnceLock::wait);
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

        let automated = &analysed.verdict.automated;
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

        let turn = Turn {
            conn,
            classifier,
            templates,
            incoming,
            msg,
            analysed,
            at,
            now,
        };
        match (automated, link) {
            (Some(auto), link) => {
                outcome.action = Action::Automated;
                self.store_automated(&turn, auto, link, &mut outcome)?;
            }
            (None, Some(link)) => {
                outcome.action = Action::Reply;
                self.continue_ticket(&turn, link, &mut outcome, drafts)?;
            }
            (None, None) => {
                self.open_ticket(&turn, &mut outcome, drafts)?;
            }
        }
        Ok(outcome)
    }
}
