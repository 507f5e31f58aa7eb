//! ualign-core: a study and its data, with no terminal, no network and no ONNX Runtime
//! types in its API.
//!
//! Data flows one way: study file ([`study`]) → store ([`store`]) → pools filled by the
//! engine or imported ([`pools`]) → trial lists ([`schedule`]) → a participant's pass
//! ([`session`], or [`simulate`]'s synthetic participants) commits answers → [`analysis`]
//! and [`export`] read the store. Every random draw is derived in [`seed`].

pub mod analysis;
pub mod export;
pub mod pools;
pub mod schedule;
pub mod seed;
pub mod session;
pub mod simulate;
pub mod store;
pub mod study;
