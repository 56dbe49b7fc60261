//! The selected mailbox: what the intake does between SELECT and logout. It checks UIDVALIDITY
//! against the stored watermark, marks what an interrupted run committed but did not mark
//! (catch-up), finds and fetches what lies above the watermark, has the pipeline commit it
//! together with the new watermark, and only then marks it on the server.
//!
//! Entry points (for [`super::intake`]): [`Intake::open`] (connect, select, catch up) and
//! [`Intake::sync`] (take in everything new). This is where "nothing is marked that is not
//! stored" is kept; the loop around it, in [`super::intake`], only decides when to look.

use std::collections::{BTreeMap, HashSet};

use async_imap::types::{Fetch, Flag};
use futures::TryStreamExt;
use tokio::sync::watch;

use super::intake::Intake;
use super::session::{
    COMMAND_TIMEOUT, Capabilities, ImapError, Session, connect_with_capabilities, drain_news,
    timed, transfer_allowance,
};
use super::uid::{cut_batches, uid_set, uids_above};
use crate::config::AfterIngest;
use crate::pipeline::{Action, Incoming};
use crate::store;

/// The keyword set on a message once it is committed (after = "keyword").
const TICKETED: &str = "$Ticketed";

/// Bytes of mail fetched into one batch, unless a single message is larger.
const BATCH_BYTES: u64 = 64 * 1024 * 1024;

/// A connected session with the intake mailbox selected.
pub(super) struct Selected {
    pub(super) session: Session,
    pub(super) caps: Capabilities,
    uidvalidity: u32,
    /// Highest UID committed (mirrors the stored watermark for this UIDVALIDITY).
    last_uid: u32,
}

impl Intake {
    /// Connects, selects the mailbox, checks UIDVALIDITY against the watermark and marks what
    /// was committed but not marked before (a crash between commit and marking).
    pub(super) async fn open(&self) -> Result<Selected, ImapError> {
        let (mut session, caps) = connect_with_capabilities(&self.config).await?;
        let mailbox = self.config.mailbox.clone();
        if self.config.after == AfterIngest::Move {
            self.ensure_processed_mailbox(&mut session).await?;
        }
        // EXAMINE (read-only) when we never change anything on the server.
        let selected = if self.config.after == AfterIngest::None {
            timed("EXAMINE", COMMAND_TIMEOUT, session.examine(&mailbox)).await?
        } else {
            timed("SELECT", COMMAND_TIMEOUT, session.select(&mailbox)).await?
        };
        let uidvalidity = selected
            .uid_validity
            .ok_or_else(|| ImapError::Server(format!("SELECT {mailbox} gave no UIDVALIDITY")))?;
        tracing::info!(
            mailbox = %self.key,
            host = %self.config.host,
            cap_idle = caps.idle,
            cap_move = caps.moves,
            cap_uidplus = caps.uidplus,
            uidvalidity,
            exists = selected.exists,
            uid_next = selected.uid_next.unwrap_or(0),
            "IMAP connected"
        );
        if self.config.after == AfterIngest::Keyword
            && !selected.permanent_flags.iter().any(|f| {
                matches!(f, Flag::MayCreate)
                    || matches!(f, Flag::Custom(k) if k.eq_ignore_ascii_case(TICKETED))
            })
        {
            tracing::warn!(
                mailbox = %self.key,
                "the server does not keep custom keywords here: {TICKETED} will not stick \
                 (the UID watermark still prevents a second ingest); consider after = \"move\""
            );
        }
        if self.config.idle && !caps.idle {
            tracing::warn!(
                mailbox = %self.key,
                poll_interval_secs = self.config.poll_interval.as_secs(),
                "the server does not offer IDLE: polling instead"
            );
        }
        if self.config.after == AfterIngest::Move && !caps.moves && !caps.uidplus {
            tracing::warn!(
                mailbox = %self.key,
                "the server has neither MOVE nor UIDPLUS: processed mail is copied and flagged \
                 \\Deleted but left for a person to expunge (a plain EXPUNGE would also remove \
                 what people deleted)"
            );
        }

        let key = self.key.clone();
        let state = self
            .store
            .run(move |s| store::mailbox_state(s.conn(), &key))
            .await?;
        let last_uid = match state.uidvalidity {
            Some(v) if v == uidvalidity => state.last_uid,
            stored => {
                if let Some(old) = stored {
                    tracing::warn!(
                        mailbox = %self.key,
                        old_uidvalidity = old,
                        new_uidvalidity = uidvalidity,
                        "UIDVALIDITY changed: rescanning the whole mailbox (stored messages are \
                         recognised by Message-ID and content, nothing is taken twice)"
                    );
                }
                // Recorded at once so that a rescan interrupted by a crash resumes where it was.
                let key = self.key.clone();
                self.store
                    .run(move |s| store::set_watermark(s.conn(), &key, uidvalidity, 0))
                    .await?;
                0
            }
        };
        let mut live = Selected {
            session,
            caps,
            uidvalidity,
            last_uid,
        };
        self.catch_up(&mut live).await?;
        Ok(live)
    }

