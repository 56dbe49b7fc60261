//! The one integration-test binary: `cargo test --test it [FILTER]`.

mod helpers;

mod accounts;
mod agents;
mod cases;
mod cli;
mod corpora;
mod e2e;
mod golden;
mod http;
mod imap_intake;
mod pipeline;
mod senders;
mod sla;
mod threads;
