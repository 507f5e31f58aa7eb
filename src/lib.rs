//! ualign: human user studies of test-time-scaling alignment, in the terminal.
//!
//! This crate is the front end: the command line ([`cli`]), the participant screens and
//! the researcher's dashboard ([`tui`]), and the screens for remote participants over SSH
//! and in a browser ([`serve`]). The study library is `ualign-core`; the generation engine
//! is `ualign-engine`. Nothing there depends on this crate.

pub mod cli;
pub mod serve;
pub mod tui;
