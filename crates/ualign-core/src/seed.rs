//! Every random draw ualign makes, derived in one place from a study's seed and the names
//! of what is drawn, so that stored studies keep their trial lists, samples and analyses
//! whatever else changes. The byte encodings are fixed (a stored study was planned with
//! them): `tests/integration/reference.rs` holds trial lists and sample seeds recorded before this
//! module gathered them, and must keep passing.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// The generator behind one block of a participant's trial list (which prompt, samples
/// and slot order each trial gets): SHA-256 of the study seed, the participant id and the
/// block's name.
pub(crate) fn trial_list(study_seed: u64, participant: &str, block: &str) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(study_seed.to_le_bytes());
    h.update(b"\0participant\0");
    h.update(participant.as_bytes());
    h.update(b"\0block\0");
    h.update(block.as_bytes());
    ChaCha8Rng::from_seed(h.finalize().into())
}

/// The generator that orders a participant's blocks when the study shuffles them (a
/// "block" name no study file can hold).
pub(crate) fn block_order(study_seed: u64, participant: &str) -> ChaCha8Rng {
    trial_list(study_seed, participant, "\0block-order")
}

/// The generator that shuffles a candidate's words into an attention check's broken text.
pub(crate) fn attention_text(candidate_id: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(candidate_id)
}

/// The seed of one sample, a function of (study seed, prompt id, policy, sample index)
/// alone: the same sample comes out whatever k, batch or thread count produced it (the
/// engine draws the sample's tokens from a ChaCha8 generator seeded with it).
pub fn sample_seed(study_seed: u64, prompt_id: &str, policy: &str, index: u32) -> u64 {
    let mut h = Sha256::new();
    h.update(study_seed.to_le_bytes());
    for part in [prompt_id, policy] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.update(index.to_le_bytes());
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().unwrap_or([0; 8]))
}

/// A generator of a simulation (`ualign simulate --seed`), named by its parts: the
/// population's shared draws, one participant's preferences, their answers.
pub fn simulation(seed: u64, parts: &[&str]) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    ChaCha8Rng::from_seed(h.finalize().into())
}

/// The seed of the cluster bootstrap behind f(k)'s interval at one k.
pub(crate) fn fk_bootstrap(study_seed: u64, k: u32) -> u64 {
    study_seed ^ u64::from(k)
}

/// The seed of the bootstrap behind the population worths of the prompt at `prompt_index`.
pub(crate) fn worth_bootstrap(study_seed: u64, prompt_index: usize) -> u64 {
    study_seed ^ (0x9e37_79b9 * (prompt_index as u64 + 1))
}

/// The seed of the bootstrap behind the agreement (Krippendorff's α) of a prompt.
pub(crate) fn agreement_bootstrap(study_seed: u64, prompt: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(study_seed.to_le_bytes());
    h.update(b"\0agreement\0");
    h.update(prompt.as_bytes());
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().unwrap_or([0; 8]))
}
