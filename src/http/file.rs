//! Filing a checked request: one call on the store's blocking thread does it all, so two
//! requests of this process never interleave. A retry with the same Idempotency-Key gets the
//! first answer back; an address over its hourly limit is refused; otherwise the synthesised
//! message goes through [`Pipeline::ingest_batch`] and, inside the same transaction (its
//! `before_commit`), the request's row is written with the answer it gets. Should the pipeline
//! not open or join a ticket with it (the guard took it for a machine, it was quarantined),
//! the whole transaction is rolled back: nothing is half stored.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::message::{SynthesisError, synthesise};
use super::request::Request;
use crate::classify::Classifier;
use crate::pipeline::{Incoming, Pipeline};
use crate::store::{self, MessageAction, Shared, Store, StoreError};

/// The 201 answer, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// `CHT-12`.
    pub ticket: String,
    /// The category id.
    pub category: String,
    /// The ticket's status, `open`.
    pub status: String,
    /// RFC 3339, when the category promises an answer.
    pub due_at: Option<String>,
    /// The acknowledgement's words for the category's promise, in the ticket's language.
    pub promise: String,
}

/// The answer and what the confirmation page also says, as stored for a retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filed {
    #[serde(flatten)]
    pub answer: Answer,
    /// The ticket's language (`fr`, `en`).
    pub language: String,
    /// The acknowledgement's outbox status (`queued`, `suppressed`), or `None` when the
    /// request joined a ticket it cited and so got none.
    pub acknowledgement: Option<String>,
}

/// Why a request was not filed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The Idempotency-Key was used for another request by the same address.
    #[error("the idempotency key was used for another request")]
    KeyReused,
    /// The address filed its hourly allowance; `retry_after` seconds until the next.
    #[error("too many requests from this address; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// The guard took the request for automated mail (a machine's address, our own).
    #[error("refused: {0}")]
    Refused(String),
    /// The database is busy or unavailable: retry later.
    #[error("{0}")]
    Unavailable(StoreError),
    /// The request could not be turned into a ticket (quarantined, or a message lettre
    /// would not build); details are in the log and `supportd quarantine list`.
    #[error("{0}")]
    Failed(String),
}

/// What the one call on the store decided.
enum Step {
    Replay(store::StoredAnswer),
    Limited(u64),
    Filed(Filed),
    Refused(String),
    Failed(String),
}

/// What `before_commit` found the pipeline did with the message.
enum Verdict {
    /// With the ticket's row id.
    Filed(Filed, i64),
    Refused(String),
    Failed(String),
}

/// Everything filing needs besides the request.
#[derive(Clone)]
pub struct Filer {
    pub pipeline: Arc<Pipeline>,
    pub store: Shared,
    pub support_address: String,
    pub requests_per_hour: u32,
}

impl Filer {
    /// Files `request` (with its Idempotency-Key, if any). Returns the answer and whether it
    /// is a replay of the first one.
    ///
    /// # Errors
    /// See [`FileError`].
    pub async fn file(
        &self,
        request: Request,
        key: Option<String>,
    ) -> Result<(Filed, bool), FileError> {
        let filer = self.clone();
        let fingerprint = request.fingerprint();
        let expected = fingerprint.clone();
        let step = self
            .store
            .run(move |store| filer.file_blocking(store, &request, key.as_deref(), &fingerprint))
            .await
            .map_err(|e| match e {
                StoreError::Busy(_) | StoreError::Task(_) => FileError::Unavailable(e),
                e if e.is_temporary() => FileError::Unavailable(e),
                e => FileError::Failed(e.to_string()),
            })?;
        match step {
            Step::Replay(stored) if stored.fingerprint != expected => Err(FileError::KeyReused),
            Step::Replay(stored) => serde_json::from_str(&stored.answer)
                .map(|filed| (filed, true))
                .map_err(|e| FileError::Failed(format!("stored answer unreadable: {e}"))),
            Step::Limited(retry_after) => Err(FileError::RateLimited { retry_after }),
            Step::Filed(filed) => Ok((filed, false)),
            Step::Refused(why) => Err(FileError::Refused(why)),
            Step::Failed(why) => Err(FileError::Failed(why)),
        }
    }

