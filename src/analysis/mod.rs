//! Analysis of stored answers: pure computations over observations read from the store,
//! no UI. So far: empirical f(k) from best_of_k trials with cluster-bootstrap intervals.

pub mod fk;
