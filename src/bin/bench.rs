//! `supportd-bench`: the project's benchmarks, meant for `--release`.
//!
//! - `ingest`: generated realistic mail (mixed categories and languages, 20 % replies, some
//!   HTML, some attachments) through the full pipeline into a fresh database with durable
//!   commits; prints messages per second and peak memory. `BENCH_KEEP=1` keeps the database
//!   for inspection (its path is printed).
//! - `drain`: a backlog delivered to a real Dovecot, drained into tickets by the IMAP intake,
//!   against a bare `UID FETCH 1:* BODY.PEEK[]` of the same mailbox as the floor.
//! - `latency`: the daemon running against the real Dovecot + Postfix; customers write one by
//!   one; time from Postfix accepting a mail to the acknowledgement stored in the customer's
//!   Maildir. The mail stack comes from `scripts/mailstack` (its `MAILSTACK_*` variables).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use supportd::config::Config;
use supportd::pipeline::{Incoming, Pipeline};
use supportd::store::Store;

#[derive(Parser)]
#[command(name = "supportd-bench")]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Full pipeline into a fresh SQLite file.
    Ingest {
        #[arg(long, default_value_t = 5000)]
        messages: usize,
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Folder of the project (rules/ and templates/).
        #[arg(long, default_value = ".")]
        project: PathBuf,
    },
    /// Drain a backlog from the real Dovecot into tickets.
    Drain {
        #[arg(long, default_value_t = 5000)]
        messages: usize,
        #[arg(long, default_value = ".")]
        project: PathBuf,
    },
    /// Latency from Postfix accepting a customer's mail to the acknowledgement in their mailbox.
    Latency {
        #[arg(long, default_value_t = 200)]
        messages: usize,
        #[arg(long, default_value = ".")]
        project: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Bench::Ingest {
            messages,
            batch,
            project,
        } => ingest(messages, batch, &project),
        Bench::Drain { messages, project } => runtime()?.block_on(drain(messages, &project)),
        Bench::Latency { messages, project } => runtime()?.block_on(latency(messages, &project)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// The local mail stack's settings, from the environment `scripts/mailstack env` sets.
struct Stack {
    dir: PathBuf,
    imap_port: u16,
    smtp_port: u16,
    password: String,
    ca_file: PathBuf,
}

impl Stack {
    fn from_env() -> anyhow::Result<Stack> {
        let var = |k: &str| {
            std::env::var(k).with_context(|| format!("{k} is not set: run through scripts/bench"))
        };
        Ok(Stack {
            dir: var("MAILSTACK_DIR")?.into(),
            imap_port: var("MAILSTACK_IMAP_PORT")?.parse()?,
            smtp_port: var("MAILSTACK_SMTP_PORT")?.parse()?,
            password: var("MAILSTACK_PASSWORD")?,
            ca_file: var("MAILSTACK_CA_FILE")?.into(),
        })
    }

    /// A daemon configuration for a fresh support address, database in `dir`.
    fn config(
        &self,
        support: &str,
        dir: &std::path::Path,
        project: &std::path::Path,
    ) -> anyhow::Result<Config> {
        let text = format!(
            "[support]\naddress = \"{support}\"\nteam_address = \"team-{support}\"\n\
             [storage]\ndatabase = \"{db}\"\n[rules]\ndir = \"{rules}\"\n[templates]\ndir = \"{templates}\"\n\
             [guard]\nmax_acks_per_hour = 100000\nmax_acks_per_day = 100000\n\
             [imap]\nhost = \"127.0.0.1\"\nport = {imap}\ntls = \"starttls\"\nca_file = \"{ca}\"\n\
             username = \"{support}\"\npassword = \"{pw}\"\nbatch_size = 500\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = {smtp}\ntls = \"none\"\n",
            db = dir.join("bench.sqlite3").display(),
            rules = project.join("rules").display(),
            templates = project.join("templates").display(),
            imap = self.imap_port,
            ca = self.ca_file.display(),
            pw = self.password,
            smtp = self.smtp_port,
        );
        Config::from_toml(&text, dir).map_err(anyhow::Error::msg)
    }

    fn maildir_new(&self, address: &str) -> PathBuf {
        let (user, domain) = address.split_once('@').unwrap_or((address, ""));
        self.dir
            .join("mail")
            .join(domain)
            .join(user)
            .join("Maildir/new")
    }

    async fn smtp(&self) -> anyhow::Result<lettre::transport::smtp::client::AsyncSmtpConnection> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.smtp_port)).await?;
        // lettre writes the message and its final dot separately: without NODELAY each mail
        // waits for a delayed ACK.
        tcp.set_nodelay(true)?;
        Ok(
            lettre::transport::smtp::client::AsyncSmtpConnection::connect_with_transport(
                Box::new(tcp),
                &lettre::transport::smtp::extension::ClientId::default(),
            )
            .await?,
        )
    }
}

