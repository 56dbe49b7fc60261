//! Where raw messages come from: an IMAP mailbox ([`imap`]) or files, Maildirs and stdin ([`files`]).

pub mod files;
pub mod imap;
