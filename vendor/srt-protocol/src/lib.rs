// ferrocast patch: third-party code, built as a path dependency; its lints
// are upstream's business, not this workspace's `-D warnings`.
#![allow(warnings, clippy::all, clippy::pedantic)]

pub mod access;
pub mod connection;
pub mod listener;
pub mod options;
pub mod packet;
pub mod protocol;
pub mod settings;
pub mod statistics;
