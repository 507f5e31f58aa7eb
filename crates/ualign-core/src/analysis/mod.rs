//! Analysis of stored answers: pure computations over observations read from the store,
//! no UI: empirical f(k) with cluster-bootstrap intervals, the (k+1)-player game's payoffs
//! and equilibria, maximal lotteries, Plackett–Luce rankings, diversity of pools, and data
//! quality (position bias, speed, attention, consistency).

pub mod agreement;
pub mod confseq;
pub mod counterfactual;
pub mod diversity;
pub mod equilibria;
pub mod fk;
pub mod length;
pub mod live;
pub mod mixture;
pub mod model;
pub mod population;
pub mod quality;
pub mod ranking;
pub mod report;
