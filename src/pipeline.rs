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

use crate::agent::{Agents, Sender};
use crate::classify::Classifier;
use crate::config::{Config, SlaConfig};
use crate::guard::{AckPolicy, AutomatedKind, GuardPolicy};
use crate::reply::{self, Draft, Identity, Templates};
use crate::sla::{self, Calendar};
use crate::store::{self, Store, StoreError};
use crate::thread::{MessageIdSigner, Threading};

mod agent;
mod handle;
mod jobs;
mod outcome;
mod pool;
mod record;

use handle::Turn;
use jobs::Results;
pub use outcome::{AckDecision, Action, FormRequest, Incoming, Outcome};
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
    agents: Agents,
    /// `support.reopen_days`, in seconds.
    reopen_window: i64,
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
    /// `[sla]` and the support zone, to read the calendar again on reload.
    sla: (SlaConfig, chrono_tz::Tz),
    /// Working hours and holidays that due times are counted on.
    calendar: RwLock<Arc<Calendar>>,
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
        let calendar = sla::calendar(&config.sla, config.support.timezone)
            .context("reading the business calendar")?;
        let key = store.hmac_key().context("reading the Message-ID key")?;
        let own_addresses = config.own_addresses();
        let guard = GuardPolicy::new(
            own_addresses.clone(),
            config.support_domain(),
            config.guard.robot_local_parts.regex().clone(),
        );
        let support_address = config.support.address.to_ascii_lowercase();
        Ok(Pipeline {
            threading: Threading::from_config(config),
            agents: Agents::from_config(config),
            reopen_window: i64::from(config.support.reopen_days) * 86_400,
            acks: AckPolicy::from_config(config),
            team_address: config.support.team_address.clone(),
            own_addresses,
            default_locale: config.support.default_locale.clone(),
            identity: Identity::from_config(config),
            support_address: support_address.clone(),
            signer: MessageIdSigner::new(&key, config.support_domain()),
            rules_dir: config.rules.dir.clone(),
            templates_dir: config.templates.dir.clone(),
            classifier: RwLock::new(Arc::new(classifier)),
            templates: RwLock::new(Arc::new(templates)),
            sla: (config.sla.clone(), config.support.timezone),
            calendar: RwLock::new(Arc::new(calendar)),
            workers: Workers::start(Analyser::new(guard, support_address))
                .context("starting the worker threads")?,
        })
    }

    /// Re-reads rules, templates and the holiday file. When any is invalid the running ones
    /// stay and the error says why (file, line, reason).
    ///
    /// # Errors
    /// The new rules, templates or holidays are invalid; nothing was replaced.
    pub fn reload(&self) -> anyhow::Result<()> {
        let classifier = Classifier::load_dir(&self.rules_dir)
            .with_context(|| format!("reloading rules from {}", self.rules_dir.display()))?;
        let templates = Templates::load(&self.templates_dir).with_context(|| {
            format!("reloading templates from {}", self.templates_dir.display())
        })?;
        let calendar =
            sla::calendar(&self.sla.0, self.sla.1).context("reloading the business calendar")?;
        *self.classifier.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(classifier);
        *self.templates.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(templates);
        *self.calendar.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(calendar);
        Ok(())
    }

    /// The business calendar in force.
    pub fn calendar(&self) -> Arc<Calendar> {
        self.calendar
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The rules in force.
    pub fn classifier(&self) -> Arc<Classifier> {
        self.classifier
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The templates in force.
    pub fn templates(&self) -> Arc<Templates> {
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
                store::savepoint(&tx)?;
                let drafted = drafts.len();
                match process(&tx, incoming, analysed, outcomes.len(), &mut drafts) {
                    Ok(outcome) => {
                        store::release_savepoint(&tx)?;
                        outcomes.push(outcome);
                    }
                    Err(e) => {
                        store::rollback_savepoint(&tx)?;
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
        crate::http::metrics::record_outcomes(&outcomes);
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
        let known = store::find_duplicate(conn, &record::fingerprint(msg))?;
        if let store::Known::Duplicate(existing) = known {
            store::record_event(
                conn,
                store::EventKind::Duplicate,
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
        // Bounces and other delivery reports (delay notices) come from a mail server, not a
        // participant.
        let from_a_mailer = automated
            .as_ref()
            .is_some_and(|a| matches!(a.kind, AutomatedKind::Bounce | AutomatedKind::Report));
        // The form is a customer's door: nobody answers a ticket through it.
        let sender = match automated {
            Some(_) => Sender::Other,
            None if incoming.form.is_some() => Sender::Other,
            None => self.agents.recognise(msg, incoming.trusted_sender),
        };
        let is_agent = sender == Sender::Agent;
        let link = self
            .threading
            .resolve(conn, &self.signer, msg, from_a_mailer, is_agent)?;
        if automated.is_none() {
            // A person writing from an address that bounced: it receives mail again.
            record::clear_bouncing(conn, msg.from_address())?;
        }

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
        if let Sender::Unverified(why) = &sender {
            // Handled as a customer's mail: it is never relayed.
            let detail = format!("agent address, {why}: handled as a customer's mail");
            let from = Some(msg.from_address());
            store::record_event(
                conn,
                store::EventKind::AgentRefused,
                None,
                None,
                from,
                &detail,
            )?;
        }
        match (automated, link) {
            (Some(auto), link) => {
                outcome.action = Action::Automated;
                self.store_automated(&turn, auto, link, &mut outcome)?;
            }
            (None, link) if is_agent => {
                self.handle_agent(&turn, link, &mut outcome, drafts)?;
            }
            (None, Some(link)) => {
                outcome.action = Action::Reply;
                self.continue_ticket(&turn, link, &mut outcome, drafts)?;
            }
            (None, None) => {
                self.open_ticket(&turn, None, &mut outcome, drafts)?;
            }
        }
        if let store::Known::ReusedId { earlier } = known {
            record::reused_message_id(conn, msg, &earlier, &incoming.source)?;
        }
        Ok(outcome)
    }
}
