//! Getting candidates in (`import`) and study data out (`export`).

pub mod export;
pub mod import;