    async fn ensure_processed_mailbox(&self, session: &mut Session) -> Result<(), ImapError> {
        let Some(target) = self.config.processed_mailbox.as_deref() else {
            return Err(ImapError::Internal(
                "after = \"move\" without processed_mailbox".into(),
            ));
        };
        // CREATE answers NO when the mailbox exists; any other problem shows at the first MOVE.
        match timed("CREATE", COMMAND_TIMEOUT, session.create(target)).await {
            Ok(()) => tracing::info!(mailbox = %target, "created the processed mailbox"),
            Err(ImapError::Protocol {
                error: async_imap::error::Error::No(reason),
                ..
            }) => tracing::debug!(mailbox = %target, "CREATE: {reason}"),
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Marks committed messages that are still unmarked on the server.
    async fn catch_up(&self, live: &mut Selected) -> Result<(), ImapError> {
        if live.last_uid == 0 {
            return Ok(());
        }
        let query = match self.config.after {
            AfterIngest::None => return Ok(()),
            AfterIngest::Keyword => format!("UID 1:{} NOT KEYWORD {TICKETED}", live.last_uid),
            // NOT DELETED: copied already when the server lacks MOVE and UIDPLUS, or deleted by
            // a person; neither should be copied again.
            AfterIngest::Move => format!("UID 1:{} NOT DELETED", live.last_uid),
        };
        let found = timed(
            "UID SEARCH (catch-up)",
            COMMAND_TIMEOUT,
            live.session.uid_search(&query),
        )
        .await?;
        let mut pending: Vec<u32> = found.into_iter().filter(|&u| u <= live.last_uid).collect();
        if pending.is_empty() {
            return Ok(());
        }
        pending.sort_unstable();
        tracing::info!(
            mailbox = %self.key,
            count = pending.len(),
            first_uid = pending[0],
            last_uid = pending[pending.len() - 1],
            "marking messages committed before but not marked (interrupted run)"
        );
        for chunk in pending.chunks(self.batch_size()) {
            self.mark(live, chunk).await?;
        }
        Ok(())
    }

    fn batch_size(&self) -> usize {
        usize::try_from(self.config.batch_size.max(1)).unwrap_or(usize::MAX)
    }

    /// Takes in everything above the watermark, batch by batch, until a search finds nothing
    /// new. With `stop`, returns early between batches once it is set.
    pub(super) async fn sync(
        &mut self,
        stop: Option<&watch::Receiver<bool>>,
    ) -> Result<usize, ImapError> {
        let mut live = self
            .live
            .take()
            .ok_or_else(|| ImapError::Internal("sync without a connection".into()))?;
        let result = self.sync_live(&mut live, stop).await;
        // On error the session's state is unknown: reconnect next time.
        if result.is_ok() {
            self.live = Some(live);
        }
        result
    }

    async fn sync_live(
        &self,
        live: &mut Selected,
        stop: Option<&watch::Receiver<bool>>,
    ) -> Result<usize, ImapError> {
        let mut total = 0;
        loop {
            // Dovecot (like most servers) answers a SEARCH from the session's current view and
            // announces newer mail only after it; the NOOP brings the view up to date first.
            // It is also where a session learns of a UIDVALIDITY change (BYE).
            timed("NOOP", COMMAND_TIMEOUT, live.session.noop()).await?;
            drain_news!(live.session.unsolicited_responses);
            let Some(next) = live.last_uid.checked_add(1) else {
                return Ok(total);
            };
            let found = timed(
                "UID SEARCH",
                COMMAND_TIMEOUT,
                live.session.uid_search(format!("UID {next}:*")),
            )
            .await?;
            let uids = uids_above(found, live.last_uid);
            if uids.is_empty() {
                return Ok(total);
            }
            // While one batch is committed, the session marks the batch before it and fetches
            // the one after it: the network and the database each wait less for the other. A
            // prefetched batch that is never committed (an error, a stop) is fetched again
            // later; a committed one whose marking fails is marked by the catch-up.
            let (batches, sizes) = self.batches(live, &uids).await?;
            let mut chunks = batches.iter().map(Vec::as_slice);
            let mut fetched = match chunks.next() {
                Some(chunk) => Some(self.fetch_prepared(live, chunk, &sizes).await?),
                None => None,
            };
            let mut to_mark: Vec<u32> = Vec::new();
            while let Some(current) = fetched.take() {
                let stopping = stop.is_some_and(|s| *s.borrow());
                let next = chunks.next().filter(|_| !stopping);
                let marking = std::mem::take(&mut to_mark);
                let session_work = async {
                    if !marking.is_empty() {
                        self.mark(live, &marking).await?;
                    }
                    match next {
                        Some(next) => Ok(Some(self.fetch_prepared(live, next, &sizes).await?)),
                        None => Ok::<_, ImapError>(None),
                    }
                };
                let high = current.high;
                let (committed, prefetched) = tokio::join!(self.commit(current), session_work);
                let present = committed?;
                live.last_uid = high;
                total += present.len();
                to_mark = present;
                fetched = prefetched?;
            }
            if !to_mark.is_empty() {
                self.mark(live, &to_mark).await?;
            }
            if stop.is_some_and(|s| *s.borrow()) {
                return Ok(total);
            }
        }
    }

    /// `uids` (ascending) cut into batches of at most `batch_size` messages and, unless one
    /// message alone is larger, [`BATCH_BYTES`]: with two batches in memory at once (one
    /// committing, one fetched ahead), a backlog of large attachments must not exhaust memory
    /// and crash-loop the daemon on the same batch. Also returns each message's size, which
    /// [`Self::fetch`] needs.
    async fn batches(
        &self,
        live: &mut Selected,
        uids: &[u32],
    ) -> Result<(Vec<Vec<u32>>, BTreeMap<u32, u64>), ImapError> {
        drain_news!(live.session.unsolicited_responses);
        let answers = timed(
            "UID FETCH (RFC822.SIZE)",
            COMMAND_TIMEOUT,
            collect_fetch(&mut live.session, &uid_set(uids), "(UID RFC822.SIZE)"),
        )
        .await?;
        let mut sizes: BTreeMap<u32, u64> = BTreeMap::new();
        for f in &answers {
            // An unsolicited FETCH (another client changing flags) may carry no size: it must
            // neither drop the message nor hide a large size.
            if let Some(uid) = f.uid.filter(|u| uids.binary_search(u).is_ok()) {
                let size = f.size.map_or(0, u64::from);
                sizes
                    .entry(uid)
                    .and_modify(|s| *s = (*s).max(size))
                    .or_insert(size);
            }
        }
        // Over-limit mail is fetched headers only: it weighs little in a batch.
        let max = self.config.max_message_size;
        let weights: BTreeMap<u32, u64> = sizes.iter().map(|(&u, &s)| (u, s.min(max))).collect();
        Ok((
            cut_batches(uids, &weights, self.batch_size(), BATCH_BYTES),
            sizes,
        ))
    }

    /// Fetches a batch of UIDs (ascending) and starts its analysis on the worker pool.
    async fn fetch_prepared(
        &self,
        live: &mut Selected,
        uids: &[u32],
        sizes: &BTreeMap<u32, u64>,
    ) -> Result<Fetched, ImapError> {
        let raws = self.fetch(live, uids, sizes).await?;
        let mailbox = &self.config.mailbox;
        let validity = live.uidvalidity;
        let present: Vec<u32> = raws.keys().copied().collect();
        let batch: Vec<Incoming> = raws
            .into_iter()
            .map(|(uid, (raw, oversized, delivered_at))| Incoming {
                trusted_sender: false,
                raw,
                source: format!("imap:{mailbox}:{validity}:{uid}"),
                oversized,
                delivered_at,
                form: None,
            })
            .collect();
        Ok(Fetched {
            first: uids.first().copied().unwrap_or_default(),
            high: uids.last().copied().unwrap_or_default(),
            validity,
            present,
            prepared: self.pipeline.prepare(batch),
        })
    }

    /// Commits one fetched batch with the watermark; returns the UIDs that were present (not
    /// expunged meanwhile), for marking.
    async fn commit(&self, fetched: Fetched) -> Result<Vec<u32>, ImapError> {
        let Fetched {
            first,
            high,
            validity,
            present,
            prepared,
        } = fetched;
        let count = prepared.len();

        let pipeline = self.pipeline.clone();
        let key = self.key.clone();
        let outcomes = self
            .store
            .run(move |s| {
                pipeline.ingest_prepared(s, prepared, |conn| {
                    store::set_watermark(conn, &key, validity, high)
                })
            })
            .await?;
        // The acknowledgements are in the outbox now: the sender need not wait for the marking.
        self.wake_sender.notify_one();

        let tally = |a: Action| outcomes.iter().filter(|o| o.action == a).count();
        tracing::info!(
            mailbox = %self.key,
            count,
            first_uid = first,
            last_uid = high,
            new = tally(Action::New),
            reply = tally(Action::Reply),
            duplicate = tally(Action::Duplicate),
            automated = tally(Action::Automated),
            quarantined = tally(Action::Quarantined),
            "IMAP batch committed"
        );
        Ok(present)
    }

    /// The raw bytes of `uids` (ascending) by UID, whether only the headers were taken
    /// (over `max_message_size`, by `known_sizes`) and when the server received each. UIDs
    /// expunged meanwhile are absent.
    async fn fetch(
        &self,
        live: &mut Selected,
        uids: &[u32],
        known_sizes: &BTreeMap<u32, u64>,
    ) -> Result<BTreeMap<u32, RawMail>, ImapError> {
        // Keeps the bounded channel from overflowing during a long catch-up; the NOOP and
        // SEARCH before the next round find whatever these announced.
        drain_news!(live.session.unsolicited_responses);
        // A UID without a size was expunged before the size FETCH: nothing to fetch, and
        // `check_nothing_skipped` makes sure it is really gone.
        let sizes: BTreeMap<u32, u64> = uids
            .iter()
            .filter_map(|u| known_sizes.get(u).map(|&s| (*u, s)))
            .collect();

        let max = self.config.max_message_size;
        let small: Vec<(u32, u64)> = sizes
            .iter()
            .map(|(&u, &s)| (u, s))
            .filter(|&(_, s)| s <= max)
            .collect();
        let large: Vec<(u32, u64)> = sizes
            .iter()
            .map(|(&u, &s)| (u, s))
            .filter(|&(_, s)| s > max)
            .collect();
        let mut raws: BTreeMap<u32, RawMail> = BTreeMap::new();
        let delivered = |f: &Fetch| f.internal_date().map(|d| d.timestamp());
        if !small.is_empty() {
            let small_uids: Vec<u32> = small.iter().map(|&(u, _)| u).collect();
            let bytes: u64 = small.iter().map(|&(_, s)| s).sum();
            let fetched = timed(
                "UID FETCH (BODY.PEEK[])",
                COMMAND_TIMEOUT + transfer_allowance(bytes),
                collect_fetch(
                    &mut live.session,
                    &uid_set(&small_uids),
                    "(UID INTERNALDATE BODY.PEEK[])",
                ),
            )
            .await?;
            for f in &fetched {
                if let (Some(uid), Some(body)) = (f.uid, f.body())
                    && sizes.contains_key(&uid)
                {
                    raws.insert(uid, (body.to_vec(), false, delivered(f)));
                }
            }
        }
        if !large.is_empty() {
            for &(uid, size) in &large {
                tracing::warn!(
                    mailbox = %self.key,
                    uid,
                    size,
                    max_message_size = max,
                    "message over max_message_size: taking its headers only"
                );
            }
            let large_uids: Vec<u32> = large.iter().map(|&(u, _)| u).collect();
            let fetched = timed(
                "UID FETCH (BODY.PEEK[HEADER])",
                COMMAND_TIMEOUT,
                collect_fetch(
                    &mut live.session,
                    &uid_set(&large_uids),
                    "(UID INTERNALDATE BODY.PEEK[HEADER])",
                ),
            )
            .await?;
            for f in &fetched {
                if let (Some(uid), Some(header)) = (f.uid, f.header())
                    && sizes.contains_key(&uid)
                {
                    raws.insert(uid, (header.to_vec(), true, delivered(f)));
                }
            }
        }
        self.check_nothing_skipped(live, uids, &raws).await?;
        Ok(raws)
    }

    /// A UID the search found but the fetches did not return must be gone (expunged
    /// meanwhile); if it still exists the server is misbehaving, and moving the watermark past
    /// it would lose it.
    async fn check_nothing_skipped(
        &self,
        live: &mut Selected,
        uids: &[u32],
        raws: &BTreeMap<u32, RawMail>,
    ) -> Result<(), ImapError> {
        let missing: Vec<u32> = uids
            .iter()
            .copied()
            .filter(|u| !raws.contains_key(u))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let still = timed(
            "UID SEARCH (missing bodies)",
            COMMAND_TIMEOUT,
            live.session
                .uid_search(format!("UID {}", uid_set(&missing))),
        )
        .await?;
        let still: HashSet<u32> = still.into_iter().filter(|u| missing.contains(u)).collect();
        if still.is_empty() {
            tracing::info!(
                mailbox = %self.key,
                uids = %uid_set(&missing),
                "messages expunged while being fetched; skipped"
            );
            return Ok(());
        }
        let mut still: Vec<u32> = still.into_iter().collect();
        still.sort_unstable();
        Err(ImapError::Server(format!(
            "no content returned for UID {} although the message exists",
            uid_set(&still)
        )))
    }

    /// Marks committed messages on the server as configured.
    async fn mark(&self, live: &mut Selected, uids: &[u32]) -> Result<(), ImapError> {
        let set = uid_set(uids);
        match self.config.after {
            AfterIngest::None => {}
            AfterIngest::Keyword => {
                let query = format!("+FLAGS.SILENT ({TICKETED})");
                timed("UID STORE", COMMAND_TIMEOUT, async {
                    live.session
                        .uid_store(&set, &query)
                        .await?
                        .try_collect::<Vec<Fetch>>()
                        .await
                })
                .await?;
            }
            AfterIngest::Move => {
                let target = self.config.processed_mailbox.as_deref().ok_or_else(|| {
                    ImapError::Internal("after = \"move\" without processed_mailbox".into())
                })?;
                if live.caps.moves {
                    timed(
                        "UID MOVE",
                        COMMAND_TIMEOUT,
                        live.session.uid_mv(&set, target),
                    )
                    .await?;
                } else {
                    timed(
                        "UID COPY",
                        COMMAND_TIMEOUT,
                        live.session.uid_copy(&set, target),
                    )
                    .await?;
                    timed("UID STORE", COMMAND_TIMEOUT, async {
                        live.session
                            .uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
                            .await?
                            .try_collect::<Vec<Fetch>>()
                            .await
                    })
                    .await?;
                    // Only UID EXPUNGE limits the expunge to our set; a plain EXPUNGE would
                    // also remove whatever a person flagged \Deleted.
                    if live.caps.uidplus {
                        timed("UID EXPUNGE", COMMAND_TIMEOUT, async {
                            live.session
                                .uid_expunge(&set)
                                .await?
                                .try_collect::<Vec<u32>>()
                                .await
                        })
                        .await?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A message's bytes (or only its headers when over the size limit), and when the server
/// received it.
type RawMail = (Vec<u8>, bool, Option<i64>);

/// A batch fetched from the server, its analysis under way.
struct Fetched {
    first: u32,
    /// The highest UID asked for: the watermark once committed, even if it was expunged.
    high: u32,
    validity: u32,
    present: Vec<u32>,
    prepared: crate::pipeline::Prepared,
}

/// `UID FETCH set query`, its answers collected (the stream borrows the session).
async fn collect_fetch(
    session: &mut Session,
    set: &str,
    query: &str,
) -> async_imap::error::Result<Vec<Fetch>> {
    session.uid_fetch(set, query).await?.try_collect().await
}