    fn file_blocking(
        &self,
        store: &mut Store,
        request: &Request,
        key: Option<&str>,
        fingerprint: &str,
    ) -> Result<Step, StoreError> {
        if let Some(key) = key
            && let Some(found) = store::find_http_request(store.conn(), key, &request.email)?
        {
            return Ok(Step::Replay(found));
        }
        let now = store::now();
        let (recent, oldest) =
            store::http_requests_since(store.conn(), &request.email, now - 3600)?;
        if recent >= self.requests_per_hour {
            let retry_after = oldest.map_or(3600, |o| o + 3600 - now).max(1);
            return Ok(Step::Limited(retry_after as u64));
        }

        let message_id = self.pipeline.signer().generate("form");
        let raw = match synthesise(
            request,
            &self.support_address,
            &message_id,
            std::time::SystemTime::now(),
        ) {
            Ok(raw) => raw,
            Err(SynthesisError { .. }) => {
                return Ok(Step::Failed(
                    "the request's message could not be built".into(),
                ));
            }
        };
        let incoming = Incoming {
            form: Some(request.form_request()),
            ..Incoming::new(raw, format!("http:{}", request.door))
        };
        let classifier = self.pipeline.classifier();
        let mut verdict = None;
        let committed = self.pipeline.ingest_batch(store, vec![incoming], |conn| {
            let decided = decide(conn, &message_id, &classifier)?;
            let result = match &decided {
                Verdict::Filed(filed, ticket_id) => {
                    let row = Row {
                        key,
                        fingerprint,
                        message_id: &message_id,
                        ticket_id: *ticket_id,
                        now,
                    };
                    record(conn, request, &row, filed)
                }
                Verdict::Refused(why) | Verdict::Failed(why) => {
                    Err(StoreError::Changed(format!("request not filed: {why}")))
                }
            };
            verdict = Some(decided);
            result
        });
        Ok(match (committed, verdict) {
            (Ok(_), Some(Verdict::Filed(filed, _))) => Step::Filed(filed),
            (Err(_), Some(Verdict::Refused(why))) => Step::Refused(why),
            (Err(_), Some(Verdict::Failed(why))) => Step::Failed(why),
            (Err(e), _) => return Err(e),
            (Ok(_), _) => Step::Failed("the pipeline gave no verdict".into()),
        })
    }
}

/// What the pipeline made of the message `message_id`, read inside its transaction.
fn decide(
    conn: &rusqlite::Connection,
    message_id: &str,
    classifier: &Classifier,
) -> Result<Verdict, StoreError> {
    let Some(found) = store::filed_message(conn, message_id)? else {
        return Ok(Verdict::Failed("the message was not stored".into()));
    };
    let ticket = match (found.action, found.ticket) {
        (MessageAction::New | MessageAction::Reply, Some(ticket)) => ticket,
        (MessageAction::Automated, _) => {
            let why = found.automated.unwrap_or_else(|| "automated".into());
            return Ok(Verdict::Refused(format!(
                "taken for automated mail ({why})"
            )));
        }
        (MessageAction::Quarantined, _) => {
            return Ok(Verdict::Failed("quarantined by the pipeline".into()));
        }
        (action, None) => return Ok(Verdict::Failed(format!("{action} without a ticket"))),
        // Agents' mail never comes through the form (the pipeline does not recognise an agent
        // there); anything else is not a request.
        (action, Some(_)) => return Ok(Verdict::Failed(format!("filed as {action}"))),
    };
    let response = classifier
        .category(&ticket.category)
        .and_then(|c| c.response);
    let promise = response.map(|r| (r.min_hours, r.max_hours));
    let business = response.is_some_and(|r| r.business);
    let acknowledgement = store::ack_status(conn, message_id)?.map(|s| s.to_string());
    let ticket_id = ticket.id;
    Ok(Verdict::Filed(
        Filed {
            answer: Answer {
                ticket: ticket.ticket_ref,
                category: ticket.category,
                status: ticket.status.to_string(),
                due_at: ticket.due_at.map(store::rfc3339),
                promise: crate::reply::promise_words(&ticket.language, promise, business),
            },
            language: ticket.language,
            acknowledgement,
        },
        ticket_id,
    ))
}

