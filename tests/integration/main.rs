//! The integration tests, as one test binary: each test file of the crate would link ONNX
//! Runtime's bindings, tokenizers and ratatui again (minutes on a 2-core machine).
//! `common` holds the helpers they share.

mod common;

mod analysis;
mod cli;
mod concurrency;
mod engine;
mod gguf;
mod golden;
mod mixture;
mod pty;
mod reference;
mod render;
mod report;
mod serve;
mod server;
mod simulate;
mod store;
mod study_file;
mod tui;
