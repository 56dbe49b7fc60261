//! The one integration-test binary: `cargo test --test it [FILTER]`.

mod helpers;

mod accounts;
mod cli;
mod corpora;
mod e2e;
mod golden;
mod imap_intake;
mod pipeline;
mod sla;
mod threads;
