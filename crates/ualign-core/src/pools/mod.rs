//! Candidate pools: which samples a study still needs (`plan`), generating them through
//! the engine (`generate`) or an OpenAI-compatible server (`server`), the engine on its own thread for the participant screens
//! (`worker`), and candidates brought in from elsewhere (`import`). Resumable (stored
//! samples are skipped) and interruptible (a cancelled pool stores nothing; finished pools
//! stay). Used by `ualign generate`, `simulate`, `demo`, `import` and the participant
//! session.

mod generate;
pub mod import;
mod plan;
mod server;
mod worker;

pub use generate::{Made, Models, PoolDone, PoolError, Progress};
pub use plan::{PoolJob, missing_for_trial, needed_pools, pending_jobs, pending_jobs_by_prompt};
pub use server::moved_servers;
pub use worker::{PoolWorker, Priority, WorkerEvent};
