//! Analysis of stored answers: pure computations over observations read from the store,
//! no UI: empirical f(k) with cluster-bootstrap intervals, the (k+1)-player game's payoffs
//! and equilibria, maximal lotteries, and Plackett–Luce rankings.

pub mod equilibria;
pub mod fk;
pub mod ranking;
