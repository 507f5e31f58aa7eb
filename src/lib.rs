//! ualign: human user studies of test-time-scaling alignment, in the terminal.
//!
//! Data flows one way: study file ([`study`]) → store ([`store`]) → engine fills pools →
//! scheduler draws trials ([`schedule`]) → TUI records answers → analysis reads the store.
//! The library modules never depend on the terminal UI.

pub mod analysis;
pub mod cli;
pub mod decoding;
pub mod engine;
pub mod export;
pub mod pools;
pub mod schedule;
pub mod seed;
pub mod serve;
pub mod session;
pub mod simulate;
pub mod store;
pub mod study;
pub mod tui;