/// What the request's row records besides the request and its answer.
struct Row<'a> {
    key: Option<&'a str>,
    fingerprint: &'a str,
    message_id: &'a str,
    ticket_id: i64,
    /// Unix seconds.
    now: i64,
}

/// Writes the request's row, with the answer a retry will get.
fn record(
    conn: &rusqlite::Connection,
    request: &Request,
    row: &Row<'_>,
    filed: &Filed,
) -> Result<(), StoreError> {
    let object = |pairs: &[(String, String)]| {
        let map: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        serde_json::Value::Object(map).to_string()
    };
    let answer = serde_json::to_string(filed).map_err(|e| StoreError::Changed(e.to_string()))?;
    store::insert_http_request(
        conn,
        &store::NewHttpRequest {
            message_id: row.message_id,
            ticket_id: row.ticket_id,
            email: &request.email,
            door: request.door,
            idempotency_key: row.key,
            fingerprint: row.fingerprint,
            answer: &answer,
            account: &object(&request.account),
            context: &object(&request.context()),
            at: row.now,
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::http::request::{Checks, Lang, Submitted, validate};
    use crate::store::{HttpDoor, OutboxKind};

    struct World {
        _dir: tempfile::TempDir,
        filer: Filer,
    }

    fn world(requests_per_hour: u32) -> World {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = format!(
            "[support]\naddress = \"support@example.test\"\nteam_address = \"team@example.test\"\n\
             [rules]\ndir = \"{}\"\n[templates]\ndir = \"{}\"\n",
            root.join("rules").display(),
            root.join("templates").display()
        );
        let config = Config::from_toml(&text, dir.path()).unwrap();
        let mut store = Store::open(&config.storage.database).unwrap();
        let pipeline = Pipeline::new(&config, &mut store).unwrap();
        World {
            _dir: dir,
            filer: Filer {
                pipeline: Arc::new(pipeline),
                store: Shared::new(store),
                support_address: "support@example.test".into(),
                requests_per_hour,
            },
        }
    }

    impl World {
        fn request(&self, email: &str, category: Option<&str>, message: &str) -> Request {
            let classifier = self.filer.pipeline.classifier();
            let own = ["support@example.test".to_string()];
            validate(
                Submitted {
                    email: Some(email.into()),
                    name: Some("Julie Martin".into()),
                    category: category.map(Into::into),
                    message: Some(message.into()),
                    locale: Some("en".into()),
                    account: vec![("plan".into(), "Pro".into())],
                    ..Submitted::default()
                },
                HttpDoor::Api,
                &Checks {
                    classifier: &classifier,
                    own_addresses: &own,
                    support_address: "support@example.test",
                    category_required: false,
                    lang: Lang::En,
                },
            )
            .unwrap()
        }

        async fn count(&self, sql: &'static str) -> i64 {
            self.filer
                .store
                .run(move |s| Ok(s.conn().query_row(sql, [], |r| r.get(0))?))
                .await
                .unwrap()
        }
    }

    /// Technical by its words; the customer chose billing.
    const WIDGET: &str = "The widget does not show on our site since yesterday, error 500.";

    #[tokio::test]
    async fn the_customers_choice_opens_a_ticket_with_its_promise_and_the_team_sees_the_account() {
        let w = world(10);
        let (filed, replayed) = w
            .filer
            .file(
                w.request("julie@example.test", Some("billing"), WIDGET),
                None,
            )
            .await
            .unwrap();
        assert!(!replayed);
        assert_eq!(filed.answer.ticket, "CHT-1");
        assert_eq!(filed.answer.category, "billing");
        assert_eq!(filed.answer.status, "open");
        assert_eq!(filed.answer.promise, "within 24 business hours");
        assert!(filed.answer.due_at.is_some());
        assert_eq!(filed.language, "en");
        assert_eq!(filed.acknowledgement.as_deref(), Some("queued"));

        let notification: Vec<u8> = w
            .filer
            .store
            .run(|s| {
                let items = store::list_outbox(s.conn(), None)?;
                let note = items
                    .iter()
                    .find(|i| i.kind == OutboxKind::Notification)
                    .expect("a team notification");
                Ok(store::outbox_raw(s.conn(), note.id)?.unwrap_or_default())
            })
            .await
            .unwrap();
        let note = crate::parse::parse(&notification);
        // Worded for the team, in the default locale.
        assert!(note.text.contains("plan : Pro"), "{}", note.text);
        assert!(note.text.contains("formulaire de support"), "{}", note.text);
        // The rules still ran, for the explanation: technical matched.
        assert!(note.text.contains("technical/"), "{}", note.text);
        assert_eq!(w.count("SELECT COUNT(*) FROM http_requests").await, 1);
    }

    #[tokio::test]
    async fn a_retry_gets_the_first_answer_and_another_request_under_the_same_key_is_refused() {
        let w = world(10);
        let key = Some("retry-1".to_string());
        let first = w
            .filer
            .file(
                w.request("julie@example.test", Some("technical"), WIDGET),
                key.clone(),
            )
            .await
            .unwrap();
        let again = w
            .filer
            .file(
                w.request("julie@example.test", Some("technical"), WIDGET),
                key.clone(),
            )
            .await
            .unwrap();
        assert_eq!((again.0.clone(), again.1), (first.0, true));
        assert_eq!(w.count("SELECT COUNT(*) FROM tickets").await, 1);
        let other = w
            .filer
            .file(
                w.request(
                    "julie@example.test",
                    Some("technical"),
                    "Something else entirely.",
                ),
                key.clone(),
            )
            .await;
        assert!(matches!(other, Err(FileError::KeyReused)), "{other:?}");
        // The same key from someone else is their own request.
        let marc = w
            .filer
            .file(w.request("marc@example.test", None, WIDGET), key)
            .await
            .unwrap();
        assert_eq!(marc.0.answer.ticket, "CHT-2");
        assert_eq!(marc.0.answer.category, "technical");
    }

    #[tokio::test]
    async fn an_address_over_its_hourly_allowance_is_told_when_to_retry() {
        let w = world(2);
        for _ in 0..2 {
            w.filer
                .file(w.request("julie@example.test", None, WIDGET), None)
                .await
                .unwrap();
        }
        match w
            .filer
            .file(w.request("julie@example.test", None, WIDGET), None)
            .await
        {
            Err(FileError::RateLimited { retry_after }) => {
                assert!((3590..=3600).contains(&retry_after), "{retry_after}")
            }
            other => panic!("{other:?}"),
        }
        // Someone else is not held back.
        assert!(
            w.filer
                .file(w.request("marc@example.test", None, WIDGET), None)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_request_the_guard_takes_for_a_machine_leaves_nothing_behind() {
        let w = world(10);
        let result = w
            .filer
            .file(w.request("noreply@example.org", None, WIDGET), None)
            .await;
        assert!(matches!(result, Err(FileError::Refused(_))), "{result:?}");
        assert_eq!(w.count("SELECT COUNT(*) FROM messages").await, 0);
        assert_eq!(w.count("SELECT COUNT(*) FROM outbox").await, 0);
        assert_eq!(w.count("SELECT COUNT(*) FROM http_requests").await, 0);
    }

    #[tokio::test]
    async fn mail_cannot_claim_the_forms_choice_with_its_header() {
        let w = world(10);
        let raw = format!(
            "From: Julie <julie@example.org>\r\nTo: support@example.test\r\n\
             Subject: Widget\r\nMessage-ID: <forged@example.org>\r\n\
             X-Supportd-Request: form\r\nX-Supportd-Form-Category: billing\r\n\r\n{WIDGET}\r\n"
        );
        let pipeline = w.filer.pipeline.clone();
        let outcomes = w
            .filer
            .store
            .run(move |s| {
                pipeline.ingest_batch(s, vec![Incoming::new(raw.into_bytes(), "test")], |_| Ok(()))
            })
            .await
            .unwrap();
        assert_eq!(outcomes[0].category.as_deref(), Some("technical"));
    }
}
