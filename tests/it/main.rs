//! The one integration-test binary: `cargo test --test it [FILTER]`.

mod helpers;

mod cli;
mod corpora;
mod e2e;
mod golden;
mod http;
mod imap_intake;
mod pipeline;
mod threads;