async fn send(
    conn: &mut lettre::transport::smtp::client::AsyncSmtpConnection,
    from: &str,
    to: &str,
    raw: &[u8],
) -> anyhow::Result<()> {
    let envelope = lettre::address::Envelope::new(Some(from.parse()?), vec![to.parse()?])?;
    conn.send(&envelope, raw).await?;
    Ok(())
}

fn stamp() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

async fn drain(count: usize, project: &std::path::Path) -> anyhow::Result<()> {
    let stack = Stack::from_env()?;
    let project = project.canonicalize()?;
    let dir = tempfile_dir()?;
    let support = format!("drain-{}@example.test", stamp());
    let config = stack.config(&support, &dir, &project)?;
    let imap = config.imap.clone().context("[imap]")?;

    // The backlog, through Postfix on four connections.
    let mail = generate(count);
    let t = Instant::now();
    let chunks: Vec<Vec<Incoming>> = mail.chunks(count.div_ceil(4)).map(|c| c.to_vec()).collect();
    let mut senders = Vec::new();
    for chunk in chunks {
        let mut conn = stack.smtp().await?;
        let support = support.clone();
        senders.push(tokio::spawn(async move {
            for m in &chunk {
                send(&mut conn, "bench@example.org", &support, &m.raw).await?;
            }
            anyhow::Ok(())
        }));
    }
    for s in senders {
        s.await??;
    }
    let maildir = stack.maildir_new(&support);
    loop {
        let n = std::fs::read_dir(&maildir).map(|d| d.count()).unwrap_or(0);
        if n >= count {
            break;
        }
        if t.elapsed().as_secs() > 120 {
            anyhow::bail!("only {n} of {count} messages were delivered to {support}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    println!(
        "drain: {count} messages delivered through Postfix in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Floor: one bare fetch of everything, as a plain IMAP client would do it.
    let mut session = supportd::mailbox::imap::connect(&imap).await?;
    session.select("INBOX").await?;
    let t = Instant::now();
    let fetched: Vec<_> = {
        use futures::TryStreamExt;
        session
            .uid_fetch("1:*", "BODY.PEEK[]")
            .await?
            .try_collect()
            .await?
    };
    let floor = t.elapsed();
    let bytes: usize = fetched
        .iter()
        .filter_map(|f| f.body())
        .map(<[u8]>::len)
        .sum();
    drop(fetched);
    session.logout().await?;

    // The intake: fetch in batches, parse, guard, thread, classify, store, queue, mark $Ticketed.
    let mut store = Store::open(&config.storage.database)?;
    store.checkpoint_in_background()?;
    let pipeline = std::sync::Arc::new(Pipeline::new(&config, &mut store)?);
    let mut intake = supportd::mailbox::imap::Intake::new(
        imap,
        pipeline,
        std::sync::Arc::new(std::sync::Mutex::new(store)),
        std::sync::Arc::new(tokio::sync::Notify::new()),
    );
    let t = Instant::now();
    let mut done = 0;
    while done < count {
        let n = intake.poll_once().await?;
        if n == 0 {
            anyhow::bail!("the intake stopped at {done} of {count}");
        }
        done += n;
    }
    let drained = t.elapsed();
    let check = Store::open(&config.storage.database)?;
    let stats = supportd::store::stats(check.conn())?;
    let rate = |d: std::time::Duration| count as f64 / d.as_secs_f64();
    println!(
        "drain: bare UID FETCH 1:* BODY.PEEK[] of {count} messages ({:.1} MB): {:.3} s = {:.0} messages/s",
        bytes as f64 / 1e6,
        floor.as_secs_f64(),
        rate(floor)
    );
    println!(
        "drain: intake into tickets (batches of 500, $Ticketed after commit): {:.3} s = {:.0} messages/s ({:.1}x the bare fetch); {} tickets, {} messages",
        drained.as_secs_f64(),
        rate(drained),
        drained.as_secs_f64() / floor.as_secs_f64(),
        stats.tickets,
        stats.messages
    );
    println!(
        "peak memory (VmHWM): {}",
        peak_memory().unwrap_or_else(|| "unknown".into())
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn latency(count: usize, project: &std::path::Path) -> anyhow::Result<()> {
    let stack = Stack::from_env()?;
    let project = project.canonicalize()?;
    let dir = tempfile_dir()?;
    let run = stamp();
    let support = format!("latency-{run}@example.test");
    let config = stack.config(&support, &dir, &project)?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let daemon = supportd::daemon::run(config, async move {
        let _ = stop_rx.changed().await;
    });
    let measure = async {
        let result = measure_latency(&stack, &support, run, count).await;
        let _ = stop_tx.send(true);
        result
    };
    let (daemon, samples) = tokio::join!(daemon, measure);
    daemon?;
    let mut samples = samples?;
    samples.sort();
    let pct =
        |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1];
    println!(
        "latency over {count} mails sent one by one (Postfix accepted -> acknowledgement in the customer's Maildir): p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.90).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        samples.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn measure_latency(
    stack: &Stack,
    support: &str,
    run: u128,
    count: usize,
) -> anyhow::Result<Vec<std::time::Duration>> {
    // Let the daemon connect and enter IDLE.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let mut conn = stack.smtp().await?;
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let customer = format!("c{i}-{run}@latency.example");
        let raw = format!(
            "From: {customer}\r\nTo: {support}\r\nSubject: Le widget ne s'affiche pas ({i})\r\n\
             Message-ID: <lat{i}.{run}@latency.example>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0100\r\n\r\n\
             Bonjour, le widget ne s'affiche plus sur https://site-{i}.example depuis ce matin.\r\n"
        );
        let maildir = stack.maildir_new(&customer);
        send(&mut conn, &customer, support, raw.as_bytes()).await?;
        let accepted = Instant::now();
        loop {
            if std::fs::read_dir(&maildir).map(|d| d.count()).unwrap_or(0) > 0 {
                samples.push(accepted.elapsed());
                break;
            }
            if accepted.elapsed().as_secs() > 30 {
                anyhow::bail!("no acknowledgement for message {i} within 30 s");
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
    Ok(samples)
}

fn ingest(count: usize, batch: usize, project: &std::path::Path) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let project = project.canonicalize().context("project folder")?;
    let config = Config::from_toml(
        &format!(
            "[support]\naddress = \"support@example.test\"\nteam_address = \"team@example.test\"\n\
             [storage]\ndatabase = \"{}\"\n[rules]\ndir = \"{}\"\n[templates]\ndir = \"{}\"\n\
             [guard]\nmax_acks_per_hour = 1000\nmax_acks_per_day = 1000\n",
            dir.join("bench.sqlite3").display(),
            project.join("rules").display(),
            project.join("templates").display()
        ),
        &dir,
    )
    .map_err(anyhow::Error::msg)?;
    let mut store = Store::open(&config.storage.database)?;
    store.checkpoint_in_background()?;
    let pipeline = Pipeline::new(&config, &mut store)?;
    let mail = generate(count);
    let bytes: usize = mail.iter().map(|m| m.raw.len()).sum();
    stage_costs(&mail, &pipeline);
    let start = Instant::now();
    let mut outcomes = Vec::with_capacity(count);
    let mut pending = mail.into_iter().peekable();
    let chunk = |pending: &mut std::iter::Peekable<std::vec::IntoIter<Incoming>>| {
        let chunk: Vec<Incoming> = pending.by_ref().take(batch).collect();
        (!chunk.is_empty()).then_some(chunk)
    };
    // As the IMAP intake does: the next batch is analysed while the current one commits.
    let mut next = chunk(&mut pending).map(|c| pipeline.prepare(c));
    while let Some(current) = next.take() {
        outcomes.extend(pipeline.ingest_prepared(&mut store, current, |_| {
            next = chunk(&mut pending).map(|c| pipeline.prepare(c));
            Ok(())
        })?);
    }
    let elapsed = start.elapsed();
    let mut by_action = std::collections::BTreeMap::new();
    for o in &outcomes {
        *by_action.entry(o.action.as_str()).or_insert(0usize) += 1;
    }
    let stats = supportd::store::stats(store.conn())?;
    println!(
        "ingest: {count} messages ({:.1} MB) in {:.3} s = {:.0} messages/s, batch {batch}, synchronous=FULL",
        bytes as f64 / 1e6,
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64()
    );
    println!(
        "actions: {by_action:?}; tickets {}, acks queued {}, notifications queued {}",
        stats.tickets, stats.acks_queued, stats.notifications_queued
    );
    println!(
        "peak memory (VmHWM): {}",
        peak_memory().unwrap_or_else(|| "unknown".into())
    );
    if std::env::var_os("BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("kept {}", dir.display());
    }
    Ok(())
}

/// CPU cost per message of the stages that do not touch the database, single-threaded, so a
/// regression can be located without a profiler.
fn stage_costs(mail: &[Incoming], pipeline: &Pipeline) {
    let start = Instant::now();
    let parsed: Vec<_> = mail
        .iter()
        .map(|m| supportd::parse::parse(&m.raw))
        .collect();
    let parse = start.elapsed();
    let classifier = pipeline.classifier();
    let start = Instant::now();
    for msg in &parsed {
        std::hint::black_box(classifier.classify_message(msg, "support@example.test"));
    }
    let classify = start.elapsed();
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / mail.len() as f64;
    println!(
        "stages (1 thread, µs/message): parse {:.1}, classify {:.1}",
        per(parse),
        per(classify)
    );
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("supportd-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn peak_memory() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .map(|l| l.trim_start_matches("VmHWM:").trim().to_string())
}

/// Deterministic pseudo-random numbers (xorshift), so every run ingests the same mail.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

const REQUESTS: &[(&str, &str)] = &[
    (
        "Prélèvement après résiliation",
        "Bonjour,\n\nJ'ai résilié mon abonnement le 3 novembre mais j'ai été prélevé de 49 EUR le 5 novembre. Pouvez-vous me rembourser ?\n\nMerci d'avance,",
    ),
    (
        "Need an invoice for October",
        "Hello,\n\nCould you send me the invoice for October? Our accountant needs it with our VAT number.\n\nThanks,",
    ),
    (
        "Le widget ne s'affiche plus",
        "Bonjour,\n\nDepuis hier le widget de chat ne s'affiche plus sur notre site https://www.boulangerie-exemple.fr. Le code est bien placé avant </body>. Rien dans la console.\n\nCordialement,",
    ),
    (
        "Chatbot flow broken after update",
        "Hi team,\n\nOur chatbot flow stopped working after we edited it yesterday: visitors get stuck after the second node. We use Chrome 131 on macOS.\n\nBest regards,",
    ),
    (
        "Impossible de me connecter",
        "Bonjour,\n\nJe n'arrive plus à me connecter à mon compte, le mot de passe est refusé alors que je viens de le réinitialiser.\n\nMerci,",
    ),
    (
        "Change my login e-mail",
        "Hello,\n\nI need to change the e-mail address of my account, I'm leaving my current company next month.\n\nThanks a lot,",
    ),
    (
        "Suggestion : export CSV",
        "Bonjour,\n\nCe serait bien de pouvoir exporter les conversations en CSV pour notre CRM. Serait-il possible d'ajouter cette fonctionnalité ?\n\nBonne journée,",
    ),
    (
        "Feature request: Slack integration",
        "Hi,\n\nIt would be great if you could add a Slack integration so that new chats are posted in a channel. We would use it every day.\n\nCheers,",
    ),
    (
        "Partenariat",
        "Bonjour,\n\nNous sommes une agence web et souhaiterions discuter d'un partenariat pour revendre votre solution à nos clients.\n\nBien à vous,",
    ),
];

const NAMES: &[&str] = &[
    "Julie Martin",
    "Mark Evans",
    "Sofia Rossi",
    "Thomas Bernard",
    "Aisha Khan",
    "Lucas Petit",
];
const DOMAINS: &[&str] = &[
    "boulangerie-martin.fr",
    "acme-widgets.co.uk",
    "studio-rossi.it",
    "exemple.org",
    "khan-consulting.com",
];

/// `count` messages; about 20 % are replies (In-Reply-To an earlier customer message, same
/// sender), 25 % multipart/alternative with HTML, 10 % with a small attachment.
fn generate(count: usize) -> Vec<Incoming> {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut sent: Vec<(String, String, String)> = Vec::new(); // (from, message-id, subject)
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let reply = i > 10 && rng.next().is_multiple_of(5);
        let (from, subject, body, parent) = if reply {
            let (from, mid, subject) = rng.pick(&sent).clone();
            let body = "Merci pour votre réponse, voici les informations demandées : projet https://app.example/p/42, navigateur Firefox 132.\n\nLe 24 nov. 2026 à 10:12, Support <support@example.test> a écrit :\n> Bonjour,\n> Pourriez-vous préciser votre projet ?\n".to_string();
            (from, format!("Re: {subject}"), body, Some(mid))
        } else {
            let (subject, body) = rng.pick(REQUESTS);
            let name = rng.pick(NAMES);
            let domain = rng.pick(DOMAINS);
            let local = name.to_ascii_lowercase().replace(' ', ".");
            let from = format!("{local}{}@{domain}", rng.next() % 500);
            (from, subject.to_string(), format!("{body}\n{name}\n"), None)
        };
        let mid = format!(
            "bench.{i}.{:x}@{}",
            rng.next(),
            from.split('@').nth(1).unwrap_or("x")
        );
        let mut raw = format!(
            "Return-Path: <{from}>\r\nReceived: from mail.example (mail.example [192.0.2.1])\r\n\tby mx.example.test with ESMTPS id {i}; Tue, 24 Nov 2026 10:00:00 +0100\r\n\
             From: {from}\r\nTo: Support <support@example.test>\r\nSubject: {subject}\r\nDate: Tue, 24 Nov 2026 10:{:02}:00 +0100\r\n\
             Message-ID: <{mid}>\r\nMIME-Version: 1.0\r\n",
            i % 60
        );
        if let Some(parent) = &parent {
            raw.push_str(&format!(
                "In-Reply-To: <{parent}>\r\nReferences: <{parent}>\r\n"
            ));
        }
        let body_crlf = body.replace('\n', "\r\n");
        let shape = rng.next() % 20;
        if shape < 5 {
            raw.push_str(&format!(
                "Content-Type: multipart/alternative; boundary=\"b{i}\"\r\n\r\n--b{i}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body_crlf}\r\n--b{i}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>{}</p></body></html>\r\n--b{i}--\r\n",
                body.replace('\n', "<br>\r\n")
            ));
        } else if shape < 7 {
            raw.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"m{i}\"\r\n\r\n--m{i}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body_crlf}\r\n--m{i}\r\nContent-Type: image/png; name=\"capture.png\"\r\nContent-Disposition: attachment; filename=\"capture.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--m{i}--\r\n",
                "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==\r\n".repeat(20)
            ));
        } else {
            raw.push_str(&format!("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body_crlf}"));
        }
        if !reply {
            sent.push((from.clone(), mid.clone(), subject.clone()));
        }
        out.push(Incoming::new(raw.into_bytes(), format!("bench:{i}")));
    }
    out
}
